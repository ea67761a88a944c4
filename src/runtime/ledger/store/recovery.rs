//! Opening a store after a stop or a crash: the indexed tail is checked,
//! complete blocks written but not indexed are indexed again, and a torn last
//! record (a write the crash cut short, never acknowledged) is cut off.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use super::files::{file_path, read_record};
use super::index::{decode_key, encode_key, Location};
use super::{lock, BlockStore, ChainTip};
use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::runtime::ledger::LedgerError;

impl BlockStore {
    /// Rebuilds the tip from disk: checks the indexed tail, then indexes any
    /// complete blocks written after it (a crash between file and index).
    pub(super) fn recover(
        db: sled::Db,
        tree: sled::Tree,
        dir: PathBuf,
        channel: &str,
        max_file_bytes: u64,
    ) -> Result<BlockStore, LedgerError> {
        let store = BlockStore::new(
            db,
            tree,
            dir,
            channel,
            ChainTip::empty(),
            None,
            max_file_bytes,
        );
        let Some((first_key, _)) = store.inner.tree.first()? else {
            return Err(store.damaged(0, "the index holds no block"));
        };
        if decode_key(&first_key) != Some(0) {
            return Err(store.damaged(0, "the first indexed block is not block 0"));
        }
        let (last_key, last_raw) = store
            .inner
            .tree
            .last()?
            .ok_or_else(|| store.damaged(0, "the index holds no block"))?;
        let number =
            decode_key(&last_key).ok_or_else(|| store.damaged(0, "an index key is malformed"))?;
        let location = Location::decode(&last_raw)
            .ok_or_else(|| store.damaged(number, "its index entry is malformed"))?;
        let last = store.read_checked(number)?;
        let mut tip = ChainTip {
            height: number,
            last_hash: Bytes::new(),
            last_config: 0,
        };
        if number > 0 {
            let previous = store.read_checked(number - 1)?;
            let expected = previous.header.as_ref().map(blockutil::header_hash);
            if expected != last.header.as_ref().map(|h| h.previous_hash.clone()) {
                return Err(store.damaged(
                    number,
                    "previous_hash does not match the hash of the block before",
                ));
            }
        }
        tip.advance(&last);
        *lock(&store.inner.tip) = tip;
        *lock(&store.inner.end) = Some(location);
        store.inner.height.send_replace(number + 1);
        store.reindex_unindexed_tail()?;
        Ok(store)
    }

    /// Indexes complete blocks that follow the last indexed one in the block
    /// files. A torn last record (a write the crash interrupted, never
    /// acknowledged) is cut off, with a warning.
    pub(super) fn reindex_unindexed_tail(&self) -> Result<(), LedgerError> {
        let Some(mut end) = *lock(&self.inner.end) else {
            return Ok(());
        };
        let mut position = (end.file, end.end());
        let mut recovered = Vec::new();
        loop {
            let path = file_path(&self.inner.dir, position.0);
            let Ok(file) = File::open(&path) else { break };
            let file_len = file
                .metadata()
                .map_err(|source| self.file_error(&path, source))?
                .len();
            if position.1 >= file_len {
                // Continue in the next file, if a rollover happened.
                if file_path(&self.inner.dir, position.0 + 1).exists() {
                    position = (position.0 + 1, 0);
                    continue;
                }
                break;
            }
            match read_record(&file, position.1, file_len) {
                Some((bytes, offset)) => {
                    let len = u32::try_from(bytes.len()).unwrap_or(u32::MAX);
                    let block = match Block::decode(Bytes::from(bytes)) {
                        Ok(block) => block,
                        Err(_) => {
                            self.cut_torn_tail(&path, position.1, file_len);
                            break;
                        }
                    };
                    let location = Location {
                        file: position.0,
                        offset,
                        len,
                    };
                    position = (position.0, location.end());
                    recovered.push((block, location));
                }
                None => {
                    self.cut_torn_tail(&path, position.1, file_len);
                    break;
                }
            }
        }
        if recovered.is_empty() {
            return Ok(());
        }
        let mut tip = self.tip();
        let mut batch = sled::Batch::default();
        for (block, location) in &recovered {
            self.check_continues(&tip, block)?;
            batch.insert(&encode_key(tip.height), &location.encode());
            tip.advance(block);
            end = *location;
        }
        self.inner.tree.apply_batch(batch)?;
        self.inner.db.flush()?;
        tracing::warn!(channel = %self.inner.channel, blocks = recovered.len(), height = tip.height, "indexed blocks that were written but not indexed before the last stop");
        let height = tip.height;
        *lock(&self.inner.tip) = tip;
        *lock(&self.inner.end) = Some(end);
        self.inner.height.send_replace(height);
        Ok(())
    }

    pub(super) fn cut_torn_tail(&self, path: &Path, offset: u64, file_len: u64) {
        tracing::warn!(
            channel = %self.inner.channel,
            file = %path.display(),
            offset,
            bytes = file_len - offset,
            "the block file ends with an incomplete block (a write interrupted before it was acknowledged); it is cut off"
        );
        if let Ok(file) = OpenOptions::new().write(true).open(path) {
            let _ = file.set_len(offset).and_then(|_| file.sync_all());
        }
    }

    pub(super) fn read_checked(&self, number: u64) -> Result<Block, LedgerError> {
        let block = self.read(number)?;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| self.damaged(number, "block has no header"))?;
        if header.number != number {
            return Err(self.damaged(
                number,
                format!("indexed as {number} but says {}", header.number),
            ));
        }
        if header.data_hash != blockutil::data_hash(blockutil::entries(&block)) {
            return Err(self.damaged(number, "data_hash does not match the block's data"));
        }
        Ok(block)
    }
}
