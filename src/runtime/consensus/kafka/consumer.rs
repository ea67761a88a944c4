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

use super::client::ChainClientContext;
use super::cutter::{Consumed, KafkaCutter};
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
    guard: Option<ChildGuard>,
}

impl ConsumerActor {
    pub fn new(
        channel_id: String,
        consumer: StreamConsumer<ChainClientContext>,
        cutter: &Addr<KafkaCutter>,
        chain: Recipient<PartitionHealth>,
        metrics: &crate::runtime::metrics::ActorMetrics,
        guard: ChildGuard,
    ) -> ConsumerActor {
        ConsumerActor {
            channel_id,
            consumer: Arc::new(consumer),
            cutter: Mailbox::of(cutter, metrics),
            chain,
            lost: false,
            guard: Some(guard),
        }
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
                if self.lost {
                    self.lost = false;
                    tracing::info!(channel = %self.channel_id, offset = consumed.offset, "partition readable again");
                    self.tell_chain(PartitionHealth::Readable);
                }
                // The stream is not polled until the cutter has the record
                // processed: records stay in order and in the broker.
                let cutter = self.cutter.clone();
                let processed = async move { cutter.send(consumed).await };
                ctx.wait(processed.into_actor(self).map(|answer, act, ctx| {
                    if answer.is_err() {
                        if let Some(guard) = &act.guard {
                            guard.report_failure("the cutter stopped taking records");
                        }
                        ctx.stop();
                    }
                }));
            }
            Err(e) => {
                if !self.lost {
                    self.lost = true;
                    tracing::warn!(channel = %self.channel_id, error = %e, "cannot read the partition");
                    self.tell_chain(PartitionHealth::Lost(e.to_string()));
                }
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<StopConsumer> for ConsumerActor {
    type Result = ();

    fn handle(&mut self, _: StopConsumer, ctx: &mut Context<Self>) {
        if let Some(guard) = self.guard.take() {
            guard.retire();
        }
        ctx.stop();
    }
}
