//! The etcdraft ChainActor: owns the channel's Raft node (a raft-rs
//! `RawNode`) and plays Fabric's chain loop on its mailbox.
//!
//! Mailbox (all in this file):
//! - [`Submit`] / [`Configure`] (from Broadcast): on the leader, admitted in
//!   order to the ProposerActor's cutter and answered once there (SUCCESS);
//!   held while the leader does not admit (just elected and its log not yet
//!   applied, a config block in flight, MaxInflightBlocks blocks in flight):
//!   holding the answer is the backpressure. On a follower, forwarded to the
//!   leader over the cluster and answered with the leader's answer. With no
//!   leader (or as a candidate): SERVICE_UNAVAILABLE "no Raft leader".
//! - [`ForwardedSubmit`] (from a follower, through the transport): as a
//!   local submission, after taking in-flight room here.
//! - [`Step`] (from the transport): a Raft message from another consenter.
//! - [`TransportEvent`] (from the transport): a peer is unreachable.
//! - [`Propose`] (from the ProposerActor): propose the block to Raft; the
//!   block is in flight until an entry at its index is applied.
//! - `Tick` (from the chain's own timer on the injected clock): Raft's tick.
//! - [`Halt`] / [`Abort`] (from the ChannelSupervisor).
//! - Streams: the ledger height (releases room, and lets a new leader start
//!   proposing) and the config watch (ends a config in flight).
//!
//! The Ready loop: take a `Ready`; publish soft-state changes (becomeLeader,
//! becomeFollower); send the messages that may go before persisting (a
//! leader's appends); hand committed entries to the block writer; persist
//! entries and hard state on the blocking pool with the WAL (one `Ready` at
//! a time: Raft keeps taking messages and proposals meanwhile, and the next
//! `Ready` carries them all, so disk syncs are grouped); only then send the
//! messages that needed them durable; advance.
//!
//! Applying: an entry at an index at or below the last applied one is
//! skipped (never a block twice); a block entry gets the etcdraft
//! `BlockMetadata` (consenter ids, next id, its Raft index) and this node's
//! signature, off the actor thread and in order, then goes to the
//! LedgerActor. The LedgerActor moves the config when it writes a config
//! block.
//!
//! Nothing answered SUCCESS is dropped while this node lives: when it stops
//! being leader, the proposer's pending batch comes back and blocks it
//! proposed that Raft did not commit (another block took their index, or a
//! later term's entry passed them) are found when entries are applied; their
//! envelopes are sent on to the new leader (or admitted again here, if this
//! node leads again).

use std::collections::{BTreeMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use raft::eraftpb::{Entry, EntryType};
use raft::{RawNode, StateRole};
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::WatchStream;

use super::membership::Membership;
use super::options::RaftOptions;
use super::proposer::{Propose, ProposerHandle, ProposerOwner, ProposerStopped};
use super::storage::{PersistBatch, RaftStorage, StorageError};
use super::transport::{ForwardedSubmit, RaftTransport, Step, TransportEvent};
use crate::fabric::blockutil;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::PolicyEvaluator;
use crate::fabric::protos::common::{Block, ChannelHeader, Envelope, HeaderType, Payload};
use crate::fabric::protos::orderer::SubmitRequest;
use crate::runtime::blockcutter::{Ordered, OrderedConfig, OrderedMessage};
use crate::runtime::channel::fault::{ProbePoints, WriteFaults};
use crate::runtime::channel::mailbox::Mailbox;
use crate::runtime::channel::tree::{ChildGuard, TreeMembership};
use crate::runtime::clock::Clock;
use crate::runtime::consensus::revalidation::{recheck_config, revalidate};
use crate::runtime::consensus::{
    answer_later, Abort, BlockCreator, ChainRole, ChainStatus, Configure, ConsensusRelation, Halt,
    InflightPermit, InflightRoom, ParticipationStatus, PermitsByBlock, StatusPublisher, Submit,
    SubmitError,
};
use crate::runtime::faults::points;
use crate::runtime::ledger::{BlockStore, LedgerHandle};
use crate::runtime::metrics::ChannelMetrics;
use crate::runtime::msgprocessor::RuleSet;
use crate::security::signer::SigningIdentity;

type Answer = oneshot::Sender<Result<(), SubmitError>>;

/// What the chain is given at start (see `EtcdRaftConsenter`).
pub struct RaftChainParts {
    pub channel_id: String,
    pub id: u64,
    pub node: RawNode<RaftStorage>,
    pub storage: RaftStorage,
    pub options: RaftOptions,
    pub membership: Membership,
    pub config: watch::Receiver<Arc<ChannelConfig>>,
    pub store: BlockStore,
    pub ledger: LedgerHandle,
    pub filters: Arc<RuleSet>,
    pub policies: Arc<dyn PolicyEvaluator>,
    pub metrics: Arc<ChannelMetrics>,
    pub status: StatusPublisher,
    pub room: InflightRoom,
    pub signer: Arc<SigningIdentity>,
    pub clock: Clock,
    pub tree: TreeMembership,
    /// Where a failed WAL write is reported, and the WAL's folder.
    pub faults: WriteFaults,
    pub wal_dir: PathBuf,
}

/// Whether a WAL error is the disk refusing a write (the channel waits for
/// it to take writes again) rather than damage or a bug.
pub fn is_write_fault(error: &StorageError) -> bool {
    matches!(error, StorageError::Io { .. } | StorageError::Failed { .. })
}

/// What a check of the WAL's folder passes through after a fault.
pub const WAL_PROBE: ProbePoints = ProbePoints {
    write: points::RAFT_WAL_WRITE,
    sync: points::RAFT_WAL_SYNC,
};

/// Raft's clock: one tick.
#[derive(Message)]
#[rtype(result = "()")]
struct Tick;

/// Whether a submission is a normal message or a config message.
enum Kind {
    Normal,
    /// A CONFIG envelope; the config it makes, when already known at the
    /// submission's sequence (`None`: work it out again, as for a forwarded
    /// or re-sent config message).
    Config(Option<Arc<ChannelConfig>>),
}

/// A submission the leader has not admitted yet.
struct Admission {
    messages: Vec<OrderedMessage>,
    config_seq: u64,
    kind: Kind,
    permit: InflightPermit,
    received: Instant,
    /// Who waits for the answer; `None` for envelopes already answered
    /// SUCCESS that come back after a leadership change.
    answer: Option<Answer>,
}

/// A block this node proposed, until an entry at its index is applied.
struct Proposal {
    term: u64,
    number: u64,
    data_hash: Bytes,
    envelopes: Vec<Bytes>,
    is_config: bool,
    config_seq: u64,
}

/// Envelopes answered SUCCESS that must still reach a leader.
struct Resend {
    messages: Vec<OrderedMessage>,
    config_seq: u64,
    is_config: bool,
    permit: InflightPermit,
}

/// What a leader holds.
struct Leadership {
    term: u64,
    /// The last index of the log when this node became leader: it proposes
    /// nothing until every entry up to it is applied.
    election_index: u64,
    /// Runs once the leader is ready to propose.
    proposer: Option<ProposerHandle>,
}

pub struct RaftChain {
    /// Raised at the first failed WAL write: nothing more is acknowledged.
    faults: WriteFaults,
    wal_dir: PathBuf,
    channel_id: String,
    id: u64,
    node: RawNode<RaftStorage>,
    storage: RaftStorage,
    transport: Box<dyn RaftTransport>,
    options: RaftOptions,
    membership: Membership,
    config: watch::Receiver<Arc<ChannelConfig>>,
    store: BlockStore,
    ledger: LedgerHandle,
    filters: Arc<RuleSet>,
    policies: Arc<dyn PolicyEvaluator>,
    metrics: Arc<ChannelMetrics>,
    status: StatusPublisher,
    room: InflightRoom,
    signer: Arc<SigningIdentity>,
    clock: Clock,
    tree: TreeMembership,
    guard: ChildGuard,
    height: watch::Receiver<u64>,

    // Raft.
    role: ChainRole,
    leader: Option<u64>,
    /// A `Ready` is being persisted: the next one waits.
    persisting: bool,
    /// The commit index moved without a hard state to persist it with.
    commit_unpersisted: bool,
    /// What arrived for Raft while a `Ready` was being persisted: raft-rs
    /// takes nothing between `ready` and `advance` (no message, tick or
    /// proposal), so they are handed to it right after, together.
    deferred: Vec<Deferred>,

    // Applying.
    /// The last Raft index handed to the block writer (or skipped).
    applied_index: u64,
    /// The number the next applied block must have.
    next_number: u64,
    /// Blocks to sign and write, with their Raft index, in order.
    to_write: VecDeque<(u64, Block)>,
    writing: bool,

    // Leading.
    leadership: Option<Leadership>,
    /// Blocks this node proposed, by Raft index.
    proposals: BTreeMap<u64, Proposal>,
    /// Envelopes (and their bytes) admitted to the cutter and not yet back
    /// as a proposed block: the blocks they will make count as in flight
    /// too, as in Fabric, where the cutter runs inside admission.
    uncut_envelopes: usize,
    uncut_bytes: usize,
    permits: PermitsByBlock,
    config_in_flight: Option<u64>,
    revalidating: bool,
    waiting: VecDeque<Admission>,

    // Sending on.
    resend: VecDeque<Resend>,
    resending: bool,

    halt_waiters: Option<Vec<oneshot::Sender<()>>>,
    /// Proposers told to stop that have not handed everything back yet.
    draining_proposers: usize,
    /// A halt waits this long for what was proposed to commit.
    halt_grace_over: bool,
}

/// How long a halt waits for blocks already proposed to be committed and
/// written (a leader without a quorum cannot commit them).
const HALT_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

impl RaftChain {
    pub fn new(
        parts: RaftChainParts,
        transport: Box<dyn RaftTransport>,
        ctx: &mut Context<Self>,
    ) -> RaftChain {
        let _ = ctx;
        let next_number = parts.store.height();
        let applied_index = parts.membership.applied_index;
        RaftChain {
            channel_id: parts.channel_id,
            id: parts.id,
            node: parts.node,
            storage: parts.storage,
            transport,
            options: parts.options,
            membership: parts.membership,
            config: parts.config,
            height: parts.store.subscribe(),
            store: parts.store,
            ledger: parts.ledger,
            filters: parts.filters,
            policies: parts.policies,
            metrics: parts.metrics,
            status: parts.status,
            room: parts.room,
            signer: parts.signer,
            clock: parts.clock,
            guard: parts.tree.member("chain"),
            tree: parts.tree,
            faults: parts.faults,
            wal_dir: parts.wal_dir,
            role: ChainRole::Follower,
            leader: None,
            persisting: false,
            commit_unpersisted: false,
            deferred: Vec::new(),
            applied_index,
            next_number,
            to_write: VecDeque::new(),
            writing: false,
            leadership: None,
            proposals: BTreeMap::new(),
            uncut_envelopes: 0,
            uncut_bytes: 0,
            permits: PermitsByBlock::default(),
            config_in_flight: None,
            revalidating: false,
            waiting: VecDeque::new(),
            resend: VecDeque::new(),
            resending: false,
            halt_waiters: None,
            draining_proposers: 0,
            halt_grace_over: false,
        }
    }

    fn halting(&self) -> bool {
        self.halt_waiters.is_some()
    }

    fn publish_status(&self) {
        self.status.publish(ChainStatus {
            role: self.role,
            leader: self.leader,
            relation: ConsensusRelation::Consenter,
            status: ParticipationStatus::Active,
            errored: None,
        });
        let leading = i64::from(self.role == ChainRole::Leader);
        self.metrics.is_leader.set(leading);
        self.metrics.etcdraft.is_leader.set(leading);
    }

    /// The chain cannot go on: its supervisor restarts the tree from disk.
    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::error!(channel = %self.channel_id, %reason, "etcdraft chain cannot go on");
        self.guard.report_failure(reason);
        self.halt_waiters.get_or_insert_with(Vec::new);
        ctx.stop();
    }

    fn schedule_tick(&self, ctx: &mut Context<Self>) {
        let sleep = self.clock.sleep(self.options.tick_interval);
        ctx.spawn(sleep.into_actor(self).map(|(), act, ctx| {
            if let Err(gone) = ctx.address().try_send(Tick) {
                tracing::debug!(channel = %act.channel_id, error = %gone, "tick not delivered");
            }
            act.schedule_tick(ctx);
        }));
    }

    // ---- The Ready loop ----

    /// Handles the next `Ready`, if Raft has one and none is being persisted.
    fn drive(&mut self, ctx: &mut Context<Self>) {
        if self.persisting || !self.node.has_ready() {
            return;
        }
        let mut ready = self.node.ready();
        if let Some(soft) = ready.ss() {
            let (leader, role) = (soft.leader_id, soft.raft_state);
            self.soft_state_changed(leader, role, ctx);
        }
        self.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            tracing::warn!(channel = %self.channel_id, "a Raft snapshot arrived; catching up from snapshots is not supported yet");
        }
        let committed = ready.take_committed_entries();
        self.apply(committed, ctx);
        let entries = ready.take_entries();
        let mut hard_state = ready.hs().cloned();
        if entries.is_empty() && !ready.must_sync() && hard_state.is_some() {
            // Only the commit index moved (etcd's MustSync rule): it needs no
            // sync of its own and is written with the next entries.
            hard_state = None;
            self.commit_unpersisted = true;
        }
        if hard_state.is_none() && self.commit_unpersisted && !entries.is_empty() {
            hard_state = Some(self.node.raft.hard_state());
        }
        let persisted_messages = ready.take_persisted_messages();
        if entries.is_empty() && hard_state.is_none() {
            self.send(persisted_messages);
            self.advance(ready, ctx);
            return;
        }
        if hard_state.is_some() {
            self.commit_unpersisted = false;
        }
        self.persisting = true;
        let storage = self.storage.clone();
        let token = self.tree.token();
        let started = Instant::now();
        let faults = self.faults.clone();
        let wal_dir = self.wal_dir.clone();
        let persist = tokio::task::spawn_blocking(move || {
            let _token = token;
            let persisted = storage.persist(PersistBatch {
                entries,
                hard_state,
            });
            // Raised here, before the actor hears of it, so Broadcast stops
            // acknowledging at once.
            if let Err(e) = &persisted {
                if is_write_fault(e) {
                    faults.raise(format!("Raft WAL: {e}"), &wal_dir, WAL_PROBE);
                }
            }
            persisted
        });
        ctx.spawn(persist.into_actor(self).map(move |persisted, act, ctx| {
            act.persisting = false;
            match persisted {
                Ok(Ok(())) => {}
                Ok(Err(e)) => return act.fail(format!("Raft storage: {e}"), ctx),
                Err(e) => return act.fail(format!("Raft storage task: {e}"), ctx),
            }
            act.metrics
                .etcdraft
                .data_persist_duration
                .observe(started.elapsed().as_secs_f64());
            act.send(persisted_messages);
            act.advance(ready, ctx);
            act.run_deferred(ctx);
            act.drive(ctx);
        }));
    }

    fn advance(&mut self, ready: raft::Ready, ctx: &mut Context<Self>) {
        let mut light = self.node.advance(ready);
        if light.commit_index().is_some() {
            // Persisted with the next hard state; after a crash before that,
            // Raft replays from the older commit and applied entries are skipped.
            self.commit_unpersisted = true;
        }
        self.send(light.take_messages());
        let committed = light.take_committed_entries();
        self.apply(committed, ctx);
        self.node.advance_apply();
    }

    fn run_deferred(&mut self, ctx: &mut Context<Self>) {
        for input in std::mem::take(&mut self.deferred) {
            match input {
                Deferred::Tick => self.tick(),
                Deferred::Step(message) => self.step(message),
                Deferred::Propose(propose) => self.propose(propose, ctx),
                Deferred::Unreachable(peer) => self.node.report_unreachable(peer),
            }
        }
    }

    fn step(&mut self, message: raft::eraftpb::Message) {
        let from = message.from;
        if let Err(e) = self.node.step(message) {
            tracing::debug!(channel = %self.channel_id, from, error = %e, "Raft message not taken");
        }
    }

    fn tick(&mut self) {
        self.node.tick();
        if self.role == ChainRole::Leader {
            let active = self
                .node
                .raft
                .prs()
                .iter()
                .filter(|(&id, progress)| id == self.id || progress.recent_active)
                .count();
            self.metrics.etcdraft.active_nodes.set(active as i64);
        }
    }

    fn send(&mut self, messages: Vec<raft::eraftpb::Message>) {
        for message in messages {
            self.transport.send(message);
        }
    }

    // ---- Roles ----

    fn soft_state_changed(&mut self, leader: u64, role: StateRole, ctx: &mut Context<Self>) {
        let leader = (leader != raft::INVALID_ID).then_some(leader);
        let was_leader = self.role == ChainRole::Leader;
        self.role = match role {
            StateRole::Leader => ChainRole::Leader,
            StateRole::Follower => ChainRole::Follower,
            StateRole::Candidate | StateRole::PreCandidate => ChainRole::Candidate,
        };
        if leader != self.leader {
            tracing::info!(channel = %self.channel_id, node = self.id, ?leader, previous = ?self.leader, term = self.node.raft.term, "Raft leader changed");
            self.metrics.etcdraft.leader_changes.inc();
            self.leader = leader;
        }
        if self.role == ChainRole::Leader && !was_leader {
            self.become_leader(ctx);
        } else if was_leader && self.role != ChainRole::Leader {
            self.become_follower(ctx);
        }
        self.publish_status();
        self.send_on(ctx);
    }

    /// Fabric's becomeLeader: nothing in flight; propose nothing until the
    /// log is applied (see [`RaftChain::start_proposing`]).
    fn become_leader(&mut self, ctx: &mut Context<Self>) {
        let term = self.node.raft.term;
        let election_index = self.node.raft.raft_log.last_index();
        tracing::info!(channel = %self.channel_id, node = self.id, term, election_index, "became leader");
        self.config_in_flight = None;
        self.leadership = Some(Leadership {
            term,
            election_index,
            proposer: None,
        });
        self.start_proposing(ctx);
    }

    /// Fabric's becomeFollower: stop the proposer (its pending batch comes
    /// back and is sent on to the new leader); submissions waiting here are
    /// refused, so their clients try again.
    fn become_follower(&mut self, ctx: &mut Context<Self>) {
        tracing::info!(channel = %self.channel_id, node = self.id, leader = ?self.leader, "stepped down from leader");
        if let Some(proposer) = self.leadership.take().and_then(|l| l.proposer) {
            proposer.stop();
            self.draining_proposers += 1;
        }
        self.config_in_flight = None;
        self.metrics.blocks_inflight.set(0);
        let waiting = std::mem::take(&mut self.waiting);
        for admission in waiting {
            self.give_back(admission, ctx);
        }
    }

    /// A submission this node will not admit as leader: refused if its
    /// client waits, sent on to the leader if it was already answered.
    fn give_back(&mut self, admission: Admission, ctx: &mut Context<Self>) {
        match admission.answer {
            Some(answer) => {
                let _ = answer.send(Err(SubmitError::Unavailable(format!(
                    "channel {}: the Raft leader changed; try again",
                    self.channel_id
                ))));
            }
            None => {
                self.resend.push_back(Resend {
                    messages: admission.messages,
                    config_seq: admission.config_seq,
                    is_config: matches!(admission.kind, Kind::Config(_)),
                    permit: admission.permit,
                });
                self.send_on(ctx);
            }
        }
    }

    /// A new leader starts proposing once every entry of its log is applied
    /// and written, from the last block written.
    fn start_proposing(&mut self, ctx: &mut Context<Self>) {
        let Some(leadership) = self.leadership.as_ref() else {
            return;
        };
        if leadership.proposer.is_some() || self.halting() {
            return;
        }
        let written = self.store.height() == self.next_number && !self.writing;
        if self.applied_index < leadership.election_index || !written || !self.to_write.is_empty() {
            return;
        }
        let tip = self.store.tip();
        let creator = BlockCreator::new(&tip, self.signer.clone());
        let config = self.config.borrow().clone();
        let term = leadership.term;
        let proposer = ProposerHandle::start(
            term,
            creator,
            &config,
            ProposerOwner {
                proposals: Mailbox::of(&ctx.address(), &self.metrics.chain),
                stopped: Mailbox::of(&ctx.address(), &self.metrics.chain),
            },
            &self.tree,
            &self.metrics,
            self.clock.clone(),
        );
        self.uncut_envelopes = 0;
        self.uncut_bytes = 0;
        tracing::info!(channel = %self.channel_id, node = self.id, term, next_block = tip.height, "leader ready: proposing");
        if let Some(leadership) = self.leadership.as_mut() {
            leadership.proposer = Some(proposer);
        }
        self.admit(ctx);
        self.send_on(ctx);
    }

    fn proposer(&self) -> Option<&ProposerHandle> {
        self.leadership.as_ref().and_then(|l| l.proposer.as_ref())
    }

    // ---- Admission (leader) ----

    fn admitting(&self) -> bool {
        self.proposer().is_some()
            && !self.revalidating
            && self.config_in_flight.is_none()
            && self.blocks_in_flight() < self.options.max_inflight_blocks
    }

    /// Blocks proposed and not yet applied, and the full blocks the cutter
    /// will cut from what was admitted (a partial batch waiting for its
    /// timeout does not count, as in Fabric).
    fn blocks_in_flight(&self) -> usize {
        let limits = self.config.borrow().batch_size;
        let by_count = self.uncut_envelopes / (limits.max_message_count.max(1) as usize);
        let by_bytes = self.uncut_bytes / (limits.preferred_max_bytes.max(1) as usize);
        self.proposals.len() + by_count.max(by_bytes)
    }

    /// Admits waiting submissions in order, until one must wait again.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        if self.halting() {
            for admission in std::mem::take(&mut self.waiting) {
                if let Some(answer) = admission.answer {
                    let _ = answer.send(Err(self.halting_error()));
                }
            }
            return;
        }
        while self.admitting() {
            let Some(next) = self.waiting.pop_front() else {
                break;
            };
            self.admit_one(next, ctx);
        }
        self.metrics
            .submissions_waiting
            .set(self.waiting.len() as i64);
    }

    fn halting_error(&self) -> SubmitError {
        SubmitError::Unavailable(format!("channel {} is halting", self.channel_id))
    }

    fn admit_one(&mut self, admission: Admission, ctx: &mut Context<Self>) {
        let current = self.config.borrow().clone();
        let up_to_date = admission.config_seq >= current.sequence;
        match admission.kind {
            Kind::Normal if up_to_date => {
                let retry = admission
                    .answer
                    .is_none()
                    .then(|| admission.messages.clone());
                let outcome = self.order(admission.messages, admission.permit, admission.received);
                match (admission.answer, outcome, retry) {
                    (Some(answer), outcome, _) => {
                        let _ = answer.send(outcome);
                    }
                    (None, Err(_), Some(messages)) => self.resend.push_back(Resend {
                        messages,
                        config_seq: admission.config_seq,
                        is_config: false,
                        permit: InflightPermit::default(),
                    }),
                    (None, _, _) => {}
                }
            }
            Kind::Config(Some(config)) if admission.config_seq == current.sequence => {
                let message = admission.messages.into_iter().next();
                let outcome = match message {
                    Some(message) => {
                        self.order_config(message, config, admission.permit, admission.received)
                    }
                    None => Ok(()),
                };
                if let Some(answer) = admission.answer {
                    let _ = answer.send(outcome);
                }
            }
            kind => self.recheck(
                admission.messages,
                kind,
                admission.permit,
                admission.received,
                admission.answer,
                current,
                ctx,
            ),
        }
    }

    /// Checks a submission again under the current config, off the actor
    /// thread; admission waits for it, so order is kept.
    #[allow(clippy::too_many_arguments)]
    fn recheck(
        &mut self,
        messages: Vec<OrderedMessage>,
        kind: Kind,
        mut permit: InflightPermit,
        received: Instant,
        answer: Option<Answer>,
        current: Arc<ChannelConfig>,
        ctx: &mut Context<Self>,
    ) {
        self.revalidating = true;
        let filters = self.filters.clone();
        let policies = self.policies.clone();
        let signer = self.signer.clone();
        let channel = self.channel_id.clone();
        let is_config = matches!(kind, Kind::Config(_));
        // Envelopes already answered SUCCESS are kept to send on if this
        // node cannot admit them after all (shared bytes: no copy).
        let retry = answer.is_none().then(|| messages.clone());
        let check = tokio::task::spawn_blocking(move || {
            if is_config {
                let Some(message) = messages.first() else {
                    return Ok(Rechecked::Config(None));
                };
                recheck_config(
                    &channel,
                    &current,
                    policies.as_ref(),
                    &signer,
                    &filters,
                    message,
                )
                .map(|(message, config)| Rechecked::Config(Some((message, Arc::new(config)))))
            } else {
                Ok(Rechecked::Normal(revalidate(
                    &channel, &filters, &current, messages,
                )))
            }
        });
        ctx.spawn(check.into_actor(self).map(move |checked, act, ctx| {
            act.revalidating = false;
            let outcome = match checked {
                _ if act.halting() => Err(act.halting_error()),
                _ if act.proposer().is_none() => Err(SubmitError::Unavailable(format!(
                    "channel {}: the Raft leader changed; try again",
                    act.channel_id
                ))),
                Ok(Ok(Rechecked::Normal((kept, dropped, dropped_bytes)))) => {
                    drop(permit.split(dropped, dropped_bytes));
                    act.order(kept, permit, received)
                }
                Ok(Ok(Rechecked::Config(Some((message, config))))) => {
                    act.order_config(message, config, permit, received)
                }
                Ok(Ok(Rechecked::Config(None))) => Ok(()),
                Ok(Err(refused)) => Err(refused),
                Err(e) => Err(SubmitError::Unavailable(format!("re-validation failed: {e}"))),
            };
            match (answer, outcome) {
                (Some(answer), outcome) => {
                    let _ = answer.send(outcome);
                }
                (None, Ok(())) => {}
                (None, Err(SubmitError::Invalid(reason))) => {
                    tracing::warn!(channel = %act.channel_id, %reason, "an envelope sent on after a leader change is no longer valid; dropped");
                }
                // Answered SUCCESS long ago: it must still reach a leader.
                (None, Err(SubmitError::Unavailable(_))) => {
                    if let Some(messages) = retry {
                        act.resend.push_back(Resend {
                            messages,
                            config_seq: 0,
                            is_config,
                            permit: InflightPermit::default(),
                        });
                        act.send_on(ctx);
                    }
                }
            }
            act.admit(ctx);
        }));
    }

    fn order(
        &mut self,
        messages: Vec<OrderedMessage>,
        permit: InflightPermit,
        received: Instant,
    ) -> Result<(), SubmitError> {
        if messages.is_empty() {
            return Ok(());
        }
        let Some(proposer) = self.proposer() else {
            return Err(SubmitError::Unavailable("not the Raft leader".into()));
        };
        let (count, bytes) = (
            messages.len(),
            messages.iter().map(|m| m.envelope.len()).sum::<usize>(),
        );
        let ordered = Ordered {
            messages,
            permit,
            received,
        };
        proposer
            .cutter
            .ordered
            .post(ordered)
            .map_err(|gone| SubmitError::Unavailable(format!("the cutter is gone: {gone}")))?;
        self.uncut_envelopes += count;
        self.uncut_bytes += bytes;
        Ok(())
    }

    fn order_config(
        &mut self,
        message: OrderedMessage,
        config: Arc<ChannelConfig>,
        permit: InflightPermit,
        received: Instant,
    ) -> Result<(), SubmitError> {
        let Some(proposer) = self.proposer() else {
            return Err(SubmitError::Unavailable("not the Raft leader".into()));
        };
        tracing::info!(channel = %self.channel_id, sequence = config.sequence, "ordering config update");
        let moves_config = crate::fabric::blockutil::is_config_envelope(&message.envelope);
        let ordered = OrderedConfig {
            message,
            permit,
            limits: config.batch_size,
            timeout: config.batch_timeout,
            received,
        };
        proposer
            .cutter
            .config
            .post(ordered)
            .map_err(|gone| SubmitError::Unavailable(format!("the cutter is gone: {gone}")))?;
        // A channel creation on a system channel does not move the config.
        if moves_config {
            self.config_in_flight = Some(config.sequence);
        }
        Ok(())
    }

    // ---- Submissions ----

    /// Where a submission goes now.
    fn route(
        &mut self,
        admission: Admission,
        ctx: &mut Context<Self>,
    ) -> Response<Result<(), SubmitError>> {
        if self.halting() {
            return Response::reply(Err(self.halting_error()));
        }
        if self.leadership.is_some() {
            self.count_received(&admission.kind);
            let (answer, answered) = oneshot::channel();
            self.waiting.push_back(Admission {
                answer: Some(answer),
                ..admission
            });
            self.admit(ctx);
            return answer_later(answered);
        }
        match (self.role, self.leader) {
            (ChainRole::Follower, Some(leader)) => {
                let forwarded = self.forward(leader, &admission.messages, admission.config_seq);
                let permit = admission.permit;
                Response::fut(async move {
                    let outcome = forwarded.await;
                    // The envelopes are the leader's now: their room here is free.
                    drop(permit);
                    outcome
                })
            }
            _ => Response::reply(Err(SubmitError::Unavailable(format!(
                "no Raft leader for channel {}",
                self.channel_id
            )))),
        }
    }

    fn count_received(&self, kind: &Kind) {
        let counter = match kind {
            Kind::Normal => &self.metrics.etcdraft.normal_proposals_received,
            Kind::Config(_) => &self.metrics.etcdraft.config_proposals_received,
        };
        counter.inc();
    }

    /// Sends `messages` to `leader`, in order; resolves with the first refusal.
    fn forward(
        &self,
        leader: u64,
        messages: &[OrderedMessage],
        config_seq: u64,
    ) -> futures::future::BoxFuture<'static, Result<(), SubmitError>> {
        let each = self.forward_each(leader, messages, config_seq);
        Box::pin(async move { each.await.into_iter().collect() })
    }

    /// Sends `messages` to `leader`, in order; resolves with each one's answer.
    fn forward_each(
        &self,
        leader: u64,
        messages: &[OrderedMessage],
        config_seq: u64,
    ) -> futures::future::BoxFuture<'static, Vec<Result<(), SubmitError>>> {
        let mut answers = Vec::with_capacity(messages.len());
        for message in messages {
            let envelope = match Envelope::decode(message.envelope.clone()) {
                Ok(envelope) => envelope,
                Err(e) => {
                    let refused = SubmitError::Invalid(format!("envelope cannot be decoded: {e}"));
                    answers.push(Box::pin(async move { Err(refused) }) as _);
                    continue;
                }
            };
            answers.push(self.transport.forward(
                leader,
                SubmitRequest {
                    channel: self.channel_id.clone(),
                    last_validation_seq: config_seq,
                    payload: Some(envelope),
                },
            ));
        }
        Box::pin(futures::future::join_all(answers))
    }

    /// Envelopes answered SUCCESS that still need a leader: admitted here
    /// when this node leads and proposes, forwarded when another node leads.
    fn send_on(&mut self, ctx: &mut Context<Self>) {
        if self.resend.is_empty() || self.resending || self.halting() {
            return;
        }
        if self.proposer().is_some() {
            for resend in std::mem::take(&mut self.resend) {
                self.waiting.push_back(Admission {
                    messages: resend.messages,
                    config_seq: resend.config_seq,
                    kind: if resend.is_config {
                        Kind::Config(None)
                    } else {
                        Kind::Normal
                    },
                    permit: resend.permit,
                    received: Instant::now(),
                    answer: None,
                });
            }
            self.admit(ctx);
            return;
        }
        let (ChainRole::Follower, Some(leader)) = (self.role, self.leader) else {
            return;
        };
        self.resending = true;
        let batches: Vec<Resend> = std::mem::take(&mut self.resend).into();
        let sends: Vec<_> = batches
            .iter()
            .map(|r| self.forward_each(leader, &r.messages, r.config_seq))
            .collect();
        tracing::info!(channel = %self.channel_id, leader, batches = batches.len(), "sending envelopes on to the new leader");
        let all = futures::future::join_all(sends);
        ctx.spawn(all.into_actor(self).map(move |outcomes, act, _| {
            act.resending = false;
            let mut again = Vec::new();
            for (resend, answers) in batches.into_iter().zip(outcomes) {
                // Only what the leader did not take goes again: an envelope
                // it admitted must not be ordered twice.
                let mut left = Vec::new();
                for (message, answer) in resend.messages.into_iter().zip(answers) {
                    match answer {
                        Ok(()) => {}
                        Err(SubmitError::Invalid(reason)) => {
                            tracing::warn!(channel = %act.channel_id, %reason, "the leader refused an envelope sent on after a leader change");
                        }
                        Err(SubmitError::Unavailable(_)) => left.push(message),
                    }
                }
                if !left.is_empty() {
                    again.push(Resend {
                        messages: left,
                        ..resend
                    });
                }
            }
            for resend in again.into_iter().rev() {
                act.resend.push_front(resend);
            }
        }));
    }

    // ---- Applying ----

    fn apply(&mut self, entries: Vec<Entry>, ctx: &mut Context<Self>) {
        for entry in entries {
            if entry.index <= self.applied_index {
                continue;
            }
            self.applied_index = entry.index;
            let block = match entry.get_entry_type() {
                EntryType::EntryNormal if entry.data.is_empty() => None,
                EntryType::EntryNormal => match Block::decode(&entry.data[..]) {
                    Ok(block) => Some(block),
                    Err(e) => {
                        return self.fail(
                            format!("Raft entry {} does not hold a block: {e}", entry.index),
                            ctx,
                        )
                    }
                },
                _ => {
                    tracing::warn!(channel = %self.channel_id, index = entry.index, "Raft membership changes are not supported yet; entry skipped");
                    None
                }
            };
            let stale = block
                .as_ref()
                .is_some_and(|b| blockutil::number(b) < self.next_number);
            if stale {
                tracing::warn!(channel = %self.channel_id, index = entry.index, "Raft entry holds a block number already written; skipped");
            }
            let written = if stale { None } else { block.as_ref() };
            self.settle_proposals(entry.index, entry.term, written, ctx);
            let Some(block) = block.filter(|_| !stale) else {
                continue;
            };
            let number = blockutil::number(&block);
            if number > self.next_number {
                return self.fail(
                    format!(
                        "Raft entry {} holds block {number}, but the next block is {}",
                        entry.index, self.next_number
                    ),
                    ctx,
                );
            }
            self.next_number += 1;
            self.to_write.push_back((entry.index, block));
        }
        self.write_blocks(ctx);
        // A new leader whose log holds no block to write is ready now.
        self.start_proposing(ctx);
    }

    /// Blocks this node proposed at or before `index`, or in an older term
    /// than the entry's, are decided: written if the entry is theirs,
    /// otherwise lost, and their envelopes are sent on.
    fn settle_proposals(
        &mut self,
        index: u64,
        term: u64,
        block: Option<&Block>,
        ctx: &mut Context<Self>,
    ) {
        let decided: Vec<u64> = self
            .proposals
            .iter()
            .filter(|(&at, p)| at <= index || p.term < term)
            .map(|(&at, _)| at)
            .collect();
        for at in decided {
            let Some(proposal) = self.proposals.remove(&at) else {
                continue;
            };
            let header = block.and_then(|b| b.header.as_ref());
            let written = at == index
                && header.is_some_and(|h| {
                    h.number == proposal.number && h.data_hash == proposal.data_hash
                });
            if written {
                continue;
            }
            tracing::info!(channel = %self.channel_id, index = at, number = proposal.number, envelopes = proposal.envelopes.len(), "a proposed block was not committed; its envelopes go to the leader");
            self.metrics.etcdraft.proposal_failures.inc();
            let messages = messages_of(proposal.envelopes);
            self.resend.push_back(Resend {
                messages,
                config_seq: proposal.config_seq,
                is_config: proposal.is_config,
                permit: InflightPermit::default(),
            });
        }
        self.metrics
            .blocks_inflight
            .set(self.proposals.len() as i64);
        self.send_on(ctx);
        self.admit(ctx);
    }

    /// Signs the applied blocks, in order and off the actor thread, and
    /// hands them to the LedgerActor.
    fn write_blocks(&mut self, ctx: &mut Context<Self>) {
        if self.writing || self.to_write.is_empty() {
            return;
        }
        self.writing = true;
        let blocks: Vec<(u64, Block)> = self.to_write.drain(..).collect();
        let signer = self.signer.clone();
        let membership = self.membership.clone();
        let sign = tokio::task::spawn_blocking(move || {
            blocks
                .into_iter()
                .map(|(index, mut block)| {
                    let last_config = blockutil::last_config_index(&block).unwrap_or(0);
                    let consenter = membership.block_metadata(index).encode_to_vec();
                    block.metadata =
                        Some(blockutil::orderer_metadata(last_config, consenter.into()));
                    signer.sign_block(&mut block).map(|()| block)
                })
                .collect::<Result<Vec<Block>, _>>()
        });
        ctx.spawn(sign.into_actor(self).map(|signed, act, ctx| {
            act.writing = false;
            let blocks = match signed {
                Ok(Ok(blocks)) => blocks,
                Ok(Err(e)) => return act.fail(format!("signing a block failed: {e}"), ctx),
                Err(e) => return act.fail(format!("signing blocks failed: {e}"), ctx),
            };
            for block in blocks {
                let number = blockutil::number(&block);
                if let Err(gone) = act.ledger.append(block, Vec::new()) {
                    return act.fail(format!("the ledger is gone: {gone}"), ctx);
                }
                act.metrics
                    .etcdraft
                    .committed_block_number
                    .set(number as i64);
            }
            act.write_blocks(ctx);
            act.finish_halt(ctx);
        }));
    }

    // ---- Halting ----

    /// Once a halt began and every applied block went to the ledger: wait
    /// for it to be durable, answer the halt, stop.
    fn finish_halt(&mut self, ctx: &mut Context<Self>) {
        if !self.halting() || self.writing || !self.to_write.is_empty() {
            return;
        }
        // What the leader accepted is proposed and written first, as a solo
        // chain writes its pending batch (bounded by HALT_GRACE).
        let settled = self.draining_proposers == 0 && self.proposals.is_empty();
        if !settled && !self.halt_grace_over {
            return;
        }
        let Some(waiters) = self.halt_waiters.as_mut() else {
            return;
        };
        if waiters.is_empty() {
            return;
        }
        if !settled {
            let envelopes: usize = self.proposals.values().map(|p| p.envelopes.len()).sum();
            tracing::warn!(channel = %self.channel_id, blocks = self.proposals.len(), envelopes, "halting with proposed blocks not committed");
        }
        let waiters = std::mem::take(waiters);
        let ledger = self.ledger.clone();
        ctx.spawn(
            async move { ledger.wait_durable().await }
                .into_actor(self)
                .map(move |durable, act, ctx| {
                    if let Err(reason) = durable {
                        tracing::error!(channel = %act.channel_id, %reason, "blocks could not be written on halt");
                    }
                    for waiter in waiters {
                        let _ = waiter.send(());
                    }
                    ctx.stop();
                }),
        );
    }
}

/// An input for Raft that waits for the `Ready` being persisted.
enum Deferred {
    Tick,
    Step(raft::eraftpb::Message),
    Propose(Propose),
    Unreachable(u64),
}

enum Rechecked {
    Normal((Vec<OrderedMessage>, usize, usize)),
    Config(Option<(OrderedMessage, Arc<ChannelConfig>)>),
}

/// Envelopes taken back out of a block, to be ordered again.
fn messages_of(envelopes: Vec<Bytes>) -> Vec<OrderedMessage> {
    envelopes
        .into_iter()
        .map(|envelope| OrderedMessage {
            size: envelope.len(),
            envelope,
        })
        .collect()
}

/// Whether an envelope is a config message: a CONFIG envelope, or a system
/// channel's ORDERER_TRANSACTION (a channel creation), each ordered alone.
fn is_config_envelope(envelope: &Envelope) -> bool {
    Payload::decode(envelope.payload.clone())
        .ok()
        .and_then(|p| p.header)
        .and_then(|h| ChannelHeader::decode(h.channel_header).ok())
        .is_some_and(|ch| {
            ch.r#type == HeaderType::Config as i32
                || ch.r#type == HeaderType::OrdererTransaction as i32
        })
}

impl Actor for RaftChain {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::new(self.height.clone()));
        ctx.add_stream(WatchStream::new(self.config.clone()));
        self.publish_status();
        self.metrics
            .etcdraft
            .cluster_size
            .set(self.membership.peers.len() as i64);
        self.schedule_tick(ctx);
        let voters = self.membership.ids();
        if voters == [self.id] {
            // Alone: no one to wait for.
            if let Err(e) = self.node.campaign() {
                tracing::warn!(channel = %self.channel_id, error = %e, "campaign failed");
            }
        }
        tracing::info!(channel = %self.channel_id, node = self.id, ?voters, applied = self.applied_index, next_block = self.next_number, "etcdraft chain started");
        self.drive(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        if let Some(proposer) = self.leadership.take().and_then(|l| l.proposer) {
            proposer.stop();
        }
        self.metrics.is_leader.set(0);
        self.metrics.blocks_inflight.set(0);
        if !self.resend.is_empty() {
            let envelopes: usize = self.resend.iter().map(|r| r.messages.len()).sum();
            tracing::warn!(channel = %self.channel_id, envelopes, "chain stopped with envelopes not yet sent on to a leader");
        }
    }
}

impl Handler<Tick> for RaftChain {
    type Result = ();

    fn handle(&mut self, _: Tick, ctx: &mut Context<Self>) {
        if self.persisting {
            self.deferred.push(Deferred::Tick);
            return;
        }
        self.tick();
        self.drive(ctx);
        self.send_on(ctx);
    }
}

impl Handler<Step> for RaftChain {
    type Result = ();

    fn handle(&mut self, msg: Step, ctx: &mut Context<Self>) {
        if self.persisting {
            self.deferred.push(Deferred::Step(msg.message));
            return;
        }
        self.step(msg.message);
        self.drive(ctx);
    }
}

impl Handler<TransportEvent> for RaftChain {
    type Result = ();

    fn handle(&mut self, msg: TransportEvent, _: &mut Context<Self>) {
        match msg {
            TransportEvent::Unreachable(peer) if self.persisting => {
                self.deferred.push(Deferred::Unreachable(peer))
            }
            TransportEvent::Unreachable(peer) => self.node.report_unreachable(peer),
        }
    }
}

crate::counted_handlers!(RaftChain: Submit, Configure, Propose, ProposerStopped);

impl Handler<ProposerStopped> for RaftChain {
    type Result = ();

    fn handle(&mut self, msg: ProposerStopped, ctx: &mut Context<Self>) {
        tracing::debug!(channel = %self.channel_id, term = msg.term, "proposer stopped");
        self.draining_proposers = self.draining_proposers.saturating_sub(1);
        self.finish_halt(ctx);
    }
}

impl Handler<Submit> for RaftChain {
    type Result = Response<Result<(), SubmitError>>;

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Self::Result {
        self.route(
            Admission {
                messages: msg.messages,
                config_seq: msg.config_seq,
                kind: Kind::Normal,
                permit: msg.permit,
                received: msg.received,
                answer: None,
            },
            ctx,
        )
    }
}

impl Handler<Configure> for RaftChain {
    type Result = Response<Result<(), SubmitError>>;

    fn handle(&mut self, msg: Configure, ctx: &mut Context<Self>) -> Self::Result {
        self.route(
            Admission {
                messages: vec![msg.message],
                config_seq: msg.config_seq,
                kind: Kind::Config(Some(msg.config)),
                permit: msg.permit,
                received: msg.received,
                answer: None,
            },
            ctx,
        )
    }
}

impl Handler<ForwardedSubmit> for RaftChain {
    type Result = Response<Result<(), SubmitError>>;

    fn handle(&mut self, msg: ForwardedSubmit, ctx: &mut Context<Self>) -> Self::Result {
        if self.halting() {
            return Response::reply(Err(self.halting_error()));
        }
        if self.leadership.is_none() {
            return Response::reply(Err(SubmitError::Unavailable(format!(
                "node {} is not the Raft leader of channel {}",
                self.id, self.channel_id
            ))));
        }
        let Some(envelope) = msg.request.payload else {
            return Response::reply(Err(SubmitError::Invalid(
                "the forwarded submission holds no envelope".into(),
            )));
        };
        let is_config = is_config_envelope(&envelope);
        let message = OrderedMessage {
            size: envelope.payload.len() + envelope.signature.len(),
            envelope: envelope.encode_to_vec().into(),
        };
        let config_seq = msg.request.last_validation_seq;
        let (answer, answered) = oneshot::channel();
        let room = self.room.clone();
        let size = message.size;
        // Room first (waiting for it is the follower's backpressure), then
        // admission in order with local submissions.
        let take = async move { room.take_one(size).await };
        ctx.spawn(take.into_actor(self).map(move |permit, act, ctx| {
            let Ok(permit) = permit else {
                let _ = answer.send(Err(SubmitError::Unavailable(
                    "the channel is closing".into(),
                )));
                return;
            };
            if act.leadership.is_none() || act.halting() {
                let _ = answer.send(Err(SubmitError::Unavailable(format!(
                    "node {} is no longer the Raft leader of channel {}",
                    act.id, act.channel_id
                ))));
                return;
            }
            let kind = if is_config {
                Kind::Config(None)
            } else {
                Kind::Normal
            };
            act.count_received(&kind);
            act.waiting.push_back(Admission {
                messages: vec![message],
                config_seq,
                kind,
                permit,
                received: Instant::now(),
                answer: Some(answer),
            });
            act.admit(ctx);
        }));
        answer_later(answered)
    }
}

impl Handler<Propose> for RaftChain {
    type Result = ();

    fn handle(&mut self, msg: Propose, ctx: &mut Context<Self>) {
        if self.persisting {
            self.deferred.push(Deferred::Propose(msg));
            return;
        }
        self.propose(msg, ctx);
        self.drive(ctx);
    }
}

impl RaftChain {
    fn propose(&mut self, msg: Propose, ctx: &mut Context<Self>) {
        let current_term = self.leadership.as_ref().map(|l| l.term);
        // The envelopes were validated when admitted, under this config or
        // an older one: sent on, they are checked again if the config moved.
        let config_seq = 0;
        let envelopes = blockutil::entries(&msg.block).to_vec();
        let header = msg.block.header.clone().unwrap_or_default();
        self.uncut_envelopes = self.uncut_envelopes.saturating_sub(envelopes.len());
        self.uncut_bytes = self
            .uncut_bytes
            .saturating_sub(envelopes.iter().map(Bytes::len).sum());
        // raft-rs forwards a follower's proposal to its leader: a block made
        // on an old tip must never leave this node, so only the leader of
        // the proposer's own term proposes.
        let leading = self.node.raft.state == StateRole::Leader && self.node.raft.term == msg.term;
        if current_term != Some(msg.term) || !leading {
            // Made by a proposer of a leadership that ended: send it on.
            self.resend.push_back(Resend {
                messages: messages_of(envelopes),
                config_seq,
                is_config: msg.is_config,
                permit: msg.permit,
            });
            self.send_on(ctx);
            return;
        }
        let data = msg.block.encode_to_vec();
        let before = self.node.raft.raft_log.last_index();
        match self.node.propose(Vec::new(), data) {
            Ok(()) if self.node.raft.raft_log.last_index() == before + 1 => {
                let index = before + 1;
                self.proposals.insert(
                    index,
                    Proposal {
                        term: msg.term,
                        number: header.number,
                        data_hash: header.data_hash,
                        envelopes,
                        is_config: msg.is_config,
                        config_seq,
                    },
                );
                self.permits.hold(header.number, msg.permit);
                self.metrics
                    .blocks_inflight
                    .set(self.proposals.len() as i64);
            }
            outcome => {
                let reason = match outcome {
                    Err(e) => e.to_string(),
                    Ok(()) => "not appended to this node's log".to_string(),
                };
                tracing::warn!(channel = %self.channel_id, number = header.number, %reason, "proposal dropped by Raft");
                self.metrics.etcdraft.proposal_failures.inc();
                self.resend.push_back(Resend {
                    messages: messages_of(envelopes),
                    config_seq,
                    is_config: msg.is_config,
                    permit: msg.permit,
                });
            }
        }
    }
}

/// The ledger height moved: release room, and a new leader may start.
impl StreamHandler<u64> for RaftChain {
    fn handle(&mut self, height: u64, ctx: &mut Context<Self>) {
        self.permits.release_below(height);
        self.start_proposing(ctx);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// A config block was written: admission goes on under its config.
impl StreamHandler<Arc<ChannelConfig>> for RaftChain {
    fn handle(&mut self, config: Arc<ChannelConfig>, ctx: &mut Context<Self>) {
        if self
            .config_in_flight
            .is_some_and(|sequence| config.sequence >= sequence)
        {
            self.config_in_flight = None;
            self.admit(ctx);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

impl Handler<Halt> for RaftChain {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, done) = oneshot::channel();
        let first = self.halt_waiters.is_none();
        self.halt_waiters.get_or_insert_with(Vec::new).push(reply);
        if first {
            if let Some(proposer) = self.leadership.as_mut().and_then(|l| l.proposer.take()) {
                proposer.stop();
                self.draining_proposers += 1;
            }
            self.admit(ctx);
            let grace = self.clock.sleep(HALT_GRACE);
            ctx.spawn(grace.into_actor(self).map(|(), act, ctx| {
                act.halt_grace_over = true;
                act.finish_halt(ctx);
            }));
        }
        self.finish_halt(ctx);
        Box::pin(async move {
            let _ = done.await;
        })
    }
}

impl Handler<Abort> for RaftChain {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        self.halt_waiters.get_or_insert_with(Vec::new);
        ctx.stop();
    }
}
