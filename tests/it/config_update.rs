//! Config updates through Broadcast: checked, ordered in a block of their own,
//! applied from the next block on, and refused with a reason when invalid.

use bytes::Bytes;
use prost::Message;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::{keys, ChannelConfig};
use ordo::fabric::configtx::compute::{compute_update, config_update_envelope};
use ordo::fabric::protos::common::{Block, Config, ConfigUpdate, ConfigValue, Envelope, Status};
use ordo::fabric::protos::orderer::seek_info::SeekBehavior;
use ordo::fabric::protos::orderer::BatchSize;
use ordo::tools::client::envelope::BlockPosition;

use crate::common::*;

/// The channel's current config, read the way a client reads it: the last
/// config block, found through the newest block's LAST_CONFIG.
pub(crate) async fn current_config(node: &TestNode) -> ChannelConfig {
    let blocks = all_blocks(node, CHANNEL).await;
    let newest = blocks.last().expect("a block");
    let index = blockutil::last_config_index(newest).expect("last config");
    ChannelConfig::from_config_block(&blocks[index as usize]).expect("config block")
}

fn with_max_message_count(config: &Config, count: u32) -> Config {
    let mut updated = config.clone();
    let orderer = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .expect("orderer group");
    let value = orderer
        .values
        .get_mut(keys::BATCH_SIZE)
        .expect("batch size");
    let mut size = BatchSize::decode(value.value.clone()).expect("batch size");
    size.max_message_count = count;
    value.value = size.encode_to_vec().into();
    updated
}

pub(crate) fn batch_update(current: &ChannelConfig, count: u32) -> ConfigUpdate {
    compute_update(
        CHANNEL,
        &current.config,
        &with_max_message_count(&current.config, count),
    )
    .expect("a difference")
}

/// Sends one envelope on a new stream and returns the answer.
async fn send_one(node: &TestNode, envelope: Envelope) -> (Status, String) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(envelope).await;
    let answer = stream.next().await.expect("an answer");
    (
        Status::try_from(answer.status).expect("a status"),
        answer.info,
    )
}

fn is_config(block: &Block) -> bool {
    blockutil::is_config_block(block)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_size_update_applies_from_the_next_block() {
    let mut node = TestNode::embedded().await;
    let current = current_config(&node).await;
    assert_eq!(current.batch_size.max_message_count, 500);

    // 25 transactions, the update to 10, 25 more, all on one stream.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..25u32 {
        stream.send(tx(&i.to_be_bytes())).await;
    }
    stream
        .send(config_update_envelope(&batch_update(&current, 10)))
        .await;
    for i in 25..50u32 {
        stream.send(tx(&i.to_be_bytes())).await;
    }
    for i in 0..51 {
        let answer = stream.next().await.expect("answer");
        assert_eq!(
            answer.status,
            Status::Success as i32,
            "answer {i}: {}",
            answer.info
        );
    }

    // Block 1: the 25 cut by the config; block 2: the config alone; then at most 10.
    wait_for_height(&node, CHANNEL, 6).await;
    let blocks = all_blocks(&node, CHANNEL).await;
    verify_chain(&blocks);
    let counts: Vec<usize> = blocks.iter().map(|b| blockutil::entries(b).len()).collect();
    assert_eq!(counts, vec![1, 25, 1, 10, 10, 5]);
    assert!(is_config(&blocks[2]));
    let last_configs: Vec<u64> = blocks
        .iter()
        .map(|b| blockutil::last_config_index(b).expect("last config"))
        .collect();
    assert_eq!(last_configs, vec![0, 0, 2, 2, 2, 2]);

    let new_config = ChannelConfig::from_config_block(&blocks[2]).expect("config block");
    assert_eq!(new_config.sequence, 1);
    assert_eq!(new_config.batch_size.max_message_count, 10);
    assert_eq!(new_config.batch_timeout, current.batch_timeout);

    // After a restart the channel runs under the new config.
    node.restart().await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..15u32 {
        stream.send(tx(&(100 + i).to_be_bytes())).await;
    }
    for _ in 0..15 {
        assert_eq!(
            stream.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
    wait_for_height(&node, CHANNEL, 8).await;
    let blocks = all_blocks(&node, CHANNEL).await;
    let counts: Vec<usize> = blocks[6..]
        .iter()
        .map(|b| blockutil::entries(b).len())
        .collect();
    assert_eq!(counts, vec![10, 5]);
    assert_eq!(blockutil::last_config_index(&blocks[7]), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_updates_are_refused_with_a_reason_and_nothing_is_written() {
    let node = TestNode::embedded().await;
    let current = current_config(&node).await;

    // A valid update whose read set names the value it changes.
    let mut update = batch_update(&current, 10);
    update
        .read_set
        .as_mut()
        .and_then(|r| r.groups.get_mut(keys::ORDERER_GROUP))
        .expect("read orderer")
        .values
        .insert(
            keys::BATCH_SIZE.into(),
            ConfigValue {
                version: 0,
                ..ConfigValue::default()
            },
        );
    let (status, info) = send_one(&node, config_update_envelope(&update)).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 2).await;

    let mut jump = batch_update(&current_config(&node).await, 20);
    jump.write_set
        .as_mut()
        .and_then(|w| w.groups.get_mut(keys::ORDERER_GROUP))
        .and_then(|o| o.values.get_mut(keys::BATCH_SIZE))
        .expect("written value")
        .version = 5;

    let mut unknown = batch_update(&current_config(&node).await, 20);
    unknown
        .read_set
        .as_mut()
        .expect("read set")
        .groups
        .insert("Consortia".into(), Default::default());

    let mut garbage = config_update_envelope(&batch_update(&current, 20));
    let mut payload =
        ordo::fabric::protos::common::Payload::decode(garbage.payload.clone()).expect("payload");
    payload.data = Bytes::from_static(b"\x0a\xff\xff not a config update");
    garbage.payload = payload.encode_to_vec().into();

    let cases = [
        (
            "stale read set",
            config_update_envelope(&update),
            "proposed update requires that key [Value]  /Channel/Orderer/BatchSize be at version 0, but it is currently at version 1",
        ),
        (
            "version jump",
            config_update_envelope(&jump),
            "to version 5, but key is at version 1",
        ),
        (
            "unknown group",
            config_update_envelope(&unknown),
            "does not contain element for [Group]  /Channel/Consortia but was in the read set",
        ),
        ("garbage bytes", garbage, "ConfigUpdateEnvelope"),
    ];
    for (name, envelope, reason) in cases {
        let (status, info) = send_one(&node, envelope).await;
        assert_eq!(status, Status::BadRequest, "{name}: {info}");
        assert!(info.contains(reason), "{name}: {info}");
        assert!(
            info.contains("mychannel"),
            "{name} names the channel: {info}"
        );
    }

    // Nothing was written: still genesis + the one config block, under config 1.
    let blocks = all_blocks(&node, CHANNEL).await;
    assert_eq!(blocks.len(), 2);
    assert_eq!(current_config(&node).await.sequence, 1);
    let got = deliver(
        &mut node.client().await,
        CHANNEL,
        BlockPosition::Number(2),
        BlockPosition::Number(2),
        SeekBehavior::FailIfNotReady,
    )
    .await;
    assert_eq!(got.status, Some(Status::NotFound));
}

/// `config` with ConsensusType.state set (0 normal, 1 maintenance).
fn with_consensus_state(config: &Config, state: i32) -> Config {
    use ordo::fabric::protos::orderer::ConsensusType;
    let mut updated = config.clone();
    let value = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .and_then(|orderer| orderer.values.get_mut(keys::CONSENSUS_TYPE))
        .expect("consensus type");
    let mut consensus = ConsensusType::decode(value.value.clone()).expect("consensus type");
    consensus.state = state;
    value.value = consensus.encode_to_vec().into();
    updated
}

fn update_envelope(from: &ChannelConfig, to: &Config) -> Envelope {
    config_update_envelope(&compute_update(CHANNEL, &from.config, to).expect("a difference"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn maintenance_mode_takes_config_updates_only_and_is_left_as_fabric_allows() {
    let node = TestNode::embedded().await;
    let normal = current_config(&node).await;

    // Entering maintenance together with another change: the maintenance filter refuses.
    let both = with_consensus_state(&with_max_message_count(&normal.config, 10), 1);
    let (status, info) = send_one(&node, update_envelope(&normal, &both)).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert_eq!(
        info,
        "config update for existing channel did not pass maintenance checks: config transaction \
         inspection failed: config update contain more then just the ConsensusType value in the \
         Orderer group"
    );

    // Entering alone: ordered; from the next block on, normal transactions are
    // refused and the stream ends, as in Fabric.
    let enter = with_consensus_state(&normal.config, 1);
    let (status, info) = send_one(&node, update_envelope(&normal, &enter)).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 2).await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(tx(b"in maintenance")).await;
    stream.offer(tx(b"never read")).await;
    let answer = stream.next().await.expect("an answer");
    assert_eq!(answer.status, Status::ServiceUnavailable as i32);
    assert_eq!(
        answer.info,
        "normal transactions are rejected: maintenance mode"
    );
    assert!(stream.next().await.is_none());

    // Config updates still go through, and so does leaving.
    let maintenance = current_config(&node).await;
    let (status, info) = send_one(
        &node,
        update_envelope(
            &maintenance,
            &with_max_message_count(&maintenance.config, 10),
        ),
    )
    .await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 3).await;
    let tuned = current_config(&node).await;
    let (status, info) = send_one(
        &node,
        update_envelope(&tuned, &with_consensus_state(&tuned.config, 0)),
    )
    .await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 4).await;
    let back = tx(b"back to normal");
    let (status, info) = send_one(&node, back.clone()).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 5).await;
    let blocks = all_blocks(&node, CHANNEL).await;
    assert!(blocks[1..4].iter().all(is_config));
    assert_eq!(
        tx_ids(&blocks[3..]),
        vec![tx_id_of(&back)],
        "only the transaction sent after leaving"
    );
    let config = current_config(&node).await;
    assert_eq!(config.sequence, 3);
    assert_eq!(config.batch_size.max_message_count, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn updates_this_orderer_cannot_run_are_refused_in_fabrics_words() {
    use ordo::fabric::protos::common::{Capabilities, Capability};
    let node = TestNode::embedded().await;
    let current = current_config(&node).await;

    let mut unsupported = current.config.clone();
    let orderer = unsupported
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .expect("orderer group");
    orderer
        .values
        .get_mut(keys::CAPABILITIES)
        .expect("capabilities")
        .value = Capabilities {
        capabilities: [("V9_9".to_string(), Capability {})].into(),
    }
    .encode_to_vec()
    .into();
    let (status, info) = send_one(&node, update_envelope(&current, &unsupported)).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert_eq!(
        info,
        "error applying config update to existing channel 'mychannel': config update is not \
         compatible: config requires unsupported orderer capabilities: Orderer capability V9_9 \
         is required but not supported: Orderer capability V9_9 is required but not supported"
    );

    let mut bad_name = current.config.clone();
    bad_name
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .expect("orderer group")
        .values
        .insert(
            "Batch Size".into(),
            ConfigValue {
                version: 0,
                value: Bytes::from_static(b"x"),
                mod_policy: keys::ADMINS.into(),
            },
        );
    let (status, info) = send_one(&node, update_envelope(&current, &bad_name)).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert!(
        info.ends_with(
            "error authorizing update: error mapping WriteSet: illegal characters in key: \
             [Value]  : config ID 'Batch Size' contains illegal characters"
        ),
        "{info}"
    );

    // A consensus-type change outside maintenance mode.
    let mut kafka = current.config.clone();
    let value = kafka
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .and_then(|orderer| orderer.values.get_mut(keys::CONSENSUS_TYPE))
        .expect("consensus type");
    value.value = ordo::fabric::protos::orderer::ConsensusType {
        r#type: "kafka".into(),
        ..Default::default()
    }
    .encode_to_vec()
    .into();
    let (status, info) = send_one(&node, update_envelope(&current, &kafka)).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert!(
        info.ends_with(
            "did not pass maintenance checks: config transaction inspection failed: attempted to \
             change consensus type from solo to kafka, but current config ConsensusType.State is \
             not in maintenance mode"
        ),
        "{info}"
    );
    assert_eq!(node.height(CHANNEL), 1, "nothing was written");
}
