//! Block reads for Deliver: off the async workers, through the channel's
//! cache of recent marshalled blocks.
//!
//! Reads run on tokio's blocking pool (`spawn_blocking`) rather than a pool of
//! our own: the ledger's writes already use it, its threads exist only while
//! there is work, and with the cache a channel followed at the head costs one
//! read per block. What the shared pool does not bound is how many reads run
//! at once (it grows to hundreds of threads), so a semaphore caps them: a
//! burst of streams catching up from disk queues here instead of starting a
//! thread each.

use bytes::Bytes;
use prost::Message;
use tokio::sync::Semaphore;

use super::cache::CacheReader;
use super::{BlockStore, LedgerError};
use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;

/// Block file reads running at once, over every channel. A read is a
/// `pread` of one record, usually from the page cache: a few per core keep
/// the disk busy without crowding the cores.
const CONCURRENT_READS: usize = 4;

static READS: Semaphore = Semaphore::const_new(CONCURRENT_READS);

impl BlockStore {
    /// Counts a Deliver stream as reading this channel until the guard is
    /// dropped: blocks are kept for sharing only while several streams read.
    pub fn deliver_reader(&self) -> CacheReader<'_> {
        self.cache().reader()
    }

    /// Block `number` as stored (the marshalled `common.Block`), or `None`
    /// beyond the height. Recently used blocks come from the shared cache; a miss
    /// is read once on the blocking pool, however many streams ask for it.
    pub async fn encoded_block(&self, number: u64) -> Result<Option<Bytes>, LedgerError> {
        let height = self.height();
        if number >= height {
            return Ok(None);
        }
        let store = self.clone();
        self.cache()
            .get_or_load(number, move || read_off_runtime(store, number))
            .await
            .map(Some)
    }
}

async fn read_off_runtime(store: BlockStore, number: u64) -> Result<Bytes, LedgerError> {
    let _permit = READS
        .acquire()
        .await
        .map_err(|e| LedgerError::ReadTask(e.to_string()))?;
    tokio::task::spawn_blocking(move || read_checked_record(&store, number))
        .await
        .map_err(|e| LedgerError::ReadTask(e.to_string()))?
}

/// Reads the record and checks, once per read rather than per stream, that
/// it is the block it is indexed as: a damaged record is reported, never
/// sent to a client.
fn read_checked_record(store: &BlockStore, number: u64) -> Result<Bytes, LedgerError> {
    let damaged = |reason: String| LedgerError::Damaged {
        channel: store.channel().to_string(),
        block: number,
        reason,
    };
    let bytes = store
        .block_bytes(number)?
        .ok_or_else(|| damaged("it is beyond the height".into()))?;
    let block =
        Block::decode(bytes.clone()).map_err(|e| damaged(format!("cannot decode block: {e}")))?;
    let found = blockutil::number(&block);
    if found != number {
        return Err(damaged(format!("indexed as {number} but says {found}")));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::runtime::ledger::LedgerFactory;

    fn store_with_blocks(dir: &std::path::Path, blocks: u64) -> BlockStore {
        let genesis = GenesisProfile::embedded("c1", vec![]).genesis_block();
        let factory = LedgerFactory::open(dir).expect("open");
        let store = factory.create_store("c1", &genesis).expect("create");
        let mut writer = store.writer().expect("writer");
        for i in 0..blocks {
            let tip = store.tip();
            let block = blockutil::new_block(
                tip.height,
                tip.last_hash,
                vec![Bytes::from(format!("tx {i}"))],
                tip.last_config,
                Bytes::new(),
            );
            writer.append(&[block]).expect("append");
            writer.publish();
        }
        store
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn encoded_blocks_are_the_stored_blocks_marshalled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_blocks(dir.path(), 3);
        for n in 0..4 {
            let block = store.block(n).expect("read");
            let encoded = store.encoded_block(n).await.expect("read encoded");
            assert_eq!(encoded, block.map(|b| Bytes::from(b.encode_to_vec())));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn followers_at_the_head_share_the_cached_bytes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_with_blocks(dir.path(), 2);
        let _followers = (store.deliver_reader(), store.deliver_reader());
        let first = store.encoded_block(2).await.expect("read").expect("block");
        let again = store.encoded_block(2).await.expect("read").expect("block");
        assert_eq!(first.as_ptr(), again.as_ptr(), "one buffer, shared");
        assert!(store.cache().holds(2));
    }
}
