//! The block ledger: the only code that touches block storage.
//!
//! Each channel's blocks live in append-only block files, indexed by a sled
//! database of the channel's own (Fabric's block file ledger, with sled as its
//! index).
//! [`BlockStore`] reads and appends;
//! [`LedgerActor`] is the channel's single writer and makes every block durable
//! before any Deliver client can see it. Deliver reads blocks marshalled, off
//! the async workers, through a [`BlockCache`] of the channel's recent blocks.

mod actor;
mod cache;
mod read;
mod store;

#[cfg(test)]
pub use actor::GateWrites;
pub use actor::{AppendBlock, ConfigPublisher, LedgerActor, LedgerHandle, Retire, WaitDurable};
pub use cache::{BlockCache, CacheLimits, CacheReader, CacheStats};
pub use store::{BlockStore, BlockWriter, ChainTip, LedgerFactory};

/// Ledger failures. A damaged store is reported, never repaired silently.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("cannot open the block store at {path}: {source}")]
    Open { path: String, source: sled::Error },
    #[error("block index error: {0}")]
    Io(#[from] sled::Error),
    #[error("block index {path}: {source}")]
    Index { path: String, source: sled::Error },
    #[error("block file {path}: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("ledger of channel {channel} is damaged at block {block}: {reason}")]
    Damaged {
        channel: String,
        block: u64,
        reason: String,
    },
    #[error("channel {0} already has a ledger")]
    AlreadyExists(String),
    #[error("the ledger of channel {0} is still being written by a stopped chain")]
    WriterBusy(String),
    #[error("channel {0} has no ledger")]
    NotFound(String),
    #[error("{0:?} cannot name a channel's ledger folder")]
    InvalidChannelName(String),
    #[error("block read task failed: {0}")]
    ReadTask(String),
    #[error("refusing to append block {got} to channel {channel}: {reason}")]
    OutOfOrder {
        channel: String,
        got: u64,
        reason: String,
    },
    #[error("the ledger of channel {channel} refuses writes after a storage fault: {reason}")]
    Faulted { channel: String, reason: String },
}

impl LedgerError {
    /// Whether a retry may clear this error: a fault of the disk or of the
    /// process's resources (no space, an I/O error, too many open files),
    /// not damage to what is stored.
    pub fn is_transient(&self) -> bool {
        match self {
            LedgerError::Open { source, .. }
            | LedgerError::Index { source, .. }
            | LedgerError::Io(source) => sled_transient(source),
            LedgerError::File { source, .. } => io_transient(source),
            LedgerError::Faulted { .. } | LedgerError::WriterBusy(_) => true,
            LedgerError::Damaged { .. }
            | LedgerError::AlreadyExists(_)
            | LedgerError::NotFound(_)
            | LedgerError::InvalidChannelName(_)
            | LedgerError::ReadTask(_)
            | LedgerError::OutOfOrder { .. } => false,
        }
    }
}

fn sled_transient(error: &sled::Error) -> bool {
    match error {
        sled::Error::Io(source) => io_transient(source),
        _ => false,
    }
}

/// Every I/O error may pass (space freed, a disk back, descriptors closed)
/// except a file that is not there: a missing block file is damage.
fn io_transient(error: &std::io::Error) -> bool {
    error.kind() != std::io::ErrorKind::NotFound
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_faults_are_transient_and_damage_is_not() {
        let io = |errno| LedgerError::File {
            path: "blockfile_000000".into(),
            source: std::io::Error::from_raw_os_error(errno),
        };
        for errno in [
            libc::ENOSPC,
            libc::EIO,
            libc::EMFILE,
            libc::ENFILE,
            libc::EDQUOT,
        ] {
            assert!(io(errno).is_transient(), "errno {errno}");
        }
        assert!(!io(libc::ENOENT).is_transient(), "a missing file is damage");
        let sled_io = LedgerError::Index {
            path: "index".into(),
            source: sled::Error::Io(std::io::Error::from_raw_os_error(libc::EIO)),
        };
        assert!(sled_io.is_transient());
        let faulted = LedgerError::Faulted {
            channel: "c1".into(),
            reason: "no space".into(),
        };
        assert!(faulted.is_transient());
        let damaged = LedgerError::Damaged {
            channel: "c1".into(),
            block: 3,
            reason: "a bad record".into(),
        };
        let out_of_order = LedgerError::OutOfOrder {
            channel: "c1".into(),
            got: 5,
            reason: "expected block 4".into(),
        };
        assert!(!damaged.is_transient());
        assert!(!out_of_order.is_transient());
    }
}
