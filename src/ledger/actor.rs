//! LedgerActor: the single writer of a channel's block store.
//!
//! Mailbox:
//! - [`AppendBlock`] (from the ChainActor): queue a block; answered by nothing.
//!   Blocks queued while a write is running are written together in the next
//!   one (group commit: one flush for many blocks).
//! - [`Sync`] (from the ChainActor, on halt): answered once every block queued
//!   before it is durable.
//!
//! Emits [`LedgerFailed`] to its supervisor when a write fails, then stops.
//! Writes run on the blocking pool so the actor thread never waits on disk; the
//! in-flight permits of a block's envelopes are released only once it is durable.

use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use tokio::sync::{oneshot, OwnedSemaphorePermit};

use super::BlockStore;
use crate::metrics::ChannelMetrics;
use crate::protos::common::Block;

/// Queue a block for durable append. Its number must continue the chain.
#[derive(Message)]
#[rtype(result = "()")]
pub struct AppendBlock {
    pub block: Block,
    /// In-flight permits of the block's envelopes, released once the block is on disk.
    pub permit: Option<OwnedSemaphorePermit>,
    /// When Broadcast read each of the block's envelopes (for the latency metric).
    pub received: Vec<Instant>,
}

/// Answered with the durable height once every block queued before it is written.
#[derive(Message)]
#[rtype(result = "Result<u64, String>")]
pub struct Sync;

/// Sent to the supervisor when the store cannot be written.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct LedgerFailed {
    pub channel: String,
    pub reason: String,
}

pub struct LedgerActor {
    store: BlockStore,
    queue: Vec<AppendBlock>,
    writing: bool,
    /// Height once everything queued so far is written.
    queued_height: u64,
    sync_waiters: Vec<(u64, oneshot::Sender<Result<u64, String>>)>,
    on_failure: Recipient<LedgerFailed>,
    metrics: Arc<ChannelMetrics>,
}

impl LedgerActor {
    pub fn new(
        store: BlockStore,
        on_failure: Recipient<LedgerFailed>,
        metrics: Arc<ChannelMetrics>,
    ) -> LedgerActor {
        let queued_height = store.height();
        metrics.height.set(queued_height as i64);
        LedgerActor {
            store,
            queue: Vec::new(),
            writing: false,
            queued_height,
            sync_waiters: Vec::new(),
            on_failure,
            metrics,
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
        if self.writing || self.queue.is_empty() {
            return;
        }
        self.writing = true;
        let mut blocks = Vec::with_capacity(self.queue.len());
        let mut permits = Vec::with_capacity(self.queue.len());
        let mut received = Vec::new();
        for append in self.queue.drain(..) {
            blocks.push(append.block);
            permits.push(append.permit);
            received.extend(append.received);
        }
        let sizes: Vec<usize> = blocks
            .iter()
            .map(|b| crate::blockutil::entries(b).len())
            .collect();
        let store = self.store.clone();
        let write = tokio::task::spawn_blocking(move || store.append(&blocks));
        ctx.spawn(write.into_actor(self).map(move |result, act, ctx| {
            act.writing = false;
            let outcome = match result {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(join) => Err(format!("ledger write task failed: {join}")),
            };
            // Durable (or failed): either way the envelopes are no longer held here.
            drop(permits);
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
        self.on_failure.do_send(LedgerFailed {
            channel: self.store.channel().to_string(),
            reason,
        });
        ctx.stop();
    }
}

impl Actor for LedgerActor {
    type Context = Context<Self>;
}

impl Handler<AppendBlock> for LedgerActor {
    type Result = ();

    fn handle(&mut self, msg: AppendBlock, ctx: &mut Context<Self>) {
        self.metrics.ledger.handled();
        self.queued_height = self
            .queued_height
            .max(crate::blockutil::number(&msg.block) + 1);
        self.queue.push(msg);
        self.start_write(ctx);
    }
}

impl Handler<Sync> for LedgerActor {
    type Result = ResponseFuture<Result<u64, String>>;

    fn handle(&mut self, _: Sync, _: &mut Context<Self>) -> Self::Result {
        self.metrics.ledger.handled();
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
