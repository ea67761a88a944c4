//! The chain's Kafka clients: the partition producer, the partition
//! consumer, and the topic. librdkafka runs its own threads; these are thin
//! handles the chain's actors share.
//!
//! Ordering: one idempotent producer per chain, so the records a node posts
//! keep their order and a retried send is never written twice.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::gauge::Gauge;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::statistics::Statistics;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::record::Record;
use super::KafkaMetrics;
use crate::fabric::localconfig::kafka::KafkaSettings;

/// The librdkafka settings every client of a chain shares.
pub fn client_config(settings: &KafkaSettings, brokers: &[String]) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", brokers.join(","))
        // librdkafka's floor is one second.
        .set(
            "socket.connection.setup.timeout.ms",
            millis(settings.dial_timeout.max(Duration::from_secs(1))),
        )
        // Reconnect soon after a broker returns, not after librdkafka's
        // default back-off of up to 10 s.
        .set("reconnect.backoff.max.ms", "1000");
    if !settings.version.is_empty() {
        config
            .set("api.version.request", "false")
            .set("broker.version.fallback", &settings.version);
    }
    if settings.verbose {
        config.set("debug", "broker,protocol,topic,msg");
    }
    let protocol = match (&settings.tls, &settings.sasl_plain) {
        (None, None) => "plaintext",
        (Some(_), None) => "ssl",
        (None, Some(_)) => "sasl_plaintext",
        (Some(_), Some(_)) => "sasl_ssl",
    };
    config.set("security.protocol", protocol);
    if let Some(tls) = &settings.tls {
        if !tls.root_cas.is_empty() {
            config.set("ssl.ca.pem", tls.root_cas.concat());
        }
        if let Some(key) = &tls.private_key {
            config.set("ssl.key.pem", key);
        }
        if let Some(certificate) = &tls.certificate {
            config.set("ssl.certificate.pem", certificate);
        }
    }
    if let Some((user, password)) = &settings.sasl_plain {
        config
            .set("sasl.mechanisms", "PLAIN")
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    config
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Every channel's topic has one partition, and it is this one.
pub const PARTITION: i32 = 0;

/// Why the partition could not be reached.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum PartitionError {
    #[error("cannot set up the Kafka client: {0}")]
    Client(String),
    /// The brokers answered, and refused to create the topic.
    #[error("cannot create topic {topic}: {reason}")]
    Topic { topic: String, reason: String },
    /// The brokers did not answer.
    #[error("the Kafka brokers cannot be reached: {0}")]
    Unreachable(String),
    #[error("cannot post to partition {topic}/0: {reason}")]
    Post {
        topic: String,
        reason: String,
        failure: PostFailure,
    },
    #[error("cannot read partition {topic}/0: {reason}")]
    Read { topic: String, reason: String },
}

/// What a failed post says about the partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFailure {
    /// The brokers could not be reached in time: the chain is errored.
    Unreachable,
    /// This record was refused (too large, say): the chain goes on.
    Refused,
    /// The producer can no longer be used (its idempotence broke, it was
    /// fenced): the chain must start again with new clients.
    Fatal,
}

impl PostFailure {
    pub fn of(error: &KafkaError) -> PostFailure {
        use RDKafkaErrorCode as Code;
        match error.rdkafka_error_code() {
            Some(
                Code::Fatal
                | Code::Fenced
                | Code::OutOfOrderSequenceNumber
                | Code::UnknownProducerId
                | Code::InvalidProducerEpoch
                | Code::ProducerFenced,
            ) => PostFailure::Fatal,
            Some(
                Code::MessageSizeTooLarge
                | Code::InvalidMessageSize
                | Code::InvalidRecord
                | Code::InvalidMessage,
            ) => PostFailure::Refused,
            _ => PostFailure::Unreachable,
        }
    }
}

impl PartitionError {
    /// How a failed post should be taken; other errors are the partition
    /// being unreachable.
    pub fn failure(&self) -> PostFailure {
        match self {
            PartitionError::Post { failure, .. } => *failure,
            _ => PostFailure::Unreachable,
        }
    }
}

/// librdkafka's logs and statistics, routed to tracing and the metrics.
pub struct ChainClientContext {
    channel: String,
    /// Records behind the partition's end, from librdkafka's statistics.
    consumer_lag: Option<Gauge>,
}

impl ClientContext for ChainClientContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        let channel = &self.channel;
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => {
                tracing::error!(%channel, facility, "kafka client: {message}")
            }
            RDKafkaLogLevel::Warning => {
                tracing::warn!(%channel, facility, "kafka client: {message}")
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(%channel, facility, "kafka client: {message}")
            }
            RDKafkaLogLevel::Debug => {
                tracing::debug!(%channel, facility, "kafka client: {message}")
            }
        }
    }

    fn stats(&self, statistics: Statistics) {
        let Some(gauge) = &self.consumer_lag else {
            return;
        };
        let lag = statistics
            .topics
            .values()
            .flat_map(|topic| topic.partitions.get(&PARTITION))
            .map(|partition| partition.consumer_lag)
            .find(|lag| *lag >= 0);
        if let Some(lag) = lag {
            gauge.set(lag);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::warn!(channel = %self.channel, %error, "kafka client: {reason}");
    }
}

impl ConsumerContext for ChainClientContext {}

/// The topic a channel's records go to: the channel's name.
pub fn topic_of(channel: &str) -> String {
    channel.to_string()
}

/// Creates the channel's topic (one partition) unless it exists. Brokers
/// that create topics on first use, or refuse the admin API, are left to do
/// so: the CONNECT post that follows tells whether the partition exists.
pub async fn ensure_topic(
    settings: &KafkaSettings,
    brokers: &[String],
    topic: &str,
) -> Result<(), PartitionError> {
    let admin: AdminClient<_> = client_config(settings, brokers)
        .create()
        .map_err(|e| PartitionError::Client(e.to_string()))?;
    let new_topic = NewTopic::new(
        topic,
        1,
        TopicReplication::Fixed(settings.replication_factor),
    );
    let options = AdminOptions::new()
        .operation_timeout(Some(settings.produce_timeout))
        .request_timeout(Some(settings.produce_timeout));
    let results = admin
        .create_topics([&new_topic], &options)
        .await
        .map_err(|e| PartitionError::Unreachable(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => {
                return Err(PartitionError::Topic {
                    topic: topic.into(),
                    reason: code.to_string(),
                })
            }
        }
    }
    Ok(())
}

/// Posts records to the channel's partition, in the order they are given.
#[derive(Clone)]
pub struct PartitionProducer {
    producer: FutureProducer<ChainClientContext>,
    topic: Arc<str>,
    metrics: KafkaMetrics,
}

impl PartitionProducer {
    pub fn new(
        settings: &KafkaSettings,
        brokers: &[String],
        channel: &str,
        metrics: KafkaMetrics,
    ) -> Result<PartitionProducer, PartitionError> {
        let mut config = client_config(settings, brokers);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // Gather what many Broadcast streams send into few requests; a
            // shorter linger leaves librdkafka's thread polling while
            // requests are out (docs/benchmarks.md, Kafka).
            .set("linger.ms", "10")
            // Records as large as a channel allows (Fabric's producer takes
            // up to 100 MiB): AbsoluteMaxBytes is checked before posting.
            .set("message.max.bytes", "104857600")
            .set("batch.num.messages", "10000")
            // Never give a record up while the process runs: a timed-out
            // idempotent record makes librdkafka bump the producer epoch,
            // which some brokers (tansu 0.6) cannot take. While the brokers
            // are away the consumer reports the chain errored, new
            // submissions are refused, and those in flight are answered
            // once the brokers are back.
            .set("message.timeout.ms", "0");
        let context = ChainClientContext {
            channel: channel.into(),
            consumer_lag: None,
        };
        let producer = config
            .create_with_context(context)
            .map_err(|e| PartitionError::Client(e.to_string()))?;
        Ok(PartitionProducer {
            producer,
            topic: topic_of(channel).into(),
            metrics,
        })
    }

    /// Queues `record` now (so records keep the order of the calls) and
    /// returns what resolves to its offset once the broker has it.
    pub fn post(
        &self,
        record: &Record,
    ) -> impl Future<Output = Result<i64, PartitionError>> + 'static {
        let payload = record.encode();
        let topic = self.topic.clone();
        let queued = self.producer.send_result(
            FutureRecord::<(), [u8]>::to(&self.topic)
                .partition(PARTITION)
                .payload(&payload),
        );
        let queued = queued.map_err(|(e, _)| (e.to_string(), PostFailure::of(&e)));
        let latency = self.metrics.produce_latency.clone();
        let started = Instant::now();
        async move {
            let failed = |(reason, failure): (String, PostFailure)| PartitionError::Post {
                topic: topic.to_string(),
                reason,
                failure,
            };
            let delivery = queued.map_err(failed)?;
            match delivery.await {
                Ok(Ok(delivered)) => {
                    latency.observe(started.elapsed().as_secs_f64());
                    Ok(delivered.offset)
                }
                Ok(Err((e, _))) => Err(failed((e.to_string(), PostFailure::of(&e)))),
                Err(_) => Err(failed((
                    "the producer was closed".into(),
                    PostFailure::Unreachable,
                ))),
            }
        }
    }

    /// Posts a CONNECT record and waits for it: the partition takes writes.
    pub fn connect(&self) -> impl Future<Output = Result<i64, PartitionError>> + 'static {
        self.post(&Record::Connect)
    }
}

/// Reads the channel's partition from a given offset, without a consumer
/// group: the offset a chain goes on from is in its ledger, not in Kafka.
pub fn partition_consumer(
    settings: &KafkaSettings,
    brokers: &[String],
    channel: &str,
    from: i64,
    consumer_lag: Gauge,
) -> Result<StreamConsumer<ChainClientContext>, PartitionError> {
    let topic = topic_of(channel);
    let mut config = client_config(settings, brokers);
    config
        // librdkafka wants a group id, though nothing is committed to it.
        .set("group.id", format!("ordo-{channel}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("enable.partition.eof", "false")
        // A chain that cannot read on from where its ledger ends must stop,
        // not silently read from elsewhere (Fabric halts on out-of-range).
        .set("auto.offset.reset", "error")
        // Some brokers (tansu) answer a fetch only after this long: it is
        // the time from post to block, against idle polling of the broker.
        .set("fetch.wait.max.ms", "50")
        .set("statistics.interval.ms", "5000");
    let context = ChainClientContext {
        channel: channel.into(),
        consumer_lag: Some(consumer_lag),
    };
    let consumer: StreamConsumer<ChainClientContext> = config
        .create_with_context(context)
        .map_err(|e| PartitionError::Client(e.to_string()))?;
    let offset = if from <= 0 {
        Offset::Beginning
    } else {
        Offset::Offset(from)
    };
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(&topic, PARTITION, offset)
        .map_err(|e| PartitionError::Client(e.to_string()))?;
    consumer
        .assign(&assignment)
        .map_err(|e| PartitionError::Read {
            topic: topic.clone(),
            reason: e.to_string(),
        })?;
    Ok(consumer)
}
