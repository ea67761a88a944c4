//! Block stores: append-only block files indexed by sled.
//!
//! As in Fabric's ledger, block bytes go to append-only files
//! (`chains/<channel>/blockfile_NNNNNN`, each record a varint length and the
//! marshalled block) and a key-value index maps block numbers to their place in
//! those files. sled is the index, one database per channel
//! (`chains/<channel>/index/`), big-endian block number to (file, offset,
//! length): sled stays failed after any I/O error, so a channel's index fault
//! never reaches another channel, and the store can drop and re-open its own.
//! Keeping megabyte-sized blocks out of sled keeps the node's memory flat: sled
//! holds written values in memory far beyond its cache setting, measured at
//! about 215 MB per 100,000 envelopes of 2 KB.
//!
//! Durability: records are written and `fsync`ed before their index entries are
//! written and flushed; only then may the writer publish the new height. A
//! crash between the two leaves complete blocks past the index, which the next
//! open indexes again after checking that they continue the chain. A channel
//! whose index is missing or empty is indexed again from its block files.
//!
//! Faults: the first failed write, sync or index update marks the store
//! faulted; appends are refused until [`BlockStore::reopen`] has recovered the
//! store from disk and proved that the disk takes writes again. Reads of
//! published blocks go on meanwhile.
//!
//! Files: `factory` opens the ledger folder and creates or removes a
//! channel's store; `layout` finishes interrupted creations and removals and
//! migrates the old layout (one index shared by every channel); `files` holds
//! the block files' records; `index` the sled index; `recovery` what opening a
//! store checks and repairs; `writer` the append path and the store's one
//! [`BlockWriter`]; `reopen` the fault state; this file the reads.

mod factory;
mod files;
mod index;
mod layout;
mod recovery;
mod reopen;
mod writer;

#[cfg(all(test, feature = "failpoints"))]
mod fault_tests;
#[cfg(test)]
mod testing;

pub use factory::LedgerFactory;
pub use writer::BlockWriter;

use files::{file_path, Writer};
use index::{encode_key, Location};

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use prost::Message;
use tokio::sync::watch;

use super::cache::{BlockCache, CacheLimits};
use super::LedgerError;
use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;

const CHAINS_DIR: &str = "chains";
/// A channel's sled index, inside its folder.
const INDEX_DIR: &str = "index";
/// A new block file is started past this size (Fabric's default).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;
/// sled's page cache, per channel: the index is small, its entries are 16
/// bytes, and a node may hold many channels.
const CACHE_BYTES: u64 = 1024 * 1024;

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read_lock<T>(lock: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write_lock<T>(lock: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

/// Height and last header hash of a chain: what the next block must build on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTip {
    pub height: u64,
    pub last_hash: Bytes,
    /// Number of the last config block.
    pub last_config: u64,
}

impl ChainTip {
    pub(super) fn empty() -> ChainTip {
        ChainTip {
            height: 0,
            last_hash: Bytes::new(),
            last_config: 0,
        }
    }

    pub(super) fn advance(&mut self, block: &Block) {
        self.height += 1;
        self.last_hash = block
            .header
            .as_ref()
            .map(blockutil::header_hash)
            .unwrap_or_default();
        if let Some(index) = blockutil::last_config_index(block) {
            self.last_config = index;
        }
    }
}

/// A channel's block store. Clones share one store; only the channel's
/// [`super::LedgerActor`] appends, any number of Deliver streams read.
#[derive(Clone)]
pub struct BlockStore {
    inner: Arc<Inner>,
}

struct Inner {
    channel: String,
    dir: PathBuf,
    /// The channel's index. Replaced by [`BlockStore::reopen`], taken away
    /// when the store is removed; readers hold the read lock for one lookup.
    index: RwLock<Option<sled::Db>>,
    tip: Mutex<ChainTip>,
    /// End of the last durable block, where the writer continues.
    end: Mutex<Option<Location>>,
    writer: Mutex<Option<Writer>>,
    /// Where the block files stop being known durable: set while an append
    /// has written records it has not synced yet (file, offset).
    unsynced_from: Mutex<Option<(u32, u64)>>,
    readers: Mutex<HashMap<u32, Arc<File>>>,
    /// The published height: blocks below it are durable and served.
    height: watch::Sender<u64>,
    max_file_bytes: u64,
    /// A [`BlockWriter`] (or a re-open) holds this store.
    writer_taken: AtomicBool,
    /// The store was removed: reads and appends find no channel.
    removed: AtomicBool,
    /// Held by a re-open for its whole run and by a removal: a removal
    /// waits for a re-open, and a re-open never starts on a removed store
    /// (which could touch a re-joined channel's folder of the same name).
    maintenance: Mutex<()>,
    /// Recent blocks, marshalled, for Deliver.
    cache: BlockCache,
    /// Why appends are refused: the first write, sync or index failure,
    /// until [`BlockStore::reopen`] proves the disk takes writes again.
    fault: Mutex<Option<String>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let index = self
            .index
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(db) = index {
            index::close_index(db, &self.dir.join(INDEX_DIR));
        }
    }
}

impl BlockStore {
    fn new(dir: PathBuf, channel: &str, max_file_bytes: u64) -> BlockStore {
        let (height, _) = watch::channel(0);
        BlockStore {
            inner: Arc::new(Inner {
                channel: channel.into(),
                dir,
                index: RwLock::new(None),
                tip: Mutex::new(ChainTip::empty()),
                end: Mutex::new(None),
                writer: Mutex::new(None),
                unsynced_from: Mutex::new(None),
                readers: Mutex::new(HashMap::new()),
                height,
                max_file_bytes,
                writer_taken: AtomicBool::new(false),
                removed: AtomicBool::new(false),
                maintenance: Mutex::new(()),
                cache: BlockCache::new(CacheLimits::default()),
                fault: Mutex::new(None),
            }),
        }
    }

    fn damaged(&self, block: u64, reason: impl Into<String>) -> LedgerError {
        LedgerError::Damaged {
            channel: self.inner.channel.clone(),
            block,
            reason: reason.into(),
        }
    }

    fn file_error(&self, path: &Path, source: std::io::Error) -> LedgerError {
        LedgerError::File {
            path: path.display().to_string(),
            source,
        }
    }

    fn index_path(&self) -> PathBuf {
        self.inner.dir.join(INDEX_DIR)
    }

    fn index_error(&self, source: sled::Error) -> LedgerError {
        LedgerError::Index {
            path: self.index_path().display().to_string(),
            source,
        }
    }

    /// The index is not open: the store was removed, or a re-open could not
    /// open it again.
    fn index_closed(&self) -> LedgerError {
        if self.inner.removed.load(Ordering::Acquire) {
            return LedgerError::NotFound(self.inner.channel.clone());
        }
        LedgerError::Faulted {
            channel: self.inner.channel.clone(),
            reason: self
                .fault()
                .unwrap_or_else(|| "the block index is closed".into()),
        }
    }

    /// The channel's folder (its block files and index).
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    pub fn channel(&self) -> &str {
        &self.inner.channel
    }

    /// Number of blocks durably written.
    pub fn height(&self) -> u64 {
        *self.inner.height.borrow()
    }

    /// A receiver that sees every change of height: how Deliver streams wait for
    /// new blocks without polling.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.inner.height.subscribe()
    }

    pub fn tip(&self) -> ChainTip {
        lock(&self.inner.tip).clone()
    }

    /// Reads block `number`, or `None` beyond the height.
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        if number >= self.height() {
            return Ok(None);
        }
        self.read(number).map(Some)
    }

    /// Reads block `number` as stored: the marshalled `common.Block`, not
    /// decoded. `None` beyond the height. Blocking: a file read.
    pub fn block_bytes(&self, number: u64) -> Result<Option<Bytes>, LedgerError> {
        if number >= self.height() {
            return Ok(None);
        }
        self.read_bytes(number).map(Some)
    }

    /// The shared cache of recent marshalled blocks.
    pub(super) fn cache(&self) -> &BlockCache {
        &self.inner.cache
    }

    fn read(&self, number: u64) -> Result<Block, LedgerError> {
        Block::decode(self.read_bytes(number)?)
            .map_err(|e| self.damaged(number, format!("cannot decode block: {e}")))
    }

    fn read_bytes(&self, number: u64) -> Result<Bytes, LedgerError> {
        let raw = {
            // Held for the lookup only: a re-open waits for it, and a read
            // during a re-open waits for the new index instead of failing.
            let index = read_lock(&self.inner.index);
            let db = index.as_ref().ok_or_else(|| self.index_closed())?;
            db.get(encode_key(number))
                .map_err(|e| self.index_error(e))?
        };
        let raw = raw.ok_or_else(|| self.damaged(number, "it is missing from the index"))?;
        let location = Location::decode(&raw)
            .ok_or_else(|| self.damaged(number, "its index entry is malformed"))?;
        self.read_at(number, location)
    }

    /// Reads the bytes of block `number` at `location`.
    fn read_at(&self, number: u64, location: Location) -> Result<Bytes, LedgerError> {
        let file = self.reader(location.file)?;
        let mut bytes = vec![0u8; location.len as usize];
        file.read_exact_at(&mut bytes, location.offset)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => self.damaged(
                    number,
                    format!("block file {} ends before it", location.file),
                ),
                // The disk failed to read it: a retry may succeed.
                _ => self.file_error(&file_path(&self.inner.dir, location.file), e),
            })?;
        Ok(Bytes::from(bytes))
    }

    fn reader(&self, file: u32) -> Result<Arc<File>, LedgerError> {
        let mut readers = lock(&self.inner.readers);
        if let Some(handle) = readers.get(&file) {
            return Ok(handle.clone());
        }
        let path = file_path(&self.inner.dir, file);
        let handle = Arc::new(File::open(&path).map_err(|source| self.file_error(&path, source))?);
        readers.insert(file, handle.clone());
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use std::fs::OpenOptions;

    /// Appends and publishes with a writer of its own.
    fn append(store: &BlockStore, blocks: &[Block]) -> Result<(), LedgerError> {
        let mut writer = store.writer()?;
        writer.append(blocks)?;
        writer.publish();
        Ok(())
    }

    #[test]
    fn a_store_has_one_writer_and_blocks_are_served_once_published() {
        let dir = tempfile::tempdir().expect("tempdir");
        let factory = LedgerFactory::open(dir.path()).expect("open");
        let store = factory.create_store("c1", &genesis()).expect("create");
        let mut writer = store.writer().expect("first writer");
        assert!(matches!(store.writer(), Err(LedgerError::WriterBusy(_))));
        writer.append(&[next(&store, b"a")]).expect("append");
        assert_eq!(store.tip().height, 2, "durable");
        assert_eq!(store.height(), 1, "not served before it is published");
        assert!(store.block(1).expect("read").is_none());
        assert_eq!(writer.publish(), 2);
        assert!(store.block(1).expect("read").is_some());
        drop(writer);
        store.writer().expect("free again once the first is gone");
    }

    fn genesis() -> Block {
        GenesisProfile::embedded("c1", vec![]).genesis_block()
    }

    fn next(store: &BlockStore, payload: &'static [u8]) -> Block {
        let tip = store.tip();
        blockutil::new_block(
            tip.height,
            tip.last_hash,
            vec![Bytes::from_static(payload)],
            tip.last_config,
            Bytes::new(),
        )
    }

    #[test]
    fn appends_and_recovers_the_tip_after_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tip = {
            let factory = LedgerFactory::open(dir.path()).expect("open");
            let store = factory.create_store("c1", &genesis()).expect("create");
            append(&store, &[next(&store, b"a")]).expect("append 1");
            append(&store, &[next(&store, b"b")]).expect("append 2");
            assert_eq!(store.height(), 3);
            store.tip()
        };
        let factory = LedgerFactory::open(dir.path()).expect("reopen");
        assert_eq!(factory.channel_ids(), vec!["c1".to_string()]);
        let store = factory.open_store("c1").expect("open store");
        assert_eq!(store.tip(), tip);
        let block = store.block(2).expect("read").expect("present");
        assert_eq!(blockutil::entries(&block), &[Bytes::from_static(b"b")]);
        assert!(store.block(3).expect("read").is_none());
    }

    #[test]
    fn refuses_blocks_that_do_not_continue_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let factory = LedgerFactory::open(dir.path()).expect("open");
        let store = factory.create_store("c1", &genesis()).expect("create");
        let mut wrong_number = next(&store, b"a");
        if let Some(h) = wrong_number.header.as_mut() {
            h.number = 5;
        }
        assert!(matches!(
            append(&store, &[wrong_number]),
            Err(LedgerError::OutOfOrder { .. })
        ));
        let wrong_hash =
            blockutil::new_block(1, Bytes::from_static(b"bogus"), vec![], 0, Bytes::new());
        assert!(matches!(
            append(&store, &[wrong_hash]),
            Err(LedgerError::OutOfOrder { .. })
        ));
        assert_eq!(store.height(), 1);
        assert!(matches!(
            factory.create_store("c1", &genesis()),
            Err(LedgerError::AlreadyExists(_))
        ));
    }

    fn block_file(dir: &Path, channel: &str, file: u32) -> PathBuf {
        file_path(&dir.join(CHAINS_DIR).join(channel), file)
    }

    #[test]
    fn a_damaged_block_is_reported_not_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let factory = LedgerFactory::open(dir.path()).expect("open");
            let store = factory.create_store("c1", &genesis()).expect("create");
            append(&store, &[next(&store, b"a payload to tamper with")]).expect("append");
        }
        let path = block_file(dir.path(), "c1", 0);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes
            .windows(6)
            .position(|w| w == b"tamper")
            .expect("payload present");
        bytes[at] = b'T';
        std::fs::write(&path, &bytes).expect("write");

        let factory = LedgerFactory::open(dir.path()).expect("reopen");
        let err = factory.open_store("c1").err().expect("damaged");
        assert!(err.to_string().contains("damaged at block 1"), "{err}");
        assert_eq!(
            std::fs::read(&path).expect("read").len(),
            bytes.len(),
            "nothing was truncated"
        );
    }

    #[test]
    fn a_torn_last_record_is_cut_off_and_the_chain_continues() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good_len = {
            let factory = LedgerFactory::open(dir.path()).expect("open");
            let store = factory.create_store("c1", &genesis()).expect("create");
            append(&store, &[next(&store, b"a")]).expect("append");
            std::fs::metadata(block_file(dir.path(), "c1", 0))
                .expect("meta")
                .len()
        };
        // A crash in the middle of writing a record: a length prefix and a few bytes.
        let path = block_file(dir.path(), "c1", 0);
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        std::io::Write::write_all(&mut file, &[0x90, 0x03, 1, 2, 3]).expect("write");
        drop(file);

        let factory = LedgerFactory::open(dir.path()).expect("reopen");
        let store = factory.open_store("c1").expect("open store");
        assert_eq!(store.height(), 2);
        assert_eq!(std::fs::metadata(&path).expect("meta").len(), good_len);
        append(&store, &[next(&store, b"b")]).expect("append after recovery");
        drop((store, factory));
        let reopened = LedgerFactory::open(dir.path()).expect("reopen");
        let store = reopened.open_store("c1").expect("open store");
        assert_eq!(store.height(), 3);
    }

    #[test]
    fn complete_blocks_written_but_not_indexed_are_recovered() {
        let dir = tempfile::tempdir().expect("tempdir");
        let expected_tip = {
            let factory = LedgerFactory::open(dir.path()).expect("open");
            let store = factory.create_store("c1", &genesis()).expect("create");
            append(&store, &[next(&store, b"a")]).expect("append");
            // Write block 2 to the file only, as if the node died before indexing it.
            let tip = store.tip();
            let block = blockutil::new_block(
                tip.height,
                tip.last_hash.clone(),
                vec![Bytes::from_static(b"b")],
                0,
                Bytes::new(),
            );
            let mut record = Vec::new();
            prost::encoding::encode_varint(block.encoded_len() as u64, &mut record);
            block.encode(&mut record).expect("encode");
            let path = block_file(dir.path(), "c1", 0);
            let mut file = OpenOptions::new().append(true).open(&path).expect("open");
            std::io::Write::write_all(&mut file, &record).expect("write");
            let mut tip = tip;
            tip.advance(&block);
            tip
        };
        let factory = LedgerFactory::open(dir.path()).expect("reopen");
        let store = factory.open_store("c1").expect("open store");
        assert_eq!(store.tip(), expected_tip);
        let block = store.block(2).expect("read").expect("present");
        assert_eq!(blockutil::entries(&block), &[Bytes::from_static(b"b")]);
    }

    #[test]
    fn blocks_roll_over_to_new_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let factory = LedgerFactory::open(dir.path())
                .expect("open")
                .with_max_file_bytes(600);
            let store = factory.create_store("c1", &genesis()).expect("create");
            for _ in 0..10 {
                append(&store, &[next(&store, &[7u8; 200])]).expect("append");
            }
        }
        assert!(
            block_file(dir.path(), "c1", 3).exists(),
            "several block files were used"
        );
        let factory = LedgerFactory::open(dir.path()).expect("reopen");
        let store = factory.open_store("c1").expect("open store");
        assert_eq!(store.height(), 11);
        for n in 0..11 {
            assert!(store.block(n).expect("read").is_some());
        }
    }

    #[test]
    fn removing_a_store_drops_its_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let factory = LedgerFactory::open(dir.path()).expect("open");
        factory.create_store("c1", &genesis()).expect("create");
        factory.create_store("c2", &genesis()).expect("create");
        factory.remove_store("c1").expect("remove");
        assert_eq!(factory.channel_ids(), vec!["c2".to_string()]);
        assert!(
            !dir.path().join(CHAINS_DIR).join("c1").exists(),
            "block files removed"
        );
        assert!(matches!(
            factory.open_store("c1"),
            Err(LedgerError::NotFound(_))
        ));
    }
}
