//! The fault state of a store and how it is cleared: after a failed write,
//! sync or index update the store refuses appends until [`BlockStore::reopen`]
//! has recovered it from disk and proved that the disk takes writes again.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::atomic::Ordering;

use super::files::{self, block_files, file_path};
use super::index::{close_index, open_index};
use super::recovery::Opening;
use super::{lock, read_lock, write_lock, BlockStore};
use crate::runtime::faults::{self, points};
use crate::runtime::ledger::LedgerError;

/// The file `reopen` writes to prove the disk takes writes.
const PROBE_FILE: &str = ".probe";
/// The index tree `reopen` writes to, apart from the blocks' entries.
const PROBE_TREE: &[u8] = b"probe";
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
    /// the disk takes writes again. Records the failed append wrote and never
    /// synced are cut off (a failed fsync may have lost them while the page
    /// cache still shows them); the index is closed and opened again; the
    /// tail is checked, re-indexed and cut as at open; the file writer is
    /// reset. Then a probe file of `room` bytes is written, synced and
    /// removed in the channel's folder, and a probe key is written to the
    /// index, flushed and removed. Published blocks stay readable: a read
    /// meanwhile waits for the new index. Blocks the failed append made
    /// durable may now be part of the chain (see [`BlockStore::tip`]); they
    /// are published by the next writer. Blocking: call it on the blocking
    /// pool, while no [`super::BlockWriter`] exists (else `WriterBusy`).
    pub fn reopen(&self, room: u64) -> Result<(), LedgerError> {
        let _maintenance = lock(&self.inner.maintenance);
        if self.inner.removed.load(Ordering::Acquire) {
            return Err(LedgerError::NotFound(self.inner.channel.clone()));
        }
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
        if let Err(error) = &result {
            tracing::warn!(channel = %self.inner.channel, %error, "re-opening the block store failed; appends stay refused");
            self.set_fault(error);
        }
        result
    }

    fn reopen_exclusive(&self, room: u64) -> Result<(), LedgerError> {
        *lock(&self.inner.writer) = None;
        self.discard_unsynced()?;
        self.reopen_index()?;
        self.probe_file(room)?;
        self.probe_index()?;
        if lock(&self.inner.fault).take().is_some() {
            tracing::info!(channel = %self.inner.channel, "block store re-opened; appends resume");
        }
        Ok(())
    }

    /// Cuts off what the last append wrote and did not sync: the rest of its
    /// file and any file it started.
    pub(super) fn discard_unsynced(&self) -> Result<(), LedgerError> {
        let Some((file, offset)) = *lock(&self.inner.unsynced_from) else {
            return Ok(());
        };
        let dir = &self.inner.dir;
        let mut removed = false;
        for number in block_files(dir).map_err(|source| self.file_error(dir, source))? {
            if number <= file {
                continue;
            }
            let path = file_path(dir, number);
            tracing::warn!(channel = %self.inner.channel, file = %path.display(), "removing a block file an append started and never synced");
            faults::check(points::LEDGER_RECOVERY_TRUNCATE, &path)
                .and_then(|()| std::fs::remove_file(&path))
                .map_err(|source| self.file_error(&path, source))?;
            removed = true;
        }
        let path = file_path(dir, file);
        let len = match std::fs::metadata(&path) {
            Ok(meta) => meta.len(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(self.file_error(&path, e)),
        };
        if len > offset {
            tracing::warn!(channel = %self.inner.channel, file = %path.display(), bytes = len - offset, "cutting off records an append wrote and never synced");
            files::cut(points::LEDGER_RECOVERY_TRUNCATE, &path, offset)
                .map_err(|source| self.file_error(&path, source))?;
        }
        if removed {
            files::sync_dir(points::LEDGER_RECOVERY_TRUNCATE, dir)
                .map_err(|source| self.file_error(dir, source))?;
        }
        *lock(&self.inner.unsynced_from) = None;
        Ok(())
    }

    /// Closes the index, opens it again and recovers the chain with it.
    /// Readers wait meanwhile instead of failing.
    fn reopen_index(&self) -> Result<(), LedgerError> {
        let path = self.index_path();
        let mut index = write_lock(&self.inner.index);
        if let Some(old) = index.take() {
            close_index(old, &path);
        }
        // Files may have been cut, removed or set aside: read them afresh.
        lock(&self.inner.readers).clear();
        let db = open_index(&path).map_err(|source| LedgerError::Open {
            path: path.display().to_string(),
            source,
        })?;
        // Whatever recovery finds, published blocks are read through the
        // new index from now on.
        let recovered = self.recover_with(&db, Opening::Existing);
        *index = Some(db);
        drop(index);
        let recovered = recovered?;
        let durable = self.tip().height;
        if recovered.tip.height < durable {
            return Err(self.damaged(
                recovered.tip.height,
                format!(
                    "the chain on disk ends before block {durable}, which was durable before the fault"
                ),
            ));
        }
        *lock(&self.inner.tip) = recovered.tip;
        *lock(&self.inner.end) = Some(recovered.end);
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
        let index_path = self.index_path();
        let index_error = |e| self.index_error(e);
        let injected = |e| self.index_error(sled::Error::Io(e));
        let index = read_lock(&self.inner.index);
        let db = index.as_ref().ok_or_else(|| self.index_closed())?;
        let tree = db.open_tree(PROBE_TREE).map_err(index_error)?;
        faults::check(points::LEDGER_APPEND_INDEX, &index_path).map_err(injected)?;
        tree.insert(PROBE_KEY, PROBE_KEY).map_err(index_error)?;
        faults::check(points::LEDGER_APPEND_INDEX_FLUSH, &index_path).map_err(injected)?;
        db.flush().map_err(index_error)?;
        tree.remove(PROBE_KEY).map_err(index_error)?;
        db.flush().map_err(index_error)?;
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
