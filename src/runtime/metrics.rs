//! The node's metrics, in Prometheus text format on the operations listener.
//!
//! Where Fabric's orderer has a metric, Ordo's has its name, type, labels and
//! buckets (`broadcast_processed_count{channel,status,type}`,
//! `deliver_blocks_sent{channel,data_type,filtered}`,
//! `ledger_blockchain_height{channel}`, ...), counters without a `_total`
//! suffix, so Fabric's dashboards work; Ordo's own carry the `ordo_` prefix.
//! Each channel resolves its label sets once ([`ChannelMetrics`]), so
//! recording is an atomic operation. Consenters add their own families under
//! `consensus_<type>_` through [`Metrics::consensus_registry`].

mod exposition;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

/// Fabric's broadcast labels, in the order Fabric's exposition sorts them.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BroadcastLabels {
    pub channel: String,
    pub status: &'static str,
    /// The envelope's header type (`ENDORSER_TRANSACTION`, `CONFIG_UPDATE`, ...).
    pub r#type: &'static str,
}

/// Fabric's deliver labels. An orderer serves whole blocks only.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliverLabels {
    pub channel: String,
    pub data_type: &'static str,
    pub filtered: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliverCompletedLabels {
    pub channel: String,
    pub data_type: &'static str,
    pub filtered: &'static str,
    pub success: &'static str,
}

/// The label value of a channel, or of a header type, that is not known
/// (Fabric's): clients cannot make up label values.
pub const UNKNOWN: &str = "unknown";

/// The `type` label of a header type: its name, or [`UNKNOWN`].
pub fn header_type_label(header_type: i32) -> &'static str {
    crate::fabric::protos::common::HeaderType::try_from(header_type)
        .map_or(UNKNOWN, |t| t.as_str_name())
}

fn deliver_labels(channel: &str) -> DeliverLabels {
    DeliverLabels {
        channel: channel.to_string(),
        data_type: "block",
        filtered: "false",
    }
}

fn deliver_completed_labels(channel: &str, success: bool) -> DeliverCompletedLabels {
    DeliverCompletedLabels {
        channel: channel.to_string(),
        data_type: "block",
        filtered: "false",
        success: if success { "true" } else { "false" },
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ActorLabels {
    pub channel: String,
    /// chain, cutter or ledger.
    pub actor: String,
}

fn latency_histogram() -> Histogram {
    // 10 µs to about 40 s.
    Histogram::new(exponential_buckets(0.000_01, 3.0, 15))
}

/// Prometheus's default buckets, which Fabric's broadcast histograms use.
fn default_buckets_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
    ])
}

fn block_size_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    ])
}

type LatencyFamily = Family<ChannelLabel, Histogram, fn() -> Histogram>;
type BroadcastHistograms = Family<BroadcastLabels, Histogram, fn() -> Histogram>;

/// Every family of the node, registered once.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Whether `/metrics` serves them (Metrics.Provider prometheus).
    exposed: bool,
    broadcast_validate_duration: BroadcastHistograms,
    broadcast_enqueue_duration: BroadcastHistograms,
    broadcast_processed: Family<BroadcastLabels, Counter>,
    deliver_streams_opened: Counter,
    deliver_streams_closed: Counter,
    deliver_requests_received: Family<DeliverLabels, Counter>,
    deliver_requests_completed: Family<DeliverCompletedLabels, Counter>,
    deliver_blocks_sent: Family<DeliverLabels, Counter>,
    height: Family<ChannelLabel, Gauge>,
    blocks_committed: Family<ChannelLabel, Counter>,
    envelopes_per_block: Family<ChannelLabel, Histogram, fn() -> Histogram>,
    mailbox_depth: Family<ActorLabels, Gauge>,
    messages_handled: Family<ActorLabels, Counter>,
    blocks_inflight: Family<ChannelLabel, Gauge>,
    envelopes_inflight: Family<ChannelLabel, Gauge>,
    bytes_inflight: Family<ChannelLabel, Gauge>,
    is_leader: Family<ChannelLabel, Gauge>,
    chain_active: Family<ChannelLabel, Gauge>,
    submissions_waiting: Family<ChannelLabel, Gauge>,
    submission_wait: LatencyFamily,
    broadcast_to_block: LatencyFamily,
    chain_restarts: Family<ChannelLabel, Counter>,
    /// 1 for a channel that is errored: it could not start, or its
    /// supervisor stopped restarting it.
    channel_errored: Family<ChannelLabel, Gauge>,
    etcdraft: EtcdRaftFamilies,
    kafka: KafkaFamilies,
}

/// Fabric's etcdraft families (`consensus_etcdraft_*`), by channel.
struct EtcdRaftFamilies {
    is_leader: Family<ChannelLabel, Gauge>,
    cluster_size: Family<ChannelLabel, Gauge>,
    active_nodes: Family<ChannelLabel, Gauge>,
    leader_changes: Family<ChannelLabel, Counter>,
    committed_block_number: Family<ChannelLabel, Gauge>,
    proposal_failures: Family<ChannelLabel, Counter>,
    normal_proposals_received: Family<ChannelLabel, Counter>,
    config_proposals_received: Family<ChannelLabel, Counter>,
    data_persist_duration: LatencyFamily,
}

/// One channel's etcdraft metrics (zero for other consenters).
#[derive(Debug, Clone)]
pub struct EtcdRaftMetrics {
    pub is_leader: Gauge,
    pub cluster_size: Gauge,
    pub active_nodes: Gauge,
    pub leader_changes: Counter,
    pub committed_block_number: Gauge,
    pub proposal_failures: Counter,
    pub normal_proposals_received: Counter,
    pub config_proposals_received: Counter,
    pub data_persist_duration: Histogram,
}

/// The Kafka consenter's families (`consensus_kafka_*`), by channel.
struct KafkaFamilies {
    produce_latency: LatencyFamily,
    consumer_lag: Family<ChannelLabel, Gauge>,
    time_to_cut_sent: Family<ChannelLabel, Counter>,
    time_to_cut_used: Family<ChannelLabel, Counter>,
}

/// One channel's Kafka metrics (zero for other consenters).
#[derive(Debug, Clone)]
pub struct KafkaMetrics {
    /// From posting a record to the broker's acknowledgement.
    pub produce_latency: Histogram,
    /// Records of the partition this node has not read yet.
    pub consumer_lag: Gauge,
    /// Time-to-cut records this node posted.
    pub time_to_cut_sent: Counter,
    /// Time-to-cut records that cut a block here (whoever posted them).
    pub time_to_cut_used: Counter,
}

impl KafkaFamilies {
    fn new() -> KafkaFamilies {
        KafkaFamilies {
            produce_latency: Family::new_with_constructor(latency_histogram),
            consumer_lag: Family::default(),
            time_to_cut_sent: Family::default(),
            time_to_cut_used: Family::default(),
        }
    }

    fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("consensus_kafka");
        sub.register_with_unit(
            "produce_latency",
            "The time from posting a record to the channel's partition to the broker's acknowledgement.",
            prometheus_client::registry::Unit::Seconds,
            self.produce_latency.clone(),
        );
        sub.register(
            "consumer_lag",
            "The records of the channel's partition this node has not read yet.",
            self.consumer_lag.clone(),
        );
        sub.register(
            "time_to_cut_sent",
            "The time-to-cut records this node posted when its batch timer fired.",
            self.time_to_cut_sent.clone(),
        );
        sub.register(
            "time_to_cut_used",
            "The time-to-cut records that cut a block on this node, whoever posted them.",
            self.time_to_cut_used.clone(),
        );
    }

    fn channel(&self, label: &ChannelLabel) -> KafkaMetrics {
        KafkaMetrics {
            produce_latency: self.produce_latency.get_or_create(label).clone(),
            consumer_lag: self.consumer_lag.get_or_create(label).clone(),
            time_to_cut_sent: self.time_to_cut_sent.get_or_create(label).clone(),
            time_to_cut_used: self.time_to_cut_used.get_or_create(label).clone(),
        }
    }

    fn forget(&self, label: &ChannelLabel) {
        self.produce_latency.remove(label);
        self.consumer_lag.remove(label);
        self.time_to_cut_sent.remove(label);
        self.time_to_cut_used.remove(label);
    }
}

impl EtcdRaftFamilies {
    fn new() -> EtcdRaftFamilies {
        EtcdRaftFamilies {
            is_leader: Family::default(),
            cluster_size: Family::default(),
            active_nodes: Family::default(),
            leader_changes: Family::default(),
            committed_block_number: Family::default(),
            proposal_failures: Family::default(),
            normal_proposals_received: Family::default(),
            config_proposals_received: Family::default(),
            data_persist_duration: Family::new_with_constructor(latency_histogram),
        }
    }

    fn register(&self, registry: &mut Registry) {
        let sub = registry.sub_registry_with_prefix("consensus_etcdraft");
        sub.register(
            "is_leader",
            "The leadership status of the current node: 1 if it is the leader else 0.",
            self.is_leader.clone(),
        );
        sub.register(
            "cluster_size",
            "Number of nodes in this channel.",
            self.cluster_size.clone(),
        );
        sub.register(
            "active_nodes",
            "Number of active nodes in this channel.",
            self.active_nodes.clone(),
        );
        sub.register(
            "leader_changes",
            "The number of leader changes since process start.",
            self.leader_changes.clone(),
        );
        sub.register(
            "committed_block_number",
            "The block number of the latest block committed.",
            self.committed_block_number.clone(),
        );
        sub.register(
            "proposal_failures",
            "The number of proposal failures.",
            self.proposal_failures.clone(),
        );
        sub.register(
            "normal_proposals_received",
            "The total number of proposals received for normal type transactions.",
            self.normal_proposals_received.clone(),
        );
        sub.register(
            "config_proposals_received",
            "The total number of proposals received for config type transactions.",
            self.config_proposals_received.clone(),
        );
        sub.register_with_unit(
            "data_persist_duration",
            "The time taken for etcd/raft data to be persisted in storage (in seconds).",
            prometheus_client::registry::Unit::Seconds,
            self.data_persist_duration.clone(),
        );
    }

    fn channel(&self, label: &ChannelLabel) -> EtcdRaftMetrics {
        EtcdRaftMetrics {
            is_leader: self.is_leader.get_or_create(label).clone(),
            cluster_size: self.cluster_size.get_or_create(label).clone(),
            active_nodes: self.active_nodes.get_or_create(label).clone(),
            leader_changes: self.leader_changes.get_or_create(label).clone(),
            committed_block_number: self.committed_block_number.get_or_create(label).clone(),
            proposal_failures: self.proposal_failures.get_or_create(label).clone(),
            normal_proposals_received: self.normal_proposals_received.get_or_create(label).clone(),
            config_proposals_received: self.config_proposals_received.get_or_create(label).clone(),
            data_persist_duration: self.data_persist_duration.get_or_create(label).clone(),
        }
    }

    fn forget(&self, label: &ChannelLabel) {
        self.is_leader.remove(label);
        self.cluster_size.remove(label);
        self.active_nodes.remove(label);
        self.leader_changes.remove(label);
        self.committed_block_number.remove(label);
        self.proposal_failures.remove(label);
        self.normal_proposals_received.remove(label);
        self.config_proposals_received.remove(label);
        self.data_persist_duration.remove(label);
    }
}

impl Metrics {
    /// Metrics that `/metrics` serves.
    pub fn new() -> Arc<Metrics> {
        Self::with_exposition(true)
    }

    /// Metrics that `/metrics` serves when `exposed` (Metrics.Provider
    /// prometheus) and answers 404 for otherwise, as Fabric.
    pub fn with_exposition(exposed: bool) -> Arc<Metrics> {
        let mut registry = Registry::default();
        let metrics = Metrics {
            exposed,
            broadcast_validate_duration: Family::new_with_constructor(default_buckets_histogram),
            broadcast_enqueue_duration: Family::new_with_constructor(default_buckets_histogram),
            broadcast_processed: Family::default(),
            deliver_streams_opened: Counter::default(),
            deliver_streams_closed: Counter::default(),
            deliver_requests_received: Family::default(),
            deliver_requests_completed: Family::default(),
            deliver_blocks_sent: Family::default(),
            height: Family::default(),
            blocks_committed: Family::default(),
            envelopes_per_block: Family::new_with_constructor(block_size_histogram),
            mailbox_depth: Family::default(),
            messages_handled: Family::default(),
            blocks_inflight: Family::default(),
            envelopes_inflight: Family::default(),
            bytes_inflight: Family::default(),
            is_leader: Family::default(),
            chain_active: Family::default(),
            submissions_waiting: Family::default(),
            submission_wait: Family::new_with_constructor(latency_histogram),
            broadcast_to_block: Family::new_with_constructor(latency_histogram),
            chain_restarts: Family::default(),
            channel_errored: Family::default(),
            etcdraft: EtcdRaftFamilies::new(),
            kafka: KafkaFamilies::new(),
            registry: Mutex::new(Registry::default()),
        };
        // Fabric's help texts, so the two expositions read alike.
        registry.register(
            "broadcast_validate_duration",
            "The time to validate a transaction in seconds.",
            metrics.broadcast_validate_duration.clone(),
        );
        registry.register(
            "broadcast_enqueue_duration",
            "The time to enqueue a transaction in seconds.",
            metrics.broadcast_enqueue_duration.clone(),
        );
        registry.register(
            "broadcast_processed_count",
            "The number of transactions processed.",
            metrics.broadcast_processed.clone(),
        );
        registry.register(
            "deliver_streams_opened",
            "The number of GRPC streams that have been opened for the deliver service.",
            metrics.deliver_streams_opened.clone(),
        );
        registry.register(
            "deliver_streams_closed",
            "The number of GRPC streams that have been closed for the deliver service.",
            metrics.deliver_streams_closed.clone(),
        );
        registry.register(
            "deliver_requests_received",
            "The number of deliver requests that have been received.",
            metrics.deliver_requests_received.clone(),
        );
        registry.register(
            "deliver_requests_completed",
            "The number of deliver requests that have been completed.",
            metrics.deliver_requests_completed.clone(),
        );
        registry.register(
            "deliver_blocks_sent",
            "The number of blocks sent by the deliver service.",
            metrics.deliver_blocks_sent.clone(),
        );
        registry.register(
            "ledger_blockchain_height",
            "Height of the chain in blocks.",
            metrics.height.clone(),
        );
        registry.register(
            "ordo_blocks_committed",
            "Blocks made durable by the channel's LedgerActor",
            metrics.blocks_committed.clone(),
        );
        registry.register(
            "ordo_envelopes_per_block",
            "Envelopes in each committed block",
            metrics.envelopes_per_block.clone(),
        );
        registry.register(
            "ordo_mailbox_depth",
            "Messages sent to an actor and not yet handled, by actor kind",
            metrics.mailbox_depth.clone(),
        );
        registry.register(
            "ordo_messages_handled",
            "Messages handled, by actor kind",
            metrics.messages_handled.clone(),
        );
        registry.register(
            "ordo_blocks_inflight",
            "Blocks made and not yet durable",
            metrics.blocks_inflight.clone(),
        );
        registry.register(
            "ordo_envelopes_inflight",
            "Envelopes held between Broadcast and the ledger (bounded by MaxInflightEnvelopes)",
            metrics.envelopes_inflight.clone(),
        );
        registry.register(
            "ordo_bytes_inflight",
            "Bytes of envelopes held between Broadcast and the ledger (bounded by MaxInflightBytes)",
            metrics.bytes_inflight.clone(),
        );
        registry.register(
            "ordo_chain_is_leader",
            "1 while this node's chain of the channel is its leader (solo: always)",
            metrics.is_leader.clone(),
        );
        registry.register(
            "ordo_chain_active",
            "1 while the channel's chain reports the status active",
            metrics.chain_active.clone(),
        );
        registry.register(
            "ordo_submissions_waiting",
            "Broadcast submissions waiting for in-flight room",
            metrics.submissions_waiting.clone(),
        );
        registry.register_with_unit(
            "ordo_submission_wait",
            "How long Broadcast submissions waited for in-flight room",
            prometheus_client::registry::Unit::Seconds,
            metrics.submission_wait.clone(),
        );
        registry.register_with_unit(
            "ordo_broadcast_to_block",
            "From an envelope read by Broadcast to its block being durable",
            prometheus_client::registry::Unit::Seconds,
            metrics.broadcast_to_block.clone(),
        );
        registry.register(
            "ordo_chain_restarts",
            "Restarts of the channel's actor tree by its supervisor",
            metrics.chain_restarts.clone(),
        );
        registry.register(
            "ordo_channel_errored",
            "1 while the channel is errored: its ledger or config could not be read at start-up, or its tree failed too often; the reason is in the log and the participation API",
            metrics.channel_errored.clone(),
        );
        metrics.etcdraft.register(&mut registry);
        metrics.kafka.register(&mut registry);
        *metrics
            .registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = registry;
        Arc::new(metrics)
    }

    /// The metrics of one channel, with its label sets resolved.
    pub fn channel(self: &Arc<Self>, channel: &str) -> Arc<ChannelMetrics> {
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        let actor = |kind: &str| ActorMetrics {
            depth: self
                .mailbox_depth
                .get_or_create(&ActorLabels {
                    channel: channel.to_string(),
                    actor: kind.to_string(),
                })
                .clone(),
            handled: self
                .messages_handled
                .get_or_create(&ActorLabels {
                    channel: channel.to_string(),
                    actor: kind.to_string(),
                })
                .clone(),
        };
        // One statement each: a family's read guard lives to the end of the
        // statement, and creating a second series of it needs its write lock.
        let completed = |success| {
            self.deliver_requests_completed
                .get_or_create(&deliver_completed_labels(channel, success))
                .clone()
        };
        let deliver_requests_succeeded = completed(true);
        let deliver_requests_failed = completed(false);
        Arc::new(ChannelMetrics {
            channel: channel.to_string(),
            deliver_blocks_sent: self
                .deliver_blocks_sent
                .get_or_create(&deliver_labels(channel))
                .clone(),
            deliver_requests_received: self
                .deliver_requests_received
                .get_or_create(&deliver_labels(channel))
                .clone(),
            deliver_requests_succeeded,
            deliver_requests_failed,
            height: self.height.get_or_create(&label).clone(),
            blocks_committed: self.blocks_committed.get_or_create(&label).clone(),
            envelopes_per_block: self.envelopes_per_block.get_or_create(&label).clone(),
            chain: actor("chain"),
            cutter: actor("cutter"),
            ledger: actor("ledger"),
            proposer: actor("proposer"),
            blocks_inflight: self.blocks_inflight.get_or_create(&label).clone(),
            envelopes_inflight: self.envelopes_inflight.get_or_create(&label).clone(),
            bytes_inflight: self.bytes_inflight.get_or_create(&label).clone(),
            is_leader: self.is_leader.get_or_create(&label).clone(),
            chain_active: self.chain_active.get_or_create(&label).clone(),
            submissions_waiting: self.submissions_waiting.get_or_create(&label).clone(),
            submission_wait: self.submission_wait.get_or_create(&label).clone(),
            broadcast_to_block: self.broadcast_to_block.get_or_create(&label).clone(),
            chain_restarts: self.chain_restarts.get_or_create(&label).clone(),
            etcdraft: self.etcdraft.channel(&label),
            kafka: self.kafka.channel(&label),
        })
    }

    /// Sets a channel's `ordo_channel_errored` gauge.
    pub fn set_channel_errored(&self, channel: &str, errored: bool) {
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        self.channel_errored
            .get_or_create(&label)
            .set(i64::from(errored));
    }

    /// Drops a removed channel's series.
    pub fn forget_channel(&self, channel: &str) {
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        self.deliver_blocks_sent.remove(&deliver_labels(channel));
        self.deliver_requests_received
            .remove(&deliver_labels(channel));
        for success in [true, false] {
            self.deliver_requests_completed
                .remove(&deliver_completed_labels(channel, success));
        }
        self.height.remove(&label);
        self.blocks_committed.remove(&label);
        self.envelopes_per_block.remove(&label);
        self.blocks_inflight.remove(&label);
        self.envelopes_inflight.remove(&label);
        self.bytes_inflight.remove(&label);
        self.is_leader.remove(&label);
        self.chain_active.remove(&label);
        self.submissions_waiting.remove(&label);
        self.submission_wait.remove(&label);
        self.broadcast_to_block.remove(&label);
        self.chain_restarts.remove(&label);
        self.channel_errored.remove(&label);
        self.etcdraft.forget(&label);
        self.kafka.forget(&label);
        for actor in ["chain", "cutter", "ledger", "proposer"] {
            let labels = ActorLabels {
                channel: channel.to_string(),
                actor: actor.to_string(),
            };
            self.mailbox_depth.remove(&labels);
            self.messages_handled.remove(&labels);
        }
        // Labels are drawn from closed sets, so every series of the channel
        // can be named.
        use crate::fabric::protos::common::{HeaderType, Status};
        let types = (0..=i32::from(u8::MAX))
            .filter_map(|t| HeaderType::try_from(t).ok())
            .map(|t| t.as_str_name())
            .chain([UNKNOWN]);
        for r#type in types {
            for status in (0..=1000).filter_map(|s| Status::try_from(s).ok()) {
                let labels = BroadcastLabels {
                    channel: channel.to_string(),
                    status: status.as_str_name(),
                    r#type,
                };
                self.broadcast_processed.remove(&labels);
                self.broadcast_validate_duration.remove(&labels);
                self.broadcast_enqueue_duration.remove(&labels);
            }
        }
    }

    /// Deliver streams open now.
    pub fn deliver_streams_open(&self) -> i64 {
        let opened = self.deliver_streams_opened.get();
        let closed = self.deliver_streams_closed.get();
        i64::try_from(opened.saturating_sub(closed)).unwrap_or(i64::MAX)
    }

    /// A Deliver stream opened; the guard closes it when dropped.
    pub fn deliver_stream_opened(self: &Arc<Self>) -> DeliverStreamGuard {
        self.deliver_streams_opened.inc();
        DeliverStreamGuard {
            metrics: self.clone(),
        }
    }

    /// Whether `/metrics` serves the metrics (Metrics.Provider prometheus).
    pub fn exposed(&self) -> bool {
        self.exposed
    }

    /// Where a consenter registers its own families (leader changes,
    /// is-leader, cluster size for etcdraft).
    pub fn consensus_registry<T>(
        &self,
        consensus_type: &str,
        register: impl FnOnce(&mut Registry) -> T,
    ) -> T {
        let mut registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let sub = registry.sub_registry_with_prefix(format!("consensus_{consensus_type}"));
        register(sub)
    }

    /// Every metric in the Prometheus text format Fabric serves (version
    /// 0.0.4, [`CONTENT_TYPE`]).
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        exposition::prometheus_text(&text)
    }
}

/// The content type of [`Metrics::encode`]'s text.
pub const CONTENT_TYPE: &str = exposition::CONTENT_TYPE;

/// Closes a Deliver stream in the metrics when dropped.
pub struct DeliverStreamGuard {
    metrics: Arc<Metrics>,
}

impl Drop for DeliverStreamGuard {
    fn drop(&mut self) {
        self.metrics.deliver_streams_closed.inc();
    }
}

/// Mailbox depth and messages handled of one actor.
#[derive(Clone, Default, Debug)]
pub struct ActorMetrics {
    depth: Gauge,
    handled: Counter,
}

impl ActorMetrics {
    /// A message was put in the actor's mailbox.
    pub fn sent(&self) {
        self.depth.inc();
    }

    /// A message counted as sent never reached the mailbox (the actor is gone).
    pub fn dropped(&self) {
        self.depth.dec();
    }

    /// The actor took a message from its mailbox.
    pub fn handled(&self) {
        self.depth.dec();
        self.handled.inc();
    }

    /// Messages in the mailbox now.
    pub fn depth(&self) -> i64 {
        self.depth.get()
    }

    /// Messages handled so far.
    pub fn handled_count(&self) -> u64 {
        self.handled.get()
    }
}

/// One channel's metrics, resolved once.
#[derive(Debug)]
pub struct ChannelMetrics {
    pub channel: String,
    pub deliver_blocks_sent: Counter,
    pub deliver_requests_received: Counter,
    deliver_requests_succeeded: Counter,
    deliver_requests_failed: Counter,
    pub height: Gauge,
    pub blocks_committed: Counter,
    pub envelopes_per_block: Histogram,
    pub chain: ActorMetrics,
    pub cutter: ActorMetrics,
    pub ledger: ActorMetrics,
    /// etcdraft's ProposerActor (leader only).
    pub proposer: ActorMetrics,
    pub blocks_inflight: Gauge,
    pub envelopes_inflight: Gauge,
    pub bytes_inflight: Gauge,
    pub is_leader: Gauge,
    pub chain_active: Gauge,
    pub submissions_waiting: Gauge,
    pub submission_wait: Histogram,
    pub broadcast_to_block: Histogram,
    pub chain_restarts: Counter,
    pub etcdraft: EtcdRaftMetrics,
    pub kafka: KafkaMetrics,
}

impl ChannelMetrics {
    /// Metrics that no listener exposes (tests, tools): resolved from a
    /// registry of their own.
    pub fn detached(channel: &str) -> Arc<ChannelMetrics> {
        Metrics::new().channel(channel)
    }

    pub fn observe_wait(&self, waited: Duration) {
        self.submission_wait.observe(waited.as_secs_f64());
    }

    /// A Deliver request of the channel ended, with SUCCESS or not.
    pub fn deliver_request_completed(&self, success: bool) {
        if success {
            self.deliver_requests_succeeded.inc();
        } else {
            self.deliver_requests_failed.inc();
        }
    }
}

/// One series of each broadcast family, for one label set.
struct BroadcastSeries {
    labels: BroadcastLabels,
    validate: Histogram,
    enqueue: Histogram,
    processed: Counter,
}

/// An envelope that passed validation, awaiting its answer.
struct Pending {
    channel: usize,
    r#type: &'static str,
    validated: Duration,
}

/// The broadcast metrics of one stream, recorded as Fabric records them:
/// per envelope, the time to validate it and to enqueue it, and its answer,
/// labelled by channel, header type and status. Envelopes are answered in
/// the order they were accepted, so the recorder pairs each answer with its
/// envelope; series are resolved once per stream.
pub struct BroadcastRecorder {
    metrics: Arc<Metrics>,
    series: Vec<BroadcastSeries>,
    /// Channel ids of the pending envelopes (a stream uses few).
    channels: Vec<String>,
    pending: VecDeque<Pending>,
    /// The envelope being validated: when it started, and its header type.
    validating: Option<(Instant, &'static str)>,
    enqueue_started: Option<Instant>,
}

impl BroadcastRecorder {
    pub fn new(metrics: Arc<Metrics>) -> BroadcastRecorder {
        BroadcastRecorder {
            metrics,
            series: Vec::new(),
            channels: Vec::new(),
            pending: VecDeque::new(),
            validating: None,
            enqueue_started: None,
        }
    }

    /// An envelope's validation starts.
    pub fn validating(&mut self) {
        self.validating = Some((Instant::now(), UNKNOWN));
    }

    /// The envelope being validated has this header type.
    pub fn header_type(&mut self, header_type: i32) {
        if let Some((_, r#type)) = self.validating.as_mut() {
            *r#type = header_type_label(header_type);
        }
    }

    /// The envelope passed validation for `channel`; it is answered later.
    pub fn accepted(&mut self, channel: &str) {
        let (started, r#type) = self.validating.take().unwrap_or((Instant::now(), UNKNOWN));
        let channel = match self.channels.iter().position(|c| c == channel) {
            Some(index) => index,
            None => {
                self.channels.push(channel.to_string());
                self.channels.len() - 1
            }
        };
        self.pending.push_back(Pending {
            channel,
            r#type,
            validated: started.elapsed(),
        });
    }

    /// The envelope being validated was refused with `status` (`channel`:
    /// [`UNKNOWN`] when no channel of the node is named).
    pub fn refused(&mut self, channel: &str, status: &'static str) {
        // A refusal ends the stream: no series worth resolving for later.
        let r#type = self.validating.take().map_or(UNKNOWN, |(_, t)| t);
        self.metrics
            .broadcast_processed
            .get_or_create(&BroadcastLabels {
                channel: channel.to_string(),
                status,
                r#type,
            })
            .inc();
    }

    /// Envelopes are being handed to the channel: the enqueue time starts.
    pub fn enqueueing(&mut self) {
        self.enqueue_started = Some(Instant::now());
    }

    /// The next `count` accepted envelopes were answered with `status`.
    pub fn answered(&mut self, status: &'static str, count: usize) {
        let enqueued = self.enqueue_started.map(|at| at.elapsed().as_secs_f64());
        for _ in 0..count {
            let Some(pending) = self.pending.pop_front() else {
                return;
            };
            let index = series_of(
                &mut self.series,
                &self.metrics,
                &self.channels[pending.channel],
                pending.r#type,
                status,
            );
            let series = &self.series[index];
            series.validate.observe(pending.validated.as_secs_f64());
            if let Some(enqueued) = enqueued {
                series.enqueue.observe(enqueued);
            }
            series.processed.inc();
        }
    }
}

/// The index of a label set's series in `series`, resolved on first use.
fn series_of(
    series: &mut Vec<BroadcastSeries>,
    metrics: &Metrics,
    channel: &str,
    r#type: &'static str,
    status: &'static str,
) -> usize {
    if let Some(index) = series.iter().position(|s| {
        s.labels.r#type == r#type && s.labels.status == status && s.labels.channel == channel
    }) {
        return index;
    }
    let labels = BroadcastLabels {
        channel: channel.to_string(),
        status,
        r#type,
    };
    series.push(BroadcastSeries {
        validate: metrics
            .broadcast_validate_duration
            .get_or_create(&labels)
            .clone(),
        enqueue: metrics
            .broadcast_enqueue_duration
            .get_or_create(&labels)
            .clone(),
        processed: metrics.broadcast_processed.get_or_create(&labels).clone(),
        labels,
    });
    series.len() - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|line| {
            let rest = line.strip_prefix(series)?;
            rest.strip_prefix(' ')?.trim().parse().ok()
        })
    }

    #[test]
    fn broadcast_answers_are_recorded_per_envelope_with_its_labels() {
        let metrics = Metrics::new();
        let mut stream = BroadcastRecorder::new(metrics.clone());
        stream.validating();
        stream.header_type(3);
        stream.accepted("a");
        stream.validating();
        stream.header_type(0);
        stream.accepted("a");
        stream.validating();
        stream.header_type(77);
        stream.refused(UNKNOWN, "BAD_REQUEST");
        stream.enqueueing();
        stream.answered("SUCCESS", 2);
        let text = metrics.encode();
        let endorser = "{channel=\"a\",status=\"SUCCESS\",type=\"ENDORSER_TRANSACTION\"}";
        let message = "{channel=\"a\",status=\"SUCCESS\",type=\"MESSAGE\"}";
        for labels in [endorser, message] {
            assert_eq!(
                sample(&text, &format!("broadcast_processed_count{labels}")),
                Some(1.0),
                "{text}"
            );
            assert_eq!(
                sample(&text, &format!("broadcast_validate_duration_count{labels}")),
                Some(1.0)
            );
            assert_eq!(
                sample(&text, &format!("broadcast_enqueue_duration_count{labels}")),
                Some(1.0)
            );
        }
        let refused = "{channel=\"unknown\",status=\"BAD_REQUEST\",type=\"unknown\"}";
        assert_eq!(
            sample(&text, &format!("broadcast_processed_count{refused}")),
            Some(1.0),
            "{text}"
        );
        // Refused while validating: neither validated nor enqueued.
        assert_eq!(
            sample(
                &text,
                &format!("broadcast_validate_duration_count{refused}")
            ),
            None
        );
        // Fabric's default buckets, bounds as Go writes them.
        assert!(text.contains(&format!(
            "broadcast_validate_duration_bucket{{le=\"1\",{}",
            &endorser[1..]
        )));
    }

    #[test]
    fn deliver_metrics_are_fabrics_and_a_removed_channel_leaves_none() {
        let metrics = Metrics::new();
        let channel = metrics.channel("a");
        {
            let _stream = metrics.deliver_stream_opened();
            assert_eq!(metrics.deliver_streams_open(), 1);
            channel.deliver_requests_received.inc();
            channel.deliver_blocks_sent.inc();
            channel.deliver_request_completed(true);
        }
        assert_eq!(metrics.deliver_streams_open(), 0);
        let text = metrics.encode();
        let labels = "channel=\"a\",data_type=\"block\",filtered=\"false\"";
        assert_eq!(sample(&text, "deliver_streams_opened"), Some(1.0));
        assert_eq!(sample(&text, "deliver_streams_closed"), Some(1.0));
        assert_eq!(
            sample(&text, &format!("deliver_blocks_sent{{{labels}}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(&text, &format!("deliver_requests_received{{{labels}}}")),
            Some(1.0)
        );
        assert_eq!(
            sample(
                &text,
                &format!("deliver_requests_completed{{{labels},success=\"true\"}}")
            ),
            Some(1.0)
        );

        let mut stream = BroadcastRecorder::new(metrics.clone());
        stream.validating();
        stream.header_type(2);
        stream.accepted("a");
        stream.answered("SERVICE_UNAVAILABLE", 1);
        metrics.forget_channel("a");
        let text = metrics.encode();
        assert!(!text.lines().any(|l| l.contains("channel=\"a\"")), "{text}");
    }
}
