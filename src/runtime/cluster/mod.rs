//! The node's cluster service: Fabric's `orderer.Cluster/Step`, which
//! carries Raft messages (`ConsensusRequest`) and submissions a follower
//! forwards to its leader (`SubmitRequest`) between the consenters of the
//! node's etcdraft channels.
//!
//! One [`Cluster`] per node, shared by every channel:
//! - as the chains' [`TransportFactory`], it connects a channel to its other
//!   consenters (`client`): one long-lived Step stream per remote consenter
//!   and channel, opened at the first message and fed from a bounded queue,
//!   so the chain never waits on the network;
//! - as the gRPC service ([`Cluster::service`]), it routes what arrives to
//!   the chain registered for the request's channel (`service`), once the
//!   stream's TLS client certificate has shown which consenter sent it
//!   (`auth`).
//!
//! The service is served on the main listener, or on a listener of its own
//! (`General.Cluster.ListenAddress` and the rest), as in Fabric.

mod auth;
mod client;
mod service;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::fabric::localconfig::{ClusterConfig, GrpcServerSettings};
use crate::fabric::protos::orderer::cluster_server::ClusterServer;
use crate::runtime::consensus::etcdraft::transport::{
    ChainInbox, RaftPeer, RaftTransport, TransportError, TransportFactory,
};

pub use service::ClusterService;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("invalid TLS client material for other orderers (General.Cluster): {0}")]
    ClientTls(String),
    #[error("the cluster service must be made inside a tokio runtime")]
    NoRuntime,
}

/// How long to wait before dialing a consenter again after a failure: from
/// `first`, doubling up to `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    pub first: Duration,
    pub max: Duration,
}

impl Default for Reconnect {
    fn default() -> Self {
        Reconnect {
            first: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// What the node's cluster is made from.
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `General.Cluster` (send buffer, dial timeout, TLS client material).
    pub config: ClusterConfig,
    /// Message size limits and keepalive, as on the node's gRPC server.
    pub grpc: GrpcServerSettings,
    pub reconnect: Reconnect,
}

/// The node's cluster: the transport factory of its etcdraft chains and the
/// `orderer.Cluster` service. Cheap to clone; every clone is the same
/// cluster.
#[derive(Clone)]
pub struct Cluster {
    shared: Arc<Shared>,
}

/// What the outbound and inbound sides share.
struct Shared {
    settings: ClusterSettings,
    /// The node's TLS client identity; `None`: plaintext.
    identity: Option<auth::ClientIdentity>,
    /// The chain of each connected channel.
    channels: RwLock<HashMap<String, Arc<Registration>>>,
    next_generation: AtomicU64,
    /// Where the streams' tasks run: the gRPC runtime, not the chains'
    /// actor threads.
    runtime: tokio::runtime::Handle,
    /// Outbound Step streams open now.
    egress_streams: AtomicUsize,
    /// Messages and forwarded submissions dropped before they were sent.
    dropped: AtomicU64,
}

/// One channel's chain, as `connect` registered it.
struct Registration {
    generation: u64,
    inbox: ChainInbox,
    consenters: auth::Consenters,
}

impl Cluster {
    /// Must be called inside the tokio runtime the streams are to run on.
    pub fn new(settings: ClusterSettings) -> Result<Cluster, ClusterError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| ClusterError::NoRuntime)?;
        let identity = settings
            .config
            .client_tls
            .as_ref()
            .map(auth::ClientIdentity::new)
            .transpose()?;
        Ok(Cluster {
            shared: Arc::new(Shared {
                settings,
                identity,
                channels: RwLock::new(HashMap::new()),
                next_generation: AtomicU64::new(1),
                runtime,
                egress_streams: AtomicUsize::new(0),
                dropped: AtomicU64::new(0),
            }),
        })
    }

    /// The gRPC service, ending its streams at `shutdown`. `authenticate`:
    /// the listener serves TLS, so each stream's sender is known by its
    /// client certificate; without TLS, senders are trusted to say who they
    /// are.
    pub fn service(
        &self,
        authenticate: bool,
        shutdown: CancellationToken,
    ) -> ClusterServer<ClusterService> {
        let grpc = &self.shared.settings.grpc;
        ClusterServer::new(ClusterService::new(
            self.shared.clone(),
            authenticate,
            shutdown,
        ))
        .max_decoding_message_size(grpc.max_recv_msg_size)
        .max_encoding_message_size(grpc.max_send_msg_size)
    }

    /// Outbound Step streams open now.
    pub fn egress_streams(&self) -> usize {
        self.shared.egress_streams.load(Ordering::Relaxed)
    }

    /// Raft messages and forwarded submissions dropped so far because their
    /// consenter's queue was full or it could not be reached.
    pub fn dropped_messages(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Whether a chain is connected for `channel`.
    pub fn is_connected(&self, channel: &str) -> bool {
        self.shared.registration(channel).is_some()
    }
}

impl Shared {
    fn registration(&self, channel: &str) -> Option<Arc<Registration>> {
        self.channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(channel)
            .cloned()
    }

    /// Forgets `channel`'s chain, unless a newer connect replaced it.
    fn unregister(&self, channel: &str, generation: u64) {
        let mut channels = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if channels.get(channel).map(|r| r.generation) == Some(generation) {
            channels.remove(channel);
            tracing::debug!(%channel, "channel disconnected from the cluster");
        }
    }
}

impl TransportFactory for Cluster {
    fn connect(
        &self,
        channel: &str,
        self_id: u64,
        peers: &[RaftPeer],
        inbox: ChainInbox,
    ) -> Result<Box<dyn RaftTransport>, TransportError> {
        let generation = self.shared.next_generation.fetch_add(1, Ordering::Relaxed);
        // Built before it is registered, so a failure leaves the old chain's
        // registration in place.
        let transport = client::ChannelTransport::start(
            self.shared.clone(),
            channel,
            generation,
            self_id,
            peers,
            inbox.events.clone(),
        )?;
        let registration = Arc::new(Registration {
            generation,
            inbox,
            consenters: auth::Consenters::of(channel, peers),
        });
        let replaced = self
            .shared
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(channel.to_string(), registration)
            .is_some();
        tracing::info!(%channel, self_id, consenters = peers.len(), replaced, "channel connected to the cluster");
        Ok(Box::new(transport))
    }
}
