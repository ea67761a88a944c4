//! A channel: its handle (what Broadcast, Deliver and the admin API read),
//! the supervisor of its actor tree, and what the tree's members share.

pub mod fault;
pub mod mailbox;
mod supervisor;
#[cfg(test)]
pub(crate) mod testing;
pub mod tree;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::watch;

pub use supervisor::{ChannelSupervisor, Shutdown};

use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::{ChannelPolicies, PolicyEvaluator};
use crate::runtime::consensus::{ChainHandle, ChainStatus, InflightRoom, StatusPublisher};
use crate::runtime::ledger::{BlockStore, ConfigPublisher};
use crate::runtime::metrics::ChannelMetrics;
use crate::runtime::msgprocessor::RuleSet;
use fault::WriteFaults;

/// Where a channel's tree is in its life (the supervisor's view; what the
/// chain itself is doing is its [`ChainStatus`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState {
    Starting,
    Active,
    /// Failed; the supervisor restarts it after a back-off.
    Restarting {
        attempt: u32,
        reason: String,
    },
    /// Its storage failed a write: Broadcast is refused, Deliver serves the
    /// durable blocks, and the supervisor starts the tree again once the
    /// storage takes writes.
    StorageFault(String),
    /// Failed too often, or cannot start at all: no longer restarted.
    Errored(String),
    /// Stopped by a clean shutdown.
    Stopped,
}

impl ChannelState {
    /// Whether a chain runs (or is about to): Broadcast and Deliver are served.
    pub fn serves(&self) -> bool {
        matches!(self, ChannelState::Starting | ChannelState::Active)
    }
}

/// How every answer names a state: "active", "restarting (attempt 2) after:
/// disk full", "errored: ...".
impl fmt::Display for ChannelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelState::Starting => f.write_str("starting"),
            ChannelState::Active => f.write_str("active"),
            ChannelState::Restarting { attempt, reason } => {
                write!(f, "restarting (attempt {attempt}) after: {reason}")
            }
            ChannelState::StorageFault(reason) => write!(
                f,
                "unavailable until its storage takes writes again: {reason}"
            ),
            ChannelState::Errored(reason) => write!(f, "errored: {reason}"),
            ChannelState::Stopped => f.write_str("stopped"),
        }
    }
}

/// Shared view of one channel. Cheap to read from any thread.
pub struct ChannelHandle {
    id: String,
    store: BlockStore,
    /// The config of the last config block written (the LedgerActor moves it).
    config: watch::Receiver<Arc<ChannelConfig>>,
    chain: RwLock<Option<ChainHandle>>,
    state: watch::Sender<ChannelState>,
    status: StatusPublisher,
    filters: Arc<RuleSet>,
    policies: Arc<dyn PolicyEvaluator>,
    /// Bounds the envelopes and bytes held between Broadcast and the ledger.
    inflight: InflightRoom,
    restarts: AtomicU32,
    metrics: Arc<ChannelMetrics>,
    /// Write faults of the consenter's storage (the block store keeps its own).
    faults: WriteFaults,
}

impl ChannelHandle {
    /// A channel's handle, and the publisher of its config that the
    /// supervisor hands to each LedgerActor it starts.
    pub fn new(
        store: BlockStore,
        config: ChannelConfig,
        inflight: InflightRoom,
        filters: Arc<RuleSet>,
        metrics: Arc<ChannelMetrics>,
    ) -> (ChannelHandle, ConfigPublisher) {
        let (state, _) = watch::channel(ChannelState::Starting);
        let id = config.channel_id.clone();
        let (publisher, config) = ConfigPublisher::new(config);
        let handle = ChannelHandle {
            id,
            store,
            config,
            chain: RwLock::new(None),
            state,
            status: StatusPublisher::new(),
            filters,
            policies: Arc::new(ChannelPolicies),
            inflight,
            restarts: AtomicU32::new(0),
            metrics,
            faults: WriteFaults::default(),
        };
        (handle, publisher)
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn store(&self) -> &BlockStore {
        &self.store
    }

    /// The config Broadcast validates with: that of the last config block
    /// written. A chain ordering a config message admits nothing more until
    /// its block is written, so every later message is validated under it.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.config.borrow().clone()
    }

    /// A watch of the config, moved on as config blocks are written.
    pub fn subscribe_config(&self) -> watch::Receiver<Arc<ChannelConfig>> {
        self.config.clone()
    }

    /// What the chain is doing: role, leader, relation, status.
    pub fn chain_status(&self) -> ChainStatus {
        self.status.current()
    }

    pub fn status_publisher(&self) -> &StatusPublisher {
        &self.status
    }

    /// Evaluates the modification policies of config updates.
    pub fn policies(&self) -> &Arc<dyn PolicyEvaluator> {
        &self.policies
    }

    pub fn filters(&self) -> &Arc<RuleSet> {
        &self.filters
    }

    /// The running chain, or why there is none.
    pub fn chain(&self) -> Result<ChainHandle, String> {
        if let Some(chain) = self
            .chain
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            return Ok(chain.clone());
        }
        Err(format!("channel {} is {}", self.id, self.state()))
    }

    pub fn state(&self) -> ChannelState {
        self.state.borrow().clone()
    }

    pub fn subscribe_state(&self) -> watch::Receiver<ChannelState> {
        self.state.subscribe()
    }

    /// Why the channel's storage cannot be written, if it cannot: after the
    /// first failed write nothing more is acknowledged.
    pub fn write_fault(&self) -> Option<String> {
        if let Some(reason) = self.store.fault() {
            return Some(format!("ledger: {reason}"));
        }
        self.faults.current().map(|fault| fault.reason)
    }

    /// Where the consenter reports its storage's write faults.
    pub fn faults(&self) -> &WriteFaults {
        &self.faults
    }

    /// The in-flight room Broadcast takes before submitting.
    pub fn inflight(&self) -> &InflightRoom {
        &self.inflight
    }

    pub fn max_inflight(&self) -> usize {
        self.inflight.max_envelopes()
    }

    /// How often the supervisor restarted this channel's tree.
    pub fn restarts(&self) -> u32 {
        self.restarts.load(Ordering::Relaxed)
    }

    /// Warns when the in-flight bound is below a full block: blocks are then
    /// cut by the batch timer, not by MaxMessageCount, and throughput drops
    /// to about one bound's worth of envelopes per BatchTimeout.
    pub fn warn_if_bound_below_batch(&self, config: &ChannelConfig) {
        let batch = config.batch_size.max_message_count as usize;
        if self.max_inflight() < batch {
            tracing::warn!(
                channel = %self.id,
                max_inflight_envelopes = self.max_inflight(),
                max_message_count = batch,
                batch_timeout = ?config.batch_timeout,
                "General.Backpressure.MaxInflightEnvelopes is below the channel's BatchSize.MaxMessageCount: blocks will be cut by BatchTimeout only"
            );
        }
    }

    pub fn metrics(&self) -> &Arc<ChannelMetrics> {
        &self.metrics
    }

    fn count_restart(&self) -> u32 {
        self.metrics.chain_restarts.inc();
        self.restarts.fetch_add(1, Ordering::Relaxed) + 1
    }

    fn set_chain(&self, chain: Option<ChainHandle>, state: ChannelState) {
        *self.chain.write().unwrap_or_else(PoisonError::into_inner) = chain;
        match &state {
            ChannelState::Errored(_) => self.status.publish(ChainStatus::failed()),
            ChannelState::Active => {}
            _ => self.status.publish(ChainStatus::inactive()),
        }
        self.state.send_replace(state);
    }
}
