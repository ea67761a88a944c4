//! The append path: the one [`BlockWriter`] of a store, durable appends, and
//! publishing the height.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use prost::Message;

use super::files::{file_path, sync_dir, Writer};
use super::index::{encode_key, Location};
use super::{lock, BlockStore, ChainTip};
use crate::fabric::protos::common::Block;
use crate::runtime::faults::{self, journal, points};
use crate::runtime::ledger::LedgerError;

impl BlockStore {
    pub(super) fn check_continues(&self, tip: &ChainTip, block: &Block) -> Result<(), LedgerError> {
        let out_of_order = |got: u64, reason: &str| LedgerError::OutOfOrder {
            channel: self.inner.channel.clone(),
            got,
            reason: reason.into(),
        };
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| out_of_order(0, "block has no header"))?;
        if header.number != tip.height {
            return Err(out_of_order(
                header.number,
                &format!("expected block {}", tip.height),
            ));
        }
        if header.previous_hash != tip.last_hash {
            return Err(out_of_order(
                header.number,
                "previous_hash does not match the chain",
            ));
        }
        Ok(())
    }

    /// Opens the file appends continue in, cutting off anything past the last
    /// durable block (left by a failed append, never indexed).
    pub(super) fn open_writer(&self) -> Result<Writer, LedgerError> {
        let (number, offset) = match *lock(&self.inner.end) {
            Some(end) => (end.file, end.end()),
            None => (0, 0),
        };
        let path = file_path(&self.inner.dir, number);
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(&path)
            .map_err(|source| self.file_error(&path, source))?;
        let len = file
            .metadata()
            .map_err(|source| self.file_error(&path, source))?
            .len();
        if len > offset {
            tracing::warn!(channel = %self.inner.channel, file = %path.display(), bytes = len - offset, "discarding bytes of an append that did not complete");
            file.set_len(offset)
                .map_err(|source| self.file_error(&path, source))?;
        }
        if offset == 0 {
            sync_dir(&self.inner.dir).map_err(|source| self.file_error(&self.inner.dir, source))?;
        }
        Ok(Writer {
            file,
            number,
            offset,
        })
    }

    /// The store's one writer, or `WriterBusy` while another exists (the
    /// writer of a stopped tree whose last write is still running). Publishes
    /// whatever is durable, so a block written by a writer that never
    /// published becomes visible.
    pub fn writer(&self) -> Result<BlockWriter, LedgerError> {
        if self
            .inner
            .writer_taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(LedgerError::WriterBusy(self.inner.channel.clone()));
        }
        let writer = BlockWriter {
            store: self.clone(),
        };
        writer.publish();
        Ok(writer)
    }

    /// Appends blocks durably: records written and synced, then indexed and the
    /// index flushed. The height does not move: the writer publishes it.
    pub(super) fn append_durable(&self, blocks: &[Block]) -> Result<(), LedgerError> {
        if blocks.is_empty() {
            return Ok(());
        }
        self.refuse_if_faulted()?;
        let mut guard = lock(&self.inner.writer);
        let result = self.append_locked(&mut guard, blocks);
        if let Err(error) = &result {
            // Reopen from the last durable block next time.
            *guard = None;
            if !matches!(error, LedgerError::OutOfOrder { .. }) {
                self.set_fault(error);
            }
        }
        result
    }

    pub(super) fn append_locked(
        &self,
        guard: &mut Option<Writer>,
        blocks: &[Block],
    ) -> Result<(), LedgerError> {
        let mut tip = self.tip();
        let mut batch = sled::Batch::default();
        let mut last_location = None;
        let mut record = Vec::new();
        for block in blocks {
            self.check_continues(&tip, block)?;
            let len = block.encoded_len();
            record.clear();
            prost::encoding::encode_varint(len as u64, &mut record);
            let prefix = record.len() as u64;
            block
                .encode(&mut record)
                .map_err(|e| self.damaged(tip.height, e.to_string()))?;

            if guard.is_none() {
                *guard = Some(self.open_writer()?);
            }
            let rollover = guard.as_ref().is_some_and(|w| {
                w.offset > 0 && w.offset + record.len() as u64 > self.inner.max_file_bytes
            });
            if rollover {
                if let Some(full) = guard.take() {
                    let path = file_path(&self.inner.dir, full.number);
                    full.file
                        .sync_data()
                        .map_err(|source| self.file_error(&path, source))?;
                    let next = full.number + 1;
                    let path = file_path(&self.inner.dir, next);
                    let file = OpenOptions::new()
                        .create(true)
                        .read(true)
                        .write(true)
                        .truncate(true)
                        .open(&path)
                        .map_err(|source| self.file_error(&path, source))?;
                    sync_dir(&self.inner.dir)
                        .map_err(|source| self.file_error(&self.inner.dir, source))?;
                    *guard = Some(Writer {
                        file,
                        number: next,
                        offset: 0,
                    });
                }
            }
            let Some(writer) = guard.as_mut() else {
                return Err(self.damaged(tip.height, "no block file to write to"));
            };
            let path = file_path(&self.inner.dir, writer.number);
            faults::check(points::LEDGER_APPEND_WRITE, &path)
                .map_err(|source| self.file_error(&path, source))?;
            journal::before_write(&path);
            writer
                .file
                .write_all_at(&record, writer.offset)
                .map_err(|source| self.file_error(&path, source))?;
            let location = Location {
                file: writer.number,
                offset: writer.offset + prefix,
                len: u32::try_from(len)
                    .map_err(|_| self.damaged(tip.height, "block larger than 4 GiB"))?,
            };
            writer.offset = location.end();
            batch.insert(&encode_key(tip.height), &location.encode());
            last_location = Some(location);
            tip.advance(block);
        }
        if let Some(writer) = guard.as_ref() {
            let path = file_path(&self.inner.dir, writer.number);
            faults::check(points::LEDGER_APPEND_SYNC, &path)
                .map_err(|source| self.file_error(&path, source))?;
            writer
                .file
                .sync_data()
                .map_err(|source| self.file_error(&path, source))?;
            journal::synced(&path);
        }
        let index = self.inner.dir.join("index");
        faults::check(points::LEDGER_APPEND_INDEX, &index)
            .map_err(|source| self.file_error(&index, source))?;
        self.inner.tree.apply_batch(batch)?;
        faults::check(points::LEDGER_APPEND_INDEX_FLUSH, &index)
            .map_err(|source| self.file_error(&index, source))?;
        self.inner.db.flush()?;
        *lock(&self.inner.tip) = tip;
        *lock(&self.inner.end) = last_location;
        Ok(())
    }
}

/// The one way to append to a block store. Only the channel's LedgerActor
/// holds it; a store has at most one at a time, so a restarted tree cannot
/// write while the old tree's last write is still running.
pub struct BlockWriter {
    store: BlockStore,
}

impl BlockWriter {
    /// Appends blocks durably (records synced, index flushed). They are not
    /// served until [`BlockWriter::publish`]: whatever must be in place before a
    /// reader sees them (a new channel config) goes first. Blocks must
    /// continue the chain. Blocking: call it from a blocking task.
    pub fn append(&mut self, blocks: &[Block]) -> Result<(), LedgerError> {
        self.store.append_durable(blocks)
    }

    /// Makes every durable block visible: the height moves, Deliver streams wake.
    /// Returns the height.
    pub fn publish(&self) -> u64 {
        let height = self.store.tip().height;
        self.store.inner.height.send_if_modified(|published| {
            let moved = *published != height;
            *published = height;
            moved
        });
        height
    }

    pub fn store(&self) -> &BlockStore {
        &self.store
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        self.store
            .inner
            .writer_taken
            .store(false, Ordering::Release);
    }
}
