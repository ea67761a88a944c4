//! Temporary in-memory stand-in for the WAL storage (same API).
#![allow(dead_code)]
use std::path::Path;

use raft::eraftpb::{ConfState, Entry, HardState};
use raft::storage::MemStorage;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StorageError(String);

#[derive(Default)]
pub struct StorageOptions {}

#[derive(Default)]
pub struct PersistBatch {
    pub entries: Vec<Entry>,
    pub hard_state: Option<HardState>,
}

#[derive(Clone)]
pub struct RaftStorage(MemStorage);

impl RaftStorage {
    pub fn open(
        _: &Path,
        _: &Path,
        voters: &[u64],
        _: StorageOptions,
    ) -> Result<RaftStorage, StorageError> {
        Ok(RaftStorage(MemStorage::new_with_conf_state(ConfState::from((
            voters.to_vec(),
            vec![],
        )))))
    }
    pub fn is_fresh(&self) -> bool {
        true
    }
    pub fn persist(&self, batch: PersistBatch) -> Result<(), StorageError> {
        let mut w = self.0.wl();
        if !batch.entries.is_empty() {
            w.append(&batch.entries).map_err(|e| StorageError(e.to_string()))?;
        }
        if let Some(hs) = batch.hard_state {
            w.set_hardstate(hs);
        }
        Ok(())
    }
    pub fn last_index(&self) -> u64 {
        raft::Storage::last_index(&self.0).unwrap_or(0)
    }
    pub fn hard_state(&self) -> HardState {
        self.0.rl().hard_state().clone()
    }
}

impl raft::Storage for RaftStorage {
    fn initial_state(&self) -> raft::Result<raft::RaftState> {
        self.0.initial_state()
    }
    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        context: raft::GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        self.0.entries(low, high, max_size, context)
    }
    fn term(&self, idx: u64) -> raft::Result<u64> {
        self.0.term(idx)
    }
    fn first_index(&self) -> raft::Result<u64> {
        self.0.first_index()
    }
    fn last_index(&self) -> raft::Result<u64> {
        self.0.last_index()
    }
    fn snapshot(&self, request_index: u64, to: u64) -> raft::Result<raft::eraftpb::Snapshot> {
        self.0.snapshot(request_index, to)
    }
}
