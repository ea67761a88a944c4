//! Test helpers: a supervised channel on a fresh ledger.

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::{ChannelHandle, ChannelState, ChannelSupervisor};
use crate::channelconfig::genesis::GenesisProfile;
use crate::channelconfig::ChannelConfig;
use crate::consensus::Consenters;
use crate::ledger::LedgerFactory;

const PATIENCE: Duration = Duration::from_secs(10);

/// A channel "c1" of `profile`'s consensus type on a fresh ledger, supervised.
pub fn supervised(
    profile: GenesisProfile,
) -> (
    tempfile::TempDir,
    Arc<ChannelHandle>,
    Addr<ChannelSupervisor>,
) {
    let dir = tempfile::tempdir().expect("tempdir");
    let factory = LedgerFactory::open(dir.path()).expect("open");
    let genesis = profile.genesis_block();
    let store = factory.create_store("c1", &genesis).expect("create");
    let config = ChannelConfig::from_config_block(&genesis).expect("config");
    let handle = Arc::new(ChannelHandle::new(
        store,
        config,
        16,
        Arc::new(crate::msgprocessor::RuleSet::standard()),
        crate::metrics::ChannelMetrics::detached("c1"),
    ));
    let supervisor = ChannelSupervisor::new(handle.clone(), Consenters::standard()).start();
    (dir, handle, supervisor)
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
