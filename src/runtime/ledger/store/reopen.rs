//! The fault state of a store and how it is cleared: after a failed write,
//! sync or index update the store refuses appends until [`BlockStore::reopen`]
//! has recovered it from disk and proved that the disk takes writes again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::{lock, BlockStore};
use crate::runtime::faults::{self, points};
use crate::runtime::ledger::LedgerError;

/// The file `reopen` writes to prove the disk takes writes.
const PROBE_FILE: &str = ".probe";
/// The index key `reopen` writes to prove the index takes writes.
const PROBE_KEY: &[u8] = b"probe";
/// Size of one write of the probe file.
const PROBE_CHUNK: usize = 1024 * 1024;

impl BlockStore {
    /// Why appends are refused, if they are: the first failed write, fsync,
    /// index write or flush since the store was opened or last re-opened.
    pub fn fault(&self) -> Option<String> {
        lock(&self.inner.fault).clone()
    }

    pub(super) fn set_fault(&self, error: &LedgerError) {
        let mut fault = lock(&self.inner.fault);
        if fault.is_none() {
            tracing::error!(channel = %self.inner.channel, %error, "block store faulted; appends are refused until it is re-opened");
            *fault = Some(error.to_string());
        }
    }

    pub(super) fn refuse_if_faulted(&self) -> Result<(), LedgerError> {
        match self.fault() {
            Some(reason) => Err(LedgerError::Faulted {
                channel: self.inner.channel.clone(),
                reason,
            }),
            None => Ok(()),
        }
    }

    /// Recovers the store from disk after a fault and clears the fault once
    /// the disk takes writes again: the tail is checked and re-indexed as at
    /// open, the file writer is reset, then a probe file of `room` bytes is
    /// written, synced and removed, and a probe key is written to the index
    /// and flushed. Blocking: call it on the blocking pool, while no
    /// [`super::BlockWriter`] exists (else `WriterBusy`).
    pub fn reopen(&self, room: u64) -> Result<(), LedgerError> {
        if self
            .inner
            .writer_taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(LedgerError::WriterBusy(self.inner.channel.clone()));
        }
        let result = self.reopen_exclusive(room);
        self.inner.writer_taken.store(false, Ordering::Release);
        result
    }

    fn reopen_exclusive(&self, room: u64) -> Result<(), LedgerError> {
        *lock(&self.inner.writer) = None;
        self.reindex_unindexed_tail()?;
        self.probe_file(room)?;
        self.probe_index()?;
        if lock(&self.inner.fault).take().is_some() {
            tracing::info!(channel = %self.inner.channel, "block store re-opened; appends resume");
        }
        Ok(())
    }

    fn probe_file(&self, room: u64) -> Result<(), LedgerError> {
        let path = self.inner.dir.join(PROBE_FILE);
        let io = |source| self.file_error(&path, source);
        faults::check(points::LEDGER_APPEND_WRITE, &path).map_err(io)?;
        let written = write_probe(&path, room);
        let removed = std::fs::remove_file(&path);
        written.map_err(io)?;
        removed.map_err(io)
    }

    fn probe_index(&self) -> Result<(), LedgerError> {
        let tree = self.inner.db.open_tree(PROBE_KEY)?;
        tree.insert(PROBE_KEY, PROBE_KEY)?;
        self.inner.db.flush()?;
        tree.remove(PROBE_KEY)?;
        self.inner.db.flush()?;
        Ok(())
    }
}

fn write_probe(path: &Path, room: u64) -> std::io::Result<()> {
    let mut file: File = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(path)?;
    let chunk = vec![0u8; PROBE_CHUNK];
    let mut left = room;
    while left > 0 {
        let n = left.min(PROBE_CHUNK as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    faults::check(points::LEDGER_APPEND_SYNC, path)?;
    file.sync_all()
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;
    use crate::fabric::blockutil;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::protos::common::Block;
    use crate::runtime::ledger::LedgerFactory;
    use bytes::Bytes;

    fn next(store: &BlockStore) -> Block {
        let tip = store.tip();
        blockutil::new_block(
            tip.height,
            tip.last_hash,
            vec![Bytes::from_static(b"tx")],
            tip.last_config,
            Bytes::new(),
        )
    }

    #[test]
    fn a_failed_append_faults_the_store_until_it_is_reopened() {
        let _only_me = faults::exclusive();
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = dir.path().display().to_string();
        let factory = LedgerFactory::open(dir.path()).expect("open");
        let genesis = GenesisProfile::embedded("c1", vec![]).genesis_block();
        let store = factory.create_store("c1", &genesis).expect("create");
        let mut writer = store.writer().expect("writer");
        faults::configure(
            points::LEDGER_APPEND_SYNC,
            &format!("return(ENOSPC@{scope})"),
        )
        .expect("configure");
        let failed = writer.append(&[next(&store)]);
        assert!(failed.expect_err("injected").is_transient());
        assert!(store.fault().expect("faulted").contains("No space left"));
        let refused = writer.append(&[next(&store)]).expect_err("refused");
        assert!(matches!(refused, LedgerError::Faulted { .. }), "{refused}");
        assert!(matches!(
            store.reopen(1024),
            Err(LedgerError::WriterBusy(_))
        ));
        drop(writer);
        assert!(store.reopen(1024).is_err(), "the disk still fails");
        faults::configure(points::LEDGER_APPEND_SYNC, "off").expect("off");
        store.reopen(1024).expect("reopen");
        assert_eq!(store.fault(), None);
        let mut writer = store.writer().expect("writer");
        writer.append(&[next(&store)]).expect("append after reopen");
        writer.publish();
        assert!(store.block(store.height() - 1).expect("read").is_some());
    }
}
