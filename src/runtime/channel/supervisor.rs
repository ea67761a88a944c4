//! ChannelSupervisor: starts a channel's actor tree, restarts it when a child
//! fails, and stops it cleanly.
//!
//! Mailbox:
//! - [`ChildFailed`] (from any member of the tree, or from Broadcast finding
//!   the chain's mailbox closed) and [`ChildStopped`] when the supervisor did
//!   not ask for it (a panic drops the actor): stop the tree, then restart it
//!   after a back-off, rebuilt from the ledger. More than [`MAX_RESTARTS`]
//!   failures within [`RESTART_WINDOW`] mark the channel errored instead.
//! - [`TreeStopped`]: the last member of an old generation (a ledger write in
//!   progress included) is gone; only now may the next generation start.
//! - [`Shutdown`] (from the registrar): halt the chain (pending batch
//!   written), wait for the tree to stop, then stop. Answered when durable.
//!
//! A failure after which the channel's storage reports a write fault (the
//! block store's, or the consenter's [`super::fault::WriteFaults`]) is not
//! restarted blindly: the channel is [`ChannelState::StorageFault`] (Broadcast
//! refused, Deliver serving what is durable) and, once the old tree is gone,
//! the supervisor re-opens the store and proves the storage takes writes, on
//! a growing back-off, before it starts the next tree. Those waits are not
//! failures of the tree: they never make the channel errored; damage found
//! while re-opening does.
//!
//! Each start is a new generation: reports from older ones are ignored. While
//! the tree is down the channel handle has no chain: Broadcast answers
//! SERVICE_UNAVAILABLE and Deliver streams end with SERVICE_UNAVAILABLE.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::oneshot;

use super::tree::{ChildFailed, ChildStopped, TreeMembership, TreeStopped};
use super::{ChannelHandle, ChannelState};
use crate::fabric::channelconfig::ChannelConfig;
use crate::runtime::consensus::{
    Abort, ChainHandle, ChainSupport, Consenters, Halt, NodeResources,
};
use crate::runtime::ledger::{ConfigPublisher, LedgerActor, LedgerError, LedgerHandle, Retire};

pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// The longest wait between two checks of a storage that failed.
const MAX_FAULT_BACKOFF: Duration = Duration::from_secs(10);
/// The least free space the storage must have again before the channel
/// resumes (at least twice AbsoluteMaxBytes).
const MIN_FREE_BYTES: u64 = 1024 * 1024;
/// What the check really writes and syncs: small, so that checking never
/// fills a disk other channels share.
const PROBE_BYTES: u64 = 64 * 1024;
/// How long a clean stop waits for the tree's last member.
const STOP_PATIENCE: Duration = Duration::from_secs(30);

/// Halt the channel cleanly and stop the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

/// The running tree of the current generation.
struct RunningTree {
    /// `None` while the consenter is still starting the chain.
    chain: Option<ChainHandle>,
    /// The consenter's start, while it runs.
    starting: Option<SpawnHandle>,
    ledger: Addr<LedgerActor>,
}

pub struct ChannelSupervisor {
    handle: Arc<ChannelHandle>,
    consenters: Consenters,
    node: Arc<NodeResources>,
    config: ConfigPublisher,
    generation: u64,
    tree: Option<RunningTree>,
    /// A generation that was stopped and still has members (or a write) alive.
    winding_down: Option<u64>,
    /// The back-off after the last failure has passed.
    restart_due: bool,
    failures: VecDeque<Instant>,
    /// The one pending back-off, if any: a new failure replaces it.
    pending_restart: Option<SpawnHandle>,
    shutting_down: bool,
    /// The wait before the next check of a storage that failed.
    fault_backoff: Duration,
    /// A check of the storage is running.
    probing: bool,
    /// When the channel last resumed after a storage fault.
    resumed_at: Option<Instant>,
    /// Who waits for the old tree to be gone (a clean stop).
    stop_waiters: Vec<oneshot::Sender<()>>,
}

impl ChannelSupervisor {
    pub fn new(
        handle: Arc<ChannelHandle>,
        config: ConfigPublisher,
        consenters: Consenters,
        node: Arc<NodeResources>,
    ) -> ChannelSupervisor {
        ChannelSupervisor {
            handle,
            consenters,
            node,
            config,
            generation: 0,
            tree: None,
            winding_down: None,
            restart_due: true,
            failures: VecDeque::new(),
            pending_restart: None,
            shutting_down: false,
            fault_backoff: FIRST_BACKOFF,
            probing: false,
            resumed_at: None,
            stop_waiters: Vec::new(),
        }
    }

    fn errored(&self) -> bool {
        matches!(self.handle.state(), ChannelState::Errored(_))
    }

    /// Starts a new generation from what is on disk, once the old one is gone.
    fn start_tree(&mut self, ctx: &mut Context<Self>) {
        if self.shutting_down || self.errored() || self.tree.is_some() {
            return;
        }
        if let Some(old) = self.winding_down {
            tracing::debug!(channel = %self.handle.id(), generation = old, "waiting for the old tree to stop before starting the next");
            return;
        }
        // A fault raised by an old tree's last write (its failure report
        // was ignored as an old generation's) also goes through the check.
        if matches!(self.handle.state(), ChannelState::StorageFault(_))
            || self.handle.write_fault().is_some()
        {
            self.probe_storage(ctx);
            return;
        }
        if let Err(reason) = self.try_start_tree(ctx) {
            tracing::error!(channel = %self.handle.id(), %reason, "channel cannot start");
            self.handle.set_chain(None, ChannelState::Errored(reason));
        }
    }

    fn try_start_tree(&mut self, ctx: &mut Context<Self>) -> Result<(), String> {
        let store = self.handle.store().clone();
        // The writer first: taking it publishes blocks an old tree made
        // durable but never published, so the tip and config read below are
        // those of the whole ledger.
        let writer = match store.writer() {
            Ok(writer) => writer,
            Err(LedgerError::WriterBusy(_)) => {
                // Cannot happen while every writer belongs to a tree we wait
                // for; if it does, try again rather than write beside it.
                tracing::warn!(channel = %self.handle.id(), "the ledger still has a writer; starting again shortly");
                self.schedule_restart(FIRST_BACKOFF, ctx);
                return Ok(());
            }
            Err(e) => return Err(e.to_string()),
        };
        let tip = store.tip();
        let config_block = store
            .block(tip.last_config)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("last config block {} is missing", tip.last_config))?;
        let config = ChannelConfig::from_config_block(&config_block)
            .map_err(|e| format!("config block {}: {e}", tip.last_config))?;
        let consenter = self
            .consenters
            .get(&config.consensus_type)
            .map_err(|e| e.to_string())?;
        self.handle.warn_if_bound_below_batch(&config);

        self.generation += 1;
        let generation = self.generation;
        let tree = TreeMembership::new(generation, &ctx.address());
        let metrics = self.handle.metrics().clone();
        let ledger = LedgerActor::new(
            writer,
            self.config.clone(),
            Arc::new(config),
            tree.member("ledger"),
            metrics.clone(),
        )
        .start();
        let support = ChainSupport {
            channel_id: self.handle.id().to_string(),
            config: self.handle.subscribe_config(),
            tip,
            store,
            ledger: LedgerHandle::of(&ledger, self.handle.metrics()),
            filters: self.handle.filters().clone(),
            policies: self.handle.policies().clone(),
            metrics,
            room: self.handle.inflight().clone(),
            status: self.handle.status_publisher().clone(),
            tree: tree.clone(),
            faults: self.handle.faults().clone(),
        };
        let reporter = tree.reporter();
        drop(tree);
        let starting = consenter.start_chain(support, self.node.clone());
        let starting = ctx.spawn(starting.into_actor(self).map(move |started, act, ctx| {
            let current =
                act.generation == generation && act.tree.is_some() && !act.shutting_down;
            match started {
                // The storage failed while the chain started: the chain must
                // not be shown as running.
                Ok(chain) if current && act.handle.write_fault().is_some() => {
                    let _ = crate::runtime::channel::mailbox::post(&chain.abort, Abort);
                    act.stop_tree(ctx);
                    if let Some(fault) = act.handle.write_fault() {
                        act.storage_failed(fault, ctx);
                    }
                }
                Ok(chain) if current => {
                    let chain = chain.supervised(reporter, act.handle.metrics());
                    if let Some(tree) = act.tree.as_mut() {
                        tree.chain = Some(chain.clone());
                        tree.starting = None;
                    }
                    act.handle.set_chain(Some(chain), ChannelState::Active);
                    tracing::info!(channel = %act.handle.id(), generation, height = act.handle.store().height(), restarts = act.handle.restarts(), "channel started");
                }
                // The tree failed or stopped while the chain was starting.
                Ok(chain) => {
                    let _ = crate::runtime::channel::mailbox::post(&chain.abort, Abort);
                }
                Err(_) if current && act.handle.write_fault().is_some() => {
                    act.stop_tree(ctx);
                    if let Some(fault) = act.handle.write_fault() {
                        act.storage_failed(fault, ctx);
                    }
                }
                Err(e) if current => {
                    let reason = e.to_string();
                    tracing::error!(channel = %act.handle.id(), %reason, "channel cannot start");
                    act.stop_tree(ctx);
                    act.handle.set_chain(None, ChannelState::Errored(reason));
                }
                Err(_) => {}
            }
        }));
        self.tree = Some(RunningTree {
            chain: None,
            starting: Some(starting),
            ledger,
        });
        Ok(())
    }

    /// Stops the current tree (abort: nothing more is written by the chain).
    fn stop_tree(&mut self, ctx: &mut Context<Self>) {
        if let Some(tree) = self.tree.take() {
            if let Some(chain) = tree.chain {
                let _ = crate::runtime::channel::mailbox::post(&chain.abort, Abort);
            }
            // A start still running is dropped, and with it whatever it
            // holds of the tree (a consenter's start owns what it started).
            if let Some(starting) = tree.starting {
                ctx.cancel_future(starting);
            }
            // What the chain already handed over is still written.
            let _ = crate::runtime::channel::mailbox::post_to(&tree.ledger, Retire);
            self.winding_down = Some(self.generation);
        }
    }

    fn schedule_restart(&mut self, after: Duration, ctx: &mut Context<Self>) {
        if let Some(pending) = self.pending_restart.take() {
            ctx.cancel_future(pending);
        }
        self.restart_due = false;
        let wait = self.node.clock.sleep(after).into_actor(self);
        self.pending_restart = Some(ctx.spawn(wait.map(|_, act, ctx| {
            act.pending_restart = None;
            act.restart_due = true;
            act.start_tree(ctx);
        })));
    }

    fn child_failed(&mut self, reason: String, ctx: &mut Context<Self>) {
        self.stop_tree(ctx);
        if self.shutting_down || self.errored() {
            return;
        }
        if let Some(fault) = self.handle.write_fault() {
            return self.storage_failed(fault, ctx);
        }
        let now = self.node.clock.now();
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.failures.pop_front();
        }
        if self.failures.len() > MAX_RESTARTS {
            tracing::error!(channel = %self.handle.id(), %reason, failures = self.failures.len(), "channel keeps failing; marked errored");
            if let Some(pending) = self.pending_restart.take() {
                ctx.cancel_future(pending);
            }
            self.handle.set_chain(None, ChannelState::Errored(reason));
            return;
        }
        let attempt = self.handle.count_restart();
        let exponent = (self.failures.len() as u32).saturating_sub(1).min(6);
        let backoff = (FIRST_BACKOFF * 2u32.pow(exponent)).min(MAX_BACKOFF);
        tracing::warn!(channel = %self.handle.id(), %reason, attempt, ?backoff, "channel failed; restarting");
        self.handle
            .set_chain(None, ChannelState::Restarting { attempt, reason });
        self.schedule_restart(backoff, ctx);
    }

    /// The storage failed a write: the channel waits, unavailable, until it
    /// takes writes again.
    fn storage_failed(&mut self, fault: String, ctx: &mut Context<Self>) {
        if matches!(self.handle.state(), ChannelState::StorageFault(_)) {
            return;
        }
        let attempt = self.handle.count_restart();
        tracing::error!(channel = %self.handle.id(), %fault, attempt, "the channel's storage failed a write; nothing more is acknowledged until it takes writes again");
        self.handle
            .set_chain(None, ChannelState::StorageFault(fault));
        // A storage that passes the check and fails again at once (a bad
        // sector in the current file) must not be retried every 100 ms.
        let now = self.node.clock.now();
        let recent = self
            .resumed_at
            .is_some_and(|at| now.duration_since(at) < RESTART_WINDOW);
        if !recent {
            self.fault_backoff = FIRST_BACKOFF;
        }
        self.schedule_restart(self.fault_backoff, ctx);
    }

    /// Re-opens the block store and proves every faulty storage takes
    /// writes again (off the actor thread); starts the tree when it does.
    fn probe_storage(&mut self, ctx: &mut Context<Self>) {
        if self.probing {
            return;
        }
        self.probing = true;
        let store = self.handle.store().clone();
        let faults = self.handle.faults().clone();
        let config = self.handle.config();
        let room = (2 * u64::from(config.batch_size.absolute_max_bytes)).max(MIN_FREE_BYTES);
        let check = tokio::task::spawn_blocking(move || -> Result<(), (String, bool)> {
            let enough_room =
                |dir: &std::path::Path, what: &str| match super::fault::free_bytes(dir) {
                    Ok(free) if free < room => Err((
                        format!(
                            "{what}: {free} bytes free in {}, {room} needed",
                            dir.display()
                        ),
                        true,
                    )),
                    _ => Ok(()),
                };
            if store.fault().is_some() {
                enough_room(store.dir(), "ledger")?;
                store
                    .reopen(PROBE_BYTES)
                    .map_err(|e| (format!("ledger: {e}"), e.is_transient()))?;
            }
            if let Some(fault) = faults.current() {
                enough_room(&fault.dir, &fault.reason)?;
                super::fault::probe_dir(&fault.dir, PROBE_BYTES, fault.points)
                    .map_err(|e| (format!("{} (checked again: {e})", fault.reason), true))?;
                faults.clear();
            }
            Ok(())
        });
        ctx.spawn(check.into_actor(self).map(|result, act, ctx| {
            act.probing = false;
            if act.shutting_down {
                return;
            }
            let outcome = result.unwrap_or_else(|e| Err((format!("storage check: {e}"), true)));
            match outcome {
                Ok(()) => {
                    tracing::info!(channel = %act.handle.id(), "the channel's storage takes writes again; resuming");
                    act.resumed_at = Some(act.node.clock.now());
                    act.handle.set_chain(None, ChannelState::Starting);
                    act.start_tree(ctx);
                }
                Err((reason, true)) => {
                    let backoff = (act.fault_backoff * 2).min(MAX_FAULT_BACKOFF);
                    act.fault_backoff = backoff;
                    tracing::warn!(channel = %act.handle.id(), %reason, ?backoff, "the channel's storage still fails; checking again later");
                    act.handle
                        .set_chain(None, ChannelState::StorageFault(reason));
                    act.schedule_restart(backoff, ctx);
                }
                Err((reason, false)) => {
                    tracing::error!(channel = %act.handle.id(), %reason, "the channel's storage cannot be re-opened; channel errored");
                    act.handle.set_chain(None, ChannelState::Errored(reason));
                }
            }
        }));
    }

    fn is_current(&self, generation: u64) -> bool {
        generation == self.generation && self.tree.is_some()
    }
}

impl Actor for ChannelSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_tree(ctx);
    }
}

impl Handler<ChildFailed> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildFailed, ctx: &mut Context<Self>) {
        if !self.is_current(msg.generation) {
            tracing::debug!(channel = %self.handle.id(), generation = msg.generation, child = msg.child, reason = %msg.reason, "failure report of an old generation ignored");
            return;
        }
        self.child_failed(format!("{}: {}", msg.child, msg.reason), ctx);
    }
}

impl Handler<ChildStopped> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChildStopped, ctx: &mut Context<Self>) {
        if self.is_current(msg.generation) && !self.shutting_down {
            self.child_failed(
                format!(
                    "{}: the actor stopped unexpectedly (a panic, or a bug)",
                    msg.child
                ),
                ctx,
            );
        }
    }
}

impl Handler<TreeStopped> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: TreeStopped, ctx: &mut Context<Self>) {
        if self.winding_down != Some(msg.generation) {
            return;
        }
        tracing::debug!(channel = %self.handle.id(), generation = msg.generation, "old tree stopped");
        self.winding_down = None;
        for waiter in self.stop_waiters.drain(..) {
            let _ = waiter.send(());
        }
        if self.restart_due {
            self.start_tree(ctx);
        }
    }
}

impl Handler<Shutdown> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, ctx: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        if let Some(pending) = self.pending_restart.take() {
            ctx.cancel_future(pending);
        }
        let chain = self.tree.as_ref().and_then(|t| t.chain.clone());
        if chain.is_none() {
            // Nothing to halt (still starting, or down): stop what there is.
            self.stop_tree(ctx);
        }
        let channel = self.handle.id().to_string();
        let halt = async move {
            if let Some(chain) = chain {
                if tokio::time::timeout(STOP_PATIENCE, chain.halt.send(Halt))
                    .await
                    .is_err()
                {
                    tracing::warn!(%channel, "the chain did not halt in time; stopping it");
                }
            }
        };
        Box::pin(halt.into_actor(self).then(|_, act, ctx| {
            // Halted: the chain wrote its pending batch and stopped (or is
            // aborted now). Stop the rest and wait until its last member is gone.
            act.stop_tree(ctx);
            let (done, gone) = oneshot::channel();
            if act.winding_down.is_some() {
                act.stop_waiters.push(done);
            } else {
                let _ = done.send(());
            }
            let channel = act.handle.id().to_string();
            async move {
                if tokio::time::timeout(STOP_PATIENCE, gone).await.is_err() {
                    tracing::warn!(%channel, "the channel's tree did not stop in time");
                }
            }
            .into_actor(act)
            .map(|_, act, ctx| {
                act.handle.set_chain(None, ChannelState::Stopped);
                ctx.stop();
            })
        }))
    }
}

/// The ledger of the running tree, for fault injection in tests.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "Option<Addr<LedgerActor>>")]
pub struct LedgerOfTree;

#[cfg(test)]
impl Handler<LedgerOfTree> for ChannelSupervisor {
    type Result = Option<Addr<LedgerActor>>;

    fn handle(&mut self, _: LedgerOfTree, _: &mut Context<Self>) -> Self::Result {
        self.tree.as_ref().map(|t| t.ledger.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::runtime::blockcutter::OrderedMessage;
    use crate::runtime::channel::testing::{
        eventually, height_reaches, state_becomes, supervised, Supervised,
    };
    use crate::runtime::consensus::solo::{InjectPanic, SoloChain};
    use crate::runtime::consensus::{InflightPermit, Submit};
    use crate::runtime::ledger::GateWrites;
    use prost::Message as _;

    fn embedded(id: &str) -> Supervised {
        supervised(GenesisProfile::embedded(id, vec![]))
    }

    /// Orders one envelope on the channel and cuts it into a block by the
    /// batch timeout; returns the height the block makes.
    async fn order_one(channel: &Supervised, data: &'static [u8]) -> u64 {
        let target = channel.handle.store().height() + 1;
        submit_one(channel, data).await;
        height_reaches(&channel.handle, target).await;
        target
    }

    /// A round trip through the supervisor's mailbox: whatever it was woken
    /// for before (a back-off that ended) has been handled.
    async fn settle(channel: &Supervised) {
        channel
            .supervisor
            .send(LedgerOfTree)
            .await
            .expect("supervisor");
    }

    /// Every block links to the one before it.
    fn assert_chain_links(handle: &ChannelHandle) {
        let store = handle.store();
        for n in 1..store.height() {
            let previous = store.block(n - 1).expect("read").expect("block");
            let block = store.block(n).expect("read").expect("block");
            let expected =
                crate::fabric::blockutil::header_hash(previous.header.as_ref().expect("header"));
            assert_eq!(
                block.header.expect("header").previous_hash,
                expected,
                "block {n}"
            );
        }
    }

    #[actix_rt::test]
    async fn a_failed_chain_is_restarted_from_the_ledger() {
        let channel = embedded("c1");
        let handle = channel.handle.clone();
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        assert_eq!(handle.restarts(), 0);

        channel.supervisor.do_send(ChildFailed {
            generation: 1,
            child: "ledger",
            reason: "disk on fire".into(),
        });
        state_becomes(&handle, |s| *s != ChannelState::Active).await;
        assert_eq!(handle.chain_status().status.as_str(), "inactive");
        // A report from the old generation changes nothing.
        channel.supervisor.do_send(ChildFailed {
            generation: 1,
            child: "chain",
            reason: "late news".into(),
        });
        channel.clock.advance(FIRST_BACKOFF);
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        assert_eq!(handle.restarts(), 1);
        assert_eq!(handle.chain_status().status.as_str(), "active");
        order_one(&channel, b"after the restart").await;
    }

    /// Submits one envelope and runs the batch timer, without waiting for
    /// the block.
    async fn submit_one(channel: &Supervised, data: &'static [u8]) {
        let handle = &channel.handle;
        let chain = handle.chain().expect("running");
        let envelope = crate::fabric::envelopeutil::testing::transaction(
            handle.id(),
            bytes::Bytes::from_static(data),
        )
        .encode_to_vec();
        let submit = Submit {
            messages: vec![OrderedMessage {
                size: envelope.len(),
                envelope: envelope.into(),
            }],
            config_seq: handle.config().sequence,
            permit: InflightPermit::default(),
            received: std::time::Instant::now(),
        };
        assert_eq!(chain.submit.send(submit).await.expect("sent"), Ok(()));
        eventually("the batch timer runs", || channel.clock.sleepers() > 0).await;
        channel.clock.advance(handle.config().batch_timeout);
    }

    // The guard keeps other failpoint tests out for the whole test: a plain
    // mutex held across awaits on purpose.
    #[cfg(feature = "failpoints")]
    #[allow(clippy::await_holding_lock)]
    #[actix_rt::test]
    async fn a_write_fault_keeps_the_channel_unavailable_until_the_disk_takes_writes() {
        use crate::runtime::faults::{self, points};
        let _only_this_test = faults::exclusive();
        // The block that met the fault is lost when its record never became
        // durable, and indexed again on re-open when only the index failed.
        for (point, error, height) in [
            (points::LEDGER_APPEND_WRITE, "ENOSPC", 3),
            (points::LEDGER_APPEND_SYNC, "EIO", 3),
            (points::LEDGER_APPEND_INDEX, "EIO", 4),
            (points::LEDGER_APPEND_INDEX_FLUSH, "EMFILE", 4),
        ] {
            let channel = embedded("c1");
            let handle = channel.handle.clone();
            state_becomes(&handle, |s| *s == ChannelState::Active).await;
            order_one(&channel, b"durable").await;
            let scope = channel._dir.path().display().to_string();
            faults::configure(point, &format!("return({error}@{scope})")).expect("failpoint");

            submit_one(&channel, b"met the fault").await;
            state_becomes(&handle, |s| matches!(s, ChannelState::StorageFault(_))).await;
            let fault = handle.write_fault().expect("a write fault");
            assert!(fault.contains("ledger"), "{point}: {fault}");
            assert!(
                handle.chain().is_err(),
                "{point}: nothing accepts envelopes"
            );
            assert!(
                handle.store().block(1).expect("read").is_some(),
                "{point}: durable blocks stay readable"
            );

            // While the disk still fails, each check fails and the channel
            // stays down.
            let mut states = handle.subscribe_state();
            for _ in 0..2 {
                states.mark_unchanged();
                channel.clock.advance(MAX_FAULT_BACKOFF);
                let _ = tokio::time::timeout(Duration::from_secs(10), states.changed()).await;
                assert!(
                    matches!(handle.state(), ChannelState::StorageFault(_)),
                    "{point}: {}",
                    handle.state()
                );
            }

            faults::configure(point, "off").expect("failpoint off");
            channel.clock.advance(MAX_FAULT_BACKOFF);
            state_becomes(&handle, |s| *s == ChannelState::Active).await;
            assert!(handle.write_fault().is_none());
            order_one(&channel, b"after the fault").await;
            assert_chain_links(&handle);
            assert_eq!(handle.store().height(), height, "{point}");
        }
    }

    #[actix_rt::test]
    async fn a_channel_that_keeps_failing_is_marked_errored() {
        let channel = embedded("c1");
        let handle = channel.handle.clone();
        for _ in 0..=MAX_RESTARTS {
            state_becomes(&handle, |s| *s == ChannelState::Active).await;
            handle
                .chain()
                .expect("running")
                .report_unreachable("a test");
            state_becomes(&handle, |s| *s != ChannelState::Active).await;
            channel.clock.advance(MAX_BACKOFF);
        }
        state_becomes(&handle, |s| matches!(s, ChannelState::Errored(_))).await;
        // No restart that was already scheduled may bring it back.
        channel.clock.advance(MAX_BACKOFF * 10);
        settle(&channel).await;
        assert!(
            matches!(handle.state(), ChannelState::Errored(_)),
            "{:?}",
            handle.state()
        );
        let err = handle.chain().err().expect("no chain");
        assert!(err.contains("errored"), "{err}");
        assert_eq!(handle.restarts(), MAX_RESTARTS as u32);
        assert_eq!(handle.chain_status().status.as_str(), "failed");
    }

    #[actix_rt::test]
    async fn an_unsupported_consensus_type_errors_the_channel() {
        let mut profile = GenesisProfile::embedded("c1", vec![]);
        profile.consensus_type = "bft-of-the-future".into();
        let channel = supervised(profile);
        let handle = channel.handle.clone();
        match state_becomes(&handle, |s| matches!(s, ChannelState::Errored(_))).await {
            ChannelState::Errored(reason) => assert!(reason.contains("not supported"), "{reason}"),
            other => panic!("unexpected state {other:?}"),
        }
    }

    #[actix_rt::test]
    async fn a_panic_in_one_channels_chain_restarts_that_channel_only() {
        let (c1, c2) = (embedded("c1"), embedded("c2"));
        state_becomes(&c1.handle, |s| *s == ChannelState::Active).await;
        state_becomes(&c2.handle, |s| *s == ChannelState::Active).await;
        order_one(&c1, b"before").await;

        let chain = c1.handle.chain().expect("running");
        let actor = chain.actor.clone().expect("test handle");
        let solo = actor
            .downcast_ref::<Addr<SoloChain>>()
            .expect("a solo chain")
            .clone();
        solo.do_send(InjectPanic);
        let state = state_becomes(&c1.handle, |s| *s != ChannelState::Active).await;
        assert!(
            matches!(&state, ChannelState::Restarting { reason, .. } if reason.contains("chain")),
            "{state:?}"
        );
        // The other channel keeps ordering meanwhile, on the same thread.
        order_one(&c2, b"unaffected").await;
        assert_eq!(c2.handle.restarts(), 0);

        c1.clock.advance(FIRST_BACKOFF);
        state_becomes(&c1.handle, |s| *s == ChannelState::Active).await;
        assert_eq!(c1.handle.restarts(), 1);
        let height = order_one(&c1, b"after").await;
        assert_eq!(height, 3, "the chain continues where it was");
        assert_chain_links(&c1.handle);
    }

    #[actix_rt::test]
    async fn a_restart_waits_for_the_ledger_write_in_progress() {
        let channel = embedded("c1");
        let handle = channel.handle.clone();
        state_becomes(&handle, |s| *s == ChannelState::Active).await;

        // Hold the next ledger write on the blocking thread.
        let ledger = channel
            .supervisor
            .send(LedgerOfTree)
            .await
            .expect("supervisor")
            .expect("a running tree");
        let (entered_tx, mut entered) = tokio::sync::mpsc::channel(1);
        let (release, release_rx) = std::sync::mpsc::channel();
        ledger
            .send(GateWrites {
                entered: entered_tx,
                release: release_rx,
            })
            .await
            .expect("gated");
        let chain = handle.chain().expect("running");
        let envelope = crate::fabric::envelopeutil::testing::transaction(
            "c1",
            bytes::Bytes::from_static(b"x"),
        )
        .encode_to_vec();
        let submit = Submit {
            messages: vec![OrderedMessage {
                size: envelope.len(),
                envelope: envelope.into(),
            }],
            config_seq: 0,
            permit: InflightPermit::default(),
            received: std::time::Instant::now(),
        };
        assert_eq!(chain.submit.send(submit).await.expect("sent"), Ok(()));
        eventually("the batch timer runs", || channel.clock.sleepers() > 0).await;
        channel.clock.advance(handle.config().batch_timeout);
        entered.recv().await.expect("the write of block 1 started");

        // The tree fails while block 1 is being written.
        chain.report_unreachable("a test");
        state_becomes(&handle, |s| *s != ChannelState::Active).await;
        channel.clock.advance(MAX_BACKOFF);
        settle(&channel).await;
        assert!(
            matches!(handle.state(), ChannelState::Restarting { .. }),
            "no new tree while the old one still writes: {:?}",
            handle.state()
        );

        release.send(()).expect("release the write");
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        assert_eq!(handle.store().height(), 2, "block 1 was written, once");
        let height = order_one(&channel, b"after").await;
        assert_eq!(height, 3);
        assert_eq!(
            handle.restarts(),
            1,
            "no second failure (no out-of-order append)"
        );
        assert_chain_links(&handle);
    }

    #[actix_rt::test]
    async fn a_shutdown_right_after_the_start_stops_the_whole_tree() {
        let channel = embedded("c1");
        // Queued before the supervisor ever polled the chain's start.
        let stopped = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            channel.supervisor.send(Shutdown),
        )
        .await;
        assert!(matches!(stopped, Ok(Ok(()))), "the stop did not complete");
        assert_eq!(channel.handle.state(), ChannelState::Stopped);
        // Every member is gone: the ledger's writer is free again.
        channel
            .handle
            .store()
            .writer()
            .expect("no tree left writing");
    }
}
