//! Recent blocks, kept marshalled and shared by a channel's Deliver streams.
//!
//! Streams following the head all ask for the same block as soon as the
//! height moves. The first of them reads it from the block file; the others
//! wait for that read and get a refcounted clone of the same bytes, so a
//! hundred followers cost one read per block, not a hundred.
//!
//! The block used least recently goes first. Followers at the head keep the
//! newest blocks in use; followers that fell behind together (a slow network,
//! a busy node) still share the blocks they are on, which a cache of only the
//! newest blocks would not hold. A lone stream replaying old blocks only pushes
//! out blocks nobody has used since, and a block pushed out too early costs one
//! more read. Blocks are immutable once durable, so nothing is invalidated.
//!
//! With one stream reading the channel there is nothing to share: blocks are
//! read and not kept, and when the readers fall to one the cache empties, so
//! a node with a single follower (the usual benchmark, a lone peer) holds no
//! more memory than without the cache.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use bytes::Bytes;
use tokio::sync::OnceCell;

use super::LedgerError;

/// How much the cache holds. Whichever bound is reached first evicts the
/// block used least recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// Blocks kept.
    pub blocks: usize,
    /// Marshalled bytes kept.
    pub bytes: usize,
}

impl Default for CacheLimits {
    /// Enough for followers spread over a few dozen small blocks, or over
    /// eight full 2 MB ones (Fabric's default PreferredMaxBytes). 16 MB is
    /// half the node's usual working set, and 100 followers at the head did
    /// no worse with it than with 32 MB (docs/benchmarks.md).
    fn default() -> CacheLimits {
        CacheLimits {
            blocks: 64,
            bytes: 16 * 1024 * 1024,
        }
    }
}

type Slot = Arc<OnceCell<Bytes>>;

struct Entry {
    slot: Slot,
    /// Bytes counted against the bound; 0 while its read is running.
    bytes: usize,
    /// When it was last asked for (a tick of the cache's clock).
    used: u64,
}

#[derive(Default)]
struct State {
    entries: BTreeMap<u64, Entry>,
    bytes: usize,
    /// Counts requests: orders entries by last use.
    clock: u64,
}

impl State {
    fn clear(&mut self) {
        self.entries.clear();
        self.bytes = 0;
    }
}

impl State {
    /// Evicts the blocks used least recently until within limits. A scan:
    /// the cache holds a few dozen entries.
    fn trim(&mut self, limits: CacheLimits) {
        while self.entries.len() > limits.blocks || self.bytes > limits.bytes {
            let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(n, _)| *n)
            else {
                break;
            };
            if let Some(evicted) = self.entries.remove(&oldest) {
                self.bytes -= evicted.bytes;
            }
        }
    }
}

/// What a cache holds: loaded or loading blocks, and loaded bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub blocks: usize,
    pub bytes: usize,
}

/// One channel's cache of marshalled blocks.
pub struct BlockCache {
    limits: CacheLimits,
    state: Mutex<State>,
    /// Streams reading the channel's blocks now.
    readers: AtomicUsize,
}

/// A stream reading the channel's blocks, counted while it lives.
pub struct CacheReader<'a> {
    cache: &'a BlockCache,
}

impl Drop for CacheReader<'_> {
    fn drop(&mut self) {
        let before = self.cache.readers.fetch_sub(1, Ordering::AcqRel);
        if before <= 2 {
            // One reader left, or none: nothing to share any more.
            self.cache.state().clear();
        }
    }
}

impl BlockCache {
    pub fn new(limits: CacheLimits) -> BlockCache {
        BlockCache {
            limits,
            state: Mutex::new(State::default()),
            readers: AtomicUsize::new(0),
        }
    }

    /// Counts a stream as reading blocks until the guard is dropped. Blocks
    /// are kept only while more than one stream reads.
    pub fn reader(&self) -> CacheReader<'_> {
        self.readers.fetch_add(1, Ordering::AcqRel);
        CacheReader { cache: self }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Block `number`: from the cache, or from `load`, run once however many
    /// callers ask for the block at the same time. A failed load is not kept;
    /// the next caller tries again. With fewer than two readers, just `load`.
    pub async fn get_or_load<F, Fut>(&self, number: u64, load: F) -> Result<Bytes, LedgerError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Bytes, LedgerError>>,
    {
        if self.limits.blocks == 0 || self.readers.load(Ordering::Acquire) < 2 {
            return load().await;
        }
        let slot = {
            let mut state = self.state();
            state.clock += 1;
            let used = state.clock;
            let entry = state.entries.entry(number).or_insert_with(|| Entry {
                slot: Slot::default(),
                bytes: 0,
                used,
            });
            entry.used = used;
            let slot = entry.slot.clone();
            state.trim(self.limits);
            slot
        };
        let bytes = slot
            .get_or_try_init(|| async {
                let bytes = load().await?;
                self.admit(number, &slot, bytes.len());
                Ok::<_, LedgerError>(bytes)
            })
            .await?;
        Ok(bytes.clone())
    }

    /// Counts a loaded block against the byte bound, unless it was evicted
    /// while it was being read.
    fn admit(&self, number: u64, slot: &Slot, len: usize) {
        let mut state = self.state();
        let Some(entry) = state.entries.get_mut(&number) else {
            return;
        };
        if !Arc::ptr_eq(&entry.slot, slot) {
            return;
        }
        entry.bytes = len;
        state.bytes += len;
        state.trim(self.limits);
    }

    /// What the cache holds now.
    pub fn stats(&self) -> CacheStats {
        let state = self.state();
        CacheStats {
            blocks: state.entries.len(),
            bytes: state.bytes,
        }
    }

    /// Whether block `number` is held, loaded.
    pub fn holds(&self, number: u64) -> bool {
        self.state()
            .entries
            .get(&number)
            .is_some_and(|e| e.slot.initialized())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn limits(blocks: usize, bytes: usize) -> CacheLimits {
        CacheLimits { blocks, bytes }
    }

    async fn load(cache: &BlockCache, number: u64, len: usize, reads: &AtomicUsize) -> Bytes {
        cache
            .get_or_load(number, || async {
                reads.fetch_add(1, Ordering::SeqCst);
                Ok(Bytes::from(vec![number as u8; len]))
            })
            .await
            .expect("load")
    }

    #[tokio::test]
    async fn a_second_read_of_a_block_is_a_hit() {
        let cache = BlockCache::new(limits(4, 1024));
        let _readers = (cache.reader(), cache.reader());
        let reads = AtomicUsize::new(0);
        let first = load(&cache, 7, 10, &reads).await;
        let second = load(&cache, 7, 10, &reads).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert_eq!(first, second);
        // The same buffer, not a copy.
        assert_eq!(first.as_ptr(), second.as_ptr());
        assert_eq!(
            cache.stats(),
            CacheStats {
                blocks: 1,
                bytes: 10
            }
        );
    }

    #[tokio::test]
    async fn the_oldest_block_goes_first_when_the_count_is_reached() {
        let cache = BlockCache::new(limits(3, 1024));
        let _readers = (cache.reader(), cache.reader());
        let reads = AtomicUsize::new(0);
        for n in 0..4 {
            load(&cache, n, 10, &reads).await;
        }
        assert!(!cache.holds(0));
        assert!((1..4).all(|n| cache.holds(n)));
        assert_eq!(
            cache.stats(),
            CacheStats {
                blocks: 3,
                bytes: 30
            }
        );
    }

    #[tokio::test]
    async fn the_oldest_blocks_go_first_when_the_bytes_are_reached() {
        let cache = BlockCache::new(limits(10, 100));
        let _readers = (cache.reader(), cache.reader());
        let reads = AtomicUsize::new(0);
        for n in 0..3 {
            load(&cache, n, 40, &reads).await;
        }
        assert!(!cache.holds(0));
        assert!(cache.holds(1) && cache.holds(2));
        assert_eq!(
            cache.stats(),
            CacheStats {
                blocks: 2,
                bytes: 80
            }
        );
        // A block larger than the whole bound is served but not kept.
        let big = load(&cache, 3, 500, &reads).await;
        assert_eq!(big.len(), 500);
        assert!(!cache.holds(3));
        assert!(cache.stats().bytes <= 100);
    }

    #[tokio::test]
    async fn a_block_still_in_use_outlives_older_unused_ones() {
        let cache = BlockCache::new(limits(3, 1024));
        let _readers = (cache.reader(), cache.reader());
        let reads = AtomicUsize::new(0);
        for n in 0..3 {
            load(&cache, n, 10, &reads).await;
        }
        // Followers still on block 0 keep it; block 1 is now the least used.
        load(&cache, 0, 10, &reads).await;
        load(&cache, 3, 10, &reads).await;
        assert!(cache.holds(0) && !cache.holds(1));
        assert!(cache.holds(2) && cache.holds(3));
        assert_eq!(reads.load(Ordering::SeqCst), 4);
    }

    #[tokio::test]
    async fn a_lone_reader_keeps_nothing_and_the_last_but_one_empties_the_cache() {
        let cache = BlockCache::new(limits(4, 1024));
        let reads = AtomicUsize::new(0);
        let first = cache.reader();
        load(&cache, 1, 10, &reads).await;
        load(&cache, 1, 10, &reads).await;
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        assert_eq!(cache.stats(), CacheStats::default());
        let second = cache.reader();
        load(&cache, 2, 10, &reads).await;
        assert!(cache.holds(2));
        drop(second);
        assert_eq!(cache.stats(), CacheStats::default());
        drop(first);
    }

    #[tokio::test]
    async fn concurrent_readers_of_a_new_block_share_one_read() {
        let cache = Arc::new(BlockCache::new(limits(4, 1024)));
        let _readers = (cache.reader(), cache.reader());
        let reads = Arc::new(AtomicUsize::new(0));
        let gate = Arc::new(tokio::sync::Notify::new());
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, reads, gate) = (cache.clone(), reads.clone(), gate.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_load(5, || async {
                        reads.fetch_add(1, Ordering::SeqCst);
                        // Hold the read open until every task is waiting on it.
                        gate.notified().await;
                        Ok(Bytes::from_static(b"block five"))
                    })
                    .await
                    .expect("load")
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        gate.notify_one();
        for task in tasks {
            assert_eq!(task.await.expect("task"), Bytes::from_static(b"block five"));
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let cache = BlockCache::new(limits(4, 1024));
        let _readers = (cache.reader(), cache.reader());
        let failed = cache
            .get_or_load(1, || async { Err(LedgerError::NotFound("c1".into())) })
            .await;
        assert!(failed.is_err());
        let reads = AtomicUsize::new(0);
        load(&cache, 1, 3, &reads).await;
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        assert!(cache.holds(1));
    }
}
