//! The crash matrix: the node binary is crashed at every failpoint of its
//! storage (`faults::points::ALL`), by an abort or by a simulated power loss,
//! under Broadcast and Deliver load and channel joins and removals, over
//! seeded random runs; then it is started again without faults and must come
//! back whole. docs/crash-matrix.md says what a run does and guarantees.
//!
//! `ORDO_CRASH_RUNS` (default [`DEFAULT_RUNS_PER_POINT`] per point) sets the
//! number of planned runs, `ORDO_CRASH_SEED` the seed (random unless given; always printed),
//! `ORDO_CRASH_ONLY=<run>` replays one run of a seed's plan. scripts/crash-matrix.sh
//! is the long run.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::channelconfig::ETCDRAFT;
use ordo::fabric::protos::common::{Block, Status};
use ordo::fabric::protos::etcdraft::{ConfigMetadata, Consenter, Options};
use ordo::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::runtime::faults::points;
use ordo::tools::client::connect;
use ordo::tools::client::envelope::{seek, transaction, BlockPosition};
use ordo::tools::client::participation::AdminClient;

use crate::common::identity_env;

/// Planned runs per point of the default (CI) matrix. Points that still
/// have not crashed then get a few more runs.
const DEFAULT_RUNS_PER_POINT: usize = 3;

/// Rounds of extra runs for the points no planned run crashed at. A
/// recovery's point is met only when the crash before it left work for the
/// recovery (a torn record: about one power cut in three), so several
/// rounds may be needed; each is one short run per point still missed.
const TOP_UP_ROUNDS: usize = 30;

/// A bound on anything a run waits for, never a wait in itself.
const PATIENCE: Duration = Duration::from_secs(60);

/// Entries per WAL segment file, small so that segments start under load.
const WAL_SEGMENT_BYTES: &str = "32768";

/// The size of the large envelopes.
const LARGE_ENVELOPE_BYTES: usize = 1 << 20;

/// The channels every run starts with.
const CHANNELS: [(&str, Kind); 3] = [
    ("solo-a", Kind::Solo),
    ("solo-b", Kind::Solo),
    ("raft-a", Kind::Raft),
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Solo,
    /// etcdraft with this node as its one consenter.
    Raft,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Crash {
    Abort,
    PowerLoss,
}

impl Crash {
    /// The failpoint action, and how the node's stderr reports it.
    fn action(self) -> (&'static str, &'static str) {
        match self {
            Crash::Abort => ("abort", "abort at"),
            Crash::PowerLoss => ("powerloss", "power loss at"),
        }
    }
}

/// One crash of a node: at the `skip + 1`th pass through `point`.
#[derive(Debug, Clone, Copy)]
struct Fault {
    point: &'static str,
    crash: Crash,
    skip: u64,
}

impl Fault {
    fn spec(&self) -> String {
        format!(
            "{}={}*off->return({})",
            self.point,
            self.skip,
            self.crash.action().0
        )
    }
}

/// What one run does: crash the node at `fault`, after first crashing it
/// at `before` (whose recovery `fault` may be in), then check.
#[derive(Debug, Clone)]
struct Plan {
    run: usize,
    before: Option<Fault>,
    fault: Fault,
    /// Envelopes per channel and attempt.
    envelopes: usize,
    /// Large envelopes ordered on the first channel besides, enough to fill
    /// a block file (the block store starts a new one past 64 MB).
    large_envelopes: usize,
    /// Channels joined, loaded and removed per attempt.
    joins: usize,
    seed: u64,
}

/// The points runs aim at: all of them.
fn points_in_play() -> Vec<&'static str> {
    points::ALL.to_vec()
}

/// Below how many passes a run may let through `point` before it crashes:
/// a step taken on every write may be passed many times, one taken on a
/// join, a removal, a new file or a recovery only a few.
fn skip_bound(point: &str) -> u64 {
    match point {
        points::RAFT_WAL_WRITE | points::RAFT_WAL_SYNC => 20,
        points::LEDGER_APPEND_WRITE
        | points::LEDGER_APPEND_SYNC
        | points::LEDGER_APPEND_INDEX
        | points::LEDGER_APPEND_INDEX_FLUSH => 60,
        points::RAFT_WAL_SEGMENT_CREATE | points::RAFT_WAL_SYNC_DIR => 4,
        // Each costs 64 MB of blocks.
        points::LEDGER_ROLLOVER_CREATE | points::LEDGER_ROLLOVER_SYNC_DIR => 1,
        _ => 2,
    }
}

/// Crashes that leave work for the recovery `point` is in: a run aimed at it
/// crashes the node at one of these first. None: `point` is met under load.
fn prepared_by(point: &str) -> &'static [(&'static str, Crash)] {
    match point {
        // A torn record at the end of a WAL segment: a power cut before a sync.
        points::RAFT_WAL_TRUNCATE => &[(points::RAFT_WAL_SYNC, Crash::PowerLoss)],
        points::LEDGER_RECOVERY_TRUNCATE => &[(points::LEDGER_APPEND_SYNC, Crash::PowerLoss)],
        // Blocks in a block file that the index does not know.
        points::LEDGER_RECOVERY_SYNC | points::LEDGER_RECOVERY_INDEX => &[
            (points::LEDGER_APPEND_INDEX, Crash::Abort),
            (points::LEDGER_APPEND_INDEX_FLUSH, Crash::Abort),
        ],
        _ => &[],
    }
}

fn plan(seed: u64, run: usize, point: &'static str, skip: Option<u64>) -> Plan {
    let mut rng = StdRng::seed_from_u64(seed ^ (run as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let crash = if rng.random_bool(0.5) {
        Crash::Abort
    } else {
        Crash::PowerLoss
    };
    let preparers = prepared_by(point);
    // A recovery after one crash meets its point once or not at all.
    let skip = match preparers.is_empty() {
        true => skip.unwrap_or_else(|| rng.random_range(0..skip_bound(point))),
        false => 0,
    };
    let before = if !preparers.is_empty() {
        let (point, crash) = preparers[rng.random_range(0..preparers.len())];
        Some(Fault {
            point,
            crash,
            // Early, so that the load surely gets there.
            skip: rng.random_range(0..skip_bound(point).min(8)),
        })
    } else if rng.random_bool(0.125) {
        // Now and then a crash during the recovery of another one.
        let points = points_in_play();
        let point = points[rng.random_range(0..points.len())];
        Some(Fault {
            point,
            crash: if rng.random_bool(0.5) {
                Crash::Abort
            } else {
                Crash::PowerLoss
            },
            skip: rng.random_range(0..skip_bound(point)),
        })
    } else {
        None
    };
    Plan {
        run,
        before,
        fault: Fault { point, crash, skip },
        envelopes: 800,
        large_envelopes: match point {
            points::LEDGER_ROLLOVER_CREATE | points::LEDGER_ROLLOVER_SYNC_DIR => 70,
            _ => 0,
        },
        joins: 2,
        seed: rng.random(),
    }
}

/// The plan of every run: the points in play in a seeded order, each aimed
/// at in turn.
fn plans(seed: u64, runs: usize) -> Vec<Plan> {
    let mut order = points_in_play();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    (0..runs)
        .map(|run| plan(seed, run, order[run % order.len()], None))
        .collect()
}

fn genesis(channel: &str, kind: Kind) -> Block {
    let mut profile = GenesisProfile::embedded(channel, vec![]);
    profile.batch_timeout = "10ms".into();
    profile.batch_size.max_message_count = 10;
    if kind == Kind::Raft {
        profile.consensus_type = ETCDRAFT.into();
        // Port 0: the node listens on port 0 and finds itself by host:port.
        profile.consensus_metadata = ConfigMetadata {
            consenters: vec![Consenter {
                host: "127.0.0.1".into(),
                port: 0,
                ..Default::default()
            }],
            options: Some(Options {
                tick_interval: "10ms".into(),
                election_tick: 10,
                heartbeat_tick: 1,
                max_inflight_blocks: 5,
                snapshot_interval_size: 0,
            }),
        }
        .encode_to_vec()
        .into();
    }
    profile.genesis_block()
}

fn node_env(dir: &Path) -> Vec<(String, String)> {
    let path = |name: &str| dir.join(name).display().to_string();
    let mut env = identity_env(dir);
    env.extend(
        [
            ("ORDERER_GENERAL_LISTENADDRESS", "127.0.0.1".to_string()),
            ("ORDERER_GENERAL_LISTENPORT", "0".into()),
            ("ORDERER_GENERAL_BOOTSTRAPMETHOD", "none".into()),
            ("ORDERER_ADMIN_LISTENADDRESS", "127.0.0.1:0".into()),
            ("ORDERER_CHANNELPARTICIPATION_ENABLED", "true".into()),
            ("ORDERER_OPERATIONS_LISTENADDRESS", String::new()),
            ("ORDERER_FILELEDGER_LOCATION", path("ledger")),
            ("ORDERER_CONSENSUS_WALDIR", path("wal")),
            ("ORDERER_CONSENSUS_SNAPDIR", path("snap")),
            // Warnings, and the node's lines that name its listeners.
            ("FABRIC_LOGGING_SPEC", "warning:ordo.node=info".into()),
            ("ORDO_WAL_SEGMENT_BYTES", WAL_SEGMENT_BYTES.into()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    env
}

/// What the node's stderr has shown so far.
#[derive(Debug, Clone, Default)]
struct Seen {
    grpc: Option<SocketAddr>,
    admin: Option<SocketAddr>,
    /// Its stderr closed: the process is gone.
    ended: bool,
}

fn address_in(line: &str) -> Option<SocketAddr> {
    let (_, rest) = line.split_once("address=")?;
    rest.split_whitespace().next()?.parse().ok()
}

/// `ordo start` as a process of its own, its stderr read line by line.
struct NodeProcess {
    child: Child,
    seen: watch::Receiver<Seen>,
    log: Arc<Mutex<Vec<String>>>,
    exit: Option<ExitStatus>,
}

impl NodeProcess {
    fn spawn(dir: &Path, failpoints: Option<String>) -> NodeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
        command
            .arg("start")
            .envs(node_env(dir))
            .env_remove("FAILPOINTS")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(spec) = &failpoints {
            command.env("FAILPOINTS", spec);
        }
        let mut child = command.spawn().expect("spawn ordo");
        let stderr = child.stderr.take().expect("piped stderr");
        let (tell, seen) = watch::channel(Seen::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = log.clone();
        let mut log_file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("node.log"))
            .expect("node.log");
        let _ = writeln!(log_file, "=== ordo start, FAILPOINTS={failpoints:?}");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log_file, "{line}");
                if line.contains("ordo is serving AtomicBroadcast") {
                    tell.send_modify(|s| s.grpc = address_in(&line));
                } else if line.contains("admin listener serving") {
                    tell.send_modify(|s| s.admin = address_in(&line));
                }
                lines
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(line);
            }
            tell.send_modify(|s| s.ended = true);
        });
        NodeProcess {
            child,
            seen,
            log,
            exit: None,
        }
    }

    /// Its gRPC and admin addresses once it serves both; None if it ended first.
    async fn serving(&mut self) -> Result<Option<(SocketAddr, SocketAddr)>, String> {
        let waited = tokio::time::timeout(
            PATIENCE,
            self.seen
                .wait_for(|s| s.ended || (s.grpc.is_some() && s.admin.is_some())),
        )
        .await
        .map(|seen| seen.map(|seen| seen.clone()));
        let Ok(Ok(seen)) = waited else {
            return Err(self.stuck("neither serves nor ends"));
        };
        Ok(match seen {
            Seen {
                grpc: Some(grpc),
                admin: Some(admin),
                ended: false,
            } => Some((grpc, admin)),
            _ => None,
        })
    }

    /// Why a wait failed, with the log and where the node's threads are.
    fn stuck(&self, what: &str) -> String {
        let pid = self.child.id();
        let mut threads = Vec::new();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for task in tasks.flatten() {
                let read = |name: &str| {
                    std::fs::read_to_string(task.path().join(name))
                        .unwrap_or_default()
                        .trim()
                        .to_string()
                };
                threads.push(format!("{} in {}", read("comm"), read("wchan")));
            }
        }
        format!(
            "the node {what} within {PATIENCE:?}; its threads: {}\n{}",
            threads.join(", "),
            self.log_tail()
        )
    }

    fn has_ended(&self) -> bool {
        self.seen.borrow().ended
    }

    async fn ended(&mut self) {
        let _ = self.seen.wait_for(|s| s.ended).await;
    }

    /// Asks for a clean stop (SIGTERM).
    fn terminate(&self) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: a signal to the child this test started; no memory involved.
        unsafe { libc::kill(pid, libc::SIGTERM) };
    }

    /// Waits for the process to end; its exit status.
    async fn wait(&mut self) -> Result<ExitStatus, String> {
        if let Some(exit) = self.exit {
            return Ok(exit);
        }
        if tokio::time::timeout(PATIENCE, self.ended()).await.is_err() {
            return Err(self.stuck("does not end"));
        }
        let exit = tokio::task::block_in_place(|| self.child.wait()).expect("wait");
        self.exit = Some(exit);
        Ok(exit)
    }

    fn log_lines(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn log_tail(&self) -> String {
        let lines = self.log_lines();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// The failpoint the node crashed at, as its stderr reports it.
    fn crashed_at(&self) -> Option<(String, Crash)> {
        self.log_lines().iter().find_map(|line| {
            let rest = line.strip_prefix("failpoint ")?;
            [Crash::Abort, Crash::PowerLoss]
                .into_iter()
                .find_map(|crash| {
                    let (point, _) = rest.split_once(&format!(": {}", crash.action().1))?;
                    Some((point.to_string(), crash))
                })
        })
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        if self.exit.is_none() {
            // Only after a failed check: the process this test started.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A channel joined and removed during a run, and what the node answered.
#[derive(Debug, Clone)]
struct Churned {
    genesis: Block,
    /// The join was answered 201.
    joined: bool,
    /// A removal was asked for.
    removing: bool,
    /// The removal was answered 204.
    removed: bool,
}

/// What a run saw, over its attempts.
#[derive(Default)]
struct Record {
    /// Every block a Deliver follower received, by channel and number.
    received: BTreeMap<String, BTreeMap<u64, Block>>,
    churned: BTreeMap<String, Churned>,
    problems: Vec<String>,
}

type Shared = Arc<Mutex<Record>>;

fn lock(record: &Shared) -> std::sync::MutexGuard<'_, Record> {
    record.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Follows `channel` from block 0 until the stream ends, recording each block.
async fn follow(grpc: SocketAddr, channel: String, record: Shared) {
    let Ok(mut client) = connect(&grpc.to_string()).await else {
        return;
    };
    let request = seek(
        &channel,
        BlockPosition::Oldest,
        BlockPosition::Number(u64::MAX),
        SeekBehavior::BlockUntilReady,
        SeekContentType::Block,
    );
    let Ok(response) = client.deliver(tokio_stream::once(request)).await else {
        return;
    };
    let mut stream = response.into_inner();
    while let Some(Ok(item)) = stream.next().await {
        let Some(DeliverItem::Block(block)) = item.r#type else {
            return;
        };
        let number = blockutil::number(&block);
        let mut record = lock(&record);
        let blocks = record.received.entry(channel.clone()).or_default();
        match blocks.get(&number) {
            Some(before) if before != &block => {
                let problem =
                    format!("{channel}: block {number} differs from the one delivered before");
                record.problems.push(problem);
            }
            Some(_) => {}
            None => {
                blocks.insert(number, block);
            }
        }
    }
}

/// Sends `count` envelopes to `channel`, keeping a window of them in
/// flight; answers how many were answered SUCCESS. Stops when the node is
/// gone; after SERVICE_UNAVAILABLE (no Raft leader yet) it sends again on
/// a new stream.
async fn broadcast(grpc: SocketAddr, channel: &str, count: usize, size: usize) -> usize {
    // Enough in flight to fill blocks, and never more than a few MB.
    let window = ((4 << 20) / size.max(1)).clamp(1, 64);
    let Ok(mut client) = connect(&grpc.to_string()).await else {
        return 0;
    };
    let mut succeeded = 0;
    let filler = "x".repeat(size);
    while succeeded < count {
        let (tx, rx) = mpsc::channel(window);
        let Ok(response) = client.broadcast(ReceiverStream::new(rx)).await else {
            return succeeded;
        };
        let mut answers = response.into_inner();
        let wanted = count - succeeded;
        let mut sent = 0;
        let mut answered = 0;
        let mut refused = false;
        while answered < wanted {
            while sent < wanted && sent - answered < window {
                let data = format!("{channel} {} {filler}", succeeded + sent);
                if tx
                    .send(transaction(channel, Bytes::from(data)))
                    .await
                    .is_err()
                {
                    return succeeded;
                }
                sent += 1;
            }
            match answers.next().await {
                Some(Ok(answer)) if answer.status == Status::Success as i32 => {
                    answered += 1;
                    succeeded += 1;
                }
                Some(Ok(_)) => {
                    refused = true;
                    break;
                }
                Some(Err(_)) | None => return succeeded,
            }
        }
        if refused {
            // A Raft channel without a leader yet: it elects one within a
            // few ticks.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    succeeded
}

/// Joins `joins` new channels one after the other, orders a few envelopes on
/// each and removes it; records what the node answered.
async fn churn(
    grpc: SocketAddr,
    admin: SocketAddr,
    prefix: String,
    joins: usize,
    seed: u64,
    record: Shared,
) {
    let mut rng = StdRng::seed_from_u64(seed);
    let client = AdminClient::new(&admin.to_string());
    for j in 0..joins {
        let channel = format!("{prefix}{j}");
        let kind = if rng.random_bool(0.5) {
            Kind::Raft
        } else {
            Kind::Solo
        };
        let block = genesis(&channel, kind);
        lock(&record).churned.insert(
            channel.clone(),
            Churned {
                genesis: block.clone(),
                joined: false,
                removing: false,
                removed: false,
            },
        );
        match client.join(block.encode_to_vec()).await {
            Ok(answer) if answer.status == 201 => {
                if let Some(c) = lock(&record).churned.get_mut(&channel) {
                    c.joined = true;
                }
            }
            Ok(answer) => {
                let problem = format!("join {channel}: {} {}", answer.status, answer.body);
                lock(&record).problems.push(problem);
                return;
            }
            Err(_) => return,
        }
        if broadcast(grpc, &channel, 5, 64).await < 5 {
            return;
        }
        if let Some(c) = lock(&record).churned.get_mut(&channel) {
            c.removing = true;
        }
        match client.remove(&channel).await {
            Ok(answer) if answer.status == 204 => {
                if let Some(c) = lock(&record).churned.get_mut(&channel) {
                    c.removed = true;
                }
            }
            Ok(answer) => {
                let problem = format!("remove {channel}: {} {}", answer.status, answer.body);
                lock(&record).problems.push(problem);
                return;
            }
            Err(_) => return,
        }
    }
}

/// How an attempt ended.
#[derive(Debug)]
struct Outcome {
    /// Where the node crashed, as it reported.
    crashed_at: Option<(String, Crash)>,
    exit: ExitStatus,
    log: String,
}

/// Starts the node on `dir` with `fault`, loads it until it crashes or the
/// load is done (then stops it cleanly), and waits for it to end.
async fn attempt(
    dir: &Path,
    fault: Option<Fault>,
    plan: &Plan,
    attempt: usize,
    record: &Shared,
) -> Result<Outcome, String> {
    let mut node = NodeProcess::spawn(dir, fault.map(|f| f.spec()));
    if let Some((grpc, admin)) = node.serving().await? {
        let followers: Vec<JoinHandle<()>> = CHANNELS
            .iter()
            .map(|(channel, _)| tokio::spawn(follow(grpc, channel.to_string(), record.clone())))
            .collect();
        let mut load: Vec<JoinHandle<()>> = CHANNELS
            .iter()
            .map(|(channel, _)| {
                let envelopes = plan.envelopes;
                tokio::spawn(async move {
                    broadcast(grpc, channel, envelopes, 200).await;
                })
            })
            .collect();
        if plan.large_envelopes > 0 {
            let (channel, _) = CHANNELS[0];
            let count = plan.large_envelopes;
            load.push(tokio::spawn(async move {
                broadcast(grpc, channel, count, LARGE_ENVELOPE_BYTES).await;
            }));
        }
        load.push(tokio::spawn(churn(
            grpc,
            admin,
            format!("churn{attempt}x"),
            plan.joins,
            plan.seed ^ attempt as u64,
            record.clone(),
        )));
        let load = futures::future::join_all(load);
        tokio::pin!(load);
        tokio::select! {
            _ = &mut load => {}
            _ = node.ended() => {}
        }
        if !node.has_ended() {
            node.terminate();
        }
        node.wait().await?;
        tokio::time::timeout(PATIENCE, async {
            load.await;
            futures::future::join_all(followers).await;
        })
        .await
        .map_err(|_| "the clients did not end with the node".to_string())?;
    }
    let exit = node.wait().await?;
    Ok(Outcome {
        crashed_at: node.crashed_at(),
        exit,
        log: node.log_tail(),
    })
}

/// Every block of `channel`, from 0 to its height.
async fn all_blocks(
    client: &mut AtomicBroadcastClient<Channel>,
    channel: &str,
) -> Result<Vec<Block>, String> {
    let request = seek(
        channel,
        BlockPosition::Oldest,
        BlockPosition::Newest,
        SeekBehavior::FailIfNotReady,
        SeekContentType::Block,
    );
    let mut stream = client
        .deliver(tokio_stream::once(request))
        .await
        .map_err(|e| format!("{channel}: Deliver: {e}"))?
        .into_inner();
    let mut blocks = Vec::new();
    while let Some(item) = stream.next().await {
        match item.map_err(|e| format!("{channel}: Deliver: {e}"))?.r#type {
            Some(DeliverItem::Block(block)) => blocks.push(block),
            Some(DeliverItem::Status(code)) if code == Status::Success as i32 => return Ok(blocks),
            other => return Err(format!("{channel}: Deliver answered {other:?}")),
        }
    }
    Err(format!("{channel}: Deliver ended without a status"))
}

/// Block numbers from 0, each block's data hash, and each previous-hash link.
fn check_chain(channel: &str, blocks: &[Block]) -> Result<(), String> {
    for (i, block) in blocks.iter().enumerate() {
        let header = block
            .header
            .as_ref()
            .ok_or_else(|| format!("{channel}: block {i} has no header"))?;
        if header.number != i as u64 {
            return Err(format!(
                "{channel}: block {i} is numbered {}",
                header.number
            ));
        }
        if header.data_hash != blockutil::data_hash(blockutil::entries(block)) {
            return Err(format!("{channel}: block {i}: wrong data hash"));
        }
        let previous = match i {
            0 => Bytes::new(),
            _ => blockutil::header_hash(blocks[i - 1].header.as_ref().expect("checked")),
        };
        if header.previous_hash != previous {
            return Err(format!(
                "{channel}: block {i} does not link to block {}",
                i.wrapping_sub(1)
            ));
        }
    }
    Ok(())
}

/// Orders one envelope on `channel` and waits until its block is delivered.
async fn orders_again(
    client: &mut AtomicBroadcastClient<Channel>,
    grpc: SocketAddr,
    channel: &str,
    height: u64,
) -> Result<(), String> {
    if broadcast(grpc, channel, 1, 16).await != 1 {
        return Err(format!("{channel}: no SUCCESS after the restart"));
    }
    let request = seek(
        channel,
        BlockPosition::Number(height),
        BlockPosition::Number(height),
        SeekBehavior::BlockUntilReady,
        SeekContentType::Block,
    );
    let mut stream = client
        .deliver(tokio_stream::once(request))
        .await
        .map_err(|e| format!("{channel}: Deliver: {e}"))?
        .into_inner();
    match stream.next().await {
        Some(Ok(item)) if matches!(item.r#type, Some(DeliverItem::Block(_))) => Ok(()),
        other => Err(format!(
            "{channel}: block {height} not delivered after the restart: {other:?}"
        )),
    }
}

fn channel_names(list: &serde_json::Value) -> BTreeSet<String> {
    list["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

/// Starts the node without faults and checks everything the run recorded.
async fn verify(dir: &Path, record: &Shared) -> Result<(), String> {
    let mut node = NodeProcess::spawn(dir, None);
    let Some((grpc, admin)) = node.serving().await? else {
        let exit = node.wait().await?;
        return Err(format!(
            "the node does not start again ({exit}):\n{}",
            node.log_tail()
        ));
    };
    let checked = check_restarted(grpc, admin, record).await;
    node.terminate();
    let exit = node.wait().await?;
    checked.map_err(|problem| format!("{problem}\n{}", node.log_tail()))?;
    if !exit.success() {
        return Err(format!(
            "the restarted node did not stop cleanly ({exit}):\n{}",
            node.log_tail()
        ));
    }
    Ok(())
}

async fn check_restarted(
    grpc: SocketAddr,
    admin: SocketAddr,
    record: &Shared,
) -> Result<(), String> {
    let (received, churned) = {
        let record = lock(record);
        (record.received.clone(), record.churned.clone())
    };
    let admin = AdminClient::new(&admin.to_string());
    let list = admin.list().await.map_err(|e| format!("list: {e}"))?;
    let listed = channel_names(&list.json());
    let mut client = connect(&grpc.to_string())
        .await
        .map_err(|e| format!("connect: {e}"))?;
    for (channel, _) in CHANNELS {
        if !listed.contains(channel) {
            return Err(format!("{channel} is gone after the restart"));
        }
        let info = admin
            .info(channel)
            .await
            .map_err(|e| format!("info {channel}: {e}"))?;
        let status = info.json()["status"].clone();
        if status != "active" {
            return Err(format!("{channel} is {status} after the restart"));
        }
        let blocks = all_blocks(&mut client, channel).await?;
        check_chain(channel, &blocks)?;
        for (number, block) in received.get(channel).into_iter().flatten() {
            match blocks.get(*number as usize) {
                Some(now) if now == block => {}
                Some(_) => return Err(format!("{channel}: block {number} changed after the restart")),
                None => {
                    return Err(format!(
                        "{channel}: block {number} was delivered before the crash and is lost (height {})",
                        blocks.len()
                    ))
                }
            }
        }
        orders_again(&mut client, grpc, channel, blocks.len() as u64).await?;
    }
    for (channel, churned) in &churned {
        let present = listed.contains(channel);
        if churned.removed && present {
            return Err(format!(
                "{channel}: removal answered 204, yet the channel is back"
            ));
        }
        if churned.joined && !churned.removing && !present {
            return Err(format!(
                "{channel}: join answered 201, yet the channel is gone"
            ));
        }
        if present {
            let blocks = all_blocks(&mut client, channel).await?;
            check_chain(channel, &blocks)?;
            if blocks.first() != Some(&churned.genesis) {
                return Err(format!(
                    "{channel}: block 0 is not the block it was joined with"
                ));
            }
            let removed = admin
                .remove(channel)
                .await
                .map_err(|e| format!("remove {channel}: {e}"))?;
            if removed.status != 204 {
                return Err(format!(
                    "remove {channel} after the restart: {} {}",
                    removed.status, removed.body
                ));
            }
        }
        let joined = admin
            .join(churned.genesis.encode_to_vec())
            .await
            .map_err(|e| format!("join {channel}: {e}"))?;
        if joined.status != 201 {
            return Err(format!(
                "{channel} cannot be joined again: {} {}",
                joined.status, joined.body
            ));
        }
    }
    let expected: BTreeSet<String> = CHANNELS
        .iter()
        .map(|(c, _)| c.to_string())
        .chain(churned.keys().cloned())
        .collect();
    if let Some(stranger) = listed.difference(&expected).next() {
        return Err(format!("{stranger} is listed, but no run made it"));
    }
    Ok(())
}

/// What one run found.
struct RunResult {
    /// The point aimed at, if the node really crashed there.
    crashed: Option<Crash>,
    /// The node crashed at the plan's first fault (if it has one).
    prepared: bool,
    /// Blocks the followers received, over all channels.
    followed: usize,
    /// Channels joined (answered 201) and removed (answered 204).
    joined: usize,
    removed: usize,
}

/// Runs `plan` on a copy of `template`; a failed run keeps its folder,
/// with every start's log in `node.log`, and names it.
async fn run(template: &Path, plan: &Plan) -> Result<RunResult, String> {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(template, dir.path());
    let result = run_in(dir.path(), plan).await;
    result.map_err(|problem| {
        let kept = dir.keep();
        format!(
            "{problem}\n(the node's folder and log are kept in {})",
            kept.display()
        )
    })
}

async fn run_in(dir: &Path, plan: &Plan) -> Result<RunResult, String> {
    let record: Shared = Arc::default();
    let mut crashed = None;
    let mut prepared = false;
    let faults = plan
        .before
        .iter()
        .map(|f| (f, false))
        .chain([(&plan.fault, true)]);
    for (attempt_no, (fault, aimed)) in faults.enumerate() {
        let outcome = attempt(dir, Some(*fault), plan, attempt_no, &record).await?;
        match &outcome.crashed_at {
            Some((point, crash)) if point == fault.point && *crash == fault.crash => {
                if outcome.exit.success() {
                    return Err(format!("the node exited cleanly after crashing at {point}"));
                }
                if aimed {
                    crashed = Some(*crash);
                } else {
                    prepared = true;
                }
            }
            Some((point, _)) => {
                return Err(format!(
                    "the node crashed at {point}, not at {}",
                    fault.point
                ))
            }
            None if !outcome.exit.success() => {
                return Err(format!(
                    "the node failed ({}) without a failpoint:\n{}",
                    outcome.exit, outcome.log
                ));
            }
            None => {}
        }
    }
    if let Some(problem) = lock(&record).problems.first() {
        return Err(problem.clone());
    }
    verify(dir, &record).await?;
    let record = lock(&record);
    Ok(RunResult {
        crashed,
        prepared,
        followed: record.received.values().map(BTreeMap::len).sum(),
        joined: record.churned.values().filter(|c| c.joined).count(),
        removed: record.churned.values().filter(|c| c.removed).count(),
    })
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("dir entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("file type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

/// A node folder holding the run's channels, made once: each run starts
/// from a copy.
async fn make_template() -> TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut node = NodeProcess::spawn(dir.path(), None);
    let (_, admin) = node
        .serving()
        .await
        .unwrap_or_else(|stuck| panic!("{stuck}"))
        .unwrap_or_else(|| panic!("the node starts:\n{}", node.log_tail()));
    let admin = AdminClient::new(&admin.to_string());
    for (channel, kind) in CHANNELS {
        let joined = admin
            .join(genesis(channel, kind).encode_to_vec())
            .await
            .expect("join");
        assert_eq!(joined.status, 201, "join {channel}: {}", joined.body);
    }
    node.terminate();
    let exit = node.wait().await.unwrap_or_else(|stuck| panic!("{stuck}"));
    assert!(exit.success(), "{exit}:\n{}", node.log_tail());
    dir
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value} is not a number")),
    )
}

#[derive(Default)]
struct Tally {
    runs: usize,
    crashes: BTreeMap<Crash, usize>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_failpoint_crashes_the_node_and_it_comes_back_whole() {
    let seed = env_number("ORDO_CRASH_SEED").unwrap_or_else(rand::random);
    let runs = env_number("ORDO_CRASH_RUNS")
        .map_or(DEFAULT_RUNS_PER_POINT * points_in_play().len(), |n| {
            n as usize
        });
    let only = env_number("ORDO_CRASH_ONLY").map(|n| n as usize);
    println!("crash matrix: ORDO_CRASH_SEED={seed} ORDO_CRASH_RUNS={runs}");
    let started = Instant::now();
    let template = make_template().await;

    let mut plans = plans(seed, runs.max(only.map_or(0, |o| o + 1)));
    if let Some(only) = only {
        plans = vec![plans[only].clone()];
    }
    let mut tally: BTreeMap<&'static str, Tally> = points_in_play()
        .into_iter()
        .map(|p| (p, Tally::default()))
        .collect();
    let mut total = 0;
    let execute = |plan: Plan| {
        let template = template.path().to_path_buf();
        async move {
            println!(
                "run {}: {} {:?} after {}{}",
                plan.run,
                plan.fault.point,
                plan.fault.crash,
                plan.fault.skip,
                plan.before
                    .map(|b| format!(", first {} {:?} after {}", b.point, b.crash, b.skip))
                    .unwrap_or_default()
            );
            let began = Instant::now();
            let result = run(&template, &plan).await.unwrap_or_else(|problem| {
                panic!(
                    "run {} failed: {problem}\nreplay: ORDO_CRASH_SEED={seed} ORDO_CRASH_ONLY={}",
                    plan.run, plan.run
                )
            });
            println!(
                "  {}{}, {} blocks followed, {} joined, {} removed, {:.2} s",
                match (plan.before.is_some(), result.prepared) {
                    (false, _) => "",
                    (true, true) => "crashed first, ",
                    (true, false) => "did not crash first, ",
                },
                match result.crashed {
                    Some(_) => "crashed there",
                    None => "did not crash there",
                },
                result.followed,
                result.joined,
                result.removed,
                began.elapsed().as_secs_f64()
            );
            (plan, result)
        }
    };
    let mut results = Vec::new();
    for plan in plans {
        results.push(execute(plan).await);
    }
    // Points no planned run crashed at get a few more runs, without skipping.
    if only.is_none() {
        let mut next_run = runs;
        for _ in 0..TOP_UP_ROUNDS {
            let missed: Vec<&'static str> = points_in_play()
                .into_iter()
                .filter(|p| {
                    !results.iter().any(|(plan, result): &(Plan, RunResult)| {
                        plan.fault.point == *p && result.crashed.is_some()
                    })
                })
                .collect();
            for point in missed {
                results.push(execute(plan(seed, next_run, point, Some(0))).await);
                next_run += 1;
            }
        }
    }
    for (plan, result) in &results {
        total += 1;
        let entry = tally.entry(plan.fault.point).or_default();
        entry.runs += 1;
        if let Some(crash) = result.crashed {
            *entry.crashes.entry(crash).or_default() += 1;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{total} runs in {elapsed:.1} s: {:.2} runs/s",
        total as f64 / elapsed
    );
    println!(
        "{:<32} {:>5} {:>6} {:>10}",
        "failpoint", "runs", "aborts", "powerlosses"
    );
    for (point, t) in &tally {
        println!(
            "{point:<32} {:>5} {:>6} {:>10}",
            t.runs,
            t.crashes.get(&Crash::Abort).copied().unwrap_or(0),
            t.crashes.get(&Crash::PowerLoss).copied().unwrap_or(0)
        );
    }
    if only.is_none() {
        let never: Vec<&&str> = tally
            .iter()
            .filter(|(_, t)| t.crashes.is_empty())
            .map(|(p, _)| p)
            .collect();
        assert!(
            never.is_empty(),
            "never crashed at {never:?} (ORDO_CRASH_SEED={seed})"
        );
    }
}
