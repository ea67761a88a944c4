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
//!
//! Emits to its owner, through one mailbox so their order is kept: [`BatchCut`],
//! [`BatchTimeoutExpired`], [`Drained`].
//!
//! The timer does not cut by itself: it tells the chain, which decides. Solo and
//! etcdraft cut at once; Kafka instead posts a time-to-cut message to the
//! partition so that every orderer cuts at the same offset.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;
use tokio::sync::OwnedSemaphorePermit;

use super::{Batch, BlockCutter, OrderedMessage};
use crate::channelconfig::BatchLimits;
use crate::metrics::ChannelMetrics;

/// Messages to add to the pending batch, in order.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Ordered {
    pub messages: Vec<OrderedMessage>,
    /// One permit per message that holds one (messages from Broadcast do).
    pub permit: Option<OwnedSemaphorePermit>,
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
    /// The message's in-flight permit.
    pub permit: Option<OwnedSemaphorePermit>,
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
    /// The permits of the batch's envelopes, to release once the block is durable.
    pub permit: Option<OwnedSemaphorePermit>,
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

/// Where a cutter sends its output: the mailbox of the chain that owns it.
#[derive(Clone)]
pub struct CutterOwner {
    pub batches: Recipient<BatchCut>,
    pub timeouts: Recipient<BatchTimeoutExpired>,
    pub drained: Recipient<Drained>,
}

impl CutterOwner {
    /// The three recipients of one actor that handles all the cutter's output.
    pub fn of<A>(addr: &Addr<A>) -> CutterOwner
    where
        A: Actor<Context = Context<A>>
            + Handler<BatchCut>
            + Handler<BatchTimeoutExpired>
            + Handler<Drained>,
    {
        CutterOwner {
            batches: addr.clone().recipient(),
            timeouts: addr.clone().recipient(),
            drained: addr.clone().recipient(),
        }
    }
}

pub struct CutterActor {
    cutter: BlockCutter,
    timeout: Duration,
    owner: CutterOwner,
    /// Running timer and its id.
    timer: Option<(SpawnHandle, u64)>,
    next_timer: u64,
    /// Permits of the pending messages (and of those being added).
    held: Option<OwnedSemaphorePermit>,
    /// When each pending message was read, oldest first. Batches are always
    /// the oldest pending messages, so their times come off the front.
    received: VecDeque<Instant>,
    metrics: Arc<ChannelMetrics>,
}

impl CutterActor {
    pub fn new(
        limits: BatchLimits,
        timeout: Duration,
        owner: CutterOwner,
        metrics: Arc<ChannelMetrics>,
    ) -> CutterActor {
        CutterActor {
            cutter: BlockCutter::new(limits),
            timeout,
            owner,
            timer: None,
            next_timer: 0,
            held: None,
            received: VecDeque::new(),
            metrics,
        }
    }

    fn emit(&mut self, batch: Batch) {
        if batch.is_empty() {
            return;
        }
        let permit = self.take_permits(batch.len());
        let take = batch.len().min(self.received.len());
        let received = self.received.drain(..take).collect();
        self.metrics.chain.sent();
        self.owner.batches.do_send(BatchCut {
            batch,
            is_config: false,
            permit,
            received,
        });
    }

    fn take_permits(&mut self, count: usize) -> Option<OwnedSemaphorePermit> {
        let held = self.held.as_mut()?;
        if held.num_permits() > count {
            held.split(count)
        } else {
            self.held.take()
        }
    }

    fn release_permits(&mut self, count: usize) {
        drop(self.take_permits(count));
    }

    fn start_timer(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_some() {
            return;
        }
        let id = self.next_timer;
        self.next_timer += 1;
        let handle = ctx.run_later(self.timeout, move |act, _| {
            act.metrics.chain.sent();
            act.owner
                .timeouts
                .do_send(BatchTimeoutExpired { timer: id });
        });
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
        self.emit(batch);
    }
}

impl Actor for CutterActor {
    type Context = Context<Self>;
}

impl Handler<Ordered> for CutterActor {
    type Result = ();

    fn handle(&mut self, msg: Ordered, ctx: &mut Context<Self>) {
        self.metrics.cutter.handled();
        match (&mut self.held, msg.permit) {
            (Some(held), Some(permit)) => held.merge(permit),
            (held @ None, permit) => *held = permit,
            (Some(_), None) => {}
        }
        for message in msg.messages {
            let outcome = self.cutter.ordered(message);
            if let Some(reason) = outcome.rejected {
                tracing::warn!(%reason, "message dropped by the blockcutter");
                self.release_permits(1);
            } else {
                self.received.push_back(msg.received);
            }
            for batch in outcome.batches {
                // Any cut stops the timer; it restarts below if messages remain.
                self.stop_timer(ctx);
                self.emit(batch);
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
        self.metrics.cutter.handled();
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
        self.metrics.cutter.handled();
        self.cut_pending(ctx);
        self.metrics.chain.sent();
        self.owner.drained.do_send(Drained);
    }
}

impl Handler<OrderedConfig> for CutterActor {
    type Result = ();

    fn handle(&mut self, msg: OrderedConfig, ctx: &mut Context<Self>) {
        self.metrics.cutter.handled();
        self.cut_pending(ctx);
        self.metrics.chain.sent();
        self.owner.batches.do_send(BatchCut {
            batch: vec![msg.message.envelope],
            is_config: true,
            permit: msg.permit,
            received: vec![msg.received],
        });
        self.cutter.set_limits(msg.limits);
        self.timeout = msg.timeout;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::sync::{Arc, Mutex};
    use tokio::sync::Semaphore;

    /// Records what a cutter sends and answers timeouts the way solo does.
    struct Owner {
        cutter: Option<Addr<CutterActor>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    impl Actor for Owner {
        type Context = Context<Self>;
    }

    impl Handler<BatchCut> for Owner {
        type Result = ();
        fn handle(&mut self, msg: BatchCut, _: &mut Context<Self>) {
            let permits = msg.permit.as_ref().map_or(0, |p| p.num_permits());
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

    fn start(timeout: Duration, max_count: u32) -> (Addr<CutterActor>, Arc<Mutex<Vec<String>>>) {
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
                CutterOwner::of(&ctx.address()),
                ChannelMetrics::detached("c"),
            )
            .start();
            cutter_addr = Some(cutter.clone());
            Owner {
                cutter: Some(cutter),
                log: log.clone(),
            }
        });
        (cutter_addr.expect("cutter started"), log)
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
        let (cutter, log) = start(Duration::from_millis(50), 10);
        cutter.do_send(Ordered {
            messages: vec![message(), message()],
            permit: None,
            received: Instant::now(),
        });
        let seen = seen(&log, 2).await;
        assert_eq!(seen, vec!["timeout", "batch 2 permits 0"]);
    }

    #[actix_rt::test]
    async fn permits_travel_with_their_batches() {
        let semaphore = Arc::new(Semaphore::new(10));
        let (cutter, log) = start(Duration::from_secs(60), 3);
        let permit = semaphore
            .clone()
            .acquire_many_owned(5)
            .await
            .expect("permits");
        cutter.do_send(Ordered {
            messages: vec![message(); 5],
            permit: Some(permit),
            received: Instant::now(),
        });
        cutter.do_send(Drain);
        let seen = seen(&log, 3).await;
        assert_eq!(
            seen,
            vec!["batch 3 permits 3", "batch 2 permits 2", "drained"]
        );
        // The owner dropped the batches, so every permit is back.
        assert_eq!(semaphore.available_permits(), 10);
    }

    #[actix_rt::test]
    async fn a_config_message_is_isolated_and_its_limits_apply_after_it() {
        let (cutter, log) = start(Duration::from_secs(60), 10);
        cutter.do_send(Ordered {
            messages: vec![message(), message()],
            permit: None,
            received: Instant::now(),
        });
        cutter.do_send(OrderedConfig {
            message: message(),
            permit: None,
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
            permit: None,
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
