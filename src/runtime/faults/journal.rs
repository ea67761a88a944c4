//! What is durable, for a simulated power loss.
//!
//! The storage code reports each write, sync, file creation, rename and
//! directory sync here. A power loss ([`lose_unsynced`]) then undoes what a
//! real one could: renames and creations whose directory was not synced,
//! and bytes written past a file's last sync ([`lose_unsynced_tearing`]
//! keeps a part of those, a torn write). Without the `failpoints`
//! feature every call is empty.
//!
//! Simplifications: a file first seen in this process counts as durable up
//! to its length at that moment (the previous run synced or cut it when it
//! recovered), removals count as durable at once, and sled's own unsynced
//! writes are kept (sled is flushed explicitly after each batch, so those
//! are one of the outcomes a real power cut can leave).

use std::path::Path;

/// `path` is about to be written to (or cut): its current length is durable
/// if nothing was recorded for it yet.
#[inline]
pub fn before_write(path: &Path) {
    #[cfg(feature = "failpoints")]
    imp::before_write(path);
    #[cfg(not(feature = "failpoints"))]
    let _ = path;
}

/// `path` was fsynced (data): its current length is durable.
#[inline]
pub fn synced(path: &Path) {
    #[cfg(feature = "failpoints")]
    imp::synced(path);
    #[cfg(not(feature = "failpoints"))]
    let _ = path;
}

/// `path` was created: it exists after a power loss only once its folder is
/// synced.
#[inline]
pub fn created(path: &Path) {
    #[cfg(feature = "failpoints")]
    imp::created(path);
    #[cfg(not(feature = "failpoints"))]
    let _ = path;
}

/// `from` was renamed to `to`: undone by a power loss until `to`'s folder
/// is synced.
#[inline]
pub fn renamed(from: &Path, to: &Path) {
    #[cfg(feature = "failpoints")]
    imp::renamed(from, to);
    #[cfg(not(feature = "failpoints"))]
    let _ = (from, to);
}

/// `dir` was fsynced: the creations and renames in it are durable.
#[inline]
pub fn dir_synced(dir: &Path) {
    #[cfg(feature = "failpoints")]
    imp::dir_synced(dir);
    #[cfg(not(feature = "failpoints"))]
    let _ = dir;
}

/// Undoes what was not durable under `root`: renames back, unsynced
/// creations removed, files cut to their last synced length. Then the
/// caller aborts (a node's failpoint passes `/`; a test its own folder).
#[cfg(feature = "failpoints")]
pub fn lose_unsynced(root: &Path) {
    imp::lose_unsynced(root, &mut |_| 0);
}

/// As [`lose_unsynced`], but each file keeps as many of the bytes written
/// since its last sync as `kept(unsynced)` answers (at most all of them):
/// a real power cut may have written back none, all, or part of them, and
/// a part that ends inside a record is a torn write, which only this can
/// produce.
#[cfg(feature = "failpoints")]
pub fn lose_unsynced_tearing(root: &Path, kept: &mut dyn FnMut(u64) -> u64) {
    imp::lose_unsynced(root, kept);
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

    #[derive(Default)]
    struct Journal {
        /// Durable length of each file written in this process.
        synced_len: HashMap<PathBuf, u64>,
        /// Files created whose folder was not synced since.
        created: Vec<PathBuf>,
        /// Renames (from, to) whose destination folder was not synced since.
        renamed: Vec<(PathBuf, PathBuf)>,
    }

    fn journal() -> MutexGuard<'static, Journal> {
        static JOURNAL: OnceLock<Mutex<Journal>> = OnceLock::new();
        JOURNAL
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn len(path: &Path) -> u64 {
        std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
    }

    pub fn before_write(path: &Path) {
        let mut journal = journal();
        if !journal.synced_len.contains_key(path) {
            let created = journal.created.iter().any(|c| c == path);
            let durable = if created { 0 } else { len(path) };
            journal.synced_len.insert(path.to_path_buf(), durable);
        }
    }

    pub fn synced(path: &Path) {
        let durable = len(path);
        journal().synced_len.insert(path.to_path_buf(), durable);
    }

    pub fn created(path: &Path) {
        let mut journal = journal();
        journal.created.push(path.to_path_buf());
        journal.synced_len.insert(path.to_path_buf(), 0);
    }

    pub fn renamed(from: &Path, to: &Path) {
        let mut journal = journal();
        journal.renamed.push((from.to_path_buf(), to.to_path_buf()));
        // What was known of `from` (and below it) now lives under `to`.
        let moved: Vec<(PathBuf, u64)> = journal
            .synced_len
            .iter()
            .filter_map(|(p, n)| p.strip_prefix(from).ok().map(|rest| (to.join(rest), *n)))
            .collect();
        journal.synced_len.retain(|p, _| !p.starts_with(from));
        journal.synced_len.extend(moved);
    }

    pub fn dir_synced(dir: &Path) {
        let mut journal = journal();
        journal.created.retain(|p| p.parent() != Some(dir));
        journal.renamed.retain(|(_, to)| to.parent() != Some(dir));
    }

    pub fn lose_unsynced(root: &Path, part_kept: &mut dyn FnMut(u64) -> u64) {
        let mut journal = journal();
        let renamed = std::mem::take(&mut journal.renamed);
        let (lost, kept): (Vec<_>, Vec<_>) = renamed
            .into_iter()
            .partition(|(_, to)| to.starts_with(root));
        journal.renamed = kept;
        for (from, to) in lost.into_iter().rev() {
            let _ = std::fs::rename(&to, &from);
        }
        let created = std::mem::take(&mut journal.created);
        let (lost, kept): (Vec<_>, Vec<_>) = created.into_iter().partition(|p| p.starts_with(root));
        journal.created = kept;
        for path in lost {
            let _ = std::fs::remove_file(&path);
            journal.synced_len.remove(&path);
        }
        for (path, durable) in journal
            .synced_len
            .iter()
            .filter(|(p, _)| p.starts_with(root))
        {
            let now = len(path);
            if now > *durable {
                let unsynced = now - *durable;
                let survives = *durable + part_kept(unsynced).min(unsynced);
                if let Ok(file) = std::fs::OpenOptions::new().write(true).open(path) {
                    let _ = file.set_len(survives);
                    let _ = file.sync_all();
                }
            }
        }
    }
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_power_loss_keeps_what_was_synced_only() {
        let dir = tempfile::tempdir().expect("tempdir");
        let kept = dir.path().join("kept");
        std::fs::write(&kept, b"old").expect("write");
        before_write(&kept);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&kept)
            .expect("open");
        file.write_all(b"+synced").expect("write");
        synced(&kept);
        before_write(&kept);
        file.write_all(b"+lost").expect("write");

        let new = dir.path().join("new");
        std::fs::write(&new, b"never durable").expect("write");
        created(&new);

        let moved_from = dir.path().join("a");
        let moved_to = dir.path().join("b");
        std::fs::write(&moved_from, b"x").expect("write");
        std::fs::rename(&moved_from, &moved_to).expect("rename");
        renamed(&moved_from, &moved_to);

        let synced_dir_file = dir.path().join("sub");
        std::fs::create_dir(&synced_dir_file).expect("mkdir");
        let inside = synced_dir_file.join("f");
        std::fs::write(&inside, b"durable").expect("write");
        created(&inside);
        synced(&inside);
        dir_synced(&synced_dir_file);

        lose_unsynced(dir.path());
        assert_eq!(std::fs::read(&kept).expect("read"), b"old+synced");
        assert!(!new.exists());
        assert!(moved_from.exists() && !moved_to.exists());
        assert_eq!(std::fs::read(&inside).expect("read"), b"durable");
    }

    #[test]
    fn a_tearing_power_loss_keeps_part_of_what_was_not_synced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("torn");
        std::fs::write(&file, b"synced").expect("write");
        before_write(&file);
        std::fs::write(&file, b"synced+unsynced").expect("write");
        let mut asked = Vec::new();
        lose_unsynced_tearing(dir.path(), &mut |unsynced| {
            asked.push(unsynced);
            3
        });
        assert_eq!(asked, vec![9]);
        assert_eq!(std::fs::read(&file).expect("read"), b"synced+un");
    }
}
