//! The node restarts with what it accepted: a channel whose ledger or config
//! cannot be read starts failed while the others serve, and after every
//! accepted input of a seeded random sequence (envelopes, config updates,
//! join blocks, seeks) the node stops, cleanly or killed, and starts again
//! with every channel serving a valid chain from block 0.

use bytes::Bytes;
use prost::Message;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::genesis;
use ordo::fabric::protos::common::{ConfigEnvelope, ConfigGroup, Envelope, Payload, Status};
use ordo::runtime::ledger::LedgerFactory;
use ordo::tools::client::envelope::transaction;
use ordo::tools::client::participation::AdminClient;

use crate::common::*;

async fn node_without_channels() -> TestNode {
    TestNode::with_env(vec![(
        "ORDERER_GENERAL_BOOTSTRAPMETHOD".into(),
        "none".into(),
    )])
    .await
}

async fn order(node: &TestNode, channel: &str, count: u32, tag: &str) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..count {
        stream
            .send(transaction(channel, Bytes::from(format!("{tag} {i}"))))
            .await;
    }
    for _ in 0..count {
        let answer = stream.next().await.expect("answer");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
}

async fn join(admin: &AdminClient, channel: &str) {
    let joined = admin
        .join(profile(channel).genesis_block().encode_to_vec())
        .await
        .expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
}

/// The channel names the participation API lists.
async fn listed(admin: &AdminClient) -> Vec<String> {
    let list = admin.list().await.expect("list");
    assert_eq!(list.status, 200, "{}", list.body);
    list.json()["channels"]
        .as_array()
        .map(|channels| {
            channels
                .iter()
                .map(|c| c["name"].as_str().expect("name").to_string())
                .collect()
        })
        .unwrap_or_default()
}

async fn metrics(node: &TestNode) -> String {
    let address = node
        .node
        .as_ref()
        .expect("running")
        .operations_addr()
        .expect("operations listener");
    reqwest::get(format!("http://{address}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body")
}

/// The value of one sample (`name{labels}` exactly as exposed), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

fn errored_gauge(metrics: &str, channel: &str) -> Option<f64> {
    sample(
        metrics,
        &format!("ordo_channel_errored{{channel=\"{channel}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_with_a_damaged_ledger_starts_failed_and_the_others_serve() {
    let mut node = node_without_channels().await;
    let admin = node.admin();
    join(&admin, "alpha").await;
    join(&admin, "beta").await;
    order(&node, "alpha", 5, "alpha tx").await;
    order(&node, "beta", 5, "beta tx").await;
    wait_for_height(&node, "alpha", 2).await;
    wait_for_height(&node, "beta", 2).await;
    node.stop().await;

    // One byte of a transaction in beta's block file changes: its data
    // hash no longer matches.
    let file = ledger_dir(node.dir.path()).join("chains/beta/blockfile_000000");
    let mut bytes = std::fs::read(&file).expect("read block file");
    let at = bytes
        .windows(9)
        .rposition(|w| w == b"beta tx 4")
        .expect("payload present");
    bytes[at] = b'B';
    std::fs::write(&file, &bytes).expect("write block file");

    node.start().await;
    let registrar = node.node.as_ref().expect("running").registrar();
    let failed = registrar.failed_channel("beta").expect("beta failed");
    assert!(
        failed.reason.contains("damaged at block 1"),
        "{}",
        failed.reason
    );
    assert!(registrar.channel("beta").is_none());
    // Broadcast knows it, not running: SERVICE_UNAVAILABLE with the reason.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .offer(transaction(
            "beta",
            Bytes::from_static(b"to a failed channel"),
        ))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(
        answer.status,
        Status::ServiceUnavailable as i32,
        "{}",
        answer.info
    );
    assert!(
        answer.info.contains("damaged at block 1"),
        "{}",
        answer.info
    );
    drop(stream);
    // Deliver too: SERVICE_UNAVAILABLE, not NOT_FOUND.
    let refused = deliver(
        &mut client,
        "beta",
        ordo::tools::client::envelope::BlockPosition::Oldest,
        ordo::tools::client::envelope::BlockPosition::Newest,
        ordo::fabric::protos::orderer::seek_info::SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(refused.status, Some(Status::ServiceUnavailable));
    assert!(refused.blocks.is_empty());

    // alpha serves: its chain, and new blocks.
    let blocks = all_blocks(&node, "alpha").await;
    verify_chain(&blocks);
    assert_eq!(tx_ids(&blocks).len(), 5);
    order(&node, "alpha", 3, "alpha again").await;
    wait_for_height(&node, "alpha", 3).await;

    // The API and the metrics show beta failed.
    let admin = node.admin();
    assert_eq!(listed(&admin).await, ["alpha", "beta"]);
    let info = admin.info("beta").await.expect("info");
    assert_eq!(info.status, 200, "{}", info.body);
    assert_eq!(
        info.json(),
        serde_json::json!({
            "name": "beta",
            "url": "/participation/v1/channels/beta",
            "consensusRelation": "other",
            "status": "failed",
            "height": 0,
        })
    );
    let exposed = metrics(&node).await;
    assert_eq!(errored_gauge(&exposed, "beta"), Some(1.0), "{exposed}");
    assert_eq!(errored_gauge(&exposed, "alpha"), Some(0.0), "{exposed}");

    // A channel its supervisor marks errored (a consensus type this node
    // does not serve) shows on the same gauge.
    let mut bft = profile("gamma");
    bft.consensus_type = "BFT".into();
    let joined = admin
        .join(bft.genesis_block().encode_to_vec())
        .await
        .expect("join");
    assert_eq!(joined.json()["status"], "failed", "{}", joined.body);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while errored_gauge(&metrics(&node).await, "gamma") != Some(1.0) {
        assert!(tokio::time::Instant::now() < deadline, "gamma's gauge");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let removed = admin.remove("gamma").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);

    // A join under the same name is refused while it is there.
    let again = admin
        .join(profile("beta").genesis_block().encode_to_vec())
        .await
        .expect("join");
    assert_eq!(again.status, 405, "{}", again.body);

    // Removing it frees the name; the damaged files go with it.
    let removed = admin.remove("beta").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(listed(&admin).await, ["alpha"]);
    assert!(!file.exists(), "the damaged ledger is removed");
    assert_eq!(errored_gauge(&metrics(&node).await, "beta"), None);
    join(&admin, "beta").await;
    order(&node, "beta", 2, "beta anew").await;
    wait_for_height(&node, "beta", 2).await;

    node.restart().await;
    for channel in ["alpha", "beta"] {
        verify_chain(&all_blocks(&node, channel).await);
    }
    assert_eq!(listed(&node.admin()).await, ["alpha", "beta"]);
    node.stop().await;
}

/// A config envelope nested deeper than the protobuf decoder reads: what an
/// update accepted before the read-back check could leave in a ledger.
fn too_deep_genesis(channel: &str) -> ordo::fabric::protos::common::Block {
    let mut config = profile(channel).config();
    let mut deep = ConfigGroup::default();
    for _ in 0..60 {
        deep = ConfigGroup {
            groups: std::collections::HashMap::from([("Nested".to_string(), deep)]),
            ..ConfigGroup::default()
        };
    }
    config
        .channel_group
        .as_mut()
        .expect("root")
        .groups
        .get_mut("Application")
        .expect("application")
        .groups
        .insert("Deep".into(), deep);
    let block = genesis::genesis_block(channel, config);
    // It cannot be read, at start-up or anywhere.
    let envelope = Envelope::decode(blockutil::entries(&block)[0].clone()).expect("envelope");
    let payload = Payload::decode(envelope.payload).expect("payload");
    assert!(ConfigEnvelope::decode(payload.data).is_err());
    block
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_whose_config_cannot_be_decoded_starts_failed() {
    let mut node = node_without_channels().await;
    join(&node.admin(), "alpha").await;
    node.stop().await;
    {
        let factory = LedgerFactory::open(&ledger_dir(node.dir.path())).expect("ledger");
        factory
            .create_store("deep", &too_deep_genesis("deep"))
            .expect("store");
        factory.flush().expect("flush");
    }
    node.start().await;
    let failed = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .failed_channel("deep")
        .expect("deep failed");
    assert!(
        failed.reason.contains("config block 0 cannot be read")
            && failed.reason.contains("recursion limit"),
        "{}",
        failed.reason
    );
    assert_eq!(failed.height, Some(1));
    let admin = node.admin();
    let info = admin.info("deep").await.expect("info");
    assert_eq!(info.json()["status"], "failed", "{}", info.body);
    assert_eq!(info.json()["height"], 1, "{}", info.body);
    verify_chain(&all_blocks(&node, "alpha").await);
    order(&node, "alpha", 1, "alpha").await;
    let removed = admin.remove("deep").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);
    node.restart().await;
    assert_eq!(listed(&node.admin()).await, ["alpha"]);
    node.stop().await;
}

// ---------------------------------------------------------------------------
// Restart after every accepted input.
//
// `ORDO_RESTART_INPUTS_SECS` sets how long the random inputs run (default
// 40 s); `ORDO_RESTART_INPUTS_SEED` replays a sequence (the seed is printed
// at the start and again on failure):
//
//   ORDO_RESTART_INPUTS_SECS=1800 cargo test --features failpoints --test it \
//       restart_inputs::every_accepted_input -- --nocapture

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};

use ordo::fabric::channelconfig::{keys, ChannelConfig};
use ordo::fabric::configtx::compute::{compute_update, config_update_envelope};
use ordo::fabric::protos::common::{
    implicit_meta_policy::Rule, policy::PolicyType, Block, ChannelHeader, Config, ConfigPolicy,
    ConfigSignature, ConfigUpdateEnvelope, ConfigValue, ImplicitMetaPolicy, Policy,
};
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::fabric::protos::orderer::{BatchSize, BatchTimeout};
use ordo::tools::client::connect;
use ordo::tools::client::envelope::{seek, BlockPosition};

const DEFAULT_SECONDS: u64 = 40;
/// Joined channels beyond the two the node starts with: each one makes
/// every restart and check longer.
const MAX_CHANNELS: usize = 6;

/// The node as a process of its own, so that it can be killed.
struct Process {
    child: Option<Child>,
    address: String,
    admin: String,
}

impl Drop for Process {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// What the sequence did, for the summary and for a failure's report.
#[derive(Default)]
struct Tally {
    inputs: usize,
    accepted: std::collections::BTreeMap<&'static str, usize>,
    refused: std::collections::BTreeMap<&'static str, usize>,
    clean_stops: usize,
    kills: usize,
}

/// A node, the channels it has accepted, and the random source.
struct Harness {
    dir: tempfile::TempDir,
    log: PathBuf,
    seed: u64,
    rng: StdRng,
    channels: Vec<String>,
    next_join: usize,
    process: Option<Process>,
    recent: Vec<String>,
    tally: Tally,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        eprintln!(
            "restart_inputs failed with seed {} (replay: ORDO_RESTART_INPUTS_SEED={}) after {} inputs",
            self.seed, self.seed, self.tally.inputs
        );
        for line in &self.recent {
            eprintln!("  input: {line}");
        }
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        for line in tail.into_iter().rev() {
            eprintln!("  node: {line}");
        }
    }
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

impl Harness {
    fn new() -> Harness {
        let seed = env_u64("ORDO_RESTART_INPUTS_SEED").unwrap_or_else(|| rand::rng().next_u64());
        println!("restart_inputs seed {seed}");
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("node.log");
        Harness {
            dir,
            log,
            seed,
            rng: StdRng::seed_from_u64(seed),
            channels: vec![CHANNEL.to_string(), "second".to_string()],
            next_join: 0,
            process: None,
            recent: Vec::new(),
            tally: Tally::default(),
        }
    }

    fn note(&mut self, input: String) {
        self.recent.push(input);
        if self.recent.len() > 8 {
            self.recent.remove(0);
        }
    }

    async fn start(&mut self) {
        // A port from free_port may be taken by another socket before the
        // node binds it (other tests open thousands of connections): the
        // node then exits at once, and starts again on other ports.
        let mut attempts = 0;
        let (port, admin, child) = loop {
            let port = free_port();
            let admin = format!("127.0.0.1:{}", free_port());
            let log = File::options()
                .create(true)
                .append(true)
                .open(&self.log)
                .expect("log file");
            match try_spawn_ordo(
                self.dir.path(),
                port,
                &[("ORDERER_ADMIN_LISTENADDRESS", admin.clone())],
                Stdio::from(log),
            )
            .await
            {
                Ok(child) => break (port, admin, child),
                Err(status)
                    if attempts < 3
                        && std::fs::read_to_string(&self.log)
                            .unwrap_or_default()
                            .trim_end()
                            .lines()
                            .last()
                            .is_some_and(|l| l.contains("in use")) =>
                {
                    attempts += 1;
                    println!("the node exited before it listened ({status}); starting again on other ports");
                }
                Err(status) => panic!(
                    "the node exited before it listened ({status}):\n{}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                ),
            }
        };
        let process = Process {
            child: Some(child),
            address: format!("127.0.0.1:{port}"),
            admin,
        };
        // The admin listener starts after the gRPC one.
        let client = AdminClient::new(&process.admin);
        let deadline = Instant::now() + PATIENCE;
        while client.list().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "the admin listener did not start"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.process = Some(process);
    }

    /// A clean stop (SIGTERM) most of the time, now and then a kill -9.
    async fn stop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        let Some(mut child) = process.child.take() else {
            return;
        };
        if self.rng.random_bool(0.25) {
            self.tally.kills += 1;
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: signals the child this test started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
        } else {
            self.tally.clean_stops += 1;
            let pid = libc::pid_t::try_from(child.id()).expect("pid");
            // SAFETY: signals the child this test started.
            assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
            let exit = tokio::task::spawn_blocking(move || child.wait())
                .await
                .expect("join")
                .expect("wait");
            assert!(exit.success(), "a clean stop exits cleanly: {exit:?}");
        }
    }

    fn address(&self) -> String {
        self.process.as_ref().expect("running").address.clone()
    }

    fn admin(&self) -> AdminClient {
        AdminClient::new(&self.process.as_ref().expect("running").admin)
    }

    /// Every channel is listed, active, and serves its chain from block 0.
    async fn check_every_channel(&self) {
        let admin = self.admin();
        let mut expected = self.channels.clone();
        expected.sort();
        assert_eq!(
            listed(&admin).await,
            expected,
            "the channels after a restart"
        );
        for channel in &self.channels {
            let info = admin.info(channel).await.expect("info");
            assert_eq!(
                info.json()["status"],
                "active",
                "channel {channel} after a restart: {}",
                info.body
            );
            let blocks = self.blocks(channel).await;
            assert!(!blocks.is_empty(), "channel {channel} has its blocks");
            verify_chain(&blocks);
        }
    }

    async fn blocks(&self, channel: &str) -> Vec<Block> {
        let mut client = connect(&self.address()).await.expect("connect");
        let request = seek(
            channel,
            BlockPosition::Oldest,
            BlockPosition::Newest,
            SeekBehavior::FailIfNotReady,
            SeekContentType::Block,
        );
        let got = deliver_envelope(&mut client, request).await;
        assert_eq!(got.status, Some(Status::Success), "Deliver of {channel}");
        got.blocks
    }

    /// The channel's config as its last config block holds it.
    async fn config(&self, channel: &str) -> ChannelConfig {
        let blocks = self.blocks(channel).await;
        let newest = blocks.last().expect("a block");
        let index = blockutil::last_config_index(newest).unwrap_or(0);
        ChannelConfig::from_config_block(&blocks[index as usize]).expect("config block")
    }

    fn pick_channel(&mut self) -> String {
        if self.rng.random_bool(0.05) {
            return ["nosuch", "", "UPPER", "second "][self.rng.random_range(0..4)].to_string();
        }
        self.channels[self.rng.random_range(0..self.channels.len())].clone()
    }

    /// One random input; whether the node accepted it.
    async fn input(&mut self) -> bool {
        self.tally.inputs += 1;
        let (kind, accepted) = match self.rng.random_range(0..100) {
            0..35 => ("envelope", self.envelope().await),
            35..65 => ("config update", self.config_update().await),
            65..80 => ("join", self.join().await),
            _ => ("seek", self.seek().await),
        };
        let counts = if accepted {
            &mut self.tally.accepted
        } else {
            &mut self.tally.refused
        };
        *counts.entry(kind).or_default() += 1;
        accepted
    }

    async fn broadcast(&mut self, envelope: Envelope) -> bool {
        let mut client = connect(&self.address()).await.expect("connect");
        let mut stream = BroadcastStream::open(&mut client).await;
        stream.send(envelope).await;
        let answer = stream.next().await.expect("an answer");
        self.note(format!(
            "  -> {:?} {}",
            Status::try_from(answer.status),
            answer.info.chars().take(200).collect::<String>()
        ));
        answer.status == Status::Success as i32
    }

    fn random_bytes(&mut self, len: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; len];
        self.rng.fill_bytes(&mut bytes);
        bytes
    }

    /// Changes bytes: flips, a cut, an insertion, or a replacement.
    fn mutate_bytes(&mut self, bytes: &[u8]) -> (Vec<u8>, String) {
        let mut out = bytes.to_vec();
        if out.is_empty() {
            return (self.random_bytes(8), "random bytes".into());
        }
        match self.rng.random_range(0..5) {
            0 => {
                let flips = self.rng.random_range(1..4);
                for _ in 0..flips {
                    let at = self.rng.random_range(0..out.len());
                    out[at] ^= 1 << self.rng.random_range(0..8);
                }
                (out, format!("{flips} bit flips"))
            }
            1 => {
                let at = self.rng.random_range(0..out.len());
                out[at] = self.rng.random();
                (out, format!("byte {at} replaced"))
            }
            2 => {
                let at = self.rng.random_range(0..out.len());
                out.truncate(at);
                (out, format!("truncated to {at}"))
            }
            3 => {
                let at = self.rng.random_range(0..=out.len());
                let len = self.rng.random_range(1..16);
                let extra = self.random_bytes(len);
                out.splice(at..at, extra);
                (out, format!("{len} bytes inserted at {at}"))
            }
            _ => {
                let len = self.rng.random_range(0..64);
                (self.random_bytes(len), format!("{len} random bytes"))
            }
        }
    }

    /// An envelope whose payload, or signature, is mutated.
    fn mutate_envelope(&mut self, envelope: Envelope) -> (Envelope, String) {
        let mut envelope = envelope;
        if self.rng.random_bool(0.3) {
            let len = self.rng.random_range(0..80);
            envelope.signature = self.random_bytes(len).into();
            return (envelope, format!("random signature of {len} bytes"));
        }
        let (payload, how) = self.mutate_bytes(&envelope.payload);
        envelope.payload = payload.into();
        (envelope, format!("payload: {how}"))
    }

    async fn envelope(&mut self) -> bool {
        let channel = self.pick_channel();
        let size = if self.rng.random_bool(0.03) {
            self.rng.random_range(1..12) * 1024 * 1024
        } else {
            self.rng.random_range(0..4096)
        };
        let data = self.random_bytes(size);
        let envelope = transaction(&channel, data.into());
        let (envelope, how) = if self.rng.random_bool(0.5) {
            self.mutate_envelope(envelope)
        } else {
            (envelope, "as made".into())
        };
        self.note(format!("envelope for {channel:?} of {size} bytes, {how}"));
        self.broadcast(envelope).await
    }

    /// A config the channel may move to: new limits, a deep policy, a huge
    /// value, another timeout.
    fn next_config(&mut self, current: &ChannelConfig) -> (Config, String) {
        let mut config = current.config.clone();
        let root = config.channel_group.as_mut().expect("root");
        match self.rng.random_range(0..4) {
            0 => {
                let size = BatchSize {
                    max_message_count: self.rng.random_range(0..1000),
                    absolute_max_bytes: self.rng.random_range(1..20) * 1024 * 1024,
                    preferred_max_bytes: self.rng.random_range(1..4096) * 1024,
                };
                let how = format!("batch size {size:?}");
                set(
                    root,
                    keys::ORDERER_GROUP,
                    keys::BATCH_SIZE,
                    size.encode_to_vec(),
                );
                (config, how)
            }
            1 => {
                let depth = self.rng.random_range(30..56);
                let app = root
                    .groups
                    .get_mut(keys::APPLICATION_GROUP)
                    .expect("application group");
                app.groups
                    .insert(format!("Deep{depth}"), nested_with_policy(depth));
                (config, format!("a policy {depth} groups under Application"))
            }
            2 => {
                let len = if self.rng.random_bool(0.5) {
                    self.rng.random_range(1..7) * 1024 * 1024
                } else {
                    self.rng.random_range(0..64 * 1024)
                };
                let value = self.random_bytes(len);
                set(root, keys::ORDERER_GROUP, "Huge", value);
                (config, format!("a value of {len} bytes"))
            }
            _ => {
                let timeout = ["100ms", "500ms", "1s", "0s", "-1s", "soon", "2s"]
                    [self.rng.random_range(0..7)]
                .to_string();
                let how = format!("batch timeout {timeout:?}");
                set(
                    root,
                    keys::ORDERER_GROUP,
                    keys::BATCH_TIMEOUT,
                    BatchTimeout { timeout }.encode_to_vec(),
                );
                (config, how)
            }
        }
    }

    async fn config_update(&mut self) -> bool {
        let channel = self.channels[self.rng.random_range(0..self.channels.len())].clone();
        let current = self.config(&channel).await;
        let (next, how) = self.next_config(&current);
        let Ok(mut update) = compute_update(&channel, &current.config, &next) else {
            self.note(format!("config update of {channel}: {how}, no difference"));
            return false;
        };
        let mut mutation = String::from("as made");
        if self.rng.random_bool(0.1) {
            update.channel_id = self.pick_channel();
            mutation = format!("update for channel {:?}", update.channel_id);
        }
        let mut envelope = config_update_envelope(&update);
        match self.rng.random_range(0..10) {
            0 => {
                // A signature that cannot be right.
                let mut payload = Payload::decode(envelope.payload.clone()).expect("payload");
                let mut inner = ConfigUpdateEnvelope::decode(payload.data).expect("inner");
                let (header, signature) = (self.random_bytes(40), self.random_bytes(72));
                inner.signatures.push(ConfigSignature {
                    signature_header: header.into(),
                    signature: signature.into(),
                });
                payload.data = inner.encode_to_vec().into();
                envelope.payload = payload.encode_to_vec().into();
                mutation = "a random config signature".into();
            }
            1 => {
                // The update's own bytes changed.
                let mut payload = Payload::decode(envelope.payload.clone()).expect("payload");
                let mut inner = ConfigUpdateEnvelope::decode(payload.data).expect("inner");
                let (bytes, how) = self.mutate_bytes(&inner.config_update);
                inner.config_update = bytes.into();
                payload.data = inner.encode_to_vec().into();
                envelope.payload = payload.encode_to_vec().into();
                mutation = format!("config update bytes: {how}");
            }
            2 => {
                // The envelope's channel header names another channel.
                let mut payload = Payload::decode(envelope.payload.clone()).expect("payload");
                if let Some(header) = payload.header.as_mut() {
                    let mut channel_header =
                        ChannelHeader::decode(header.channel_header.clone()).expect("header");
                    channel_header.channel_id = self.pick_channel();
                    mutation = format!("envelope for {:?}", channel_header.channel_id);
                    header.channel_header = channel_header.encode_to_vec().into();
                }
                envelope.payload = payload.encode_to_vec().into();
            }
            3 => {
                let (mutated, how) = self.mutate_envelope(envelope);
                envelope = mutated;
                mutation = how;
            }
            _ => {}
        }
        self.note(format!("config update of {channel}: {how}, {mutation}"));
        self.broadcast(envelope).await
    }

    async fn join(&mut self) -> bool {
        let name = if self.channels.len() >= 2 + MAX_CHANNELS || self.rng.random_bool(0.1) {
            // A name the node has: refused as existing.
            self.channels[self.rng.random_range(0..self.channels.len())].clone()
        } else {
            format!("joined{}", self.next_join)
        };
        let mut block = profile(&name).genesis_block();
        let mut how = String::from("as made");
        let mut bytes = block.encode_to_vec();
        match self.rng.random_range(0..8) {
            0 => {
                block.metadata = Some(blockutil::orderer_metadata(
                    self.rng.random_range(0..3),
                    Bytes::new(),
                ));
                bytes = block.encode_to_vec();
                how = "another last config".into();
            }
            1 => {
                let number = self.rng.random_range(0..3);
                let len = self.rng.random_range(0..2) * 32;
                let previous = self.random_bytes(len);
                if let Some(header) = block.header.as_mut() {
                    header.number = number;
                    header.previous_hash = previous.into();
                    how = format!("header {header:?}");
                }
                bytes = block.encode_to_vec();
            }
            2..5 => {
                let (mutated, mutation) = self.mutate_bytes(&bytes);
                bytes = mutated;
                how = mutation;
            }
            _ => {}
        }
        self.note(format!("join of {name}: {how}"));
        let answer = self.admin().join(bytes).await.expect("join answered");
        self.note(format!("  -> {} {}", answer.status, answer.body.trim()));
        if answer.status != 201 {
            return false;
        }
        let joined = answer.json()["name"].as_str().expect("name").to_string();
        if joined == format!("joined{}", self.next_join) {
            self.next_join += 1;
        }
        assert!(!self.channels.contains(&joined), "joined {joined} twice");
        self.channels.push(joined);
        true
    }

    async fn seek(&mut self) -> bool {
        let channel = self.pick_channel();
        let position = |rng: &mut StdRng| match rng.random_range(0..3) {
            0 => BlockPosition::Oldest,
            1 => BlockPosition::Newest,
            _ => BlockPosition::Number(rng.random_range(0..8)),
        };
        let (start, stop) = (position(&mut self.rng), position(&mut self.rng));
        let envelope = seek(
            &channel,
            start,
            stop,
            SeekBehavior::FailIfNotReady,
            SeekContentType::Block,
        );
        let (envelope, how) = if self.rng.random_bool(0.4) {
            self.mutate_envelope(envelope)
        } else {
            (envelope, "as made".into())
        };
        self.note(format!("seek on {channel:?} {start:?}..{stop:?}, {how}"));
        let mut client = connect(&self.address()).await.expect("connect");
        let Ok(mut stream) = client
            .deliver(tokio_stream::once(envelope))
            .await
            .map(tonic::Response::into_inner)
        else {
            return false;
        };
        // A mutated seek may wait for blocks that never come: not an answer.
        let status = tokio::time::timeout(Duration::from_secs(3), async {
            use futures::StreamExt;
            use ordo::fabric::protos::orderer::deliver_response::Type;
            while let Some(Ok(item)) = stream.next().await {
                if let Some(Type::Status(code)) = item.r#type {
                    return Some(code);
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        self.note(format!("  -> {:?}", status.map(Status::try_from)));
        status == Some(Status::Success as i32)
    }
}

/// Sets a value of a group directly under /Channel, Admins modifying it.
fn set(root: &mut ConfigGroup, group: &str, key: &str, value: Vec<u8>) {
    let group = root.groups.get_mut(group).expect("group");
    let entry = group.values.entry(key.to_string()).or_insert(ConfigValue {
        version: 0,
        value: Bytes::new(),
        mod_policy: keys::ADMINS.into(),
    });
    entry.value = value.into();
}

/// `depth` nested groups, the deepest holding a policy.
fn nested_with_policy(depth: usize) -> ConfigGroup {
    let policy = ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: PolicyType::ImplicitMeta as i32,
            value: ImplicitMetaPolicy {
                sub_policy: keys::ADMINS.into(),
                rule: Rule::Any as i32,
            }
            .encode_to_vec()
            .into(),
        }),
        mod_policy: keys::ADMINS.into(),
    };
    let mut group = ConfigGroup {
        policies: std::collections::HashMap::from([(keys::ADMINS.to_string(), policy)]),
        mod_policy: keys::ADMINS.into(),
        ..ConfigGroup::default()
    };
    for _ in 1..depth {
        group = ConfigGroup {
            groups: std::collections::HashMap::from([("Nested".to_string(), group)]),
            mod_policy: keys::ADMINS.into(),
            ..ConfigGroup::default()
        };
    }
    group
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_accepted_input_survives_a_restart() {
    let budget =
        Duration::from_secs(env_u64("ORDO_RESTART_INPUTS_SECS").unwrap_or(DEFAULT_SECONDS));
    let mut harness = Harness::new();
    harness.start().await;
    let joined = harness
        .admin()
        .join(profile("second").genesis_block().encode_to_vec())
        .await
        .expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
    harness.check_every_channel().await;

    let started = Instant::now();
    while started.elapsed() < budget {
        if harness.input().await {
            harness.stop().await;
            harness.start().await;
            harness.check_every_channel().await;
        }
    }
    harness.stop().await;
    let tally = &harness.tally;
    println!(
        "restart_inputs seed {}: {} inputs, accepted {:?}, refused {:?}, {} clean stops, {} kills, {} channels",
        harness.seed,
        tally.inputs,
        tally.accepted,
        tally.refused,
        tally.clean_stops,
        tally.kills,
        harness.channels.len()
    );
    assert!(
        tally.clean_stops + tally.kills > 0,
        "some input was accepted and restarted from"
    );
}
