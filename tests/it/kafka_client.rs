//! What the Kafka consenter relies on from a Kafka-protocol broker, checked
//! with rdkafka against a real one (see `kafka_broker`). The facts and the
//! client settings that worked are written up in docs/kafka.md; run with
//! `--nocapture` to see the figures each probe prints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::kafka_broker::KafkaBroker;

/// Bound for anything that should happen promptly.
const PATIENCE: Duration = Duration::from_secs(30);

/// Records the errors librdkafka reports outside of deliveries and messages
/// (connection losses and the like), so a probe can say what a client saw.
#[derive(Clone, Default)]
struct Observed {
    errors: Arc<Mutex<Vec<String>>>,
}

impl Observed {
    fn errors(&self) -> Vec<String> {
        self.errors.lock().expect("errors").clone()
    }

    fn push(&self, error: String) {
        self.errors.lock().expect("errors").push(error);
    }
}

impl ClientContext for Observed {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error
            .rdkafka_error_code()
            .map(|code| format!("{code:?}"))
            .unwrap_or_else(|| error.to_string());
        self.push(format!("{code}: {reason}"));
    }
}

impl ConsumerContext for Observed {}

/// The producer settings the consenter is meant to use (docs/kafka.md).
fn producer_config(broker: &KafkaBroker) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("acks", "all")
        .set("linger.ms", "5")
        // librdkafka backs off up to 10 s between reconnects by default; a
        // broker back after a restart should be used again within a second.
        .set("reconnect.backoff.max.ms", "1000");
    config
}

fn producer(broker: &KafkaBroker, extra: &[(&str, &str)]) -> (FutureProducer<Observed>, Observed) {
    let observed = Observed::default();
    let mut config = producer_config(broker);
    for (key, value) in extra {
        config.set(*key, *value);
    }
    let producer = config
        .create_with_context(observed.clone())
        .expect("producer");
    (producer, observed)
}

/// Tansu answers a fetch only after about this long (see
/// `consume_latency_follows_fetch_wait_max_ms`); librdkafka's default is 500.
const FETCH_WAIT_MAX_MS: &str = "50";

/// A consumer that is assigned its partition rather than joining a group: the
/// consenter tracks its offsets itself, in the blocks' metadata. librdkafka
/// still wants a group.id for `assign` ("Local: Unknown group" without one);
/// with `assign` it never joins the group, and nothing is committed.
fn consumer_config(broker: &KafkaBroker) -> ClientConfig {
    let mut config = broker.client_config();
    config
        .set("group.id", "ordo-probe")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("fetch.wait.max.ms", FETCH_WAIT_MAX_MS)
        .set("reconnect.backoff.max.ms", "1000");
    config
}

fn partition_at(topic: &str, offset: Offset) -> TopicPartitionList {
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, offset)
        .expect("partition offset");
    assignment
}

fn stream_consumer(
    broker: &KafkaBroker,
    topic: &str,
    offset: Offset,
) -> (StreamConsumer<Observed>, Observed) {
    let observed = Observed::default();
    let consumer: StreamConsumer<Observed> = consumer_config(broker)
        .create_with_context(observed.clone())
        .expect("consumer");
    consumer
        .assign(&partition_at(topic, offset))
        .expect("assign");
    (consumer, observed)
}

/// Receives `count` messages as (offset, payload); errors are recorded, not fatal.
async fn receive(
    consumer: &StreamConsumer<Observed>,
    observed: &Observed,
    count: usize,
) -> Vec<(i64, Vec<u8>)> {
    let mut received = Vec::with_capacity(count);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while received.len() < count {
        match tokio::time::timeout_at(deadline, consumer.recv()).await {
            Ok(Ok(message)) => received.push((
                message.offset(),
                message.payload().unwrap_or_default().to_vec(),
            )),
            Ok(Err(error)) => observed.push(format!("recv: {error}")),
            Err(_) => panic!(
                "received {} of {count} messages; errors: {:?}",
                received.len(),
                observed.errors()
            ),
        }
    }
    received
}

/// Produces one message and waits for its acknowledgement: its offset.
async fn produce_one(producer: &FutureProducer<Observed>, topic: &str, payload: &[u8]) -> i64 {
    let delivery = producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(payload),
            Duration::from_secs(0),
        )
        .await
        .unwrap_or_else(|(error, _)| panic!("delivery failed: {error}"));
    assert_eq!(delivery.partition, 0);
    delivery.offset
}

fn payload(index: usize) -> Vec<u8> {
    // About the size of a small transaction envelope's header, told apart by index.
    format!("message {index:06} {}", "x".repeat(80)).into_bytes()
}

/// User + system CPU time of a process so far, from /proc/PID/stat.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("process stat");
    // Fields after the command name (which may hold spaces) start at field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("stat format")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / per_second)
}

/// (a) InitProducerId: an idempotent producer gets a producer id and delivers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_delivers() {
    let broker = KafkaBroker::start().await;
    broker.create_topic("idempotent").await;
    let (producer, observed) = producer(&broker, &[("enable.idempotence", "true")]);
    let mut offsets = Vec::new();
    for index in 0..3 {
        offsets.push(produce_one(&producer, "idempotent", &payload(index)).await);
    }
    println!(
        "idempotent producer: offsets {offsets:?}, errors {:?}",
        observed.errors()
    );
    assert_eq!(offsets, vec![0, 1, 2]);
}

/// (b) Many messages in flight: all acked, read back in order at the acked
/// offsets; prints the throughput and the broker's CPU time.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_messages_in_flight_are_acked_and_read_back_in_order() {
    const COUNT: usize = 10_000;
    let broker = KafkaBroker::start().await;
    broker.create_topic("flight").await;
    let (producer, observed) = producer(&broker, &[]);
    let pid = broker.pid().expect("broker runs");

    let cpu_before = cpu_time(pid);
    let started = Instant::now();
    let deliveries: Vec<_> = (0..COUNT)
        .map(|index| {
            producer
                .send_result(
                    FutureRecord::<(), _>::to("flight")
                        .partition(0)
                        .payload(&payload(index)),
                )
                .unwrap_or_else(|(error, _)| panic!("queued: {error}"))
        })
        .collect();
    let acked: Vec<i64> = join_all(deliveries)
        .await
        .into_iter()
        .map(|delivery| {
            delivery
                .expect("delivery reported")
                .unwrap_or_else(|(error, _)| panic!("delivery failed: {error}"))
                .offset
        })
        .collect();
    let elapsed = started.elapsed();
    let broker_cpu = cpu_time(pid) - cpu_before;
    println!(
        "{COUNT} messages of {} bytes acked in {elapsed:?}: {:.0} msg/s; broker CPU {broker_cpu:?} ({:.0}% of one core); errors {:?}",
        payload(0).len(),
        COUNT as f64 / elapsed.as_secs_f64(),
        100.0 * broker_cpu.as_secs_f64() / elapsed.as_secs_f64(),
        observed.errors()
    );

    // Offsets from 0, contiguous, in the order of sending (one producer).
    let expected: Vec<i64> = (0..COUNT as i64).collect();
    assert_eq!(acked, expected, "acked offsets");

    let (consumer, observed) = stream_consumer(&broker, "flight", Offset::Beginning);
    let started = Instant::now();
    let received = receive(&consumer, &observed, COUNT).await;
    println!("{COUNT} messages read back in {:?}", started.elapsed());
    for (index, (offset, body)) in received.iter().enumerate() {
        assert_eq!(*offset, acked[index], "offset of message {index}");
        assert_eq!(body, &payload(index), "payload at offset {offset}");
    }
}

/// (c) `assign` without a group: reads from exactly the offset given, and at
/// the end waits for new messages without an error. (e, f) offsets start at
/// 0 and are contiguous; the high watermark is the next offset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assigned_consumer_reads_from_the_offset_given_and_waits_at_the_end() {
    let broker = KafkaBroker::start().await;
    broker.create_topic("assigned").await;
    let (producer, _) = producer(&broker, &[]);

    let (low, high) = watermarks(&broker, "assigned").await;
    println!("new topic: watermarks ({low}, {high})");
    assert_eq!((low, high), (0, 0));

    let mut offsets = Vec::new();
    for index in 0..5 {
        offsets.push(produce_one(&producer, "assigned", &payload(index)).await);
    }
    assert_eq!(offsets, vec![0, 1, 2, 3, 4], "offsets of a new topic");
    assert_eq!(watermarks(&broker, "assigned").await, (0, 5));

    // From a given offset, with the StreamConsumer.
    let (consumer, observed) = stream_consumer(&broker, "assigned", Offset::Offset(2));
    let received = receive(&consumer, &observed, 3).await;
    let read: Vec<i64> = received.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(read, vec![2, 3, 4]);
    assert_eq!(received[0].1, payload(2));
    // Lag as the consenter computes it: high watermark - next offset to read.
    let (_, high) = watermarks(&broker, "assigned").await;
    assert_eq!(high - (read[2] + 1), 0, "lag once caught up");

    // At the end: nothing, and no error, until a new message comes.
    let waited = tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await;
    assert!(
        waited.is_err(),
        "a message or an error at the end: {waited:?}"
    );
    let offset = produce_one(&producer, "assigned", &payload(5)).await;
    let received = receive(&consumer, &observed, 1).await;
    assert_eq!(received, vec![(offset, payload(5))]);
    assert_eq!(offset, 5);
    assert!(observed.errors().is_empty(), "{:?}", observed.errors());

    // From the beginning, with the BaseConsumer the consenter may poll on a thread.
    let base_config = consumer_config(&broker);
    let polled = tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = base_config.create().expect("base consumer");
        consumer
            .assign(&partition_at("assigned", Offset::Beginning))
            .expect("assign");
        let mut read = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        while read.len() < 6 && Instant::now() < deadline {
            if let Some(message) = consumer.poll(Duration::from_millis(100)) {
                read.push(message.expect("message").offset());
            }
        }
        // At the end, poll answers nothing rather than an error.
        let at_end = consumer
            .poll(Duration::from_millis(300))
            .map(|m| m.map(|m| m.offset()));
        (read, at_end)
    })
    .await
    .expect("base consumer");
    assert_eq!(polled.0, vec![0, 1, 2, 3, 4, 5]);
    assert!(polled.1.is_none(), "at the end: {:?}", polled.1);
}

/// Without group.id, librdkafka refuses `assign` locally (no broker involved).
#[test]
fn assign_needs_a_group_id() {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:1")
        .create()
        .expect("a consumer without group.id is created");
    let refused = consumer
        .assign(&partition_at("any", Offset::Beginning))
        .expect_err("assign without group.id");
    assert!(
        refused.to_string().contains("Unknown group"),
        "assign without group.id: {refused}"
    );
}

/// Past the end: Kafka answers OFFSET_OUT_OF_RANGE there; this broker does
/// not. What a consumer assigned beyond the high watermark then reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_assigned_past_the_end() {
    let broker = KafkaBroker::start().await;
    broker.create_topic("beyond").await;
    let (producer, _) = producer(&broker, &[]);
    for index in 0..3 {
        produce_one(&producer, "beyond", &payload(index)).await;
    }
    // Two beyond the high watermark (3).
    let (consumer, observed) = stream_consumer(&broker, "beyond", Offset::Offset(5));
    for index in 3..8 {
        produce_one(&producer, "beyond", &payload(index)).await;
    }
    let first = tokio::time::timeout(PATIENCE, consumer.recv())
        .await
        .map(|received| received.map(|message| message.offset()));
    println!(
        "assigned at 5 with the high watermark at 3, then 5 more produced: first read {first:?}, errors {:?}",
        observed.errors()
    );
}

async fn watermarks(broker: &KafkaBroker, topic: &str) -> (i64, i64) {
    let consumer: BaseConsumer = consumer_config(broker).create().expect("consumer");
    let topic = topic.to_string();
    tokio::task::spawn_blocking(move || {
        consumer
            .fetch_watermarks(&topic, 0, Duration::from_secs(10))
            .expect("watermarks")
    })
    .await
    .expect("watermarks task")
}

/// (d) The broker killed and restarted on the same port and data: what the
/// producer and the consumer see, and that they resume by themselves without
/// losing or duplicating acked messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_resume_after_the_broker_restarts() {
    let mut broker = KafkaBroker::start().await;
    broker.create_topic("restart").await;
    let (producer, producer_saw) = producer(&broker, &[]);
    // One that gives up quickly, to see what a delivery timeout looks like.
    let (impatient, impatient_saw) = producer_with_timeout(&broker, 2000);
    let (consumer, consumer_saw) = stream_consumer(&broker, "restart", Offset::Beginning);
    let consumer = Arc::new(consumer);

    let mut acked: HashMap<Vec<u8>, i64> = HashMap::new();
    for index in 0..100 {
        let body = payload(index);
        let offset = produce_one(&producer, "restart", &body).await;
        acked.insert(body, offset);
    }
    let before = receive(&consumer, &consumer_saw, 100).await;
    assert_eq!(before.len(), 100);

    broker.kill();
    let down_at = Instant::now();

    // While it is down: deliveries wait (up to message.timeout.ms) ...
    let pending: Vec<_> = (100..150)
        .map(|index| {
            producer
                .send_result(
                    FutureRecord::<(), _>::to("restart")
                        .partition(0)
                        .payload(&payload(index)),
                )
                .unwrap_or_else(|(error, _)| panic!("queued: {error}"))
        })
        .collect();
    // ... and fail with a timeout after it. Waiting for that failure is the
    // downtime: about message.timeout.ms.
    let timed_out = impatient
        .send(
            FutureRecord::<(), _>::to("restart")
                .partition(0)
                .payload(b"impatient"),
            Duration::from_secs(0),
        )
        .await;
    let timeout_code = match &timed_out {
        Ok(delivery) => panic!("delivered while the broker was down: {delivery:?}"),
        Err((error, _)) => error.rdkafka_error_code(),
    };
    println!(
        "impatient producer (message.timeout.ms=2000) after {:?} down: {timeout_code:?}",
        down_at.elapsed()
    );
    assert_eq!(timeout_code, Some(RDKafkaErrorCode::MessageTimedOut));
    // The consumer meanwhile returns nothing, whatever it reports on the side.
    let quiet = tokio::time::timeout(Duration::from_millis(200), consumer.recv()).await;
    if let Ok(received) = quiet {
        println!(
            "consumer while the broker was down: {:?}",
            received.map(|m| m.offset())
        );
    }

    broker.restart().await;
    let restarted_at = Instant::now();
    let downtime = down_at.elapsed();

    let resumed: Vec<i64> = join_all(pending)
        .await
        .into_iter()
        .map(|delivery| {
            delivery
                .expect("delivery reported")
                .unwrap_or_else(|(error, _)| panic!("delivery failed after restart: {error}"))
                .offset
        })
        .collect();
    let redelivered_in = restarted_at.elapsed();
    for (index, offset) in (100..150).zip(&resumed) {
        acked.insert(payload(index), *offset);
    }
    // The impatient producer works again too.
    let offset = produce_one(&impatient, "restart", b"impatient again").await;
    acked.insert(b"impatient again".to_vec(), offset);

    let after = receive(&consumer, &consumer_saw, 51).await;
    println!(
        "down {downtime:?}; queued messages acked {redelivered_in:?} after the restart; offsets {}..={}",
        resumed[0],
        resumed[resumed.len() - 1]
    );
    println!("producer saw: {:?}", producer_saw.errors());
    println!("impatient producer saw: {:?}", impatient_saw.errors());
    println!("consumer saw: {:?}", consumer_saw.errors());

    // Everything acked is there once, at its acked offset; nothing else is.
    let log: Vec<(i64, Vec<u8>)> = before.into_iter().chain(after).collect();
    let offsets: Vec<i64> = log.iter().map(|(offset, _)| *offset).collect();
    let expected: Vec<i64> = (0..log.len() as i64).collect();
    assert_eq!(offsets, expected, "offsets read, across the restart");
    assert_eq!(log.len(), acked.len(), "every acked message once");
    for (offset, body) in &log {
        assert_eq!(
            acked.get(body),
            Some(offset),
            "acked offset of {:?}",
            String::from_utf8_lossy(body)
        );
    }
    assert_eq!(watermarks(&broker, "restart").await, (0, log.len() as i64));
}

fn producer_with_timeout(
    broker: &KafkaBroker,
    timeout_ms: u32,
) -> (FutureProducer<Observed>, Observed) {
    let timeout = timeout_ms.to_string();
    producer(broker, &[("message.timeout.ms", timeout.as_str())])
}

/// What a kill with messages in flight does to a plain and to an idempotent
/// producer: every message is acked in the end and is in the log.
async fn kill_with_messages_in_flight(idempotent: bool) -> KillOutcome {
    const COUNT: usize = 20_000;
    // Killed once this many are written: at ~30-50k messages/s most of the
    // rest are then queued or in flight.
    const WRITTEN_BEFORE_KILL: i64 = 1000;
    let mut broker = KafkaBroker::start().await;
    broker.create_topic("inflight").await;
    // An idempotent producer must never time out against tansu 0.6.0 (see
    // `idempotent_producer_after_a_delivery_timeout`): 0 is no timeout.
    let settings: &[(&str, &str)] = if idempotent {
        &[("enable.idempotence", "true"), ("message.timeout.ms", "0")]
    } else {
        &[("enable.idempotence", "false")]
    };
    let (producer, producer_saw) = producer(&broker, settings);
    let watermark_reader: BaseConsumer = consumer_config(&broker).create().expect("consumer");
    let watermark_reader = Arc::new(watermark_reader);
    let high_watermark = || {
        let reader = watermark_reader.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                reader
                    .fetch_watermarks("inflight", 0, Duration::from_secs(10))
                    .expect("watermarks")
                    .1
            })
            .await
            .expect("watermarks task")
        }
    };
    // Connected before the burst, so that its polls are quick.
    assert_eq!(high_watermark().await, 0);

    let deliveries: Vec<_> = (0..COUNT)
        .map(|index| {
            producer
                .send_result(
                    FutureRecord::<(), _>::to("inflight")
                        .partition(0)
                        .payload(&payload(index)),
                )
                .unwrap_or_else(|(error, _)| panic!("queued: {error}"))
        })
        .collect();
    let deadline = Instant::now() + PATIENCE;
    let written_at_kill = loop {
        let high = high_watermark().await;
        if high >= WRITTEN_BEFORE_KILL {
            break high;
        }
        assert!(Instant::now() < deadline, "only {high} written");
    };
    broker.kill();
    broker.restart().await;
    let mut acked: Vec<i64> = Vec::with_capacity(COUNT);
    let mut failed = Vec::new();
    for delivery in join_all(deliveries).await {
        match delivery.expect("delivery reported") {
            Ok(delivery) => acked.push(delivery.offset),
            Err((error, _)) => failed.push(format!("{error}")),
        }
    }
    let (_, high) = watermarks(&broker, "inflight").await;
    let (consumer, consumer_saw) = stream_consumer(&broker, "inflight", Offset::Beginning);
    let log = receive(&consumer, &consumer_saw, high as usize).await;
    let mut copies: HashMap<&[u8], usize> = HashMap::new();
    for (_, body) in &log {
        *copies.entry(body.as_slice()).or_default() += 1;
    }
    let duplicated = copies.values().filter(|count| **count > 1).count();
    // Acks whose offset does not hold their message. An idempotent producer's
    // retry of a batch the broker had already written is answered
    // DUPLICATE_SEQUENCE_NUMBER with base offset -1 by tansu, and librdkafka
    // then reports offsets -1, 0, 1, ... for that batch.
    let misplaced = acked
        .iter()
        .enumerate()
        .filter(|(index, offset)| {
            usize::try_from(**offset)
                .ok()
                .and_then(|at| log.get(at))
                .is_none_or(|(_, body)| *body != payload(*index))
        })
        .count();
    println!(
        "idempotence={idempotent}: killed at {written_at_kill}+ of {COUNT} written; {} acked, {misplaced} of them at an offset that holds another message, {} failed {:?}; log holds {high}, {duplicated} messages more than once; producer saw {:?}",
        acked.len(),
        failed.len(),
        failed.first(),
        producer_saw
            .errors()
            .iter()
            .filter(|error| !error.contains("Connection refused") && !error.contains("brokers are down"))
            .collect::<Vec<_>>()
    );
    assert!(failed.is_empty(), "deliveries failed across a restart");
    assert_eq!(acked.len(), COUNT);
    for index in 0..COUNT {
        assert!(
            copies.contains_key(payload(index).as_slice()),
            "acked message {index} is in the log"
        );
    }
    let offsets: Vec<i64> = log.iter().map(|(offset, _)| *offset).collect();
    assert_eq!(offsets, (0..high).collect::<Vec<_>>(), "contiguous offsets");
    KillOutcome {
        duplicated,
        misplaced,
    }
}

struct KillOutcome {
    /// Messages the log holds more than once.
    duplicated: usize,
    /// Acks whose offset does not hold their message.
    misplaced: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_producer_killed_with_messages_in_flight() {
    let outcome = kill_with_messages_in_flight(false).await;
    // Duplicates are possible (and seen): a batch written but not acked
    // before the kill is sent again.
    assert_eq!(
        outcome.misplaced, 0,
        "a plain producer's acked offsets hold its messages"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_killed_with_messages_in_flight() {
    let outcome = kill_with_messages_in_flight(true).await;
    assert_eq!(
        outcome.duplicated, 0,
        "an idempotent producer's retries are not written twice"
    );
    // Its acked offsets cannot be trusted after a restart (`misplaced`).
}

/// Tansu's Fetch waits out about the whole of the request's max wait before
/// answering, even when it has records (Kafka answers as soon as it has
/// min.bytes): the consumer's fetch.wait.max.ms is the latency from produce
/// to consume. Prints that latency and the broker's CPU with the consumer
/// idle at the end (it then fetches every fetch.wait.max.ms).
async fn fetch_wait_effect(fetch_wait_ms: &str) {
    let broker = KafkaBroker::start().await;
    broker.create_topic("latency").await;
    let (producer, _) = producer(&broker, &[]);
    let observed = Observed::default();
    let consumer: StreamConsumer<Observed> = consumer_config(&broker)
        .set("fetch.wait.max.ms", fetch_wait_ms)
        .create_with_context(observed.clone())
        .expect("consumer");
    consumer
        .assign(&partition_at("latency", Offset::Beginning))
        .expect("assign");

    let mut latencies = Vec::new();
    for index in 0..5 {
        let sent = Instant::now();
        let offset = produce_one(&producer, "latency", &payload(index)).await;
        let received = receive(&consumer, &observed, 1).await;
        assert_eq!(received, vec![(offset, payload(index))]);
        latencies.push(sent.elapsed());
    }
    latencies.sort();

    let pid = broker.pid().expect("broker runs");
    let before = cpu_time(pid);
    let idle = Duration::from_secs(1);
    let nothing = tokio::time::timeout(idle, consumer.recv()).await;
    assert!(nothing.is_err(), "nothing more to read: {nothing:?}");
    let idle_cpu = cpu_time(pid) - before;
    println!(
        "fetch.wait.max.ms={fetch_wait_ms}: produce-to-consume median {:?}, max {:?}; broker CPU {idle_cpu:?} per {idle:?} with the consumer idle",
        latencies[latencies.len() / 2],
        latencies[latencies.len() - 1]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consume_latency_follows_fetch_wait_max_ms() {
    for fetch_wait_ms in ["500", FETCH_WAIT_MAX_MS] {
        fetch_wait_effect(fetch_wait_ms).await;
    }
}

/// Envelopes up to Fabric's AbsoluteMaxBytes travel as single messages: the
/// producer needs message.max.bytes above them (librdkafka's default is
/// 1000000); the consumer gets them with librdkafka's default fetch sizes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_larger_than_a_mebibyte_pass() {
    const LARGE: usize = 3 * 1024 * 1024;
    let broker = KafkaBroker::start().await;
    broker.create_topic("large").await;
    let large = vec![7u8; LARGE];

    let (default_producer, _) = producer(&broker, &[]);
    let refused = default_producer
        .send_result(
            FutureRecord::<(), _>::to("large")
                .partition(0)
                .payload(&large),
        )
        .err()
        .map(|(error, _)| error.rdkafka_error_code());
    assert_eq!(refused, Some(Some(RDKafkaErrorCode::MessageSizeTooLarge)));

    let (producer, _) = producer(&broker, &[("message.max.bytes", "10485760")]);
    let offset = produce_one(&producer, "large", &large).await;
    let small = produce_one(&producer, "large", b"after").await;
    let (consumer, observed) = stream_consumer(&broker, "large", Offset::Beginning);
    let received = receive(&consumer, &observed, 2).await;
    assert_eq!(received[0].0, offset);
    assert_eq!(received[0].1.len(), LARGE);
    assert_eq!(received[1], (small, b"after".to_vec()));
}

/// Topics are not created on first use: what CreateTopics answers, and what
/// a producer and a consumer of a missing topic see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_explicitly() {
    let broker = KafkaBroker::start().await;
    let admin: AdminClient<DefaultClientContext> =
        broker.client_config().create().expect("admin client");
    let topic = NewTopic::new("made", 1, TopicReplication::Fixed(1));
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let first = admin
        .create_topics([&topic], &options)
        .await
        .expect("CreateTopics answered");
    assert_eq!(first, vec![Ok("made".to_string())]);
    let again = admin
        .create_topics([&topic], &options)
        .await
        .expect("CreateTopics answered");
    assert_eq!(
        again,
        vec![Err((
            "made".to_string(),
            RDKafkaErrorCode::TopicAlreadyExists
        ))]
    );

    // Assigned first, so that it has the producer's 2 s to show anything.
    let (consumer, consumer_saw) = stream_consumer(&broker, "missing", Offset::Beginning);
    let (producer, producer_saw) = producer_with_timeout(&broker, 2000);
    let refused = producer
        .send(
            FutureRecord::<(), _>::to("missing")
                .partition(0)
                .payload(b"x"),
            Duration::from_secs(0),
        )
        .await
        .map(|delivery| delivery.offset)
        .map_err(|(error, _)| error.rdkafka_error_code());
    let read = tokio::time::timeout(Duration::from_millis(200), consumer.recv())
        .await
        .map(|received| received.map(|message| message.offset()));
    println!(
        "producing to a missing topic: {refused:?}, producer saw {:?}; consuming it: {read:?}, consumer saw {:?}",
        producer_saw.errors(),
        consumer_saw.errors(),
    );
    assert_eq!(refused, Err(Some(RDKafkaErrorCode::MessageTimedOut)));
    assert!(read.is_err(), "read from a missing topic: {read:?}");
    assert_eq!(topic_names(&broker).await, vec!["made".to_string()]);

    // Created afterwards, the topic is found by both without a restart.
    broker.create_topic("missing").await;
    let offset = produce_one(&producer, "missing", b"now").await;
    let produced_at = Instant::now();
    let received = receive(&consumer, &consumer_saw, 1).await;
    println!(
        "a consumer assigned before its topic existed read offset {offset} {:?} after the produce",
        produced_at.elapsed()
    );
    assert_eq!(received, vec![(offset, b"now".to_vec())]);
}

async fn topic_names(broker: &KafkaBroker) -> Vec<String> {
    let client: BaseConsumer = consumer_config(broker).create().expect("consumer");
    tokio::task::spawn_blocking(move || {
        client
            .fetch_metadata(None, Duration::from_secs(10))
            .expect("metadata")
            .topics()
            .iter()
            .map(|topic| topic.name().to_string())
            .collect()
    })
    .await
    .expect("metadata task")
}

/// After its deliveries time out, an idempotent librdkafka producer goes on
/// with a new producer epoch. Tansu 0.6.0 then panics in its storage task
/// ("more or less than one row", checking the producer's sequence): from then
/// on it answers no produce request of anyone until it is restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotent_producer_after_a_delivery_timeout() {
    let mut broker = KafkaBroker::start().await;
    broker.create_topic("epoch").await;
    let timing_out = [("message.timeout.ms", "2000")];
    let idempotent_timing_out = [
        ("message.timeout.ms", "2000"),
        ("enable.idempotence", "true"),
    ];
    let (idempotent, _) = producer(&broker, &idempotent_timing_out);
    let (plain, _) = producer(&broker, &timing_out);
    let first = produce_one(&idempotent, "epoch", b"first").await;

    broker.kill();
    let timed_out = try_produce(&idempotent, "epoch", b"lost").await;
    assert_eq!(timed_out, Err(Some(RDKafkaErrorCode::MessageTimedOut)));
    broker.restart().await;

    let idempotent_after = try_produce(&idempotent, "epoch", b"refused").await;
    let plain_after = try_produce(&plain, "epoch", b"plain").await;
    let (fresh, _) = producer(&broker, &idempotent_timing_out);
    let fresh_after = try_produce(&fresh, "epoch", b"fresh").await;
    let panicked = broker.log().contains("more or less than one row");
    println!(
        "after an idempotent producer's timeout and a restart: it {idempotent_after:?} (fatal error {:?}); then a plain producer {plain_after:?}, a new idempotent one {fresh_after:?}; tansu's storage panicked: {panicked}",
        idempotent.client().fatal_error(),
    );
    assert!(idempotent_after.is_err(), "delivered: {idempotent_after:?}");
    // Facts of tansu 0.6.0; a broker that handles the new epoch fails here.
    assert!(panicked, "tansu's storage did not panic");
    assert!(
        plain_after.is_err(),
        "a plain producer delivered: {plain_after:?}"
    );

    // A restart brings the broker back, with its data.
    broker.restart().await;
    let (recovered, _) = producer(&broker, &idempotent_timing_out);
    let second = produce_one(&recovered, "epoch", b"second").await;
    let (consumer, observed) = stream_consumer(&broker, "epoch", Offset::Beginning);
    let (_, high) = watermarks(&broker, "epoch").await;
    let log = receive(&consumer, &observed, high as usize).await;
    assert_eq!(log.first(), Some(&(first, b"first".to_vec())));
    assert_eq!(log.last(), Some(&(second, b"second".to_vec())));
}

async fn try_produce(
    producer: &FutureProducer<Observed>,
    topic: &str,
    payload: &[u8],
) -> Result<i64, Option<RDKafkaErrorCode>> {
    producer
        .send(
            FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(payload),
            Duration::from_secs(0),
        )
        .await
        .map(|delivery| delivery.offset)
        .map_err(|(error, _)| error.rdkafka_error_code())
}
