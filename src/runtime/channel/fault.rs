//! A channel's write fault: the storage under the channel (its block files
//! and index, its Raft WAL) failed a write, an fsync or a flush.
//!
//! From that moment the channel acknowledges nothing more: Broadcast reads
//! the fault before every SUCCESS, and the supervisor keeps the channel
//! unavailable, with Deliver still serving the durable blocks, until the
//! storage takes writes again. The block store keeps a fault of its own
//! ([`crate::runtime::ledger::BlockStore::fault`]); this one is for the
//! storage the consenter owns.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::runtime::faults;

/// What failed, and the folder to prove writable before going on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteFault {
    pub reason: String,
    pub dir: PathBuf,
    /// The failpoints of the storage's write and sync, so that the probe
    /// meets the faults a test injects there (see `crate::runtime::faults`).
    pub points: ProbePoints,
}

/// The failpoints a probe of a folder passes through: its write, its sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbePoints {
    pub write: &'static str,
    pub sync: &'static str,
}

/// The write fault of one channel's consenter storage, shared by the
/// channel's handle and the actors of every generation of its tree.
#[derive(Clone, Default)]
pub struct WriteFaults {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Read on every Broadcast answer: an atomic, not the lock.
    raised: AtomicBool,
    fault: Mutex<Option<WriteFault>>,
}

impl WriteFaults {
    fn fault(&self) -> MutexGuard<'_, Option<WriteFault>> {
        self.inner
            .fault
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Records a failed write under `dir`. The first fault is kept: later
    /// ones are its consequences.
    pub fn raise(&self, reason: impl Into<String>, dir: &Path, points: ProbePoints) {
        let mut fault = self.fault();
        if fault.is_none() {
            *fault = Some(WriteFault {
                reason: reason.into(),
                dir: dir.to_path_buf(),
                points,
            });
        }
        self.inner.raised.store(true, Ordering::Release);
    }

    pub fn is_raised(&self) -> bool {
        self.inner.raised.load(Ordering::Acquire)
    }

    pub fn current(&self) -> Option<WriteFault> {
        if !self.is_raised() {
            return None;
        }
        self.fault().clone()
    }

    /// The storage takes writes again.
    pub fn clear(&self) {
        let mut fault = self.fault();
        *fault = None;
        self.inner.raised.store(false, Ordering::Release);
    }
}

const PROBE_FILE: &str = ".write-probe";

/// Whether the file system of `dir` has `room` bytes free for this process:
/// checked before a probe so that a probe never fills a shared disk itself.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
// The field types are u64 on 64-bit targets only.
#[allow(clippy::useless_conversion)]
pub fn free_bytes(dir: &Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stat` is written by
    // statvfs before it is read, only when it succeeds.
    let stat = unsafe {
        if libc::statvfs(path.as_ptr(), stat.as_mut_ptr()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        stat.assume_init()
    };
    Ok(u64::from(stat.f_bavail).saturating_mul(u64::from(stat.f_frsize)))
}

/// Without statvfs the probe's own write is the only check.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn free_bytes(_dir: &Path) -> std::io::Result<u64> {
    Ok(u64::MAX)
}

/// Proves that `dir` takes `room` bytes again: writes them to a probe file,
/// syncs it and removes it. Blocking.
pub fn probe_dir(dir: &Path, room: u64, points: ProbePoints) -> std::io::Result<()> {
    let path = dir.join(PROBE_FILE);
    let result = write_probe(&path, room, points);
    // Whatever happened, leave nothing behind that holds the space.
    let _ = std::fs::remove_file(&path);
    result
}

fn write_probe(path: &Path, room: u64, points: ProbePoints) -> std::io::Result<()> {
    faults::check(points.write, path)?;
    let mut file = std::fs::File::create(path)?;
    let chunk = vec![0u8; 64 * 1024];
    let mut left = room;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        file.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    faults::check(points.sync, path)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    const POINTS: ProbePoints = ProbePoints {
        write: "fault::test::write",
        sync: "fault::test::sync",
    };

    #[test]
    fn the_first_fault_is_kept_until_cleared() {
        let faults = WriteFaults::default();
        assert!(!faults.is_raised());
        faults.raise("ENOSPC", Path::new("/wal/a"), POINTS);
        faults.raise("EIO afterwards", Path::new("/wal/b"), POINTS);
        let kept = faults.current().expect("raised");
        assert_eq!(kept.reason, "ENOSPC");
        assert_eq!(kept.dir, Path::new("/wal/a"));
        faults.clear();
        assert!(faults.current().is_none() && !faults.is_raised());
    }

    #[test]
    fn a_probe_leaves_nothing_behind() {
        let dir = tempfile::tempdir().expect("tempdir");
        probe_dir(dir.path(), 200 * 1024, POINTS).expect("probe");
        assert_eq!(std::fs::read_dir(dir.path()).expect("list").count(), 0);
        let missing = dir.path().join("missing");
        assert!(probe_dir(&missing, 10, POINTS).is_err());
    }
}
