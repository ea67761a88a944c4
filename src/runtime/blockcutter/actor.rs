//! CutterActor: a channel's pending batch and batch timer.
//!
//! Mailbox:
//! - [`Ordered`] (from the ChainActor): messages in their final order, with their
//!   in-flight permits. Completed batches go out as [`BatchCut`].
//! - [`CutPending`] (from the ChainActor): cut whatever is pending. Carries the
//!   timer id of the [`BatchTimeoutExpired`] it answers, so a timeout that raced
//!   with a cut does not cut the next batch early.
//! - [`Drain`] (from the ChainActor, on halt): cut what is pending, then send
//!   [`Drained`].
//! - [`OrderedConfig`] (from the ChainActor): a config message. The pending
//!   batch is cut, the config message becomes a batch of its own, and the new
//!   BatchSize / BatchTimeout apply to every message after it. Carrying the new
//!   limits with the message keeps them in step with the order of messages.
//! - [`StopCutter`] (from the ChainActor, when it stops): stop now; pending
//!   messages and their in-flight room are dropped with the actor.
//!
//! Emits to its owner, through one mailbox so their order is kept: [`BatchCut`],
//! [`BatchTimeoutExpired`], [`Drained`].
//!
//! The timer does not cut by itself: it tells the chain, which decides. Solo and
//! etcdraft cut at once; Kafka instead posts a time-to-cut message to the
//! partition so that every orderer cuts at the same offset.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{Batch, BlockCutter, OrderedMessage};
use crate::fabric::channelconfig::BatchLimits;
use crate::runtime::channel::mailbox::{self, Counted, Mailbox};
use crate::runtime::channel::tree::ChildGuard;
use crate::runtime::clock::Clock;
use crate::runtime::consensus::InflightPermit;
use crate::runtime::metrics::ActorMetrics;

/// Messages to add to the pending batch, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ordered {
    pub messages: Vec<OrderedMessage>,
    /// The messages' in-flight room (messages from Broadcast hold one envelope
    /// permit each and their encoded size in bytes).
    pub permit: InflightPermit,
    /// When Broadcast read the messages.
    pub received: Instant,
}

/// Cut the pending batch. `timer`: the id of the timeout being answered, or `None`
/// to cut unconditionally.
#[derive(Message)]
#[rtype(result = "()")]
pub struct CutPending {
    pub timer: Option<u64>,
}

/// Cut what is pending, then answer with [`Drained`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drain;

/// A config message: isolated in a batch of its own; the limits and timeout
/// of the config it makes apply from the next message on.
#[derive(Message)]
#[rtype(result = "()")]
pub struct OrderedConfig {
    pub message: OrderedMessage,
    /// The message's in-flight room.
    pub permit: InflightPermit,
    pub limits: BatchLimits,
    pub timeout: Duration,
    pub received: Instant,
}

/// A batch is complete and must become the next block.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BatchCut {
    pub batch: Batch,
    /// The batch is one config message, to be written as a config block.
    pub is_config: bool,
    /// The in-flight room of the batch's envelopes, to release once the
    /// block that holds them is written.
    pub permit: InflightPermit,
    /// When Broadcast read each of the batch's envelopes.
    pub received: Vec<Instant>,
}

/// The batch timer fired for the pending batch.
#[derive(Message)]
#[rtype(result = "()")]
pub struct BatchTimeoutExpired {
    pub timer: u64,
}

/// Everything that was pending before [`Drain`] has been sent as [`BatchCut`].
#[derive(Message)]
#[rtype(result = "()")]
pub struct Drained;

/// Stop the cutter now (its owner stopped).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopCutter;

/// Where a cutter sends its output: the mailbox of the chain that owns it.
#[derive(Clone)]
pub struct CutterOwner {
    pub batches: Mailbox<BatchCut>,
    pub timeouts: Mailbox<BatchTimeoutExpired>,
    pub drained: Mailbox<Drained>,
}

impl CutterOwner {
    /// The mailboxes of one actor that takes all the cutter's output
    /// (`counted_handlers!(Chain: BatchCut, BatchTimeoutExpired, Drained)`),
    /// counted in `metrics`.
    pub fn of<A>(addr: &Addr<A>, metrics: &ActorMetrics) -> CutterOwner
    where
        A: Actor<Context = Context<A>>
            + Handler<Counted<BatchCut>>
            + Handler<Counted<BatchTimeoutExpired>>
            + Handler<Counted<Drained>>,
    {
        CutterOwner {
            batches: Mailbox::of(addr, metrics),
            timeouts: Mailbox::of(addr, metrics),
            drained: Mailbox::of(addr, metrics),
        }
    }
}

/// How a chain reaches its cutter.
#[derive(Clone)]
pub struct CutterHandle {
    pub ordered: Mailbox<Ordered>,
    pub config: Mailbox<OrderedConfig>,
    pub cut: Mailbox<CutPending>,
    pub drain: Mailbox<Drain>,
    stop: Recipient<StopCutter>,
}

impl CutterHandle {
    /// Starts `cutter` on the current arbiter; its mailbox is counted in `metrics`.
    pub fn start(cutter: CutterActor, metrics: &ActorMetrics) -> CutterHandle {
        let addr = cutter.start();
        CutterHandle {
            ordered: Mailbox::of(&addr, metrics),
            config: Mailbox::of(&addr, metrics),
            cut: Mailbox::of(&addr, metrics),
            drain: Mailbox::of(&addr, metrics),
            stop: addr.recipient(),
        }
    }

    /// Stops the cutter now (its owner stops).
    pub fn stop(&self) {
        let _ = mailbox::post(&self.stop, StopCutter);
    }
}

pub struct CutterActor {
    cutter: BlockCutter,
    timeout: Duration,
    owner: CutterOwner,
    clock: Clock,
    /// Running timer and its id.
    timer: Option<(SpawnHandle, u64)>,
    next_timer: u64,
    /// In-flight room of the pending messages (and of those being added).
    held: InflightPermit,
    /// When each pending message was read, oldest first. Batches are always
    /// the oldest pending messages, so their times come off the front.
    received: VecDeque<Instant>,
    /// Membership of the channel's tree, when the cutter runs in one.
    guard: Option<ChildGuard>,
}

impl CutterActor {
    pub fn new(
        limits: BatchLimits,
        timeout: Duration,
        owner: CutterOwner,
        clock: Clock,
    ) -> CutterActor {
        CutterActor {
            cutter: BlockCutter::new(limits),
            timeout,
            owner,
            clock,
            timer: None,
            next_timer: 0,
            held: InflightPermit::default(),
            received: VecDeque::new(),
            guard: None,
        }
    }

    /// Runs the cutter as a member of a channel's tree: its stop is reported.
    pub fn in_tree(mut self, guard: ChildGuard) -> CutterActor {
        self.guard = Some(guard);
        self
    }

    /// Sends to the owner; a gone owner means the chain stopped: so do we,
    /// and the tree's supervisor hears of it.
    fn send_to_owner<M>(&mut self, mailbox: &Mailbox<M>, message: M, ctx: &mut Context<Self>)
    where
        M: Message<Result = ()> + Send + 'static,
    {
        if mailbox.post(message).is_err() {
            if let Some(guard) = &self.guard {
                guard.report_failure("the chain stopped taking the cutter's batches");
            }
            ctx.stop();
        }
    }

    fn emit(&mut self, batch: Batch, ctx: &mut Context<Self>) {
        if batch.is_empty() {
            return;
        }
        let bytes = batch.iter().map(|e| e.len()).sum();
        let permit = self.held.split(batch.len(), bytes);
        let take = batch.len().min(self.received.len());
        let received = self.received.drain(..take).collect();
        let owner = self.owner.batches.clone();
        self.send_to_owner(
            &owner,
            BatchCut {
                batch,
                is_config: false,
                permit,
                received,
            },
            ctx,
        );
    }

    fn start_timer(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_some() {
            return;
        }
        let id = self.next_timer;
        self.next_timer += 1;
        let expiry = self.clock.sleep(self.timeout).into_actor(self);
        let handle = ctx.spawn(expiry.map(move |_, act, ctx| {
            let owner = act.owner.timeouts.clone();
            act.send_to_owner(&owner, BatchTimeoutExpired { timer: id }, ctx);
        }));
        self.timer = Some((handle, id));
    }

    fn stop_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some((handle, _)) = self.timer.take() {
            ctx.cancel_future(handle);
        }
    }

    fn cut_pending(&mut self, ctx: &mut Context<Self>) {
        self.stop_timer(ctx);
        let batch = self.cutter.cut();
        self.emit(batch, ctx);
    }
}

impl Actor for CutterActor {
    type Context = Context<Self>;
}

crate::counted_handlers!(CutterActor: Ordered, CutPending, Drain, OrderedConfig);

impl Handler<Ordered> for CutterActor {
    type Result = ();

    fn handle(&mut self, msg: Ordered, ctx: &mut Context<Self>) {
        self.held.merge(msg.permit);
        for message in msg.messages {
            let bytes = message.envelope.len();
            let outcome = self.cutter.ordered(message);
            if let Some(reason) = outcome.rejected {
                tracing::warn!(%reason, "message dropped by the blockcutter");
                drop(self.held.split(1, bytes));
            } else {
                self.received.push_back(msg.received);
            }
            for batch in outcome.batches {
                // Any cut stops the timer; it restarts below if messages remain.
                self.stop_timer(ctx);
                self.emit(batch, ctx);
            }
            if outcome.pending {
                self.start_timer(ctx);
            } else {
                self.stop_timer(ctx);
            }
        }
    }
}

impl Handler<CutPending> for CutterActor {
    type Result = ();

    fn handle(&mut self, msg: CutPending, ctx: &mut Context<Self>) {
        let current = self.timer.as_ref().map(|(_, id)| *id);
        match msg.timer {
            // The timeout belongs to a batch that was already cut.
            Some(id) if current != Some(id) => {}
            _ => self.cut_pending(ctx),
        }
    }
}

impl Handler<Drain> for CutterActor {
    type Result = ();

    fn handle(&mut self, _: Drain, ctx: &mut Context<Self>) {
        self.cut_pending(ctx);
        let owner = self.owner.drained.clone();
        self.send_to_owner(&owner, Drained, ctx);
    }
}

impl Handler<StopCutter> for CutterActor {
    type Result = ();

    fn handle(&mut self, _: StopCutter, ctx: &mut Context<Self>) {
        // Its owner stops it: the owner reports if that was not planned.
        if let Some(guard) = self.guard.take() {
            guard.retire();
        }
        ctx.stop();
    }
}

impl Handler<OrderedConfig> for CutterActor {
    type Result = ();

    fn handle(&mut self, msg: OrderedConfig, ctx: &mut Context<Self>) {
        self.cut_pending(ctx);
        let owner = self.owner.batches.clone();
        self.send_to_owner(
            &owner,
            BatchCut {
                batch: vec![msg.message.envelope],
                is_config: true,
                permit: msg.permit,
                received: vec![msg.received],
            },
            ctx,
        );
        self.cutter.set_limits(msg.limits);
        self.timeout = msg.timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::clock::{Clock, ManualClock};
    use crate::runtime::consensus::InflightRoom;
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};

    /// Records what a cutter sends and answers timeouts the way solo does.
    struct Owner {
        cutter: Option<Addr<CutterActor>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Actor for Owner {
        type Context = Context<Self>;
    }

    crate::counted_handlers!(Owner: BatchCut, BatchTimeoutExpired, Drained);

    impl Handler<BatchCut> for Owner {
        type Result = ();
        fn handle(&mut self, msg: BatchCut, _: &mut Context<Self>) {
            let permits = msg.permit.envelopes();
            let kind = if msg.is_config { "config" } else { "batch" };
            self.log
                .lock()
                .expect("log")
                .push(format!("{kind} {} permits {permits}", msg.batch.len()));
        }
    }

    impl Handler<BatchTimeoutExpired> for Owner {
        type Result = ();
        fn handle(&mut self, msg: BatchTimeoutExpired, _: &mut Context<Self>) {
            self.log.lock().expect("log").push("timeout".into());
            if let Some(cutter) = &self.cutter {
                cutter.do_send(CutPending {
                    timer: Some(msg.timer),
                });
            }
        }
    }

    impl Handler<Drained> for Owner {
        type Result = ();
        fn handle(&mut self, _: Drained, _: &mut Context<Self>) {
            self.log.lock().expect("log").push("drained".into());
        }
    }

    fn message() -> OrderedMessage {
        OrderedMessage {
            envelope: Bytes::from_static(b"m"),
            size: 1,
        }
    }

    fn start(
        timeout: Duration,
        max_count: u32,
    ) -> (Addr<CutterActor>, Arc<Mutex<Vec<String>>>, ManualClock) {
        let (clock, hand) = Clock::manual();
        let log = Arc::new(Mutex::new(Vec::new()));
        let limits = BatchLimits {
            max_message_count: max_count,
            absolute_max_bytes: 100,
            preferred_max_bytes: 100,
        };
        let mut cutter_addr = None;
        Owner::create(|ctx| {
            let cutter = CutterActor::new(
                limits,
                timeout,
                CutterOwner::of(&ctx.address(), &ActorMetrics::default()),
                clock,
            )
            .start();
            cutter_addr = Some(cutter.clone());
            Owner {
                cutter: Some(cutter),
                log: log.clone(),
            }
        });
        (cutter_addr.expect("cutter started"), log, hand)
    }

    /// Waits (bounded) until the owner has seen `count` messages.
    async fn seen(log: &Arc<Mutex<Vec<String>>>, count: usize) -> Vec<String> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let seen = log.lock().expect("log").clone();
            if seen.len() >= count || tokio::time::Instant::now() > deadline {
                return seen;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[actix_rt::test]
    async fn batch_timeout_cuts_the_pending_batch() {
        let (cutter, log, clock) = start(Duration::from_millis(50), 10);
        cutter
            .send(Ordered {
                messages: vec![message(), message()],
                permit: InflightPermit::default(),
                received: Instant::now(),
            })
            .await
            .expect("ordered");
        clock.advance(Duration::from_millis(49));
        // A round trip through the mailbox: had the timer fired, its report
        // would be in the log by now.
        cutter
            .send(CutPending {
                timer: Some(u64::MAX),
            })
            .await
            .expect("sent");
        assert!(
            log.lock().expect("log").is_empty(),
            "not before the timeout"
        );
        clock.advance(Duration::from_millis(1));
        let seen = seen(&log, 2).await;
        assert_eq!(seen, vec!["timeout", "batch 2 permits 0"]);
    }

    #[actix_rt::test]
    async fn permits_travel_with_their_batches() {
        let room = InflightRoom::new(10, 100);
        let (cutter, log, _clock) = start(Duration::from_secs(60), 3);
        let permit = room.try_take_exact(5, 5).expect("room");
        cutter.do_send(Ordered {
            messages: vec![message(); 5],
            permit,
            received: Instant::now(),
        });
        cutter.do_send(Drain);
        let seen = seen(&log, 3).await;
        assert_eq!(
            seen,
            vec!["batch 3 permits 3", "batch 2 permits 2", "drained"]
        );
        // The owner dropped the batches, so all the room is back.
        assert_eq!((room.envelopes_held(), room.bytes_held()), (0, 0));
    }

    #[actix_rt::test]
    async fn a_config_message_is_isolated_and_its_limits_apply_after_it() {
        let (cutter, log, _clock) = start(Duration::from_secs(60), 10);
        cutter.do_send(Ordered {
            messages: vec![message(), message()],
            permit: InflightPermit::default(),
            received: Instant::now(),
        });
        cutter.do_send(OrderedConfig {
            message: message(),
            permit: InflightPermit::default(),
            limits: BatchLimits {
                max_message_count: 1,
                absolute_max_bytes: 100,
                preferred_max_bytes: 100,
            },
            timeout: Duration::from_secs(60),
            received: Instant::now(),
        });
        cutter.do_send(Ordered {
            messages: vec![message(), message()],
            permit: InflightPermit::default(),
            received: Instant::now(),
        });
        let seen = seen(&log, 4).await;
        assert_eq!(
            seen,
            vec![
                "batch 2 permits 0",
                "config 1 permits 0",
                "batch 1 permits 0",
                "batch 1 permits 0"
            ]
        );
    }
}
