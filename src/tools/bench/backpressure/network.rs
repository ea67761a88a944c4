//! The nodes of one setting of the sweep, each an `ordo start` process of
//! this same binary on a scratch folder, and where the load goes.
//!
//! Solo: one node on the embedded channel, plaintext, unsigned load.
//!
//! etcdraft: N nodes with TLS on 127.0.0.1. The keys and certificates come
//! from the code path of `ordo crypto generate` (an orderer organization with
//! N orderers, an application organization with one user); the genesis block
//! names the N orderers as consenters (their TLS certificate as client and
//! server certificate) with the setting's MaxInflightBlocks, and every node
//! boots the channel from it (`General.BootstrapMethod: file`). The cluster
//! service runs on each node's main listener. The load goes to the Raft
//! leader over TLS, signed by the application organization's user, whom the
//! channel's Writers and Readers accept.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prost::Message;

use super::BackpressureError;
use crate::fabric::channelconfig::genesis::{GenesisProfile, OrganizationProfile};
use crate::fabric::channelconfig::{ChannelConfig, ETCDRAFT};
use crate::fabric::configtxgen::msp;
use crate::fabric::protos::common::Block;
use crate::fabric::protos::etcdraft;
use crate::runtime::registrar::EMBEDDED_CHANNEL;
use crate::tools::client::identity::SigningIdentity;
use crate::tools::client::TlsOptions;
use crate::tools::crypto::{self, ca::Validity, spec};

/// How long a node may take to answer on its operations listener.
const START_PATIENCE: Duration = Duration::from_secs(30);
/// How long an etcdraft channel may take to elect its first leader.
const LEADER_PATIENCE: Duration = Duration::from_secs(60);
/// How often a starting node is asked whether it is ready.
const POLL: Duration = Duration::from_millis(50);
/// Lines of a node's log quoted when it fails to start.
const LOG_TAIL_LINES: usize = 20;

/// The channel every setting orders on.
pub const CHANNEL: &str = EMBEDDED_CHANNEL;

const ORDERER_ORG: &str = "OrdererOrg";
const ORDERER_MSP_ID: &str = "OrdererMSP";
const ORDERER_DOMAIN: &str = "example.com";
const CLIENT_ORG: &str = "Org1";
const CLIENT_MSP_ID: &str = "Org1MSP";
const CLIENT_DOMAIN: &str = "org1.example.com";
const CLIENT_USER: &str = "User1@org1.example.com";

/// The Raft tick of the bench's channels. Fabric's 500 ms would make the
/// first election take 5-10 s per setting; the steady state under load does
/// not depend on it.
const TICK_INTERVAL: &str = "100ms";
const ELECTION_TICK: u32 = 10;
const HEARTBEAT_TICK: u32 = 1;
const SNAPSHOT_INTERVAL_BYTES: u32 = 16 * 1024 * 1024;

/// The consenter of the channel under load.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepConsenter {
    /// One node, the embedded solo channel.
    Solo,
    /// `nodes` orderers, each a consenter of one etcdraft channel.
    EtcdRaft { nodes: usize },
}

impl SweepConsenter {
    pub fn nodes(self) -> usize {
        match self {
            SweepConsenter::Solo => 1,
            SweepConsenter::EtcdRaft { nodes } => nodes,
        }
    }
}

/// What a setting's nodes are started with.
#[derive(Debug, Clone, Copy)]
pub struct NetworkSetting {
    pub consenter: SweepConsenter,
    /// General.Backpressure.MaxInflightEnvelopes of every node.
    pub max_inflight_envelopes: u32,
    /// Options.MaxInflightBlocks of the etcdraft channel.
    pub max_inflight_blocks: Option<u32>,
}

/// A node of a setting; killed when dropped.
pub struct NodeProcess {
    pub child: Child,
    pub grpc: String,
    /// `http://host:port` of its operations listener.
    pub operations: String,
    log: PathBuf,
}

impl NodeProcess {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.operations)
    }

    /// Its exit status, if it is no longer running.
    pub fn exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("cannot tell: {e}")),
        }
    }

    /// The last lines the node logged (empty when it logged nothing).
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The running nodes of a setting, and how to reach the one under load.
pub struct Network {
    pub nodes: Vec<NodeProcess>,
    /// Index in `nodes` of the node the load goes to (the Raft leader).
    pub leader: usize,
    pub tls: Option<TlsOptions>,
    pub identity: Option<Arc<SigningIdentity>>,
    /// Holds the nodes' folders; removed after the nodes stop (`nodes` drops
    /// first: fields drop in order).
    _dir: tempfile::TempDir,
}

impl Network {
    pub fn leader(&self) -> &NodeProcess {
        &self.nodes[self.leader]
    }

    /// Process ids of the nodes other than the leader.
    pub fn follower_pids(&self) -> Vec<u32> {
        self.nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != self.leader)
            .map(|(_, n)| n.pid())
            .collect()
    }

    /// Nodes that are no longer running, with how they ended.
    pub fn exited(&mut self) -> Vec<(usize, String)> {
        self.nodes
            .iter_mut()
            .enumerate()
            .filter_map(|(i, n)| n.exited().map(|status| (i, status)))
            .collect()
    }
}

fn start_error(e: impl std::fmt::Display) -> BackpressureError {
    BackpressureError::Start(e.to_string())
}

/// `count` ports nothing listens on right now, all different: each is held
/// until all are chosen.
fn free_ports(count: usize) -> Result<Vec<u16>, BackpressureError> {
    let listeners = (0..count)
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(start_error)?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<Vec<_>, _>>()
        .map_err(start_error)
}

/// Starts the setting's nodes and waits until the load can go: the node is
/// healthy (solo) or the channel has a Raft leader (etcdraft).
pub async fn start(binary: &Path, setting: NetworkSetting) -> Result<Network, BackpressureError> {
    match setting.consenter {
        SweepConsenter::Solo => start_solo(binary, setting).await,
        SweepConsenter::EtcdRaft { nodes } => start_etcdraft(binary, setting, nodes).await,
    }
}

/// `ordo start` with the environment common to both consenters.
fn node_command(
    binary: &Path,
    folder: &Path,
    grpc: u16,
    operations: u16,
    max_inflight_envelopes: u32,
) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("start")
        .env("ORDERER_GENERAL_LISTENADDRESS", "127.0.0.1")
        .env("ORDERER_GENERAL_LISTENPORT", grpc.to_string())
        .env(
            "ORDERER_GENERAL_BACKPRESSURE_MAXINFLIGHTENVELOPES",
            max_inflight_envelopes.to_string(),
        )
        .env("ORDERER_ADMIN_LISTENADDRESS", "")
        .env(
            "ORDERER_OPERATIONS_LISTENADDRESS",
            format!("127.0.0.1:{operations}"),
        )
        .env("ORDERER_FILELEDGER_LOCATION", folder.join("ledger"))
        .env("FABRIC_LOGGING_SPEC", "warn")
        .stdout(Stdio::null());
    command
}

fn spawn(
    mut command: Command,
    folder: &Path,
    grpc: u16,
    operations: u16,
) -> Result<NodeProcess, BackpressureError> {
    std::fs::create_dir_all(folder).map_err(start_error)?;
    let log = folder.join("node.log");
    let log_file = std::fs::File::create(&log).map_err(start_error)?;
    let child = command
        .stderr(Stdio::from(log_file))
        .spawn()
        .map_err(|e| start_error(format!("{}: {e}", command.get_program().to_string_lossy())))?;
    Ok(NodeProcess {
        child,
        grpc: format!("127.0.0.1:{grpc}"),
        operations: format!("http://127.0.0.1:{operations}"),
        log,
    })
}

async fn start_solo(binary: &Path, setting: NetworkSetting) -> Result<Network, BackpressureError> {
    let dir = tempfile::tempdir().map_err(start_error)?;
    let ports = free_ports(2)?;
    let (grpc, operations) = (ports[0], ports[1]);
    let folder = dir.path().join("node");
    let mut command = node_command(
        binary,
        &folder,
        grpc,
        operations,
        setting.max_inflight_envelopes,
    );
    command.env("ORDERER_GENERAL_BOOTSTRAPMETHOD", "embedded");
    let mut node = spawn(command, &folder, grpc, operations)?;
    let deadline = Instant::now() + START_PATIENCE;
    let health = format!("{}/healthz", node.operations);
    loop {
        if let Ok(response) = reqwest::get(&health).await {
            if response.status().is_success() {
                break;
            }
        }
        if let Some(status) = node.exited() {
            return Err(exited(0, &status, &node));
        }
        if Instant::now() > deadline {
            return Err(BackpressureError::NotReady(START_PATIENCE));
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(Network {
        nodes: vec![node],
        leader: 0,
        tls: None,
        identity: None,
        _dir: dir,
    })
}

fn exited(index: usize, status: &str, node: &NodeProcess) -> BackpressureError {
    BackpressureError::NodeExited {
        node: index,
        status: status.to_string(),
        log: node.log_tail(),
    }
}

/// Where the crypto material of an etcdraft setting is.
struct Crypto {
    orderer_org: PathBuf,
    client_org: PathBuf,
}

impl Crypto {
    fn orderer_host(index: usize) -> String {
        format!("orderer{index}")
    }

    fn orderer(&self, index: usize) -> PathBuf {
        self.orderer_org
            .join("orderers")
            .join(format!("{}.{ORDERER_DOMAIN}", Self::orderer_host(index)))
    }

    fn tls_ca(&self) -> PathBuf {
        self.orderer_org
            .join("tlsca")
            .join(format!("tlsca.{ORDERER_DOMAIN}-cert.pem"))
    }

    fn client_msp(&self) -> PathBuf {
        self.client_org.join("users").join(CLIENT_USER).join("msp")
    }
}

/// The crypto-config YAML `ordo crypto generate` would be given: N orderers
/// whose TLS certificates name 127.0.0.1, and one user of a client
/// organization.
fn crypto_config(nodes: usize) -> String {
    let mut text = format!(
        "OrdererOrgs:\n  - Name: {ORDERER_ORG}\n    Domain: {ORDERER_DOMAIN}\n    EnableNodeOUs: true\n    Specs:\n"
    );
    for index in 0..nodes {
        text.push_str(&format!(
            "      - Hostname: {}\n        SANS: [127.0.0.1, localhost]\n",
            Crypto::orderer_host(index)
        ));
    }
    text.push_str(&format!(
        "PeerOrgs:\n  - Name: {CLIENT_ORG}\n    Domain: {CLIENT_DOMAIN}\n    EnableNodeOUs: true\n    Users:\n      Count: 1\n"
    ));
    text
}

fn generate_crypto(dir: &Path, nodes: usize) -> Result<Crypto, BackpressureError> {
    let orgs = spec::parse(&crypto_config(nodes)).map_err(crypto::CryptoError::from)?;
    let written = crypto::write_all(&orgs, dir, false, Validity::now())?;
    let folder = |kind: spec::OrgKind| {
        written
            .iter()
            .find(|w| w.kind == kind)
            .map(|w| w.path.clone())
            .ok_or_else(|| start_error("crypto generation wrote no organization of a kind"))
    };
    Ok(Crypto {
        orderer_org: folder(spec::OrgKind::Orderer)?,
        client_org: folder(spec::OrgKind::Peer)?,
    })
}

/// The ports of one etcdraft node.
#[derive(Debug, Clone, Copy)]
struct Ports {
    grpc: u16,
    operations: u16,
}

fn genesis_error(e: impl std::fmt::Display) -> BackpressureError {
    BackpressureError::Genesis(e.to_string())
}

/// Block 0 of the channel: the orderers as consenters, MaxInflightBlocks,
/// the orderer organization and the client organization.
fn etcdraft_genesis(
    crypto: &Crypto,
    ports: &[Ports],
    max_inflight_blocks: u32,
) -> Result<Block, BackpressureError> {
    let consenters = ports
        .iter()
        .enumerate()
        .map(|(index, p)| {
            let certificate = msp::read_cert(&crypto.orderer(index).join("tls/server.crt"))
                .map_err(genesis_error)?;
            Ok(etcdraft::Consenter {
                host: "127.0.0.1".into(),
                port: u32::from(p.grpc),
                client_tls_cert: certificate.clone(),
                server_tls_cert: certificate,
            })
        })
        .collect::<Result<Vec<_>, BackpressureError>>()?;
    let metadata = etcdraft::ConfigMetadata {
        consenters,
        options: Some(etcdraft::Options {
            tick_interval: TICK_INTERVAL.into(),
            election_tick: ELECTION_TICK,
            heartbeat_tick: HEARTBEAT_TICK,
            max_inflight_blocks,
            snapshot_interval_size: SNAPSHOT_INTERVAL_BYTES,
        }),
    };
    let addresses: Vec<String> = ports
        .iter()
        .map(|p| format!("127.0.0.1:{}", p.grpc))
        .collect();
    let organization = |name: &str, msp_id: &str, dir: &Path, endpoints: Vec<String>| {
        Ok::<_, BackpressureError>(OrganizationProfile {
            name: name.into(),
            msp_id: msp_id.into(),
            msp: msp::read_msp(dir, msp_id).map_err(genesis_error)?,
            orderer_endpoints: endpoints,
        })
    };
    // Batch size and timeout as the solo sweep's embedded channel has them.
    let mut profile = GenesisProfile::embedded(CHANNEL, addresses.clone());
    profile.consensus_type = ETCDRAFT.into();
    profile.consensus_metadata = metadata.encode_to_vec().into();
    profile.orderer_organizations = vec![organization(
        ORDERER_ORG,
        ORDERER_MSP_ID,
        &crypto.orderer_org.join("msp"),
        addresses,
    )?];
    profile.application_organizations = Some(vec![organization(
        CLIENT_ORG,
        CLIENT_MSP_ID,
        &crypto.client_org.join("msp"),
        Vec::new(),
    )?]);
    let block = profile.genesis_block();
    // Refuse here, not in N node logs, a block the nodes would refuse.
    ChannelConfig::from_config_block(&block).map_err(genesis_error)?;
    Ok(block)
}

async fn start_etcdraft(
    binary: &Path,
    setting: NetworkSetting,
    count: usize,
) -> Result<Network, BackpressureError> {
    let max_inflight_blocks = setting
        .max_inflight_blocks
        .ok_or_else(|| start_error("an etcdraft setting needs MaxInflightBlocks"))?;
    let dir = tempfile::tempdir().map_err(start_error)?;
    let crypto = generate_crypto(&dir.path().join("crypto"), count)?;
    let ports: Vec<Ports> = free_ports(2 * count)?
        .chunks_exact(2)
        .map(|pair| Ports {
            grpc: pair[0],
            operations: pair[1],
        })
        .collect();
    let genesis = dir.path().join("genesis.block");
    std::fs::write(
        &genesis,
        etcdraft_genesis(&crypto, &ports, max_inflight_blocks)?.encode_to_vec(),
    )
    .map_err(|source| BackpressureError::Write {
        path: genesis.clone(),
        source,
    })?;
    let tls_ca = crypto.tls_ca();
    let mut nodes = Vec::with_capacity(count);
    for (index, p) in ports.iter().enumerate() {
        let folder = dir.path().join(format!("node{index}"));
        let own = crypto.orderer(index);
        let mut command = node_command(
            binary,
            &folder,
            p.grpc,
            p.operations,
            setting.max_inflight_envelopes,
        );
        let tls = own.join("tls");
        let roots = format!("[{}]", tls_ca.display());
        command
            .env("ORDERER_GENERAL_TLS_ENABLED", "true")
            .env("ORDERER_GENERAL_TLS_CERTIFICATE", tls.join("server.crt"))
            .env("ORDERER_GENERAL_TLS_PRIVATEKEY", tls.join("server.key"))
            .env("ORDERER_GENERAL_TLS_ROOTCAS", &roots)
            .env(
                "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE",
                tls.join("server.crt"),
            )
            .env(
                "ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY",
                tls.join("server.key"),
            )
            .env("ORDERER_GENERAL_CLUSTER_ROOTCAS", &roots)
            .env("ORDERER_GENERAL_LOCALMSPDIR", own.join("msp"))
            .env("ORDERER_GENERAL_LOCALMSPID", ORDERER_MSP_ID)
            .env("ORDERER_GENERAL_BOOTSTRAPMETHOD", "file")
            .env("ORDERER_GENERAL_BOOTSTRAPFILE", &genesis)
            .env("ORDERER_CONSENSUS_WALDIR", folder.join("etcdraft/wal"))
            .env(
                "ORDERER_CONSENSUS_SNAPDIR",
                folder.join("etcdraft/snapshot"),
            );
        nodes.push(spawn(command, &folder, p.grpc, p.operations)?);
    }
    let mut network = Network {
        nodes,
        leader: 0,
        tls: Some(TlsOptions {
            ca_pem: std::fs::read(&tls_ca).map_err(start_error)?,
            domain: None,
            client_identity: None,
        }),
        identity: Some(Arc::new(
            SigningIdentity::from_msp_dir(&crypto.client_msp(), CLIENT_MSP_ID)
                .map_err(start_error)?,
        )),
        _dir: dir,
    };
    network.leader = wait_for_leader(&mut network).await?;
    Ok(network)
}

/// Polls every node's metrics until one says it leads the channel; fails if
/// a node exits or no leader comes within [`LEADER_PATIENCE`].
async fn wait_for_leader(network: &mut Network) -> Result<usize, BackpressureError> {
    let deadline = Instant::now() + LEADER_PATIENCE;
    loop {
        for (index, node) in network.nodes.iter().enumerate() {
            if let Some(text) = metrics_text(&node.metrics_url()).await {
                if leads(&text, CHANNEL) {
                    tracing::info!(node = index, address = %node.grpc, "the channel has a Raft leader");
                    return Ok(index);
                }
            }
        }
        if let Some((index, status)) = network.exited().into_iter().next() {
            return Err(exited(index, &status, &network.nodes[index]));
        }
        if Instant::now() > deadline {
            let logs = network
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| format!("node {i} ({}):\n{}", n.grpc, n.log_tail()))
                .collect::<Vec<_>>()
                .join("\n");
            return Err(BackpressureError::NoLeader {
                patience: LEADER_PATIENCE,
                logs,
            });
        }
        tokio::time::sleep(POLL).await;
    }
}

pub async fn metrics_text(url: &str) -> Option<String> {
    reqwest::get(url).await.ok()?.text().await.ok()
}

/// Whether a node's metrics say it is the Raft leader of `channel`.
pub fn leads(metrics: &str, channel: &str) -> bool {
    let label = format!("channel=\"{channel}\"");
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .any(|(series, value)| {
            series.split('{').next() == Some("consensus_etcdraft_is_leader")
                && series.contains(&label)
                && value.parse::<f64>().is_ok_and(|v| v == 1.0)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_leader_is_read_from_its_channel_series() {
        let text = "# HELP consensus_etcdraft_is_leader The leadership status.\n\
            consensus_etcdraft_is_leader{channel=\"other\"} 1\n\
            consensus_etcdraft_is_leader{channel=\"mychannel\"} 0\n";
        assert!(!leads(text, "mychannel"));
        assert!(leads(text, "other"));
        assert!(leads(
            "consensus_etcdraft_is_leader{channel=\"mychannel\"} 1\n",
            "mychannel"
        ));
        // Fabric's family of another name is not the leader gauge.
        assert!(!leads(
            "consensus_etcdraft_is_leader_total{channel=\"mychannel\"} 1\n",
            "mychannel"
        ));
    }

    #[test]
    fn the_crypto_config_names_every_orderer_and_one_user() {
        let orgs = spec::parse(&crypto_config(3)).expect("a valid crypto-config");
        let orderers = &orgs[0];
        assert_eq!(orderers.nodes.len(), 3);
        assert!(orderers.nodes[2].sans.contains(&"127.0.0.1".to_string()));
        let users: Vec<_> = orgs[1].users.iter().map(|u| &u.common_name).collect();
        assert!(users.contains(&&CLIENT_USER.to_string()));
    }

    #[tokio::test]
    async fn a_node_that_exits_at_start_is_reported_with_its_log() {
        let setting = NetworkSetting {
            consenter: SweepConsenter::EtcdRaft { nodes: 2 },
            max_inflight_envelopes: 2048,
            max_inflight_blocks: Some(5),
        };
        // A "binary" that ends at once, as a node refusing its config would.
        let err = start(Path::new("false"), setting)
            .await
            .err()
            .expect("refused");
        assert!(matches!(err, BackpressureError::NodeExited { .. }), "{err}");
    }

    #[test]
    fn the_genesis_block_names_each_orderer_as_a_consenter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let crypto = generate_crypto(dir.path(), 3).expect("crypto");
        let ports: Vec<Ports> = (0..3)
            .map(|i| Ports {
                grpc: 7050 + i,
                operations: 9443 + i,
            })
            .collect();
        let block = etcdraft_genesis(&crypto, &ports, 7).expect("genesis");
        let config = ChannelConfig::from_config_block(&block).expect("config");
        assert_eq!(config.consensus_type, ETCDRAFT);
        let raft = config.orderer.etcdraft.expect("etcdraft metadata");
        assert_eq!(raft.consenters.len(), 3);
        assert_eq!(raft.consenters[1].port, 7051);
        let options = raft.options.expect("options");
        assert_eq!(options.max_inflight_blocks, 7);
        let own = std::fs::read(crypto.orderer(2).join("tls/server.crt")).expect("cert");
        assert_eq!(raft.consenters[2].server_tls_cert.as_ref(), own.as_slice());
        // The load's identity is one the channel knows.
        SigningIdentity::from_msp_dir(&crypto.client_msp(), CLIENT_MSP_ID).expect("identity");
    }
}
