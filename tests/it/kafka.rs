//! The Kafka consenter against a real Kafka-protocol broker process: one
//! node, several nodes sharing a partition, restarts, late nodes, a broker
//! that goes away under load, and config updates ordered through Kafka.

use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::protos::common::{Block, Envelope, Payload, Status};
use ordo::tools::client::envelope::transaction;

use super::common::*;
use super::kafka_broker::KafkaBroker;

/// A kafka channel on `broker`, with a short batch timeout so that a
/// trickle is cut by time.
pub fn kafka_profile(
    channel: &str,
    broker: &KafkaBroker,
    max_message_count: u32,
) -> GenesisProfile {
    let mut p = GenesisProfile::embedded(channel, vec![]);
    p.consensus_type = "kafka".into();
    p.kafka_brokers = vec![broker.address()];
    p.batch_timeout = "300ms".into();
    p.batch_size.max_message_count = max_message_count;
    p
}

/// Node settings that make a lost broker show within seconds, not minutes.
pub fn kafka_env() -> Vec<(String, String)> {
    [
        ("ORDERER_KAFKA_RETRY_SHORTINTERVAL", "200ms"),
        ("ORDERER_KAFKA_RETRY_SHORTTOTAL", "60s"),
        ("ORDERER_KAFKA_RETRY_LONGINTERVAL", "1s"),
        ("ORDERER_KAFKA_RETRY_LONGTOTAL", "10m"),
        ("ORDERER_KAFKA_RETRY_NETWORKTIMEOUTS_DIALTIMEOUT", "2s"),
        ("ORDERER_KAFKA_RETRY_NETWORKTIMEOUTS_READTIMEOUT", "3s"),
        ("ORDERER_KAFKA_RETRY_NETWORKTIMEOUTS_WRITETIMEOUT", "3s"),
        ("ORDERER_KAFKA_TOPIC_REPLICATIONFACTOR", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn kafka_tx(channel: &str, n: usize) -> Envelope {
    transaction(
        channel,
        Bytes::from(format!("kafka-tx-{n:06}").into_bytes()),
    )
}

/// Sends `count` envelopes on one stream and reads every answer.
async fn broadcast_all(
    node: &TestNode,
    channel: &str,
    range: std::ops::Range<usize>,
) -> Vec<Status> {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    let count = range.len();
    let sender = stream.tx.clone();
    let channel_id = channel.to_string();
    let sending = tokio::spawn(async move {
        for n in range {
            if sender.send(kafka_tx(&channel_id, n)).await.is_err() {
                break;
            }
        }
    });
    let mut statuses = Vec::with_capacity(count);
    while statuses.len() < count {
        match stream.next().await {
            Some(answer) => {
                statuses.push(Status::try_from(answer.status).unwrap_or(Status::Unknown))
            }
            None => break,
        }
    }
    let _ = sending.await;
    statuses
}

/// The transaction numbers `kafka_tx` put in the blocks' envelopes, in block order.
fn tx_numbers(blocks: &[Block]) -> Vec<usize> {
    blocks
        .iter()
        .skip(1)
        .flat_map(|b| blockutil::entries(b).iter())
        .filter_map(|raw| {
            let envelope = Envelope::decode(raw.clone()).ok()?;
            let payload = Payload::decode(envelope.payload).ok()?;
            let text = std::str::from_utf8(&payload.data).ok()?;
            text.strip_prefix("kafka-tx-")?.parse().ok()
        })
        .collect()
}

/// Every envelope of `sent` is in the blocks exactly once, in the order sent.
fn assert_sent_once_in_order(blocks: &[Block], sent: std::ops::Range<usize>) {
    let got = tx_numbers(blocks);
    let expected: Vec<usize> = sent.collect();
    assert_eq!(got.len(), expected.len(), "as many transactions as sent");
    if let Some(at) = got.iter().zip(&expected).position(|(a, b)| a != b) {
        panic!(
            "transaction {at} is {} where {} was sent",
            got[at], expected[at]
        );
    }
}

/// Waits until the channel's ledger holds `count` transactions.
async fn wait_until_ordered(node: &TestNode, channel: &str, count: usize) -> Vec<Block> {
    let blocks = wait_for_transactions(node, channel, count).await;
    verify_chain(&blocks);
    blocks
}

async fn kafka_node(channel: &str, broker: &KafkaBroker, max_message_count: u32) -> TestNode {
    let node = TestNode::from_profile(
        &kafka_profile(channel, broker, max_message_count),
        kafka_env(),
    )
    .await;
    wait_connected(&node, channel).await;
    node
}

/// Why the channel's chain is errored now, if it is.
fn errored(node: &TestNode, channel: &str) -> Option<String> {
    let handle = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(channel)?;
    handle.chain_status().errored
}

/// Waits until the channel's chain has reached its partition.
async fn wait_connected(node: &TestNode, channel: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let handle = node
            .node
            .as_ref()
            .expect("running")
            .registrar()
            .channel(channel);
        if handle.is_some_and(|h| {
            h.state().serves() && h.chain_status().errored.is_none() && h.chain().is_ok()
        }) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the kafka chain did not connect: {:?}",
            errored(node, channel)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_node_orders_thousands_and_cuts_a_trickle_by_time() {
    let broker = KafkaBroker::start().await;
    let node = kafka_node(CHANNEL, &broker, 100).await;
    let statuses = broadcast_all(&node, CHANNEL, 0..3000).await;
    assert!(
        statuses.iter().all(|s| *s == Status::Success),
        "every envelope acknowledged"
    );
    let blocks = wait_until_ordered(&node, CHANNEL, 3000).await;
    assert_sent_once_in_order(&blocks, 0..3000);
    // A trickle below MaxMessageCount: cut by a time-to-cut record.
    let height = node.height(CHANNEL);
    let statuses = broadcast_all(&node, CHANNEL, 3000..3003).await;
    assert!(statuses.iter().all(|s| *s == Status::Success));
    wait_for_height(&node, CHANNEL, height + 1).await;
    let blocks = wait_until_ordered(&node, CHANNEL, 3003).await;
    let last = blocks.last().expect("a block");
    assert_eq!(
        blockutil::entries(last).len(),
        3,
        "the trickle is one time-cut block"
    );
    let offsets =
        ordo::runtime::consensus::kafka::record::Offsets::of_block(last).expect("kafka metadata");
    assert!(
        offsets.last_offset_persisted > 3000,
        "the block records the time-to-cut's offset: {offsets:?}"
    );
    let metrics = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(CHANNEL)
        .expect("channel")
        .metrics()
        .kafka
        .clone();
    assert!(
        metrics.time_to_cut_sent.get() >= 1,
        "the timer posted a time-to-cut"
    );
    assert!(
        metrics.time_to_cut_used.get() >= 1,
        "a time-to-cut cut a block"
    );
}

/// Nodes that boot from the same genesis block (same bytes, same chain).
async fn kafka_nodes(count: usize, profile: &GenesisProfile) -> Vec<TestNode> {
    let genesis = profile.genesis_block().encode_to_vec();
    let mut nodes = Vec::new();
    for _ in 0..count {
        nodes.push(kafka_node_from(&genesis).await);
    }
    for node in &nodes {
        wait_connected(node, &profile.channel_id).await;
    }
    nodes
}

async fn kafka_node_from(genesis: &[u8]) -> TestNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("genesis.block");
    std::fs::write(&path, genesis).expect("write genesis");
    let mut env = vec![
        (
            "ORDERER_GENERAL_BOOTSTRAPMETHOD".to_string(),
            "file".to_string(),
        ),
        (
            "ORDERER_GENERAL_BOOTSTRAPFILE".to_string(),
            path.display().to_string(),
        ),
    ];
    env.extend(kafka_env());
    let mut node = TestNode {
        node: None,
        dir,
        extra_env: env,
        consenters: ordo::runtime::consensus::Consenters::standard(),
        reader: None,
    };
    node.start().await;
    node
}

/// Every node holds the same blocks: same header hash at every height.
async fn assert_identical_chains(nodes: &[TestNode], channel: &str) -> Vec<Block> {
    let reference = all_blocks(&nodes[0], channel).await;
    verify_chain(&reference);
    for (i, node) in nodes.iter().enumerate().skip(1) {
        let blocks = all_blocks(node, channel).await;
        assert_eq!(blocks.len(), reference.len(), "node {i} has as many blocks");
        for (a, b) in reference.iter().zip(&blocks) {
            let (a, b) = (
                a.header.as_ref().expect("header"),
                b.header.as_ref().expect("header"),
            );
            assert_eq!(
                blockutil::header_hash(a),
                blockutil::header_hash(b),
                "node {i}: block {} differs",
                a.number
            );
        }
    }
    reference
}

/// Waits until every node has ordered `count` transactions and has the
/// same height.
async fn wait_all_ordered(nodes: &[TestNode], channel: &str, count: usize) {
    for node in nodes {
        wait_until_ordered(node, channel, count).await;
    }
    let target = nodes.iter().map(|n| n.height(channel)).max().unwrap_or(0);
    for node in nodes {
        wait_for_height(node, channel, target).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_sharing_a_partition_write_identical_chains() {
    let broker = KafkaBroker::start().await;
    for (count, channel) in [(2, "twonodes"), (3, "threenodes")] {
        let profile = kafka_profile(channel, &broker, 50);
        let nodes = kafka_nodes(count, &profile).await;
        // Every node takes Broadcast at once; trickles make time-cut blocks.
        let per_node = 600;
        let mut sending = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            let start = i * per_node;
            sending.push(broadcast_all(node, channel, start..start + per_node));
        }
        let answers = futures::future::join_all(sending).await;
        assert!(answers.iter().flatten().all(|s| *s == Status::Success));
        for (i, node) in nodes.iter().enumerate() {
            let n = count * per_node + i;
            let statuses = broadcast_all(node, channel, n..n + 1).await;
            assert_eq!(statuses, vec![Status::Success]);
        }
        let total = count * per_node + count;
        wait_all_ordered(&nodes, channel, total).await;
        let blocks = assert_identical_chains(&nodes, channel).await;
        let mut numbers = tx_numbers(&blocks);
        numbers.sort_unstable();
        assert_eq!(
            numbers,
            (0..total).collect::<Vec<_>>(),
            "every envelope once"
        );
        let time_cut = blocks
            .iter()
            .skip(1)
            .filter(|b| blockutil::entries(b).len() < 50)
            .count();
        assert!(time_cut > 0, "some blocks were cut by time");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_resumes_and_a_late_node_catches_up() {
    let broker = KafkaBroker::start().await;
    let profile = kafka_profile("resume", &broker, 40);
    let genesis = profile.genesis_block().encode_to_vec();
    let mut first = kafka_node_from(&genesis).await;
    wait_connected(&first, "resume").await;
    let statuses = broadcast_all(&first, "resume", 0..500).await;
    assert!(statuses.iter().all(|s| *s == Status::Success));
    wait_until_ordered(&first, "resume", 500).await;
    // Stopped with a batch pending: it is read again from the partition.
    let statuses = broadcast_all(&first, "resume", 500..510).await;
    assert!(statuses.iter().all(|s| *s == Status::Success));
    first.restart().await;
    wait_connected(&first, "resume").await;
    let statuses = broadcast_all(&first, "resume", 510..700).await;
    assert!(statuses.iter().all(|s| *s == Status::Success));
    let blocks = wait_until_ordered(&first, "resume", 700).await;
    assert_sent_once_in_order(&blocks, 0..700);
    // A node that joins late reads the partition from the start.
    let late = kafka_node_from(&genesis).await;
    wait_connected(&late, "resume").await;
    let nodes = [first, late];
    wait_all_ordered(&nodes, "resume", 700).await;
    assert_identical_chains(&nodes, "resume").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_update_through_kafka_applies_at_the_same_block_everywhere() {
    use super::config_update::{batch_update, current_config};
    use ordo::fabric::configtx::compute::config_update_envelope;

    let broker = KafkaBroker::start().await;
    let profile = kafka_profile(CHANNEL, &broker, 20);
    let nodes = kafka_nodes(2, &profile).await;
    let statuses = broadcast_all(&nodes[0], CHANNEL, 0..100).await;
    assert!(statuses.iter().all(|s| *s == Status::Success));
    let current = current_config(&nodes[1]).await;
    let update = config_update_envelope(&batch_update(&current, 7));
    let mut client = nodes[1].client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(update).await;
    let answer = stream.next().await.expect("an answer");
    assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    let statuses = broadcast_all(&nodes[0], CHANNEL, 100..200).await;
    assert!(statuses.iter().all(|s| *s == Status::Success));
    wait_all_ordered(&nodes, CHANNEL, 200).await;
    let blocks = assert_identical_chains(&nodes, CHANNEL).await;
    let config_at = blocks
        .iter()
        .skip(1)
        .position(blockutil::is_config_block)
        .map(|p| p + 1)
        .expect("a config block");
    for (number, block) in blocks.iter().enumerate().skip(1) {
        let entries = blockutil::entries(block).len();
        if number < config_at {
            assert!(entries <= 20, "block {number} under the old BatchSize");
        } else if number > config_at {
            assert!(
                entries <= 7,
                "block {number} under the new BatchSize has {entries}"
            );
        }
    }
    assert!(
        blocks[config_at + 1..]
            .iter()
            .any(|b| blockutil::entries(b).len() == 7),
        "blocks are cut at the new count"
    );
    for node in &nodes {
        assert_eq!(current_config(node).await.batch_size.max_message_count, 7);
    }
}

/// What a client saw of each envelope it sent.
#[derive(Default)]
struct Tally {
    acknowledged: Vec<usize>,
    refused: Vec<(usize, Status)>,
}

#[cfg(feature = "failpoints")]
/// Sends envelopes one at a time from `next` on, opening a new stream after
/// each refusal (Broadcast ends a stream there), until `stop` says so.
async fn send_until(
    node: &TestNode,
    channel: &str,
    next: &mut usize,
    tally: &mut Tally,
    mut stop: impl FnMut(&Tally) -> bool,
) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    while !stop(tally) {
        let n = *next;
        *next += 1;
        stream.offer(kafka_tx(channel, n)).await;
        let status = match tokio::time::timeout(PATIENCE, stream.responses.next()).await {
            Ok(Some(Ok(answer))) => Status::try_from(answer.status).unwrap_or(Status::Unknown),
            _ => Status::Unknown,
        };
        if status == Status::Success {
            tally.acknowledged.push(n);
        } else {
            tally.refused.push((n, status));
            stream = BroadcastStream::open(&mut client).await;
        }
    }
}

/// One client sending `numbers` one at a time, each after the answer to the
/// last, opening a new stream after a refusal, until told to stop.
async fn load(
    address: String,
    channel: &'static str,
    numbers: impl Iterator<Item = usize>,
    tally: std::sync::Arc<std::sync::Mutex<Tally>>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut client = ordo::tools::client::connect(&address)
        .await
        .expect("connect");
    let mut stream = BroadcastStream::open(&mut client).await;
    for n in numbers {
        if *stop.borrow() {
            return;
        }
        stream.offer(kafka_tx(channel, n)).await;
        // In flight while the brokers go away: answered once they are back.
        let status = match tokio::time::timeout(4 * PATIENCE, stream.responses.next()).await {
            Ok(Some(Ok(answer))) => Status::try_from(answer.status).unwrap_or(Status::Unknown),
            _ => Status::Unknown,
        };
        let refused = {
            let mut tally = tally.lock().expect("tally");
            if status == Status::Success {
                tally.acknowledged.push(n);
                false
            } else {
                tally.refused.push((n, status));
                true
            }
        };
        if refused {
            stream = BroadcastStream::open(&mut client).await;
        }
    }
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + 2 * PATIENCE;
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_goes_away_under_load_loses_and_repeats_nothing() {
    use ordo::fabric::protos::orderer::seek_info::SeekBehavior;
    use ordo::tools::client::envelope::BlockPosition;
    use std::sync::{Arc, Mutex};

    let mut broker = KafkaBroker::start().await;
    let node = kafka_node("outage", &broker, 30).await;
    let tally = Arc::new(Mutex::new(Tally::default()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Two clients: one sends the even numbers, one the odd ones.
    let loaders: Vec<_> = (0..2)
        .map(|k| {
            tokio::spawn(load(
                node.address(),
                "outage",
                (k..).step_by(2),
                tally.clone(),
                stopped.clone(),
            ))
        })
        .collect();
    let acked = |tally: &Arc<Mutex<Tally>>| tally.lock().expect("tally").acknowledged.len();
    wait_until("load acknowledged", || acked(&tally) >= 150).await;

    // A reader waiting at the tip, as a peer's Deliver stream does.
    let mut reader = node.client().await;
    let follower = tokio::spawn(async move {
        deliver(
            &mut reader,
            "outage",
            BlockPosition::Newest,
            BlockPosition::Number(u64::MAX),
            SeekBehavior::BlockUntilReady,
        )
        .await
    });
    broker.kill();
    wait_until("the chain shows the brokers gone", || {
        errored(&node, "outage").is_some()
    })
    .await;
    // New submissions are refused while the brokers are away...
    for n in 0..5 {
        let statuses = broadcast_all(&node, "outage", 1_000_000 + n..1_000_001 + n).await;
        assert_eq!(statuses, vec![Status::ServiceUnavailable]);
    }
    // ...and so is Deliver.
    let mut client = node.client().await;
    let got = deliver(
        &mut client,
        "outage",
        BlockPosition::Oldest,
        BlockPosition::Newest,
        SeekBehavior::BlockUntilReady,
    )
    .await;
    assert_eq!(got.status, Some(Status::ServiceUnavailable));
    // The reader at the tip is told too, as Fabric ends it on Errored().
    let followed = follower.await.expect("follower");
    assert_eq!(followed.status, Some(Status::ServiceUnavailable));

    broker.restart().await;
    wait_connected(&node, "outage").await;
    let resumed_from = acked(&tally);
    wait_until("load acknowledged after the outage", || {
        acked(&tally) >= resumed_from + 150
    })
    .await;
    stop.send(true).expect("stop");
    for loader in loaders {
        loader.await.expect("loader");
    }

    let tally = Arc::try_unwrap(tally)
        .ok()
        .expect("loaders done")
        .into_inner()
        .expect("tally");
    assert!(
        tally
            .refused
            .iter()
            .all(|(_, s)| *s == Status::ServiceUnavailable),
        "refused only as unavailable: {:?}",
        tally.refused
    );
    // A last envelope proves the chain has read past everything sent before.
    let marker = 2_000_000;
    let statuses = broadcast_all(&node, "outage", marker..marker + 1).await;
    assert_eq!(statuses, vec![Status::Success]);
    let deadline = tokio::time::Instant::now() + 2 * PATIENCE;
    let blocks = loop {
        let blocks = all_blocks(&node, "outage").await;
        if tx_numbers(&blocks).contains(&marker) {
            break blocks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the marker is ordered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    verify_chain(&blocks);
    let ordered = tx_numbers(&blocks);
    let mut seen = std::collections::HashSet::new();
    for n in &ordered {
        assert!(seen.insert(*n), "transaction {n} ordered twice");
    }
    for n in &tally.acknowledged {
        assert!(seen.contains(n), "acknowledged transaction {n} is missing");
    }
    // Each client's acknowledged transactions keep the order it sent them in.
    for k in 0..2 {
        let acked: Vec<usize> = tally
            .acknowledged
            .iter()
            .copied()
            .filter(|n| n % 2 == k)
            .collect();
        let acked_set: std::collections::HashSet<usize> = acked.iter().copied().collect();
        let in_blocks: Vec<usize> = ordered
            .iter()
            .copied()
            .filter(|n| acked_set.contains(n))
            .collect();
        assert_eq!(
            in_blocks, acked,
            "client {k}'s transactions in the order sent"
        );
    }
}

/// The chain's actors fail (the cutter, on a record): the supervisor starts
/// the tree again, which reads on from the last block's offsets.
#[cfg(feature = "failpoints")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[allow(clippy::await_holding_lock)]
async fn a_failed_kafka_chain_is_restarted_from_its_offsets() {
    use ordo::runtime::faults::{self, points};

    let _only_this_test = faults::exclusive();
    let broker = KafkaBroker::start().await;
    let node = kafka_node("failover", &broker, 25).await;
    let mut next = 0;
    let mut tally = Tally::default();
    send_until(&node, "failover", &mut next, &mut tally, |t| {
        t.acknowledged.len() >= 100
    })
    .await;
    let channel = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel("failover")
        .expect("channel");
    let restarts = channel.metrics().chain_restarts.get();
    let point = format!("{}::failover", points::KAFKA_CUTTER_RECORD);
    faults::configure(&point, "1*return(EIO)").expect("failpoint");
    send_until(&node, "failover", &mut next, &mut tally, |t| {
        t.acknowledged.len() >= 120
    })
    .await;
    // Acknowledged once the broker has them: the cutter reads them after.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while channel.metrics().chain_restarts.get() == restarts {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the supervisor restarted the chain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    faults::configure(&point, "off").expect("failpoint");
    wait_connected(&node, "failover").await;
    let resumed = tally.acknowledged.len();
    send_until(&node, "failover", &mut next, &mut tally, |t| {
        t.acknowledged.len() >= resumed + 100
    })
    .await;
    let blocks = wait_until_ordered(&node, "failover", tally.acknowledged.len()).await;
    let ordered = tx_numbers(&blocks);
    let mut seen = std::collections::HashSet::new();
    for n in &ordered {
        assert!(seen.insert(*n), "transaction {n} ordered twice");
    }
    for n in &tally.acknowledged {
        assert!(seen.contains(n), "acknowledged transaction {n} is missing");
    }
}

/// Fabric 1.x/2.x's way: a system channel ordering through Kafka, booted
/// from a genesis block laid out as configtxgen makes it; `peer channel
/// create`'s transaction creates a channel that inherits the Kafka
/// consenter; a second node on the same genesis creates and orders the
/// same channel from the partitions alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_system_channel_creates_channels_that_order_through_kafka() {
    use super::system_channel::{fixture_with, orders_transactions, send_one, wait_for_channel};
    use ordo::fabric::channelconfig::ChannelConfig;

    const SYSTEM: &str = "syschannel";
    const APP: &str = "kafkaapp";
    let broker = KafkaBroker::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = fixture_with(dir.path(), 0, &[broker.address()]);
    let mut env = fixture.boot_env();
    env.extend(kafka_env());
    let mut first = TestNode::with_env(env.clone()).await;
    first.reader = Some(fixture.org1_client.clone());
    wait_connected(&first, SYSTEM).await;

    let (status, info) = send_one(&first, fixture.admin_create_tx(APP)).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_channel(&first, APP).await;
    wait_connected(&first, APP).await;
    let app = first
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(APP)
        .expect("channel");
    assert_eq!(app.config().consensus_type, "kafka");
    assert_eq!(
        ordo::runtime::consensus::kafka::brokers_of(&app.config()).expect("brokers"),
        vec![broker.address()]
    );
    orders_transactions(&first, &fixture.org1_client, APP).await;

    // A second orderer learns of the channel from the system channel's
    // partition and writes the same chains.
    let mut second = TestNode::with_env(env).await;
    second.reader = Some(fixture.org1_client.clone());
    wait_for_channel(&second, APP).await;
    wait_connected(&second, APP).await;
    let nodes = [first, second];
    let height = nodes[0].height(APP);
    for node in &nodes {
        wait_for_height(node, APP, height).await;
    }
    let app_blocks = assert_identical_chains(&nodes, APP).await;
    let genesis = ChannelConfig::from_config_block(&app_blocks[0]).expect("config");
    assert_eq!(genesis.sequence, 1);
    let mut readers = nodes;
    for node in readers.iter_mut() {
        node.reader = Some(fixture.orderer.clone());
    }
    let system_height = readers[0].height(SYSTEM);
    wait_for_height(&readers[1], SYSTEM, system_height).await;
    assert_identical_chains(&readers, SYSTEM).await;
}

/// A record validated under a config the channel has moved past: every
/// orderer validates it again and posts a copy naming the first post's
/// offset; every orderer orders the first copy it reads, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_record_is_posted_anew_and_ordered_once_everywhere() {
    use super::config_update::{batch_update, current_config};
    use ordo::fabric::configtx::compute::config_update_envelope;
    use ordo::runtime::consensus::kafka::record::{Offsets, Record, Regular};
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let broker = KafkaBroker::start().await;
    let profile = kafka_profile(CHANNEL, &broker, 10);
    let nodes = kafka_nodes(2, &profile).await;
    let current = current_config(&nodes[0]).await;
    let update = config_update_envelope(&batch_update(&current, 5));
    let statuses = {
        let mut client = nodes[0].client().await;
        let mut stream = BroadcastStream::open(&mut client).await;
        stream.send(update).await;
        vec![stream.next().await.expect("an answer").status]
    };
    assert_eq!(statuses, vec![Status::Success as i32]);
    for node in &nodes {
        wait_for_height(node, CHANNEL, 2).await;
    }

    // A client of the partition posts a transaction validated at sequence
    // 0, as an orderer that had not read the config block yet would.
    let producer: FutureProducer = broker.client_config().create().expect("producer");
    let stale = Record::Normal(Regular {
        payload: kafka_tx(CHANNEL, 42).encode_to_vec().into(),
        config_seq: 0,
        original_offset: 0,
    })
    .encode();
    let stale_offset = producer
        .send(
            FutureRecord::<(), [u8]>::to(CHANNEL)
                .partition(0)
                .payload(&stale),
            Duration::from_secs(30),
        )
        .await
        .expect("posted")
        .offset;
    let statuses = broadcast_all(&nodes[1], CHANNEL, 43..44).await;
    assert_eq!(statuses, vec![Status::Success]);
    wait_all_ordered(&nodes, CHANNEL, 2).await;
    let blocks = assert_identical_chains(&nodes, CHANNEL).await;
    let mut numbers = tx_numbers(&blocks);
    numbers.sort_unstable();
    assert_eq!(numbers, vec![42, 43], "the stale one once");
    let last = Offsets::of_block(blocks.last().expect("a block")).expect("metadata");
    assert_eq!(
        last.last_original_offset_processed, stale_offset,
        "the copy processed names the first post"
    );
}
