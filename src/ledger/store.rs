//! sled-backed block stores: one tree per channel, keyed by big-endian block number.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;
use prost::Message;
use tokio::sync::watch;

use super::LedgerError;
use crate::blockutil;
use crate::protos::common::Block;

const TREE_PREFIX: &str = "chain/";
/// sled's page cache; its default (1 GiB) would dwarf the node's other memory.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// Opens the node's ledger folder and the channels' stores in it.
#[derive(Clone)]
pub struct LedgerFactory {
    db: sled::Db,
}

impl LedgerFactory {
    pub fn open(dir: &Path) -> Result<LedgerFactory, LedgerError> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(CACHE_BYTES)
            // Blocks are flushed explicitly before they are acknowledged.
            .flush_every_ms(None)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| LedgerError::Open {
                path: dir.display().to_string(),
                source,
            })?;
        Ok(LedgerFactory { db })
    }

    /// The channels that have a store, in name order.
    pub fn channel_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|name| {
                std::str::from_utf8(&name)
                    .ok()?
                    .strip_prefix(TREE_PREFIX)
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }

    /// Opens an existing, non-empty store and checks its tail.
    pub fn open_store(&self, channel: &str) -> Result<BlockStore, LedgerError> {
        if !self.channel_ids().iter().any(|c| c == channel) {
            return Err(LedgerError::NotFound(channel.into()));
        }
        let tree = self.db.open_tree(tree_name(channel))?;
        BlockStore::recover(self.db.clone(), tree, channel)
    }

    /// Creates the store of a new channel with its genesis block, durably.
    pub fn create_store(&self, channel: &str, genesis: &Block) -> Result<BlockStore, LedgerError> {
        if self.channel_ids().iter().any(|c| c == channel) {
            return Err(LedgerError::AlreadyExists(channel.into()));
        }
        let tree = self.db.open_tree(tree_name(channel))?;
        let store = BlockStore::new(self.db.clone(), tree, channel, ChainTip::empty());
        store.append(std::slice::from_ref(genesis))?;
        Ok(store)
    }

    /// Removes a channel's store and its blocks.
    pub fn remove_store(&self, channel: &str) -> Result<(), LedgerError> {
        if !self.db.drop_tree(tree_name(channel))? {
            return Err(LedgerError::NotFound(channel.into()));
        }
        self.db.flush()?;
        Ok(())
    }

    /// Flushes everything to disk (used on a clean stop).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush()?;
        Ok(())
    }
}

fn tree_name(channel: &str) -> String {
    format!("{TREE_PREFIX}{channel}")
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
    fn empty() -> ChainTip {
        ChainTip {
            height: 0,
            last_hash: Bytes::new(),
            last_config: 0,
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
    db: sled::Db,
    tree: sled::Tree,
    tip: Mutex<ChainTip>,
    height: watch::Sender<u64>,
}

impl BlockStore {
    fn new(db: sled::Db, tree: sled::Tree, channel: &str, tip: ChainTip) -> BlockStore {
        let (height, _) = watch::channel(tip.height);
        BlockStore {
            inner: Arc::new(Inner {
                channel: channel.into(),
                db,
                tree,
                tip: Mutex::new(tip),
                height,
            }),
        }
    }

    /// Rebuilds the tip from disk, checking that the stored tail is consistent.
    fn recover(db: sled::Db, tree: sled::Tree, channel: &str) -> Result<BlockStore, LedgerError> {
        let damaged = |block: u64, reason: String| LedgerError::Damaged {
            channel: channel.into(),
            block,
            reason,
        };
        let Some((first_key, _)) = tree.first()? else {
            return Err(damaged(0, "the store holds no block".into()));
        };
        if decode_key(&first_key) != Some(0) {
            return Err(damaged(0, "the first stored block is not block 0".into()));
        }
        let (last_key, last_raw) = tree
            .last()?
            .ok_or_else(|| damaged(0, "no last block".into()))?;
        let number =
            decode_key(&last_key).ok_or_else(|| damaged(0, "a block key is malformed".into()))?;
        let last = decode_block(&last_raw).map_err(|e| damaged(number, e))?;
        check_block(&last, number).map_err(|e| damaged(number, e))?;
        if number > 0 {
            let previous_raw = tree
                .get(encode_key(number - 1))?
                .ok_or_else(|| damaged(number - 1, "block is missing".into()))?;
            let previous = decode_block(&previous_raw).map_err(|e| damaged(number - 1, e))?;
            check_block(&previous, number - 1).map_err(|e| damaged(number - 1, e))?;
            let expected = previous.header.as_ref().map(blockutil::header_hash);
            let actual = last.header.as_ref().map(|h| h.previous_hash.clone());
            if expected != actual {
                return Err(damaged(
                    number,
                    "previous_hash does not match the hash of the block before".into(),
                ));
            }
        }
        let tip = ChainTip {
            height: number + 1,
            last_hash: last
                .header
                .as_ref()
                .map(blockutil::header_hash)
                .unwrap_or_default(),
            last_config: blockutil::last_config_index(&last).unwrap_or(0),
        };
        Ok(BlockStore::new(db, tree, channel, tip))
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
        self.inner
            .tip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads block `number`, or `None` beyond the height.
    pub fn block(&self, number: u64) -> Result<Option<Block>, LedgerError> {
        if number >= self.height() {
            return Ok(None);
        }
        let Some(raw) = self.inner.tree.get(encode_key(number))? else {
            return Ok(None);
        };
        decode_block(&raw)
            .map(Some)
            .map_err(|reason| LedgerError::Damaged {
                channel: self.inner.channel.clone(),
                block: number,
                reason,
            })
    }

    /// Appends blocks in one atomic batch and flushes them to disk before the height
    /// moves. Blocks must continue the chain: next number, previous hash of the tip.
    /// Blocking: called from a blocking task, never on an actor's thread.
    pub fn append(&self, blocks: &[Block]) -> Result<(), LedgerError> {
        if blocks.is_empty() {
            return Ok(());
        }
        let mut tip = self.tip();
        let mut batch = sled::Batch::default();
        for block in blocks {
            let header = block
                .header
                .as_ref()
                .ok_or_else(|| self.out_of_order(0, "block has no header"))?;
            if header.number != tip.height {
                return Err(
                    self.out_of_order(header.number, &format!("expected block {}", tip.height))
                );
            }
            if header.previous_hash != tip.last_hash {
                return Err(
                    self.out_of_order(header.number, "previous_hash does not match the chain")
                );
            }
            batch.insert(&encode_key(header.number), block.encode_to_vec());
            tip.height += 1;
            tip.last_hash = blockutil::header_hash(header);
            if let Some(index) = blockutil::last_config_index(block) {
                tip.last_config = index;
            }
        }
        self.inner.tree.apply_batch(batch)?;
        self.inner.db.flush()?;
        let height = tip.height;
        *self
            .inner
            .tip
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = tip;
        self.inner.height.send_replace(height);
        Ok(())
    }

    fn out_of_order(&self, got: u64, reason: &str) -> LedgerError {
        LedgerError::OutOfOrder {
            channel: self.inner.channel.clone(),
            got,
            reason: reason.into(),
        }
    }
}

fn encode_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

fn decode_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

fn decode_block(raw: &[u8]) -> Result<Block, String> {
    Block::decode(Bytes::copy_from_slice(raw)).map_err(|e| format!("cannot decode block: {e}"))
}

fn check_block(block: &Block, number: u64) -> Result<(), String> {
    let header = block.header.as_ref().ok_or("block has no header")?;
    if header.number != number {
        return Err(format!(
            "stored under number {number} but says {}",
            header.number
        ));
    }
    if header.data_hash != blockutil::data_hash(blockutil::entries(block)) {
        return Err("data_hash does not match the block's data".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channelconfig::genesis::GenesisProfile;

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
            store.append(&[next(&store, b"a")]).expect("append 1");
            store.append(&[next(&store, b"b")]).expect("append 2");
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
            store.append(&[wrong_number]),
            Err(LedgerError::OutOfOrder { .. })
        ));
        let wrong_hash =
            blockutil::new_block(1, Bytes::from_static(b"bogus"), vec![], 0, Bytes::new());
        assert!(matches!(
            store.append(&[wrong_hash]),
            Err(LedgerError::OutOfOrder { .. })
        ));
        assert_eq!(store.height(), 1);
        assert!(matches!(
            factory.create_store("c1", &genesis()),
            Err(LedgerError::AlreadyExists(_))
        ));
    }

    #[test]
    fn a_damaged_tail_is_reported_not_repaired() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let factory = LedgerFactory::open(dir.path()).expect("open");
            let store = factory.create_store("c1", &genesis()).expect("create");
            store.append(&[next(&store, b"a")]).expect("append");
            // Overwrite block 1 with a block whose data does not match its hash.
            let mut bad = next(&store, b"x");
            if let Some(h) = bad.header.as_mut() {
                h.number = 1;
            }
            if let Some(d) = bad.data.as_mut() {
                d.data = vec![Bytes::from_static(b"tampered")];
            }
            store
                .inner
                .tree
                .insert(encode_key(1), bad.encode_to_vec())
                .expect("insert");
            store.inner.db.flush().expect("flush");
        }
        let factory = LedgerFactory::open(dir.path()).expect("reopen");
        let err = factory.open_store("c1").err().expect("damaged");
        assert!(err.to_string().contains("damaged at block 1"), "{err}");
        // The bad block is still there: nothing was truncated.
        let tree = factory.db.open_tree(tree_name("c1")).expect("tree");
        assert_eq!(tree.len(), 2);
    }

    #[test]
    fn removing_a_store_drops_its_blocks() {
        let dir = tempfile::tempdir().expect("tempdir");
        let factory = LedgerFactory::open(dir.path()).expect("open");
        factory.create_store("c1", &genesis()).expect("create");
        factory.create_store("c2", &genesis()).expect("create");
        factory.remove_store("c1").expect("remove");
        assert_eq!(factory.channel_ids(), vec!["c2".to_string()]);
        assert!(matches!(
            factory.open_store("c1"),
            Err(LedgerError::NotFound(_))
        ));
    }
}
