//! Opening a store after a stop, a crash or a fault: the indexed tail is
//! checked, complete blocks written but not indexed are indexed again (the
//! whole chain when the index is missing or empty), a torn last record (a
//! write the crash cut short, never acknowledged) is cut off, and block files
//! that do not continue the chain are moved out of the way.

use std::fs::File;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;

use super::files::{self, block_files, file_path, read_record};
use super::index::{close_index, decode_key, encode_key, open_index, Location};
use super::{lock, write_lock, BlockStore, ChainTip};
use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::runtime::faults::{self, points};
use crate::runtime::ledger::LedgerError;

/// What recovery found on disk: the chain's tip and where its last block is.
pub(super) struct Recovered {
    pub(super) tip: ChainTip,
    pub(super) end: Location,
}

/// Why a store is being opened: a new channel's index is built from its
/// genesis block as a matter of course, anything else recovered is worth a
/// warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Opening {
    Created,
    Existing,
}

/// Why a record past the index is not the block that continues the chain.
struct BadRecord {
    reason: String,
    /// Its bytes are not a block with its data (what a torn write leaves),
    /// as opposed to a whole block in the wrong place.
    garbled: bool,
}

impl BlockStore {
    /// Opens the store of the channel in `dir`: its index, recovered.
    pub(super) fn open_dir(
        dir: PathBuf,
        channel: &str,
        max_file_bytes: u64,
        opening: Opening,
    ) -> Result<BlockStore, LedgerError> {
        let store = BlockStore::new(dir, channel, max_file_bytes);
        let path = store.index_path();
        let db = open_index(&path).map_err(|source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        let recovered = match store.recover_with(&db, opening) {
            Ok(recovered) => recovered,
            Err(error) => {
                close_index(db, &path);
                return Err(error);
            }
        };
        let height = recovered.tip.height;
        *lock(&store.inner.tip) = recovered.tip;
        *lock(&store.inner.end) = Some(recovered.end);
        *write_lock(&store.inner.index) = Some(db);
        store.inner.height.send_replace(height);
        Ok(store)
    }

    /// Checks the indexed tail and indexes what follows it in the block
    /// files; with an empty index, indexes the whole chain.
    pub(super) fn recover_with(
        &self,
        db: &sled::Db,
        opening: Opening,
    ) -> Result<Recovered, LedgerError> {
        let indexed = self.check_indexed_tail(db)?;
        if indexed.is_none() && opening == Opening::Existing {
            tracing::warn!(channel = %self.inner.channel, "the block index is missing or empty; indexing the block files again");
        }
        self.index_unindexed(db, indexed, opening)
    }

    /// The tip and end of the indexed chain after checking its last two
    /// blocks, or `None` when the index holds no block.
    fn check_indexed_tail(
        &self,
        db: &sled::Db,
    ) -> Result<Option<(ChainTip, Location)>, LedgerError> {
        let index_error = |e| self.index_error(e);
        let Some((first_key, _)) = db.first().map_err(index_error)? else {
            return Ok(None);
        };
        if decode_key(&first_key) != Some(0) {
            return Err(self.damaged(0, "the first indexed block is not block 0"));
        }
        let (last_key, last_raw) = db
            .last()
            .map_err(index_error)?
            .ok_or_else(|| self.damaged(0, "the index holds no block"))?;
        let number =
            decode_key(&last_key).ok_or_else(|| self.damaged(0, "an index key is malformed"))?;
        let location = Location::decode(&last_raw)
            .ok_or_else(|| self.damaged(number, "its index entry is malformed"))?;
        let last = self.read_checked_at(number, location)?;
        if number > 0 {
            let raw = db
                .get(encode_key(number - 1))
                .map_err(index_error)?
                .ok_or_else(|| self.damaged(number - 1, "it is missing from the index"))?;
            let previous_location = Location::decode(&raw)
                .ok_or_else(|| self.damaged(number - 1, "its index entry is malformed"))?;
            let previous = self.read_checked_at(number - 1, previous_location)?;
            let expected = previous.header.as_ref().map(blockutil::header_hash);
            if expected != last.header.as_ref().map(|h| h.previous_hash.clone()) {
                return Err(self.damaged(
                    number,
                    "previous_hash does not match the hash of the block before",
                ));
            }
        }
        let mut tip = ChainTip {
            height: number,
            last_hash: Bytes::new(),
            last_config: 0,
        };
        tip.advance(&last);
        Ok(Some((tip, location)))
    }

    /// Indexes the complete blocks that follow the indexed chain in the block
    /// files (all of them when `indexed` is `None`), following the next file
    /// only when it starts with the block that continues the chain. Each file
    /// is synced before its blocks are indexed. A torn last record is cut off
    /// and block files past the chain are moved aside, with warnings.
    fn index_unindexed(
        &self,
        db: &sled::Db,
        indexed: Option<(ChainTip, Location)>,
        opening: Opening,
    ) -> Result<Recovered, LedgerError> {
        let dir = &self.inner.dir;
        let rebuilding = indexed.is_none();
        let (mut tip, mut last) = match indexed {
            Some((tip, end)) => (tip, Some(end)),
            None => (ChainTip::empty(), None),
        };
        let (mut number, mut offset) = last.map_or((0, 0), |end| (end.file, end.end()));
        if rebuilding && !file_path(dir, 0).exists() {
            return Err(self.damaged(0, "there is neither an index nor a block file"));
        }
        let mut recovered = 0u64;
        loop {
            let path = file_path(dir, number);
            let file_error = |source| self.file_error(&path, source);
            let file = File::open(&path).map_err(file_error)?;
            let file_len = file.metadata().map_err(file_error)?.len();
            let mut batch = sled::Batch::default();
            let mut in_file = 0u64;
            while offset < file_len {
                let Some(record) = read_record(&file, offset, file_len).map_err(file_error)? else {
                    self.cut_torn_tail(&path, offset, file_len)?;
                    break;
                };
                match self.check_recovered(&tip, &record.bytes) {
                    Ok(block) => {
                        let location = Location {
                            file: number,
                            offset: record.start,
                            len: u32::try_from(record.bytes.len())
                                .map_err(|_| self.damaged(tip.height, "block larger than 4 GiB"))?,
                        };
                        batch.insert(&encode_key(tip.height), &location.encode());
                        tip.advance(&block);
                        last = Some(location);
                        offset = location.end();
                        in_file += 1;
                    }
                    // The last record, never indexed, not a block: a write
                    // cut short after the file grew. (Rebuilding, every block
                    // was acknowledged once: nothing is cut.)
                    Err(bad) if bad.garbled && !rebuilding && record.end() == file_len => {
                        tracing::warn!(channel = %self.inner.channel, reason = %bad.reason, "the last record of the block file is not a block");
                        self.cut_torn_tail(&path, offset, file_len)?;
                        break;
                    }
                    Err(bad) => return Err(self.damaged(tip.height, bad.reason)),
                }
            }
            if in_file > 0 {
                files::sync_file(points::LEDGER_RECOVERY_SYNC, &path, &file).map_err(file_error)?;
                let index_path = self.index_path();
                faults::check(points::LEDGER_RECOVERY_INDEX, &index_path)
                    .map_err(|e| self.index_error(sled::Error::Io(e)))?;
                db.apply_batch(batch).map_err(|e| self.index_error(e))?;
                recovered += in_file;
            }
            let next = file_path(dir, number + 1);
            if !self.starts_with_next_block(&next, &tip)? {
                break;
            }
            // A rollover the last run made: the new file's entry is made
            // durable before its blocks are indexed.
            files::sync_dir(points::LEDGER_RECOVERY_SYNC, dir)
                .map_err(|source| self.file_error(dir, source))?;
            number += 1;
            offset = 0;
        }
        if recovered > 0 {
            db.flush().map_err(|e| self.index_error(e))?;
            if opening == Opening::Existing {
                tracing::warn!(channel = %self.inner.channel, blocks = recovered, height = tip.height, "indexed blocks that were written but not indexed");
            }
        }
        self.set_aside_files_after(number)?;
        let end = last.ok_or_else(|| self.damaged(0, "the block files hold no block"))?;
        Ok(Recovered { tip, end })
    }

    /// Whether the block file at `path` exists and starts with the block that
    /// continues `tip`.
    fn starts_with_next_block(&self, path: &Path, tip: &ChainTip) -> Result<bool, LedgerError> {
        let file_error = |source| self.file_error(path, source);
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(file_error(e)),
        };
        let len = file.metadata().map_err(file_error)?.len();
        Ok(match read_record(&file, 0, len).map_err(file_error)? {
            Some(record) => self.check_recovered(tip, &record.bytes).is_ok(),
            None => false,
        })
    }

    /// Moves block files numbered after `last_file` out of the way: the chain
    /// does not continue into them (a rollover that failed, a file from
    /// elsewhere), and a later rollover must not meet them. Empty ones are
    /// removed.
    fn set_aside_files_after(&self, last_file: u32) -> Result<(), LedgerError> {
        let dir = &self.inner.dir;
        let unexpected: Vec<u32> = block_files(dir)
            .map_err(|source| self.file_error(dir, source))?
            .into_iter()
            .filter(|number| *number > last_file)
            .collect();
        if unexpected.is_empty() {
            return Ok(());
        }
        for number in unexpected {
            let path = file_path(dir, number);
            let file_error = |source| self.file_error(&path, source);
            let len = std::fs::metadata(&path).map_err(file_error)?.len();
            if len == 0 {
                tracing::warn!(channel = %self.inner.channel, file = %path.display(), "removing an empty block file the chain does not continue into");
                faults::check(points::LEDGER_RECOVERY_TRUNCATE, &path).map_err(file_error)?;
                std::fs::remove_file(&path).map_err(file_error)?;
                continue;
            }
            let aside = aside_path(&path);
            tracing::warn!(channel = %self.inner.channel, file = %path.display(), aside = %aside.display(), bytes = len, "moving aside a block file the chain does not continue into");
            files::rename(points::LEDGER_RECOVERY_TRUNCATE, &path, &aside).map_err(file_error)?;
        }
        files::sync_dir(points::LEDGER_RECOVERY_TRUNCATE, dir)
            .map_err(|source| self.file_error(dir, source))
    }

    fn cut_torn_tail(&self, path: &Path, offset: u64, file_len: u64) -> Result<(), LedgerError> {
        tracing::warn!(
            channel = %self.inner.channel,
            file = %path.display(),
            offset,
            bytes = file_len - offset,
            "the block file ends with an incomplete block (a write interrupted before it was acknowledged); it is cut off"
        );
        files::cut(points::LEDGER_RECOVERY_TRUNCATE, path, offset)
            .map_err(|source| self.file_error(path, source))
    }

    /// Decodes a record found past the index and checks that it is the block
    /// that continues `tip`: its number, previous hash and data hash.
    fn check_recovered(&self, tip: &ChainTip, bytes: &[u8]) -> Result<Block, BadRecord> {
        let garbled = |reason: String| BadRecord {
            reason,
            garbled: true,
        };
        let block = Block::decode(bytes)
            .map_err(|e| garbled(format!("a record past the index is not a block: {e}")))?;
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| garbled("a record past the index has no header".into()))?;
        if header.data_hash != blockutil::data_hash(blockutil::entries(&block)) {
            return Err(garbled(format!(
                "block {} past the index: data_hash does not match its data",
                header.number
            )));
        }
        let misplaced = |reason: String| BadRecord {
            reason,
            garbled: false,
        };
        if header.number != tip.height {
            return Err(misplaced(format!(
                "block {} found past the index where block {} belongs",
                header.number, tip.height
            )));
        }
        if header.previous_hash != tip.last_hash {
            return Err(misplaced(format!(
                "block {} past the index: previous_hash does not match the chain",
                header.number
            )));
        }
        Ok(block)
    }

    /// Reads an indexed block at `location` and checks its number and data hash.
    pub(super) fn read_checked_at(
        &self,
        number: u64,
        location: Location,
    ) -> Result<Block, LedgerError> {
        let block = Block::decode(self.read_at(number, location)?)
            .map_err(|e| self.damaged(number, format!("cannot decode block: {e}")))?;
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

/// A free name beside `path` for a file moved out of the chain's way.
fn aside_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (0u32..)
        .map(|n| path.with_file_name(format!("{name}.aside-{n}")))
        .find(|candidate| !candidate.exists())
        .unwrap_or_else(|| path.with_file_name(format!("{name}.aside")))
}

#[cfg(test)]
mod tests {
    use super::super::testing::{
        append_acknowledged, append_to_file, block_after, genesis, next, record, valid_chain,
    };
    use super::super::{LedgerFactory, CHAINS_DIR, INDEX_DIR};
    use super::*;

    /// A channel with genesis and two blocks, its folder, and its tip.
    fn three_blocks(dir: &Path, max_file_bytes: u64) -> (PathBuf, ChainTip) {
        let factory = LedgerFactory::open(dir)
            .expect("open")
            .with_max_file_bytes(max_file_bytes);
        let store = factory.create_store("c1", &genesis("c1")).expect("create");
        append_acknowledged(&store, &[next(&store, b"first payload")]);
        append_acknowledged(&store, &[next(&store, b"second payload")]);
        (dir.join(CHAINS_DIR).join("c1"), store.tip())
    }

    fn open(dir: &Path) -> Result<BlockStore, LedgerError> {
        LedgerFactory::open(dir).expect("open").open_store("c1")
    }

    #[test]
    fn a_missing_or_empty_index_is_built_again_from_the_block_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, tip) = three_blocks(dir.path(), 600);
        assert!(file_path(&chain, 1).exists(), "more than one block file");
        let stored = valid_chain(&open(dir.path()).expect("open"));

        std::fs::remove_dir_all(chain.join(INDEX_DIR)).expect("remove index");
        let store = open(dir.path()).expect("rebuilt");
        assert_eq!(store.tip(), tip);
        assert_eq!(valid_chain(&store), stored);
        drop(store);

        std::fs::remove_dir_all(chain.join(INDEX_DIR)).expect("remove index");
        let empty = open_index(&chain.join(INDEX_DIR)).expect("empty index");
        empty.flush().expect("flush");
        drop(empty);
        let store = open(dir.path()).expect("rebuilt");
        assert_eq!(store.tip(), tip);
        assert_eq!(valid_chain(&store), stored);
    }

    #[test]
    fn rebuilding_checks_every_block() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, _) = three_blocks(dir.path(), 64 * 1024 * 1024);
        std::fs::remove_dir_all(chain.join(INDEX_DIR)).expect("remove index");
        let path = file_path(&chain, 0);
        let mut bytes = std::fs::read(&path).expect("read");
        // Block 1's payload, in the middle of the file.
        let at = bytes
            .windows(13)
            .position(|w| w == b"first payload")
            .expect("payload present");
        bytes[at] = b'F';
        std::fs::write(&path, &bytes).expect("write");
        let error = open(dir.path()).err().expect("damaged");
        assert!(error.to_string().contains("damaged at block 1"), "{error}");
        assert!(!error.is_transient());
    }

    #[test]
    fn a_block_file_that_does_not_continue_the_chain_is_moved_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, tip) = three_blocks(dir.path(), 64 * 1024 * 1024);
        // A failed rollover's empty file, and a file of blocks from elsewhere.
        std::fs::write(file_path(&chain, 1), b"").expect("write");
        let stranger = block_after(
            &ChainTip {
                height: 7,
                last_hash: Bytes::from_static(b"elsewhere"),
                last_config: 0,
            },
            b"x",
        );
        std::fs::write(file_path(&chain, 2), record(&stranger)).expect("write");
        let store = open(dir.path()).expect("open");
        assert_eq!(store.tip(), tip);
        assert_eq!(block_files(&chain).expect("list"), vec![0]);
        assert!(chain.join("blockfile_000002.aside-0").exists());
        drop(store);

        // Later rollovers start files of their own.
        let factory = LedgerFactory::open(dir.path())
            .expect("open")
            .with_max_file_bytes(1);
        let store = factory.open_store("c1").expect("open");
        append_acknowledged(&store, &[next(&store, b"c")]);
        append_acknowledged(&store, &[next(&store, b"d")]);
        drop(store);
        let store = factory.open_store("c1").expect("open");
        assert_eq!(valid_chain(&store).len(), 5);
    }

    #[test]
    fn a_next_block_file_that_continues_the_chain_is_followed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, tip) = three_blocks(dir.path(), 64 * 1024 * 1024);
        // A rollover that was written and synced but not indexed.
        let block = block_after(&tip, b"c");
        std::fs::write(file_path(&chain, 1), record(&block)).expect("write");
        let store = open(dir.path()).expect("open");
        assert_eq!(store.height(), 4);
        assert_eq!(store.block(3).expect("read"), Some(block));
    }

    #[test]
    fn records_past_the_index_are_checked() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, tip) = three_blocks(dir.path(), 64 * 1024 * 1024);
        let path = file_path(&chain, 0);
        let good_len = std::fs::metadata(&path).expect("meta").len();
        let mut bad_hash = block_after(&tip, b"c");
        if let Some(header) = bad_hash.header.as_mut() {
            header.data_hash = Bytes::from_static(b"not the hash");
        }

        // Last in the file: a write that never completed, cut off.
        append_to_file(&path, &record(&bad_hash));
        let store = open(dir.path()).expect("open");
        assert_eq!(store.tip(), tip);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), good_len);
        drop(store);

        // Followed by a good block: damage in the middle, reported.
        append_to_file(&path, &record(&bad_hash));
        append_to_file(&path, &record(&block_after(&tip, b"c")));
        let error = open(dir.path()).err().expect("damaged");
        assert!(error.to_string().contains("damaged at block 3"), "{error}");
        assert!(!error.is_transient());
    }

    #[test]
    fn a_whole_block_in_the_wrong_place_is_damage() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (chain, tip) = three_blocks(dir.path(), 64 * 1024 * 1024);
        let mut ahead = tip.clone();
        ahead.height += 1;
        append_to_file(&file_path(&chain, 0), &record(&block_after(&ahead, b"d")));
        let error = open(dir.path()).err().expect("damaged");
        assert!(
            error.to_string().contains("where block 3 belongs"),
            "{error}"
        );
    }
}
