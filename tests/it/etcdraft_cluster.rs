//! An etcdraft channel ordered by real `ordo` processes on 127.0.0.1, set up
//! as an operator would: `ordo crypto generate` from
//! config/raft/crypto-config.yaml, `ordo genesis` from config/raft/configtx.yaml,
//! `ordo start` configured only with ORDERER_* variables, `ordo channel join`
//! on each node. The README's "A three-node etcdraft cluster on one machine"
//! runs the same commands on ports 7050-7052; these tests take free ports.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tempfile::TempDir;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

use ordo::fabric::blockutil;
use ordo::fabric::protos::common::{Block, Envelope, Status};
use ordo::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::fabric::protos::orderer::BroadcastResponse;
use ordo::security::signer::SigningIdentity;
use ordo::tools::client::connect_with;
use ordo::tools::client::envelope::{
    signed_seek, signed_transaction, tls_cert_hash, BlockPosition, Requester,
};
use ordo::tools::client::TlsOptions;

use crate::common::{deliver_envelope, run_ordo_in, verify_chain, CHANNEL};

/// The orderers of config/raft/crypto-config.yaml, and the ports
/// config/raft/configtx.yaml gives their listeners, in the same order.
const ORDERERS: [&str; 3] = ["orderer1", "orderer2", "orderer3"];
const SAMPLE_PORTS: [u16; 3] = [7050, 7051, 7052];

/// Elections and catching up take a few Raft ticks each; a debug build on a
/// busy machine may need far more. A bound, never a wait.
const PATIENCE: Duration = Duration::from_secs(60);

/// How often a waiting test looks at the state again.
const POLL: Duration = Duration::from_millis(20);

// Paths below the network's folder, as the README names them.
const ORDERER_ORG: &str = "crypto-config/ordererOrganizations/example.com";
const ORDERER_TLS_CA: &str =
    "crypto-config/ordererOrganizations/example.com/tlsca/tlsca.example.com-cert.pem";
const ORG1_TLS_CA: &str =
    "crypto-config/peerOrganizations/org1.example.com/tlsca/tlsca.org1.example.com-cert.pem";
const ORDERER_ADMIN: &str =
    "crypto-config/ordererOrganizations/example.com/users/Admin@example.com";
const USER1: &str = "crypto-config/peerOrganizations/org1.example.com/users/User1@org1.example.com";

/// A port for a node's listener that nothing listens on, below the
/// kernel's ephemeral range: a port from that range (what binding port 0
/// gives) can be taken by any outgoing connection on the machine before the
/// node binds it, or again before a killed node restarts. Never the same
/// port twice in this process.
fn listen_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    let mut given = GIVEN.lock().expect("ports");
    loop {
        let port = rand::random_range(10_000..ephemeral_start);
        if given.contains(&port) || std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        given.push(port);
        return port;
    }
}

/// One `ordo` process: its listeners and, while it runs, the process.
struct Orderer {
    name: &'static str,
    port: u16,
    admin_port: u16,
    operations_port: u16,
    process: Option<Child>,
}

impl Orderer {
    fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pid(&self) -> u32 {
        self.process.as_ref().expect("running").id()
    }
}

/// What a node's metrics say about the channel.
#[derive(Debug, Clone, Copy, Default)]
struct ChainView {
    is_leader: bool,
    height: u64,
}

/// Crypto material, a genesis block and up to three orderers in one
/// temporary folder laid out like the repository (config/raft, crypto-config).
struct RaftNetwork {
    root: TempDir,
    orderers: Vec<Orderer>,
    /// User1 of Org1: a member of the channel's Writers and Readers.
    user: Arc<SigningIdentity>,
    user_tls: TlsOptions,
    http: reqwest::Client,
}

impl RaftNetwork {
    /// Makes the material with the project's tools and the genesis block of
    /// `profile` (config/raft/configtx.yaml with free ports instead of
    /// 7050-7052, then `adjust`ed).
    async fn prepare(profile: &str, adjust: impl Fn(String) -> String) -> RaftNetwork {
        let root = tempfile::tempdir().expect("tempdir");
        let orderers: Vec<Orderer> = ORDERERS
            .iter()
            .map(|&name| Orderer {
                name,
                port: listen_port(),
                admin_port: listen_port(),
                operations_port: listen_port(),
                process: None,
            })
            .collect();

        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        let samples = root.path().join("config/raft");
        std::fs::create_dir_all(&samples).expect("mkdir");
        std::fs::copy(
            repo.join("config/raft/crypto-config.yaml"),
            samples.join("crypto-config.yaml"),
        )
        .expect("copy crypto-config.yaml");
        let mut configtx =
            std::fs::read_to_string(repo.join("config/raft/configtx.yaml")).expect("configtx");
        for (sample, orderer) in SAMPLE_PORTS.iter().zip(&orderers) {
            configtx = configtx
                .replace(
                    &format!("Port: {sample}"),
                    &format!("Port: {}", orderer.port),
                )
                .replace(
                    &format!("127.0.0.1:{sample}"),
                    &format!("127.0.0.1:{}", orderer.port),
                );
        }
        let configtx = adjust(configtx);
        std::fs::write(samples.join("configtx.yaml"), configtx).expect("write configtx");

        let (ok, out, err) = run_ordo_in(
            Some(root.path()),
            &[
                "crypto",
                "generate",
                "--config",
                "config/raft/crypto-config.yaml",
                "--output",
                "crypto-config",
            ],
        )
        .await;
        assert!(ok, "crypto generate: {out}\n{err}");
        let (ok, out, err) = run_ordo_in(
            Some(root.path()),
            &[
                "genesis",
                "--config-path",
                "config/raft",
                "--profile",
                profile,
                "--channel-id",
                CHANNEL,
                "--output-block",
                "mychannel.block",
            ],
        )
        .await;
        assert!(ok, "genesis: {out}\n{err}");

        let user_dir = root.path().join(USER1);
        let user = SigningIdentity::from_msp_dir(&user_dir.join("msp"), "Org1MSP").expect("User1");
        let user_tls = TlsOptions {
            ca_pem: std::fs::read(root.path().join(ORDERER_TLS_CA)).expect("TLS CA"),
            domain: None,
            client_identity: Some((
                std::fs::read(user_dir.join("tls/client.crt")).expect("client.crt"),
                std::fs::read(user_dir.join("tls/client.key")).expect("client.key"),
            )),
        };
        RaftNetwork {
            root,
            orderers,
            user: Arc::new(user),
            user_tls,
            http: reqwest::Client::new(),
        }
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.root.path().join(relative)
    }

    /// The whole configuration of orderer `i`, as Fabric operators give it.
    fn env(&self, i: usize) -> Vec<(String, String)> {
        let o = &self.orderers[i];
        let node = self
            .path(ORDERER_ORG)
            .join(format!("orderers/{}.example.com", o.name));
        let data = self.path(&format!("raft-data/{}", o.name));
        let p = |path: PathBuf| path.display().to_string();
        let server_crt = p(node.join("tls/server.crt"));
        let server_key = p(node.join("tls/server.key"));
        let node_ca = format!("[{}]", p(node.join("tls/ca.crt")));
        [
            ("ORDERER_GENERAL_LISTENADDRESS", "127.0.0.1".to_string()),
            ("ORDERER_GENERAL_LISTENPORT", o.port.to_string()),
            ("ORDERER_GENERAL_TLS_ENABLED", "true".into()),
            ("ORDERER_GENERAL_TLS_CERTIFICATE", server_crt.clone()),
            ("ORDERER_GENERAL_TLS_PRIVATEKEY", server_key.clone()),
            ("ORDERER_GENERAL_TLS_ROOTCAS", node_ca.clone()),
            ("ORDERER_GENERAL_TLS_CLIENTAUTHREQUIRED", "true".into()),
            (
                "ORDERER_GENERAL_TLS_CLIENTROOTCAS",
                format!(
                    "[{},{}]",
                    p(self.path(ORDERER_TLS_CA)),
                    p(self.path(ORG1_TLS_CA))
                ),
            ),
            // Raft traffic shares the main listener: no Cluster.ListenPort.
            (
                "ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE",
                server_crt.clone(),
            ),
            (
                "ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY",
                server_key.clone(),
            ),
            ("ORDERER_GENERAL_CLUSTER_ROOTCAS", node_ca),
            ("ORDERER_GENERAL_BOOTSTRAPMETHOD", "none".into()),
            ("ORDERER_GENERAL_LOCALMSPDIR", p(node.join("msp"))),
            ("ORDERER_GENERAL_LOCALMSPID", "OrdererMSP".into()),
            ("ORDERER_CONSENSUS_WALDIR", p(data.join("etcdraft/wal"))),
            (
                "ORDERER_CONSENSUS_SNAPDIR",
                p(data.join("etcdraft/snapshot")),
            ),
            ("ORDERER_FILELEDGER_LOCATION", p(data.join("ledger"))),
            ("ORDERER_CHANNELPARTICIPATION_ENABLED", "true".into()),
            (
                "ORDERER_ADMIN_LISTENADDRESS",
                format!("127.0.0.1:{}", o.admin_port),
            ),
            ("ORDERER_ADMIN_TLS_ENABLED", "true".into()),
            ("ORDERER_ADMIN_TLS_CERTIFICATE", server_crt),
            ("ORDERER_ADMIN_TLS_PRIVATEKEY", server_key),
            ("ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED", "true".into()),
            (
                "ORDERER_ADMIN_TLS_CLIENTROOTCAS",
                format!("[{}]", p(self.path(ORDERER_TLS_CA))),
            ),
            (
                "ORDERER_OPERATIONS_LISTENADDRESS",
                format!("127.0.0.1:{}", o.operations_port),
            ),
            ("ORDERER_METRICS_PROVIDER", "prometheus".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.path(&format!("{}.log", self.orderers[i].name))
    }

    /// Starts orderer `i` on its folders (again, after a stop or a kill) and
    /// returns once its operations listener answers.
    async fn start(&mut self, i: usize) {
        assert!(self.orderers[i].process.is_none(), "already running");
        let mut log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("log file");
        writeln!(log, "--- ordo start").expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_ordo"))
            .arg("start")
            .current_dir(self.root.path())
            // ORDO_TEST_LOG (Fabric's syntax) to look closer at a failure.
            .env(
                "FABRIC_LOGGING_SPEC",
                std::env::var("ORDO_TEST_LOG").unwrap_or_else(|_| "info".into()),
            )
            .envs(self.env(i))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn ordo");
        self.orderers[i].process = Some(child);
        let url = format!(
            "http://127.0.0.1:{}/healthz",
            self.orderers[i].operations_port
        );
        let deadline = Instant::now() + PATIENCE;
        loop {
            let healthy = match self.http.get(&url).send().await {
                Ok(answer) => answer.status().is_success(),
                Err(_) => false,
            };
            // The operations listener is the last one a node opens; one that
            // cannot open a listener exits.
            let exited = self.orderers[i]
                .process
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten());
            if healthy && exited.is_none() {
                return;
            }
            if let Some(status) = exited {
                panic!(
                    "{} exited at start ({status}):\n{}",
                    self.orderers[i].name,
                    self.log_tail(i)
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} did not start",
                self.orderers[i].name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// `ordo channel join` on orderer `i`'s admin listener, as the orderer
    /// organization's Admin.
    async fn join(&self, i: usize) {
        self.channel_command(
            i,
            &["join", "--config-block", "mychannel.block"],
            "Status: 201",
        )
        .await;
    }

    /// Removes orderer `i` from the channel (with its ledger and Raft WAL).
    async fn remove(&self, i: usize) {
        self.channel_command(i, &["remove"], "Status: 204").await;
    }

    /// `ordo channel <command>` on orderer `i`'s admin API as the orderer
    /// organization's Admin; its output must contain `expected`.
    async fn channel_command(&self, i: usize, command: &[&str], expected: &str) {
        let admin = format!("127.0.0.1:{}", self.orderers[i].admin_port);
        let cert = format!("{ORDERER_ADMIN}/tls/client.crt");
        let key = format!("{ORDERER_ADMIN}/tls/client.key");
        let mut args = vec!["channel", command[0]];
        args.extend([
            "-o",
            &admin,
            "--ca-file",
            ORDERER_TLS_CA,
            "--client-cert",
            &cert,
            "--client-key",
            &key,
            "--channelID",
            CHANNEL,
        ]);
        args.extend(&command[1..]);
        let (ok, out, err) = run_ordo_in(Some(self.root.path()), &args).await;
        assert!(
            ok && out.contains(expected),
            "{} {}: {out}\n{err}",
            command[0],
            self.orderers[i].name
        );
    }

    /// Starts every orderer, then joins each to the channel, one after the other.
    async fn start_and_join_all(&mut self) {
        for i in 0..self.orderers.len() {
            self.start(i).await;
        }
        for i in 0..self.orderers.len() {
            self.join(i).await;
        }
    }

    /// SIGKILL: no chance to write or sync anything.
    fn kill(&mut self, i: usize) {
        let mut child = self.orderers[i].process.take().expect("running");
        child.kill().expect("SIGKILL");
        child.wait().expect("reaped");
    }

    /// SIGTERM, and wait until the process has exited (a clean stop).
    async fn stop(&mut self, i: usize) {
        let mut child = self.orderers[i].process.take().expect("running");
        let pid = libc::pid_t::try_from(child.id()).expect("pid");
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM sent");
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().expect("wait") {
                assert!(status.success(), "clean stop exits 0: {status}");
                return;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(POLL).await;
        }
    }

    fn running(&self) -> Vec<usize> {
        (0..self.orderers.len())
            .filter(|&i| self.orderers[i].process.is_some())
            .collect()
    }

    /// The channel as orderer `i`'s metrics show it; `None` if it does not answer.
    async fn view(&self, i: usize) -> Option<ChainView> {
        let url = format!(
            "http://127.0.0.1:{}/metrics",
            self.orderers[i].operations_port
        );
        let text = self.http.get(&url).send().await.ok()?.text().await.ok()?;
        let label = format!("{{channel=\"{CHANNEL}\"}}");
        let value = |name: &str| -> Option<f64> {
            let prefix = format!("{name}{label} ");
            text.lines()
                .find_map(|line| line.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse().ok())
        };
        let is_leader = ["ordo_chain_is_leader", "consensus_etcdraft_is_leader"]
            .iter()
            .any(|name| value(name) == Some(1.0));
        let height = value("ledger_blockchain_height").unwrap_or(0.0) as u64;
        Some(ChainView { is_leader, height })
    }

    /// Waits until exactly one of the running orderers says it leads the
    /// channel, and returns it.
    async fn wait_for_leader(&self) -> usize {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let mut leaders = Vec::new();
            for i in self.running() {
                if self.view(i).await.is_some_and(|v| v.is_leader) {
                    leaders.push(i);
                }
            }
            if let [leader] = leaders[..] {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no single leader among {:?} (leaders: {leaders:?})\n{}",
                self.running(),
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until orderer `i` has written `height` blocks.
    async fn wait_for_height(&self, i: usize, height: u64) {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let seen = self.view(i).await.map(|v| v.height).unwrap_or(0);
            if seen >= height {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} is at height {seen}, not {height}\n{}",
                self.orderers[i].name,
                self.logs()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    async fn client(&self, i: usize) -> AtomicBroadcastClient<Channel> {
        connect_with(&self.orderers[i].address(), Some(&self.user_tls))
            .await
            .expect("connect")
    }

    /// Every block of orderer `i`, read over Deliver by User1 (a Reader),
    /// bound to its TLS client certificate.
    async fn blocks(&self, i: usize) -> Vec<Block> {
        let mut client = self.client(i).await;
        let cert = &self
            .user_tls
            .client_identity
            .as_ref()
            .expect("mutual TLS")
            .0;
        let hash = tls_cert_hash(cert).expect("certificate");
        let requester = Requester {
            identity: Some(&self.user),
            tls_cert_hash: Some(&hash),
        };
        let request = signed_seek(
            CHANNEL,
            BlockPosition::Oldest,
            BlockPosition::Newest,
            SeekBehavior::FailIfNotReady,
            SeekContentType::Block,
            &requester,
        );
        let got = deliver_envelope(&mut client, request).await;
        assert_eq!(
            got.status,
            Some(Status::Success),
            "{}",
            self.orderers[i].name
        );
        got.blocks
    }

    /// Waits until orderer `i`'s chain holds every payload of `acked`;
    /// returns its blocks.
    async fn wait_for_payloads(&self, i: usize, acked: &[Bytes]) -> Vec<Block> {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let blocks = self.blocks(i).await;
            let counts = payload_counts(&blocks);
            let missing = acked.iter().filter(|p| !counts.contains_key(*p)).count();
            if missing == 0 {
                return blocks;
            }
            assert!(
                Instant::now() < deadline,
                "{missing} acknowledged envelopes are not in {}'s chain",
                self.orderers[i].name
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Waits until every running orderer has at least the height of
    /// orderer `reference`, then checks that they all hold the same chain.
    /// Returns the reference's blocks.
    async fn wait_for_identical_chains(&self, reference: usize) -> Vec<Block> {
        let expected = self.blocks(reference).await;
        verify_chain(&expected);
        for i in self.running() {
            self.wait_for_height(i, expected.len() as u64).await;
            let blocks = self.blocks(i).await;
            verify_chain(&blocks);
            assert!(blocks.len() >= expected.len());
            for (number, (a, b)) in expected.iter().zip(&blocks).enumerate() {
                assert_eq!(
                    header_hash(a),
                    header_hash(b),
                    "block {number} of {} and {}",
                    self.orderers[reference].name,
                    self.orderers[i].name
                );
            }
        }
        expected
    }

    /// The broadcast clients' view of the orderers.
    fn targets(&self) -> Targets {
        Targets {
            addresses: self.orderers.iter().map(Orderer::address).collect(),
            tls: self.user_tls.clone(),
            signer: self.user.clone(),
        }
    }

    /// Peak resident memory of orderer `i` so far, in kB (VmHWM).
    fn peak_resident_kb(&self, i: usize) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.orderers[i].pid()))
            .expect("/proc/<pid>/status");
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM")
    }

    /// Orderer `i`'s warnings, errors, panics and leader changes, then the
    /// last lines of its log.
    fn log_tail(&self, i: usize) -> String {
        let text = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines.len().saturating_sub(30);
        let errors = lines[..tail].iter().filter(|l| {
            [" ERROR ", " WARN ", "panicked", "leader"]
                .iter()
                .any(|mark| l.contains(mark))
        });
        errors
            .chain(["..."].iter())
            .chain(lines[tail..].iter())
            .copied()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn logs(&self) -> String {
        (0..self.orderers.len())
            .map(|i| format!("--- {}:\n{}", self.orderers[i].name, self.log_tail(i)))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RaftNetwork {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        for orderer in &mut self.orderers {
            if let Some(mut child) = orderer.process.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}

fn header_hash(block: &Block) -> Bytes {
    blockutil::header_hash(block.header.as_ref().expect("header"))
}

/// How often each envelope payload appears in the chain's normal blocks.
fn payload_counts(blocks: &[Block]) -> HashMap<Bytes, usize> {
    let mut counts = HashMap::new();
    for block in blocks.iter().skip(1) {
        for raw in blockutil::entries(block) {
            let envelope = Envelope::decode(raw.clone()).expect("envelope");
            *counts.entry(envelope.payload).or_insert(0) += 1;
        }
    }
    counts
}

/// Every acknowledged envelope is in the chain exactly once, and no
/// envelope (acknowledged or not) is there twice.
fn assert_ordered_once(blocks: &[Block], acked: &[Bytes]) {
    let counts = payload_counts(blocks);
    let twice = counts.values().filter(|&&n| n > 1).count();
    assert_eq!(twice, 0, "envelopes ordered more than once");
    let missing = acked.iter().filter(|p| !counts.contains_key(*p)).count();
    assert_eq!(missing, 0, "acknowledged envelopes missing from the chain");
}

/// Where broadcast clients send, and as whom.
#[derive(Clone)]
struct Targets {
    addresses: Vec<String>,
    tls: TlsOptions,
    signer: Arc<SigningIdentity>,
}

/// An envelope answered SUCCESS: its payload, the node that answered, and
/// the test's phase when it was sent.
#[derive(Debug, Clone)]
struct Acked {
    payload: Bytes,
    node: usize,
    sent_in_phase: usize,
}

/// What one broadcast client saw.
#[derive(Debug, Default)]
struct Outcome {
    acked: Vec<Acked>,
    /// Payloads sent but not answered SUCCESS (refused, or the stream broke).
    failed: Vec<Bytes>,
    /// Times it gave up on a node and moved to the next one.
    moves: usize,
    /// Acknowledgements after its first move.
    acked_after_move: usize,
}

impl Outcome {
    fn payloads(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.acked.iter().map(|a| a.payload.clone())
    }
}

/// Envelopes per round trip: sent together, then their answers read.
const WINDOW: usize = 50;

/// How many acknowledgements a client may collect: the test raises it, and
/// drops its sender to let the client end once it has them all.
type Allowance = watch::Receiver<usize>;

/// An allowance of `count` that never grows.
fn allowance(count: usize) -> Allowance {
    watch::channel(count).1
}

/// A Fabric client that keeps one Broadcast stream to a node and, when that
/// node refuses (SERVICE_UNAVAILABLE while there is no leader) or its
/// stream breaks, moves to the next node. Every envelope is new (a retry
/// sends new ones), so none can be ordered twice by the client's doing.
/// Sends while it has fewer acknowledgements than its allowance; `progress`
/// counts them as they come, `phase` labels what it sends.
async fn broadcast_client(
    targets: Targets,
    name: String,
    first_node: usize,
    mut allowance: Allowance,
    phase: Arc<AtomicUsize>,
    progress: Arc<AtomicUsize>,
) -> Outcome {
    let mut outcome = Outcome::default();
    let mut node = first_node;
    let mut stream: Option<(mpsc::Sender<Envelope>, tonic::Streaming<BroadcastResponse>)> = None;
    let mut sequence = 0u64;
    // After a failure, one envelope at a time until a node takes one.
    let mut probing = false;
    loop {
        let allowed = *allowance.borrow_and_update();
        if outcome.acked.len() >= allowed {
            match tokio::time::timeout(PATIENCE * 3, allowance.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => break,
                Err(_) => panic!("{name}: the test never said to go on"),
            }
        }
        if stream.is_none() {
            stream = open_broadcast(&targets.addresses[node], &targets.tls).await;
            if stream.is_none() {
                node = (node + 1) % targets.addresses.len();
                outcome.moves += 1;
                // Pace the retries over nodes that are down.
                tokio::time::sleep(POLL).await;
                continue;
            }
        }
        let Some((tx, responses)) = stream.as_mut() else {
            continue;
        };
        let window = if probing { 1 } else { WINDOW };
        let count = window.min(allowed - outcome.acked.len());
        let sent_in_phase = phase.load(Ordering::SeqCst);
        let mut sent = Vec::with_capacity(count);
        for _ in 0..count {
            sequence += 1;
            let mut data = format!("{name}/{sequence}/").into_bytes();
            data.resize(512, b'.');
            let envelope = signed_transaction(CHANNEL, Bytes::from(data), &targets.signer);
            sent.push(envelope.payload.clone());
            if tx.send(envelope).await.is_err() {
                break;
            }
        }
        let mut sent = sent.into_iter();
        let mut refused = false;
        for payload in sent.by_ref() {
            match tokio::time::timeout(PATIENCE, responses.next()).await {
                Ok(Some(Ok(answer))) if answer.status == Status::Success as i32 => {
                    progress.fetch_add(1, Ordering::SeqCst);
                    if outcome.moves > 0 {
                        outcome.acked_after_move += 1;
                    }
                    outcome.acked.push(Acked {
                        payload,
                        node,
                        sent_in_phase,
                    });
                }
                // Refused (the stream then ends), broken, ended or silent.
                _ => {
                    outcome.failed.push(payload);
                    refused = true;
                    break;
                }
            }
        }
        probing = refused;
        if refused {
            outcome.failed.extend(sent);
            stream = None;
            node = (node + 1) % targets.addresses.len();
            outcome.moves += 1;
            tokio::time::sleep(POLL).await;
        }
    }
    outcome
}

async fn open_broadcast(
    address: &str,
    tls: &TlsOptions,
) -> Option<(mpsc::Sender<Envelope>, tonic::Streaming<BroadcastResponse>)> {
    let mut client = connect_with(address, Some(tls)).await.ok()?;
    let (tx, rx) = mpsc::channel(WINDOW);
    let responses = client
        .broadcast(ReceiverStream::new(rx))
        .await
        .ok()?
        .into_inner();
    Some((tx, responses))
}

/// A running client and its count of acknowledgements.
struct Client {
    task: tokio::task::JoinHandle<Outcome>,
    progress: Arc<AtomicUsize>,
}

impl Client {
    fn start(targets: &Targets, name: &str, first_node: usize, allowance: Allowance) -> Client {
        Self::start_in(targets, name, first_node, allowance, Arc::default())
    }

    fn start_in(
        targets: &Targets,
        name: &str,
        first_node: usize,
        allowance: Allowance,
        phase: Arc<AtomicUsize>,
    ) -> Client {
        let progress = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(broadcast_client(
            targets.clone(),
            name.to_string(),
            first_node,
            allowance,
            phase,
            progress.clone(),
        ));
        Client { task, progress }
    }

    async fn outcome(self) -> Outcome {
        self.task.await.expect("client")
    }
}

/// Waits until `progress` reaches `count`.
async fn wait_for_progress(progress: &AtomicUsize, count: usize, what: &str) {
    let deadline = Instant::now() + PATIENCE;
    while progress.load(Ordering::SeqCst) < count {
        assert!(
            Instant::now() < deadline,
            "{what}: {} of {count} acknowledged",
            progress.load(Ordering::SeqCst)
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Sends single envelopes to orderer `i` until one is acknowledged: a
/// follower forwards only once it has heard from the leader, and refuses
/// (SERVICE_UNAVAILABLE, nothing ordered) until then.
async fn wait_until_orders_through(network: &RaftNetwork, i: usize) -> Bytes {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some((tx, mut responses)) =
            open_broadcast(&network.orderers[i].address(), &network.user_tls).await
        {
            let envelope = signed_transaction(
                CHANNEL,
                Bytes::from(format!("probe of {}", network.orderers[i].name)),
                &network.user,
            );
            let payload = envelope.payload.clone();
            if tx.send(envelope).await.is_ok() {
                if let Ok(Some(Ok(answer))) = tokio::time::timeout(PATIENCE, responses.next()).await
                {
                    if answer.status == Status::Success as i32 {
                        return payload;
                    }
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "{} does not order",
            network.orderers[i].name
        );
        tokio::time::sleep(POLL).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_forwards_broadcasts_and_every_node_delivers_the_same_chain() {
    let mut network = RaftNetwork::prepare("ThreeNodeRaftChannel", |c| c).await;
    network.start_and_join_all().await;
    let leader = network.wait_for_leader().await;
    let follower = (leader + 1) % 3;
    let probe = wait_until_orders_through(&network, follower).await;

    // The README's load: User1 of Org1 sends to the follower, over mutual
    // TLS, and reads every acknowledged envelope back from it.
    let user_cert = format!("{USER1}/tls/client.crt");
    let user_key = format!("{USER1}/tls/client.key");
    let user_msp = format!("{USER1}/msp");
    // How User1 signs and connects, for `bench load` and `deliver` alike.
    let user = [
        "--msp-dir",
        user_msp.as_str(),
        "--msp-id",
        "Org1MSP",
        "--tls-ca-file",
        ORDERER_TLS_CA,
        "--tls-client-cert",
        user_cert.as_str(),
        "--tls-client-key",
        user_key.as_str(),
    ];
    let follower_address = network.orderers[follower].address();
    let (ok, out, err) = run_ordo_in(
        Some(network.root.path()),
        &[
            "bench",
            "load",
            "--address",
            &follower_address,
            "--count",
            "1000",
            "--streams",
            "2",
            "--size",
            "512",
        ]
        .iter()
        .chain(&user)
        .copied()
        .collect::<Vec<_>>(),
    )
    .await;
    assert!(ok, "bench load through the follower: {out}\n{err}");
    assert!(out.contains("\"delivered\":1000"), "{out}");

    // Same blocks, same header hashes, at every height on every node.
    let blocks = network.wait_for_identical_chains(leader).await;
    assert_ordered_once(&blocks, &[probe]);
    let transactions: usize = blocks
        .iter()
        .skip(1)
        .map(|b| blockutil::entries(b).len())
        .sum();
    assert_eq!(transactions, 1001);

    // `ordo deliver` prints the same lines (number, transactions, header
    // hash) from each of them.
    let mut printed = Vec::new();
    for orderer in &network.orderers {
        let address = orderer.address();
        let (ok, out, err) = run_ordo_in(
            Some(network.root.path()),
            &["deliver", "--address", &address]
                .iter()
                .chain(&user)
                .copied()
                .collect::<Vec<_>>(),
        )
        .await;
        assert!(ok, "deliver from {}: {out}\n{err}", orderer.name);
        printed.push(out);
    }
    assert_eq!(printed[0].lines().count(), blocks.len(), "{}", printed[0]);
    assert!(printed[0].lines().all(|l| l.starts_with("block ")));
    assert_eq!(printed[0], printed[1]);
    assert_eq!(printed[0], printed[2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_elects_another_and_nothing_is_ordered_twice() {
    let mut network = RaftNetwork::prepare("ThreeNodeRaftChannel", |c| c).await;
    network.start_and_join_all().await;
    let leader = network.wait_for_leader().await;
    for i in 0..3 {
        if i != leader {
            wait_until_orders_through(&network, i).await;
        }
    }

    // One client on the leader, one on each follower. Phases: 0 before the
    // kill, 1 until a new leader is known, 2 after.
    let targets = network.targets();
    let (allow, allowance) = watch::channel(400);
    let phase = Arc::new(AtomicUsize::new(0));
    let clients: Vec<Client> = (0..3)
        .map(|k| {
            Client::start_in(
                &targets,
                &format!("client{k}"),
                (leader + k) % 3,
                allowance.clone(),
                phase.clone(),
            )
        })
        .collect();
    for client in &clients {
        wait_for_progress(&client.progress, 200, "before the kill").await;
    }

    // Killed while every client is sending.
    network.kill(leader);
    phase.store(1, Ordering::SeqCst);
    let new_leader = network.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    phase.store(2, Ordering::SeqCst);
    // Every client goes on, the one that was on the killed leader included.
    allow.send_replace(800);
    for client in &clients {
        wait_for_progress(&client.progress, 600, "after the kill").await;
    }

    // The killed node comes back on its folders and catches up while the
    // clients still send.
    network.start(leader).await;
    allow.send_replace(1000);
    let height = network
        .view(new_leader)
        .await
        .expect("leader answers")
        .height;
    network.wait_for_height(leader, height).await;
    drop(allow);

    let mut outcomes = Vec::new();
    for client in clients {
        outcomes.push(client.outcome().await);
    }
    // client0 was on the killed leader: its stream broke, it moved on, and
    // its envelopes were acknowledged by the others.
    assert!(outcomes[0].moves > 0, "client0 never had to move");
    assert!(
        outcomes[0].acked_after_move > 0,
        "client0 never succeeded after moving"
    );
    let acked: Vec<Acked> = outcomes.iter().flat_map(|o| o.acked.clone()).collect();
    let failed: usize = outcomes.iter().map(|o| o.failed.len()).sum();
    assert_eq!(acked.len(), 3000);

    // What was sent after the kill must all come (the last batch is cut
    // at its timeout); what the killed leader held may never come.
    let current_leader = network.wait_for_leader().await;
    let sent_after_kill: Vec<Bytes> = acked
        .iter()
        .filter(|a| a.sent_in_phase > 0)
        .map(|a| a.payload.clone())
        .collect();
    network
        .wait_for_payloads(current_leader, &sent_after_kill)
        .await;
    let blocks = network.wait_for_identical_chains(current_leader).await;
    let counts = payload_counts(&blocks);
    let twice = counts.values().filter(|&&n| n > 1).count();
    assert_eq!(twice, 0, "envelopes ordered more than once");
    let mut missing: HashMap<(usize, usize), usize> = HashMap::new();
    for a in acked.iter().filter(|a| !counts.contains_key(&a.payload)) {
        *missing.entry((a.node, a.sent_in_phase)).or_default() += 1;
    }
    eprintln!(
        "{} acknowledged, {failed} not acknowledged; killed {}; missing by (answering node, phase sent in): {missing:?}",
        acked.len(),
        network.orderers[leader].name
    );
    // SUCCESS means, as in Fabric, that the leader took the envelope into
    // its next block, not that the block is replicated: what the killed
    // leader held (its pending batch and the blocks it proposed but Raft
    // had not committed) may be lost, however it reached it. Nothing sent
    // after the kill may be lost.
    let after_kill: usize = missing
        .iter()
        .filter(|((_, phase), _)| *phase > 0)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(
        after_kill, 0,
        "envelopes acknowledged after the kill are missing: {missing:?}"
    );
    let held_by_leader = (5 + 1) * 100; // (MaxInflightBlocks + 1) * MaxMessageCount
    let lost: usize = missing.values().sum();
    assert!(
        lost <= held_by_leader,
        "{lost} acknowledged envelopes lost: {missing:?}"
    );
    // The restarted node holds the whole chain too, past the kill.
    assert!(network.blocks(leader).await.len() >= blocks.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_block_in_flight_under_load_loses_nothing_and_bounds_memory() {
    let mut network = RaftNetwork::prepare("ThreeNodeRaftChannel", |c| {
        let adjusted = c.replace("MaxInflightBlocks: 5", "MaxInflightBlocks: 1");
        assert_ne!(adjusted, c, "the sample names MaxInflightBlocks");
        adjusted
    })
    .await;
    network.start_and_join_all().await;
    let leader = network.wait_for_leader().await;
    for i in 0..3 {
        if i != leader {
            wait_until_orders_through(&network, i).await;
        }
    }

    // Four streams to the leader and one to each follower.
    let targets = network.targets();
    let first_nodes = [
        leader,
        leader,
        leader,
        leader,
        (leader + 1) % 3,
        (leader + 2) % 3,
    ];
    let clients: Vec<Client> = first_nodes
        .iter()
        .enumerate()
        .map(|(k, &node)| Client::start(&targets, &format!("load{k}"), node, allowance(500)))
        .collect();
    let mut acked = Vec::new();
    for (k, client) in clients.into_iter().enumerate() {
        let outcome = client.outcome().await;
        assert_eq!(
            outcome.moves,
            0,
            "load{k}: {} refused",
            outcome.failed.len()
        );
        acked.extend(outcome.payloads());
    }
    assert_eq!(acked.len(), 3000);

    network.wait_for_payloads(leader, &acked).await;
    let blocks = network.wait_for_identical_chains(leader).await;
    assert_ordered_once(&blocks, &acked);
    let peak_kb = network.peak_resident_kb(leader);
    eprintln!("the leader's resident memory peaked at {peak_kb} kB");
    assert!(
        peak_kb < 500 * 1024,
        "the leader's resident memory peaked at {peak_kb} kB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_node_raft_channel_keeps_its_chain_across_restarts_and_orders_again() {
    let mut network = RaftNetwork::prepare("OneNodeRaftChannel", |c| c).await;
    network.start(0).await;
    network.join(0).await;
    assert_eq!(network.wait_for_leader().await, 0);

    let targets = network.targets();
    let mut acked = Vec::new();
    let send = |name: &str, count: usize| {
        let client = Client::start(&targets, name, 0, allowance(count));
        async move {
            let outcome = client.outcome().await;
            assert_eq!(outcome.moves, 0, "refused: {:?}", outcome.failed.len());
            outcome.payloads().collect::<Vec<_>>()
        }
    };

    acked.extend(send("before", 300).await);
    let mut before = network.wait_for_payloads(0, &acked).await;

    // A clean stop, then a kill: each time the node comes back with its
    // chain (same height, same hashes), leads again, and orders on top of it.
    for (round, clean) in [true, false].into_iter().enumerate() {
        if clean {
            network.stop(0).await;
        } else {
            network.kill(0);
        }
        network.start(0).await;
        assert_eq!(network.wait_for_leader().await, 0);
        let after = network.blocks(0).await;
        assert_eq!(
            after.iter().map(header_hash).collect::<Vec<_>>(),
            before.iter().map(header_hash).collect::<Vec<_>>(),
            "round {round}: the chain as it was"
        );
        acked.extend(send(&format!("round{round}"), 100).await);
        let blocks = network.wait_for_payloads(0, &acked).await;
        verify_chain(&blocks);
        assert_ordered_once(&blocks, &acked);
        assert!(blocks.len() > before.len());
        before = blocks;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_raft_channel_joined_again_starts_from_its_genesis_block() {
    let mut network = RaftNetwork::prepare("OneNodeRaftChannel", |c| c).await;
    network.start(0).await;
    network.join(0).await;
    assert_eq!(network.wait_for_leader().await, 0);
    let targets = network.targets();
    let before = Client::start(&targets, "before", 0, allowance(50))
        .outcome()
        .await;
    assert_eq!(before.moves, 0);
    let acked: Vec<Bytes> = before.payloads().collect();
    network.wait_for_payloads(0, &acked).await;

    // Removed, and joined again from the same genesis block: the WAL of the
    // first life is gone with the ledger, so nothing of it comes back.
    network.remove(0).await;
    network.join(0).await;
    assert_eq!(network.wait_for_leader().await, 0);
    let after = Client::start(&targets, "after", 0, allowance(20))
        .outcome()
        .await;
    assert_eq!(after.moves, 0);
    let again: Vec<Bytes> = after.payloads().collect();
    let blocks = network.wait_for_payloads(0, &again).await;
    verify_chain(&blocks);
    assert_ordered_once(&blocks, &again);
    let counts = payload_counts(&blocks);
    assert!(
        acked.iter().all(|p| !counts.contains_key(p)),
        "an envelope of the removed channel came back"
    );
}
