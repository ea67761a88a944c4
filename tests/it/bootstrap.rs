//! Start-up from the bootstrap methods, and what a channel that cannot run answers.

use bytes::Bytes;
use prost::Message;

use crate::common::*;
use ordo::fabric::protos::common::Status;
use ordo::fabric::protos::orderer::seek_info::SeekBehavior;
use ordo::runtime::node::Node;
use ordo::tools::client::envelope::BlockPosition;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Starts a node that must bootstrap from `genesis`; returns why it refused.
async fn start_from_file_fails(dir: &std::path::Path, genesis: &std::path::Path) -> String {
    let config = config_for(
        dir,
        &env(&[
            ("ORDERER_GENERAL_BOOTSTRAPMETHOD", "file"),
            (
                "ORDERER_GENERAL_BOOTSTRAPFILE",
                &genesis.display().to_string(),
            ),
        ]),
    );
    Node::start(config)
        .await
        .err()
        .expect("start-up must fail")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_or_garbled_genesis_block_stops_start_up_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = start_from_file_fails(dir.path(), &dir.path().join("nowhere.block")).await;
    assert!(err.contains("nowhere.block"), "{err}");

    let garbled = dir.path().join("garbled.block");
    std::fs::write(&garbled, b"\xff\xff\xff not a block").expect("write");
    let err = start_from_file_fails(dir.path(), &garbled).await;
    assert!(err.contains("garbled.block"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_block_that_is_not_block_zero_is_refused_as_genesis() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut block = profile(CHANNEL).genesis_block();
    if let Some(header) = block.header.as_mut() {
        header.number = 5;
    }
    let path = dir.path().join("five.block");
    std::fs::write(&path, block.encode_to_vec()).expect("write");
    let err = start_from_file_fails(dir.path(), &path).await;
    assert!(err.contains("block 5"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstrap_method_none_starts_without_channels() {
    let node = TestNode::with_env(env(&[("ORDERER_GENERAL_BOOTSTRAPMETHOD", "none")])).await;
    assert!(node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel_ids()
        .is_empty());
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(tx(b"x")).await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(answer.status, Status::BadRequest as i32);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_of_an_unsupported_consensus_type_is_unavailable_not_fatal() {
    let mut p = profile("rafty");
    p.consensus_type = "BFT".into();
    p.consensus_metadata = Bytes::new();
    let node = TestNode::from_profile(&p, vec![]).await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(ordo::tools::client::envelope::transaction(
            "rafty",
            Bytes::from_static(b"x"),
        ))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(answer.status, Status::ServiceUnavailable as i32);
    assert!(answer.info.contains("BFT"), "{}", answer.info);
    let got = deliver(
        &mut client,
        "rafty",
        BlockPosition::Oldest,
        BlockPosition::Newest,
        SeekBehavior::BlockUntilReady,
    )
    .await;
    assert_eq!(got.status, Some(Status::ServiceUnavailable));
}
