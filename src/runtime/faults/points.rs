//! The names of the failpoints, one per step that can fail on a real disk.
//! Each is checked just *before* its step, so `return(powerloss)` there
//! discards what the steps before it wrote and did not sync.
//!
//! [`ALL`] lists them for the crash matrix: a failpoint missing from it is
//! never crashed at.

// The block store (src/runtime/ledger/store).
pub const LEDGER_APPEND_WRITE: &str = "ledger::append::write";
pub const LEDGER_APPEND_SYNC: &str = "ledger::append::sync";
pub const LEDGER_APPEND_INDEX: &str = "ledger::append::index";
pub const LEDGER_APPEND_INDEX_FLUSH: &str = "ledger::append::index_flush";
pub const LEDGER_ROLLOVER_CREATE: &str = "ledger::rollover::create";
pub const LEDGER_ROLLOVER_SYNC_DIR: &str = "ledger::rollover::sync_dir";
pub const LEDGER_RECOVERY_SYNC: &str = "ledger::recovery::sync";
pub const LEDGER_RECOVERY_INDEX: &str = "ledger::recovery::index";
pub const LEDGER_RECOVERY_TRUNCATE: &str = "ledger::recovery::truncate";
pub const LEDGER_JOIN_CREATE: &str = "ledger::join::create";
pub const LEDGER_JOIN_SYNC_DIR: &str = "ledger::join::sync_dir";
pub const LEDGER_REMOVE_MARK: &str = "ledger::remove::mark";
pub const LEDGER_REMOVE_DELETE: &str = "ledger::remove::delete";

// The Raft WAL (src/runtime/consensus/etcdraft/storage).
pub const RAFT_WAL_WRITE: &str = "raft::wal::write";
pub const RAFT_WAL_SYNC: &str = "raft::wal::sync";
pub const RAFT_WAL_SEGMENT_CREATE: &str = "raft::wal::segment_create";
pub const RAFT_WAL_SYNC_DIR: &str = "raft::wal::sync_dir";
pub const RAFT_WAL_TRUNCATE: &str = "raft::wal::truncate";

// Not a storage step: the Kafka CutterActor about to process a record,
// so a test can fail the chain's actors and watch the supervisor restart
// it from the last block's offsets. Configured per channel, as
// `kafka::cutter::record::<channel>`.
pub const KAFKA_CUTTER_RECORD: &str = "kafka::cutter::record";

// Not a storage step: between a failed ledger write and the LedgerActor's
// report of it, so a test can hold the channel in that window (`sleep(ms)`).
pub const LEDGER_FAILURE_REPORT: &str = "ledger::failure::report";

/// Every failpoint of a storage step, for the crash matrix.
pub const ALL: &[&str] = &[
    LEDGER_APPEND_WRITE,
    LEDGER_APPEND_SYNC,
    LEDGER_APPEND_INDEX,
    LEDGER_APPEND_INDEX_FLUSH,
    LEDGER_ROLLOVER_CREATE,
    LEDGER_ROLLOVER_SYNC_DIR,
    LEDGER_RECOVERY_SYNC,
    LEDGER_RECOVERY_INDEX,
    LEDGER_RECOVERY_TRUNCATE,
    LEDGER_JOIN_CREATE,
    LEDGER_JOIN_SYNC_DIR,
    LEDGER_REMOVE_MARK,
    LEDGER_REMOVE_DELETE,
    RAFT_WAL_WRITE,
    RAFT_WAL_SYNC,
    RAFT_WAL_SEGMENT_CREATE,
    RAFT_WAL_SYNC_DIR,
    RAFT_WAL_TRUNCATE,
];
