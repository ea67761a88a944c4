//! The write-ahead log's segment files: naming, record encoding, the writer
//! and the recovery scan. The format is described in the parent module.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::StorageError;
use crate::runtime::faults::{self, journal, points};

/// Bytes before a record's payload: length, checksum, kind.
pub(super) const HEADER_LEN: u64 = 9;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RecordKind {
    Entry = 1,
    HardState = 2,
    ConfState = 3,
}

impl RecordKind {
    fn from_byte(byte: u8) -> Option<RecordKind> {
        match byte {
            1 => Some(RecordKind::Entry),
            2 => Some(RecordKind::HardState),
            3 => Some(RecordKind::ConfState),
            _ => None,
        }
    }
}

fn checksum(kind: u8, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&[kind]);
    hasher.update(payload);
    hasher.finalize()
}

/// Records encoded for one write.
#[derive(Default)]
pub(super) struct RecordBuf {
    pub(super) bytes: Vec<u8>,
}

impl RecordBuf {
    /// Encodes `message` as a record; answers the record's offset in the
    /// buffer and its payload length, or why it cannot be a record.
    pub(super) fn push(
        &mut self,
        kind: RecordKind,
        message: &impl protobuf::Message,
    ) -> Result<(u64, u32), String> {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(&[0; HEADER_LEN as usize]);
        // Straight into the buffer: a block-sized entry is not copied twice.
        let encoded = message.write_to_vec(&mut self.bytes);
        let payload = &self.bytes[start + HEADER_LEN as usize..];
        let len = match (encoded, u32::try_from(payload.len())) {
            (Ok(()), Ok(len)) => len,
            (Err(e), _) => Err(format!("cannot encode it: {e}"))?,
            (_, Err(_)) => Err(format!("{} bytes is too large for a record", payload.len()))?,
        };
        let sum = checksum(kind as u8, payload);
        let header = &mut self.bytes[start..start + HEADER_LEN as usize];
        header[..4].copy_from_slice(&len.to_le_bytes());
        header[4..8].copy_from_slice(&sum.to_le_bytes());
        header[8] = kind as u8;
        Ok((start as u64, len))
    }
}

/// One segment file: `<16-hex sequence>-<16-hex first index>.wal`.
#[derive(Debug, Clone)]
pub(super) struct Segment {
    pub(super) seq: u64,
    pub(super) path: PathBuf,
}

fn segment_path(dir: &Path, seq: u64, first_index: u64) -> PathBuf {
    dir.join(format!("{seq:016x}-{first_index:016x}.wal"))
}

/// The segments of a WAL folder in order. Files not ending in `.wal` are
/// not ours and are left alone.
pub(super) fn list_segments(dir: &Path) -> Result<Vec<Segment>, StorageError> {
    let io_err = |source| StorageError::io("list", dir, source);
    let mut segments = Vec::new();
    for item in std::fs::read_dir(dir).map_err(io_err)? {
        let path = item.map_err(io_err)?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        let Some(stem) = name.strip_suffix(".wal") else {
            continue;
        };
        let seq = stem
            .split_once('-')
            .filter(|(seq, index)| seq.len() == 16 && index.len() == 16)
            .and_then(|(seq, index)| {
                u64::from_str_radix(index, 16).ok()?;
                u64::from_str_radix(seq, 16).ok()
            });
        match seq {
            Some(seq) => segments.push(Segment { seq, path }),
            None => return Err(StorageError::BadSegmentName { path }),
        }
    }
    segments.sort_by_key(|s| s.seq);
    // Older segments may be deleted one day, never one in the middle.
    for pair in segments.windows(2) {
        if pair[1].seq != pair[0].seq + 1 {
            return Err(StorageError::MissingSegment {
                dir: dir.to_path_buf(),
                seq: pair[0].seq + 1,
            });
        }
    }
    Ok(segments)
}

/// What reading one record found.
enum Read {
    Whole(RecordKind, Vec<u8>),
    /// The record runs past the end of the file.
    PastEnd,
    /// The record fits but its checksum (or kind) is wrong; its end.
    Bad {
        end: u64,
    },
}

fn read_at(file: &File, offset: u64, file_len: u64) -> io::Result<Read> {
    if offset + HEADER_LEN > file_len {
        return Ok(Read::PastEnd);
    }
    let mut header = [0u8; HEADER_LEN as usize];
    file.read_exact_at(&mut header, offset)?;
    let len = u64::from(u32::from_le_bytes([
        header[0], header[1], header[2], header[3],
    ]));
    let sum = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    let end = offset + HEADER_LEN + len;
    if end > file_len {
        return Ok(Read::PastEnd);
    }
    // `len` is below the file's size here, so this allocation is bounded by it.
    let mut payload = vec![0u8; len as usize];
    file.read_exact_at(&mut payload, offset + HEADER_LEN)?;
    if checksum(header[8], &payload) != sum {
        return Ok(Read::Bad { end });
    }
    match RecordKind::from_byte(header[8]) {
        Some(kind) => Ok(Read::Whole(kind, payload)),
        None => Ok(Read::Bad { end }),
    }
}

/// Reads every record of `segment` in order and hands it to `visit` with
/// its offset; answers where the next record goes. A bad record that is the
/// segment's last is a write a crash cut short: in the last segment
/// (`is_last`) it is cut off; anywhere else it is damage.
pub(super) fn scan(
    segment: &Segment,
    is_last: bool,
    mut visit: impl FnMut(RecordKind, Vec<u8>, u64) -> Result<(), StorageError>,
) -> Result<u64, StorageError> {
    let path = &segment.path;
    let io_err = |source| StorageError::io("read", path, source);
    let file = File::open(path).map_err(io_err)?;
    let file_len = file.metadata().map_err(io_err)?.len();
    let mut offset = 0;
    while offset < file_len {
        let reason = match read_at(&file, offset, file_len).map_err(io_err)? {
            Read::Whole(kind, payload) => {
                let end = offset + HEADER_LEN + payload.len() as u64;
                visit(kind, payload, offset)?;
                offset = end;
                continue;
            }
            Read::PastEnd => "record runs past the end of the file",
            Read::Bad { end } => {
                // A whole record after a bad one means the bad one was once
                // written in full: damage, not a torn write.
                if let Read::Whole(..) = read_at(&file, end, file_len).map_err(io_err)? {
                    return Err(StorageError::corrupt(path, offset, "checksum mismatch"));
                }
                "checksum mismatch in the last record"
            }
        };
        if !is_last {
            return Err(StorageError::corrupt(path, offset, reason));
        }
        tracing::warn!(
            file = %path.display(),
            offset,
            cut = file_len - offset,
            "cutting off a WAL record a crash left incomplete ({reason})"
        );
        cut(path, offset)?;
        return Ok(offset);
    }
    Ok(file_len)
}

/// Cuts `path` to `len` bytes and syncs it: a tail that was never durable
/// (a torn record, or the records of a write that failed) must not be read
/// back later as if it were.
fn cut(path: &Path, len: u64) -> Result<(), StorageError> {
    let truncate_err = |source| StorageError::io("truncate", path, source);
    faults::check(points::RAFT_WAL_TRUNCATE, path).map_err(truncate_err)?;
    journal::before_write(path);
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(truncate_err)?;
    file.set_len(len)
        .and_then(|()| file.sync_all())
        .map_err(truncate_err)?;
    journal::synced(path);
    Ok(())
}

/// Fsyncs the folder `dir`, so that the files created in it are durable.
pub(super) fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    let sync_err = |source| StorageError::io("sync", dir, source);
    faults::check(points::RAFT_WAL_SYNC_DIR, dir).map_err(sync_err)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(sync_err)?;
    journal::dir_synced(dir);
    Ok(())
}

/// Reads back the payload of the record at `offset` (one that recovery or
/// a write already checked), checking it again.
pub(super) fn read_record(
    file: &File,
    path: &Path,
    offset: u64,
) -> Result<(RecordKind, Vec<u8>), StorageError> {
    let file_len = file
        .metadata()
        .map_err(|source| StorageError::io("read", path, source))?
        .len();
    match read_at(file, offset, file_len)
        .map_err(|source| StorageError::io("read", path, source))?
    {
        Read::Whole(kind, payload) => Ok((kind, payload)),
        Read::PastEnd | Read::Bad { .. } => Err(StorageError::corrupt(
            path,
            offset,
            "a record read back earlier is no longer whole",
        )),
    }
}

/// Appends to the last segment and starts new ones.
pub(super) struct WalWriter {
    dir: PathBuf,
    path: PathBuf,
    file: File,
    seq: u64,
    len: u64,
    segment_bytes: u64,
    /// Set when a write or sync failed: what reached the disk is unknown,
    /// so nothing more is written until the storage is opened again.
    failed: bool,
}

/// Where a write put its records.
pub(super) struct Written {
    pub(super) seq: u64,
    /// Offset in the segment of the first byte of the written buffer.
    pub(super) base: u64,
    /// A segment created for this write.
    pub(super) new_segment: Option<Segment>,
}

impl WalWriter {
    /// Creates segment `seq`, to hold entries from `first_index` on.
    pub(super) fn create(
        dir: &Path,
        seq: u64,
        first_index: u64,
        segment_bytes: u64,
    ) -> Result<(WalWriter, Segment), StorageError> {
        let path = segment_path(dir, seq, first_index);
        let create_err = |source| StorageError::io("create", &path, source);
        faults::check(points::RAFT_WAL_SEGMENT_CREATE, &path).map_err(create_err)?;
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(create_err)?;
        journal::created(&path);
        sync_dir(dir)?;
        tracing::debug!(segment = %path.display(), "started a WAL segment");
        let writer = WalWriter {
            dir: dir.to_path_buf(),
            path: path.clone(),
            file,
            seq,
            len: 0,
            segment_bytes,
            failed: false,
        };
        Ok((writer, Segment { seq, path }))
    }

    /// Continues the last segment, whose records end at `len`.
    pub(super) fn resume(
        dir: &Path,
        segment: &Segment,
        len: u64,
        segment_bytes: u64,
    ) -> Result<WalWriter, StorageError> {
        let file = OpenOptions::new()
            .append(true)
            .open(&segment.path)
            .map_err(|source| StorageError::io("open", &segment.path, source))?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            path: segment.path.clone(),
            file,
            seq: segment.seq,
            len,
            segment_bytes,
            failed: false,
        })
    }

    /// True while the current segment holds no record.
    pub(super) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes `records` and syncs them. A segment past its size is closed
    /// first and the next one starts with `header` (the state so far), so
    /// that it can be read without the segments before it.
    pub(super) fn append(
        &mut self,
        records: &[u8],
        header: &[u8],
        next_index: u64,
    ) -> Result<Written, StorageError> {
        if self.failed {
            return Err(StorageError::Failed {
                dir: self.dir.clone(),
            });
        }
        let result = self.append_inner(records, header, next_index);
        if let Err(error) = &result {
            self.failed = true;
            self.undo(error);
        }
        result
    }

    /// After a failed write: what it left in the segment could be read back
    /// after a restart as whole records, though they were never durable (a
    /// failed fsync may have dropped them), so it is cut off. A segment the
    /// write started is left empty; opening gives it its header again.
    fn undo(&self, error: &StorageError) {
        let len = match self.file.metadata() {
            Ok(metadata) => metadata.len(),
            Err(_) => u64::MAX,
        };
        if len == self.len {
            return;
        }
        if let Err(undo) = cut(&self.path, self.len) {
            tracing::error!(
                %error,
                %undo,
                "cannot cut off what a failed WAL write left; a restart may read it back"
            );
        }
    }

    fn append_inner(
        &mut self,
        records: &[u8],
        header: &[u8],
        next_index: u64,
    ) -> Result<Written, StorageError> {
        let mut new_segment = None;
        if self.len >= self.segment_bytes {
            let (next, segment) =
                WalWriter::create(&self.dir, self.seq + 1, next_index, self.segment_bytes)?;
            *self = next;
            new_segment = Some(segment);
        }
        // A segment's first write carries its header records too.
        let base = if self.len == 0 { header.len() } else { 0 } as u64;
        let header = &header[..base as usize];
        let path = &self.path;
        faults::check(points::RAFT_WAL_WRITE, path)
            .map_err(|source| StorageError::io("write", path, source))?;
        journal::before_write(path);
        self.file
            .write_all(header)
            .and_then(|()| self.file.write_all(records))
            .map_err(|source| StorageError::io("write", path, source))?;
        faults::check(points::RAFT_WAL_SYNC, path)
            .and_then(|()| self.file.sync_data())
            .map_err(|source| StorageError::io("sync", path, source))?;
        journal::synced(path);
        let base = self.len + base;
        self.len = base + records.len() as u64;
        Ok(Written {
            seq: self.seq,
            base,
            new_segment,
        })
    }
}
