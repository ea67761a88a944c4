//! The ChainActor of a Kafka channel.
//!
//! Mailbox:
//! - [`Submit`] / [`Configure`] (from Broadcast): each message is posted to
//!   the channel's partition as a REGULAR record (NORMAL or CONFIG) with the
//!   config sequence it was validated at; answered SUCCESS once the broker
//!   has every record of the submission, SERVICE_UNAVAILABLE while the chain
//!   is connecting, errored or halting. The submission's in-flight room is
//!   held under the offset of its last record, and released once a block
//!   that accounts for that offset is written.
//! - [`KafkaBatch`] (from the CutterActor): make the block, with the
//!   batch's offsets as its consenter metadata, sign it off the actor
//!   thread, and hand it to the LedgerActor.
//! - [`PartitionHealth`] (from the ConsumerActor): the partition cannot be
//!   read (the chain is errored: Broadcast and Deliver are refused) or can
//!   again.
//! - [`Halt`] / [`Abort`] (from the ChannelSupervisor).
//! - Stream: the ledger height (releases in-flight room).
//!
//! Start-up, on the actor, before anything is admitted: create the topic
//! if missing, create the producer, post CONNECT and wait for it (the
//! partition takes writes), create the consumer assigned to partition 0 from
//! the offset after the last block's `last_offset_persisted`, then start the
//! CutterActor and the ConsumerActor. Each failed attempt is retried every
//! Kafka.Retry.ShortInterval for ShortTotal, then every LongInterval for
//! LongTotal; meanwhile the chain is errored. When both are spent the chain
//! reports a failure and its supervisor starts it again.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use futures::future::join_all;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::WatchStream;
use tokio_util::sync::CancellationToken;

use super::brokers_of;
use super::client::{self, PartitionError, PartitionProducer, PostFailure};
use super::consumer::{ConsumerActor, PartitionHealth, StopConsumer};
use super::cutter::{CutterParts, KafkaBatch, KafkaCutter, Settled};
use super::record::{Offsets, Record, Regular};
use crate::fabric::blockutil;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::PolicyEvaluator;
use crate::fabric::localconfig::kafka::KafkaSettings;
use crate::runtime::blockcutter::StopCutter;
use crate::runtime::channel::mailbox::{self, Mailbox};
use crate::runtime::channel::tree::{ChildGuard, TreeMembership};
use crate::runtime::clock::Clock;
use crate::runtime::consensus::{
    Abort, BlockCreator, ChainStatus, ChainSupport, Configure, Halt, InflightPermit, NodeResources,
    StatusPublisher, Submit, SubmitError,
};
use crate::runtime::ledger::{BlockStore, LedgerHandle};
use crate::runtime::metrics::ChannelMetrics;
use crate::runtime::msgprocessor::RuleSet;
use crate::security::signer::SigningIdentity;

/// The clients and actors of a connected chain.
struct Connected {
    producer: PartitionProducer,
    cutter: Addr<KafkaCutter>,
    consumer: Addr<ConsumerActor>,
    /// Ends the children's waits when the chain stops.
    stop: CancellationToken,
}

/// Where the start-up stands.
enum Phase {
    Connecting,
    Running(Connected),
}

pub struct KafkaChain {
    channel_id: String,
    settings: Arc<KafkaSettings>,
    brokers: Vec<String>,
    config: watch::Receiver<Arc<ChannelConfig>>,
    filters: Arc<RuleSet>,
    policies: Arc<dyn PolicyEvaluator>,
    metrics: Arc<ChannelMetrics>,
    store: BlockStore,
    ledger: LedgerHandle,
    status: StatusPublisher,
    tree: TreeMembership,
    signer: Arc<SigningIdentity>,
    clock: Clock,
    creator: BlockCreator,
    /// The offsets of the last block written when the chain started.
    start_offsets: Offsets,
    phase: Phase,
    /// Why the partition cannot be reached now, if it cannot.
    errored: Option<String>,
    /// The consumer reported it cannot read, and has not read since.
    consumer_lost: bool,
    /// When the current run of failures began.
    failing_since: Option<Instant>,
    /// In-flight room of posted submissions, by the offset of their last record.
    permits: BTreeMap<i64, InflightPermit>,
    /// Blocks handed to the ledger, with the last offset each accounts for.
    blocks: VecDeque<(u64, i64)>,
    /// The last offset accounted for by a written block.
    written_through: i64,
    height: watch::Receiver<u64>,
    halt_waiters: Option<Vec<oneshot::Sender<()>>>,
    guard: ChildGuard,
}

/// Why the chain cannot start at all (its config or its ledger is wrong).
#[derive(Debug, thiserror::Error)]
pub enum KafkaStartError {
    #[error("{0}")]
    Config(String),
    #[error("cannot read the last block: {0}")]
    LastBlock(String),
}

impl KafkaChain {
    pub fn new(
        support: ChainSupport,
        node: &NodeResources,
        settings: Arc<KafkaSettings>,
    ) -> Result<KafkaChain, KafkaStartError> {
        let config = support.config.borrow().clone();
        let brokers = brokers_of(&config).map_err(KafkaStartError::Config)?;
        let last = support.tip.height.checked_sub(1);
        let start_offsets = match last {
            None => Offsets::FRESH,
            Some(number) => match support.store.block(number) {
                Ok(Some(block)) => Offsets::of_block(&block)
                    .map_err(|e| KafkaStartError::LastBlock(e.to_string()))?,
                Ok(None) => {
                    return Err(KafkaStartError::LastBlock(format!(
                        "block {number} is missing"
                    )))
                }
                Err(e) => return Err(KafkaStartError::LastBlock(e.to_string())),
            },
        };
        Ok(KafkaChain {
            channel_id: support.channel_id,
            settings,
            brokers,
            creator: BlockCreator::new(&support.tip, node.signer.clone()),
            signer: node.signer.clone(),
            clock: node.clock.clone(),
            config: support.config,
            filters: support.filters,
            policies: support.policies,
            metrics: support.metrics,
            height: support.store.subscribe(),
            store: support.store,
            ledger: support.ledger,
            status: support.status,
            guard: support.tree.member("chain"),
            tree: support.tree,
            start_offsets,
            phase: Phase::Connecting,
            errored: Some("connecting to the Kafka brokers".into()),
            consumer_lost: false,
            failing_since: None,
            permits: BTreeMap::new(),
            blocks: VecDeque::new(),
            written_through: start_offsets.last_offset_persisted,
            halt_waiters: None,
        })
    }

    /// Publishes the status the chain is in now.
    pub fn publish_status(&self) {
        self.status
            .publish(ChainStatus::ordering(self.errored.clone()));
    }

    fn halting(&self) -> bool {
        self.halt_waiters.is_some()
    }

    fn refusal(&self) -> Option<SubmitError> {
        if self.halting() {
            return Some(SubmitError::Unavailable(format!(
                "channel {} is halting",
                self.channel_id
            )));
        }
        if let Some(reason) = &self.errored {
            return Some(SubmitError::Unavailable(format!(
                "channel {}: the Kafka consenter is errored: {reason}",
                self.channel_id
            )));
        }
        None
    }

    fn producer(&self) -> Option<&PartitionProducer> {
        match &self.phase {
            Phase::Running(connected) => Some(&connected.producer),
            Phase::Connecting => None,
        }
    }

    /// One attempt to reach the partition; on failure the next is
    /// scheduled, until the retry schedule is spent.
    fn connect(&mut self, ctx: &mut Context<Self>) {
        let settings = self.settings.clone();
        let brokers = self.brokers.clone();
        let channel = self.channel_id.clone();
        let metrics = self.metrics.kafka.clone();
        let from = self.start_offsets.next_to_read();
        let attempt = async move {
            let topic = client::topic_of(&channel);
            match client::ensure_topic(&settings, &brokers, &topic).await {
                Ok(()) => {}
                Err(e @ PartitionError::Topic { .. }) => {
                    // Brokers that create topics themselves, or refuse the
                    // admin API, still take the CONNECT below if the topic
                    // exists.
                    tracing::warn!(%channel, error = %e, "topic not created");
                }
                Err(e) => return Err(e),
            }
            let producer = PartitionProducer::new(&settings, &brokers, &channel, metrics.clone())?;
            let connect_offset = producer.connect().await?;
            let consumer = client::partition_consumer(
                &settings,
                &brokers,
                &channel,
                from,
                metrics.consumer_lag.clone(),
            )?;
            Ok::<_, PartitionError>((producer, consumer, connect_offset))
        };
        ctx.spawn(attempt.into_actor(self).map(|result, act, ctx| {
            if act.halting() {
                return;
            }
            match result {
                Ok((producer, consumer, connect_offset)) => {
                    tracing::info!(channel = %act.channel_id, brokers = ?act.brokers, connect_offset, from = act.start_offsets.next_to_read(), "connected to the channel's partition");
                    act.start_ordering(producer, consumer, ctx);
                }
                Err(e) => act.retry_later(e.to_string(), ctx, |act, ctx| act.connect(ctx)),
            }
        }));
    }

    /// Marks the chain errored for `reason` and runs `again` after the
    /// retry schedule's next interval; a spent schedule fails the chain.
    fn retry_later(
        &mut self,
        reason: String,
        ctx: &mut Context<Self>,
        again: fn(&mut KafkaChain, &mut Context<KafkaChain>),
    ) {
        let since = *self.failing_since.get_or_insert_with(|| self.clock.now());
        let elapsed = self.clock.now().saturating_duration_since(since);
        self.set_errored(Some(reason.clone()));
        let Some(wait) = self.settings.retry.next_wait(elapsed) else {
            self.fail(
                format!(
                    "the partition was unreachable for {elapsed:?}, beyond Kafka.Retry: {reason}"
                ),
                ctx,
            );
            return;
        };
        tracing::warn!(channel = %self.channel_id, %reason, retry_in = ?wait, "the channel's partition is unreachable");
        let sleep = self.clock.sleep(wait).into_actor(self);
        ctx.spawn(sleep.map(move |_, act, ctx| {
            if !act.halting() {
                again(act, ctx);
            }
        }));
    }

    fn set_errored(&mut self, errored: Option<String>) {
        if self.errored != errored {
            self.errored = errored;
            self.publish_status();
        }
    }

    fn start_ordering(
        &mut self,
        producer: PartitionProducer,
        consumer: rdkafka::consumer::StreamConsumer<client::ChainClientContext>,
        ctx: &mut Context<Self>,
    ) {
        let stop = CancellationToken::new();
        let parts = CutterParts {
            channel_id: self.channel_id.clone(),
            config: self.config.clone(),
            height: self.store.subscribe(),
            filters: self.filters.clone(),
            policies: self.policies.clone(),
            signer: self.signer.clone(),
            producer: producer.clone(),
            clock: self.clock.clone(),
            metrics: self.metrics.kafka.clone(),
            next_block: self.creator.next_number(),
            offsets: self.start_offsets,
            chain: Mailbox::of(&ctx.address(), &self.metrics.chain),
            settled: Mailbox::of(&ctx.address(), &self.metrics.chain),
            stop: stop.clone(),
        };
        let cutter = KafkaCutter::new(parts)
            .in_tree(self.tree.member("cutter"))
            .start();
        let consumer = ConsumerActor::new(
            self.channel_id.clone(),
            consumer,
            Mailbox::of(&cutter, &self.metrics.cutter),
            ctx.address().recipient(),
            self.start_offsets.next_to_read(),
            stop.clone(),
            self.tree.member("consumer"),
        )
        .start();
        self.phase = Phase::Running(Connected {
            producer,
            cutter,
            consumer,
            stop,
        });
        self.failing_since = None;
        self.set_errored(None);
    }

    /// The partition could not be reached while running: errored until
    /// records flow again; CONNECT records are posted on the retry schedule
    /// so that the consumer has something to read once the brokers return.
    fn partition_lost(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.errored.is_some() || self.halting() {
            return;
        }
        self.retry_later(reason, ctx, KafkaChain::probe);
    }

    fn probe(&mut self, ctx: &mut Context<Self>) {
        if self.errored.is_none() {
            return;
        }
        let Some(producer) = self.producer().cloned() else {
            return;
        };
        let posted = producer.connect();
        ctx.spawn(posted.into_actor(self).map(|result, act, ctx| {
            if act.errored.is_none() || act.halting() {
                return;
            }
            let reason = match result {
                // The brokers take posts again; if the consumer still
                // cannot read, it clears the error when it reads again.
                Ok(_) if !act.consumer_lost => return act.recovered(),
                Ok(_) => "waiting to read the partition again".to_string(),
                Err(e) if e.failure() == PostFailure::Fatal => return act.fail(e.to_string(), ctx),
                Err(e) => e.to_string(),
            };
            act.retry_later(reason, ctx, KafkaChain::probe);
        }));
    }

    fn recovered(&mut self) {
        if self.errored.is_some() && matches!(self.phase, Phase::Running(_)) {
            tracing::info!(channel = %self.channel_id, "the channel's partition is reachable again");
            self.failing_since = None;
            self.set_errored(None);
        }
    }

    /// The chain cannot go on: its supervisor restarts the tree, which goes
    /// on from the last block written.
    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::error!(channel = %self.channel_id, %reason, "kafka chain cannot go on");
        self.guard.report_failure(reason);
        self.halt_waiters.get_or_insert_with(Vec::new);
        ctx.stop();
    }

    /// Posts `records` in order; answered once the broker has all of them.
    fn post(
        &mut self,
        records: Vec<Record>,
        permit: InflightPermit,
    ) -> ResponseActFuture<Self, Result<(), SubmitError>> {
        if let Some(refused) = self.refusal() {
            return Box::pin(actix::fut::ready(Err(refused)));
        }
        let Some(producer) = self.producer() else {
            return Box::pin(actix::fut::ready(Err(SubmitError::Unavailable(format!(
                "channel {}: the Kafka consenter is not connected yet",
                self.channel_id
            )))));
        };
        let posts: Vec<_> = records.iter().map(|r| producer.post(r)).collect();
        Box::pin(
            join_all(posts)
                .into_actor(self)
                .map(move |results, act, ctx| {
                    let mut last = None;
                    for result in results {
                        match result {
                            Ok(offset) => last = last.max(Some(offset)),
                            Err(e) => {
                                let reason = e.to_string();
                                match e.failure() {
                                    PostFailure::Unreachable => {
                                        act.partition_lost(reason.clone(), ctx)
                                    }
                                    PostFailure::Fatal => act.fail(reason.clone(), ctx),
                                    // This submission alone: the chain goes on.
                                    PostFailure::Refused => {}
                                }
                                return Err(SubmitError::Unavailable(format!(
                                    "channel {}: {reason}",
                                    act.channel_id
                                )));
                            }
                        }
                    }
                    if let Some(offset) = last {
                        act.hold(offset, permit);
                    }
                    Ok(())
                }),
        )
    }

    fn hold(&mut self, offset: i64, permit: InflightPermit) {
        // A record another orderer's block (or this one's) already holds:
        // its room is free now.
        if offset <= self.written_through {
            return;
        }
        self.permits.entry(offset).or_default().merge(permit);
    }

    fn release_written(&mut self, height: u64) {
        while let Some(&(number, offset)) = self.blocks.front() {
            if number >= height {
                break;
            }
            self.blocks.pop_front();
            self.written_through = self.written_through.max(offset);
        }
        let kept = self.permits.split_off(&(self.written_through + 1));
        self.permits = kept;
    }

    fn stop_children(&mut self) {
        if let Phase::Running(connected) = &self.phase {
            connected.stop.cancel();
            let _ = mailbox::post(&connected.consumer.clone().recipient(), StopConsumer);
            let _ = mailbox::post(&connected.cutter.clone().recipient(), StopCutter);
        }
    }
}

impl Actor for KafkaChain {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::new(self.height.clone()));
        tracing::info!(channel = %self.channel_id, next_block = self.creator.next_number(), from = self.start_offsets.next_to_read(), "kafka chain started");
        self.connect(ctx);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.stop_children();
    }
}

impl StreamHandler<u64> for KafkaChain {
    fn handle(&mut self, height: u64, _: &mut Context<Self>) {
        self.release_written(height);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

crate::counted_handlers!(KafkaChain: Submit, Configure, KafkaBatch, Settled);

/// Records up to `through` are in blocks handed to the ledger, or dropped:
/// their room goes once those blocks are written.
impl Handler<Settled> for KafkaChain {
    type Result = ();

    fn handle(&mut self, msg: Settled, _: &mut Context<Self>) {
        let next = self.creator.next_number();
        if self.store.height() >= next {
            self.written_through = self.written_through.max(msg.through);
            self.release_written(self.store.height());
        } else {
            self.blocks.push_back((next - 1, msg.through));
        }
    }
}

impl Handler<Submit> for KafkaChain {
    type Result = ResponseActFuture<Self, Result<(), SubmitError>>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        let records = msg
            .messages
            .into_iter()
            .map(|m| {
                Record::Normal(Regular {
                    payload: m.envelope,
                    config_seq: msg.config_seq,
                    original_offset: 0,
                })
            })
            .collect();
        self.post(records, msg.permit)
    }
}

impl Handler<Configure> for KafkaChain {
    type Result = ResponseActFuture<Self, Result<(), SubmitError>>;

    fn handle(&mut self, msg: Configure, _: &mut Context<Self>) -> Self::Result {
        tracing::info!(channel = %self.channel_id, sequence = msg.config.sequence, "posting a config update to the partition");
        let record = Record::Config(Regular {
            payload: msg.message.envelope,
            config_seq: msg.config_seq,
            original_offset: 0,
        });
        self.post(vec![record], msg.permit)
    }
}

impl Handler<KafkaBatch> for KafkaChain {
    type Result = ();

    fn handle(&mut self, msg: KafkaBatch, ctx: &mut Context<Self>) {
        let number = self.creator.next_number();
        if msg.number != number {
            self.fail(
                format!(
                    "the cutter cut block {} where block {number} was next",
                    msg.number
                ),
                ctx,
            );
            return;
        }
        // Only a CONFIG envelope moves LAST_CONFIG; a channel creation on
        // the system channel is isolated too, but is no config block.
        let is_config = msg.isolated
            && msg
                .batch
                .first()
                .is_some_and(|e| blockutil::is_config_envelope(e));
        let next = self.creator.next_block(is_config);
        let offsets = msg.offsets;
        let batch = msg.batch;
        let making = tokio::task::spawn_blocking(move || next.make(batch, offsets.encode()));
        ctx.wait(making.into_actor(self).map(move |made, act, ctx| {
            let block = match made {
                Ok(Ok(block)) => block,
                Ok(Err(e)) => return act.fail(format!("signing block {number} failed: {e}"), ctx),
                Err(e) => return act.fail(format!("making block {number} failed: {e}"), ctx),
            };
            act.creator.made(&block);
            act.blocks
                .push_back((number, offsets.last_offset_persisted));
            act.metrics.blocks_inflight.inc();
            if let Err(gone) = act.ledger.append(block, Vec::new()) {
                act.metrics.blocks_inflight.dec();
                act.fail(format!("the ledger is gone: {gone}"), ctx);
            }
        }));
    }
}

impl Handler<PartitionHealth> for KafkaChain {
    type Result = ();

    fn handle(&mut self, health: PartitionHealth, ctx: &mut Context<Self>) {
        match health {
            PartitionHealth::Lost(reason) => {
                self.consumer_lost = true;
                self.partition_lost(reason, ctx);
            }
            PartitionHealth::Readable => {
                self.consumer_lost = false;
                self.recovered();
            }
        }
    }
}

impl Handler<Halt> for KafkaChain {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, done) = oneshot::channel();
        match self.halt_waiters.as_mut() {
            Some(waiters) => waiters.push(reply),
            None => {
                self.halt_waiters = Some(vec![reply]);
                // What is pending stays in the partition: the next start
                // reads it again from the last block's offset.
                self.stop_children();
                let ledger = self.ledger.clone();
                let durable = async move { ledger.wait_durable().await };
                ctx.spawn(durable.into_actor(self).map(|result, act, ctx| {
                    if let Err(reason) = result {
                        tracing::error!(channel = %act.channel_id, %reason, "blocks could not be written on halt");
                        act.guard.report_failure(format!("halt: {reason}"));
                    }
                    for waiter in act.halt_waiters.take().unwrap_or_default() {
                        let _ = waiter.send(());
                    }
                    act.halt_waiters = Some(Vec::new());
                    ctx.stop();
                }));
            }
        }
        Box::pin(async move {
            let _ = done.await;
        })
    }
}

impl Handler<Abort> for KafkaChain {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        self.halt_waiters.get_or_insert_with(Vec::new);
        ctx.stop();
    }
}
