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
//! Emits [`KafkaBatch`] and [`Settled`] to the ChainActor, in order.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::client::PartitionProducer;
use super::record::{Offsets, Record, Regular};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::PolicyEvaluator;
use crate::fabric::protos::common::{ChannelHeader, Envelope, HeaderType, Payload};
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

/// Every record up to `through` is in a block handed to the chain, or was
/// dropped: once those blocks are written, nothing up to it is in flight.
/// Sent after records were dropped, when nothing is pending.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Settled {
    pub through: i64,
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
    /// Where the cutter says which records are settled (see [`Settled`]).
    pub settled: Mailbox<Settled>,
    /// Cancelled when the chain stops: ends any wait (a config block, a
    /// re-post) that would otherwise keep the cutter, and its tree, alive.
    pub stop: CancellationToken,
}

pub struct KafkaCutter {
    parts: CutterParts,
    cutter: BlockCutter,
    timeout: Duration,
    /// The running batch timer.
    timer: Option<SpawnHandle>,
    /// Set once the cutter cannot go on: it answers nothing more.
    failed: bool,
    /// Records were dropped since the last [`Settled`].
    dropped: bool,
    guard: Option<ChildGuard>,
}

type Step = ResponseActFuture<KafkaCutter, ()>;

fn done() -> Step {
    Box::pin(actix::fut::ready(()))
}

impl KafkaCutter {
    pub fn new(parts: CutterParts) -> KafkaCutter {
        let config = parts.config.borrow().clone();
        KafkaCutter {
            guard: None,
            cutter: BlockCutter::new(config.batch_size),
            timeout: config.batch_timeout,
            parts,
            timer: None,
            failed: false,
            dropped: false,
        }
    }

    /// Runs the cutter as a member of a channel's tree: its stop is reported.
    pub fn in_tree(mut self, guard: ChildGuard) -> KafkaCutter {
        self.guard = Some(guard);
        self
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

    /// Stops on the chain's word (its stop token): planned, not a failure.
    fn stop_now(&mut self, ctx: &mut Context<Self>) {
        self.failed = true;
        if let Some(guard) = self.guard.take() {
            guard.retire();
        }
        ctx.stop();
    }

    /// `work`, unless the chain stops first.
    fn until_stopped<F: std::future::Future>(
        &self,
        work: F,
    ) -> impl std::future::Future<Output = Option<F::Output>> {
        let stop = self.parts.stop.clone();
        async move {
            tokio::select! {
                done = work => Some(done),
                _ = stop.cancelled() => None,
            }
        }
    }

    /// A record was skipped or dropped: its in-flight room is released
    /// once the records before it are written.
    fn dropped(&mut self) {
        self.dropped = true;
    }

    fn settle(&mut self, offset: i64, ctx: &mut Context<Self>) {
        if !self.dropped || self.cutter.pending_count() > 0 || self.failed {
            return;
        }
        self.dropped = false;
        if self
            .parts
            .settled
            .post(Settled { through: offset })
            .is_err()
        {
            self.fail("the chain stopped taking settled offsets".into(), ctx);
        }
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
                self.dropped();
                self.settle(offset, ctx);
                return done();
            }
        };
        let step = match record {
            Record::Connect => done(),
            Record::TimeToCut { block_number } => {
                self.time_to_cut(offset, block_number, ctx);
                done()
            }
            Record::Normal(regular) => self.normal(offset, regular, ctx),
            Record::Config(regular) => self.config(offset, regular, ctx),
        };
        Box::pin(step.map(move |(), act, ctx| act.settle(offset, ctx)))
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
            self.dropped();
            return done();
        }
        let Some((size, kind)) = envelope_facts(&regular.payload) else {
            tracing::warn!(channel = %self.channel(), offset, "skipping a normal record whose payload is not an envelope");
            self.dropped();
            return done();
        };
        // Only the orderer makes these, and only as CONFIG records: a
        // NORMAL one would change the config where no orderer expects it.
        if matches!(
            kind,
            Some(HeaderType::Config | HeaderType::OrdererTransaction)
        ) {
            tracing::warn!(channel = %self.channel(), offset, "skipping a normal record that carries a config envelope");
            self.dropped();
            return done();
        }
        let message = OrderedMessage {
            envelope: regular.payload,
            size,
        };
        let config = self.parts.config.borrow().clone();
        if regular.config_seq < config.sequence {
            return self.revalidate_normal(offset, regular.original_offset, message, config);
        }
        let before = self.parts.offsets;
        let outcome = self.cutter.ordered(message);
        if let Some(reason) = outcome.rejected {
            tracing::warn!(channel = %self.channel(), offset, %reason, "message dropped by the blockcutter");
            self.dropped();
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
        original_offset: i64,
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
                return Ok(false);
            };
            // A copy posted anew keeps the offset of the first post, so that
            // however often it is re-validated, one copy is processed.
            let record = Record::Normal(Regular {
                payload: message.envelope,
                config_seq,
                original_offset: first_post(original_offset, offset),
            });
            repost(&producer, record, offset, "message").await
        };
        let work = self.until_stopped(work);
        Box::pin(work.into_actor(self).map(|result, act, ctx| match result {
            None => act.stop_now(ctx),
            // Dropped, or re-posted: either way not in a block at this offset.
            Some(Ok(_)) => act.dropped(),
            Some(Err(reason)) => act.fail(reason, ctx),
        }))
    }

    fn config(&mut self, offset: i64, regular: Regular, ctx: &mut Context<Self>) -> Step {
        if self.already_processed(&regular) {
            self.dropped();
            return done();
        }
        let current = self.parts.config.borrow().clone();
        if regular.config_seq < current.sequence {
            return self.recheck_config(offset, regular, current);
        }
        if let Err(reason) = acceptable_config(&regular.payload, &current) {
            tracing::warn!(channel = %self.channel(), offset, %reason, "skipping a config record");
            self.dropped();
            return done();
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
        let written = self.until_stopped(written);
        Box::pin(written.into_actor(self).map(move |written, act, ctx| {
            let Some(written) = written else {
                return act.stop_now(ctx);
            };
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
        let size = envelope_facts(&regular.payload).map_or(regular.payload.len(), |(size, _)| size);
        let regular_original = regular.original_offset;
        let message = OrderedMessage {
            envelope: regular.payload,
            size,
        };
        let config_seq = current.sequence;
        let original_offset = regular_original;
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
                original_offset: first_post(original_offset, offset),
            });
            repost(&producer, record, offset, "config update").await
        };
        let work = self.until_stopped(work);
        Box::pin(
            work.into_actor(self)
                .map(move |result, act, ctx| match result {
                    None => act.stop_now(ctx),
                    Some(Ok(reposted)) => {
                        if reposted {
                            act.parts.offsets.last_resubmitted_config_offset = offset;
                        }
                        act.dropped();
                    }
                    Some(Err(reason)) => act.fail(reason, ctx),
                }),
        )
    }
}

/// Fabric's message size (payload plus signature) and the envelope's
/// header type, if it has one.
fn envelope_facts(payload: &Bytes) -> Option<(usize, Option<HeaderType>)> {
    let envelope = Envelope::decode(payload.clone()).ok()?;
    let size = envelope.payload.len() + envelope.signature.len();
    let kind = Payload::decode(envelope.payload)
        .ok()
        .and_then(|p| p.header)
        .and_then(|h| ChannelHeader::decode(h.channel_header).ok())
        .and_then(|h| HeaderType::try_from(h.r#type).ok());
    Some((size, kind))
}

/// Posts a copy that was validated again; `Ok(true)` once the broker has it.
async fn repost(
    producer: &PartitionProducer,
    record: Record,
    offset: i64,
    what: &str,
) -> Result<bool, String> {
    let posted = producer.post(&record).await;
    posted
        .map(|_| true)
        .map_err(|e| format!("re-posting the {what} of offset {offset}: {e}"))
}

/// The offset a copy posted anew names: the first post's.
fn first_post(original_offset: i64, offset: i64) -> i64 {
    if original_offset != 0 {
        original_offset
    } else {
        offset
    }
}

/// A CONFIG record must make this channel's next config (a block the
/// ledger cannot read as one would stop the channel on every orderer), or,
/// on the system channel, create a channel. Every orderer judges alike.
fn acceptable_config(payload: &Bytes, current: &ChannelConfig) -> Result<(), String> {
    let (_, kind) = envelope_facts(payload).ok_or("not an envelope")?;
    match kind {
        Some(HeaderType::Config) => {
            let envelope = Envelope::decode(payload.clone()).map_err(|e| e.to_string())?;
            let next = ChannelConfig::from_config_envelope(&envelope).map_err(|e| e.to_string())?;
            if next.channel_id != current.channel_id {
                return Err(format!("a config of channel {:?}", next.channel_id));
            }
            if next.sequence != current.sequence + 1 {
                return Err(format!(
                    "config sequence {} does not follow {}",
                    next.sequence, current.sequence
                ));
            }
            Ok(())
        }
        Some(HeaderType::OrdererTransaction) if current.is_system_channel() => Ok(()),
        _ => Err("neither a config nor, on the system channel, a channel creation".into()),
    }
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
        if crate::runtime::faults::ENABLED {
            // Named per channel, so that a count (`1*...`) is spent by this
            // channel's records alone.
            let point = format!(
                "{}::{}",
                crate::runtime::faults::points::KAFKA_CUTTER_RECORD,
                self.channel()
            );
            if let Err(e) = crate::runtime::faults::check(&point, std::path::Path::new("")) {
                self.fail(format!("record at offset {}: {e}", consumed.offset), ctx);
                return AtomicResponse::new(done());
            }
        }
        AtomicResponse::new(self.process(consumed, ctx))
    }
}

impl Handler<StopCutter> for KafkaCutter {
    type Result = ();

    fn handle(&mut self, _: StopCutter, ctx: &mut Context<Self>) {
        // Its owner stops it: the owner reports if that was not planned.
        self.stop_now(ctx);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::configtx::ChannelPolicies;
    use crate::fabric::localconfig::kafka::KafkaSettings;
    use crate::fabric::protos::common::Header;
    use crate::runtime::metrics::ChannelMetrics;
    use crate::security::signer::CertificateAuthority;
    use std::sync::Mutex;

    const CHANNEL: &str = "cutterchannel";

    /// What the cutter sent its chain.
    #[derive(Default)]
    struct Seen {
        batches: Vec<(u64, Vec<Bytes>, bool, Offsets)>,
        settled: Vec<i64>,
    }

    struct Recorder(Arc<Mutex<Seen>>);

    impl Actor for Recorder {
        type Context = Context<Self>;
    }

    crate::counted_handlers!(Recorder: KafkaBatch, Settled);

    impl Handler<KafkaBatch> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: KafkaBatch, _: &mut Context<Self>) {
            let seen = &mut self.0.lock().unwrap().batches;
            seen.push((msg.number, msg.batch, msg.isolated, msg.offsets));
        }
    }

    impl Handler<Settled> for Recorder {
        type Result = ();
        fn handle(&mut self, msg: Settled, _: &mut Context<Self>) {
            self.0.lock().unwrap().settled.push(msg.through);
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Flush;

    impl Handler<Flush> for Recorder {
        type Result = ();
        fn handle(&mut self, _: Flush, _: &mut Context<Self>) {}
    }

    struct Rig {
        cutter: Addr<KafkaCutter>,
        recorder: Addr<Recorder>,
        seen: Arc<Mutex<Seen>>,
        _height: watch::Sender<u64>,
        _config: watch::Sender<Arc<ChannelConfig>>,
    }

    /// A cutter at block 1 of a fresh channel (MaxMessageCount 3,
    /// PreferredMaxBytes 200), on a clock that never moves: its timer
    /// never fires, so it never posts.
    fn rig() -> Rig {
        let mut profile = GenesisProfile::embedded(CHANNEL, vec![]);
        profile.batch_size.max_message_count = 3;
        profile.batch_size.preferred_max_bytes = 200;
        let config = ChannelConfig::from_config_block(&profile.genesis_block()).unwrap();
        let (config_tx, config_rx) = watch::channel(Arc::new(config));
        let (height_tx, height_rx) = watch::channel(1);
        let seen = Arc::new(Mutex::new(Seen::default()));
        let recorder = Recorder(seen.clone()).start();
        let metrics = ChannelMetrics::detached(CHANNEL);
        let signer = CertificateAuthority::generate("SampleOrg")
            .unwrap()
            .issue("orderer", "orderer")
            .unwrap();
        // Nothing listens there: nothing in these tests posts.
        let producer = PartitionProducer::new(
            &KafkaSettings::default(),
            &["127.0.0.1:9".into()],
            CHANNEL,
            metrics.kafka.clone(),
        )
        .unwrap();
        let (clock, _manual) = Clock::manual();
        let parts = CutterParts {
            channel_id: CHANNEL.into(),
            config: config_rx,
            height: height_rx,
            filters: Arc::new(RuleSet::standard()),
            policies: Arc::new(ChannelPolicies),
            signer: Arc::new(signer),
            producer,
            clock,
            metrics: metrics.kafka.clone(),
            next_block: 1,
            offsets: Offsets::FRESH,
            chain: Mailbox::of(&recorder, &metrics.chain),
            settled: Mailbox::of(&recorder, &metrics.chain),
            stop: CancellationToken::new(),
        };
        Rig {
            cutter: KafkaCutter::new(parts).start(),
            recorder,
            seen,
            _height: height_tx,
            _config: config_tx,
        }
    }

    fn envelope(kind: HeaderType, data: &[u8]) -> Bytes {
        let header = ChannelHeader {
            r#type: kind as i32,
            channel_id: CHANNEL.into(),
            ..Default::default()
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: header.encode_to_vec().into(),
                signature_header: Bytes::new(),
            }),
            data: Bytes::copy_from_slice(data),
        };
        Envelope {
            payload: payload.encode_to_vec().into(),
            signature: Bytes::new(),
        }
        .encode_to_vec()
        .into()
    }

    fn normal(data: &[u8], original_offset: i64) -> Record {
        Record::Normal(Regular {
            payload: envelope(HeaderType::EndorserTransaction, data),
            config_seq: 0,
            original_offset,
        })
    }

    impl Rig {
        async fn read(&self, records: Vec<(i64, Record)>) {
            for (offset, record) in records {
                let payload = Bytes::from(record.encode());
                self.cutter
                    .send(Consumed { offset, payload })
                    .await
                    .unwrap();
            }
            self.recorder.send(Flush).await.unwrap();
        }

        /// The batches so far: (number, envelope count, last offset persisted).
        fn batches(&self) -> Vec<(u64, usize, i64)> {
            let seen = self.seen.lock().unwrap();
            let shape = |(n, b, _, o): &(u64, Vec<Bytes>, bool, Offsets)| {
                (*n, b.len(), o.last_offset_persisted)
            };
            seen.batches.iter().map(shape).collect()
        }
    }

    #[actix_rt::test]
    async fn count_cuts_record_the_offset_of_their_last_record() {
        let rig = rig();
        let records = (1..=7).map(|o| (o, normal(b"tx", 0))).collect();
        rig.read(vec![(0, Record::Connect)]).await;
        rig.read(records).await;
        assert_eq!(rig.batches(), vec![(1, 3, 3), (2, 3, 6)]);
    }

    #[actix_rt::test]
    async fn only_a_time_to_cut_for_the_next_block_cuts() {
        let rig = rig();
        rig.read(vec![(0, normal(b"a", 0)), (1, normal(b"b", 0))])
            .await;
        // Stale (an earlier block) and faulty (beyond the next) are ignored.
        rig.read(vec![
            (2, Record::TimeToCut { block_number: 0 }),
            (3, Record::TimeToCut { block_number: 5 }),
        ])
        .await;
        assert!(rig.batches().is_empty());
        // The next block's cuts what is pending; the block records the
        // time-to-cut's own offset. A second one for it is stale.
        rig.read(vec![
            (4, Record::TimeToCut { block_number: 1 }),
            (5, Record::TimeToCut { block_number: 1 }),
        ])
        .await;
        assert_eq!(rig.batches(), vec![(1, 2, 4)]);
        // For the next block, with nothing pending: no block.
        rig.read(vec![(6, Record::TimeToCut { block_number: 2 })])
            .await;
        assert_eq!(rig.batches(), vec![(1, 2, 4)]);
    }

    #[actix_rt::test]
    async fn a_batch_cut_before_a_record_ends_at_the_offset_before_it() {
        let rig = rig();
        // 80 + 80 fit PreferredMaxBytes 200; the third overflows it: the
        // first two are cut, the third is pending. Restarting from offset
        // 11 reads the pending one again.
        let big = vec![b'x'; 60];
        rig.read(vec![
            (10, normal(&big, 0)),
            (11, normal(&big, 0)),
            (12, normal(&big, 0)),
        ])
        .await;
        assert_eq!(rig.batches(), vec![(1, 2, 11)]);
        // Over PreferredMaxBytes alone: the pending one is cut before it
        // (ending at 12), then it is a block of its own (ending at 13).
        rig.read(vec![(13, normal(&[b'y'; 300], 0))]).await;
        assert_eq!(rig.batches(), vec![(1, 2, 11), (2, 1, 12), (3, 1, 13)]);
    }

    #[actix_rt::test]
    async fn a_resubmitted_copy_is_processed_once() {
        let rig = rig();
        rig.read(vec![
            (20, normal(b"copy", 7)),
            (21, normal(b"copy", 7)),
            (22, normal(b"other", 0)),
            (23, normal(b"later", 0)),
        ])
        .await;
        let seen = rig.seen.lock().unwrap();
        let (_, batch, _, offsets) = &seen.batches[0];
        assert_eq!(batch.len(), 3, "the second copy was skipped");
        assert_eq!(offsets.last_original_offset_processed, 7);
        assert_eq!(offsets.last_offset_persisted, 23);
    }

    #[actix_rt::test]
    async fn rogue_records_are_skipped_by_every_orderer_alike() {
        let rig = rig();
        let config_as_normal = Record::Normal(Regular {
            payload: envelope(HeaderType::Config, b"not really"),
            config_seq: 0,
            original_offset: 0,
        });
        let bad_config = Record::Config(Regular {
            payload: envelope(HeaderType::Config, b"not a config"),
            config_seq: 0,
            original_offset: 0,
        });
        let creation_off_system = Record::Config(Regular {
            payload: envelope(HeaderType::OrdererTransaction, b"creation"),
            config_seq: 0,
            original_offset: 0,
        });
        rig.read(vec![
            (30, config_as_normal),
            (31, bad_config),
            (32, creation_off_system),
        ])
        .await;
        let garbage = Consumed {
            offset: 33,
            payload: Bytes::from_static(b"\xff\xff"),
        };
        rig.cutter.send(garbage).await.unwrap();
        rig.recorder.send(Flush).await.unwrap();
        assert!(rig.batches().is_empty(), "nothing was ordered");
        // Their room goes: everything up to them is settled.
        let settled = rig.seen.lock().unwrap().settled.clone();
        assert_eq!(settled.last(), Some(&33));
    }
}
