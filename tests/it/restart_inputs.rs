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
