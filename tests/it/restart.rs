//! Restarts: a clean stop writes the pending batch, the chain continues intact,
//! SIGTERM on the real binary loses nothing, and a damaged store is reported.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;
use ordo::fabric::protos::common::Status;
use ordo::fabric::protos::orderer::seek_info::SeekBehavior;
use ordo::runtime::node::Node;
use ordo::tools::client::broadcast::{broadcast, BroadcastOptions};
use ordo::tools::client::envelope::BlockPosition;

async fn send_and_ack(node: &TestNode, count: usize, tag: &str) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..count {
        stream.send(tx(format!("{tag} {i}").as_bytes())).await;
    }
    for _ in 0..count {
        assert_eq!(
            stream.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_stop_writes_the_pending_batch_and_the_chain_continues() {
    let mut p = profile(CHANNEL);
    p.batch_timeout = "1h".into();
    let mut node = TestNode::from_profile(&p, vec![]).await;
    send_and_ack(&node, 750, "before").await;
    wait_for_height(&node, CHANNEL, 2).await;
    // A peer-like Deliver stream waits at the head (block 2, the next one; a
    // start above the height is NOT_FOUND, as in Fabric); the stop must not
    // wait for it.
    let mut follower = node.client().await;
    let following = tokio::spawn(async move {
        deliver(
            &mut follower,
            CHANNEL,
            BlockPosition::Number(2),
            BlockPosition::Number(u64::MAX),
            SeekBehavior::BlockUntilReady,
        )
        .await
    });
    deliver_streams_reach(&node, 1).await;
    // 250 envelopes are acknowledged but still pending in the cutter.
    let stopping = tokio::time::Instant::now();
    node.restart().await;
    assert!(
        stopping.elapsed() < Duration::from_secs(5),
        "a waiting Deliver stream held up the stop"
    );
    let ended = following.await.expect("task");
    assert_eq!(
        ended.status,
        Some(Status::ServiceUnavailable),
        "waiting streams end with SERVICE_UNAVAILABLE"
    );
    assert_eq!(
        node.height(CHANNEL),
        3,
        "the pending batch became block 2 on stop"
    );
    send_and_ack(&node, 500, "after").await;
    wait_for_height(&node, CHANNEL, 4).await;
    node.restart().await;
    let blocks = all_blocks(&node, CHANNEL).await;
    verify_chain(&blocks);
    assert_eq!(tx_ids(&blocks).len(), 1250);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_on_the_binary_loses_no_acknowledged_envelope() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut child = spawn_ordo(dir.path(), port, &[], Stdio::inherit()).await;
    let address = format!("127.0.0.1:{port}");
    let options = BroadcastOptions {
        address: address.clone(),
        channel: CHANNEL.into(),
        count: 1234,
        size: 256,
        streams: 3,
    };
    let report = broadcast(&options).await.expect("broadcast");
    assert_eq!(report.succeeded, 1234, "{report:?}");
    let pid = libc::pid_t::try_from(child.id()).expect("pid");
    // SAFETY: sends a signal to the child this test started; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
    let exit = tokio::task::spawn_blocking(move || child.wait())
        .await
        .expect("join")
        .expect("wait");
    assert!(exit.success(), "ordo exits cleanly on SIGTERM: {exit:?}");

    let node = Node::start(config_for(dir.path(), &[]))
        .await
        .expect("restart in-process");
    let test_node = TestNode {
        node: Some(node),
        dir,
        extra_env: vec![],
        consenters: ordo::runtime::consensus::Consenters::standard(),
        reader: None,
    };
    let blocks = all_blocks(&test_node, CHANNEL).await;
    verify_chain(&blocks);
    assert_eq!(tx_ids(&blocks).len(), 1234);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_store_fails_its_channel_with_a_clear_reason() {
    let mut node = TestNode::embedded().await;
    send_and_ack(&node, 10, "x").await;
    node.stop().await;
    // Flip one byte of the last block's data in its block file.
    let file = ledger_dir(node.dir.path()).join("chains/mychannel/blockfile_000000");
    let mut bytes = std::fs::read(&file).expect("read block file");
    let at = bytes
        .windows(3)
        .rposition(|w| w == b"x 9")
        .expect("last payload present");
    bytes[at] = b'y';
    std::fs::write(&file, &bytes).expect("write block file");
    // The node starts; the channel does not, and says why.
    node.start().await;
    let failed = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .failed_channel(CHANNEL)
        .expect("the channel failed");
    assert!(
        failed.reason.contains("damaged") && failed.reason.contains("mychannel"),
        "{}",
        failed.reason
    );
    node.stop().await;
    // Nothing was truncated: the damaged block is still there for an operator to inspect.
    assert_eq!(std::fs::read(&file).expect("read").len(), bytes.len());
}
