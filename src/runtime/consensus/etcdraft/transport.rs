//! What the etcdraft chain needs from the network: send Raft messages to the
//! other consenters of its channel, forward submissions to the leader, and
//! receive both from them. Fabric's `orderer.Cluster/Step` carries them
//! between processes (`crate::runtime::cluster`); deterministic tests wire
//! chains in one process through an in-memory network instead (`testing`).
//!
//! The chain never waits on the network: `send` queues and returns at once
//! (a full queue drops the message and reports the peer unreachable), and a
//! forwarded submission is answered by a future the chain does not block on.

use std::sync::Arc;

use actix::prelude::*;
use futures::future::BoxFuture;

use crate::fabric::protos::orderer::SubmitRequest;
use crate::runtime::consensus::SubmitError;

/// One consenter of a channel, as the channel's config names it, with the
/// Raft id this channel gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftPeer {
    pub id: u64,
    pub host: String,
    pub port: u32,
    /// PEM, as in the config: what the consenter presents as a TLS client.
    pub client_tls_cert: Vec<u8>,
    /// PEM, as in the config: what the consenter's listener presents.
    pub server_tls_cert: Vec<u8>,
}

impl RaftPeer {
    pub fn endpoint(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// A Raft message from another consenter of the channel (Fabric's
/// `ConsensusRequest`), already authenticated as coming from `from`.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Step {
    pub from: u64,
    pub message: raft::eraftpb::Message,
}

/// A submission a follower forwarded to this node (Fabric's
/// `SubmitRequest`). Answered once this node, as leader, admitted it (or
/// refused it); the transport sends the answer back as a `SubmitResponse`.
#[derive(Message)]
#[rtype(result = "Result<(), SubmitError>")]
pub struct ForwardedSubmit {
    pub from: u64,
    pub request: SubmitRequest,
}

/// What the transport tells the chain about its peers.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum TransportEvent {
    /// A message to this peer was dropped (queue full, stream broken,
    /// connection refused): Raft slows down its replication to it.
    Unreachable(u64),
}

/// Where the transport delivers what arrives for one channel's chain.
#[derive(Clone)]
pub struct ChainInbox {
    pub step: Recipient<Step>,
    pub submit: Recipient<ForwardedSubmit>,
    pub events: Recipient<TransportEvent>,
}

/// One chain's view of the network. Dropping it closes its streams and
/// stops delivering to its inbox.
pub trait RaftTransport: Send + 'static {
    /// Queues `message` for `message.to`; never waits. A message that cannot
    /// be queued is dropped and its peer reported unreachable through
    /// [`ChainInbox::events`].
    fn send(&self, message: raft::eraftpb::Message);

    /// Forwards a submission to the consenter `leader`. Resolves when the
    /// leader answered: `Ok` once it admitted the envelope, its refusal
    /// otherwise, `Unavailable` if the leader could not be reached or the
    /// stream broke before it answered.
    fn forward(
        &self,
        leader: u64,
        request: SubmitRequest,
    ) -> BoxFuture<'static, Result<(), SubmitError>>;
}

/// Errors of connecting a chain to the network.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("channel {0} is already connected to the cluster")]
    AlreadyConnected(String),
    #[error("cluster transport: {0}")]
    Other(String),
}

/// Connects a channel's chain to the other consenters of the channel. One
/// per node (the gRPC cluster service), or one per in-memory test network.
pub trait TransportFactory: Send + Sync + 'static {
    /// Routes what arrives for `channel` from the members of `peers` to
    /// `inbox`, and returns the chain's outbound side. `peers` holds every
    /// consenter of the channel, this node (`self_id`) included. A second
    /// connect for the same channel replaces the first (a restarted chain).
    fn connect(
        &self,
        channel: &str,
        self_id: u64,
        peers: &[RaftPeer],
        inbox: ChainInbox,
    ) -> Result<Box<dyn RaftTransport>, TransportError>;
}

/// A factory for nodes that have no cluster (no etcdraft channel can start).
pub struct NoCluster;

impl TransportFactory for NoCluster {
    fn connect(
        &self,
        channel: &str,
        _: u64,
        _: &[RaftPeer],
        _: ChainInbox,
    ) -> Result<Box<dyn RaftTransport>, TransportError> {
        Err(TransportError::Other(format!(
            "this node has no cluster service; channel {channel} cannot run etcdraft"
        )))
    }
}

/// Shared handle to a node's transport factory.
pub type SharedTransportFactory = Arc<dyn TransportFactory>;
