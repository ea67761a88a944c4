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
    assert_eq!(answer.info, "channel does not exist");
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
    let size = big.payload.len() + big.signature.len();
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

/// Sends one envelope on a new stream: the answer, and whether the stream
/// then ended without reading the envelope offered after it.
async fn answer_to(node: &TestNode, envelope: Envelope) -> (Status, String, bool) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(envelope).await;
    stream.offer(tx(b"after")).await;
    let answer = stream.next().await.expect("an answer");
    let ended = stream.next().await.is_none();
    (
        Status::try_from(answer.status).expect("a status"),
        answer.info,
        ended,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envelopes_only_the_orderer_makes_and_unknown_channels_get_fabrics_answers() {
    let node = TestNode::embedded().await;
    let cases = [
        (
            envelope(CHANNEL, HeaderType::Config, Bytes::from_static(b"config")),
            "message is of type that cannot be processed directly",
        ),
        (
            envelope(
                CHANNEL,
                HeaderType::OrdererTransaction,
                Bytes::from_static(b"old"),
            ),
            "message is of type that is no longer supported",
        ),
        (
            transaction("", Bytes::from_static(b"no channel")),
            "channel does not exist",
        ),
    ];
    for (envelope, info) in cases {
        let answer = answer_to(&node, envelope).await;
        assert_eq!(answer, (Status::BadRequest, info.to_string(), true));
    }
    // A CONFIG envelope is never ordered, not even rebuilt from its update.
    let config_block = all_blocks(&node, CHANNEL).await.remove(0);
    let genesis_envelope =
        Envelope::decode(ordo::fabric::blockutil::entries(&config_block)[0].clone())
            .expect("an envelope");
    let answer = answer_to(&node, genesis_envelope).await;
    assert_eq!(answer.0, Status::BadRequest);
    assert_eq!(node.height(CHANNEL), 1, "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_limit_counts_payload_and_signature_as_fabric() {
    let mut at_limit = tx(&[7u8; 3000]);
    at_limit.signature = Bytes::from(vec![1u8; 64]);
    let mut over = at_limit.clone();
    over.signature = Bytes::from(vec![1u8; 65]);
    let size = (at_limit.payload.len() + 64) as u32;
    let mut p = profile(CHANNEL);
    p.batch_size.absolute_max_bytes = size;
    p.batch_size.preferred_max_bytes = size;
    let node = TestNode::from_profile(&p, vec![]).await;
    // Exactly at the limit counting payload and signature: accepted, though
    // the marshalled envelope is a few bytes over it.
    assert!(at_limit.encoded_len() as u32 > size);
    let (status, info, _) = answer_to(&node, at_limit).await;
    assert_eq!(status, Status::Success, "{info}");
    let (status, info, ended) = answer_to(&node, over).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(
        info,
        format!(
            "message payload is {} bytes and exceeds maximum allowed {size} bytes",
            size + 1
        )
    );
    assert!(ended);
}
