//! Deliver through gRPC: positions, waiting, errors, several requests per stream,
//! and many streams waiting at the head.

use std::time::Duration;

use futures::StreamExt;
use tokio_stream::wrappers::ReceiverStream;

use crate::common::*;
use ordo::fabric::blockutil;
use ordo::fabric::protos::common::Status;
use ordo::fabric::protos::common::{Envelope, HeaderType};
use ordo::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType, SeekErrorResponse};
use ordo::fabric::protos::orderer::seek_position::Type as Position;
use ordo::fabric::protos::orderer::{
    SeekInfo, SeekNewest, SeekNextCommit, SeekOldest, SeekPosition, SeekSpecified,
};
use ordo::tools::client::envelope::{envelope, seek, BlockPosition};
use prost::Message;

use BlockPosition::{Newest, Number, Oldest};
use SeekBehavior::{BlockUntilReady, FailIfNotReady};

/// A node whose channel holds blocks 0..=3 (each data block holds 2 envelopes).
/// Blocks are cut by count only, so even a slow machine cuts exactly these.
async fn node_with_four_blocks() -> TestNode {
    let mut p = profile(CHANNEL);
    p.batch_size.max_message_count = 2;
    p.batch_timeout = "1h".into();
    let node = TestNode::from_profile(&p, vec![]).await;
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..6 {
        stream.send(tx(format!("{i}").as_bytes())).await;
    }
    for _ in 0..6 {
        assert_eq!(
            stream.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
    wait_for_height(&node, CHANNEL, 4).await;
    node
}

fn numbers(d: &Delivered) -> Vec<u64> {
    d.blocks.iter().map(blockutil::number).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_and_stop_positions() {
    let node = node_with_four_blocks().await;
    let mut c = node.client().await;
    let all = deliver(&mut c, CHANNEL, Oldest, Newest, BlockUntilReady).await;
    assert_eq!(
        (numbers(&all), all.status),
        (vec![0, 1, 2, 3], Some(Status::Success))
    );
    verify_chain(&all.blocks);
    let newest = deliver(&mut c, CHANNEL, Newest, Newest, BlockUntilReady).await;
    assert_eq!(numbers(&newest), vec![3]);
    let range = deliver(&mut c, CHANNEL, Number(1), Number(2), BlockUntilReady).await;
    assert_eq!(numbers(&range), vec![1, 2]);
    let oldest = deliver(&mut c, CHANNEL, Oldest, Oldest, FailIfNotReady).await;
    assert_eq!(numbers(&oldest), vec![0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers() {
    let node = node_with_four_blocks().await;
    let mut c = node.client().await;
    let backwards = deliver(&mut c, CHANNEL, Number(3), Number(1), BlockUntilReady).await;
    assert_eq!(
        (backwards.blocks.len(), backwards.status),
        (0, Some(Status::BadRequest))
    );
    let beyond = deliver(&mut c, CHANNEL, Number(10), Number(12), FailIfNotReady).await;
    assert_eq!(
        (beyond.blocks.len(), beyond.status),
        (0, Some(Status::NotFound))
    );
    // FAIL_IF_NOT_READY past the head: the existing blocks, then NOT_FOUND.
    let partly = deliver(&mut c, CHANNEL, Number(2), Number(u64::MAX), FailIfNotReady).await;
    assert_eq!(
        (numbers(&partly), partly.status),
        (vec![2, 3], Some(Status::NotFound))
    );
    let unknown = deliver(&mut c, "nosuchchannel", Oldest, Newest, BlockUntilReady).await;
    assert_eq!(unknown.status, Some(Status::NotFound));
    let garbage = deliver_envelope(&mut c, ordo::fabric::protos::common::Envelope::default()).await;
    assert_eq!(garbage.status, Some(Status::BadRequest));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_requests_on_one_stream_are_answered_in_turn() {
    // The last two ask for headers only: normal blocks come without data, config
    // blocks (block 0) whole, as in Fabric.
    let node = node_with_four_blocks().await;
    let mut c = node.client().await;
    let header_only = SeekContentType::HeaderWithSig;
    let requests = vec![
        seek(
            CHANNEL,
            Number(0),
            Number(1),
            BlockUntilReady,
            SeekContentType::Block,
        ),
        seek(
            CHANNEL,
            Number(3),
            Number(3),
            BlockUntilReady,
            SeekContentType::Block,
        ),
        seek(CHANNEL, Number(2), Number(2), BlockUntilReady, header_only),
        seek(CHANNEL, Number(0), Number(0), BlockUntilReady, header_only),
    ];
    let mut stream = c
        .deliver(tokio_stream::iter(requests))
        .await
        .expect("deliver")
        .into_inner();
    let mut seen = Vec::new();
    while let Some(item) = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("in time")
    {
        match item.expect("ok").r#type {
            Some(DeliverItem::Block(b)) => seen.push(format!(
                "block {} data {}",
                blockutil::number(&b),
                b.data.is_some()
            )),
            Some(DeliverItem::Status(s)) => {
                seen.push(format!("status {s}"));
                if seen.len() == 9 {
                    break;
                }
            }
            None => panic!("empty response"),
        }
    }
    assert_eq!(
        seen,
        vec![
            "block 0 data true",
            "block 1 data true",
            "status 200",
            "block 3 data true",
            "status 200",
            "block 2 data false",
            "status 200",
            "block 0 data true",
            "status 200"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_waiting_at_the_head_receives_new_blocks_as_they_are_cut() {
    let node = node_with_four_blocks().await;
    let mut c = node.client().await;
    let (requests, rx) = tokio::sync::mpsc::channel(1);
    requests
        .send(seek(
            CHANNEL,
            Number(4),
            Number(u64::MAX),
            BlockUntilReady,
            SeekContentType::Block,
        ))
        .await
        .expect("send");
    let mut stream = c
        .deliver(ReceiverStream::new(rx))
        .await
        .expect("deliver")
        .into_inner();
    // Nothing yet: block 4 does not exist.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), stream.next())
            .await
            .is_err()
    );
    let mut bc = node.client().await;
    let broadcast = BroadcastStream::open(&mut bc).await;
    for round in 0..3u64 {
        broadcast.send(tx(format!("a{round}").as_bytes())).await;
        broadcast.send(tx(format!("b{round}").as_bytes())).await;
        let item = tokio::time::timeout(PATIENCE, stream.next())
            .await
            .expect("block in time");
        match item.expect("some").expect("ok").r#type {
            Some(DeliverItem::Block(b)) => assert_eq!(blockutil::number(&b), 4 + round),
            other => panic!("expected a block, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_for_a_future_block_waits_for_it() {
    let node = node_with_four_blocks().await;
    let mut c = node.client().await;
    // Block 4 is the next one (the height): the request waits for it.
    let waiting = tokio::spawn(async move {
        deliver(&mut c, CHANNEL, Number(4), Number(5), BlockUntilReady).await
    });
    deliver_streams_reach(&node, 1).await;
    assert!(!waiting.is_finished());
    let mut bc = node.client().await;
    let broadcast = BroadcastStream::open(&mut bc).await;
    for i in 0..4 {
        broadcast.send(tx(format!("later {i}").as_bytes())).await;
    }
    let got = waiting.await.expect("task");
    assert_eq!(
        (numbers(&got), got.status),
        (vec![4, 5], Some(Status::Success))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_streams_at_the_head_all_receive_the_next_block() {
    const STREAMS: usize = 300;
    let node = node_with_four_blocks().await;
    // A few connections, many streams each, like peers multiplexed over HTTP/2.
    let mut clients = Vec::new();
    for _ in 0..4 {
        clients.push(node.client().await);
    }
    let mut waiters = Vec::new();
    for i in 0..STREAMS {
        let mut c = clients[i % clients.len()].clone();
        waiters.push(tokio::spawn(async move {
            deliver(&mut c, CHANNEL, Number(4), Number(4), BlockUntilReady).await
        }));
    }
    deliver_streams_reach(&node, STREAMS as i64).await;
    let mut bc = node.client().await;
    let broadcast = BroadcastStream::open(&mut bc).await;
    broadcast.send(tx(b"x")).await;
    broadcast.send(tx(b"y")).await;
    for w in waiters {
        let got = w.await.expect("task");
        assert_eq!(
            (numbers(&got), got.status),
            (vec![4], Some(Status::Success))
        );
    }
}

/// One Deliver stream read as raw frames: each block exactly as its bytes came
/// off the wire, then the closing status.
async fn raw_deliver(
    channel: tonic::transport::Channel,
    request: ordo::fabric::protos::common::Envelope,
) -> (Vec<bytes::Bytes>, Option<i32>) {
    use ordo::fabric::protos::ordo::wire::{deliver_response::Type as Raw, DeliverResponse};
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/orderer.AtomicBroadcast/Deliver");
    let codec =
        tonic_prost::ProstCodec::<ordo::fabric::protos::common::Envelope, DeliverResponse>::default(
        );
    let mut stream = grpc
        .streaming(
            tonic::Request::new(tokio_stream::once(request)),
            path,
            codec,
        )
        .await
        .expect("deliver")
        .into_inner();
    let mut blocks = Vec::new();
    while let Some(item) = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("in time")
    {
        match item.expect("ok").r#type {
            Some(Raw::Block(block)) => blocks.push(block),
            Some(Raw::Status(status)) => return (blocks, Some(status)),
            None => panic!("empty response"),
        }
    }
    (blocks, None)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_streams_at_the_head_receive_identical_bytes_for_each_block() {
    use ordo::fabric::protos::common::Block;
    use ordo::fabric::protos::orderer::{deliver_response, DeliverResponse};
    use prost::Message;

    const STREAMS: usize = 100;
    const FIRST: u64 = 4;
    const LAST: u64 = 8;
    let node = node_with_four_blocks().await;
    let mut connections = Vec::new();
    for _ in 0..4 {
        let endpoint =
            tonic::transport::Endpoint::from_shared(format!("http://{}", node.address()))
                .expect("endpoint");
        connections.push(endpoint.connect().await.expect("connect"));
    }
    let mut followers = Vec::new();
    for i in 0..STREAMS {
        let request = seek(
            CHANNEL,
            Number(FIRST),
            Number(LAST),
            BlockUntilReady,
            SeekContentType::Block,
        );
        let connection = connections[i % connections.len()].clone();
        followers.push(tokio::spawn(raw_deliver(connection, request)));
    }
    deliver_streams_reach(&node, STREAMS as i64).await;
    let mut bc = node.client().await;
    let mut broadcast = BroadcastStream::open(&mut bc).await;
    let envelopes = 2 * (LAST - FIRST + 1);
    for i in 0..envelopes {
        broadcast.send(tx(format!("fan-out {i}").as_bytes())).await;
    }
    for _ in 0..envelopes {
        assert_eq!(
            broadcast.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
    wait_for_height(&node, CHANNEL, LAST + 1).await;

    let channel = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(CHANNEL)
        .expect("channel");
    let store = channel.store();
    let stored: Vec<bytes::Bytes> = (FIRST..=LAST)
        .map(|n| store.block_bytes(n).expect("read").expect("written"))
        .collect();
    for follower in followers {
        let (blocks, status) = follower.await.expect("task");
        assert_eq!(status, Some(Status::Success as i32));
        assert_eq!(
            blocks, stored,
            "every stream got the stored bytes of each block"
        );
    }
    // The frame is the one Fabric's DeliverResponse makes of the same block.
    for raw in &stored {
        let block = Block::decode(raw.clone()).expect("a block");
        let fabric = DeliverResponse {
            r#type: Some(deliver_response::Type::Block(block)),
        };
        let ours = ordo::fabric::protos::ordo::wire::DeliverResponse {
            r#type: Some(
                ordo::fabric::protos::ordo::wire::deliver_response::Type::Block(raw.clone()),
            ),
        };
        assert_eq!(ours.encode_to_vec(), fabric.encode_to_vec());
    }
}

/// A seek with raw positions (`None`: a position message with no type).
fn raw_seek(
    channel: &str,
    start: Option<Position>,
    stop: Option<Position>,
    behavior: SeekBehavior,
    error_response: SeekErrorResponse,
) -> Envelope {
    let info = SeekInfo {
        start: Some(SeekPosition { r#type: start }),
        stop: Some(SeekPosition { r#type: stop }),
        behavior: behavior as i32,
        error_response: error_response as i32,
        content_type: SeekContentType::Block as i32,
    };
    envelope(
        channel,
        HeaderType::DeliverSeekInfo,
        info.encode_to_vec().into(),
    )
}

fn specified(number: u64) -> Option<Position> {
    Some(Position::Specified(SeekSpecified { number }))
}

/// Opens a Deliver stream with one request; the stream stays open.
async fn open_deliver(
    node: &TestNode,
    request: Envelope,
) -> tonic::Streaming<ordo::fabric::protos::orderer::DeliverResponse> {
    let mut c = node.client().await;
    c.deliver(tokio_stream::iter(vec![request]).chain(futures::stream::pending()))
        .await
        .expect("deliver")
        .into_inner()
}

/// The next item of a Deliver stream: a block number, or a status.
async fn next_item(
    stream: &mut tonic::Streaming<ordo::fabric::protos::orderer::DeliverResponse>,
) -> Result<u64, i32> {
    let item = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("in time")
        .expect("an item")
        .expect("ok");
    match item.r#type {
        Some(DeliverItem::Block(b)) => Ok(blockutil::number(&b)),
        Some(DeliverItem::Status(s)) => Err(s),
        None => panic!("empty response"),
    }
}

async fn cut_one_block(node: &TestNode, round: &str) {
    let mut bc = node.client().await;
    let mut broadcast = BroadcastStream::open(&mut bc).await;
    for i in 0..2 {
        broadcast.send(tx(format!("{round} {i}").as_bytes())).await;
    }
    for _ in 0..2 {
        assert_eq!(
            broadcast.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seek_edge_cases_are_answered_as_fabric() {
    let node = node_with_four_blocks().await;
    let mut c = node.client().await;
    let ask =
        |start, stop, behavior| raw_seek(CHANNEL, start, stop, behavior, SeekErrorResponse::Strict);

    // A start above the height is NOT_FOUND at once, even when the request
    // would wait; the height itself is the next block and is waited for.
    for behavior in [BlockUntilReady, FailIfNotReady] {
        let got = deliver_envelope(&mut c, ask(specified(5), specified(9), behavior)).await;
        assert_eq!(
            (numbers(&got), got.status),
            (vec![], Some(Status::NotFound))
        );
    }
    // A start with no position type: NOT_FOUND.
    let got = deliver_envelope(&mut c, ask(None, specified(2), BlockUntilReady)).await;
    assert_eq!(
        (numbers(&got), got.status),
        (vec![], Some(Status::NotFound))
    );
    // Stop Oldest stops at the start block.
    let got = deliver_envelope(
        &mut c,
        ask(
            specified(2),
            Some(Position::Oldest(SeekOldest {})),
            BlockUntilReady,
        ),
    )
    .await;
    assert_eq!(
        (numbers(&got), got.status),
        (vec![2], Some(Status::Success))
    );
    // A stop with no type (or NextCommit) is block 0 to Fabric: from the
    // oldest block, the request ends after block 0.
    let got = deliver_envelope(
        &mut c,
        ask(Some(Position::Oldest(SeekOldest {})), None, BlockUntilReady),
    )
    .await;
    assert_eq!(
        (numbers(&got), got.status),
        (vec![0], Some(Status::Success))
    );
    // Stop below start with a specified stop is still a bad request.
    let got = deliver_envelope(&mut c, ask(specified(3), specified(2), BlockUntilReady)).await;
    assert_eq!(got.status, Some(Status::BadRequest));
    // An empty channel ID names no channel.
    let got = deliver_envelope(
        &mut c,
        raw_seek(
            "",
            Some(Position::Oldest(SeekOldest {})),
            specified(0),
            BlockUntilReady,
            SeekErrorResponse::Strict,
        ),
    )
    .await;
    assert_eq!(got.status, Some(Status::NotFound));

    // Requests that never end: stop Newest below a NextCommit start, stop
    // NextCommit, stop with no type. Each receives the existing blocks and
    // then every new one, with no status in between.
    let requests = [
        ask(
            Some(Position::NextCommit(SeekNextCommit {})),
            Some(Position::Newest(SeekNewest {})),
            BlockUntilReady,
        ),
        ask(
            specified(3),
            Some(Position::NextCommit(SeekNextCommit {})),
            BlockUntilReady,
        ),
        ask(specified(3), None, BlockUntilReady),
    ];
    let mut streams = Vec::new();
    for request in requests {
        streams.push(open_deliver(&node, request).await);
    }
    for stream in streams.iter_mut().skip(1) {
        assert_eq!(next_item(stream).await, Ok(3));
    }
    deliver_streams_reach(&node, 3).await;
    for round in 0..2u64 {
        cut_one_block(&node, &format!("round {round}")).await;
        for stream in streams.iter_mut() {
            assert_eq!(next_item(stream).await, Ok(4 + round));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn best_effort_reads_the_ledger_while_the_consenter_is_down() {
    let mut p = profile(CHANNEL);
    p.consensus_type = "bft-of-the-future".into();
    let node = TestNode::from_profile(&p, vec![]).await;
    let channel = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(CHANNEL)
        .expect("channel");
    let mut states = channel.subscribe_state();
    tokio::time::timeout(
        PATIENCE,
        states.wait_for(|s| matches!(s, ordo::runtime::channel::ChannelState::Errored(_))),
    )
    .await
    .expect("in time")
    .expect("state");
    let mut c = node.client().await;
    let oldest = || Some(Position::Oldest(SeekOldest {}));
    for behavior in [BlockUntilReady, FailIfNotReady] {
        let strict = deliver_envelope(
            &mut c,
            raw_seek(
                CHANNEL,
                oldest(),
                oldest(),
                behavior,
                SeekErrorResponse::Strict,
            ),
        )
        .await;
        assert_eq!(strict.status, Some(Status::ServiceUnavailable));
        let best = deliver_envelope(
            &mut c,
            raw_seek(
                CHANNEL,
                oldest(),
                oldest(),
                behavior,
                SeekErrorResponse::BestEffort,
            ),
        )
        .await;
        assert_eq!(
            (numbers(&best), best.status),
            (vec![0], Some(Status::Success))
        );
    }
    // Past the ledger's end a BEST_EFFORT request with FAIL_IF_NOT_READY
    // answers NOT_FOUND, as for a running channel.
    let past = deliver_envelope(
        &mut c,
        raw_seek(
            CHANNEL,
            oldest(),
            specified(1),
            FailIfNotReady,
            SeekErrorResponse::BestEffort,
        ),
    )
    .await;
    assert_eq!(
        (numbers(&past), past.status),
        (vec![0], Some(Status::NotFound))
    );
}
