//! Consenters and the chain interface they share.
//!
//! A consenter is a factory: given a channel's [`ChainSupport`] (its config
//! watch, ledger, chain tip, status watch, tree membership) and the node-wide
//! [`NodeResources`], it starts the channel's ChainActor (and whatever helpers
//! it needs) and returns a [`ChainHandle`]. Broadcast talks to every chain
//! through that handle alone, so adding a consenter is one module plus one
//! [`Consenters::register`] call (see `actors.md`, "Adding a consenter").

mod blockcreator;
pub mod etcdraft;
pub mod inflight;
pub mod kafka;
mod resources;
pub mod revalidation;
pub mod solo;
mod status;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::LocalBoxFuture;
use tokio::sync::watch;

pub use blockcreator::{BlockCreator, NextBlock};
pub use inflight::{InflightPermit, InflightRoom, PermitsByBlock};
pub use resources::{BlockPullerFactory, NodeIdentity, NodeResources};
pub use status::{ChainRole, ChainStatus, ConsensusRelation, ParticipationStatus, StatusPublisher};

use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::PolicyEvaluator;
use crate::runtime::blockcutter::OrderedMessage;
use crate::runtime::channel::mailbox::{Counted, Mailbox};
use crate::runtime::channel::tree::{FailureReporter, TreeMembership};
use crate::runtime::ledger::{BlockStore, ChainTip, LedgerHandle};
use crate::runtime::metrics::ChannelMetrics;
use crate::runtime::msgprocessor::RuleSet;

/// Order these normal messages (Fabric's `Order(env, configSeq)`), in this order.
/// `Ok` means the consenter accepted them: Broadcast answers SUCCESS.
#[derive(Message)]
#[rtype(result = "Result<(), SubmitError>")]
pub struct Submit {
    pub messages: Vec<OrderedMessage>,
    /// The config sequence the messages were validated at; older ones are re-validated.
    pub config_seq: u64,
    /// The messages' in-flight room, released once the ledger height passes
    /// the block that holds them.
    pub permit: InflightPermit,
    /// When Broadcast read the messages.
    pub received: Instant,
}

/// Order one config message (Fabric's `Configure(config, configSeq)`): a CONFIG
/// envelope made from a validated config update, written as a block of its own.
/// The new config applies to every message ordered after it.
///
/// On a system channel the message may also be an ORDERER_TRANSACTION (a
/// channel creation). It gets a block of its own too, but `config` is then
/// the system channel's current config (same sequence) and nothing waits for
/// the config to move: whether a block is a config block (LAST_CONFIG names
/// it) is decided by the envelope's header type, CONFIG only. A config that
/// moved on before ordering is handled by [`revalidation::recheck_config`],
/// which checks either kind again.
#[derive(Message)]
#[rtype(result = "Result<(), SubmitError>")]
pub struct Configure {
    /// The CONFIG envelope.
    pub message: OrderedMessage,
    /// The config sequence the update was validated at; if the config moved on,
    /// the chain checks the update again against the current config.
    pub config_seq: u64,
    /// The config the envelope makes.
    pub config: Arc<ChannelConfig>,
    pub permit: InflightPermit,
    pub received: Instant,
}

/// Stop accepting, write what was accepted, then stop. Answered when durable.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Halt;

/// Stop at once, without writing pending messages (the ledger has failed).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Abort;

/// Why a chain did not accept a submission.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SubmitError {
    /// Not now (halting, no leader, backend lost): SERVICE_UNAVAILABLE.
    #[error("{0}")]
    Unavailable(String),
    /// No longer valid under the current config: BAD_REQUEST.
    #[error("{0}")]
    Invalid(String),
}

/// The answer to a submission a chain admits later: what the chain sends
/// on `answer`, or Unavailable if it stops first.
pub(crate) fn answer_later(
    answer: tokio::sync::oneshot::Receiver<Result<(), SubmitError>>,
) -> Response<Result<(), SubmitError>> {
    Response::fut(async move {
        answer.await.unwrap_or_else(|_| {
            Err(SubmitError::Unavailable(
                "the chain stopped before admitting the submission".into(),
            ))
        })
    })
}

/// How the rest of the node reaches a running chain.
#[derive(Clone)]
pub struct ChainHandle {
    pub submit: Mailbox<Submit>,
    pub configure: Mailbox<Configure>,
    pub halt: Recipient<Halt>,
    pub abort: Recipient<Abort>,
    /// Set by the supervisor: where a caller reports the chain unreachable.
    reporter: Option<FailureReporter>,
    /// The chain actor itself, for fault injection in tests.
    #[cfg(test)]
    pub(crate) actor: Option<Arc<dyn std::any::Any + Send + Sync>>,
}

impl ChainHandle {
    /// The mailboxes of one chain actor that handles all four messages
    /// (`counted_handlers!(MyChain: Submit, Configure)` for the first two).
    pub fn of<A>(addr: &Addr<A>) -> ChainHandle
    where
        A: Actor<Context = Context<A>>
            + Handler<Counted<Submit>>
            + Handler<Counted<Configure>>
            + Handler<Halt>
            + Handler<Abort>,
    {
        let uncounted = crate::runtime::metrics::ActorMetrics::default();
        ChainHandle {
            submit: Mailbox::of(addr, &uncounted),
            configure: Mailbox::of(addr, &uncounted),
            halt: addr.clone().recipient(),
            abort: addr.clone().recipient(),
            reporter: None,
            #[cfg(test)]
            actor: Some(Arc::new(addr.clone())),
        }
    }

    /// The handle as the supervisor publishes it: failures seen by callers
    /// go to the generation that started the chain, and its mailbox is
    /// counted in the channel's metrics.
    pub(crate) fn supervised(
        mut self,
        reporter: FailureReporter,
        metrics: &ChannelMetrics,
    ) -> ChainHandle {
        self.reporter = Some(reporter);
        self.submit = self.submit.counted_in(&metrics.chain);
        self.configure = self.configure.counted_in(&metrics.chain);
        self
    }

    /// A caller found the chain's mailbox closed: what it sent never arrived.
    /// The supervisor restarts the tree; the channel does not stay active
    /// with nothing running.
    pub fn report_unreachable(&self, what: &str) {
        if let Some(reporter) = &self.reporter {
            reporter.report(
                "chain",
                format!("the chain's mailbox is closed ({what} could not be delivered)"),
            );
        }
    }
}

/// Everything a consenter gets to start a channel's chain.
pub struct ChainSupport {
    pub channel_id: String,
    /// The channel's config as the ledger last wrote it. Only the LedgerActor
    /// moves it, when it writes a config block (before the block is served):
    /// a chain that orders a config message waits for it here.
    pub config: watch::Receiver<Arc<ChannelConfig>>,
    /// What the next block builds on, as read from the ledger.
    pub tip: ChainTip,
    /// Reads of the channel's blocks, and the height watch that releases
    /// in-flight room ([`PermitsByBlock`]).
    pub store: BlockStore,
    /// The channel's single block writer: append blocks that continue the chain.
    pub ledger: LedgerHandle,
    /// The channel's Broadcast filters, to re-validate messages after a config change.
    pub filters: Arc<RuleSet>,
    /// Checks config updates again when the config moved on before ordering.
    pub policies: Arc<dyn PolicyEvaluator>,
    /// The channel's metrics (mailbox depths, blocks in flight).
    pub metrics: Arc<ChannelMetrics>,
    /// The channel's in-flight room, for submissions that arrive other than
    /// through Broadcast (forwarded by another consenter).
    pub room: InflightRoom,
    /// Where the chain publishes its role, leader and status.
    pub status: StatusPublisher,
    /// This generation of the channel's tree: each actor the consenter starts
    /// holds a [`crate::runtime::channel::tree::ChildGuard`] from it, and reports
    /// failures through it.
    pub tree: TreeMembership,
    /// Where the consenter reports a failed write of its own storage (the
    /// Raft WAL): the channel then acknowledges nothing more until it
    /// takes writes again.
    pub faults: crate::runtime::channel::fault::WriteFaults,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsensusError {
    #[error("consensus type {0:?} is not supported by this node (supported: {1})")]
    Unsupported(String, String),
    #[error("cannot start the {consensus_type} chain: {reason}")]
    Start {
        consensus_type: String,
        reason: String,
    },
}

/// A factory of chains for one consensus type.
pub trait Consenter: Send + Sync + 'static {
    /// The `ConsensusType.type` this consenter serves ("solo", "etcdraft", ...).
    fn consensus_type(&self) -> &'static str;

    /// Starts the chain's actors. Called, and the future polled, on the
    /// channel's arbiter: actors started here run there.
    fn start_chain(&self, support: ChainSupport, node: Arc<NodeResources>) -> StartChain;
}

/// Starting a chain may take a while (opening a WAL, finding the leader).
pub type StartChain = LocalBoxFuture<'static, Result<ChainHandle, ConsensusError>>;

/// The consenters of this node, by consensus type.
#[derive(Clone)]
pub struct Consenters {
    by_type: HashMap<&'static str, Arc<dyn Consenter>>,
}

impl Consenters {
    /// No consenter at all.
    pub fn empty() -> Consenters {
        Consenters {
            by_type: HashMap::new(),
        }
    }

    /// Every consenter built into Ordo.
    pub fn standard() -> Consenters {
        let mut consenters = Consenters::empty();
        consenters.register(solo::SoloConsenter);
        consenters.register(etcdraft::EtcdRaftConsenter);
        consenters.register(kafka::KafkaConsenter);
        consenters
    }

    pub fn register(&mut self, consenter: impl Consenter) {
        self.by_type
            .insert(consenter.consensus_type(), Arc::new(consenter));
    }

    pub fn get(&self, consensus_type: &str) -> Result<Arc<dyn Consenter>, ConsensusError> {
        self.by_type.get(consensus_type).cloned().ok_or_else(|| {
            let mut names: Vec<&str> = self.by_type.keys().copied().collect();
            names.sort_unstable();
            ConsensusError::Unsupported(consensus_type.into(), names.join(", "))
        })
    }
}
