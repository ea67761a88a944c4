//! Starting nodes on temporary ledgers and port 0, and talking to them.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tempfile::TempDir;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::localconfig::NodeConfig;
use ordo::fabric::protos::common::{Block, ChannelHeader, Envelope, Payload, Status};
use ordo::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::fabric::protos::orderer::BroadcastResponse;
use ordo::runtime::consensus::Consenters;
use ordo::runtime::node::{Node, NodeOptions};
use ordo::security::signer::{CertificateAuthority, SigningIdentity};
use ordo::tools::client::connect;
use ordo::tools::client::envelope::{seek, signed_seek, transaction, BlockPosition, Requester};
use ordo::tools::client::participation::AdminClient;

pub const CHANNEL: &str = "mychannel";
/// Generous bound for anything that should happen promptly.
pub const PATIENCE: Duration = Duration::from_secs(30);

/// A node on its own ledger folder; the folder outlives restarts.
pub struct TestNode {
    pub node: Option<Node>,
    pub dir: TempDir,
    pub extra_env: Vec<(String, String)>,
    /// The consenters the node serves (Ordo's own unless a test adds one).
    pub consenters: Consenters,
    /// Who [`all_blocks`] reads as: needed on channels whose Readers are
    /// organizations (unsigned requests read channels without any).
    pub reader: Option<std::sync::Arc<SigningIdentity>>,
}

impl TestNode {
    /// The embedded default (solo `mychannel`), on port 0.
    pub async fn embedded() -> TestNode {
        Self::with_env(Vec::new()).await
    }

    pub async fn with_env(extra_env: Vec<(String, String)>) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut node = TestNode {
            node: None,
            dir,
            extra_env,
            consenters: Consenters::standard(),
            reader: None,
        };
        node.start().await;
        node
    }

    /// The embedded default, serving `consenters`.
    pub async fn with_consenters(consenters: Consenters) -> TestNode {
        let mut node = TestNode {
            node: None,
            dir: tempfile::tempdir().expect("tempdir"),
            extra_env: Vec::new(),
            consenters,
            reader: None,
        };
        node.start().await;
        node
    }

    /// Boots from a genesis block written from `profile`.
    pub async fn from_profile(
        profile: &GenesisProfile,
        extra_env: Vec<(String, String)>,
    ) -> TestNode {
        let dir = tempfile::tempdir().expect("tempdir");
        let genesis = dir.path().join("genesis.block");
        std::fs::write(&genesis, profile.genesis_block().encode_to_vec()).expect("write genesis");
        let mut env = vec![
            (
                "ORDERER_GENERAL_BOOTSTRAPMETHOD".to_string(),
                "file".to_string(),
            ),
            (
                "ORDERER_GENERAL_BOOTSTRAPFILE".to_string(),
                genesis.display().to_string(),
            ),
        ];
        env.extend(extra_env);
        let mut node = TestNode {
            node: None,
            dir,
            extra_env: env,
            consenters: Consenters::standard(),
            reader: None,
        };
        node.start().await;
        node
    }

    pub fn config(&self) -> NodeConfig {
        config_for(self.dir.path(), &self.extra_env)
    }

    pub async fn start(&mut self) {
        let options = NodeOptions {
            consenters: self.consenters.clone(),
            ..NodeOptions::default()
        };
        let node = Node::start_with(self.config(), options)
            .await
            .expect("node starts");
        self.node = Some(node);
    }

    pub async fn stop(&mut self) {
        if let Some(node) = self.node.take() {
            node.shutdown().await;
        }
    }

    pub async fn restart(&mut self) {
        self.stop().await;
        self.start().await;
    }

    pub fn address(&self) -> String {
        self.node
            .as_ref()
            .expect("running")
            .local_addr()
            .to_string()
    }

    pub fn height(&self, channel: &str) -> u64 {
        self.node
            .as_ref()
            .expect("running")
            .registrar()
            .channel(channel)
            .expect("channel")
            .store()
            .height()
    }

    /// A client of the node's admin listener (channel participation API).
    pub fn admin(&self) -> AdminClient {
        let address = self
            .node
            .as_ref()
            .expect("running")
            .admin_addr()
            .expect("admin listener");
        AdminClient::new(&address.to_string())
    }

    pub async fn client(&self) -> AtomicBroadcastClient<Channel> {
        connect(&self.address()).await.expect("connect")
    }
}

pub fn config_for(dir: &Path, extra_env: &[(String, String)]) -> NodeConfig {
    let mut env = identity_env(dir);
    env.extend([
        ("ORDERER_GENERAL_LISTENPORT".to_string(), "0".to_string()),
        (
            "ORDERER_ADMIN_LISTENADDRESS".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "ORDERER_OPERATIONS_LISTENADDRESS".to_string(),
            "127.0.0.1:0".to_string(),
        ),
        (
            "ORDERER_FILELEDGER_LOCATION".to_string(),
            ledger_dir(dir).display().to_string(),
        ),
    ]);
    env.extend(extra_env.iter().cloned());
    NodeConfig::load_with_env(None, env).expect("config")
}

pub fn ledger_dir(dir: &Path) -> PathBuf {
    dir.join("ledger")
}

/// MSP ID of the identity test nodes sign with.
pub const NODE_MSP_ID: &str = "SampleOrg";

/// The MSP folder of a test node's signing identity, `dir/msp`: a CA of
/// [`NODE_MSP_ID`] and an orderer certificate it issued, made on first use
/// and kept, so a restarted node signs as before.
pub fn node_msp(dir: &Path) -> PathBuf {
    let msp = dir.join("msp");
    if !msp.exists() {
        CertificateAuthority::generate(NODE_MSP_ID)
            .expect("CA")
            .issue("orderer.test", "orderer")
            .expect("node identity")
            .write_msp(&msp)
            .expect("write the node's MSP folder");
    }
    msp
}

/// The variables that give a node in `dir` the identity of [`node_msp`].
pub fn identity_env(dir: &Path) -> Vec<(String, String)> {
    vec![
        (
            "ORDERER_GENERAL_LOCALMSPDIR".to_string(),
            node_msp(dir).display().to_string(),
        ),
        (
            "ORDERER_GENERAL_LOCALMSPID".to_string(),
            NODE_MSP_ID.to_string(),
        ),
    ]
}

/// A profile like the embedded one, with a short batch timeout.
pub fn profile(channel: &str) -> GenesisProfile {
    let mut p = GenesisProfile::embedded(channel, vec![]);
    p.batch_timeout = "200ms".into();
    p
}

pub fn tx(data: &[u8]) -> Envelope {
    transaction(CHANNEL, Bytes::copy_from_slice(data))
}

/// A Broadcast stream: send envelopes, read answers.
pub struct BroadcastStream {
    pub tx: mpsc::Sender<Envelope>,
    pub responses: tonic::Streaming<BroadcastResponse>,
}

impl BroadcastStream {
    pub async fn open(client: &mut AtomicBroadcastClient<Channel>) -> BroadcastStream {
        let (tx, rx) = mpsc::channel(4096);
        let responses = client
            .broadcast(ReceiverStream::new(rx))
            .await
            .expect("broadcast")
            .into_inner();
        BroadcastStream { tx, responses }
    }

    pub async fn send(&self, envelope: Envelope) {
        self.tx.send(envelope).await.expect("send");
    }

    /// Sends an envelope that the server may never read: after a refusal it
    /// ends the stream, and the send can race that end.
    pub async fn offer(&self, envelope: Envelope) {
        let _ = self.tx.send(envelope).await;
    }

    /// The next answer, or `None` once the stream has ended.
    pub async fn next(&mut self) -> Option<BroadcastResponse> {
        tokio::time::timeout(PATIENCE, self.responses.next())
            .await
            .expect("an answer in time")
            .map(|r| r.expect("no gRPC error"))
    }
}

/// What one Deliver request returned.
#[derive(Debug, Default)]
pub struct Delivered {
    pub blocks: Vec<Block>,
    pub status: Option<Status>,
}

/// Sends one seek and collects blocks until its status (or the stream's end).
pub async fn deliver(
    client: &mut AtomicBroadcastClient<Channel>,
    channel: &str,
    start: BlockPosition,
    stop: BlockPosition,
    behavior: SeekBehavior,
) -> Delivered {
    let request = seek(channel, start, stop, behavior, SeekContentType::Block);
    deliver_envelope(client, request).await
}

pub async fn deliver_envelope(
    client: &mut AtomicBroadcastClient<Channel>,
    request: Envelope,
) -> Delivered {
    let mut stream = client
        .deliver(tokio_stream::once(request))
        .await
        .expect("deliver")
        .into_inner();
    let mut out = Delivered::default();
    while let Some(item) = tokio::time::timeout(PATIENCE, stream.next())
        .await
        .expect("deliver answers in time")
    {
        match item.expect("no gRPC error").r#type {
            Some(DeliverItem::Block(block)) => out.blocks.push(block),
            Some(DeliverItem::Status(code)) => {
                out.status = Status::try_from(code).ok();
                break;
            }
            None => panic!("empty deliver response"),
        }
    }
    out
}

/// Every block from 0 to the current height.
pub async fn all_blocks(node: &TestNode, channel: &str) -> Vec<Block> {
    let mut client = node.client().await;
    let requester = Requester {
        identity: node.reader.as_deref(),
        tls_cert_hash: None,
    };
    let request = signed_seek(
        channel,
        BlockPosition::Oldest,
        BlockPosition::Newest,
        SeekBehavior::FailIfNotReady,
        SeekContentType::Block,
        &requester,
    );
    let got = deliver_envelope(&mut client, request).await;
    assert_eq!(got.status, Some(Status::Success));
    got.blocks
}

/// Checks numbers, data hashes and the previous-hash links of a chain from block 0.
pub fn verify_chain(blocks: &[Block]) {
    for (i, block) in blocks.iter().enumerate() {
        let header = block.header.as_ref().expect("header");
        assert_eq!(header.number, i as u64, "block numbers are contiguous");
        assert_eq!(
            header.data_hash,
            blockutil::data_hash(blockutil::entries(block)),
            "data hash of block {i}"
        );
        if i == 0 {
            assert!(header.previous_hash.is_empty());
        } else {
            let previous = blocks[i - 1].header.as_ref().expect("header");
            assert_eq!(
                header.previous_hash,
                blockutil::header_hash(previous),
                "link of block {i}"
            );
        }
    }
}

/// The transaction IDs of every normal transaction in the blocks (block 0 is config).
pub fn tx_ids(blocks: &[Block]) -> Vec<String> {
    blocks
        .iter()
        .skip(1)
        .flat_map(|b| blockutil::entries(b).iter())
        .map(|raw| {
            let env = Envelope::decode(raw.clone()).expect("envelope");
            let payload = Payload::decode(env.payload).expect("payload");
            let header = payload.header.expect("header");
            ChannelHeader::decode(header.channel_header)
                .expect("channel header")
                .tx_id
        })
        .collect()
}

pub fn tx_id_of(envelope: &Envelope) -> String {
    let payload = Payload::decode(envelope.payload.clone()).expect("payload");
    ChannelHeader::decode(payload.header.expect("header").channel_header)
        .expect("channel header")
        .tx_id
}

/// Waits until the channel reaches `height` blocks.
pub async fn wait_for_height(node: &TestNode, channel: &str, height: u64) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while node.height(channel) < height {
        assert!(
            tokio::time::Instant::now() < deadline,
            "height {height} not reached"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Waits until the channel's blocks hold `count` normal transactions; returns the blocks.
pub async fn wait_for_transactions(node: &TestNode, channel: &str, count: usize) -> Vec<Block> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let blocks = all_blocks(node, channel).await;
        if tx_ids(&blocks).len() >= count {
            return blocks;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{count} transactions not delivered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Runs the `ordo` binary off the async runtime; returns (success, stdout, stderr).
pub async fn run_ordo<S: AsRef<str>>(args: &[S]) -> (bool, String, String) {
    run_ordo_in(None, args).await
}

/// [`run_ordo`] from the folder `dir` (relative paths in `args` start there).
pub async fn run_ordo_in<S: AsRef<str>>(dir: Option<&Path>, args: &[S]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.as_ref().to_string()).collect();
    let dir = dir.map(Path::to_path_buf);
    let output = tokio::task::spawn_blocking(move || {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"));
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        command
            .args(&args)
            .env("FABRIC_LOGGING_SPEC", "error")
            .output()
    })
    .await
    .expect("join")
    .expect("run ordo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

/// `ordo start` as a process of its own: the embedded channel, its ledger and
/// identity in `dir`, AtomicBroadcast on `port`, no admin or operations
/// listener unless `env` sets one. Returns once it accepts gRPC connections.
pub async fn spawn_ordo(
    dir: &Path,
    port: u16,
    env: &[(&str, String)],
    stderr: std::process::Stdio,
) -> std::process::Child {
    match try_spawn_ordo(dir, port, env, stderr).await {
        Ok(child) => child,
        Err(status) => panic!("ordo exited before it listened: {status}"),
    }
}

/// As [`spawn_ordo`], or how the process ended if it ended before it
/// listened (a port taken meanwhile by another socket: ports from
/// [`free_port`] are free only when asked for).
pub async fn try_spawn_ordo(
    dir: &Path,
    port: u16,
    env: &[(&str, String)],
    stderr: std::process::Stdio,
) -> Result<std::process::Child, std::process::ExitStatus> {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ordo"))
        .arg("start")
        .env("ORDERER_GENERAL_LISTENPORT", port.to_string())
        .env("ORDERER_ADMIN_LISTENADDRESS", "")
        .env("ORDERER_OPERATIONS_LISTENADDRESS", "")
        .env("ORDERER_FILELEDGER_LOCATION", ledger_dir(dir))
        .env("FABRIC_LOGGING_SPEC", "warn")
        .envs(identity_env(dir))
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("spawn ordo");
    let address = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + PATIENCE;
    while connect(&address).await.is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(status);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ordo did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(child)
}

/// Waits (bounded) until at least `count` Deliver streams are open on the node.
pub async fn deliver_streams_reach(node: &TestNode, count: i64) {
    let metrics = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .metrics()
        .clone();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while metrics.deliver_streams_open() < count {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{} Deliver streams open, expected {count}",
            metrics.deliver_streams_open()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
