//! The node's metrics, in Prometheus text format on the operations listener.
//!
//! Names follow Fabric's orderer where Fabric has the metric
//! (`broadcast_processed_count`, `deliver_blocks_sent`,
//! `ledger_blockchain_height`); Ordo's own carry the `ordo_` prefix. Each
//! channel resolves its label sets once ([`ChannelMetrics`]), so recording is
//! an atomic operation. Consenters add their own families under
//! `consensus_<type>_` through [`Metrics::consensus_registry`].

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub channel: String,
    pub status: String,
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

fn block_size_histogram() -> Histogram {
    Histogram::new([
        1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0,
    ])
}

type LatencyFamily = Family<ChannelLabel, Histogram, fn() -> Histogram>;

/// Every family of the node, registered once.
pub struct Metrics {
    registry: Mutex<Registry>,
    broadcast_processed: Family<StatusLabels, Counter>,
    deliver_streams_open: Gauge,
    deliver_blocks_sent: Family<ChannelLabel, Counter>,
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
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::default();
        let metrics = Metrics {
            broadcast_processed: Family::default(),
            deliver_streams_open: Gauge::default(),
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
            registry: Mutex::new(Registry::default()),
        };
        registry.register(
            "broadcast_processed_count",
            "Broadcast envelopes answered, by channel and status",
            metrics.broadcast_processed.clone(),
        );
        registry.register(
            "deliver_streams_open",
            "Deliver streams open now",
            metrics.deliver_streams_open.clone(),
        );
        registry.register(
            "deliver_blocks_sent",
            "Blocks sent on Deliver streams",
            metrics.deliver_blocks_sent.clone(),
        );
        registry.register(
            "ledger_blockchain_height",
            "Height of the channel's chain",
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
        Arc::new(ChannelMetrics {
            channel: channel.to_string(),
            deliver_blocks_sent: self.deliver_blocks_sent.get_or_create(&label).clone(),
            height: self.height.get_or_create(&label).clone(),
            blocks_committed: self.blocks_committed.get_or_create(&label).clone(),
            envelopes_per_block: self.envelopes_per_block.get_or_create(&label).clone(),
            chain: actor("chain"),
            cutter: actor("cutter"),
            ledger: actor("ledger"),
            blocks_inflight: self.blocks_inflight.get_or_create(&label).clone(),
            envelopes_inflight: self.envelopes_inflight.get_or_create(&label).clone(),
            bytes_inflight: self.bytes_inflight.get_or_create(&label).clone(),
            is_leader: self.is_leader.get_or_create(&label).clone(),
            chain_active: self.chain_active.get_or_create(&label).clone(),
            submissions_waiting: self.submissions_waiting.get_or_create(&label).clone(),
            submission_wait: self.submission_wait.get_or_create(&label).clone(),
            broadcast_to_block: self.broadcast_to_block.get_or_create(&label).clone(),
            chain_restarts: self.chain_restarts.get_or_create(&label).clone(),
        })
    }

    /// Drops a removed channel's series.
    pub fn forget_channel(&self, channel: &str) {
        let label = ChannelLabel {
            channel: channel.to_string(),
        };
        self.deliver_blocks_sent.remove(&label);
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
        for actor in ["chain", "cutter", "ledger"] {
            let labels = ActorLabels {
                channel: channel.to_string(),
                actor: actor.to_string(),
            };
            self.mailbox_depth.remove(&labels);
            self.messages_handled.remove(&labels);
        }
        for status in [
            "SUCCESS",
            "BAD_REQUEST",
            "SERVICE_UNAVAILABLE",
            "FORBIDDEN",
            "NOT_FOUND",
        ] {
            self.broadcast_processed.remove(&StatusLabels {
                channel: channel.to_string(),
                status: status.to_string(),
            });
        }
    }

    /// Counts Broadcast answers for a channel ("" when none could be read).
    pub fn broadcast_processed(&self, channel: &str, status: &str, count: u64) {
        self.broadcast_processed
            .get_or_create(&StatusLabels {
                channel: channel.to_string(),
                status: status.to_string(),
            })
            .inc_by(count);
    }

    /// Deliver streams open now.
    pub fn deliver_streams_open(&self) -> i64 {
        self.deliver_streams_open.get()
    }

    /// A Deliver stream opened; the guard closes it when dropped.
    pub fn deliver_stream_opened(self: &Arc<Self>) -> DeliverStreamGuard {
        self.deliver_streams_open.inc();
        DeliverStreamGuard {
            metrics: self.clone(),
        }
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

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        let registry = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        text
    }
}

/// Closes a Deliver stream in the metrics when dropped.
pub struct DeliverStreamGuard {
    metrics: Arc<Metrics>,
}

impl Drop for DeliverStreamGuard {
    fn drop(&mut self) {
        self.metrics.deliver_streams_open.dec();
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
    pub height: Gauge,
    pub blocks_committed: Counter,
    pub envelopes_per_block: Histogram,
    pub chain: ActorMetrics,
    pub cutter: ActorMetrics,
    pub ledger: ActorMetrics,
    pub blocks_inflight: Gauge,
    pub envelopes_inflight: Gauge,
    pub bytes_inflight: Gauge,
    pub is_leader: Gauge,
    pub chain_active: Gauge,
    pub submissions_waiting: Gauge,
    pub submission_wait: Histogram,
    pub broadcast_to_block: Histogram,
    pub chain_restarts: Counter,
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
}
