//! `ordo bench load`: drives any Fabric-compatible orderer over gRPC and
//! checks that every acknowledged envelope comes back in a block.
//!
//! Broadcast streams send their share and read the answers (in order, so each
//! answer is matched with its envelope); one Deliver stream, opened before the
//! first envelope is sent, follows the chain from the next block and finds
//! this run's transactions by their IDs. Latencies: from sending an envelope
//! to its answer (ack) and to the block that holds it (delivery).
//!
//! Optionally, more Deliver streams follow the head during the run, as a
//! channel's peers would (`--deliver-streams`): the report says whether each
//! of them received every block of the run, in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use hdrhistogram::Histogram;
use prost::Message;
use serde::Serialize;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::fabric::blockutil;
use crate::fabric::protos::common::{Block, ChannelHeader, Envelope, HeaderType, Payload, Status};
use crate::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use crate::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use crate::tools::client::envelope::{
    default_creator, envelope_with_id, signed_seek, tls_cert_hash, BlockPosition, Requester,
};
use crate::tools::client::identity::SigningIdentity;
use crate::tools::client::{connect_with, ClientError, TlsOptions};

const SHARDS: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Connect(#[from] ClientError),
    #[error("cannot read the chain's height: {0}")]
    Height(String),
}

/// What to send, where.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub address: String,
    pub channel: String,
    pub count: u64,
    pub streams: u32,
    /// Bytes of transaction data per envelope.
    pub size: usize,
    pub tls: Option<TlsOptions>,
    /// Signs every envelope when set.
    pub identity: Option<Arc<SigningIdentity>>,
    /// How long to wait, after the last answer, for the last delivery.
    pub deliver_timeout: Duration,
    /// Envelopes per second over all streams; `None`: as fast as answered.
    pub rate: Option<f64>,
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    /// From a histogram of microseconds.
    fn of(histogram: &Histogram<u64>) -> Option<Percentiles> {
        if histogram.is_empty() {
            return None;
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Percentiles {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            max: ms(histogram.max()),
        })
    }
}

/// What a run saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LoadReport {
    pub sent: u64,
    pub acknowledged: u64,
    pub delivered: u64,
    /// Acknowledged (SUCCESS) but never seen in a block.
    pub undelivered: u64,
    /// Non-SUCCESS answers by status, with the first info string.
    pub errors: BTreeMap<String, (u64, String)>,
    pub broken_streams: u32,
    /// Blocks that held this run's envelopes.
    pub blocks: u64,
    #[serde(serialize_with = "seconds")]
    pub ack_elapsed: Duration,
    #[serde(serialize_with = "seconds")]
    pub delivery_elapsed: Duration,
    pub ack_latency_ms: Option<Percentiles>,
    pub delivery_latency_ms: Option<Percentiles>,
    /// Why the Deliver stream ended early, if it did.
    pub deliver_error: Option<String>,
    /// The extra Deliver streams that followed the head, if any were opened.
    pub fan_out: Option<FanOutReport>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl LoadReport {
    pub fn acked_per_second(&self) -> f64 {
        self.acknowledged as f64 / self.ack_elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn delivered_per_second(&self) -> f64 {
        self.delivered as f64 / self.delivery_elapsed.as_secs_f64().max(f64::EPSILON)
    }

    pub fn envelopes_per_block(&self) -> f64 {
        self.delivered as f64 / (self.blocks.max(1)) as f64
    }

    /// Everything sent was acknowledged, and everything acknowledged delivered.
    pub fn passed(&self) -> bool {
        self.sent > 0
            && self.acknowledged == self.sent
            && self.undelivered == 0
            && self.broken_streams == 0
            && self.fan_out.as_ref().is_none_or(FanOutReport::passed)
    }

    /// One line for scripts.
    pub fn json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(self).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            map.insert("acked_per_second".into(), self.acked_per_second().into());
            map.insert(
                "delivered_per_second".into(),
                self.delivered_per_second().into(),
            );
            map.insert(
                "envelopes_per_block".into(),
                self.envelopes_per_block().into(),
            );
            map.insert("passed".into(), self.passed().into());
        }
        value
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    sent: Instant,
    acked: bool,
    delivered: bool,
}

/// One shard of the tracker: its envelopes still in flight and the latencies
/// of those that completed, so a long run's memory stays bounded by what is
/// in flight, not by what was sent.
struct Shard {
    in_flight: HashMap<[u8; 32], Record>,
    ack_us: Histogram<u64>,
    delivery_us: Histogram<u64>,
    last_delivery: Option<Instant>,
}

/// This run's envelopes by transaction ID, sharded to keep the streams and
/// the Deliver reader from queueing on one lock.
struct Tracker {
    shards: Vec<Mutex<Shard>>,
    acknowledged: AtomicU64,
    delivered: AtomicU64,
    blocks: AtomicU64,
    /// Number of the last block that held this run's envelopes.
    last_block: AtomicU64,
}

/// Microseconds from 1 µs to an hour, 3 significant figures; longer waits
/// count as an hour.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("bounds and precision are valid")
}

fn micros(from: Instant, to: Instant) -> u64 {
    u64::try_from(to.saturating_duration_since(from).as_micros()).unwrap_or(u64::MAX)
}

impl Tracker {
    fn new() -> Tracker {
        let histogram = latency_histogram;
        Tracker {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        in_flight: HashMap::new(),
                        ack_us: histogram(),
                        delivery_us: histogram(),
                        last_delivery: None,
                    })
                })
                .collect(),
            acknowledged: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
            blocks: AtomicU64::new(0),
            last_block: AtomicU64::new(0),
        }
    }

    fn shard(&self, id: &[u8; 32]) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[id[0] as usize % SHARDS]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn sent(&self, id: [u8; 32], at: Instant) {
        self.shard(&id).in_flight.insert(
            id,
            Record {
                sent: at,
                acked: false,
                delivered: false,
            },
        );
    }

    fn acked(&self, id: &[u8; 32], at: Instant) {
        let mut shard = self.shard(id);
        if let Some(record) = shard.in_flight.get_mut(id) {
            record.acked = true;
            let (sent, done) = (record.sent, record.delivered);
            if done {
                shard.in_flight.remove(id);
            }
            shard.ack_us.saturating_record(micros(sent, at));
        }
        self.acknowledged.fetch_add(1, Ordering::Relaxed);
    }

    /// True if the ID is this run's and was not seen before.
    fn delivered(&self, id: &[u8; 32], at: Instant) -> bool {
        let mut shard = self.shard(id);
        let Some(record) = shard.in_flight.get_mut(id) else {
            return false;
        };
        if record.delivered {
            return false;
        }
        record.delivered = true;
        let (sent, acked) = (record.sent, record.acked);
        if acked {
            shard.in_flight.remove(id);
        }
        shard.delivery_us.saturating_record(micros(sent, at));
        shard.last_delivery = shard.last_delivery.max(Some(at));
        self.delivered.fetch_add(1, Ordering::Relaxed);
        true
    }

    /// Latencies, the last delivery, and how many acknowledged envelopes
    /// were never delivered.
    fn summary(&self) -> (Histogram<u64>, Histogram<u64>, Option<Instant>, u64) {
        let mut ack = latency_histogram();
        let mut delivery = latency_histogram();
        let mut last = None;
        let mut undelivered = 0;
        for shard in &self.shards {
            let shard = shard.lock().unwrap_or_else(PoisonError::into_inner);
            let _ = ack.add(&shard.ack_us);
            let _ = delivery.add(&shard.delivery_us);
            last = last.max(shard.last_delivery);
            undelivered += shard
                .in_flight
                .values()
                .filter(|r| r.acked && !r.delivered)
                .count() as u64;
        }
        (ack, delivery, last, undelivered)
    }
}

/// Runs the load and reports. Fails only if the orderer cannot be reached at all.
pub async fn run_load(options: &LoadOptions) -> Result<LoadReport, LoadError> {
    run_load_with_fan_out(options, 0).await
}

/// Runs the load with `fan_out` extra Deliver streams following the head
/// from the run's first block, each on its own connection.
pub async fn run_load_with_fan_out(
    options: &LoadOptions,
    fan_out: u32,
) -> Result<LoadReport, LoadError> {
    let tracker = Arc::new(Tracker::new());
    let tls = options.tls.as_ref();

    // Deliver first, from the block after the current newest one.
    let mut deliver_client = connect_with(&options.address, tls).await?;
    let reader = Reader::of(options);
    let newest = newest_block_number(&mut deliver_client, &options.channel, &reader).await?;
    let stop_deliver = CancellationToken::new();
    let deliver = {
        let tracker = tracker.clone();
        let channel = options.channel.clone();
        let stop = stop_deliver.clone();
        let reader = reader.clone();
        tokio::spawn(async move {
            follow_blocks(
                &mut deliver_client,
                &channel,
                &reader,
                newest + 1,
                &tracker,
                stop,
            )
            .await
        })
    };
    let followers = FanOut::open(options, newest + 1, fan_out).await?;

    let streams = options.streams.max(1) as u64;
    let mut clients = Vec::with_capacity(streams as usize);
    for _ in 0..streams {
        clients.push(connect_with(&options.address, tls).await?);
    }
    let data = Bytes::from(vec![0x5a; options.size]);
    let started = Instant::now();
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let share = options.count / streams + u64::from((i as u64) < options.count % streams);
            let stream = StreamLoad {
                channel: options.channel.clone(),
                data: data.clone(),
                identity: options.identity.clone(),
                tracker: tracker.clone(),
                rate: options
                    .rate
                    .map(|r| r / streams as f64)
                    .filter(|r| *r > 0.0),
            };
            tokio::spawn(stream.run(client, share))
        })
        .collect();

    let mut report = LoadReport {
        sent: options.count,
        ..LoadReport::default()
    };
    for task in tasks {
        let outcome = task.await.unwrap_or_else(|e| StreamOutcome {
            broken: true,
            errors: BTreeMap::from([("task".to_string(), (1, e.to_string()))]),
        });
        report.broken_streams += u32::from(outcome.broken);
        for (name, (count, info)) in outcome.errors {
            report.errors.entry(name).or_insert((0, info)).0 += count;
        }
    }
    report.ack_elapsed = started.elapsed();
    report.acknowledged = tracker.acknowledged.load(Ordering::Relaxed);

    // Wait for the deliveries; give up after the timeout without progress.
    let mut last_progress = (Instant::now(), tracker.delivered.load(Ordering::Relaxed));
    loop {
        let delivered = tracker.delivered.load(Ordering::Relaxed);
        if delivered >= report.acknowledged || deliver.is_finished() {
            break;
        }
        if delivered != last_progress.1 {
            last_progress = (Instant::now(), delivered);
        } else if last_progress.0.elapsed() > options.deliver_timeout {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop_deliver.cancel();
    report.deliver_error = match deliver.await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(e) => Some(e.to_string()),
    };

    let (ack, delivery, last_delivery, undelivered) = tracker.summary();
    report.undelivered = undelivered;
    report.delivered = tracker.delivered.load(Ordering::Relaxed);
    report.delivery_elapsed =
        last_delivery.map_or(Duration::ZERO, |t| t.saturating_duration_since(started));
    report.blocks = tracker.blocks.load(Ordering::Relaxed);
    report.ack_latency_ms = Percentiles::of(&ack);
    report.delivery_latency_ms = Percentiles::of(&delivery);
    if let Some(followers) = followers {
        let last = tracker.last_block.load(Ordering::Relaxed);
        report.fan_out = Some(followers.finish(last, options.deliver_timeout).await);
    }
    Ok(report)
}

struct StreamLoad {
    channel: String,
    data: Bytes,
    identity: Option<Arc<SigningIdentity>>,
    tracker: Arc<Tracker>,
    /// This stream's envelopes per second, if paced.
    rate: Option<f64>,
}

struct StreamOutcome {
    broken: bool,
    errors: BTreeMap<String, (u64, String)>,
}

impl StreamLoad {
    async fn run(
        self,
        mut client: crate::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient<
            tonic::transport::Channel,
        >,
        share: u64,
    ) -> StreamOutcome {
        let mut outcome = StreamOutcome {
            broken: false,
            errors: BTreeMap::new(),
        };
        let (tx, rx) = tokio::sync::mpsc::channel::<Envelope>(256);
        // IDs in the order sent: answers come back in that order.
        let order = Arc::new(Mutex::new(VecDeque::<[u8; 32]>::new()));
        let creator = self
            .identity
            .as_ref()
            .map_or_else(default_creator, |i| i.creator());
        let producer = {
            let order = order.clone();
            let tracker = self.tracker.clone();
            tokio::spawn(async move {
                let start = tokio::time::Instant::now();
                for i in 0..share {
                    if let Some(rate) = self.rate {
                        let due = start + Duration::from_secs_f64(i as f64 / rate);
                        if tokio::time::Instant::now() < due {
                            tokio::time::sleep_until(due).await;
                        }
                    }
                    let (envelope, id) = envelope_with_id(
                        &self.channel,
                        HeaderType::EndorserTransaction,
                        self.data.clone(),
                        creator.clone(),
                        self.identity.as_deref(),
                    );
                    order
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push_back(id);
                    tracker.sent(id, Instant::now());
                    if tx.send(envelope).await.is_err() {
                        break;
                    }
                }
            })
        };
        let mut answered = 0u64;
        match client.broadcast(ReceiverStream::new(rx)).await {
            Ok(response) => {
                let mut responses = response.into_inner();
                while answered < share {
                    let Some(item) = responses.next().await else {
                        break;
                    };
                    let Ok(answer) = item else { break };
                    let now = Instant::now();
                    let id = order
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop_front();
                    if answer.status == Status::Success as i32 {
                        if let Some(id) = id {
                            self.tracker.acked(&id, now);
                        }
                    } else {
                        let name = Status::try_from(answer.status).map_or_else(
                            |_| answer.status.to_string(),
                            |s| s.as_str_name().to_string(),
                        );
                        outcome.errors.entry(name).or_insert((0, answer.info)).0 += 1;
                    }
                    answered += 1;
                }
            }
            Err(status) => {
                outcome
                    .errors
                    .entry(status.code().to_string())
                    .or_insert((0, status.message().into()))
                    .0 += 1;
            }
        }
        outcome.broken = answered < share;
        producer.abort();
        outcome
    }
}

type AbClient = crate::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient<
    tonic::transport::Channel,
>;

/// Who the load's Deliver streams ask as: its signing identity, if any, and
/// its TLS client certificate (an orderer requiring client certificates
/// binds each request to it).
#[derive(Clone, Default)]
struct Reader {
    identity: Option<Arc<SigningIdentity>>,
    tls_cert_hash: Option<Vec<u8>>,
}

impl Reader {
    fn of(options: &LoadOptions) -> Reader {
        Reader {
            identity: options.identity.clone(),
            tls_cert_hash: options
                .tls
                .as_ref()
                .and_then(|tls| tls.client_identity.as_ref())
                .and_then(|(certificate, _)| tls_cert_hash(certificate)),
        }
    }

    fn seek(
        &self,
        channel: &str,
        start: BlockPosition,
        stop: BlockPosition,
        behavior: SeekBehavior,
    ) -> Envelope {
        let requester = Requester {
            identity: self.identity.as_deref(),
            tls_cert_hash: self.tls_cert_hash.as_deref(),
        };
        signed_seek(
            channel,
            start,
            stop,
            behavior,
            SeekContentType::Block,
            &requester,
        )
    }
}

async fn newest_block_number(
    client: &mut AbClient,
    channel: &str,
    reader: &Reader,
) -> Result<u64, LoadError> {
    let request = reader.seek(
        channel,
        BlockPosition::Newest,
        BlockPosition::Newest,
        SeekBehavior::FailIfNotReady,
    );
    let mut responses = client
        .deliver(tokio_stream::once(request))
        .await
        .map_err(|e| LoadError::Height(e.message().to_string()))?
        .into_inner();
    match responses.next().await {
        Some(Ok(response)) => match response.r#type {
            Some(DeliverItem::Block(block)) => Ok(blockutil::number(&block)),
            Some(DeliverItem::Status(code)) => Err(LoadError::Height(format!(
                "channel {channel}: deliver answered {}",
                Status::try_from(code)
                    .map_or_else(|_| code.to_string(), |s| s.as_str_name().to_string())
            ))),
            None => Err(LoadError::Height("empty deliver response".into())),
        },
        Some(Err(e)) => Err(LoadError::Height(e.message().to_string())),
        None => Err(LoadError::Height("deliver stream closed".into())),
    }
}

/// Follows the chain from `start` until `stop`, handing each block to
/// `on_block`; an error from it, or the stream's end, ends the follow.
async fn each_block(
    client: &mut AbClient,
    channel: &str,
    reader: &Reader,
    start: u64,
    stop: CancellationToken,
    mut on_block: impl FnMut(Block) -> Result<(), String>,
) -> Result<(), String> {
    let request = reader.seek(
        channel,
        BlockPosition::Number(start),
        BlockPosition::Number(u64::MAX),
        SeekBehavior::BlockUntilReady,
    );
    let mut responses = client
        .deliver(tokio_stream::once(request))
        .await
        .map_err(|e| format!("deliver: {}", e.message()))?
        .into_inner();
    loop {
        let item = tokio::select! {
            _ = stop.cancelled() => return Ok(()),
            item = responses.next() => item,
        };
        match item {
            Some(Ok(response)) => match response.r#type {
                Some(DeliverItem::Block(block)) => on_block(block)?,
                Some(DeliverItem::Status(code)) => {
                    return Err(format!("deliver ended with status {code}"))
                }
                None => return Err("empty deliver response".into()),
            },
            Some(Err(e)) => return Err(format!("deliver stream failed: {}", e.message())),
            None => return Err("deliver stream closed by the orderer".into()),
        }
    }
}

/// Follows the chain from `start`, marking this run's transactions delivered.
async fn follow_blocks(
    client: &mut AbClient,
    channel: &str,
    reader: &Reader,
    start: u64,
    tracker: &Tracker,
    stop: CancellationToken,
) -> Result<(), String> {
    each_block(client, channel, reader, start, stop, |block| {
        let now = Instant::now();
        let mut ours = false;
        for raw in blockutil::entries(&block) {
            if let Some(id) = tx_id(raw) {
                ours |= tracker.delivered(&id, now);
            }
        }
        if ours {
            tracker.blocks.fetch_add(1, Ordering::Relaxed);
            tracker
                .last_block
                .fetch_max(blockutil::number(&block), Ordering::Relaxed);
        }
        Ok(())
    })
    .await
}

/// The extra Deliver streams of a run, as many peers following the head.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FanOutReport {
    pub streams: u32,
    /// Streams that received every block of the run, in order.
    pub complete: u32,
    /// Blocks each stream had to receive: from the run's first block to the
    /// last one that held its envelopes.
    pub expected_blocks: u64,
    /// Fewest blocks any stream received by then.
    pub fewest_blocks: u64,
    /// The first failure a stream saw (out of order, status, stream error).
    pub error: Option<String>,
}

impl FanOutReport {
    pub fn passed(&self) -> bool {
        self.complete == self.streams && self.error.is_none()
    }
}

/// What one follower has seen so far.
#[derive(Default)]
struct Follower {
    /// Blocks received, in order from the run's first block.
    received: AtomicU64,
    error: Mutex<Option<String>>,
}

impl Follower {
    fn fail(&self, error: String) {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get_or_insert(error);
    }
}

struct FanOut {
    start: u64,
    followers: Vec<Arc<Follower>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    stop: CancellationToken,
}

impl FanOut {
    /// Connects and starts `streams` followers from block `start`; `None` for none.
    async fn open(
        options: &LoadOptions,
        start: u64,
        streams: u32,
    ) -> Result<Option<FanOut>, LoadError> {
        if streams == 0 {
            return Ok(None);
        }
        let stop = CancellationToken::new();
        let mut fan_out = FanOut {
            start,
            followers: Vec::new(),
            tasks: Vec::new(),
            stop: stop.clone(),
        };
        for _ in 0..streams {
            let client = connect_with(&options.address, options.tls.as_ref()).await?;
            let follower = Arc::new(Follower::default());
            fan_out.followers.push(follower.clone());
            let channel = options.channel.clone();
            let stop = stop.clone();
            let reader = Reader::of(options);
            fan_out.tasks.push(tokio::spawn(async move {
                if let Err(e) =
                    count_blocks(client, &channel, &reader, start, &follower, stop).await
                {
                    follower.fail(e);
                }
            }));
        }
        Ok(Some(fan_out))
    }

    /// Waits until every follower has block `last` (or none progressed for
    /// `patience`), stops them and reports.
    async fn finish(self, last: u64, patience: Duration) -> FanOutReport {
        let expected = (last + 1).saturating_sub(self.start);
        let progress = || -> u64 {
            self.followers
                .iter()
                .map(|f| f.received.load(Ordering::Relaxed).min(expected))
                .sum()
        };
        // A follower that failed will not progress: do not wait for it.
        let settled = || {
            self.followers.iter().all(|f| {
                f.received.load(Ordering::Relaxed) >= expected
                    || f.error
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .is_some()
            })
        };
        let mut last_progress = (Instant::now(), progress());
        loop {
            let now = progress();
            if settled() {
                break;
            }
            if now != last_progress.1 {
                last_progress = (Instant::now(), now);
            } else if last_progress.0.elapsed() > patience {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.stop.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let received = |f: &Arc<Follower>| f.received.load(Ordering::Relaxed);
        FanOutReport {
            streams: self.followers.len() as u32,
            complete: self
                .followers
                .iter()
                .filter(|f| received(f) >= expected)
                .count() as u32,
            expected_blocks: expected,
            fewest_blocks: self.followers.iter().map(received).min().unwrap_or(0),
            error: self.followers.iter().find_map(|f| {
                f.error
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
            }),
        }
    }
}

/// Follows the chain from `start`, counting blocks that arrive in order.
async fn count_blocks(
    mut client: AbClient,
    channel: &str,
    reader: &Reader,
    start: u64,
    follower: &Follower,
    stop: CancellationToken,
) -> Result<(), String> {
    each_block(&mut client, channel, reader, start, stop, |block| {
        let expected = start + follower.received.load(Ordering::Relaxed);
        let number = blockutil::number(&block);
        if number != expected {
            return Err(format!("got block {number}, expected {expected}"));
        }
        follower.received.fetch_add(1, Ordering::Relaxed);
        Ok(())
    })
    .await
}

fn tx_id(raw: &Bytes) -> Option<[u8; 32]> {
    let envelope = Envelope::decode(raw.clone()).ok()?;
    let payload = Payload::decode(envelope.payload).ok()?;
    let header = ChannelHeader::decode(payload.header?.channel_header).ok()?;
    let mut id = [0u8; 32];
    hex::decode_to_slice(header.tx_id, &mut id).ok()?;
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_right_samples() {
        let mut histogram = Histogram::<u64>::new(3).expect("histogram");
        for ms in 1..=100u64 {
            histogram.record(ms * 1000).expect("record");
        }
        let p = Percentiles::of(&histogram).expect("samples");
        let close = |a: f64, b: f64| (a - b).abs() / b < 0.001;
        assert!(
            close(p.p50, 50.0) && close(p.p90, 90.0) && close(p.p99, 99.0),
            "{p:?}"
        );
        assert!(close(p.max, 100.0), "{p:?}");
        assert_eq!(
            Percentiles::of(&Histogram::new(3).expect("histogram")),
            None
        );
    }

    #[test]
    fn the_tracker_forgets_envelopes_that_completed() {
        let tracker = Tracker::new();
        let start = Instant::now();
        let (a, b, c) = ([1u8; 32], [2u8; 32], [3u8; 32]);
        for id in [a, b, c] {
            tracker.sent(id, start);
        }
        tracker.acked(&a, start + Duration::from_millis(2));
        assert!(tracker.delivered(&a, start + Duration::from_millis(5)));
        // Delivered before its answer was read: still counted once.
        assert!(tracker.delivered(&b, start + Duration::from_millis(5)));
        assert!(!tracker.delivered(&b, start + Duration::from_millis(6)));
        tracker.acked(&b, start + Duration::from_millis(7));
        tracker.acked(&c, start + Duration::from_millis(3));
        let (ack, delivery, last, undelivered) = tracker.summary();
        assert_eq!((ack.len(), delivery.len(), undelivered), (3, 2, 1));
        // 2, 7 and 3 ms to the answers; 5 and 5 ms to the block.
        let ack = Percentiles::of(&ack).expect("acks");
        assert!((ack.max - 7.0).abs() < 0.01, "{ack:?}");
        let delivery = Percentiles::of(&delivery).expect("deliveries");
        assert!((delivery.p50 - 5.0).abs() < 0.01, "{delivery:?}");
        assert_eq!(last, Some(start + Duration::from_millis(5)));
        let left: usize = tracker
            .shards
            .iter()
            .map(|s| s.lock().expect("shard").in_flight.len())
            .sum();
        assert_eq!(left, 1, "only the undelivered one is kept");
    }

    #[test]
    fn a_report_passes_only_when_everything_came_back() {
        let mut report = LoadReport {
            sent: 10,
            acknowledged: 10,
            delivered: 10,
            ..LoadReport::default()
        };
        assert!(report.passed());
        report.undelivered = 1;
        assert!(!report.passed());
        report.undelivered = 0;
        report.acknowledged = 9;
        assert!(!report.passed());
        assert_eq!(report.json()["passed"], false);
    }

    #[test]
    fn a_report_with_followers_passes_only_when_each_got_every_block() {
        let mut report = LoadReport {
            sent: 10,
            acknowledged: 10,
            delivered: 10,
            fan_out: Some(FanOutReport {
                streams: 3,
                complete: 3,
                expected_blocks: 5,
                fewest_blocks: 5,
                error: None,
            }),
            ..LoadReport::default()
        };
        assert!(report.passed());
        if let Some(f) = report.fan_out.as_mut() {
            f.complete = 2;
            f.fewest_blocks = 4;
        }
        assert!(!report.passed());
        assert_eq!(report.json()["fan_out"]["fewest_blocks"], 4);
    }
}
