//! The etcdraft consenter: a channel's consenters replicate its blocks with
//! Raft (raft-rs), as Fabric's etcdraft does.
//!
//! The tree of an etcdraft channel (see `actors.md`):
//!
//! ```text
//! ChannelSupervisor
//! ├── LedgerActor          writes blocks, moves the config
//! └── ChainActor (RaftChain, chain.rs)   RawNode, Ready loop, roles, apply
//!     ├── Raft storage (storage/)        WAL + snapshot folder, fsync off the actor thread
//!     ├── RaftTransport (transport.rs)   the cluster service, or an in-memory network in tests
//!     └── ProposerActor (proposer.rs)    leader only
//!         └── CutterActor
//! ```
//!
//! Starting a chain reads the channel's consenters and options from its
//! config, the consenter ids and Raft index from the last block, finds this
//! node among the consenters by its TLS certificate (by host:port without
//! TLS), opens the channel's Raft storage and connects to the cluster.

mod chain;
mod logger;
pub mod membership;
pub mod options;
mod outsider;
mod proposer;
pub mod storage;
#[cfg(test)]
pub mod testing;
#[cfg(test)]
mod tests;
pub mod transport;

use std::sync::Arc;

use actix::prelude::*;

pub use chain::RaftChain;

use self::chain::RaftChainParts;
use self::membership::Membership;
use self::options::RaftOptions;
use self::storage::{RaftStorage, StorageOptions};
use self::transport::ChainInbox;
use super::{ChainHandle, ChainSupport, ConsensusError, Consenter, NodeResources, StartChain};
use crate::fabric::channelconfig::ETCDRAFT;

/// The etcdraft consenter.
pub struct EtcdRaftConsenter;

impl Consenter for EtcdRaftConsenter {
    fn consensus_type(&self) -> &'static str {
        ETCDRAFT
    }

    fn start_chain(&self, support: ChainSupport, node: Arc<NodeResources>) -> StartChain {
        Box::pin(start(support, node))
    }
}

fn start_error(reason: impl std::fmt::Display) -> ConsensusError {
    ConsensusError::Start {
        consensus_type: ETCDRAFT.into(),
        reason: reason.to_string(),
    }
}

async fn start(
    support: ChainSupport,
    node: Arc<NodeResources>,
) -> Result<ChainHandle, ConsensusError> {
    let channel = support.channel_id.clone();
    let config = support.config.borrow().clone();
    let raft_config = config
        .orderer
        .etcdraft
        .clone()
        .ok_or_else(|| start_error("the channel config has no etcdraft metadata"))?;
    let options = RaftOptions::from_config(raft_config.options.as_ref(), node.raft_tick_override)
        .map_err(start_error)?;
    let store = support.store.clone();
    let last = store.height().saturating_sub(1);
    let last_block = tokio::task::spawn_blocking(move || store.block(last))
        .await
        .map_err(start_error)?
        .map_err(start_error)?
        .ok_or_else(|| start_error(format!("block {last} is missing from the ledger")))?;
    let membership = Membership::read(&raft_config, &last_block).map_err(start_error)?;
    let own_certificate = node.identity.tls_certificate.as_deref();
    let Some(id) = membership.find_self(own_certificate, &node.identity.endpoint) else {
        tracing::warn!(%channel, "this node is not one of the channel's consenters: it does not order the channel");
        return Ok(outsider::start(support));
    };

    let wal_dir = node.wal_dir.join(&channel);
    let snap_dir = node.snap_dir.join(&channel);
    let voters = membership.ids();
    let token = support.tree.token();
    let faults = support.faults.clone();
    let opened_dir = wal_dir.clone();
    let storage = tokio::task::spawn_blocking(move || {
        let _token = token;
        let opened = RaftStorage::open(&opened_dir, &snap_dir, &voters, StorageOptions::default());
        if let Err(e) = &opened {
            if chain::is_write_fault(e) {
                faults.raise(format!("Raft WAL: {e}"), &opened_dir, chain::WAL_PROBE);
            }
        }
        opened
    })
    .await
    .map_err(start_error)?
    .map_err(start_error)?;

    let hard_state = storage.hard_state();
    let raft_config = raft::Config {
        id,
        election_tick: options.election_tick,
        heartbeat_tick: options.heartbeat_tick,
        // Raft replays committed entries above this; blocks already in the
        // ledger are skipped by index.
        applied: membership.applied_index.min(hard_state.commit),
        max_size_per_msg: options.max_size_per_msg,
        max_inflight_msgs: options.max_inflight_blocks.max(1),
        check_quorum: true,
        pre_vote: true,
        ..Default::default()
    };
    let logger = logger::raft_logger(&channel);
    let raw = raft::RawNode::new(&raft_config, storage.clone(), &logger).map_err(start_error)?;

    let context = Context::<RaftChain>::new();
    let addr = context.address();
    let inbox = ChainInbox {
        step: addr.clone().recipient(),
        submit: addr.clone().recipient(),
        events: addr.clone().recipient(),
    };
    let transport = node
        .cluster
        .connect(&channel, id, &membership.peers, inbox)
        .map_err(start_error)?;
    tracing::info!(%channel, id, consenters = ?membership.ids(), "starting etcdraft chain");
    let parts = RaftChainParts {
        channel_id: channel,
        id,
        node: raw,
        storage,
        options,
        membership,
        config: support.config,
        store: support.store,
        ledger: support.ledger,
        filters: support.filters,
        policies: support.policies,
        metrics: support.metrics,
        status: support.status,
        room: support.room,
        signer: node.signer.clone(),
        clock: node.clock.clone(),
        tree: support.tree,
        faults: support.faults,
        wal_dir,
    };
    let mut context = context;
    let chain = RaftChain::new(parts, transport, &mut context);
    let addr = context.run(chain);
    Ok(ChainHandle::of(&addr))
}
