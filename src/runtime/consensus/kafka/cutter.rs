//! The CutterActor of a Kafka channel: the partition's records in, in
//! offset order; batches out, each with the offsets its block records.
//!
//! Every orderer of the channel runs the same records through the same
//! rules, so every orderer cuts the same blocks (Fabric's processRegular and
//! processTimeToCut):
//! - a NORMAL record joins the pending batch (count and size cut as for
//!   solo); one validated at an older config sequence is validated again
//!   and, if it still holds, posted anew with `original_offset` set;
//! - a CONFIG record cuts the pending batch and becomes a block of its own;
//!   records after it are judged under the config it makes, once the
//!   LedgerActor has written it;
//! - TIME_TO_CUT for exactly the next block cuts the pending batch; older
//!   ones are stale, later ones faulty; both are ignored;
//! - CONNECT is ignored; a resubmitted record already processed (its
//!   `original_offset` at or below `last_original_offset_processed`) too.
//!
//! The batch timer does not cut: when it fires the cutter posts
//! TIME_TO_CUT for the next block number (TTC-X), and cuts when that record,
//! or any orderer's for the same number, is read back.
//!
//! Mailbox:
//! - [`Consumed`] (from the ConsumerActor): the next record. Answered once
//!   processed, including any re-validation, re-post or wait for a config
//!   block: the ConsumerActor reads the next record only then.
//! - [`StopCutter`] (from the ChainActor when it stops).
//!
//! Emits [`KafkaBatch`] to the ChainActor, in order.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::watch;

use super::client::PartitionProducer;
use super::record::{Offsets, Record, Regular};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::PolicyEvaluator;
use crate::fabric::protos::common::Envelope;
use crate::runtime::blockcutter::{Batch, BlockCutter, OrderedMessage, StopCutter};
use crate::runtime::channel::mailbox::Mailbox;
use crate::runtime::channel::tree::ChildGuard;
use crate::runtime::clock::Clock;
use crate::runtime::consensus::revalidation::{recheck_config, revalidate};
use crate::runtime::metrics::KafkaMetrics;
use crate::runtime::msgprocessor::RuleSet;
use crate::security::signer::SigningIdentity;

/// One record of the partition, as read.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct Consumed {
    pub offset: i64,
    pub payload: Bytes,
}

/// A batch is complete and must become block `number`.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct KafkaBatch {
    pub number: u64,
    pub batch: Batch,
    /// A config record (or a channel creation on the system channel): a
    /// block of its own.
    pub isolated: bool,
    /// What the block records of the partition.
    pub offsets: Offsets,
}

/// What the cutter needs from its channel.
pub struct CutterParts {
    pub channel_id: String,
    pub config: watch::Receiver<Arc<ChannelConfig>>,
    /// The ledger height: a config block must be written before the records
    /// after it are judged.
    pub height: watch::Receiver<u64>,
    pub filters: Arc<RuleSet>,
    pub policies: Arc<dyn PolicyEvaluator>,
    pub signer: Arc<SigningIdentity>,
    pub producer: PartitionProducer,
    pub clock: Clock,
    pub metrics: KafkaMetrics,
    /// The next block to cut and the offsets of the last block written.
    pub next_block: u64,
    pub offsets: Offsets,
    pub chain: Mailbox<KafkaBatch>,
}

pub struct KafkaCutter {
    parts: CutterParts,
    cutter: BlockCutter,
    timeout: Duration,
    /// The running batch timer.
    timer: Option<SpawnHandle>,
    /// Set once the cutter cannot go on: it answers nothing more.
    failed: bool,
    guard: Option<ChildGuard>,
}

type Step = ResponseActFuture<KafkaCutter, ()>;

fn done() -> Step {
    Box::pin(actix::fut::ready(()))
}

impl KafkaCutter {
    pub fn new(parts: CutterParts, guard: ChildGuard) -> KafkaCutter {
        let config = parts.config.borrow().clone();
        KafkaCutter {
            guard: Some(guard),
            cutter: BlockCutter::new(config.batch_size),
            timeout: config.batch_timeout,
            parts,
            timer: None,
            failed: false,
        }
    }

    fn channel(&self) -> &str {
        &self.parts.channel_id
    }

    /// The cutter cannot go on (a re-post failed, the chain is gone): the
    /// tree restarts from the last block written, so nothing read after it
    /// is lost.
    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        if self.failed {
            return;
        }
        self.failed = true;
        tracing::error!(channel = %self.channel(), %reason, "kafka cutter cannot go on");
        if let Some(guard) = &self.guard {
            guard.report_failure(reason);
        }
        ctx.stop();
    }

    fn emit(&mut self, batch: Batch, isolated: bool, offsets: Offsets, ctx: &mut Context<Self>) {
        let number = self.parts.next_block;
        self.parts.next_block += 1;
        let cut = KafkaBatch {
            number,
            batch,
            isolated,
            offsets,
        };
        if self.parts.chain.post(cut).is_err() {
            self.fail("the chain stopped taking batches".into(), ctx);
        }
    }

    fn start_timer(&mut self, ctx: &mut Context<Self>) {
        if self.timer.is_some() {
            return;
        }
        let expiry = self.parts.clock.sleep(self.timeout).into_actor(self);
        self.timer = Some(ctx.spawn(expiry.map(|_, act, ctx| {
            act.timer = None;
            act.post_time_to_cut(ctx);
        })));
    }

    fn stop_timer(&mut self, ctx: &mut Context<Self>) {
        if let Some(handle) = self.timer.take() {
            ctx.cancel_future(handle);
        }
    }

    /// The batch timer fired: ask every orderer to cut the next block.
    fn post_time_to_cut(&mut self, ctx: &mut Context<Self>) {
        let block_number = self.parts.next_block;
        self.parts.metrics.time_to_cut_sent.inc();
        tracing::debug!(channel = %self.channel(), block_number, "posting time-to-cut");
        let posted = self
            .parts
            .producer
            .post(&Record::TimeToCut { block_number });
        ctx.spawn(posted.into_actor(self).map(move |result, act, ctx| {
            if let Err(e) = result {
                // Try again after another BatchTimeout if the batch is still pending.
                tracing::warn!(channel = %act.channel(), block_number, error = %e, "time-to-cut not posted");
                if act.parts.next_block == block_number && act.cutter.pending_count() > 0 {
                    act.start_timer(ctx);
                }
            }
        }));
    }

    fn process(&mut self, consumed: Consumed, ctx: &mut Context<Self>) -> Step {
        let offset = consumed.offset;
        let record = match Record::decode(&consumed.payload) {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(channel = %self.channel(), offset, error = %e, "skipping a record that is not a KafkaMessage");
                return done();
            }
        };
        match record {
            Record::Connect => done(),
            Record::TimeToCut { block_number } => {
                self.time_to_cut(offset, block_number, ctx);
                done()
            }
            Record::Normal(regular) => self.normal(offset, regular, ctx),
            Record::Config(regular) => self.config(offset, regular, ctx),
        }
    }

    fn already_processed(&self, regular: &Regular) -> bool {
        regular.original_offset != 0
            && regular.original_offset <= self.parts.offsets.last_original_offset_processed
    }

    fn time_to_cut(&mut self, offset: i64, block_number: u64, ctx: &mut Context<Self>) {
        let next = self.parts.next_block;
        if block_number < next {
            return;
        }
        if block_number > next {
            tracing::warn!(channel = %self.channel(), offset, block_number, next, "discarding a time-to-cut for a block beyond the next one");
            return;
        }
        self.stop_timer(ctx);
        let batch = self.cutter.cut();
        if batch.is_empty() {
            tracing::warn!(channel = %self.channel(), offset, block_number, "time-to-cut for the next block, but nothing is pending");
            return;
        }
        self.parts.metrics.time_to_cut_used.inc();
        let offsets = Offsets {
            last_offset_persisted: offset,
            ..self.parts.offsets
        };
        self.emit(batch, false, offsets, ctx);
    }

    fn normal(&mut self, offset: i64, regular: Regular, ctx: &mut Context<Self>) -> Step {
        if self.already_processed(&regular) {
            return done();
        }
        let Some(size) = envelope_size(&regular.payload) else {
            tracing::warn!(channel = %self.channel(), offset, "skipping a normal record whose payload is not an envelope");
            return done();
        };
        let message = OrderedMessage {
            envelope: regular.payload,
            size,
        };
        let config = self.parts.config.borrow().clone();
        if regular.config_seq < config.sequence {
            return self.revalidate_normal(offset, message, config);
        }
        let before = self.parts.offsets;
        let outcome = self.cutter.ordered(message);
        if let Some(reason) = outcome.rejected {
            tracing::warn!(channel = %self.channel(), offset, %reason, "message dropped by the blockcutter");
            return done();
        }
        if regular.original_offset != 0 {
            self.parts.offsets.last_original_offset_processed = regular.original_offset;
        }
        let after = self.parts.offsets;
        let count = outcome.batches.len();
        for (index, batch) in outcome.batches.into_iter().enumerate() {
            self.stop_timer(ctx);
            // Only the last batch can hold this record, and only if nothing
            // is left pending: an earlier batch ends at the record before.
            let offsets = if index + 1 == count && !outcome.pending {
                Offsets {
                    last_offset_persisted: offset,
                    ..after
                }
            } else {
                Offsets {
                    last_offset_persisted: offset - 1,
                    ..before
                }
            };
            self.emit(batch, false, offsets, ctx);
        }
        if outcome.pending {
            self.start_timer(ctx);
        } else {
            self.stop_timer(ctx);
        }
        done()
    }

    /// Validated under an older config: the second filter pass, off the
    /// actor thread; a message that still holds is posted anew, and read
    /// again later as every orderer's copy (only the first is kept).
    fn revalidate_normal(
        &mut self,
        offset: i64,
        message: OrderedMessage,
        config: Arc<ChannelConfig>,
    ) -> Step {
        let filters = self.parts.filters.clone();
        let channel = self.parts.channel_id.clone();
        let producer = self.parts.producer.clone();
        let config_seq = config.sequence;
        let work = async move {
            let (kept, _, _) = tokio::task::spawn_blocking(move || {
                revalidate(&channel, &filters, &config, vec![message])
            })
            .await
            .map_err(|e| format!("re-validation failed: {e}"))?;
            let Some(message) = kept.into_iter().next() else {
                return Ok(());
            };
            let record = Record::Normal(Regular {
                payload: message.envelope,
                config_seq,
                original_offset: offset,
            });
            producer
                .post(&record)
                .await
                .map(|_| ())
                .map_err(|e| format!("re-posting the message of offset {offset}: {e}"))
        };
        Box::pin(work.into_actor(self).map(|result, act, ctx| {
            if let Err(reason) = result {
                act.fail(reason, ctx);
            }
        }))
    }

    fn config(&mut self, offset: i64, regular: Regular, ctx: &mut Context<Self>) -> Step {
        if self.already_processed(&regular) {
            return done();
        }
        let current = self.parts.config.borrow().clone();
        if regular.config_seq < current.sequence {
            return self.recheck_config(offset, regular, current);
        }
        let before = self.parts.offsets;
        self.stop_timer(ctx);
        let pending = self.cutter.cut();
        if !pending.is_empty() {
            let offsets = Offsets {
                last_offset_persisted: offset - 1,
                ..before
            };
            self.emit(pending, false, offsets, ctx);
        }
        if regular.original_offset != 0 {
            self.parts.offsets.last_original_offset_processed = regular.original_offset;
        }
        let offsets = Offsets {
            last_offset_persisted: offset,
            ..self.parts.offsets
        };
        let number = self.parts.next_block;
        tracing::info!(channel = %self.channel(), offset, number, "ordering a config record");
        self.emit(vec![regular.payload], true, offsets, ctx);
        // Records after it are judged under the config it makes: wait for
        // the LedgerActor to write it and publish that config.
        let mut height = self.parts.height.clone();
        let written = async move { height.wait_for(|h| *h > number).await.is_ok() };
        Box::pin(written.into_actor(self).map(move |written, act, ctx| {
            if !written {
                act.fail(
                    format!("the ledger stopped before writing config block {number}"),
                    ctx,
                );
                return;
            }
            let config = act.parts.config.borrow().clone();
            act.cutter.set_limits(config.batch_size);
            act.timeout = config.batch_timeout;
        }))
    }

    /// A config update another config overtook: checked against the current
    /// config and, if it holds, posted anew (Fabric's resubmission).
    fn recheck_config(
        &mut self,
        offset: i64,
        regular: Regular,
        current: Arc<ChannelConfig>,
    ) -> Step {
        let channel = self.parts.channel_id.clone();
        let policies = self.parts.policies.clone();
        let signer = self.parts.signer.clone();
        let filters = self.parts.filters.clone();
        let producer = self.parts.producer.clone();
        let size = envelope_size(&regular.payload).unwrap_or(regular.payload.len());
        let message = OrderedMessage {
            envelope: regular.payload,
            size,
        };
        let config_seq = current.sequence;
        let work = async move {
            let checked = tokio::task::spawn_blocking(move || {
                recheck_config(
                    &channel,
                    &current,
                    policies.as_ref(),
                    &signer,
                    &filters,
                    &message,
                )
            })
            .await
            .map_err(|e| format!("re-validation failed: {e}"))?;
            let Ok((message, _)) = checked else {
                return Ok(false);
            };
            let record = Record::Config(Regular {
                payload: message.envelope,
                config_seq,
                original_offset: offset,
            });
            producer
                .post(&record)
                .await
                .map(|_| true)
                .map_err(|e| format!("re-posting the config update of offset {offset}: {e}"))
        };
        Box::pin(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    Ok(true) => act.parts.offsets.last_resubmitted_config_offset = offset,
                    Ok(false) => {}
                    Err(reason) => act.fail(reason, ctx),
                }),
        )
    }
}

/// Fabric's message size: payload plus signature.
fn envelope_size(payload: &Bytes) -> Option<usize> {
    let envelope = Envelope::decode(payload.clone()).ok()?;
    Some(envelope.payload.len() + envelope.signature.len())
}

impl Actor for KafkaCutter {
    type Context = Context<Self>;
}

crate::counted_handlers!(KafkaCutter: Consumed);

impl Handler<Consumed> for KafkaCutter {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, consumed: Consumed, ctx: &mut Context<Self>) -> Self::Result {
        if self.failed {
            return AtomicResponse::new(done());
        }
        let point = crate::runtime::faults::points::KAFKA_CUTTER_RECORD;
        if let Err(e) = crate::runtime::faults::check(point, std::path::Path::new(self.channel())) {
            self.fail(format!("record at offset {}: {e}", consumed.offset), ctx);
            return AtomicResponse::new(done());
        }
        AtomicResponse::new(self.process(consumed, ctx))
    }
}

impl Handler<StopCutter> for KafkaCutter {
    type Result = ();

    fn handle(&mut self, _: StopCutter, ctx: &mut Context<Self>) {
        // Its owner stops it: the owner reports if that was not planned.
        self.failed = true;
        if let Some(guard) = self.guard.take() {
            guard.retire();
        }
        ctx.stop();
    }
}
