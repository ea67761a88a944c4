//! Block files: append-only, each record a varint length and the marshalled block.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

pub(super) fn file_path(dir: &Path, file: u32) -> PathBuf {
    dir.join(format!("blockfile_{file:06}"))
}

/// The open block file appends go to.
pub(super) struct Writer {
    pub(super) file: File,
    pub(super) number: u32,
    /// Where the next record starts.
    pub(super) offset: u64,
}

/// Reads the record at `offset`: its bytes and the offset where they start.
/// `None` when the record is incomplete.
pub(super) fn read_record(file: &File, offset: u64, file_len: u64) -> Option<(Vec<u8>, u64)> {
    let mut prefix = [0u8; 10];
    let available = (file_len - offset).min(prefix.len() as u64) as usize;
    file.read_exact_at(&mut prefix[..available], offset).ok()?;
    let mut cursor = &prefix[..available];
    let len = prost::encoding::decode_varint(&mut cursor).ok()?;
    let start = offset + (available - cursor.len()) as u64;
    if len == 0 || start.checked_add(len)? > file_len {
        return None;
    }
    let mut bytes = vec![0u8; usize::try_from(len).ok()?];
    file.read_exact_at(&mut bytes, start).ok()?;
    Some((bytes, start))
}

/// Makes a newly created file's directory entry durable.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}
