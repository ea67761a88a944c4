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
