//! LedgerActor: the single writer of a channel's block store, and the one
//! component that moves the channel's config on.
//!
//! Mailbox:
//! - [`AppendBlock`] (from the ChainActor): queue a block; answered by nothing.
//!   Blocks queued while a write is running are written together in the next
//!   one (group commit: one flush for many blocks).
//! - [`WaitDurable`] (from the ChainActor, on halt): answered once every block
//!   queued before it is durable.
//!
//! After a write: if it held a config block, the new config is published
//! (the config watch) *before* the height moves, so nobody can read a config
//! block while Broadcast still validates under the config before it. Then the
//! height moves: Deliver streams wake, and chains release the in-flight room
//! of the written blocks. On a failed write it reports to its supervisor and
//! stops. Writes run on the blocking pool so the actor thread never waits on
//! disk; the [`BlockWriter`] and a token of the tree go with each write, so a
//! restarted tree cannot start writing while the old write still runs.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{oneshot, watch};

use super::{BlockStore, BlockWriter};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::protos::common::Block;
use crate::runtime::channel::mailbox::{Gone, Mailbox};
use crate::runtime::channel::tree::ChildGuard;
use crate::runtime::faults::{self, points};
use crate::runtime::metrics::ChannelMetrics;

/// Queue a block for durable append. Its number must continue the chain.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppendBlock {
    pub block: Block,
    /// When Broadcast read each of the block's envelopes (for the latency metric).
    pub received: Vec<Instant>,
}

/// Answered with the durable height once every block queued before it is written.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct WaitDurable;

/// The tree stops: write what is queued, then stop (whoever still holds the
/// address).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retire;

/// How a chain reaches its ledger: counted mailboxes for blocks and for the
/// durable-height question.
#[derive(Clone)]
pub struct LedgerHandle {
    append: Mailbox<AppendBlock>,
    durable: Mailbox<WaitDurable>,
}

impl LedgerHandle {
    pub fn of(addr: &Addr<LedgerActor>, metrics: &ChannelMetrics) -> LedgerHandle {
        LedgerHandle {
            append: Mailbox::of(addr, &metrics.ledger),
            durable: Mailbox::of(addr, &metrics.ledger),
        }
    }

    /// Queues a block for durable append, or says the ledger is gone.
    pub fn append(&self, block: Block, received: Vec<Instant>) -> Result<(), Gone> {
        self.append.post(AppendBlock { block, received })
    }

    /// The durable height once every block queued before is written.
    pub async fn wait_durable(&self) -> Result<u64, String> {
        match self.durable.send(WaitDurable).await {
            Ok(answer) => answer,
            Err(e) => Err(format!("the ledger is gone: {e}")),
        }
    }
}

/// Publishes a channel's config. Only the LedgerActor holds it while a tree
/// runs; the supervisor keeps it between generations.
#[derive(Clone)]
pub struct ConfigPublisher(Arc<watch::Sender<Arc<ChannelConfig>>>);

impl ConfigPublisher {
    /// A publisher and the watch every reader subscribes to.
    pub fn new(config: ChannelConfig) -> (ConfigPublisher, watch::Receiver<Arc<ChannelConfig>>) {
        let (sender, receiver) = watch::channel(Arc::new(config));
        (ConfigPublisher(Arc::new(sender)), receiver)
    }

    fn publish(&self, config: Arc<ChannelConfig>) {
        self.0.send_replace(config);
    }
}

pub struct LedgerActor {
    store: BlockStore,
    /// `None` while a write runs: it travels with the write.
    writer: Option<BlockWriter>,
    config: ConfigPublisher,
    queue: Vec<AppendBlock>,
    /// Height once everything queued so far is written.
    queued_height: u64,
    sync_waiters: Vec<(u64, oneshot::Sender<Result<u64, String>>)>,
    guard: ChildGuard,
    metrics: Arc<ChannelMetrics>,
    retiring: bool,
    #[cfg(test)]
    gate: Option<Arc<std::sync::Mutex<GateWrites>>>,
}

/// Fault injection for tests: each following write says it started, then
/// waits for a release (or for the release's sender to be dropped).
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct GateWrites {
    pub entered: tokio::sync::mpsc::Sender<()>,
    pub release: std::sync::mpsc::Receiver<()>,
}

#[cfg(test)]
impl Handler<GateWrites> for LedgerActor {
    type Result = ();

    fn handle(&mut self, msg: GateWrites, _: &mut Context<Self>) {
        self.gate = Some(Arc::new(std::sync::Mutex::new(msg)));
    }
}

impl LedgerActor {
    /// The ledger of a tree, writing with `writer` and publishing `config`
    /// (the config of the chain's last config block) at once.
    pub fn new(
        writer: BlockWriter,
        config: ConfigPublisher,
        current: Arc<ChannelConfig>,
        guard: ChildGuard,
        metrics: Arc<ChannelMetrics>,
    ) -> LedgerActor {
        let store = writer.store().clone();
        let queued_height = store.height();
        metrics.height.set(queued_height as i64);
        config.publish(current);
        LedgerActor {
            store,
            writer: Some(writer),
            config,
            queue: Vec::new(),
            queued_height,
            sync_waiters: Vec::new(),
            guard,
            metrics,
            retiring: false,
            #[cfg(test)]
            gate: None,
        }
    }

    /// Metrics of blocks just made durable.
    fn record_durable(&self, sizes: &[usize], received: &[Instant]) {
        let m = &self.metrics;
        let now = Instant::now();
        m.blocks_committed.inc_by(sizes.len() as u64);
        m.blocks_inflight.dec_by(sizes.len() as i64);
        m.height.set(self.store.height() as i64);
        for &size in sizes {
            m.envelopes_per_block.observe(size as f64);
        }
        for &at in received {
            m.broadcast_to_block
                .observe(now.saturating_duration_since(at).as_secs_f64());
        }
    }

    fn start_write(&mut self, ctx: &mut Context<Self>) {
        if self.queue.is_empty() {
            if self.retiring && self.writer.is_some() {
                ctx.stop();
            }
            return;
        }
        let Some(mut writer) = self.writer.take() else {
            return; // a write runs; the queue goes with the next one
        };
        let mut blocks = Vec::with_capacity(self.queue.len());
        let mut received = Vec::new();
        for append in self.queue.drain(..) {
            blocks.push(append.block);
            received.extend(append.received);
        }
        let sizes: Vec<usize> = blocks
            .iter()
            .map(|b| crate::fabric::blockutil::entries(b).len())
            .collect();
        let publisher = self.config.clone();
        let token = self.guard.tree().token();
        #[cfg(test)]
        let gate = self.gate.clone();
        let write = tokio::task::spawn_blocking(move || {
            let _tree = token;
            #[cfg(test)]
            if let Some(gate) = gate {
                let gate = gate
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let _ = gate.entered.blocking_send(());
                let _ = gate.release.recv();
            }
            let outcome = write_and_publish(&mut writer, &blocks, &publisher);
            if outcome.is_err() {
                // Tests hold the tree here to show that nothing is
                // acknowledged between the fault and its report.
                let _ = faults::check(points::LEDGER_FAILURE_REPORT, writer.store().dir());
            }
            (writer, outcome)
        });
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            let outcome = match result {
                Ok((writer, outcome)) => {
                    act.writer = Some(writer);
                    outcome
                }
                Err(join) => Err(format!("ledger write task failed: {join}")),
            };
            match outcome {
                Ok(()) => {
                    act.record_durable(&sizes, &received);
                    act.answer_waiters();
                    act.start_write(ctx);
                }
                Err(reason) => act.fail(reason, ctx),
            }
        }));
    }

    fn answer_waiters(&mut self) {
        let height = self.store.height();
        let waiters = std::mem::take(&mut self.sync_waiters);
        for (target, reply) in waiters {
            if height >= target {
                let _ = reply.send(Ok(height));
            } else {
                self.sync_waiters.push((target, reply));
            }
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::error!(channel = %self.store.channel(), %reason, "ledger write failed; stopping the channel's ledger");
        for (_, reply) in self.sync_waiters.drain(..) {
            let _ = reply.send(Err(reason.clone()));
        }
        self.queue.clear();
        self.guard.report_failure(format!("ledger: {reason}"));
        ctx.stop();
    }
}

/// Appends durably; a config block among the blocks moves the config on
/// before the height moves. Blocking.
fn write_and_publish(
    writer: &mut BlockWriter,
    blocks: &[Block],
    config: &ConfigPublisher,
) -> Result<(), String> {
    writer.append(blocks).map_err(|e| e.to_string())?;
    if let Some(block) = blocks
        .iter()
        .rev()
        .find(|b| crate::fabric::blockutil::holds_channel_config(b))
    {
        let number = crate::fabric::blockutil::number(block);
        let next = ChannelConfig::from_config_block(block)
            .map_err(|e| format!("config block {number} was written but cannot be read: {e}"))?;
        config.publish(Arc::new(next));
    }
    writer.publish();
    Ok(())
}

impl Actor for LedgerActor {
    type Context = Context<Self>;
}

crate::counted_handlers!(LedgerActor: AppendBlock, WaitDurable);

impl Handler<AppendBlock> for LedgerActor {
    type Result = ();

    fn handle(&mut self, msg: AppendBlock, ctx: &mut Context<Self>) {
        self.queued_height = self
            .queued_height
            .max(crate::fabric::blockutil::number(&msg.block) + 1);
        self.queue.push(msg);
        self.start_write(ctx);
    }
}

impl Handler<Retire> for LedgerActor {
    type Result = ();

    fn handle(&mut self, _: Retire, ctx: &mut Context<Self>) {
        self.retiring = true;
        self.start_write(ctx);
    }
}

impl Handler<WaitDurable> for LedgerActor {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, _: WaitDurable, _: &mut Context<Self>) -> Self::Result {
        let target = self.queued_height;
        if self.store.height() >= target {
            let height = self.store.height();
            return Box::pin(async move { Ok(height) });
        }
        let (reply, answer) = oneshot::channel();
        self.sync_waiters.push((target, reply));
        Box::pin(async move {
            answer
                .await
                .unwrap_or_else(|_| Err("the ledger stopped before the blocks were written".into()))
        })
    }
}
