//! Node-wide resources a consenter may need to start a chain. Every
//! consenter signs the blocks it makes with the node's signer; etcdraft also
//! needs the node's identity (to find itself among a
//! channel's consenters), the cluster service, its WAL and snapshot folders,
//! a way to pull blocks from other orderers, and the clock that drives its
//! ticks.

use std::path::PathBuf;
use std::sync::Arc;

use super::etcdraft::transport::{NoCluster, SharedTransportFactory};
use crate::runtime::clock::Clock;
use crate::security::signer::{CertificateAuthority, SignerError, SigningIdentity};

/// Who this node is to other orderers.
#[derive(Debug, Clone, Default)]
pub struct NodeIdentity {
    /// The PEM certificate of the node's TLS listener, when TLS is on: Raft
    /// consenters are named by it in a channel's config.
    pub tls_certificate: Option<Vec<u8>>,
    /// The address clients and other orderers reach this node at.
    pub endpoint: String,
}

/// Makes block pullers (Deliver clients of other orderers, used to catch up
/// and to onboard). Empty until a replicated consenter needs it.
#[derive(Debug, Clone, Default)]
pub struct BlockPullerFactory {}

/// Everything node-wide a consenter's `start_chain` receives.
#[derive(Clone)]
pub struct NodeResources {
    pub identity: NodeIdentity,
    /// The node's signing identity (`General.LocalMSPDir`): signs every block
    /// the node writes and every CONFIG envelope it makes.
    pub signer: Arc<SigningIdentity>,
    /// Connects etcdraft chains to the other consenters of their channel
    /// (the node's `orderer.Cluster` service, shared by every channel).
    pub cluster: SharedTransportFactory,
    /// `Consensus.WALDir`: one folder per channel below it.
    pub wal_dir: PathBuf,
    /// `Consensus.SnapDir`: one folder per channel below it.
    pub snap_dir: PathBuf,
    pub block_puller: BlockPullerFactory,
    pub clock: Clock,
    /// `Consensus.TickIntervalOverride`: replaces every etcdraft channel's
    /// TickInterval.
    pub raft_tick_override: Option<std::time::Duration>,
    /// The node's `Kafka` section, for the Kafka consenter's clients.
    pub kafka: Arc<crate::fabric::localconfig::kafka::KafkaSettings>,
}

impl NodeResources {
    /// Resources for tests and tools: real clock, folders under `dir`, and
    /// a signer of a CA made for it (MSP ID `SampleOrg`).
    pub fn for_dir(dir: &std::path::Path) -> Result<NodeResources, SignerError> {
        let signer = CertificateAuthority::generate("SampleOrg")?.issue("orderer", "orderer")?;
        Ok(NodeResources {
            identity: NodeIdentity::default(),
            signer: Arc::new(signer),
            cluster: Arc::new(NoCluster),
            wal_dir: dir.join("wal"),
            snap_dir: dir.join("snapshot"),
            block_puller: BlockPullerFactory::default(),
            clock: Clock::system(),
            raft_tick_override: None,
            kafka: Arc::default(),
        })
    }
}
