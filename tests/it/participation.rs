//! The channel participation API over HTTP, as osnadmin uses it, together with
//! Broadcast and Deliver on the channels it creates.

use bytes::Bytes;
use prost::Message;

use ordo::fabric::protos::common::Status;
use ordo::tools::client::envelope::transaction;

use crate::common::*;

async fn node_without_channels() -> TestNode {
    TestNode::with_env(vec![(
        "ORDERER_GENERAL_BOOTSTRAPMETHOD".into(),
        "none".into(),
    )])
    .await
}

fn genesis(channel: &str) -> Vec<u8> {
    profile(channel).genesis_block().encode_to_vec()
}

async fn order(node: &TestNode, channel: &str, count: u32) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..count {
        stream
            .send(transaction(channel, Bytes::from(format!("{channel}-{i}"))))
            .await;
    }
    for _ in 0..count {
        let answer = stream.next().await.expect("answer");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn join_two_channels_order_list_remove_one_and_restart() {
    let mut node = node_without_channels().await;
    let admin = node.admin();
    assert_eq!(
        admin.list().await.expect("list").json()["channels"],
        serde_json::json!([])
    );

    for channel in ["alpha", "beta"] {
        let joined = admin.join(genesis(channel)).await.expect("join");
        assert_eq!(joined.status, 201, "{}", joined.body);
        assert_eq!(
            joined.json(),
            serde_json::json!({
                "name": channel,
                "url": format!("/participation/v1/channels/{channel}"),
                "consensusRelation": "consenter",
                "status": "active",
                "height": 1,
            })
        );
    }
    order(&node, "alpha", 7).await;
    order(&node, "beta", 3).await;
    wait_for_height(&node, "alpha", 2).await;
    wait_for_height(&node, "beta", 2).await;

    let list = admin.list().await.expect("list");
    assert_eq!(list.status, 200);
    assert_eq!(
        list.json(),
        serde_json::json!({
            "systemChannel": null,
            "channels": [
                {"name": "alpha", "url": "/participation/v1/channels/alpha"},
                {"name": "beta", "url": "/participation/v1/channels/beta"},
            ]
        })
    );
    let info = admin.info("alpha").await.expect("info");
    assert_eq!(info.status, 200);
    assert_eq!(info.json()["height"], 2);

    let removed = admin.remove("beta").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);
    assert_eq!(admin.info("beta").await.expect("info").status, 404);
    assert_eq!(admin.remove("beta").await.expect("remove").status, 404);
    // Broadcast no longer finds it; alpha goes on.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(transaction("beta", Bytes::from_static(b"late")))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(answer.status, Status::BadRequest as i32);
    assert!(
        answer.info.contains("channel does not exist"),
        "{}",
        answer.info
    );
    order(&node, "alpha", 2).await;
    assert!(!ledger_dir(node.dir.path()).join("chains/beta").exists());

    node.restart().await;
    let admin = node.admin();
    let names: Vec<String> = admin.list().await.expect("list").json()["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .map(|c| c["name"].as_str().expect("name").to_string())
        .collect();
    assert_eq!(names, vec!["alpha"]);
    let blocks = wait_for_transactions(&node, "alpha", 9).await;
    verify_chain(&blocks);

    // A removed channel can be joined again, from scratch.
    let joined = admin.join(genesis("beta")).await.expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.json()["height"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_join_requests_get_fabric_status_codes() {
    let node = node_without_channels().await;
    let admin = node.admin();
    assert_eq!(
        admin.join(genesis("alpha")).await.expect("join").status,
        201
    );

    let again = admin.join(genesis("alpha")).await.expect("join");
    assert_eq!(again.status, 405, "{}", again.body);
    assert!(again.json()["error"]
        .as_str()
        .expect("error")
        .contains("already exists"));

    let garbage = admin
        .join(b"\xff\xff not a block".to_vec())
        .await
        .expect("join");
    assert_eq!(garbage.status, 400, "{}", garbage.body);
    assert!(
        garbage.body.contains("cannot unmarshal"),
        "{}",
        garbage.body
    );

    let mut later = profile("gamma").genesis_block();
    if let Some(header) = later.header.as_mut() {
        header.number = 3;
    }
    let later = admin.join(later.encode_to_vec()).await.expect("join");
    assert_eq!(later.status, 400, "{}", later.body);
    assert!(later.body.contains("onboarding"), "{}", later.body);

    let not_config = ordo::fabric::blockutil::new_block(
        0,
        Bytes::new(),
        vec![Bytes::from_static(b"junk")],
        0,
        Bytes::new(),
    );
    let not_config = admin.join(not_config.encode_to_vec()).await.expect("join");
    assert_eq!(not_config.status, 400, "{}", not_config.body);

    let unknown = admin.info("nosuch").await.expect("info");
    assert_eq!(unknown.status, 404);
    assert!(unknown.json()["error"].is_string());
    assert_eq!(admin.info("Bad_Name").await.expect("info").status, 400);

    // Only the first join created anything.
    let list = admin.list().await.expect("list").json();
    assert_eq!(list["channels"].as_array().expect("channels").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disabled_api_answers_service_unavailable() {
    let node = TestNode::with_env(vec![(
        "ORDERER_CHANNELPARTICIPATION_ENABLED".into(),
        "false".into(),
    )])
    .await;
    let answer = node.admin().list().await.expect("list");
    assert_eq!(answer.status, 503);
    assert!(answer.body.contains("disabled"), "{}", answer.body);
}
