//! ProposerActor: runs on the Raft leader only, from becomeLeader (once the
//! leader's log is applied) to becomeFollower. It owns the CutterActor and
//! the block creator, built from the last block written, and turns each
//! batch into the next block, which it hands to the chain to propose.
//!
//! Mailbox:
//! - [`BatchCut`] (from the CutterActor): make the next block over the batch
//!   (data hash and header, on the blocking pool; the proposer waits so
//!   blocks keep their order) and send [`Propose`] to the chain. Blocks are
//!   not signed here: every consenter signs the block it writes.
//! - [`BatchTimeoutExpired`] (from the CutterActor): cut the pending batch.
//! - [`StopProposing`] (from the chain, on becomeFollower or halt): ask the
//!   cutter to drain, so the pending batch comes back as `Propose` too (the
//!   chain, no longer leader, sends its envelopes on to the new leader), then stop.
//! - [`Drained`] (from the CutterActor): everything pending was cut: tell
//!   the chain ([`ProposerStopped`]) and stop.

use std::time::Instant;

use actix::prelude::*;

use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::protos::common::Block;
use crate::runtime::blockcutter::{
    BatchCut, BatchTimeoutExpired, CutPending, CutterActor, CutterHandle, CutterOwner, Drain,
    Drained,
};
use crate::runtime::channel::mailbox::Mailbox;
use crate::runtime::channel::tree::{ChildGuard, TreeMembership};
use crate::runtime::clock::Clock;
use crate::runtime::consensus::{BlockCreator, InflightPermit};
use crate::runtime::metrics::ChannelMetrics;

/// A block made by the proposer of leadership `term`, for the chain to propose.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Propose {
    pub term: u64,
    pub block: Block,
    pub is_config: bool,
    pub permit: InflightPermit,
    pub received: Vec<Instant>,
}

/// The proposer of leadership `term` handed back everything and stopped.
#[derive(Message)]
#[rtype(result = "()")]
pub struct ProposerStopped {
    pub term: u64,
}

/// Stop proposing: drain the cutter, hand back what was pending, stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopProposing;

/// Where a proposer sends its output: the chain's mailboxes.
pub struct ProposerOwner {
    pub proposals: Mailbox<Propose>,
    pub stopped: Mailbox<ProposerStopped>,
}

/// How the chain reaches its proposer and, through it, the cutter.
pub struct ProposerHandle {
    pub cutter: CutterHandle,
    addr: Addr<ProposerActor>,
}

impl ProposerHandle {
    /// Starts a proposer for leadership `term`, continuing from `creator`.
    pub fn start(
        term: u64,
        creator: BlockCreator,
        config: &ChannelConfig,
        owner: ProposerOwner,
        tree: &TreeMembership,
        metrics: &ChannelMetrics,
        clock: Clock,
    ) -> ProposerHandle {
        let guard = tree.member("proposer");
        let cutter_guard = tree.member("cutter");
        let (limits, timeout) = (config.batch_size, config.batch_timeout);
        let cutter_metrics = metrics.cutter.clone();
        let proposer_metrics = metrics.proposer.clone();
        let ctx = Context::new();
        let addr = ctx.address();
        let cutter = CutterActor::new(
            limits,
            timeout,
            CutterOwner::of(&addr, &proposer_metrics),
            clock,
        )
        .in_tree(cutter_guard);
        let cutter = CutterHandle::start(cutter, &cutter_metrics);
        ctx.run(ProposerActor {
            term,
            creator,
            cutter: cutter.clone(),
            chain: owner.proposals,
            stopped: owner.stopped,
            stopping: false,
            guard: Some(guard),
        });
        ProposerHandle { cutter, addr }
    }

    /// Stops proposing; what was pending comes back to the chain as `Propose`.
    pub fn stop(&self) {
        self.addr.do_send(StopProposing);
    }
}

pub struct ProposerActor {
    term: u64,
    creator: BlockCreator,
    cutter: CutterHandle,
    chain: Mailbox<Propose>,
    stopped: Mailbox<ProposerStopped>,
    stopping: bool,
    /// Retired when the proposer stops because it was told to.
    guard: Option<ChildGuard>,
}

impl Actor for ProposerActor {
    type Context = Context<Self>;

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.cutter.stop();
    }
}

crate::counted_handlers!(ProposerActor: BatchCut, BatchTimeoutExpired, Drained);

impl Handler<BatchCut> for ProposerActor {
    type Result = ();

    fn handle(&mut self, msg: BatchCut, ctx: &mut Context<Self>) {
        // Only a CONFIG envelope makes a config block; a system channel's
        // channel creation is alone in its block but moves no config.
        let is_config = msg.is_config
            && msg
                .batch
                .iter()
                .all(|e| crate::fabric::blockutil::is_config_envelope(e));
        let next = self.creator.next_block(is_config);
        let batch = msg.batch;
        let making = tokio::task::spawn_blocking(move || next.make_unsigned(batch));
        let (permit, received) = (msg.permit, msg.received);
        ctx.wait(making.into_actor(self).map(move |made, act, ctx| {
            let block = match made {
                Ok(block) => block,
                Err(e) => {
                    tracing::error!(error = %e, "making a block failed; the proposer stops");
                    ctx.stop();
                    return;
                }
            };
            act.creator.made(&block);
            let propose = Propose {
                term: act.term,
                block,
                is_config,
                permit,
                received,
            };
            if act.chain.post(propose).is_err() {
                ctx.stop();
            }
        }));
    }
}

impl Handler<BatchTimeoutExpired> for ProposerActor {
    type Result = ();

    fn handle(&mut self, msg: BatchTimeoutExpired, ctx: &mut Context<Self>) {
        if self.stopping {
            return;
        }
        let cut = CutPending {
            timer: Some(msg.timer),
        };
        if self.cutter.cut.post(cut).is_err() {
            ctx.stop();
        }
    }
}

impl Handler<StopProposing> for ProposerActor {
    type Result = ();

    fn handle(&mut self, _: StopProposing, ctx: &mut Context<Self>) {
        if std::mem::replace(&mut self.stopping, true) {
            return;
        }
        if self.cutter.drain.post(Drain).is_err() {
            ctx.stop();
        }
    }
}

impl Handler<Drained> for ProposerActor {
    type Result = ();

    fn handle(&mut self, _: Drained, ctx: &mut Context<Self>) {
        // Queued behind every `BatchCut` of the drain, and blocks are made
        // with `ctx.wait`: everything pending has been handed back.
        if self.stopping {
            if let Some(guard) = self.guard.take() {
                guard.retire();
            }
            let _ = self.stopped.post(ProposerStopped { term: self.term });
        }
        ctx.stop();
    }
}
