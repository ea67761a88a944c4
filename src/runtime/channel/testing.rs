//! Test helpers: a supervised channel on a fresh ledger, on a manual clock.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{ChannelHandle, ChannelState, ChannelSupervisor};
use crate::fabric::channelconfig::genesis::GenesisProfile;
use crate::fabric::channelconfig::ChannelConfig;
use crate::runtime::clock::{Clock, ManualClock};
use crate::runtime::consensus::{Consenters, InflightRoom, NodeResources};
use crate::runtime::ledger::LedgerFactory;

const PATIENCE: Duration = Duration::from_secs(10);

/// A supervised channel and what a test needs to drive it.
pub struct Supervised {
    /// The ledger folder, removed with the value.
    pub _dir: tempfile::TempDir,
    pub handle: Arc<ChannelHandle>,
    pub supervisor: Addr<ChannelSupervisor>,
    /// The clock of batch timeouts and restart back-off.
    pub clock: ManualClock,
}

/// A channel `id` of `profile`'s consensus type on a fresh ledger, supervised.
pub fn supervised(profile: GenesisProfile) -> Supervised {
    supervised_with(
        profile,
        Consenters::standard(),
        InflightRoom::new(16, 1 << 20),
    )
}

pub fn supervised_with(
    profile: GenesisProfile,
    consenters: Consenters,
    room: InflightRoom,
) -> Supervised {
    let (clock, hand) = Clock::manual();
    supervised_on(&profile.genesis_block(), consenters, room, clock, |_| {}).with_clock(hand)
}

/// As [`supervised_with`] from `genesis`, on `clock`, with the node's
/// resources adjusted by `node` (an identity, a cluster): one node of a
/// test cluster.
pub fn supervised_on(
    genesis: &crate::fabric::protos::common::Block,
    consenters: Consenters,
    room: InflightRoom,
    clock: Clock,
    node: impl FnOnce(&mut NodeResources),
) -> SupervisedNode {
    let dir = tempfile::tempdir().expect("tempdir");
    let factory = LedgerFactory::open(dir.path()).expect("open");
    let config = ChannelConfig::from_config_block(genesis).expect("config");
    let id = config.channel_id.clone();
    let store = factory.create_store(&id, genesis).expect("create");
    let (handle, publisher) = ChannelHandle::new(
        store,
        config,
        room,
        Arc::new(crate::runtime::msgprocessor::RuleSet::standard()),
        crate::runtime::metrics::ChannelMetrics::detached(&id),
    );
    let handle = Arc::new(handle);
    let mut resources = NodeResources::for_dir(dir.path()).expect("node resources");
    resources.clock = clock;
    node(&mut resources);
    let supervisor =
        ChannelSupervisor::new(handle.clone(), publisher, consenters, Arc::new(resources)).start();
    SupervisedNode {
        _dir: dir,
        handle,
        supervisor,
    }
}

/// A supervised channel on a clock the caller holds.
pub struct SupervisedNode {
    /// The ledger (and Raft storage) folder, removed with the value.
    pub _dir: tempfile::TempDir,
    pub handle: Arc<ChannelHandle>,
    pub supervisor: Addr<ChannelSupervisor>,
}

impl SupervisedNode {
    fn with_clock(self, clock: ManualClock) -> Supervised {
        Supervised {
            _dir: self._dir,
            handle: self.handle,
            supervisor: self.supervisor,
            clock,
        }
    }
}

/// Waits (bounded) until the channel's state satisfies `predicate`.
pub async fn state_becomes(
    handle: &ChannelHandle,
    predicate: impl Fn(&ChannelState) -> bool,
) -> ChannelState {
    let mut states = handle.subscribe_state();
    let result = tokio::time::timeout(PATIENCE, states.wait_for(|s| predicate(s))).await;
    let state = handle.state();
    assert!(
        matches!(result, Ok(Ok(_))),
        "state did not change as expected; it is {state:?}"
    );
    state
}

/// Waits (bounded) until the channel's height reaches `height`.
pub async fn height_reaches(handle: &ChannelHandle, height: u64) {
    let mut heights = handle.store().subscribe();
    let result = tokio::time::timeout(PATIENCE, heights.wait_for(|h| *h >= height)).await;
    assert!(
        matches!(result, Ok(Ok(_))),
        "height is {}, expected {height}",
        handle.store().height()
    );
}

/// Waits (bounded) until `condition` holds, checking every millisecond: for
/// states that have no watch of their own.
pub async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !condition() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: not within {PATIENCE:?}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
