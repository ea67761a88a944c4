//! The ConsumerActor of a Kafka channel: reads the channel's partition in
//! offset order and hands each record to the channel's CutterActor, one at
//! a time (the next is read only once the cutter has processed the last:
//! backpressure from the ledger reaches the partition, not memory).
//!
//! It tells the ChainActor when the partition cannot be read
//! ([`PartitionHealth::Lost`]) and when records flow again
//! ([`PartitionHealth::Readable`]); librdkafka reconnects by itself.
//!
//! Mailbox: [`StopConsumer`] (from the ChainActor when it stops or halts).

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use rdkafka::consumer::StreamConsumer;
use rdkafka::error::KafkaError;
use rdkafka::Message as _;
use tokio_util::sync::CancellationToken;

use super::client::ChainClientContext;
use super::cutter::Consumed;
use crate::runtime::channel::mailbox::Mailbox;
use crate::runtime::channel::tree::ChildGuard;

/// What the ChainActor hears of the partition.
#[derive(Message, Debug, Clone, PartialEq, Eq)]
#[rtype(result = "()")]
pub enum PartitionHealth {
    /// Reading failed (the brokers are unreachable, say).
    Lost(String),
    /// A record was read after a failure.
    Readable,
}

/// How a consumer error is taken.
fn severity(error: &KafkaError) -> Severity {
    use rdkafka::error::RDKafkaErrorCode as Code;
    if matches!(error, KafkaError::MessageConsumptionFatal(_)) {
        return Severity::Fatal;
    }
    match error.rdkafka_error_code() {
        // The offset to read on from is gone (retention, a new topic):
        // reading from elsewhere would cut other blocks than the peers.
        Some(Code::AutoOffsetReset | Code::OffsetOutOfRange | Code::Fatal) => Severity::Fatal,
        Some(
            Code::AllBrokersDown
            | Code::UnknownTopicOrPartition
            | Code::UnknownPartition
            | Code::UnknownTopic,
        ) => Severity::Lost,
        // A connection dropped and re-made, a retried fetch: librdkafka
        // recovers from these by itself.
        _ => Severity::Passing,
    }
}

enum Severity {
    Passing,
    Lost,
    Fatal,
}

/// Stop reading (the chain halts or stops).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StopConsumer;

type Read = Result<Consumed, KafkaError>;

pub struct ConsumerActor {
    channel_id: String,
    consumer: Arc<StreamConsumer<ChainClientContext>>,
    cutter: Mailbox<Consumed>,
    chain: Recipient<PartitionHealth>,
    /// Set after a read failed, until a record is read again.
    lost: bool,
    /// The offset the next record must have at least; the first record of
    /// a chain that reads on from its ledger must have exactly this one.
    expected: i64,
    exact_start: bool,
    stop: CancellationToken,
    guard: Option<ChildGuard>,
}

impl ConsumerActor {
    pub fn new(
        channel_id: String,
        consumer: StreamConsumer<ChainClientContext>,
        cutter: Mailbox<Consumed>,
        chain: Recipient<PartitionHealth>,
        from: i64,
        stop: CancellationToken,
        guard: ChildGuard,
    ) -> ConsumerActor {
        ConsumerActor {
            channel_id,
            consumer: Arc::new(consumer),
            cutter,
            chain,
            lost: false,
            expected: from.max(0),
            exact_start: from > 0,
            stop,
            guard: Some(guard),
        }
    }

    fn fail(&mut self, reason: String, ctx: &mut Context<Self>) {
        tracing::error!(channel = %self.channel_id, %reason, "kafka consumer cannot go on");
        if let Some(guard) = &self.guard {
            guard.report_failure(reason);
        }
        ctx.stop();
    }

    fn stop_now(&mut self, ctx: &mut Context<Self>) {
        if let Some(guard) = self.guard.take() {
            guard.retire();
        }
        ctx.stop();
    }

    fn records(&self) -> impl futures::Stream<Item = Read> + 'static {
        futures::stream::unfold(self.consumer.clone(), |consumer| async move {
            let read = consumer.recv().await.map(|message| Consumed {
                offset: message.offset(),
                payload: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
            });
            Some((read, consumer))
        })
    }

    fn tell_chain(&mut self, health: PartitionHealth) {
        if self.chain.try_send(health.clone()).is_err() {
            self.chain.do_send(health);
        }
    }
}

impl Actor for ConsumerActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(self.records());
    }
}

impl StreamHandler<Read> for ConsumerActor {
    fn handle(&mut self, read: Read, ctx: &mut Context<Self>) {
        match read {
            Ok(consumed) => {
                if consumed.offset < self.expected
                    || (self.exact_start && consumed.offset != self.expected)
                {
                    let reason = format!(
                        "read offset {} where offset {} was next: the partition no longer holds what this chain has not read",
                        consumed.offset, self.expected
                    );
                    return self.fail(reason, ctx);
                }
                self.exact_start = false;
                self.expected = consumed.offset + 1;
                if self.lost {
                    self.lost = false;
                    tracing::info!(channel = %self.channel_id, offset = consumed.offset, "partition readable again");
                    self.tell_chain(PartitionHealth::Readable);
                }
                // The stream is not polled until the cutter has the record
                // processed: records stay in order and in the broker.
                let cutter = self.cutter.clone();
                let stop = self.stop.clone();
                let processed = async move {
                    tokio::select! {
                        answer = cutter.send(consumed) => Some(answer.is_ok()),
                        _ = stop.cancelled() => None,
                    }
                };
                ctx.wait(
                    processed
                        .into_actor(self)
                        .map(|answer, act, ctx| match answer {
                            None => act.stop_now(ctx),
                            Some(true) => {}
                            Some(false) => {
                                act.fail("the cutter stopped taking records".into(), ctx)
                            }
                        }),
                );
            }
            Err(e) => match severity(&e) {
                Severity::Fatal => self.fail(format!("reading the partition: {e}"), ctx),
                Severity::Lost if !self.lost => {
                    self.lost = true;
                    tracing::warn!(channel = %self.channel_id, error = %e, "cannot read the partition");
                    self.tell_chain(PartitionHealth::Lost(e.to_string()));
                }
                Severity::Lost => {}
                Severity::Passing => {
                    tracing::info!(channel = %self.channel_id, error = %e, "kafka consumer error; librdkafka retries");
                }
            },
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<StopConsumer> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: StopConsumer, ctx: &mut Context<Self>) {
        self.stop_now(ctx);
    }
}
