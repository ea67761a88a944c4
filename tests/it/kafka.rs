//! The Kafka consenter against a real Kafka-protocol broker process: one
//! node, several nodes sharing a partition, restarts, late nodes, a broker
//! that goes away under load, and config updates ordered through Kafka.

use std::time::Duration;

use bytes::Bytes;
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
}
