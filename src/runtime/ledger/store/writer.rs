//! The append path: the one [`BlockWriter`] of a store, durable appends, and
//! publishing the height.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

use prost::Message;

use super::files::{self, file_path, Writer};
use super::index::{encode_key, Location};
use super::{lock, read_lock, BlockStore, ChainTip};
use crate::fabric::protos::common::Block;
use crate::runtime::faults::{self, journal, points};
use crate::runtime::ledger::LedgerError;

impl BlockStore {
    pub(super) fn check_continues(&self, tip: &ChainTip, block: &Block) -> Result<(), LedgerError> {
        check_continues(&self.inner.channel, tip, block)
    }

    /// Opens the file appends continue in, cutting off anything past the last
    /// durable block (left by a failed append, never indexed).
    fn open_writer(&self) -> Result<Writer, LedgerError> {
        let end = (*lock(&self.inner.end))
            .ok_or_else(|| self.damaged(0, "the store holds no block to continue"))?;
        let (number, offset) = (end.file, end.end());
        let path = file_path(&self.inner.dir, number);
        let file_error = |source| self.file_error(&path, source);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(file_error)?;
        let len = file.metadata().map_err(file_error)?.len();
        if len > offset {
            tracing::warn!(channel = %self.inner.channel, file = %path.display(), bytes = len - offset, "discarding bytes of an append that did not complete");
            faults::check(points::LEDGER_APPEND_WRITE, &path).map_err(file_error)?;
            journal::before_write(&path);
            file.set_len(offset).map_err(file_error)?;
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
    /// index flushed. The height does not move: the writer publishes it. Any
    /// failure to write, sync or index faults the store.
    pub(super) fn append_durable(&self, blocks: &[Block]) -> Result<(), LedgerError> {
        if blocks.is_empty() {
            return Ok(());
        }
        if self.inner.removed.load(Ordering::Acquire) {
            return Err(LedgerError::NotFound(self.inner.channel.clone()));
        }
        self.refuse_if_faulted()?;
        let tip = self.tip_after(blocks)?;
        let mut guard = lock(&self.inner.writer);
        let result = self.write_durable(&mut guard, blocks);
        match result {
            Ok(end) => {
                *lock(&self.inner.tip) = tip;
                *lock(&self.inner.end) = Some(end);
                Ok(())
            }
            Err(error) => {
                // Reopen from the last durable block after the re-open.
                *guard = None;
                self.set_fault(&error);
                // Cut what was written and not synced now, not only at the
                // re-open: after a failed fsync the page cache may still show
                // a record the disk does not hold, and a restart before the
                // re-open would index it. If the cut fails, the re-open (or
                // the next start's recovery) tries again.
                if let Err(cut) = self.discard_unsynced() {
                    tracing::warn!(channel = %self.inner.channel, error = %cut, "cannot cut what the failed append wrote yet; the re-open will");
                }
                Err(error)
            }
        }
    }

    /// The tip after `blocks`, if they continue the chain and fit a record.
    fn tip_after(&self, blocks: &[Block]) -> Result<ChainTip, LedgerError> {
        let mut tip = self.tip();
        for block in blocks {
            self.check_continues(&tip, block)?;
            if u32::try_from(block.encoded_len()).is_err() {
                return Err(LedgerError::OutOfOrder {
                    channel: self.inner.channel.clone(),
                    got: tip.height,
                    reason: "block larger than 4 GiB".into(),
                });
            }
            tip.advance(block);
        }
        Ok(tip)
    }

    /// Writes and syncs the records of checked blocks, then indexes them and
    /// flushes the index. Returns where the last one ends.
    fn write_durable(
        &self,
        guard: &mut Option<Writer>,
        blocks: &[Block],
    ) -> Result<Location, LedgerError> {
        let mut number = self.tip().height;
        let mut batch = sled::Batch::default();
        let mut last_location = None;
        let mut record = Vec::new();
        for block in blocks {
            let len = block.encoded_len();
            record.clear();
            prost::encoding::encode_varint(len as u64, &mut record);
            let prefix = record.len() as u64;
            block
                .encode(&mut record)
                .map_err(|e| self.damaged(number, e.to_string()))?;

            if guard.is_none() {
                *guard = Some(self.open_writer()?);
            }
            let rollover = guard.as_ref().is_some_and(|w| {
                w.offset > 0 && w.offset + record.len() as u64 > self.inner.max_file_bytes
            });
            if rollover {
                self.roll_over(guard)?;
            }
            let Some(writer) = guard.as_mut() else {
                return Err(self.damaged(number, "no block file to write to"));
            };
            let path = file_path(&self.inner.dir, writer.number);
            let file_error = |source| self.file_error(&path, source);
            lock(&self.inner.unsynced_from).get_or_insert((writer.number, writer.offset));
            faults::check(points::LEDGER_APPEND_WRITE, &path).map_err(file_error)?;
            journal::before_write(&path);
            writer
                .file
                .write_all_at(&record, writer.offset)
                .map_err(file_error)?;
            let location = Location {
                file: writer.number,
                offset: writer.offset + prefix,
                len: u32::try_from(len)
                    .map_err(|_| self.damaged(number, "block larger than 4 GiB"))?,
            };
            writer.offset = location.end();
            batch.insert(&encode_key(number), &location.encode());
            last_location = Some(location);
            number += 1;
        }
        let (Some(writer), Some(end)) = (guard.as_ref(), last_location) else {
            return Err(self.damaged(number, "no block was written"));
        };
        let path = file_path(&self.inner.dir, writer.number);
        files::sync_file(points::LEDGER_APPEND_SYNC, &path, &writer.file)
            .map_err(|source| self.file_error(&path, source))?;
        *lock(&self.inner.unsynced_from) = None;

        let index = read_lock(&self.inner.index);
        let db = index.as_ref().ok_or_else(|| self.index_closed())?;
        let index_path = self.index_path();
        faults::check(points::LEDGER_APPEND_INDEX, &index_path)
            .map_err(|e| self.index_error(sled::Error::Io(e)))?;
        db.apply_batch(batch).map_err(|e| self.index_error(e))?;
        faults::check(points::LEDGER_APPEND_INDEX_FLUSH, &index_path)
            .map_err(|e| self.index_error(sled::Error::Io(e)))?;
        db.flush().map_err(|e| self.index_error(e))?;
        Ok(end)
    }

    /// Syncs the full block file and starts the next one, its folder entry
    /// made durable before anything is written to it.
    fn roll_over(&self, guard: &mut Option<Writer>) -> Result<(), LedgerError> {
        let Some(full) = guard.take() else {
            return Ok(());
        };
        let path = file_path(&self.inner.dir, full.number);
        files::sync_file(points::LEDGER_APPEND_SYNC, &path, &full.file)
            .map_err(|source| self.file_error(&path, source))?;
        let next = full.number + 1;
        // Everything before the new file is durable now.
        *lock(&self.inner.unsynced_from) = Some((next, 0));
        let path = file_path(&self.inner.dir, next);
        let file_error = |source| self.file_error(&path, source);
        faults::check(points::LEDGER_ROLLOVER_CREATE, &path).map_err(file_error)?;
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(true)
            .open(&path)
            .map_err(file_error)?;
        journal::created(&path);
        files::sync_dir(points::LEDGER_ROLLOVER_SYNC_DIR, &self.inner.dir)
            .map_err(|source| self.file_error(&self.inner.dir, source))?;
        *guard = Some(Writer {
            file,
            number: next,
            offset: 0,
        });
        Ok(())
    }
}

/// Checks that `block` is the block that continues `tip`: its number and
/// previous hash.
pub(super) fn check_continues(
    channel: &str,
    tip: &ChainTip,
    block: &Block,
) -> Result<(), LedgerError> {
    let out_of_order = |got: u64, reason: &str| LedgerError::OutOfOrder {
        channel: channel.into(),
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
    /// continue the chain. After a failed write, sync or index update the
    /// store is faulted and this refuses at once (`LedgerError::Faulted`)
    /// until [`BlockStore::reopen`] succeeds. Blocking: call it from a
    /// blocking task.
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
