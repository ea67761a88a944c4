//! The registrar: the map from channel ID to channel, the bootstrap of the first
//! channel, and the start and clean stop of every channel's tree.
//!
//! Start-up never stops on one channel: a channel whose ledger or last config
//! block cannot be read is kept as a [`FailedChannel`], with the reason, and
//! every other channel starts. The participation API lists it as failed, the
//! `ordo_channel_errored` gauge is 1 for it, and removing it through the API
//! frees its name for a new join.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, PoisonError, RwLock};

use actix::prelude::*;
use actix_rt::ArbiterHandle;
use prost::Message;

use crate::fabric::channelconfig::genesis::GenesisProfile;
pub use crate::fabric::channelconfig::validate_channel_id;
use crate::fabric::channelconfig::{ChannelConfig, ChannelConfigError, InvalidChannelId};
use crate::fabric::localconfig::{BootstrapMethod, NodeConfig};
use crate::fabric::protos::common::Block;
use crate::runtime::channel::{ChannelHandle, ChannelSupervisor, Shutdown};
use crate::runtime::consensus::{Consenters, InflightRoom, NodeResources};
use crate::runtime::ledger::{LedgerError, LedgerFactory};
use crate::runtime::metrics::Metrics;
use crate::runtime::msgprocessor::RuleSet;
use crate::security::signer::SigningIdentity;

/// The channel the embedded bootstrap creates.
pub const EMBEDDED_CHANNEL: &str = "mychannel";

#[derive(Debug, thiserror::Error)]
pub enum RegistrarError {
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    #[error("cannot read the genesis block {path}: {source}")]
    ReadGenesis {
        path: String,
        source: std::io::Error,
    },
    #[error("the genesis block {path} is not a block: {source}")]
    DecodeGenesis {
        path: String,
        source: prost::DecodeError,
    },
    #[error("invalid genesis block: {0}")]
    Genesis(#[from] ChannelConfigError),
    #[error("a genesis block must be block 0, this one is block {0}")]
    NotGenesis(u64),
    #[error(transparent)]
    ChannelId(#[from] InvalidChannelId),
    #[error("channel {0} already exists")]
    ChannelExists(String),
    #[error("removing the ledger failed: {0}")]
    Removal(String),
    #[error("channel {0} does not exist")]
    NoSuchChannel(String),
    #[error("the config block is for channel {block} but the request names {requested}")]
    ChannelMismatch { block: String, requested: String },
    #[error("no actor thread to run channels on")]
    NoArbiter,
    #[error("joining at config block {0} needs the channel's earlier blocks from its other orderers (onboarding); this node joins channels at their genesis block (block 0)")]
    Onboarding(u64),
    /// Fabric 2.x's answer to a join or a removal of an application channel
    /// while the node runs a system channel.
    #[error("system channel exists")]
    SystemChannelExists,
    /// A system channel join while application channels exist.
    #[error("application channels already exist")]
    AppChannelsExist,
    #[error("there appear to be two system channels {0} and {1}")]
    TwoSystemChannels(String, String),
    /// Fabric removes only an etcdraft system channel.
    #[error("cannot remove {consensus_type} system channel: {channel}")]
    SystemChannelRemoval {
        consensus_type: String,
        channel: String,
    },
    #[error("the channel creation cannot be read: {0}")]
    Creation(String),
}

/// A channel found on disk whose ledger or config could not be read at
/// start-up: not started, kept so that it is seen and can be removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedChannel {
    pub id: String,
    /// Why it could not start, as the log says it.
    pub reason: String,
    /// The ledger's height, if the ledger itself opened.
    pub height: Option<u64>,
}

/// Told when a channel starts (at open, on join) and when it is removed: how
/// parts of the node outside the channels follow them (the main listener's
/// trusted TLS CAs, for one). A started channel's config changes are on its
/// [`ChannelHandle::subscribe_config`] watch.
pub trait ChannelObserver: Send + Sync {
    fn channel_started(&self, channel: &Arc<ChannelHandle>);
    fn channel_removed(&self, channel: &str);
}

struct ChannelEntry {
    handle: Arc<ChannelHandle>,
    supervisor: Addr<ChannelSupervisor>,
}

pub struct Registrar {
    factory: LedgerFactory,
    /// Channels are spread over these, one after the other.
    arbiters: Vec<ArbiterHandle>,
    next_arbiter: std::sync::atomic::AtomicUsize,
    consenters: Consenters,
    node: Arc<NodeResources>,
    max_inflight: usize,
    max_inflight_bytes: usize,
    /// Broadcast's filter rules, shared by every channel.
    filters: Arc<RuleSet>,
    metrics: Arc<Metrics>,
    channels: RwLock<HashMap<String, ChannelEntry>>,
    /// Channels on disk that could not start, by ID.
    failed: RwLock<BTreeMap<String, FailedChannel>>,
    observers: RwLock<Vec<Arc<dyn ChannelObserver>>>,
    /// `General.MaxSendMsgSize`: the largest block a follower can fetch.
    max_block_bytes: usize,
    /// The system channel, when the node runs one (Fabric 1.x/2.x): the
    /// channel whose config has `Consortiums`. Channels are created through
    /// it; joins and removals of other channels are refused.
    system_channel: RwLock<Option<String>>,
    /// The system channel's height up to which its channel creations have
    /// been applied at start-up.
    system_scanned: std::sync::atomic::AtomicU64,
}

impl Registrar {
    /// Opens the ledger, starts every existing channel, and creates the first one
    /// from the bootstrap method when the ledger holds none. Each channel's
    /// actors run on one of `arbiters`; `consenters` are the consensus types
    /// this node serves.
    pub fn open(
        config: &NodeConfig,
        arbiters: Vec<ArbiterHandle>,
        consenters: Consenters,
        node: Arc<NodeResources>,
        metrics: Arc<Metrics>,
    ) -> Result<Registrar, RegistrarError> {
        if arbiters.is_empty() {
            return Err(RegistrarError::NoArbiter);
        }
        let factory = LedgerFactory::open(&config.ledger_dir)?;
        let registrar = Registrar {
            factory,
            arbiters,
            next_arbiter: std::sync::atomic::AtomicUsize::new(0),
            consenters,
            node,
            max_inflight: config.max_inflight_envelopes,
            max_inflight_bytes: config.max_inflight_bytes,
            filters: Arc::new(RuleSet::for_node(!config.no_expiration_checks)),
            metrics,
            channels: RwLock::new(HashMap::new()),
            failed: RwLock::new(BTreeMap::new()),
            observers: RwLock::new(Vec::new()),
            max_block_bytes: config.grpc.max_send_msg_size,
            system_channel: RwLock::new(None),
            system_scanned: std::sync::atomic::AtomicU64::new(0),
        };
        let existing = registrar.factory.channel_ids();
        if existing.is_empty() {
            registrar.bootstrap(config)?;
        }
        for id in existing {
            match registrar.open_channel(&id) {
                Ok((store, channel_config)) => {
                    if channel_config.is_system_channel() {
                        registrar.set_system_channel(&id)?;
                    }
                    registrar.start_channel(store, channel_config);
                }
                Err(failed) => registrar.keep_failed(failed),
            }
        }
        registrar.apply_system_channel_creations();
        Ok(registrar)
    }

    fn set_system_channel(&self, id: &str) -> Result<(), RegistrarError> {
        let mut system = self
            .system_channel
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        match system.as_deref() {
            Some(existing) if existing != id => Err(RegistrarError::TwoSystemChannels(
                existing.to_string(),
                id.to_string(),
            )),
            _ => {
                tracing::info!(channel = %id, "system channel: channels are created through it");
                *system = Some(id.to_string());
                Ok(())
            }
        }
    }

    /// The system channel's ID, when the node runs one.
    pub fn system_channel_id(&self) -> Option<String> {
        self.system_channel
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The system channel, when the node runs one and it started.
    pub fn system_channel(&self) -> Option<Arc<ChannelHandle>> {
        self.system_channel_id().and_then(|id| self.channel(&id))
    }

    /// How many channels the node has (the system channel and those that
    /// could not start included), as the limit on channels counts them.
    pub fn channel_count(&self) -> usize {
        let started = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        started
            + self
                .failed
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .len()
    }

    /// At start-up: every channel the system channel's ledger created
    /// exists. A crash after the system channel wrote an ORDERER_TRANSACTION
    /// block and before the channel was created loses nothing.
    fn apply_system_channel_creations(&self) {
        let Some(system) = self.system_channel() else {
            return;
        };
        let height = system.store().height();
        let mut scanned = height;
        for number in 0..height {
            if let Err(e) = self.apply_creations_in(&system, number) {
                // The follower tries this block again, and every block after
                // it, in order: a channel comes from the first creation of
                // it on every node alike.
                tracing::error!(channel = %system.id(), block = number, error = %e, "a channel creation could not be applied; retrying");
                scanned = number;
                break;
            }
        }
        self.system_scanned
            .store(scanned, std::sync::atomic::Ordering::Release);
    }

    /// Creates the channels that block `number` of the system channel
    /// creates, if they do not exist yet. Blocking (reads and writes disks).
    /// A creation every node would refuse alike is logged and skipped; one
    /// that failed here only (a disk error) is an error, to be tried again
    /// before any later block, so that no later creation of the same
    /// channel takes its place on this node alone.
    fn apply_creations_in(
        &self,
        system: &ChannelHandle,
        number: u64,
    ) -> Result<(), RegistrarError> {
        let block = match system.store().block(number) {
            Ok(Some(block)) => block,
            Ok(None) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for raw in crate::fabric::blockutil::entries(&block) {
            if !crate::runtime::msgprocessor::systemchannel::is_orderer_transaction(raw) {
                continue;
            }
            match self.create_from_orderer_transaction(raw) {
                Ok(Some(created)) => {
                    tracing::info!(channel = %created.id(), system_channel = %system.id(), block = number, "channel created through the system channel");
                }
                Ok(None) => {}
                Err(
                    e @ (RegistrarError::Ledger(_)
                    | RegistrarError::Removal(_)
                    | RegistrarError::NoArbiter),
                ) => {
                    return Err(e);
                }
                Err(e) => {
                    tracing::error!(system_channel = %system.id(), block = number, error = %e, "the system channel ordered a channel creation that cannot be applied");
                }
            }
        }
        Ok(())
    }

    /// Creates the channel an ORDERER_TRANSACTION carries, from a genesis
    /// block holding its CONFIG envelope, as Fabric does. A channel that
    /// exists already (a replayed or repeated creation) is left alone:
    /// `None`.
    pub fn create_from_orderer_transaction(
        &self,
        orderer_transaction: &[u8],
    ) -> Result<Option<Arc<ChannelHandle>>, RegistrarError> {
        let config =
            crate::runtime::msgprocessor::systemchannel::created_config(orderer_transaction)
                .map_err(RegistrarError::Creation)?;
        let genesis = crate::fabric::channelconfig::genesis::genesis_block_from_envelope(
            config.encode_to_vec().into(),
        );
        let channel_config = ChannelConfig::from_config_block(&genesis)?;
        let id = &channel_config.channel_id;
        if self.channel(id).is_some() || self.failed_channel(id).is_some() {
            tracing::debug!(channel = %id, "channel creation seen again; the channel exists");
            return Ok(None);
        }
        if self.system_channel_id().as_deref() == Some(id.as_str()) {
            return Err(RegistrarError::ChannelExists(id.clone()));
        }
        match self.create_channel(&genesis) {
            Ok(handle) => Ok(Some(handle)),
            // Created meanwhile by another path (the follower and start-up).
            Err(RegistrarError::ChannelExists(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Follows the system channel: each channel creation it writes creates
    /// the channel. Runs until the system channel or the registrar is gone.
    pub fn follow_system_channel(self: &Arc<Self>) {
        let Some(system) = self.system_channel() else {
            return;
        };
        let registrar = Arc::downgrade(self);
        let id = system.id().to_string();
        let mut height = system.store().subscribe();
        let mut next = self
            .system_scanned
            .load(std::sync::atomic::Ordering::Acquire);
        drop(system);
        const RETRY_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
        const RETRY_MOST: std::time::Duration = std::time::Duration::from_secs(10);
        let mut retry = RETRY_FIRST;
        tokio::spawn(async move {
            loop {
                let written = *height.borrow_and_update();
                while next < written {
                    let Some(registrar) = registrar.upgrade() else {
                        return;
                    };
                    let Some(system) = registrar.system_channel() else {
                        return;
                    };
                    if system.id() != id {
                        return;
                    }
                    let number = next;
                    let applied = tokio::task::spawn_blocking(move || {
                        registrar.apply_creations_in(&system, number)
                    })
                    .await;
                    match applied {
                        Ok(Ok(())) => {
                            next += 1;
                            retry = RETRY_FIRST;
                        }
                        Ok(Err(e)) => {
                            // This block again, and nothing after it first.
                            tracing::error!(system_channel = %id, block = number, error = %e, retry_in = ?retry, "a channel creation could not be applied; retrying");
                            tokio::time::sleep(retry).await;
                            retry = (retry * 2).min(RETRY_MOST);
                        }
                        Err(e) => {
                            tracing::error!(system_channel = %id, block = number, error = %e, "applying the channel creations of a system channel block failed");
                            next += 1;
                        }
                    }
                }
                if height.changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// A channel's ledger and the config of its last config block, as
    /// start-up reads them; why not, otherwise.
    fn open_channel(
        &self,
        id: &str,
    ) -> Result<(crate::runtime::ledger::BlockStore, ChannelConfig), FailedChannel> {
        let failed = |reason: String, height: Option<u64>| FailedChannel {
            id: id.to_string(),
            reason,
            height,
        };
        let store = self
            .factory
            .open_store(id)
            .map_err(|e| failed(e.to_string(), None))?;
        let height = Some(store.height());
        let tip = store.tip();
        let config_block = match store.block(tip.last_config) {
            Ok(Some(block)) => block,
            Ok(None) => {
                return Err(failed(
                    format!("the last config block {} is missing", tip.last_config),
                    height,
                ))
            }
            Err(e) => return Err(failed(e.to_string(), height)),
        };
        let channel_config = ChannelConfig::from_config_block(&config_block).map_err(|e| {
            failed(
                format!("config block {} cannot be read: {e}", tip.last_config),
                height,
            )
        })?;
        if channel_config.channel_id != id {
            return Err(failed(
                format!(
                    "config block {} is for channel {}",
                    tip.last_config, channel_config.channel_id
                ),
                height,
            ));
        }
        Ok((store, channel_config))
    }

    fn keep_failed(&self, failed: FailedChannel) {
        tracing::error!(channel = %failed.id, reason = %failed.reason, "channel cannot start; it is kept as failed (remove it through the channel participation API to join it again) and the other channels start");
        self.metrics.set_channel_errored(&failed.id, true);
        self.failed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(failed.id.clone(), failed);
    }

    fn bootstrap(&self, config: &NodeConfig) -> Result<(), RegistrarError> {
        match (config.bootstrap_method, &config.bootstrap_file) {
            (BootstrapMethod::File, Some(path)) => {
                let display = path.display().to_string();
                let raw = std::fs::read(path).map_err(|source| RegistrarError::ReadGenesis {
                    path: display.clone(),
                    source,
                })?;
                let block = Block::decode(raw.as_slice()).map_err(|source| {
                    RegistrarError::DecodeGenesis {
                        path: display,
                        source,
                    }
                })?;
                let handle = self.create_channel(&block)?;
                if handle.config().is_system_channel() {
                    self.set_system_channel(handle.id())?;
                }
            }
            (BootstrapMethod::Embedded, _) => {
                let profile =
                    GenesisProfile::embedded(EMBEDDED_CHANNEL, vec![config.listen_address.clone()]);
                self.create_channel(&profile.genesis_block())?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Joins a channel with its config block (channel participation API).
    /// Only genesis blocks today: onboarding from a later config block needs
    /// the chain's earlier blocks from other orderers, which arrives with the
    /// etcdraft work.
    pub fn join_channel(&self, config_block: &Block) -> Result<Arc<ChannelHandle>, RegistrarError> {
        let number = crate::fabric::blockutil::number(config_block);
        // Check the block before its number, so a bad block is named as such.
        let config = ChannelConfig::from_config_block(config_block)?;
        // Fabric 2.x: no join while a system channel runs; a system channel
        // joins only a node without channels.
        if self.system_channel_id().is_some() {
            return Err(RegistrarError::SystemChannelExists);
        }
        if config.is_system_channel() && self.channel_count() > 0 {
            return Err(RegistrarError::AppChannelsExist);
        }
        if number != 0 {
            return Err(RegistrarError::Onboarding(number));
        }
        let handle = self.create_channel(config_block)?;
        if config.is_system_channel() {
            self.set_system_channel(handle.id())?;
        }
        Ok(handle)
    }

    /// Stops a channel's tree (its pending batch is written first) and removes
    /// the channel and its ledger. Other channels are not touched.
    pub async fn remove_channel(&self, id: &str) -> Result<(), RegistrarError> {
        if let Some(system) = self.system_channel_id() {
            if system != id {
                return Err(RegistrarError::SystemChannelExists);
            }
            // Fabric removes an etcdraft system channel only; the channels
            // it created stay, as application channels.
            let consensus_type = self
                .channel(id)
                .map(|c| c.config().consensus_type.clone())
                .unwrap_or_default();
            if consensus_type != crate::fabric::channelconfig::ETCDRAFT {
                return Err(RegistrarError::SystemChannelRemoval {
                    consensus_type,
                    channel: id.to_string(),
                });
            }
            *self
                .system_channel
                .write()
                .unwrap_or_else(PoisonError::into_inner) = None;
        }
        if self.remove_failed(id) {
            return self.remove_ledger(id).await;
        }
        let entry = self
            .channels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .ok_or_else(|| RegistrarError::NoSuchChannel(id.to_string()))?;
        for observer in self.observers() {
            observer.channel_removed(id);
        }
        if let Err(e) = entry.supervisor.send(Shutdown).await {
            tracing::warn!(channel = %id, error = %e, "channel supervisor was already gone at removal");
        }
        drop(entry);
        self.remove_ledger(id).await
    }

    /// Takes a failed channel out of the list; whether it was there.
    fn remove_failed(&self, id: &str) -> bool {
        self.failed
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(id)
            .is_some()
    }

    async fn remove_ledger(&self, id: &str) -> Result<(), RegistrarError> {
        let factory = self.factory.clone();
        let channel = id.to_string();
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            factory.remove_store(&channel)?;
            remove_consenter_storage(&node, &channel)
        })
        .await
        .map_err(|e| RegistrarError::Removal(e.to_string()))??;
        self.metrics.forget_channel(id);
        tracing::info!(channel = %id, "channel removed with its ledger");
        Ok(())
    }

    /// Creates a channel from its genesis block and starts it.
    pub fn create_channel(&self, genesis: &Block) -> Result<Arc<ChannelHandle>, RegistrarError> {
        let number = crate::fabric::blockutil::number(genesis);
        if number != 0 {
            return Err(RegistrarError::NotGenesis(number));
        }
        let config = ChannelConfig::from_config_block(genesis)?;
        validate_channel_id(&config.channel_id)?;
        if self.channel(&config.channel_id).is_some()
            || self.failed_channel(&config.channel_id).is_some()
        {
            return Err(RegistrarError::ChannelExists(config.channel_id));
        }
        // What a removal interrupted by a crash left of an earlier channel of
        // this name (its Raft WAL) must not be replayed into the new one.
        remove_consenter_storage(&self.node, &config.channel_id)?;
        let store = self.factory.create_store(&config.channel_id, genesis)?;
        tracing::info!(channel = %config.channel_id, consensus = %config.consensus_type, "channel created from genesis block");
        Ok(self.start_channel(store, config))
    }

    fn start_channel(
        &self,
        store: crate::runtime::ledger::BlockStore,
        config: ChannelConfig,
    ) -> Arc<ChannelHandle> {
        let id = config.channel_id.clone();
        let metrics = self.metrics.channel(&id);
        let (handle, publisher) = ChannelHandle::new(
            store,
            config,
            InflightRoom::new(self.max_inflight, self.max_inflight_bytes),
            self.filters.clone(),
            metrics,
        );
        let handle = Arc::new(handle);
        let index = self
            .next_arbiter
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            % self.arbiters.len();
        let supervisor = {
            let handle = handle.clone();
            let consenters = self.consenters.clone();
            let node = self.node.clone();
            ChannelSupervisor::start_in_arbiter(&self.arbiters[index], move |_| {
                ChannelSupervisor::new(handle, publisher, consenters, node)
            })
        };
        self.arbiters[index].spawn(follow_errored(
            handle.subscribe_state(),
            self.metrics.clone(),
            id.clone(),
        ));
        self.channels
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(
                id,
                ChannelEntry {
                    handle: handle.clone(),
                    supervisor,
                },
            );
        for observer in self.observers() {
            observer.channel_started(&handle);
        }
        handle
    }

    /// Adds an observer, told at once of every channel already started.
    pub fn observe(&self, observer: Arc<dyn ChannelObserver>) {
        // Held while replaying, so a channel started meanwhile is told after
        // (an observer may hear of a channel twice, never not at all).
        let mut observers = self
            .observers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        for channel in self.channels() {
            observer.channel_started(&channel);
        }
        observers.push(observer);
    }

    fn observers(&self) -> Vec<Arc<dyn ChannelObserver>> {
        self.observers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// The node's signing identity.
    pub fn signer(&self) -> &Arc<SigningIdentity> {
        &self.node.signer
    }

    /// Every channel, sorted by ID.
    pub fn channels(&self) -> Vec<Arc<ChannelHandle>> {
        let mut channels: Vec<Arc<ChannelHandle>> = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(|entry| entry.handle.clone())
            .collect();
        channels.sort_by(|a, b| a.id().cmp(b.id()));
        channels
    }

    pub fn channel(&self, id: &str) -> Option<Arc<ChannelHandle>> {
        self.channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .map(|entry| entry.handle.clone())
    }

    /// The channels on disk that could not start, sorted by ID.
    pub fn failed_channels(&self) -> Vec<FailedChannel> {
        self.failed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    pub fn failed_channel(&self, id: &str) -> Option<FailedChannel> {
        self.failed
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(id)
            .cloned()
    }

    /// `General.MaxSendMsgSize`: the largest block a follower can fetch,
    /// so the largest a join may bring.
    pub fn max_block_bytes(&self) -> usize {
        self.max_block_bytes
    }

    /// Channel IDs of the started channels, sorted (failed ones are in
    /// [`Registrar::failed_channels`]).
    pub fn channel_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .keys()
            .cloned()
            .collect();
        ids.sort();
        ids
    }

    /// Waits until no channel is still starting (each is active or errored), so
    /// that the first Broadcast after start-up finds its chain running.
    pub async fn wait_started(&self) {
        for handle in self.channels() {
            let mut state = handle.subscribe_state();
            let _ = state
                .wait_for(|s| *s != crate::runtime::channel::ChannelState::Starting)
                .await;
        }
    }

    /// Halts every channel (pending batches are written) and flushes the ledger.
    pub async fn shutdown(&self) {
        let supervisors: Vec<(String, Addr<ChannelSupervisor>)> = self
            .channels
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(id, entry)| (id.clone(), entry.supervisor.clone()))
            .collect();
        let halts = supervisors.into_iter().map(|(id, supervisor)| async move {
            if let Err(e) = supervisor.send(Shutdown).await {
                tracing::warn!(channel = %id, error = %e, "channel supervisor was already gone at shutdown");
            }
        });
        futures::future::join_all(halts).await;
        if let Err(e) = self.factory.flush() {
            tracing::error!(error = %e, "final ledger flush failed");
        }
    }
}

/// Keeps a channel's `ordo_channel_errored` gauge on its state: 1 once its
/// supervisor gave up on it (or it could not start), 0 while it runs. A
/// stopped channel keeps its last value: its series goes with its removal.
async fn follow_errored(
    mut state: tokio::sync::watch::Receiver<crate::runtime::channel::ChannelState>,
    metrics: Arc<Metrics>,
    channel: String,
) {
    use crate::runtime::channel::ChannelState;
    loop {
        let errored = match &*state.borrow_and_update() {
            ChannelState::Errored(_) => Some(true),
            ChannelState::Active => Some(false),
            _ => None,
        };
        if let Some(errored) = errored {
            metrics.set_channel_errored(&channel, errored);
        }
        if state.changed().await.is_err() {
            return;
        }
    }
}

/// Deletes a channel's consenter storage (its Raft WAL and snapshot
/// folders), after its ledger is gone or before a channel of the same name
/// is created: a WAL left behind would be replayed into the new channel.
fn remove_consenter_storage(node: &NodeResources, channel: &str) -> Result<(), RegistrarError> {
    for dir in [node.wal_dir.join(channel), node.snap_dir.join(channel)] {
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => {
                tracing::info!(%channel, dir = %dir.display(), "removed the channel's consenter storage");
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(RegistrarError::Removal(format!(
                    "cannot remove {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Ok(())
}
