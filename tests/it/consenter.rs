//! A consenter defined here, outside the node's code, registered with the
//! node and ordering blocks through gRPC: the extension point is real. It
//! cuts one block per envelope, and panics on a poisoned envelope, which
//! proves that a panic in one channel's chain restarts that channel alone.

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio_stream::wrappers::WatchStream;

use crate::common::*;
use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::protos::common::{Envelope, Payload, Status};
use ordo::runtime::channel::tree::ChildGuard;
use ordo::runtime::channel::ChannelState;
use ordo::runtime::consensus::{
    Abort, BlockCreator, ChainHandle, ChainStatus, ChainSupport, Configure, Consenter, Consenters,
    Halt, NodeResources, PermitsByBlock, StartChain, Submit, SubmitError,
};
use ordo::runtime::ledger::LedgerHandle;
use ordo::tools::client::envelope::transaction;
use prost::Message as _;

const ONE_EACH: &str = "one-block-each";
const POISON: &[u8] = b"poison";

struct OneBlockEachConsenter;

impl Consenter for OneBlockEachConsenter {
    fn consensus_type(&self) -> &'static str {
        ONE_EACH
    }

    fn start_chain(&self, support: ChainSupport, node: Arc<NodeResources>) -> StartChain {
        support.status.publish(ChainStatus::sole_leader());
        let chain = OneBlockEach {
            creator: BlockCreator::new(&support.tip, node.signer.clone()),
            ledger: support.ledger,
            permits: PermitsByBlock::default(),
            height: support.store.subscribe(),
            _guard: support.tree.member("chain"),
        };
        let addr = chain.start();
        Box::pin(async move { Ok(ChainHandle::of(&addr)) })
    }
}

/// The chain actor: every envelope is a block.
struct OneBlockEach {
    creator: BlockCreator,
    ledger: LedgerHandle,
    permits: PermitsByBlock,
    height: tokio::sync::watch::Receiver<u64>,
    /// Tells the supervisor when this actor is gone (a panic included).
    _guard: ChildGuard,
}

impl Actor for OneBlockEach {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::new(self.height.clone()));
    }
}

impl StreamHandler<u64> for OneBlockEach {
    fn handle(&mut self, height: u64, _: &mut Context<Self>) {
        self.permits.release_below(height);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

fn data_of(envelope: &Bytes) -> Bytes {
    Envelope::decode(envelope.clone())
        .ok()
        .and_then(|e| Payload::decode(e.payload).ok())
        .map(|p| p.data)
        .unwrap_or_default()
}

ordo::counted_handlers!(OneBlockEach: Submit, Configure);

impl Handler<Submit> for OneBlockEach {
    type Result = Result<(), SubmitError>;

    fn handle(&mut self, mut msg: Submit, _: &mut Context<Self>) -> Self::Result {
        for message in msg.messages {
            if data_of(&message.envelope) == POISON {
                panic!("a poisoned envelope");
            }
            let number = self.creator.next_number();
            let room = msg.permit.split(1, message.envelope.len());
            let block = self
                .creator
                .create_next_block(vec![message.envelope], false, Bytes::new())
                .map_err(|e| SubmitError::Unavailable(e.to_string()))?;
            self.permits.hold(number, room);
            self.ledger
                .append(block, vec![msg.received])
                .map_err(|gone| SubmitError::Unavailable(gone.to_string()))?;
        }
        Ok(())
    }
}

impl Handler<Configure> for OneBlockEach {
    type Result = Result<(), SubmitError>;

    fn handle(&mut self, _: Configure, _: &mut Context<Self>) -> Self::Result {
        Err(SubmitError::Invalid(
            "this consenter takes no config updates".into(),
        ))
    }
}

impl Handler<Halt> for OneBlockEach {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Halt, _: &mut Context<Self>) -> Self::Result {
        let ledger = self.ledger.clone();
        let durable = async move { ledger.wait_durable().await };
        Box::pin(durable.into_actor(self).map(|_, _, ctx| ctx.stop()))
    }
}

impl Handler<Abort> for OneBlockEach {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

async fn node_with_one_block_each() -> TestNode {
    let mut consenters = Consenters::standard();
    consenters.register(OneBlockEachConsenter);
    TestNode::with_consenters(consenters).await
}

async fn join_one_block_each(node: &TestNode, channel: &str) {
    let mut profile = GenesisProfile::embedded(channel, vec![]);
    profile.consensus_type = ONE_EACH.into();
    let joined = node
        .admin()
        .join(profile.genesis_block().encode_to_vec())
        .await
        .expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.json()["status"], "active");
}

async fn broadcast_all(node: &TestNode, channel: &str, payloads: &[&str]) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for p in payloads {
        stream
            .send(transaction(channel, Bytes::copy_from_slice(p.as_bytes())))
            .await;
    }
    for _ in payloads {
        let answer = stream.next().await.expect("answer");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consenter_defined_outside_the_node_orders_blocks() {
    let node = node_with_one_block_each().await;
    join_one_block_each(&node, "each").await;
    broadcast_all(&node, "each", &["a", "b", "c", "d", "e"]).await;
    let blocks = wait_for_transactions(&node, "each", 5).await;
    verify_chain(&blocks);
    assert_eq!(blocks.len(), 6, "genesis and one block per envelope");
    assert!(blocks
        .iter()
        .skip(1)
        .all(|b| ordo::fabric::blockutil::entries(b).len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_one_channels_chain_restarts_it_and_spares_the_others() {
    let node = node_with_one_block_each().await;
    join_one_block_each(&node, "each").await;
    broadcast_all(&node, "each", &["before"]).await;
    wait_for_transactions(&node, "each", 1).await;

    // The poisoned envelope panics the chain inside its handler.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(transaction("each", Bytes::from_static(POISON)))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(
        answer.status,
        Status::ServiceUnavailable as i32,
        "{}",
        answer.info
    );

    // The solo channel on the same node keeps ordering, and the node is up.
    let registrar = node.node.as_ref().expect("running").registrar().clone();
    let mut client = node.client().await;
    let mut solo = BroadcastStream::open(&mut client).await;
    solo.send(tx(b"unaffected")).await;
    assert_eq!(
        solo.next().await.expect("answer").status,
        Status::Success as i32
    );
    wait_for_transactions(&node, CHANNEL, 1).await;
    assert_eq!(registrar.channel(CHANNEL).expect("solo").restarts(), 0);

    // The failed channel is restarted by its supervisor and its chain goes on.
    let each = registrar.channel("each").expect("channel");
    let mut states = each.subscribe_state();
    tokio::time::timeout(
        PATIENCE,
        states.wait_for(|s| *s == ChannelState::Active && each.restarts() == 1),
    )
    .await
    .expect("restarted in time")
    .expect("state watch");
    broadcast_all(&node, "each", &["after"]).await;
    let blocks = wait_for_transactions(&node, "each", 2).await;
    verify_chain(&blocks);
    assert_eq!(blocks.len(), 3);
}
