use std::path::PathBuf;

use raft::{Config, RawNode, Storage as _};
use tempfile::TempDir;

use super::*;

fn entry(index: u64, term: u64) -> Entry {
    Entry {
        index,
        term,
        data: format!("block {index:04} of term {term}")
            .into_bytes()
            .into(),
        ..Default::default()
    }
}

fn entries(indexes: std::ops::RangeInclusive<u64>, term: u64) -> Vec<Entry> {
    indexes.map(|index| entry(index, term)).collect()
}

fn hard_state(term: u64, commit: u64) -> HardState {
    HardState {
        term,
        vote: 1,
        commit,
        ..Default::default()
    }
}

fn wal_dir(dir: &TempDir) -> PathBuf {
    dir.path().join("wal").join("mychannel")
}

fn open(dir: &TempDir, options: StorageOptions) -> Result<RaftStorage, StorageError> {
    RaftStorage::open(
        &wal_dir(dir),
        &dir.path().join("snap").join("mychannel"),
        &[1, 2, 3],
        options,
    )
}

/// Small segments and cache: most reads come from the files.
fn small() -> StorageOptions {
    StorageOptions {
        cache_bytes: 200,
        segment_bytes: 1024,
    }
}

fn segment_files(dir: &TempDir) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(wal_dir(dir))
        .expect("wal dir")
        .map(|item| item.expect("dir entry").path())
        .collect();
    files.sort();
    files
}

fn all_entries(storage: &RaftStorage) -> Vec<Entry> {
    let high = storage.last_index() + 1;
    storage
        .entries(1, high, None, GetEntriesContext::empty(false))
        .expect("entries")
}

fn store_error<T: std::fmt::Debug>(result: raft::Result<T>) -> raft::StorageError {
    match result {
        Err(raft::Error::Store(error)) => error,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

#[test]
fn persists_and_reads_back_through_raft_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(&dir, StorageOptions::default()).expect("open");
    assert!(storage.is_fresh());
    let initial = storage.initial_state().expect("initial state");
    assert_eq!(initial.conf_state.voters, vec![1, 2, 3]);
    assert_eq!(initial.hard_state, HardState::default());
    assert_eq!(
        (storage.first_index().unwrap(), storage.last_index()),
        (1, 0)
    );
    assert_eq!(storage.term(0).unwrap(), 0);
    assert!(dir.path().join("snap").join("mychannel").is_dir());

    let written = entries(1..=10, 1);
    storage
        .persist(PersistBatch {
            entries: written.clone(),
            hard_state: Some(hard_state(1, 5)),
        })
        .expect("persist");
    assert_eq!(storage.last_index(), 10);
    assert_eq!(storage.hard_state(), hard_state(1, 5));
    assert_eq!(all_entries(&storage), written);
    let ctx = || GetEntriesContext::empty(false);
    assert_eq!(storage.entries(3, 6, None, ctx()).unwrap(), written[2..5]);
    assert_eq!(storage.term(7).unwrap(), 1);

    // Every entry has the same size: max_size keeps whole entries, at least one.
    let size = u64::from(written[0].compute_size());
    assert_eq!(storage.entries(1, 11, 0, ctx()).unwrap().len(), 1);
    assert_eq!(storage.entries(1, 11, size * 3, ctx()).unwrap().len(), 3);
    assert_eq!(
        storage.entries(1, 11, size * 3 - 1, ctx()).unwrap().len(),
        2
    );
    assert_eq!(
        storage.entries(1, 11, raft::NO_LIMIT, ctx()).unwrap().len(),
        10
    );

    assert_eq!(
        store_error(storage.entries(0, 2, None, ctx())),
        raft::StorageError::Compacted
    );
    assert_eq!(
        store_error(storage.entries(5, 12, None, ctx())),
        raft::StorageError::Unavailable
    );
    assert_eq!(
        store_error(storage.term(11)),
        raft::StorageError::Unavailable
    );
    assert_eq!(
        store_error(storage.snapshot(0, 2)),
        raft::StorageError::SnapshotTemporarilyUnavailable
    );

    // Batches that do not continue the log are refused and change nothing.
    let refused = |entries| {
        storage.persist(PersistBatch {
            entries,
            hard_state: None,
        })
    };
    assert!(matches!(
        refused(vec![entry(12, 1)]),
        Err(StorageError::Refused { index: 12, .. })
    ));
    assert!(matches!(
        refused(vec![entry(0, 1)]),
        Err(StorageError::Refused { index: 0, .. })
    ));
    assert!(matches!(
        refused(vec![entry(11, 1), entry(13, 1)]),
        Err(StorageError::Refused { index: 13, .. })
    ));
    assert_eq!(storage.last_index(), 10);

    let voters = ConfState {
        voters: vec![1, 2, 3, 4],
        ..Default::default()
    };
    storage
        .persist_conf_state(voters.clone())
        .expect("conf state");
    drop(storage);

    let storage = RaftStorage::open(
        &wal_dir(&dir),
        &dir.path().join("snap").join("mychannel"),
        &[9],
        StorageOptions::default(),
    )
    .expect("reopen");
    assert!(!storage.is_fresh());
    let initial = storage.initial_state().expect("initial state");
    assert_eq!(initial.conf_state, voters);
    assert_eq!(initial.hard_state, hard_state(1, 5));
    assert_eq!(all_entries(&storage), written);
}

#[test]
fn a_replaced_suffix_is_gone_after_reopening() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(&dir, StorageOptions::default()).expect("open");
    storage
        .persist(PersistBatch {
            entries: entries(1..=10, 1),
            hard_state: Some(hard_state(1, 5)),
        })
        .expect("persist");
    // A new leader of term 2 disagrees from index 6 on.
    storage
        .persist(PersistBatch {
            entries: entries(6..=8, 2),
            hard_state: Some(hard_state(2, 5)),
        })
        .expect("persist conflicting suffix");
    let mut expected = entries(1..=5, 1);
    expected.extend(entries(6..=8, 2));
    assert_eq!(storage.last_index(), 8);
    assert_eq!(all_entries(&storage), expected);
    assert_eq!(
        store_error(storage.term(9)),
        raft::StorageError::Unavailable
    );
    drop(storage);

    let storage = open(&dir, StorageOptions::default()).expect("reopen");
    assert_eq!(storage.last_index(), 8);
    assert_eq!(storage.hard_state(), hard_state(2, 5));
    assert_eq!(all_entries(&storage), expected);
    assert_eq!(storage.term(6).unwrap(), 2);
    storage
        .persist(PersistBatch {
            entries: entries(9..=9, 2),
            hard_state: None,
        })
        .expect("append after reopening");
    expected.push(entry(9, 2));
    drop(storage);
    let storage = open(&dir, StorageOptions::default()).expect("reopen again");
    assert_eq!(all_entries(&storage), expected);
}

#[test]
fn reopens_many_segments_and_reads_evicted_entries_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(&dir, small()).expect("open");
    let mut expected = Vec::new();
    let mut next = 1;
    for batch in 0..80u64 {
        let batch_entries = entries(next..=next + batch % 7, 1);
        next += batch_entries.len() as u64;
        expected.extend(batch_entries.iter().cloned());
        storage
            .persist(PersistBatch {
                entries: batch_entries,
                hard_state: Some(hard_state(1, next - 1)),
            })
            .expect("persist");
    }
    assert!(segment_files(&dir).len() > 5, "{:?}", segment_files(&dir));
    assert_eq!(all_entries(&storage), expected);

    // A conflict reaching back over several segments.
    let from = expected.len() as u64 / 2;
    expected.truncate(from as usize - 1);
    expected.extend(entries(from..=from + 20, 2));
    storage
        .persist(PersistBatch {
            entries: entries(from..=from + 20, 2),
            hard_state: Some(hard_state(2, from - 1)),
        })
        .expect("persist conflicting suffix");
    drop(storage);

    let storage = open(&dir, small()).expect("reopen");
    assert_eq!(storage.last_index(), from + 20);
    assert_eq!(storage.hard_state(), hard_state(2, from - 1));
    assert_eq!(all_entries(&storage), expected);
    let ctx = GetEntriesContext::empty(false);
    let size = u64::from(expected[0].compute_size());
    assert_eq!(
        storage.entries(1, 40, size * 5, ctx).unwrap(),
        expected[..5]
    );
    for (position, entry) in expected.iter().enumerate() {
        assert_eq!(storage.term(position as u64 + 1).unwrap(), entry.term);
    }
}

#[test]
fn a_torn_tail_is_cut_and_everything_whole_before_it_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = open(&dir, small()).expect("open");
    // Per batch: its segment, where its entry record ends, where the batch ends.
    let mut batches = Vec::new();
    let hard_state_len = 9 + u64::from(hard_state(1, 70).compute_size());
    for index in 1..=70 {
        storage
            .persist(PersistBatch {
                entries: vec![entry(index, 1)],
                hard_state: Some(hard_state(1, index)),
            })
            .expect("persist");
        let last = segment_files(&dir).pop().expect("a segment");
        let end = std::fs::metadata(&last).expect("metadata").len();
        batches.push((last, end - hard_state_len, end));
    }
    drop(storage);
    let files = segment_files(&dir);
    let last = files.last().expect("a segment").clone();
    assert!(files.len() > 2, "{files:?}");
    let bytes = std::fs::read(&last).expect("read the last segment");
    let tail_start = batches[batches.len() - 3].2 - 1;
    let cuts = (0..tail_start)
        .step_by(7)
        .chain(tail_start..bytes.len() as u64);

    for cut in cuts {
        // Back to the files as written, cut at `cut`.
        for file in segment_files(&dir) {
            if !files.contains(&file) {
                std::fs::remove_file(file).expect("remove a later segment");
            }
        }
        std::fs::write(&last, &bytes[..cut as usize]).expect("cut");

        let whole = |end: u64, path: &PathBuf| path != &last || end <= cut;
        let last_index = batches.iter().filter(|(p, e, _)| whole(*e, p)).count() as u64;
        let commit = batches.iter().filter(|(p, _, e)| whole(*e, p)).count() as u64;
        let storage = open(&dir, small()).expect("open after a cut");
        assert_eq!(storage.last_index(), last_index, "cut at {cut}");
        assert_eq!(storage.hard_state(), hard_state(1, commit), "cut at {cut}");
        assert_eq!(
            all_entries(&storage),
            entries(1..=last_index, 1),
            "cut at {cut}"
        );

        storage
            .persist(PersistBatch {
                entries: vec![entry(last_index + 1, 2)],
                hard_state: Some(hard_state(2, last_index + 1)),
            })
            .expect("append after a cut");
        drop(storage);
        let storage = open(&dir, small()).expect("reopen after appending");
        let mut expected = entries(1..=last_index, 1);
        expected.push(entry(last_index + 1, 2));
        assert_eq!(all_entries(&storage), expected, "cut at {cut}");
        assert_eq!(storage.hard_state(), hard_state(2, last_index + 1));
    }
}

fn flip_byte(path: &PathBuf, position: usize) {
    let mut bytes = std::fs::read(path).expect("read");
    bytes[position] ^= 0x40;
    std::fs::write(path, bytes).expect("write");
}

fn fill(storage: &RaftStorage, count: u64) {
    for index in 1..=count {
        storage
            .persist(PersistBatch {
                entries: vec![entry(index, 1)],
                hard_state: Some(hard_state(1, index)),
            })
            .expect("persist");
    }
}

#[test]
fn damage_before_the_last_segment_fails_the_open_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(&open(&dir, small()).expect("open"), 60);
    let files = segment_files(&dir);
    assert!(files.len() > 2, "{files:?}");
    let len = std::fs::metadata(&files[1]).expect("metadata").len();
    flip_byte(&files[1], len as usize / 2);

    let error = open(&dir, small()).expect_err("damage must fail the open");
    let name = files[1].file_name().unwrap().to_string_lossy().into_owned();
    assert!(error.to_string().contains(&name), "{error}");
    assert!(matches!(error, StorageError::Corrupt { ref path, .. } if path == &files[1]));
}

#[test]
fn damage_before_the_last_record_is_not_taken_for_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    fill(&open(&dir, StorageOptions::default()).expect("open"), 10);
    let files = segment_files(&dir);
    let bytes = std::fs::read(&files[0]).expect("read");
    let needle = b"block 0005";
    let position = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("entry 5 in the file");
    flip_byte(&files[0], position + 3);

    let error = open(&dir, StorageOptions::default()).expect_err("damage must fail the open");
    assert!(
        matches!(error, StorageError::Corrupt { ref path, .. } if path == &files[0]),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&files[0]).expect("read").len(),
        bytes.len(),
        "nothing cut"
    );
}

/// Runs a single-voter RawNode until it has nothing more to do; returns
/// the data of the entries it applied.
fn drive(node: &mut RawNode<RaftStorage>, storage: &RaftStorage) -> Vec<Entry> {
    let mut applied = Vec::new();
    while node.has_ready() {
        let mut ready = node.ready();
        assert!(ready.messages().is_empty(), "a single voter sends nothing");
        applied.extend(ready.take_committed_entries());
        storage
            .persist(PersistBatch {
                entries: ready.entries().clone(),
                hard_state: ready.hs().cloned(),
            })
            .expect("persist ready");
        let mut light = node.advance(ready);
        if let Some(commit) = light.commit_index() {
            let mut hard_state = storage.hard_state();
            hard_state.commit = commit;
            storage
                .persist(PersistBatch {
                    hard_state: Some(hard_state),
                    ..Default::default()
                })
                .expect("persist commit");
        }
        applied.extend(light.take_committed_entries());
        node.advance_apply();
    }
    applied
}

#[test]
fn a_raw_node_restarts_from_the_storage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let logger = slog::Logger::root(slog::Discard, slog::o!());
    let config = Config {
        id: 1,
        ..Default::default()
    };
    let single = |dir: &TempDir| {
        RaftStorage::open(
            &wal_dir(dir),
            &dir.path().join("snap").join("mychannel"),
            &[1],
            small(),
        )
        .expect("open")
    };

    let storage = single(&dir);
    let mut node = RawNode::new(&config, storage.clone(), &logger).expect("raw node");
    node.campaign().expect("campaign");
    drive(&mut node, &storage);
    for block in 0..5 {
        node.propose(Vec::new(), format!("block {block}").into_bytes())
            .expect("propose");
    }
    let applied = drive(&mut node, &storage);
    let blocks: Vec<Vec<u8>> = applied
        .iter()
        .filter(|e| !e.data.is_empty())
        .map(|e| e.data.to_vec())
        .collect();
    assert_eq!(
        blocks,
        (0..5)
            .map(|b| format!("block {b}").into_bytes())
            .collect::<Vec<_>>()
    );
    let hard_state = node.raft.hard_state();
    assert_eq!(
        hard_state.commit, 6,
        "the leader's empty entry and five blocks"
    );
    assert_eq!(storage.hard_state(), hard_state);
    let log = node.raft.raft_log.all_entries();
    drop(node);
    drop(storage);

    let storage = single(&dir);
    assert!(!storage.is_fresh());
    let mut node = RawNode::new(&config, storage.clone(), &logger).expect("restarted raw node");
    assert_eq!(node.raft.hard_state(), hard_state);
    assert_eq!(node.raft.raft_log.all_entries(), log);
    // Applied was not given back, so everything committed is applied again.
    assert_eq!(drive(&mut node, &storage), log);

    node.campaign().expect("campaign again");
    drive(&mut node, &storage);
    node.propose(Vec::new(), b"block 5".to_vec())
        .expect("propose");
    let applied = drive(&mut node, &storage);
    assert_eq!(
        applied.last().map(|e| e.data.to_vec()),
        Some(b"block 5".to_vec())
    );
    assert_eq!(storage.hard_state().commit, 8);
    assert_eq!(storage.hard_state().term, 2);
}

/// Failures and power cuts at each step of the WAL, injected through its
/// failpoints.
#[cfg(feature = "failpoints")]
mod faults {
    use super::*;
    use crate::runtime::faults::{self, journal, points};

    const ERRORS: [(&str, i32); 3] = [
        ("ENOSPC", libc::ENOSPC),
        ("EIO", libc::EIO),
        ("EMFILE", libc::EMFILE),
    ];

    /// Text only this test's files have in their path, to scope failpoints.
    fn scope(dir: &TempDir) -> String {
        dir.path()
            .file_name()
            .expect("tempdir name")
            .to_string_lossy()
            .into_owned()
    }

    fn configure(point: &str, actions: &str) {
        faults::configure(point, actions).expect("configure the failpoint");
    }

    /// What was made durable: the entries and hard state of every persist
    /// that returned Ok.
    #[derive(Default)]
    struct Persisted {
        entries: Vec<Entry>,
        hard_state: HardState,
    }

    impl Persisted {
        fn next_index(&self) -> u64 {
            self.entries.len() as u64 + 1
        }

        /// Persists batches of one to three entries until one fails; answers
        /// that failure, or None if all of `batches` went through.
        fn persist_until_failure(
            &mut self,
            storage: &RaftStorage,
            batches: u64,
        ) -> Option<StorageError> {
            for batch in 0..batches {
                let first = self.next_index();
                let written = entries(first..=first + batch % 3, 1);
                let hard_state = hard_state(1, first + batch % 3);
                let result = storage.persist(PersistBatch {
                    entries: written.clone(),
                    hard_state: Some(hard_state.clone()),
                });
                match result {
                    Ok(()) => {
                        self.entries.extend(written);
                        self.hard_state = hard_state;
                    }
                    Err(error) => return Some(error),
                }
            }
            None
        }

        /// The storage holds exactly what was persisted, and goes on from it.
        fn check(&mut self, dir: &TempDir, what: &str) {
            let storage = open(dir, small()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            assert_eq!(storage.last_index(), self.entries.len() as u64, "{what}");
            assert_eq!(all_entries(&storage), self.entries, "{what}");
            assert_eq!(storage.hard_state(), self.hard_state, "{what}");
            assert!(
                self.persist_until_failure(&storage, 3).is_none(),
                "{what}: persisting after reopening"
            );
            drop(storage);
            let storage = open(dir, small()).unwrap_or_else(|e| panic!("{what}: reopen: {e}"));
            assert_eq!(
                all_entries(&storage),
                self.entries,
                "{what}: after more writes"
            );
        }
    }

    /// The injected error comes back as the storage's own, naming the file.
    fn assert_injected(error: &StorageError, dir: &TempDir, errno: i32, what: &str) {
        match error {
            StorageError::Io { path, source, .. } => {
                assert!(path.starts_with(dir.path()), "{what}: {error}");
                assert_eq!(source.raw_os_error(), Some(errno), "{what}: {error}");
                assert!(
                    error.to_string().contains(&path.display().to_string()),
                    "{what}: {error}"
                );
            }
            other => panic!("{what}: expected an I/O error, got {other}"),
        }
    }

    /// Fails `point` with each error after `skips` passes; the failed persist
    /// returns that error, later ones are refused, and the WAL reopens with
    /// exactly what was persisted, with or without a power cut after the
    /// failure.
    fn fail_each_write_step(point: &str, skips: &[u64]) {
        let _only_me = faults::exclusive();
        for (name, errno) in ERRORS {
            for &skip in skips {
                for power_loss in [false, true] {
                    let what = format!("{point} {name} after {skip}, power loss {power_loss}");
                    let dir = tempfile::tempdir().expect("tempdir");
                    let storage = open(&dir, small()).expect("open");
                    let mut persisted = Persisted::default();
                    configure(
                        point,
                        &format!("{skip}*off->return({name}@{})", scope(&dir)),
                    );
                    let failure = persisted.persist_until_failure(&storage, 40);
                    configure(point, "off");
                    let failure = failure.unwrap_or_else(|| panic!("{what}: never failed"));
                    assert_injected(&failure, &dir, errno, &what);
                    assert!(
                        matches!(
                            storage.persist(PersistBatch {
                                entries: vec![entry(persisted.next_index(), 1)],
                                hard_state: None,
                            }),
                            Err(StorageError::Failed { .. })
                        ),
                        "{what}: nothing more is written after a failure"
                    );
                    assert_eq!(storage.last_index(), persisted.entries.len() as u64);
                    drop(storage);
                    if power_loss {
                        journal::lose_unsynced(dir.path());
                    }
                    persisted.check(&dir, &what);
                }
            }
        }
    }

    #[test]
    fn a_failed_record_write_leaves_what_was_persisted() {
        fail_each_write_step(points::RAFT_WAL_WRITE, &[0, 4, 17]);
    }

    #[test]
    fn a_failed_sync_leaves_what_was_persisted() {
        fail_each_write_step(points::RAFT_WAL_SYNC, &[0, 4, 17]);
    }

    #[test]
    fn a_failed_segment_creation_leaves_what_was_persisted() {
        fail_each_write_step(points::RAFT_WAL_SEGMENT_CREATE, &[0, 2]);
    }

    #[test]
    fn a_failed_folder_sync_leaves_what_was_persisted() {
        fail_each_write_step(points::RAFT_WAL_SYNC_DIR, &[0, 2]);
    }

    #[test]
    fn a_new_channel_folder_fails_to_open_at_each_step_and_opens_afterwards() {
        let _only_me = faults::exclusive();
        for point in [
            points::RAFT_WAL_SYNC_DIR,
            points::RAFT_WAL_SEGMENT_CREATE,
            points::RAFT_WAL_WRITE,
            points::RAFT_WAL_SYNC,
        ] {
            for (name, errno) in ERRORS {
                for power_loss in [false, true] {
                    let what = format!("{point} {name}, power loss {power_loss}");
                    let dir = tempfile::tempdir().expect("tempdir");
                    configure(point, &format!("return({name}@{})", scope(&dir)));
                    let failure = open(&dir, small());
                    configure(point, "off");
                    let failure = failure.err().unwrap_or_else(|| panic!("{what}: opened"));
                    assert_injected(&failure, &dir, errno, &what);
                    if power_loss {
                        journal::lose_unsynced(dir.path());
                    }
                    let storage = open(&dir, small()).unwrap_or_else(|e| panic!("{what}: {e}"));
                    assert!(storage.is_fresh(), "{what}");
                    assert_eq!(storage.conf_state().voters, vec![1, 2, 3], "{what}");
                    drop(storage);
                    Persisted::default().check(&dir, &what);
                }
            }
        }
    }

    /// A torn last record, then the cut that recovery makes of it fails:
    /// opening fails naming the segment, and succeeds once the disk does.
    #[test]
    fn a_failed_cut_of_a_torn_tail_fails_the_open_and_changes_nothing() {
        let _only_me = faults::exclusive();
        for (name, errno) in ERRORS {
            for power_loss in [false, true] {
                let what = format!("truncate {name}, power loss {power_loss}");
                let dir = tempfile::tempdir().expect("tempdir");
                let storage = open(&dir, small()).expect("open");
                let mut persisted = Persisted::default();
                assert!(persisted.persist_until_failure(&storage, 20).is_none());
                drop(storage);
                let last = segment_files(&dir).pop().expect("a segment");
                let whole = std::fs::read(&last).expect("read");
                // Half of a record as a crash during its write leaves it.
                let mut torn = RecordBuf::default();
                torn.push(RecordKind::Entry, &entry(persisted.next_index(), 1))
                    .expect("encode");
                let mut bytes = whole.clone();
                bytes.extend_from_slice(&torn.bytes[..torn.bytes.len() / 2]);
                std::fs::write(&last, &bytes).expect("tear the tail");

                configure(
                    points::RAFT_WAL_TRUNCATE,
                    &format!("return({name}@{})", scope(&dir)),
                );
                let failure = open(&dir, small());
                configure(points::RAFT_WAL_TRUNCATE, "off");
                let failure = failure.err().unwrap_or_else(|| panic!("{what}: opened"));
                assert_injected(&failure, &dir, errno, &what);
                assert_eq!(std::fs::read(&last).expect("read"), bytes, "{what}");
                if power_loss {
                    journal::lose_unsynced(dir.path());
                }
                persisted.check(&dir, &what);
                assert!(
                    std::fs::read(&last).expect("read").starts_with(&whole),
                    "{what}"
                );
            }
        }
    }

    /// A sync fails and so does the cut that should undo its write: a power
    /// cut then keeps any part of that write. Whatever part it keeps, the
    /// WAL opens with everything persisted before, and at most the whole
    /// records of the failed write after it.
    #[test]
    fn a_power_cut_that_tears_an_unsynced_write_keeps_what_was_persisted() {
        let _only_me = faults::exclusive();
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = open(&dir, small()).expect("open");
        let mut persisted = Persisted::default();
        assert!(persisted.persist_until_failure(&storage, 12).is_none());
        let scoped = |action: &str| format!("return({action}@{})", scope(&dir));
        configure(points::RAFT_WAL_SYNC, &scoped("EIO"));
        configure(points::RAFT_WAL_TRUNCATE, &scoped("EIO"));
        let failed = entries(persisted.next_index()..=persisted.next_index() + 2, 1);
        let failure = storage.persist(PersistBatch {
            entries: failed.clone(),
            hard_state: Some(hard_state(1, persisted.next_index() + 2)),
        });
        configure(points::RAFT_WAL_SYNC, "off");
        configure(points::RAFT_WAL_TRUNCATE, "off");
        assert_injected(&failure.expect_err("sync fails"), &dir, libc::EIO, "sync");
        drop(storage);

        // The power cut as the journal sees it: which bytes are not durable.
        let mut unsynced_lengths = Vec::new();
        journal::lose_unsynced_tearing(dir.path(), &mut |unsynced| {
            unsynced_lengths.push(unsynced);
            unsynced
        });
        let [unsynced] = unsynced_lengths[..] else {
            panic!("one file holds the failed write: {unsynced_lengths:?}");
        };
        let saved: Vec<(PathBuf, Vec<u8>)> = segment_files(&dir)
            .into_iter()
            .map(|path| {
                let bytes = std::fs::read(&path).expect("read");
                (path, bytes)
            })
            .collect();
        let (last, last_bytes) = saved.last().expect("a segment").clone();
        let durable = last_bytes.len() as u64 - unsynced;
        // Every part a power cut can leave, as lose_unsynced_tearing cuts it.
        for keep in 0..=unsynced {
            for (path, bytes) in &saved {
                std::fs::write(path, bytes).expect("restore");
            }
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&last)
                .expect("open the last segment");
            file.set_len(durable + keep).expect("cut");
            let storage = open(&dir, small()).unwrap_or_else(|e| panic!("keeping {keep}: {e}"));
            let got = all_entries(&storage);
            assert!(got.starts_with(&persisted.entries), "keeping {keep}");
            assert!(
                failed.starts_with(&got[persisted.entries.len()..]),
                "keeping {keep}: only whole records of the failed write"
            );
        }
    }
}
