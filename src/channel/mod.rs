//! A channel: its handle (what Broadcast and Deliver use) and the supervisor of
//! its actor tree.

mod supervisor;
#[cfg(test)]
pub(crate) mod testing;

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::{watch, Semaphore};

pub use supervisor::{ChannelSupervisor, Shutdown};

use crate::channelconfig::{ChannelConfig, SharedConfig};
use crate::configtx::{PolicyEvaluator, PolicyMustExist};
use crate::consensus::ChainHandle;
use crate::ledger::BlockStore;
use crate::metrics::ChannelMetrics;
use crate::msgprocessor::RuleSet;

/// Where a channel's chain is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelState {
    Starting,
    Active,
    /// Failed; the supervisor restarts it after a back-off.
    Restarting {
        attempt: u32,
        reason: String,
    },
    /// Failed too often, or cannot start at all: no longer restarted.
    Errored(String),
    /// Stopped by a clean shutdown.
    Stopped,
}

/// Shared view of one channel. Cheap to read from any thread.
pub struct ChannelHandle {
    id: String,
    store: BlockStore,
    config: SharedConfig,
    chain: RwLock<Option<ChainHandle>>,
    state: watch::Sender<ChannelState>,
    filters: Arc<RuleSet>,
    policies: Arc<dyn PolicyEvaluator>,
    /// Bounds the envelopes held between Broadcast and the ledger.
    inflight: Arc<Semaphore>,
    max_inflight: usize,
    restarts: AtomicU32,
    metrics: Arc<ChannelMetrics>,
}

impl ChannelHandle {
    pub fn new(
        store: BlockStore,
        config: ChannelConfig,
        max_inflight: usize,
        filters: Arc<RuleSet>,
        metrics: Arc<ChannelMetrics>,
    ) -> ChannelHandle {
        let (state, _) = watch::channel(ChannelState::Starting);
        ChannelHandle {
            id: config.channel_id.clone(),
            store,
            config: SharedConfig::new(config),
            chain: RwLock::new(None),
            state,
            filters,
            policies: Arc::new(PolicyMustExist),
            inflight: Arc::new(Semaphore::new(max_inflight)),
            max_inflight,
            restarts: AtomicU32::new(0),
            metrics,
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn store(&self) -> &BlockStore {
        &self.store
    }

    /// The config Broadcast validates with: the one the next message is ordered under.
    pub fn config(&self) -> Arc<ChannelConfig> {
        self.config.current()
    }

    pub fn shared_config(&self) -> &SharedConfig {
        &self.config
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
        Err(match self.state() {
            ChannelState::Errored(reason) => format!("channel {} has errored: {reason}", self.id),
            ChannelState::Restarting { reason, .. } => {
                format!("channel {} is restarting after: {reason}", self.id)
            }
            ChannelState::Stopped => format!("channel {} is stopped", self.id),
            _ => format!("channel {} is starting", self.id),
        })
    }

    pub fn state(&self) -> ChannelState {
        self.state.borrow().clone()
    }

    pub fn subscribe_state(&self) -> watch::Receiver<ChannelState> {
        self.state.subscribe()
    }

    /// The in-flight bound Broadcast acquires from before submitting.
    pub fn inflight(&self) -> &Arc<Semaphore> {
        &self.inflight
    }

    pub fn max_inflight(&self) -> usize {
        self.max_inflight
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
        if self.max_inflight < batch {
            tracing::warn!(
                channel = %self.id,
                max_inflight_envelopes = self.max_inflight,
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
        self.state.send_replace(state);
    }

    fn set_config(&self, config: ChannelConfig) {
        self.config.replace(Arc::new(config));
    }
}
