//! Block files: append-only, each record a varint length and the marshalled block.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::runtime::faults::{self, journal};

const FILE_PREFIX: &str = "blockfile_";

pub(super) fn file_path(dir: &Path, file: u32) -> PathBuf {
    dir.join(format!("{FILE_PREFIX}{file:06}"))
}

/// The number of a block file from its name; `None` for anything else.
fn file_number(name: &str) -> Option<u32> {
    let digits = name.strip_prefix(FILE_PREFIX)?;
    if digits.len() < 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The block files in `dir`, by number.
pub(super) fn block_files(dir: &Path) -> io::Result<Vec<u32>> {
    let mut numbers = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if let Some(number) = entry.file_name().to_str().and_then(file_number) {
            numbers.push(number);
        }
    }
    numbers.sort_unstable();
    Ok(numbers)
}

/// The open block file appends go to.
pub(super) struct Writer {
    pub(super) file: File,
    pub(super) number: u32,
    /// Where the next record starts.
    pub(super) offset: u64,
}

/// A record read from a block file: the block's bytes and where they are.
pub(super) struct Record {
    pub(super) bytes: Vec<u8>,
    /// Offset of the block, after its length prefix.
    pub(super) start: u64,
}

impl Record {
    pub(super) fn end(&self) -> u64 {
        self.start + self.bytes.len() as u64
    }
}

/// Reads the record at `offset`. `Ok(None)` when the record is incomplete
/// (a write cut short); a failed read is an error, never taken for a torn
/// record.
pub(super) fn read_record(file: &File, offset: u64, file_len: u64) -> io::Result<Option<Record>> {
    let mut prefix = [0u8; 10];
    let available = (file_len.saturating_sub(offset)).min(prefix.len() as u64) as usize;
    file.read_exact_at(&mut prefix[..available], offset)?;
    let mut cursor = &prefix[..available];
    let Ok(len) = prost::encoding::decode_varint(&mut cursor) else {
        return Ok(None);
    };
    let start = offset + (available - cursor.len()) as u64;
    if len == 0 || start.checked_add(len).is_none_or(|end| end > file_len) {
        return Ok(None);
    }
    let Ok(len) = usize::try_from(len) else {
        return Ok(None);
    };
    let mut bytes = vec![0u8; len];
    file.read_exact_at(&mut bytes, start)?;
    Ok(Some(Record { bytes, start }))
}

/// Makes the creations, renames and removals in `dir` durable, checking the
/// failpoint `point` first.
pub(super) fn sync_dir(point: &str, dir: &Path) -> io::Result<()> {
    sync_dir_for(point, dir, dir)
}

/// Syncs `dir` to make the rename or creation of `entry` in it durable. The
/// failpoint is checked for `entry`, so a failpoint scoped to a channel's
/// folder meets the sync of `chains/` that creates or removes it.
pub(super) fn sync_dir_for(point: &str, dir: &Path, entry: &Path) -> io::Result<()> {
    faults::check(point, entry)?;
    File::open(dir)?.sync_all()?;
    journal::dir_synced(dir);
    Ok(())
}

/// Syncs a file's data, checking the failpoint `point` first.
pub(super) fn sync_file(point: &str, path: &Path, file: &File) -> io::Result<()> {
    faults::check(point, path)?;
    file.sync_data()?;
    journal::synced(path);
    Ok(())
}

/// Cuts the file at `path` to `len` bytes and syncs it.
pub(super) fn cut(point: &str, path: &Path, len: u64) -> io::Result<()> {
    faults::check(point, path)?;
    journal::before_write(path);
    let file = std::fs::OpenOptions::new().write(true).open(path)?;
    file.set_len(len)?;
    file.sync_all()?;
    journal::synced(path);
    Ok(())
}

/// Renames `from` to `to` (the caller syncs the folder). The failpoint is
/// checked for `to`.
pub(super) fn rename(point: &str, from: &Path, to: &Path) -> io::Result<()> {
    faults::check(point, to)?;
    std::fs::rename(from, to)?;
    journal::renamed(from, to);
    Ok(())
}

/// Removes a folder and everything in it; one already gone is fine.
pub(super) fn remove_dir(point: &str, dir: &Path) -> io::Result<()> {
    faults::check(point, dir)?;
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_block_files_are_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        for name in [
            "blockfile_000002",
            "blockfile_000000",
            "blockfile_000001.aside-0",
            "blockfile_x",
            "index",
        ] {
            std::fs::write(dir.path().join(name), b"").expect("write");
        }
        assert_eq!(block_files(dir.path()).expect("list"), vec![0, 2]);
    }

    #[test]
    fn an_incomplete_record_is_none_and_a_complete_one_is_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, [3, b'a', b'b', b'c', 5, b'x']).expect("write");
        let file = File::open(&path).expect("open");
        let record = read_record(&file, 0, 6).expect("read").expect("complete");
        assert_eq!(
            (record.bytes.as_slice(), record.start, record.end()),
            (&b"abc"[..], 1, 4)
        );
        assert!(read_record(&file, 4, 6).expect("read").is_none());
    }
}
