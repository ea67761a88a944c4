//! Faults injected at every step of the store: errors a retry may clear,
//! and power cuts (simulated in-process by the durability journal).

use std::path::Path;

use bytes::Bytes;

use super::testing::{append_acknowledged, block_after, encoded, genesis, next, valid_chain};
use super::*;
use crate::runtime::faults::{self, journal, points};

/// Turns its failpoint off when dropped, even when the test fails.
struct Injected(&'static str);

impl Injected {
    fn new(point: &'static str, actions: &str) -> Injected {
        faults::configure(point, actions).expect("configure failpoint");
        Injected(point)
    }
}

impl Drop for Injected {
    fn drop(&mut self) {
        let _ = faults::configure(self.0, "off");
    }
}

/// Text found in every path under `dir` (and nowhere else): the scope of
/// this test's failpoints.
fn scope(dir: &Path) -> String {
    dir.file_name()
        .expect("temp folder name")
        .to_string_lossy()
        .into_owned()
}

/// `errno` every time the point is reached for a path that contains
/// `scope`. (No counts: other tests running meanwhile reach the same
/// points, and every evaluation counts, whatever its path.)
fn fail_at(errno: &str, scope: &str) -> String {
    format!("return({errno}@{scope})")
}

/// The blocks after the tip, one batch.
fn batch(store: &BlockStore, payloads: &[&[u8]]) -> Vec<Block> {
    let mut tip = store.tip();
    payloads
        .iter()
        .map(|payload| {
            let block = block_after(&tip, payload);
            tip.advance(&block);
            block
        })
        .collect()
}

fn assert_holds(stored: &[Bytes], acknowledged: &[Bytes]) {
    assert!(
        stored.len() >= acknowledged.len(),
        "{} blocks stored, {} acknowledged",
        stored.len(),
        acknowledged.len()
    );
    assert_eq!(&stored[..acknowledged.len()], acknowledged);
}

const APPEND_POINTS: &[&str] = &[
    points::LEDGER_APPEND_WRITE,
    points::LEDGER_APPEND_SYNC,
    points::LEDGER_APPEND_INDEX,
    points::LEDGER_APPEND_INDEX_FLUSH,
];
const ROLLOVER_POINTS: &[&str] = &[
    points::LEDGER_ROLLOVER_CREATE,
    points::LEDGER_ROLLOVER_SYNC_DIR,
];
const ERRORS: &[(&str, i32)] = &[
    ("ENOSPC", libc::ENOSPC),
    ("EIO", libc::EIO),
    ("EMFILE", libc::EMFILE),
];
const PROBE_ROOM: u64 = 64 * 1024;

/// A factory whose every block after the first in a file starts a new one,
/// when `rollover` is asked for.
fn factory(dir: &Path, rollover: bool) -> LedgerFactory {
    let factory = LedgerFactory::open(dir).expect("open");
    if rollover {
        factory.with_max_file_bytes(1)
    } else {
        factory
    }
}

#[test]
fn a_failed_append_faults_the_store_and_reopen_clears_it() {
    let _only_me = faults::exclusive();
    let points = APPEND_POINTS.iter().map(|p| (*p, false));
    let points = points.chain(ROLLOVER_POINTS.iter().map(|p| (*p, true)));
    for (point, rollover) in points {
        for (errno, code) in ERRORS {
            fail_append_then_reopen(point, rollover, errno, *code);
        }
    }
}

fn fail_append_then_reopen(point: &'static str, rollover: bool, errno: &str, code: i32) {
    let case = format!("{point} {errno}");
    let dir = tempfile::tempdir().expect("tempdir");
    let scope = scope(dir.path());
    let mut acknowledged = {
        let factory = factory(dir.path(), rollover);
        let store = factory.create_store("c1", &genesis("c1")).expect("create");
        let mut acknowledged = valid_chain(&store);
        acknowledged.extend(append_acknowledged(&store, &[next(&store, b"a")]));
        acknowledged.extend(append_acknowledged(&store, &[next(&store, b"b")]));

        let injected = Injected::new(point, &fail_at(errno, &scope));
        let mut writer = store.writer().expect("writer");
        let failed = writer
            .append(&batch(&store, &[b"c", b"d"]))
            .expect_err(&case);
        assert!(failed.is_transient(), "{case}: {failed}");
        assert!(
            matches!(failed, LedgerError::File { .. } | LedgerError::Index { .. }),
            "{case}: {failed}"
        );
        assert!(
            failed.to_string().contains(&scope),
            "{case}: names the path: {failed}"
        );
        let fault = store.fault().expect("faulted");
        assert!(
            fault.contains(&format!("os error {code}")),
            "{case}: {fault}"
        );
        let refused = writer.append(&[next(&store, b"e")]).expect_err(&case);
        assert!(
            matches!(refused, LedgerError::Faulted { .. }),
            "{case}: {refused}"
        );
        assert!(refused.is_transient());
        assert_eq!(
            valid_chain(&store),
            acknowledged,
            "{case}: published blocks stay readable"
        );
        assert!(matches!(
            store.reopen(PROBE_ROOM),
            Err(LedgerError::WriterBusy(_))
        ));
        drop(writer);
        if !rollover {
            // The probe meets the same fault.
            assert!(store.reopen(PROBE_ROOM).is_err(), "{case}: still failing");
            assert!(store.fault().is_some());
        }
        drop(injected);

        store.reopen(PROBE_ROOM).expect(&case);
        assert_eq!(store.fault(), None, "{case}");
        let mut writer = store.writer().expect("writer");
        let published = writer.publish();
        assert!(published >= 3, "{case}");
        let more = batch(&store, &[b"f", b"g"]);
        writer.append(&more).expect(&case);
        writer.publish();
        let stored = valid_chain(&store);
        assert_holds(&stored, &acknowledged);
        assert_eq!(&stored[stored.len() - 2..], &encoded(&more)[..], "{case}");
        acknowledged = stored;
        acknowledged
    };
    let factory = factory(dir.path(), rollover);
    assert_eq!(factory.channel_ids(), vec!["c1".to_string()]);
    let store = factory.open_store("c1").expect(&case);
    assert_eq!(
        valid_chain(&store),
        acknowledged,
        "{case}: after a fresh open"
    );
    acknowledged.extend(append_acknowledged(&store, &[next(&store, b"h")]));
    assert_eq!(valid_chain(&store), acknowledged);
}

#[test]
fn a_power_cut_at_any_append_step_keeps_every_acknowledged_block() {
    let _only_me = faults::exclusive();
    let points = APPEND_POINTS.iter().map(|p| (*p, false));
    let points = points.chain(ROLLOVER_POINTS.iter().map(|p| (*p, true)));
    for (point, rollover) in points {
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = scope(dir.path());
        let acknowledged = {
            let factory = factory(dir.path(), rollover);
            let store = factory.create_store("c1", &genesis("c1")).expect("create");
            let mut acknowledged = valid_chain(&store);
            acknowledged.extend(append_acknowledged(&store, &[next(&store, b"a")]));
            acknowledged.extend(append_acknowledged(&store, &batch(&store, &[b"b", b"c"])));
            let _injected = Injected::new(point, &fail_at("ENOSPC", &scope));
            let mut writer = store.writer().expect("writer");
            writer
                .append(&batch(&store, &[b"d", b"e"]))
                .expect_err(point);
            journal::lose_unsynced(dir.path());
            acknowledged
        };
        let factory = factory(dir.path(), rollover);
        let store = factory.open_store("c1").expect(point);
        assert_holds(&valid_chain(&store), &acknowledged);
        let mut acknowledged = valid_chain(&store);
        acknowledged.extend(append_acknowledged(&store, &[next(&store, b"f")]));
        drop(store);
        let store = factory.open_store("c1").expect(point);
        assert_eq!(valid_chain(&store), acknowledged, "{point}");
    }
}

/// Leaves a store whose last block is synced but not indexed, followed by a
/// torn record: what a crash between file and index, then in the middle of
/// the next write, leaves. Returns the acknowledged blocks.
fn store_with_unindexed_tail(dir: &Path, scope: &str) -> Vec<Bytes> {
    let factory = factory(dir, false);
    let store = factory.create_store("c1", &genesis("c1")).expect("create");
    let mut acknowledged = valid_chain(&store);
    acknowledged.extend(append_acknowledged(&store, &[next(&store, b"a")]));
    {
        let _injected = Injected::new(points::LEDGER_APPEND_INDEX, &fail_at("EIO", scope));
        let mut writer = store.writer().expect("writer");
        writer
            .append(&[next(&store, b"b")])
            .expect_err("index fails");
    }
    drop((store, factory));
    let path = file_path(&dir.join(CHAINS_DIR).join("c1"), 0);
    journal::before_write(&path);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .expect("open");
    std::io::Write::write_all(&mut file, &[0x90, 0x03, 1, 2, 3]).expect("write");
    file.sync_all().expect("sync");
    journal::synced(&path);
    acknowledged
}

#[test]
fn a_power_cut_at_any_recovery_step_keeps_every_acknowledged_block() {
    let _only_me = faults::exclusive();
    for point in [
        points::LEDGER_RECOVERY_SYNC,
        points::LEDGER_RECOVERY_INDEX,
        points::LEDGER_RECOVERY_TRUNCATE,
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = scope(dir.path());
        let acknowledged = store_with_unindexed_tail(dir.path(), &scope);
        {
            let _injected = Injected::new(point, &fail_at("ENOSPC", &scope));
            let factory = factory(dir.path(), false);
            let failed = factory.open_store("c1").err().expect(point);
            assert!(failed.is_transient(), "{point}: {failed}");
            assert!(failed.to_string().contains(&scope), "{point}: {failed}");
            journal::lose_unsynced(dir.path());
        }
        let factory = factory(dir.path(), false);
        let store = factory.open_store("c1").expect(point);
        let stored = valid_chain(&store);
        assert_eq!(stored.len(), 3, "{point}: the synced block is recovered");
        assert_holds(&stored, &acknowledged);
        append_acknowledged(&store, &[next(&store, b"c")]);
        assert_eq!(valid_chain(&store).len(), 4);
    }
}

#[test]
fn reopen_recovers_blocks_synced_before_an_index_fault() {
    let _only_me = faults::exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let scope = scope(dir.path());
    let factory = factory(dir.path(), false);
    let store = factory.create_store("c1", &genesis("c1")).expect("create");
    let injected = Injected::new(points::LEDGER_APPEND_INDEX_FLUSH, &fail_at("EIO", &scope));
    let mut writer = store.writer().expect("writer");
    let lost = batch(&store, &[b"a", b"b"]);
    writer.append(&lost).expect_err("flush fails");
    drop((writer, injected));
    store.reopen(PROBE_ROOM).expect("reopen");
    assert_eq!(
        store.tip().height,
        3,
        "the synced blocks are part of the chain"
    );
    let writer = store.writer().expect("writer");
    assert_eq!(writer.publish(), 3, "and published by the next writer");
    assert_eq!(&valid_chain(&store)[1..], &encoded(&lost)[..]);
}

#[test]
fn reopen_discards_records_whose_sync_failed() {
    let _only_me = faults::exclusive();
    // Without rollovers the batch's one sync fails: both blocks go. With a
    // file per block, the rollover before the second block syncs the first
    // one, and the sync of the second one's file fails: the first is
    // recovered, the second goes.
    for (rollover, failing_file, height, files) in [
        (false, None, 2, vec![0]),
        (true, Some("blockfile_000003"), 3, vec![0, 1, 2]),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let scope = scope(dir.path());
        let factory = factory(dir.path(), rollover);
        let store = factory.create_store("c1", &genesis("c1")).expect("create");
        append_acknowledged(&store, &[next(&store, b"a")]);
        let failing = match failing_file {
            Some(file) => format!("{scope}/{CHAINS_DIR}/c1/{file}"),
            None => scope.clone(),
        };
        let injected = Injected::new(points::LEDGER_APPEND_SYNC, &fail_at("EIO", &failing));
        let mut writer = store.writer().expect("writer");
        writer
            .append(&batch(&store, &[b"b", b"c"]))
            .expect_err("sync fails");
        drop((writer, injected));
        store.reopen(PROBE_ROOM).expect("reopen");
        assert_eq!(store.tip().height, height, "rollover {rollover}");
        let chain_dir = dir.path().join(CHAINS_DIR).join("c1");
        assert_eq!(files::block_files(&chain_dir).expect("list"), files);
        append_acknowledged(&store, &[next(&store, b"d")]);
        drop(store);
        let store = factory.open_store("c1").expect("open");
        assert_eq!(valid_chain(&store).len() as u64, height + 1);
    }
}

#[test]
fn a_power_cut_while_creating_a_channel_never_blocks_creating_it_again() {
    let _only_me = faults::exclusive();
    // Creating: make the folder, write and sync genesis, sync the folder
    // (in .joining-c1), rename into place, sync chains/, build the index
    // (for c1).
    let steps = [
        (points::LEDGER_JOIN_CREATE, ".joining-c1"),
        (points::LEDGER_APPEND_WRITE, ".joining-c1"),
        (points::LEDGER_APPEND_SYNC, ".joining-c1"),
        (points::LEDGER_JOIN_SYNC_DIR, ".joining-c1"),
        (points::LEDGER_JOIN_CREATE, "c1"),
        (points::LEDGER_JOIN_SYNC_DIR, "c1"),
        (points::LEDGER_RECOVERY_SYNC, "c1"),
        (points::LEDGER_RECOVERY_INDEX, "c1"),
    ];
    for (point, entry) in steps {
        for power_cut in [false, true] {
            let case = format!("{point} at {entry}, power cut {power_cut}");
            let dir = tempfile::tempdir().expect("tempdir");
            let scope = format!("{}/{CHAINS_DIR}/{entry}", scope(dir.path()));
            {
                let factory = factory(dir.path(), false);
                factory
                    .create_store("other", &genesis("other"))
                    .expect("create");
                let injected = Injected::new(point, &fail_at("ENOSPC", &scope));
                let failed = factory
                    .create_store("c1", &genesis("c1"))
                    .err()
                    .expect(&case);
                assert!(failed.is_transient(), "{case}: {failed}");
                drop(injected);
                if power_cut {
                    journal::lose_unsynced(dir.path());
                } else {
                    assert_eq!(factory.channel_ids(), vec!["other".to_string()], "{case}");
                    let store = factory.create_store("c1", &genesis("c1")).expect(&case);
                    assert_eq!(valid_chain(&store).len(), 1);
                    continue;
                }
            }
            let factory = factory(dir.path(), false);
            let ids = factory.channel_ids();
            assert!(ids.contains(&"other".to_string()), "{case}: {ids:?}");
            if ids.contains(&"c1".to_string()) {
                // The creation was durable after all: a whole channel.
                let store = factory.open_store("c1").expect(&case);
                assert_eq!(valid_chain(&store).len(), 1, "{case}");
                drop(store);
                factory.remove_store("c1").expect(&case);
            }
            let leftovers: Vec<String> = std::fs::read_dir(dir.path().join(CHAINS_DIR))
                .expect("list")
                .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
                .filter(|name| name.starts_with('.'))
                .collect();
            assert!(leftovers.is_empty(), "{case}: {leftovers:?}");
            let store = factory.create_store("c1", &genesis("c1")).expect(&case);
            assert_eq!(valid_chain(&store).len(), 1, "{case}");
        }
    }
}

#[test]
fn a_removal_interrupted_at_any_step_is_finished_or_undone() {
    let _only_me = faults::exclusive();
    // Removing: rename aside (to .removing-c1), sync chains/ (for c1),
    // delete (.removing-c1).
    let steps = [
        (points::LEDGER_REMOVE_MARK, ".removing-c1"),
        (points::LEDGER_REMOVE_MARK, "c1"),
        (points::LEDGER_REMOVE_DELETE, ".removing-c1"),
    ];
    for (point, entry) in steps {
        for power_cut in [false, true] {
            let case = format!("{point} at {entry}, power cut {power_cut}");
            let dir = tempfile::tempdir().expect("tempdir");
            let scope = format!("{}/{CHAINS_DIR}/{entry}", scope(dir.path()));
            let acknowledged = {
                let factory = factory(dir.path(), false);
                let other = factory
                    .create_store("other", &genesis("other"))
                    .expect("create");
                append_acknowledged(&other, &[next(&other, b"x")]);
                let store = factory.create_store("c1", &genesis("c1")).expect("create");
                append_acknowledged(&store, &[next(&store, b"a")]);
                let reader = store.clone();
                drop(store);
                let injected = Injected::new(point, &fail_at("EIO", &scope));
                let failed = factory.remove_store("c1").expect_err(&case);
                assert!(failed.is_transient(), "{case}: {failed}");
                assert!(
                    matches!(reader.block(0), Err(LedgerError::NotFound(_))),
                    "{case}: a removed store serves nothing"
                );
                drop(injected);
                if power_cut {
                    journal::lose_unsynced(dir.path());
                } else {
                    if factory.channel_ids().contains(&"c1".to_string()) {
                        factory.remove_store("c1").expect(&case);
                    }
                    assert_eq!(factory.channel_ids(), vec!["other".to_string()], "{case}");
                    let store = factory.create_store("c1", &genesis("c1")).expect(&case);
                    assert_eq!(valid_chain(&store).len(), 1, "{case}");
                    continue;
                }
                valid_chain(&other)
            };
            let factory = factory(dir.path(), false);
            let other = factory.open_store("other").expect(&case);
            assert_eq!(valid_chain(&other), acknowledged, "{case}");
            if factory.channel_ids().contains(&"c1".to_string()) {
                // The removal was not durable: the channel is whole.
                let store = factory.open_store("c1").expect(&case);
                assert_eq!(valid_chain(&store).len(), 2, "{case}");
                drop(store);
                factory.remove_store("c1").expect(&case);
            }
            assert_eq!(factory.channel_ids(), vec!["other".to_string()], "{case}");
            let store = factory.create_store("c1", &genesis("c1")).expect(&case);
            assert_eq!(valid_chain(&store).len(), 1, "{case}");
        }
    }
}

#[test]
fn an_index_fault_in_one_channel_leaves_the_others_appending() {
    let _only_me = faults::exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let only_a = format!("{}/{CHAINS_DIR}/a/", scope(dir.path()));
    let factory = factory(dir.path(), false);
    let a = factory.create_store("a", &genesis("a")).expect("create");
    let b = factory.create_store("b", &genesis("b")).expect("create");
    let injected = Injected::new(
        points::LEDGER_APPEND_INDEX,
        &format!("return(EIO@{only_a})"),
    );
    let mut writer_a = a.writer().expect("writer");
    writer_a.append(&[next(&a, b"a1")]).expect_err("a faults");
    assert!(a.fault().is_some());
    for payload in [&b"b1"[..], b"b2", b"b3"] {
        append_acknowledged(&b, &[next(&b, payload)]);
    }
    assert_eq!(b.fault(), None);
    assert_eq!(valid_chain(&b).len(), 4);
    assert_eq!(valid_chain(&a).len(), 1, "a still serves what it published");
    drop((writer_a, injected));
    a.reopen(PROBE_ROOM).expect("reopen a");
    append_acknowledged(&a, &[next(&a, b"a2")]);
    assert_eq!(valid_chain(&a).len(), 3);
}

#[test]
fn reads_of_published_blocks_never_fail_while_the_index_is_reopened() {
    let _only_me = faults::exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let factory = factory(dir.path(), false);
    let store = factory.create_store("c1", &genesis("c1")).expect("create");
    for payload in [&b"a"[..], b"b", b"c"] {
        append_acknowledged(&store, &[next(&store, payload)]);
    }
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !done.load(Ordering::Acquire) || reads == 0 {
                for number in 0..store.height() {
                    store.block(number).expect("read").expect("published");
                    reads += 1;
                }
            }
            reads
        })
    };
    for _ in 0..5 {
        store.reopen(PROBE_ROOM).expect("reopen");
    }
    done.store(true, Ordering::Release);
    assert!(reader.join().expect("reader") > 0);
}
