//! The sled index: block number (big-endian key) to where the block's bytes are.

/// Where a block's bytes are: file number, offset of the block (after its
/// length prefix) and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Location {
    pub(super) file: u32,
    pub(super) offset: u64,
    pub(super) len: u32,
}

impl Location {
    pub(super) fn encode(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out[..4].copy_from_slice(&self.file.to_be_bytes());
        out[4..12].copy_from_slice(&self.offset.to_be_bytes());
        out[12..].copy_from_slice(&self.len.to_be_bytes());
        out
    }

    pub(super) fn decode(raw: &[u8]) -> Option<Location> {
        let raw: &[u8; 16] = raw.try_into().ok()?;
        Some(Location {
            file: u32::from_be_bytes(raw[..4].try_into().ok()?),
            offset: u64::from_be_bytes(raw[4..12].try_into().ok()?),
            len: u32::from_be_bytes(raw[12..].try_into().ok()?),
        })
    }

    pub(super) fn end(&self) -> u64 {
        self.offset + u64::from(self.len)
    }
}

pub(super) fn encode_key(number: u64) -> [u8; 8] {
    number.to_be_bytes()
}

pub(super) fn decode_key(key: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(key.try_into().ok()?))
}

/// How long opening an index waits for a previous opener's lock.
const INDEX_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens a sled index with a small cache and no flusher thread: the store
/// flushes after every batch itself. An index closed in this process a
/// moment ago may still be locked: sled's background threads drop their
/// handles on the database shortly after the last `Db` is dropped, and they
/// cannot be joined. So a lock held by someone is waited for, briefly,
/// before it is reported.
pub(super) fn open_index(path: &std::path::Path) -> Result<sled::Db, sled::Error> {
    remove_unfinished_snapshots(path);
    match open_waiting_for_lock(path) {
        Err(sled::Error::Corruption { .. }) => {
            // The index is derived from the block files: put the damaged
            // one aside and start empty, and recovery indexes every block
            // again from the files (checking each).
            let aside = path.with_extension("corrupt");
            tracing::warn!(path = %path.display(), aside = %aside.display(), "the block index cannot be read; it is put aside and rebuilt from the block files");
            let _ = std::fs::remove_dir_all(&aside);
            std::fs::rename(path, &aside)?;
            open_waiting_for_lock(path)
        }
        other => other,
    }
}

/// A crash while sled writes a snapshot leaves an empty
/// `snap.<lsn>.generating` behind, and sled 0.34 then refuses to open the
/// folder as corrupted. The file is only ever a snapshot in progress.
fn remove_unfinished_snapshots(path: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            tracing::warn!(file = %entry.path().display(), "removing a snapshot of the block index that a crash left unfinished");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn open_waiting_for_lock(path: &std::path::Path) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        let opened = sled::Config::new()
            .path(path)
            .cache_capacity(super::CACHE_BYTES)
            .flush_every_ms(None)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < INDEX_LOCK_PATIENCE =>
            {
                tracing::debug!(path = %path.display(), "index still locked; waiting");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}

/// Closes an index. sled syncs its file when the last handle goes and
/// panics if that sync fails; a failing disk must not take the thread down
/// with it.
pub(super) fn close_index(db: sled::Db, path: &std::path::Path) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db))).is_err() {
        tracing::warn!(path = %path.display(), "closing the block index failed");
    }
}

#[cfg(test)]
mod open_tests {
    use super::*;

    #[test]
    fn an_unfinished_sled_snapshot_does_not_stop_the_index_from_opening() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        {
            let db = open_index(&path).expect("open");
            db.insert(b"k", b"v").expect("insert");
            db.flush().expect("flush");
        }
        std::fs::write(path.join("snap.00000000FFFFFFFF.generating"), b"").expect("write");
        let db = open_index(&path).expect("opens again");
        assert_eq!(db.get(b"k").expect("get").as_deref(), Some(&b"v"[..]));
    }

    #[test]
    fn a_corrupted_index_is_put_aside_and_opened_empty() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("index");
        {
            let db = open_index(&path).expect("open");
            db.insert(b"k", b"v").expect("insert");
            db.flush().expect("flush");
        }
        // Garbage over sled's config file is what sled calls corruption.
        std::fs::write(path.join("conf"), b"not a sled config at all").expect("write");
        match open_index(&path) {
            Ok(db) => {
                assert!(db.get(b"k").expect("get").is_none(), "opened empty");
                assert!(path.with_extension("corrupt").exists());
            }
            // Not every damage is reported as corruption; such an index is
            // reported, as before.
            Err(e) => assert!(!matches!(e, sled::Error::Corruption { .. }), "{e}"),
        }
    }
}
