//! The Raft storage of one etcdraft channel: its log and hard state in a
//! write-ahead log of its own, read by raft-rs through [`raft::Storage`].
//!
//! Entries carry whole blocks, so they are neither kept in memory without
//! bound nor stored in sled (which keeps values in memory): only the most
//! recent entries are cached ([`StorageOptions::cache_bytes`]); older ones
//! are read back from the segment files, found through an index of every
//! live entry (segment, offset, length, term) that stays in memory.
//!
//! # Files
//!
//! The channel's WAL folder holds append-only segment files named
//! `<16-hex sequence>-<16-hex first index>.wal` (the index of the first
//! entry expected in it, for people reading the folder). A segment is
//! closed once it passes [`StorageOptions::segment_bytes`] and the next one
//! starts with a ConfState and a HardState record, so it can be read
//! without the ones before it. Each segment is a sequence of records:
//!
//! ```text
//! u32 LE payload length | u32 LE CRC-32 of kind and payload | u8 kind | payload
//! ```
//!
//! with kinds 1 = Entry, 2 = HardState, 3 = ConfState, each payload the
//! rust-protobuf encoding of that eraftpb message. Records are only appended:
//! an entry record at index `i` replaces every entry `>= i` written before
//! it (a follower's conflicting suffix), as etcd's WAL does. Recovery reads
//! the segments in order and replays their records. A bad record (length
//! past the end of the file, wrong checksum) with no whole record after it,
//! in the last segment, is a write a crash cut short, never acknowledged: it
//! is cut off with a warning. One anywhere else is damage, and opening fails.
//! Every write ends with an fdatasync of its segment, and the folder is
//! fsynced when a segment is created, before anything is made visible. A
//! write that fails is cut off again (its records may be in the page cache
//! though not on disk, and must not be read back as durable after a
//! restart), and nothing more is written until the storage is opened again.
//!
//! With the `failpoints` feature each of these steps checks its failpoint
//! first (`RAFT_WAL_*` in `runtime::faults::points`: a record write, an
//! fsync, a segment's creation, a folder's sync, the cut of a tail) and
//! reports it to the durability journal, so the fault and crash tests can
//! fail, crash or cut the power at each of them.
//!
//! The snapshot folder is created for the snapshots that come with log
//! compaction; nothing is written there yet.

mod wal;

use std::collections::{btree_map, BTreeMap, VecDeque};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard};

use protobuf::Message as _;
use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState};

use wal::{RecordBuf, RecordKind, Segment, WalWriter};

/// Storage failures. Damage is reported, never repaired silently.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("WAL segment {} is damaged at offset {offset}: {reason}", path.display())]
    Corrupt {
        path: PathBuf,
        offset: u64,
        reason: String,
    },
    #[error("{} is named like a WAL segment but its name is not <16 hex>-<16 hex>.wal", path.display())]
    BadSegmentName { path: PathBuf },
    #[error("WAL folder {} lacks segment {seq:016x}", dir.display())]
    MissingSegment { dir: PathBuf, seq: u64 },
    #[error("WAL {}: refusing to persist entry {index}: {reason}", dir.display())]
    Refused {
        dir: PathBuf,
        index: u64,
        reason: String,
    },
    #[error("WAL {}: an earlier write failed, so nothing more is written until it is opened again", dir.display())]
    Failed { dir: PathBuf },
}

impl StorageError {
    fn io(action: &'static str, path: &Path, source: std::io::Error) -> StorageError {
        StorageError::Io {
            action,
            path: path.to_path_buf(),
            source,
        }
    }

    fn corrupt(path: &Path, offset: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupt {
            path: path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct StorageOptions {
    /// Bytes of recent entries kept in memory (default 32 MB); older entries are read back
    /// from the segment files when raft asks for them (a lagging follower).
    pub cache_bytes: usize,
    /// A segment file is closed and a new one started past this size (default 64 MB).
    pub segment_bytes: u64,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            cache_bytes: 32 * 1024 * 1024,
            segment_bytes: segment_bytes_for_tests().unwrap_or(64 * 1024 * 1024),
        }
    }
}

/// With the `failpoints` feature, `ORDO_WAL_SEGMENT_BYTES` makes segments
/// small, so that the crash tests start new segments under load.
#[cfg(feature = "failpoints")]
fn segment_bytes_for_tests() -> Option<u64> {
    std::env::var("ORDO_WAL_SEGMENT_BYTES").ok()?.parse().ok()
}

#[cfg(not(feature = "failpoints"))]
fn segment_bytes_for_tests() -> Option<u64> {
    None
}

/// Creates `dir` and the folders above it that are missing, and syncs the
/// parent of each one it created: a power loss must not take away a folder
/// whose files were synced.
fn create_dir_durably(dir: &Path) -> Result<(), StorageError> {
    let mut missing = Vec::new();
    let mut at = dir;
    while !at.as_os_str().is_empty() && !at.exists() {
        missing.push(at);
        match at.parent() {
            Some(parent) => at = parent,
            None => break,
        }
    }
    std::fs::create_dir_all(dir).map_err(|source| StorageError::io("create", dir, source))?;
    for created in missing.iter().rev() {
        match created.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => wal::sync_dir(parent)?,
            _ => wal::sync_dir(Path::new("."))?,
        }
    }
    Ok(())
}

/// What one Raft `Ready` asks to make durable.
#[derive(Debug, Clone, Default)]
pub struct PersistBatch {
    /// May start at or below the last index: the suffix from `entries[0].index` is replaced.
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

/// Where an entry's record is. Kept for every live entry, so it stays small.
#[derive(Debug, Clone, Copy)]
struct EntryLocation {
    segment: u64,
    /// Offset of the record (its header) in the segment.
    offset: u64,
    /// Payload length: the encoded entry's size, as raft-rs counts it.
    len: u32,
    term: u64,
}

/// The most recent entries, contiguous up to the last index.
struct EntryCache {
    entries: VecDeque<(Entry, u32)>,
    bytes: usize,
    limit: usize,
}

impl EntryCache {
    fn get(&self, index: u64) -> Option<&Entry> {
        let first = self.entries.front()?.0.index;
        let position = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(position).map(|(entry, _)| entry)
    }

    fn truncate_from(&mut self, index: u64) {
        while let Some((entry, size)) = self.entries.back() {
            if entry.index < index {
                break;
            }
            self.bytes -= *size as usize;
            self.entries.pop_back();
        }
    }

    fn push(&mut self, entry: Entry, size: u32) {
        self.bytes += size as usize;
        self.entries.push_back((entry, size));
        while self.bytes > self.limit {
            match self.entries.pop_front() {
                Some((_, size)) => self.bytes -= size as usize,
                None => break,
            }
        }
    }
}

/// What raft-rs sees: only what is durable.
struct LogState {
    hard_state: HardState,
    conf_state: ConfState,
    /// Index and term of the entry before the first one kept: a snapshot's,
    /// once there are snapshots; 0 while nothing is compacted.
    before_first: (u64, u64),
    /// One per entry from `first_index()` on.
    locations: Vec<EntryLocation>,
    cache: EntryCache,
    segments: BTreeMap<u64, PathBuf>,
}

impl LogState {
    fn first_index(&self) -> u64 {
        self.before_first.0 + 1
    }

    fn last_index(&self) -> u64 {
        self.before_first.0 + self.locations.len() as u64
    }

    fn location(&self, index: u64) -> Option<&EntryLocation> {
        let position = index.checked_sub(self.first_index())?;
        self.locations.get(usize::try_from(position).ok()?)
    }

    /// Why an entry at `index` cannot follow the log, if it cannot.
    fn refuse(&self, index: u64) -> Option<String> {
        if index < self.first_index() {
            Some(format!(
                "it is below the first index {}",
                self.first_index()
            ))
        } else if index > self.last_index() + 1 {
            Some(format!(
                "it leaves a gap after the last index {}",
                self.last_index()
            ))
        } else {
            None
        }
    }

    /// Adds an entry, replacing those from its index on.
    fn add(&mut self, entry: Entry, location: EntryLocation) {
        let kept = entry.index.saturating_sub(self.first_index());
        self.locations
            .truncate(usize::try_from(kept).unwrap_or(usize::MAX));
        self.cache.truncate_from(entry.index);
        self.locations.push(location);
        self.cache.push(entry, location.len);
    }

    /// The records a new segment starts with.
    fn header(&self) -> Result<Vec<u8>, String> {
        let mut buf = RecordBuf::default();
        buf.push(RecordKind::ConfState, &self.conf_state)?;
        buf.push(RecordKind::HardState, &self.hard_state)?;
        Ok(buf.bytes)
    }
}

struct Shared {
    dir: PathBuf,
    fresh: bool,
    /// Held for a whole write, so writes are never interleaved; the state is
    /// locked only to publish what a write made durable, so raft-rs reads
    /// are not held up by the sync.
    writer: Mutex<WalWriter>,
    state: RwLock<LogState>,
}

/// The Raft log and hard state of one channel (see the module's doc).
#[derive(Clone)]
pub struct RaftStorage {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RaftStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RaftStorage")
            .field("wal", &self.shared.dir)
            .field("last_index", &self.last_index())
            .finish_non_exhaustive()
    }
}

impl RaftStorage {
    /// Opens or creates the storage of one channel. `wal_dir` and `snap_dir`
    /// are the channel's own folders, created if missing. Blocking (the
    /// caller runs it on the blocking pool). A fresh storage starts with
    /// `ConfState{voters: initial_voters}` (written to the WAL); an existing
    /// one recovers from its WAL and ignores `initial_voters`.
    pub fn open(
        wal_dir: &Path,
        snap_dir: &Path,
        initial_voters: &[u64],
        options: StorageOptions,
    ) -> Result<RaftStorage, StorageError> {
        for dir in [wal_dir, snap_dir] {
            create_dir_durably(dir)?;
        }
        let mut state = LogState {
            hard_state: HardState::default(),
            conf_state: ConfState::default(),
            before_first: (0, 0),
            locations: Vec::new(),
            cache: EntryCache {
                entries: VecDeque::new(),
                bytes: 0,
                limit: options.cache_bytes,
            },
            segments: BTreeMap::new(),
        };
        let segments = wal::list_segments(wal_dir)?;
        let mut records = 0u64;
        let mut conf_state_seen = false;
        let mut last_len = 0;
        for (position, segment) in segments.iter().enumerate() {
            let is_last = position + 1 == segments.len();
            last_len = wal::scan(segment, is_last, |kind, payload, offset| {
                records += 1;
                let corrupt = |reason: String| StorageError::corrupt(&segment.path, offset, reason);
                match kind {
                    RecordKind::Entry => {
                        let entry = Entry::parse_from_bytes(&payload)
                            .map_err(|e| corrupt(format!("not an entry: {e}")))?;
                        if let Some(reason) = state.refuse(entry.index) {
                            return Err(corrupt(format!("entry {}: {reason}", entry.index)));
                        }
                        let location = EntryLocation {
                            segment: segment.seq,
                            offset,
                            len: payload.len() as u32,
                            term: entry.term,
                        };
                        state.add(entry, location);
                    }
                    RecordKind::HardState => {
                        state.hard_state = HardState::parse_from_bytes(&payload)
                            .map_err(|e| corrupt(format!("not a hard state: {e}")))?;
                    }
                    RecordKind::ConfState => {
                        state.conf_state = ConfState::parse_from_bytes(&payload)
                            .map_err(|e| corrupt(format!("not a conf state: {e}")))?;
                        conf_state_seen = true;
                    }
                }
                Ok(())
            })?;
            state.segments.insert(segment.seq, segment.path.clone());
        }

        let fresh = records == 0;
        if fresh {
            state.conf_state = ConfState {
                voters: initial_voters.to_vec(),
                ..Default::default()
            };
        } else if let Some(last) = segments.last() {
            if !conf_state_seen {
                return Err(StorageError::corrupt(
                    &last.path,
                    0,
                    "no ConfState record in the WAL",
                ));
            }
            if state.hard_state.commit > state.last_index() {
                return Err(StorageError::corrupt(
                    &last.path,
                    last_len,
                    format!(
                        "the hard state commits index {} past the last entry {}",
                        state.hard_state.commit,
                        state.last_index()
                    ),
                ));
            }
        }

        let mut writer = match segments.last() {
            Some(last) => WalWriter::resume(wal_dir, last, last_len, options.segment_bytes)?,
            None => {
                let (writer, segment) = WalWriter::create(wal_dir, 0, 1, options.segment_bytes)?;
                state.segments.insert(segment.seq, segment.path);
                writer
            }
        };
        // A segment without records (a fresh one, or one a crash left empty)
        // gets its header now: the initial ConfState is durable from the start.
        if writer.is_empty() {
            let header = state.header().map_err(|reason| StorageError::Refused {
                dir: wal_dir.to_path_buf(),
                index: 0,
                reason,
            })?;
            writer.append(&[], &header, state.last_index() + 1)?;
        }
        tracing::info!(
            wal = %wal_dir.display(),
            fresh,
            segments = state.segments.len(),
            last_index = state.last_index(),
            term = state.hard_state.term,
            commit = state.hard_state.commit,
            "opened the Raft storage"
        );
        Ok(RaftStorage {
            shared: Arc::new(Shared {
                dir: wal_dir.to_path_buf(),
                fresh,
                writer: Mutex::new(writer),
                state: RwLock::new(state),
            }),
        })
    }

    /// True if open found no earlier state.
    pub fn is_fresh(&self) -> bool {
        self.shared.fresh
    }

    /// Appends entries and the hard state, syncs them, and only then makes
    /// them visible through [`raft::Storage`]. Blocking. Returns when durable.
    pub fn persist(&self, batch: PersistBatch) -> Result<(), StorageError> {
        self.write(batch.entries, batch.hard_state, None)
    }

    /// Records the ConfState raft-rs answered after applying a conf change,
    /// so that a restart starts from it. Blocking. Returns when durable.
    pub fn persist_conf_state(&self, conf_state: ConfState) -> Result<(), StorageError> {
        self.write(Vec::new(), None, Some(conf_state))
    }

    /// Last index as persisted (for logs, metrics and tests).
    pub fn last_index(&self) -> u64 {
        self.read().last_index()
    }

    /// Hard state as persisted.
    pub fn hard_state(&self) -> HardState {
        self.read().hard_state.clone()
    }

    /// ConfState as persisted.
    pub fn conf_state(&self) -> ConfState {
        self.read().conf_state.clone()
    }

    fn read(&self) -> RwLockReadGuard<'_, LogState> {
        // The state is changed only after a write is durable, in steps that
        // cannot panic half-way, so a poisoned lock still guards a sound state.
        self.shared
            .state
            .read()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn write(
        &self,
        entries: Vec<Entry>,
        hard_state: Option<HardState>,
        conf_state: Option<ConfState>,
    ) -> Result<(), StorageError> {
        if entries.is_empty() && hard_state.is_none() && conf_state.is_none() {
            return Ok(());
        }
        let refused = |index, reason| StorageError::Refused {
            dir: self.shared.dir.clone(),
            index,
            reason,
        };
        let mut writer = self
            .shared
            .writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        // Only this writer changes the state, so what it reads now holds until it publishes.
        let (next_index, header) = {
            let state = self.read();
            if let Some(first) = entries.first() {
                if let Some(reason) = state.refuse(first.index) {
                    return Err(refused(first.index, reason));
                }
            }
            let next_index = entries.first().map_or(state.last_index() + 1, |e| e.index);
            (
                next_index,
                state.header().map_err(|r| refused(next_index, r))?,
            )
        };

        let mut buf = RecordBuf::default();
        let mut placed = Vec::with_capacity(entries.len());
        for (position, entry) in entries.iter().enumerate() {
            if position > 0 && entry.index != entries[position - 1].index + 1 {
                return Err(refused(
                    entry.index,
                    "the entries are not consecutive".into(),
                ));
            }
            placed.push(
                buf.push(RecordKind::Entry, entry)
                    .map_err(|reason| refused(entry.index, reason))?,
            );
        }
        if let Some(hard_state) = &hard_state {
            buf.push(RecordKind::HardState, hard_state)
                .map_err(|reason| refused(next_index, reason))?;
        }
        if let Some(conf_state) = &conf_state {
            buf.push(RecordKind::ConfState, conf_state)
                .map_err(|reason| refused(next_index, reason))?;
        }

        let written = writer.append(&buf.bytes, &header, next_index)?;

        let mut state = self
            .shared
            .state
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(Segment { seq, path }) = written.new_segment {
            state.segments.insert(seq, path);
        }
        for (entry, (offset, len)) in entries.into_iter().zip(placed) {
            let location = EntryLocation {
                segment: written.seq,
                offset: written.base + offset,
                len,
                term: entry.term,
            };
            state.add(entry, location);
        }
        if let Some(hard_state) = hard_state {
            state.hard_state = hard_state;
        }
        if let Some(conf_state) = conf_state {
            state.conf_state = conf_state;
        }
        Ok(())
    }

    /// Reads the entries `[low, low + count)` from the cache or their segments.
    fn load(&self, state: &LogState, low: u64, count: u64) -> Result<Vec<Entry>, StorageError> {
        let mut entries = Vec::with_capacity(usize::try_from(count).unwrap_or(0));
        let mut files = BTreeMap::new();
        for index in low..low + count {
            if let Some(entry) = state.cache.get(index) {
                entries.push(entry.clone());
                continue;
            }
            let missing = |reason: &str| StorageError::Refused {
                dir: self.shared.dir.clone(),
                index,
                reason: reason.into(),
            };
            let location = state
                .location(index)
                .ok_or_else(|| missing("no such entry"))?;
            let path = (state.segments.get(&location.segment))
                .ok_or_else(|| missing("its segment is not known"))?;
            let file = match files.entry(location.segment) {
                btree_map::Entry::Occupied(open) => open.into_mut(),
                btree_map::Entry::Vacant(slot) => slot.insert(
                    File::open(path).map_err(|source| StorageError::io("open", path, source))?,
                ),
            };
            let (kind, payload) = wal::read_record(file, path, location.offset)?;
            let entry = match kind {
                RecordKind::Entry => Entry::parse_from_bytes(&payload).ok(),
                _ => None,
            };
            match entry {
                Some(entry) if entry.index == index && entry.term == location.term => {
                    entries.push(entry)
                }
                _ => {
                    return Err(StorageError::corrupt(
                        path,
                        location.offset,
                        format!("the record is not entry {index} any more"),
                    ))
                }
            }
        }
        Ok(entries)
    }
}

fn store_error(error: raft::StorageError) -> raft::Error {
    raft::Error::Store(error)
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<RaftState> {
        let state = self.read();
        Ok(RaftState::new(
            state.hard_state.clone(),
            state.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let state = self.read();
        if low < state.first_index() {
            return Err(store_error(raft::StorageError::Compacted));
        }
        if high > state.last_index() + 1 {
            return Err(store_error(raft::StorageError::Unavailable));
        }
        let max_size = match max_size.into() {
            None | Some(raft::NO_LIMIT) => u64::MAX,
            Some(max) => max,
        };
        // As raft-rs's `limit_size`: at least one entry, then while the total fits.
        let mut count = 0;
        let mut size = 0u64;
        for index in low..high {
            let len = state.location(index).map_or(0, |l| u64::from(l.len));
            if count > 0 && size.saturating_add(len) > max_size {
                break;
            }
            size = size.saturating_add(len);
            count += 1;
        }
        self.load(&state, low, count).map_err(|error| {
            tracing::error!(%error, low, high, "cannot read Raft entries back");
            store_error(raft::StorageError::Other(Box::new(error)))
        })
    }

    fn term(&self, index: u64) -> raft::Result<u64> {
        let state = self.read();
        if index == state.before_first.0 {
            return Ok(state.before_first.1);
        }
        if index < state.first_index() {
            return Err(store_error(raft::StorageError::Compacted));
        }
        match state.location(index) {
            Some(location) => Ok(location.term),
            None => Err(store_error(raft::StorageError::Unavailable)),
        }
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(self.read().first_index())
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(self.read().last_index())
    }

    fn snapshot(&self, _request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        Err(store_error(
            raft::StorageError::SnapshotTemporarilyUnavailable,
        ))
    }
}

#[cfg(test)]
mod tests;
