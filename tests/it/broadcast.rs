//! Broadcast through gRPC: ordering many envelopes, and every bad-input answer.

use std::collections::HashSet;

use bytes::Bytes;
use prost::Message;

use crate::common::*;
use ordo::fabric::protos::common::{Envelope, HeaderType, Status};
use ordo::tools::client::envelope::{envelope, transaction};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_envelopes_over_several_streams_come_back_in_a_valid_chain() {
    let node = TestNode::from_profile(&profile(CHANNEL), vec![]).await;
    const STREAMS: usize = 4;
    const PER_STREAM: usize = 1500;
    let mut sent = HashSet::new();
    let mut tasks = Vec::new();
    for s in 0..STREAMS {
        let mut client = node.client().await;
        let envelopes: Vec<Envelope> = (0..PER_STREAM)
            .map(|i| tx(format!("stream {s} tx {i}").as_bytes()))
            .collect();
        sent.extend(envelopes.iter().map(tx_id_of));
        tasks.push(tokio::spawn(async move {
            let mut stream = BroadcastStream::open(&mut client).await;
            let sender = stream.tx.clone();
            tokio::spawn(async move {
                for e in envelopes {
                    sender.send(e).await.expect("send");
                }
            });
            for _ in 0..PER_STREAM {
                let answer = stream.next().await.expect("answer");
                assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
            }
        }));
    }
    for task in tasks {
        task.await.expect("stream task");
    }
    let total = (STREAMS * PER_STREAM) as u64;
    // 500 per block: 12 full blocks, and the batch timeout cuts any remainder.
    let blocks = wait_for_transactions(&node, CHANNEL, total as usize).await;
    verify_chain(&blocks);
    let delivered = tx_ids(&blocks);
    assert_eq!(delivered.len() as u64, total, "every envelope exactly once");
    assert_eq!(delivered.iter().cloned().collect::<HashSet<_>>(), sent);
    assert!(blocks
        .iter()
        .skip(1)
        .all(|b| ordo::fabric::blockutil::entries(b).len() <= 500));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_channel_is_a_bad_request_and_ends_the_stream() {
    let node = TestNode::embedded().await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(transaction("nosuchchannel", Bytes::from_static(b"x")))
        .await;
    stream.offer(tx(b"never read")).await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(answer.status, Status::BadRequest as i32);
    assert!(
        answer.info.contains("channel does not exist"),
        "{}",
        answer.info
    );
    assert!(
        stream.next().await.is_none(),
        "the stream ends after a non-SUCCESS answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_envelopes_are_bad_requests() {
    let node = TestNode::embedded().await;
    let cases = [
        (Envelope::default(), "header not set"),
        (
            Envelope {
                payload: Bytes::from_static(&[0x0a, 0xff, 0x01]),
                signature: Bytes::new(),
            },
            "could not determine channel ID",
        ),
    ];
    for (envelope, expected) in cases {
        let mut client = node.client().await;
        let mut stream = BroadcastStream::open(&mut client).await;
        stream.send(envelope).await;
        let answer = stream.next().await.expect("answer");
        assert_eq!(answer.status, Status::BadRequest as i32);
        assert!(
            answer.info.contains(expected),
            "{} should mention {expected}",
            answer.info
        );
        assert!(stream.next().await.is_none());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_envelope_is_refused_with_its_size() {
    let mut p = profile(CHANNEL);
    p.batch_size.absolute_max_bytes = 4096;
    p.batch_size.preferred_max_bytes = 2048;
    let node = TestNode::from_profile(&p, vec![]).await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    let big = tx(&[7u8; 5000]);
    let size = big.encoded_len();
    stream.send(tx(b"small first")).await;
    stream.send(big).await;
    let first = stream.next().await.expect("answer");
    assert_eq!(first.status, Status::Success as i32);
    let refused = stream.next().await.expect("answer");
    assert_eq!(refused.status, Status::BadRequest as i32);
    assert_eq!(
        refused.info,
        format!("message payload is {size} bytes and exceeds maximum allowed 4096 bytes")
    );
    assert!(stream.next().await.is_none());
    // The accepted one is ordered; the refused one is not.
    let blocks = wait_for_transactions(&node, CHANNEL, 1).await;
    assert_eq!(tx_ids(&blocks).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_keep_the_order_of_the_envelopes() {
    let node = TestNode::embedded().await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..50 {
        stream.send(tx(format!("{i}").as_bytes())).await;
    }
    stream
        .send(transaction("elsewhere", Bytes::from_static(b"bad")))
        .await;
    stream.offer(tx(b"after the bad one")).await;
    for _ in 0..50 {
        assert_eq!(
            stream.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
    assert_eq!(
        stream.next().await.expect("answer").status,
        Status::BadRequest as i32
    );
    assert!(stream.next().await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_update_that_is_not_one_is_a_bad_request() {
    let node = TestNode::embedded().await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(envelope(
            CHANNEL,
            HeaderType::ConfigUpdate,
            Bytes::from_static(b"update"),
        ))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(answer.status, Status::BadRequest as i32);
    assert!(
        answer.info.contains("ConfigUpdateEnvelope"),
        "{}",
        answer.info
    );
    assert_eq!(node.height(CHANNEL), 1, "nothing was written");
}
