//! The node's own configuration (Fabric's `orderer.yaml`), loaded with the `config`
//! crate; every key can be overridden from `ORDERER_*` environment variables.
//!
//! Every key of Fabric 3.1's orderer.yaml is read, in its layout; an unknown
//! key stops start-up naming it, and a value Ordo cannot honour is refused
//! with a message saying so (see `support`).

mod duration;
mod env;
pub mod kafka;
mod keys;
pub mod sections;
mod support;

pub use duration::parse_go_duration;
pub use support::{
    GrpcServerSettings, HttpServerSettings, MetricsProvider, DEFAULT_MAX_MESSAGE_BYTES,
};
use support::{
    DEFAULT_HTTP_MAX_CONNECTIONS, DEFAULT_HTTP_READ_HEADER_TIMEOUT, DEFAULT_HTTP_READ_TIMEOUT,
    DEFAULT_HTTP_WRITE_TIMEOUT, DEFAULT_MAX_CONCURRENT_STREAMS, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_RECEIVING_BYTES,
};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The built-in default: `config/orderer.yaml`, used when no file is given.
pub const DEFAULT_YAML: &str = include_str!("../../../config/orderer.yaml");

/// Errors that stop start-up; each names the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid node config: {0}")]
    Parse(#[from] config::ConfigError),
    #[error("invalid node config: {key}: {reason}")]
    Invalid { key: &'static str, reason: String },
    #[error("unknown key(s) in the node config: {} (neither Fabric's orderer.yaml nor Ordo's has it; see config/orderer.yaml)", keys.join(", "))]
    UnknownKeys { keys: Vec<String> },
    #[error("invalid node config: {key} is given twice (keys are case-insensitive)")]
    DuplicateKey { key: String },
    #[error("unsupported node config: {key}: {reason}")]
    Unsupported { key: &'static str, reason: String },
}

/// How the first channel is created on an empty ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootstrapMethod {
    /// From the genesis block at `General.BootstrapFile`.
    File,
    /// Channel `mychannel` (solo) from a config block Ordo builds itself.
    Embedded,
    /// No channel at start.
    None,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct OrdererConfig {
    pub general: General,
    pub file_ledger: FileLedger,
    pub admin: Admin,
    pub channel_participation: ChannelParticipation,
    pub operations: Operations,
    pub consensus: Consensus,
    pub debug: sections::Debug,
    pub metrics: sections::Metrics,
    pub kafka: sections::Kafka,
}

/// Where replicated consenters keep their own storage (Fabric's
/// `Consensus.WALDir` / `Consensus.SnapDir`): one folder per channel below each.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Consensus {
    #[serde(rename = "WALDir")]
    pub wal_dir: String,
    pub snap_dir: String,
    /// etcdraft: how long a follower cut off from the leader waits before
    /// suspecting it was evicted (a duration; empty: the consenter's default).
    pub eviction_suspicion: String,
    /// etcdraft: overrides the channel's TickInterval (a duration).
    pub tick_interval_override: String,
}

impl Default for Consensus {
    fn default() -> Self {
        Consensus {
            wal_dir: "ordo-data/etcdraft/wal".into(),
            snap_dir: "ordo-data/etcdraft/snapshot".into(),
            eviction_suspicion: String::new(),
            tick_interval_override: String::new(),
        }
    }
}

/// The admin HTTP listener (channel participation API).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Admin {
    /// `host:port`; empty: no admin listener.
    pub listen_address: String,
    /// `Admin.TLS`: with TLS on, clients must present a certificate from
    /// `ClientRootCAs`, as Fabric requires.
    #[serde(rename = "TLS")]
    pub tls: Tls,
    /// Ordo's own: how long a client may take to send a request's headers,
    /// and how long a connection may wait for its next request.
    pub read_header_timeout: String,
    /// How long a client may take to send a whole request, body included.
    pub read_timeout: String,
    /// How long an answer may wait for the client to take it.
    pub write_timeout: String,
    /// Connections served at once; more are answered 503 (or closed, with
    /// TLS) at once.
    pub max_connections: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct ChannelParticipation {
    pub enabled: bool,
    /// Largest config block a join request may carry ("1 MB", "512 KB", bytes).
    pub max_request_body_size: String,
}

/// The operations HTTP listener (health, metrics, log level, version).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Operations {
    /// `host:port`; empty: no operations listener.
    pub listen_address: String,
    /// `Operations.TLS`: changes to `/logspec` need a client certificate
    /// when TLS is on.
    #[serde(rename = "TLS")]
    pub tls: Tls,
    /// Ordo's own, as under `Admin`.
    pub read_header_timeout: String,
    pub read_timeout: String,
    pub write_timeout: String,
    pub max_connections: u32,
}

impl Default for Admin {
    fn default() -> Self {
        Admin {
            listen_address: "127.0.0.1:9443".into(),
            tls: Tls::default(),
            read_header_timeout: DEFAULT_HTTP_READ_HEADER_TIMEOUT.into(),
            read_timeout: DEFAULT_HTTP_READ_TIMEOUT.into(),
            write_timeout: DEFAULT_HTTP_WRITE_TIMEOUT.into(),
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        }
    }
}

impl Default for ChannelParticipation {
    fn default() -> Self {
        ChannelParticipation {
            enabled: true,
            max_request_body_size: "1 MB".into(),
        }
    }
}

impl Default for Operations {
    fn default() -> Self {
        Operations {
            listen_address: "127.0.0.1:8443".into(),
            tls: Tls::default(),
            read_header_timeout: DEFAULT_HTTP_READ_HEADER_TIMEOUT.into(),
            read_timeout: DEFAULT_HTTP_READ_TIMEOUT.into(),
            write_timeout: DEFAULT_HTTP_WRITE_TIMEOUT.into(),
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct General {
    pub listen_address: String,
    pub listen_port: u16,
    #[serde(rename = "TLS")]
    pub tls: Tls,
    pub bootstrap_method: String,
    pub bootstrap_file: Option<String>,
    #[serde(rename = "LocalMSPDir")]
    pub local_msp_dir: String,
    #[serde(rename = "LocalMSPID")]
    pub local_msp_id: String,
    pub backpressure: Backpressure,
    pub authentication: Authentication,
    pub keepalive: sections::Keepalive,
    pub backoff: sections::Backoff,
    pub throttling: sections::Throttling,
    pub cluster: sections::Cluster,
    /// Bytes (or a size such as "100 MB"); zero or empty: 100 MiB.
    pub max_recv_msg_size: String,
    pub max_send_msg_size: String,
    /// How long a new connection may take to finish its TLS handshake and
    /// send HTTP/2's preface (a duration; zero or empty: 5s, as Fabric).
    pub connection_timeout: String,
    /// Ordo's own: gRPC connections served at once on each gRPC listener;
    /// more are closed at once (zero: 1024).
    pub max_connections: u32,
    /// Ordo's own: streams a client may open at once on one gRPC connection
    /// (HTTP/2's SETTINGS_MAX_CONCURRENT_STREAMS; zero: 100).
    pub max_concurrent_streams: u32,
    /// Ordo's own: a gRPC connection without a stream for this long is
    /// closed with a GOAWAY (a duration; zero or empty: 5m).
    pub connection_idle_timeout: String,
    /// Fabric 1.x names of BootstrapMethod and BootstrapFile, read when
    /// those are empty.
    pub genesis_method: String,
    pub genesis_file: String,
    pub profile: sections::Profile,
    #[serde(rename = "BCCSP")]
    pub bccsp: sections::Bccsp,
}

/// `General.Authentication`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Authentication {
    /// Removed: every envelope is checked against `/Channel/Writers`. Read
    /// only to refuse a file that still sets it.
    pub verify_envelope_signatures: Option<serde_json::Value>,
    /// How far a client's timestamp may be from the node's clock (a
    /// duration; zero or empty: 15m).
    pub time_window: String,
    /// Accept envelopes whose creator's certificate has expired (Fabric's
    /// key; off by default: expired creators are refused).
    pub no_expiration_checks: bool,
}

impl Default for Authentication {
    fn default() -> Self {
        Authentication {
            verify_envelope_signatures: None,
            time_window: "15m".into(),
            no_expiration_checks: false,
        }
    }
}

/// `General.TLS`, `Admin.TLS` and `Operations.TLS`, as in Fabric's
/// orderer.yaml. Paths are PEM files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Tls {
    pub enabled: bool,
    pub private_key: String,
    pub certificate: String,
    /// CAs of the orderer's own TLS chain (unused by the server itself).
    #[serde(rename = "RootCAs", deserialize_with = "string_or_list")]
    pub root_cas: Vec<String>,
    pub client_auth_required: bool,
    /// CAs that client certificates must chain to.
    #[serde(rename = "ClientRootCAs", deserialize_with = "string_or_list")]
    pub client_root_cas: Vec<String>,
    /// A duration; only zero (unset) is supported.
    #[serde(rename = "TLSHandshakeTimeShift")]
    pub tls_handshake_time_shift: String,
}

/// A list from YAML, or from an environment variable as Fabric writes one:
/// `[a.pem,b.pem]` or `a.pem,b.pem`.
fn string_or_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Either {
        List(Vec<String>),
        Text(String),
    }
    Ok(match Either::deserialize(d)? {
        Either::List(list) => list,
        Either::Text(text) => text
            .trim()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect(),
    })
}

/// The server's TLS material, read at load time.
#[derive(Clone)]
pub struct ServerTls {
    pub certificate_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
    pub client_auth_required: bool,
    /// Concatenated PEM of the client root CAs (empty: none).
    pub client_root_cas_pem: Vec<u8>,
}

/// Never prints the private key (a config may be logged or end in a panic).
impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field(
                "certificate_pem",
                &String::from_utf8_lossy(&self.certificate_pem),
            )
            .field("private_key_pem", &"<redacted>")
            .field("client_auth_required", &self.client_auth_required)
            .field(
                "client_root_cas_pem",
                &String::from_utf8_lossy(&self.client_root_cas_pem),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Backpressure {
    pub max_inflight_envelopes: u32,
    /// A size ("100 MB", "512 KB", or bytes).
    pub max_inflight_bytes: String,
    /// Bytes of large gRPC messages being received at once by the whole
    /// node (a size; zero or empty: 512 MB).
    pub max_receiving_bytes: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FileLedger {
    pub location: String,
    /// Ignored, as Fabric 3 ignores it (it named temporary ledger folders).
    pub prefix: String,
}

impl Default for General {
    fn default() -> Self {
        General {
            listen_address: "127.0.0.1".into(),
            listen_port: 7050,
            tls: Tls::default(),
            // Empty: GenesisMethod, else none, as Fabric; Ordo's built-in
            // config says embedded.
            bootstrap_method: String::new(),
            bootstrap_file: None,
            local_msp_dir: "msp".into(),
            local_msp_id: "SampleOrg".into(),
            backpressure: Backpressure::default(),
            authentication: Authentication::default(),
            keepalive: sections::Keepalive::default(),
            backoff: sections::Backoff::default(),
            throttling: sections::Throttling::default(),
            cluster: sections::Cluster::default(),
            max_recv_msg_size: DEFAULT_MAX_MESSAGE_BYTES.to_string(),
            max_send_msg_size: DEFAULT_MAX_MESSAGE_BYTES.to_string(),
            connection_timeout: String::new(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            connection_idle_timeout: "5m".into(),
            genesis_method: String::new(),
            genesis_file: String::new(),
            profile: sections::Profile::default(),
            bccsp: sections::Bccsp::default(),
        }
    }
}

impl Default for Backpressure {
    fn default() -> Self {
        Backpressure {
            max_inflight_envelopes: 2048,
            max_inflight_bytes: DEFAULT_MAX_INFLIGHT_BYTES.into(),
            max_receiving_bytes: DEFAULT_MAX_RECEIVING_BYTES.into(),
        }
    }
}

impl Default for FileLedger {
    fn default() -> Self {
        FileLedger {
            location: "ordo-data".into(),
            prefix: String::new(),
        }
    }
}

/// The default bound on the bytes of envelopes a channel holds in flight.
pub const DEFAULT_MAX_INFLIGHT_BYTES: &str = "100 MB";

/// A loaded and checked node config, with paths resolved.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub raw: OrdererConfig,
    pub listen_address: String,
    pub bootstrap_method: BootstrapMethod,
    pub bootstrap_file: Option<PathBuf>,
    pub ledger_dir: PathBuf,
    pub max_inflight_envelopes: usize,
    /// General.Backpressure.MaxInflightBytes.
    pub max_inflight_bytes: usize,
    /// Consensus.WALDir and Consensus.SnapDir.
    pub wal_dir: PathBuf,
    pub snap_dir: PathBuf,
    /// TLS on the AtomicBroadcast listener, if enabled.
    pub tls: Option<ServerTls>,
    /// General.Authentication.NoExpirationChecks.
    pub no_expiration_checks: bool,
    /// The admin listener, if any.
    pub admin_address: Option<String>,
    /// Admin.TLS, if enabled: the admin API is then served only to clients
    /// presenting a certificate that chains to Admin.TLS.ClientRootCAs.
    pub admin_tls: Option<ServerTls>,
    /// Always true: Fabric's orderer turns a false
    /// ChannelParticipation.Enabled back on, and so does Ordo.
    pub channel_participation: bool,
    pub max_join_body_bytes: usize,
    /// The operations listener, if any.
    pub operations_address: Option<String>,
    /// Operations.TLS, if enabled.
    pub operations_tls: Option<ServerTls>,
    /// The admin listener's limits (Admin.ReadHeaderTimeout, ...).
    pub admin_http: HttpServerSettings,
    /// The operations listener's limits (Operations.ReadHeaderTimeout, ...).
    pub operations_http: HttpServerSettings,
    /// The node's signing identity.
    pub local_msp: LocalMsp,
    /// General.Keepalive, General.MaxRecvMsgSize, General.MaxSendMsgSize
    /// and the gRPC listeners' connection limits.
    pub grpc: GrpcServerSettings,
    /// Metrics.Provider.
    pub metrics_provider: MetricsProvider,
    /// General.Authentication.TimeWindow: how far a Deliver request's
    /// timestamp may be from the node's clock.
    pub authentication_time_window: std::time::Duration,
    /// General.Cluster: how this node talks to the other consenters.
    pub cluster: ClusterConfig,
    /// The `Kafka` section, resolved (retry schedule, TLS files read).
    pub kafka: kafka::KafkaSettings,
}

/// `General.Cluster`, read at load time: the streams to and from the other
/// consenters of the node's etcdraft channels.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// Raft messages queued per remote consenter and channel
    /// (`SendBufferSize`; zero: 100).
    pub send_buffer_size: usize,
    /// How long a connection to another orderer may take to set up.
    pub dial_timeout: std::time::Duration,
    /// The node as a TLS client of other orderers; `None` without
    /// General.TLS (plaintext HTTP/2).
    pub client_tls: Option<ClusterClientTls>,
    /// The cluster's own listener; `None`: the cluster service is served on
    /// the main listener.
    pub listener: Option<ClusterListener>,
    /// `RootCAs`, concatenated PEM: the CAs of other orderers' TLS
    /// certificates, trusted for their listeners and their client
    /// certificates.
    pub root_cas_pem: Vec<u8>,
}

/// What the node presents to, and trusts of, other orderers' listeners.
#[derive(Clone)]
pub struct ClusterClientTls {
    /// `ClientCertificate`, or General.TLS.Certificate when it and
    /// `ClientPrivateKey` are empty (as Fabric).
    pub certificate_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
    /// General.Cluster.RootCAs and General.TLS.RootCAs, concatenated PEM.
    pub server_root_cas_pem: Vec<u8>,
}

/// Never prints the private key.
impl std::fmt::Debug for ClusterClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterClientTls")
            .field(
                "certificate_pem",
                &String::from_utf8_lossy(&self.certificate_pem),
            )
            .field("private_key_pem", &"<redacted>")
            .field(
                "server_root_cas_pem",
                &String::from_utf8_lossy(&self.server_root_cas_pem),
            )
            .finish()
    }
}

/// The cluster's own listener: `ListenAddress`, `ListenPort`,
/// `ServerCertificate` and `ServerPrivateKey`. Mutual TLS, always.
#[derive(Clone)]
pub struct ClusterListener {
    pub address: String,
    pub certificate_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
}

/// Never prints the private key.
impl std::fmt::Debug for ClusterListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterListener")
            .field("address", &self.address)
            .field(
                "certificate_pem",
                &String::from_utf8_lossy(&self.certificate_pem),
            )
            .field("private_key_pem", &"<redacted>")
            .finish()
    }
}

/// `General.LocalMSPDir` and `General.LocalMSPID`: the MSP folder of the
/// node's signing identity.
#[derive(Debug, Clone)]
pub struct LocalMsp {
    pub dir: PathBuf,
    pub id: String,
    /// Only for the built-in config with its own LocalMSPDir: when that
    /// folder is missing, the node makes a development identity under its
    /// ledger folder instead of refusing to start.
    pub development_fallback: bool,
}

impl NodeConfig {
    /// Loads `path` (or the built-in default when `None`) and applies the
    /// `ORDERER_*` variables of the process environment.
    pub fn load(path: Option<&Path>) -> Result<NodeConfig, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`NodeConfig::load`], with the environment given explicitly (for tests).
    pub fn load_with_env(
        path: Option<&Path>,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, ConfigError> {
        let (yaml, base_dir) = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|source| ConfigError::Read {
                    path: p.to_path_buf(),
                    source,
                })?;
                let dir = p.parent().map(Path::to_path_buf).unwrap_or_default();
                (text, dir)
            }
            None => (DEFAULT_YAML.to_string(), PathBuf::new()),
        };
        let mut config = Self::from_yaml(&yaml, &base_dir, vars)?;
        config.local_msp.development_fallback =
            path.is_none() && config.raw.general.local_msp_dir == General::default().local_msp_dir;
        Ok(config)
    }

    /// Parses YAML text; relative paths are resolved against `base_dir`.
    pub fn from_yaml(
        yaml: &str,
        base_dir: &Path,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<NodeConfig, ConfigError> {
        let raw: OrdererConfig = env::load_with_overrides(yaml, vars)?;
        Self::check(raw, base_dir)
    }

    fn check(mut raw: OrdererConfig, base_dir: &Path) -> Result<NodeConfig, ConfigError> {
        complete(&mut raw);
        if !raw.channel_participation.enabled {
            // As Fabric: the API is the only way to join channels.
            tracing::warn!("ChannelParticipation.Enabled was set to false, setting to true");
            raw.channel_participation.enabled = true;
        }
        let admin_tls = admin_tls(&raw.admin.tls, base_dir)?;
        let g = &raw.general;
        if g.authentication.verify_envelope_signatures.is_some() {
            return Err(invalid(
                "General.Authentication.VerifyEnvelopeSignatures",
                "is no longer supported: every Broadcast envelope is checked against the channel's /Channel/Writers policy (MSP membership and signature); remove the key",
            ));
        }
        if g.listen_address.trim().is_empty() {
            return Err(invalid("General.ListenAddress", "must not be empty"));
        }
        let tls = if g.tls.enabled {
            Some(server_tls(&g.tls, base_dir, &GENERAL_TLS_KEYS)?)
        } else {
            None
        };
        let settings = support::check(&raw)?;
        let bootstrap_method = match bootstrap_method_text(g).as_str() {
            "file" => BootstrapMethod::File,
            "embedded" => BootstrapMethod::Embedded,
            "none" => BootstrapMethod::None,
            other => {
                return Err(invalid(
                    "General.BootstrapMethod",
                    format!("unknown method {other:?} (expected file, embedded or none)"),
                ))
            }
        };
        let bootstrap_file = g
            .bootstrap_file
            .as_deref()
            .filter(|s| !s.trim().is_empty())
            .or_else(|| {
                let old = g.genesis_file.trim();
                (!old.is_empty()).then(|| {
                    tracing::warn!(
                        "General.GenesisFile should be replaced by General.BootstrapFile"
                    );
                    old
                })
            })
            .map(|s| base_dir.join(s));
        if bootstrap_method == BootstrapMethod::File && bootstrap_file.is_none() {
            return Err(invalid(
                "General.BootstrapFile",
                "must name the genesis block when General.BootstrapMethod is file",
            ));
        }
        if g.backpressure.max_inflight_envelopes == 0 {
            return Err(invalid(
                "General.Backpressure.MaxInflightEnvelopes",
                "must be at least 1",
            ));
        }
        let max_inflight_bytes = parse_byte_size(&g.backpressure.max_inflight_bytes)
            .filter(|&b| b > 0 && b <= u32::MAX as usize)
            .ok_or_else(|| {
                invalid(
                    "General.Backpressure.MaxInflightBytes",
                    format!(
                        "{:?} is not a size between 1 byte and 4 GB (e.g. \"100 MB\")",
                        g.backpressure.max_inflight_bytes
                    ),
                )
            })?;
        if g.local_msp_dir.trim().is_empty() {
            return Err(invalid(
                "General.LocalMSPDir",
                "must name the MSP folder of the node's signing identity",
            ));
        }
        if g.local_msp_id.trim().is_empty() {
            return Err(invalid(
                "General.LocalMSPID",
                "must name the MSP of the node's signing identity",
            ));
        }
        let local_msp = LocalMsp {
            dir: base_dir.join(&g.local_msp_dir),
            id: g.local_msp_id.clone(),
            development_fallback: false,
        };
        if raw.file_ledger.location.trim().is_empty() {
            return Err(invalid("FileLedger.Location", "must not be empty"));
        }
        let listen_address = host_port(&g.listen_address, g.listen_port);
        let cluster = cluster_config(&raw, tls.as_ref(), &settings, base_dir)?;
        let max_join_body_bytes = parse_byte_size(&raw.channel_participation.max_request_body_size)
            .ok_or_else(|| {
                invalid(
                    "ChannelParticipation.MaxRequestBodySize",
                    format!(
                        "{:?} is not a size (e.g. \"1 MB\", \"512 KB\", 1048576)",
                        raw.channel_participation.max_request_body_size
                    ),
                )
            })?;
        let address = |a: &str| Some(a.trim().to_string()).filter(|a| !a.is_empty());
        Ok(NodeConfig {
            tls,
            no_expiration_checks: g.authentication.no_expiration_checks,
            admin_address: address(&raw.admin.listen_address),
            admin_tls,
            channel_participation: raw.channel_participation.enabled,
            max_join_body_bytes,
            operations_address: address(&raw.operations.listen_address),
            operations_tls: operations_tls(&raw.operations.tls, base_dir)?,
            admin_http: settings.admin_http,
            operations_http: settings.operations_http,
            listen_address,
            bootstrap_method,
            bootstrap_file,
            ledger_dir: base_dir.join(&raw.file_ledger.location),
            max_inflight_envelopes: g.backpressure.max_inflight_envelopes as usize,
            max_inflight_bytes,
            wal_dir: base_dir.join(&raw.consensus.wal_dir),
            snap_dir: base_dir.join(&raw.consensus.snap_dir),
            local_msp,
            grpc: settings.grpc,
            metrics_provider: settings.metrics_provider,
            authentication_time_window: settings.authentication_time_window,
            cluster,
            kafka: kafka::KafkaSettings::from_section(&raw.kafka, base_dir)?,
            raw,
        })
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The default of `General.Cluster.SendBufferSize`, also used for zero.
const DEFAULT_SEND_BUFFER_SIZE: usize = 100;

fn cluster_config(
    raw: &OrdererConfig,
    tls: Option<&ServerTls>,
    settings: &support::Settings,
    base_dir: &Path,
) -> Result<ClusterConfig, ConfigError> {
    let c = &raw.general.cluster;
    const ENABLED: &str = "General.TLS.Enabled";
    let read = |key: &'static str, path: &str| read_pem_file(key, ENABLED, base_dir, path);
    let mut root_cas_pem = Vec::new();
    for path in c.root_cas.iter().filter(|p| !p.trim().is_empty()) {
        root_cas_pem.extend(read("General.Cluster.RootCAs", path)?);
        root_cas_pem.push(b'\n');
    }
    let client_tls = match tls {
        None => None,
        Some(tls) => {
            let (certificate, key) = (c.client_certificate.trim(), c.client_private_key.trim());
            let (certificate_pem, private_key_pem) = match (certificate.is_empty(), key.is_empty())
            {
                // As Fabric: the node's server certificate is its client one too.
                (true, true) => (tls.certificate_pem.clone(), tls.private_key_pem.clone()),
                (false, false) => (
                    read("General.Cluster.ClientCertificate", certificate)?,
                    read("General.Cluster.ClientPrivateKey", key)?,
                ),
                (true, false) => {
                    return Err(invalid(
                        "General.Cluster.ClientCertificate",
                        "must be given with General.Cluster.ClientPrivateKey",
                    ))
                }
                (false, true) => {
                    return Err(invalid(
                        "General.Cluster.ClientPrivateKey",
                        "must be given with General.Cluster.ClientCertificate",
                    ))
                }
            };
            let mut server_root_cas_pem = root_cas_pem.clone();
            // The built-in file names General.TLS.RootCAs that may not
            // exist; the other orderers' certificates are also known from
            // the channels' configs, so one that cannot be read is skipped.
            for path in raw
                .general
                .tls
                .root_cas
                .iter()
                .filter(|p| !p.trim().is_empty())
            {
                match read("General.TLS.RootCAs", path) {
                    Ok(pem) => {
                        server_root_cas_pem.extend(pem);
                        server_root_cas_pem.push(b'\n');
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "a CA of General.TLS.RootCAs is not trusted for other orderers")
                    }
                }
            }
            Some(ClusterClientTls {
                certificate_pem,
                private_key_pem,
                server_root_cas_pem,
            })
        }
    };
    let listener = if settings.cluster_listener {
        Some(ClusterListener {
            address: host_port(c.listen_address.trim(), c.listen_port),
            certificate_pem: read("General.Cluster.ServerCertificate", &c.server_certificate)?,
            private_key_pem: read("General.Cluster.ServerPrivateKey", &c.server_private_key)?,
        })
    } else {
        None
    };
    Ok(ClusterConfig {
        send_buffer_size: match c.send_buffer_size {
            0 => DEFAULT_SEND_BUFFER_SIZE,
            n => n as usize,
        },
        dial_timeout: settings.cluster_dial_timeout,
        client_tls,
        listener,
        root_cas_pem,
    })
}

/// The keys of one TLS section, for messages that name the key at fault.
struct TlsKeys {
    enabled: &'static str,
    certificate: &'static str,
    private_key: &'static str,
    client_auth_required: &'static str,
    client_root_cas: &'static str,
}

const GENERAL_TLS_KEYS: TlsKeys = TlsKeys {
    enabled: "General.TLS.Enabled",
    certificate: "General.TLS.Certificate",
    private_key: "General.TLS.PrivateKey",
    client_auth_required: "General.TLS.ClientAuthRequired",
    client_root_cas: "General.TLS.ClientRootCAs",
};

const ADMIN_TLS_KEYS: TlsKeys = TlsKeys {
    enabled: "Admin.TLS.Enabled",
    certificate: "Admin.TLS.Certificate",
    private_key: "Admin.TLS.PrivateKey",
    client_auth_required: "Admin.TLS.ClientAuthRequired",
    client_root_cas: "Admin.TLS.ClientRootCAs",
};

/// Admin.TLS: with TLS on, mutual TLS is required, as Fabric's orderer
/// requires it (it refuses to start with ClientAuthRequired false).
fn admin_tls(tls: &Tls, base_dir: &Path) -> Result<Option<ServerTls>, ConfigError> {
    if !tls.enabled {
        return Ok(None);
    }
    let keys = &ADMIN_TLS_KEYS;
    if !tls.client_auth_required {
        return Err(invalid(
            keys.client_auth_required,
            format!("must be set to true if {} is set to true", keys.enabled),
        ));
    }
    server_tls(tls, base_dir, keys).map(Some)
}

/// Fills keys given empty with Fabric's defaults, as Fabric's loader does.
fn complete(raw: &mut OrdererConfig) {
    let g = &mut raw.general;
    let defaults = General::default();
    for (value, default) in [
        (&mut g.listen_address, defaults.listen_address),
        (&mut g.local_msp_dir, defaults.local_msp_dir),
        (&mut g.local_msp_id, defaults.local_msp_id),
    ] {
        if value.trim().is_empty() {
            *value = default;
        }
    }
}

/// General.BootstrapMethod in lower case: empty means Fabric 1.x's
/// GenesisMethod if that is given, else `none`, as in Fabric 3.
fn bootstrap_method_text(g: &General) -> String {
    let method = g.bootstrap_method.trim();
    if !method.is_empty() {
        return method.to_ascii_lowercase();
    }
    let old = g.genesis_method.trim();
    if old.is_empty() {
        "none".into()
    } else {
        tracing::warn!("General.GenesisMethod should be replaced by General.BootstrapMethod");
        old.to_ascii_lowercase()
    }
}

fn server_tls(tls: &Tls, base_dir: &Path, keys: &TlsKeys) -> Result<ServerTls, ConfigError> {
    let files = read_tls_files(tls, base_dir, keys)?;
    if tls.client_auth_required && files.client_root_cas_pem.is_empty() {
        return Err(invalid(
            keys.client_root_cas,
            format!(
                "must name at least one CA when {} is true",
                keys.client_auth_required
            ),
        ));
    }
    Ok(files)
}

/// The PEM files a TLS section names, each error naming its key.
fn read_tls_files(tls: &Tls, base_dir: &Path, keys: &TlsKeys) -> Result<ServerTls, ConfigError> {
    let read = |key: &'static str, path: &str| read_pem_file(key, keys.enabled, base_dir, path);
    let mut client_root_cas_pem = Vec::new();
    for path in &tls.client_root_cas {
        client_root_cas_pem.extend(read(keys.client_root_cas, path)?);
        client_root_cas_pem.push(b'\n');
    }
    Ok(ServerTls {
        certificate_pem: read(keys.certificate, &tls.certificate)?,
        private_key_pem: read(keys.private_key, &tls.private_key)?,
        client_auth_required: tls.client_auth_required,
        client_root_cas_pem,
    })
}

const OPERATIONS_TLS_KEYS: TlsKeys = TlsKeys {
    enabled: "Operations.TLS.Enabled",
    certificate: "Operations.TLS.Certificate",
    private_key: "Operations.TLS.PrivateKey",
    client_auth_required: "Operations.TLS.ClientAuthRequired",
    client_root_cas: "Operations.TLS.ClientRootCAs",
};

/// `Operations.TLS`, read when enabled. As in Fabric, `ClientAuthRequired`
/// with no `ClientRootCAs` is allowed (no client can then authenticate).
fn operations_tls(tls: &Tls, base_dir: &Path) -> Result<Option<ServerTls>, ConfigError> {
    if !tls.enabled {
        return Ok(None);
    }
    read_tls_files(tls, base_dir, &OPERATIONS_TLS_KEYS).map(Some)
}

fn read_pem_file(
    key: &'static str,
    enabled_key: &str,
    base_dir: &Path,
    path: &str,
) -> Result<Vec<u8>, ConfigError> {
    if path.trim().is_empty() {
        return Err(invalid(
            key,
            format!("must name a PEM file when {enabled_key} is true"),
        ));
    }
    let full = base_dir.join(path);
    let bytes = std::fs::read(&full)
        .map_err(|e| invalid(key, format!("cannot read {}: {e}", full.display())))?;
    if !String::from_utf8_lossy(&bytes).contains("-----BEGIN") {
        return Err(invalid(
            key,
            format!("{} is not a PEM file", full.display()),
        ));
    }
    Ok(bytes)
}

/// "1 MB", "512 KB", "2MB", "1048576": sizes as Fabric's config files write them.
pub fn parse_byte_size(text: &str) -> Option<usize> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: usize = number.parse().ok()?;
    let factor = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "K" => 1 << 10,
        "MB" | "M" => 1 << 20,
        "GB" | "G" => 1 << 30,
        _ => return None,
    };
    number.checked_mul(factor)
}

pub(super) fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn vars(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn built_in_default_is_solo_embedded_on_loopback() {
        let cfg = NodeConfig::load_with_env(None, vars(&[])).expect("default loads");
        assert_eq!(cfg.listen_address, "127.0.0.1:7050");
        assert_eq!(cfg.bootstrap_method, BootstrapMethod::Embedded);
        assert_eq!(cfg.ledger_dir, PathBuf::from("ordo-data"));
        assert_eq!(cfg.max_inflight_envelopes, 2048);
    }

    #[test]
    fn only_the_built_in_config_may_fall_back_to_a_development_identity() {
        let built_in = NodeConfig::load_with_env(None, vars(&[])).expect("default loads");
        assert_eq!(built_in.local_msp.dir, PathBuf::from("msp"));
        assert_eq!(built_in.local_msp.id, "SampleOrg");
        assert!(built_in.local_msp.development_fallback);

        let named = NodeConfig::load_with_env(
            None,
            vars(&[
                ("ORDERER_GENERAL_LOCALMSPDIR", "/etc/ordo/msp"),
                ("ORDERER_GENERAL_LOCALMSPID", "OrdererMSP"),
            ]),
        )
        .expect("loads");
        assert_eq!(named.local_msp.dir, PathBuf::from("/etc/ordo/msp"));
        assert_eq!(named.local_msp.id, "OrdererMSP");
        assert!(!named.local_msp.development_fallback);

        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("orderer.yaml");
        std::fs::write(&file, "General:\n  LocalMSPDir: msp\n").expect("write");
        let user = NodeConfig::load_with_env(Some(&file), vars(&[])).expect("loads");
        assert_eq!(user.local_msp.dir, dir.path().join("msp"));
        assert!(!user.local_msp.development_fallback);

        // Given empty, the keys take Fabric's defaults, as Fabric's loader does.
        let empty = NodeConfig::load_with_env(
            None,
            vars(&[
                ("ORDERER_GENERAL_LOCALMSPDIR", " "),
                ("ORDERER_GENERAL_LOCALMSPID", ""),
            ]),
        )
        .expect("loads");
        assert_eq!(empty.local_msp.dir, PathBuf::from("msp"));
        assert_eq!(empty.local_msp.id, "SampleOrg");
    }

    #[test]
    fn environment_overrides_keys_case_insensitively() {
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[
                ("ORDERER_GENERAL_LISTENPORT", "7051"),
                ("ORDERER_FILELEDGER_LOCATION", "/data"),
                ("ORDERER_GENERAL_BACKPRESSURE_MAXINFLIGHTENVELOPES", "10"),
                ("ORDERER_GENERAL_TLS_ENABLED", "false"),
                ("UNRELATED_GENERAL_LISTENPORT", "1"),
            ]),
        )
        .expect("overrides apply");
        assert_eq!(cfg.listen_address, "127.0.0.1:7051");
        assert_eq!(cfg.ledger_dir, PathBuf::from("/data"));
        assert_eq!(cfg.max_inflight_envelopes, 10);
    }

    #[test]
    fn environment_overrides_keys_missing_from_the_file() {
        let yaml = "General:\n  ListenPort: 9000\n";
        let cfg = NodeConfig::from_yaml(
            yaml,
            Path::new("/etc/ordo"),
            vars(&[
                ("ORDERER_GENERAL_BOOTSTRAPMETHOD", "file"),
                ("ORDERER_GENERAL_BOOTSTRAPFILE", "genesis.block"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.bootstrap_method, BootstrapMethod::File);
        assert_eq!(
            cfg.bootstrap_file,
            Some(PathBuf::from("/etc/ordo/genesis.block"))
        );
        assert_eq!(cfg.ledger_dir, PathBuf::from("/etc/ordo/ordo-data"));
        assert_eq!(cfg.listen_address, "127.0.0.1:9000");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err =
            NodeConfig::load_with_env(None, vars(&[("ORDERER_GENERAL_LISTENPORT", "seventy")]))
                .expect_err("not a port");
        assert!(err.to_string().contains("General.ListenPort"), "{err}");

        let err =
            NodeConfig::from_yaml("General:\n  ListenPort: 99999\n", Path::new(""), vars(&[]))
                .expect_err("out of range");
        assert!(err.to_string().contains("General.ListenPort"), "{err}");

        let err =
            NodeConfig::load_with_env(None, vars(&[("ORDERER_GENERAL_BOOTSTRAPMETHOD", "magic")]))
                .expect_err("unknown method");
        assert!(err.to_string().contains("General.BootstrapMethod"), "{err}");

        let err =
            NodeConfig::load_with_env(None, vars(&[("ORDERER_GENERAL_BOOTSTRAPMETHOD", "file")]))
                .expect_err("file without path");
        assert!(err.to_string().contains("General.BootstrapFile"), "{err}");

        let err = NodeConfig::load_with_env(
            None,
            vars(&[("ORDERER_GENERAL_BACKPRESSURE_MAXINFLIGHTENVELOPES", "0")]),
        )
        .expect_err("zero bound");
        assert!(err.to_string().contains("MaxInflightEnvelopes"), "{err}");
    }

    #[test]
    fn listeners_and_sizes() {
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[
                ("ORDERER_ADMIN_LISTENADDRESS", "127.0.0.1:0"),
                ("ORDERER_CHANNELPARTICIPATION_MAXREQUESTBODYSIZE", "512 KB"),
                ("ORDERER_OPERATIONS_LISTENADDRESS", ""),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.admin_address.as_deref(), Some("127.0.0.1:0"));
        assert_eq!(cfg.max_join_body_bytes, 512 * 1024);
        assert!(cfg.channel_participation);
        assert_eq!(cfg.operations_address, None);
        assert_eq!(parse_byte_size("1 MB"), Some(1 << 20));
        assert_eq!(parse_byte_size("100"), Some(100));
        assert_eq!(parse_byte_size("lots"), None);
        let err = NodeConfig::load_with_env(
            None,
            vars(&[("ORDERER_CHANNELPARTICIPATION_MAXREQUESTBODYSIZE", "1 XB")]),
        )
        .expect_err("bad size");
        assert!(err.to_string().contains("MaxRequestBodySize"), "{err}");
    }

    #[test]
    fn tls_needs_readable_pem_files() {
        let err = NodeConfig::load_with_env(None, vars(&[("ORDERER_GENERAL_TLS_ENABLED", "true")]))
            .expect_err("no certificate");
        assert!(err.to_string().contains("General.TLS.Certificate"), "{err}");

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), "-----BEGIN CERTIFICATE-----\n")
            .expect("write");
        std::fs::write(dir.path().join("key.pem"), "not pem").expect("write");
        let yaml = "General:\n  TLS:\n    Enabled: true\n    Certificate: cert.pem\n    PrivateKey: key.pem\n";
        let err = NodeConfig::from_yaml(yaml, dir.path(), vars(&[])).expect_err("bad key");
        assert!(err.to_string().contains("General.TLS.PrivateKey"), "{err}");

        std::fs::write(dir.path().join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("write");
        let cfg = NodeConfig::from_yaml(yaml, dir.path(), vars(&[])).expect("loads");
        let tls = cfg.tls.expect("tls");
        assert!(!tls.client_auth_required);

        let err = NodeConfig::from_yaml(
            yaml,
            dir.path(),
            vars(&[("ORDERER_GENERAL_TLS_CLIENTAUTHREQUIRED", "true")]),
        )
        .expect_err("no client CAs");
        assert!(err.to_string().contains("ClientRootCAs"), "{err}");

        // Lists from the environment, as Fabric writes them.
        let cfg = NodeConfig::from_yaml(
            yaml,
            dir.path(),
            vars(&[
                ("ORDERER_GENERAL_TLS_CLIENTAUTHREQUIRED", "true"),
                ("ORDERER_GENERAL_TLS_CLIENTROOTCAS", "[cert.pem, cert.pem]"),
            ]),
        )
        .expect("loads");
        let tls = cfg.tls.expect("tls");
        assert!(tls.client_auth_required);
        assert_eq!(
            tls.client_root_cas_pem.len(),
            2 * ("-----BEGIN CERTIFICATE-----\n".len() + 1)
        );
    }

    #[test]
    fn general_cluster_is_read() {
        let cfg = NodeConfig::load_with_env(None, vars(&[])).expect("default loads");
        assert_eq!(cfg.cluster.send_buffer_size, 100);
        assert_eq!(cfg.cluster.dial_timeout, Duration::from_secs(5));
        assert!(cfg.cluster.client_tls.is_none(), "no TLS, plaintext");
        assert!(cfg.cluster.listener.is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        for (file, text) in [
            ("server.crt", "-----BEGIN CERTIFICATE-----\nserver\n"),
            ("server.key", "-----BEGIN PRIVATE KEY-----\nserver\n"),
            ("client.crt", "-----BEGIN CERTIFICATE-----\nclient\n"),
            ("client.key", "-----BEGIN PRIVATE KEY-----\nclient\n"),
            ("ca.crt", "-----BEGIN CERTIFICATE-----\nca\n"),
        ] {
            std::fs::write(dir.path().join(file), text).expect("write");
        }
        let yaml = "General:
  TLS:
    Enabled: true
    Certificate: server.crt
    PrivateKey: server.key
    RootCAs: [ca.crt, missing.crt]
  Cluster:
    SendBufferSize: 0
    DialTimeout: 2s
    RootCAs: [ca.crt]
";
        let load = |extra: &[(&str, &str)]| NodeConfig::from_yaml(yaml, dir.path(), vars(extra));
        let cfg = load(&[]).expect("loads");
        assert_eq!(cfg.cluster.send_buffer_size, 100, "zero is the default");
        assert_eq!(cfg.cluster.dial_timeout, Duration::from_secs(2));
        assert!(String::from_utf8_lossy(&cfg.cluster.root_cas_pem).contains("ca"));
        let client = cfg.cluster.client_tls.expect("client TLS");
        // As Fabric: the server's certificate, when the cluster names none.
        assert!(String::from_utf8_lossy(&client.certificate_pem).contains("server"));
        // Cluster.RootCAs and the readable General.TLS.RootCAs.
        assert_eq!(
            String::from_utf8_lossy(&client.server_root_cas_pem)
                .matches("ca\n")
                .count(),
            2
        );

        let cfg = load(&[
            ("ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE", "client.crt"),
            ("ORDERER_GENERAL_CLUSTER_CLIENTPRIVATEKEY", "client.key"),
        ])
        .expect("loads");
        let client = cfg.cluster.client_tls.expect("client TLS");
        assert!(String::from_utf8_lossy(&client.certificate_pem).contains("client"));
        assert!(String::from_utf8_lossy(&client.private_key_pem).contains("client"));
        let err = load(&[("ORDERER_GENERAL_CLUSTER_CLIENTCERTIFICATE", "client.crt")])
            .expect_err("a certificate without its key");
        assert!(
            err.to_string().contains("General.Cluster.ClientPrivateKey"),
            "{err}"
        );

        let listener = [
            ("ORDERER_GENERAL_CLUSTER_LISTENADDRESS", "0.0.0.0"),
            ("ORDERER_GENERAL_CLUSTER_LISTENPORT", "7051"),
            ("ORDERER_GENERAL_CLUSTER_SERVERCERTIFICATE", "server.crt"),
            ("ORDERER_GENERAL_CLUSTER_SERVERPRIVATEKEY", "server.key"),
        ];
        let cfg = load(&listener).expect("loads");
        let own = cfg.cluster.listener.expect("a listener of its own");
        assert_eq!(own.address, "0.0.0.0:7051");
        let err = load(&listener[..3]).expect_err("three of four");
        assert!(
            err.to_string().contains("General.Cluster.ServerPrivateKey"),
            "{err}"
        );
        let mut plaintext = listener.to_vec();
        plaintext.push(("ORDERER_GENERAL_TLS_ENABLED", "false"));
        let err = load(&plaintext).expect_err("no TLS");
        assert!(err.to_string().contains("General.TLS.Enabled"), "{err}");
    }

    /// Fabric 3.1's sample orderer.yaml, every key in its layout.
    const FABRIC_SAMPLE: &str = include_str!("../../../tests/fixtures/fabric-3.1-orderer.yaml");

    #[test]
    fn fabrics_sample_loads_with_its_empty_values() {
        let cfg = NodeConfig::from_yaml(
            FABRIC_SAMPLE,
            Path::new("/etc/hyperledger/fabric"),
            vars(&[]),
        )
        .expect("Fabric's sample loads");
        assert_eq!(cfg.listen_address, "127.0.0.1:7050");
        assert_eq!(cfg.bootstrap_method, BootstrapMethod::None);
        assert_eq!(cfg.bootstrap_file, None);
        assert!(cfg.tls.is_none());
        assert!(cfg.raw.general.tls.client_root_cas.is_empty());
        assert_eq!(
            cfg.ledger_dir,
            PathBuf::from("/var/hyperledger/production/orderer")
        );
        assert_eq!(cfg.metrics_provider, MetricsProvider::Disabled);
        assert_eq!(cfg.grpc, GrpcServerSettings::default());
        assert_eq!(cfg.authentication_time_window, Duration::from_secs(15 * 60));
        assert!(!cfg.no_expiration_checks);
        assert_eq!(cfg.operations_address.as_deref(), Some("127.0.0.1:8443"));
        assert_eq!(cfg.admin_address.as_deref(), Some("127.0.0.1:9443"));
        assert_eq!(cfg.raw.general.local_msp_id, "SampleOrg");
        assert_eq!(cfg.raw.general.cluster.send_buffer_size, 100);
        assert!(cfg.raw.admin.tls.client_auth_required);
    }

    #[test]
    fn a_users_file_without_bootstrap_method_means_none() {
        let cfg = NodeConfig::from_yaml("General:\n  ListenPort: 7051\n", Path::new(""), vars(&[]))
            .expect("loads");
        assert_eq!(cfg.bootstrap_method, BootstrapMethod::None);
        // Fabric's other defaults for keys left out.
        assert_eq!(cfg.metrics_provider, MetricsProvider::Disabled);
        assert_eq!(cfg.authentication_time_window, Duration::from_secs(900));
        // Ordo's own file keeps its embedded channel and its /metrics.
        let builtin = NodeConfig::load_with_env(None, vars(&[])).expect("built-in");
        assert_eq!(builtin.bootstrap_method, BootstrapMethod::Embedded);
        assert_eq!(builtin.metrics_provider, MetricsProvider::Prometheus);
    }

    #[test]
    fn an_unknown_key_stops_loading_naming_it() {
        let yaml = FABRIC_SAMPLE.replace(
            "    Keepalive:\n",
            "    Keepalive:\n        ServerMaxInterval: 1s\n",
        );
        let err = NodeConfig::from_yaml(&yaml, Path::new(""), vars(&[])).expect_err("unknown key");
        assert!(matches!(err, ConfigError::UnknownKeys { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("General.Keepalive.ServerMaxInterval"),
            "{err}"
        );
        let err = NodeConfig::from_yaml("Kafak:\n  Verbose: true\n", Path::new(""), vars(&[]))
            .expect_err("unknown section");
        assert!(err.to_string().contains("Kafak"), "{err}");

        // An environment variable that matches no key is ignored, as in Fabric.
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[("ORDERER_GENERAL_KEEPALIVE_SERVERMAXINTERVAL", "1s")]),
        )
        .expect("ignored");
        assert_eq!(cfg.grpc, GrpcServerSettings::default());
    }

    #[test]
    fn keys_that_take_effect() {
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[
                ("ORDERER_GENERAL_KEEPALIVE_SERVERINTERVAL", "30s"),
                ("ORDERER_GENERAL_KEEPALIVE_SERVERTIMEOUT", "2s"),
                ("ORDERER_GENERAL_MAXRECVMSGSIZE", "1048576"),
                ("ORDERER_GENERAL_MAXSENDMSGSIZE", "2 MB"),
                ("ORDERER_GENERAL_AUTHENTICATION_TIMEWINDOW", "1h30m"),
                ("ORDERER_GENERAL_AUTHENTICATION_NOEXPIRATIONCHECKS", "true"),
                ("ORDERER_METRICS_PROVIDER", "disabled"),
                ("ORDERER_GENERAL_KEEPALIVE_SERVERMININTERVAL", "10s"),
                ("ORDERER_GENERAL_CONNECTIONTIMEOUT", "3s"),
                ("ORDERER_GENERAL_MAXCONNECTIONS", "10"),
                ("ORDERER_GENERAL_MAXCONCURRENTSTREAMS", "7"),
                ("ORDERER_GENERAL_CONNECTIONIDLETIMEOUT", "1m"),
                ("ORDERER_GENERAL_BACKPRESSURE_MAXRECEIVINGBYTES", "64 MB"),
                ("ORDERER_ADMIN_READHEADERTIMEOUT", "1s"),
                ("ORDERER_ADMIN_MAXCONNECTIONS", "3"),
                ("ORDERER_OPERATIONS_READTIMEOUT", "4s"),
                ("ORDERER_OPERATIONS_WRITETIMEOUT", "5s"),
            ]),
        )
        .expect("loads");
        assert_eq!(
            cfg.grpc,
            GrpcServerSettings {
                max_recv_msg_size: 1 << 20,
                max_send_msg_size: 2 << 20,
                keepalive_interval: Duration::from_secs(30),
                keepalive_timeout: Duration::from_secs(2),
                keepalive_min_interval: Duration::from_secs(10),
                connection_timeout: Duration::from_secs(3),
                max_connections: 10,
                max_concurrent_streams: 7,
                connection_idle_timeout: Duration::from_secs(60),
                max_receiving_bytes: 64 << 20,
            }
        );
        let defaults = HttpServerSettings::default();
        assert_eq!(
            cfg.admin_http,
            HttpServerSettings {
                read_header_timeout: Duration::from_secs(1),
                max_connections: 3,
                ..defaults
            }
        );
        assert_eq!(
            cfg.operations_http,
            HttpServerSettings {
                read_timeout: Duration::from_secs(4),
                write_timeout: Duration::from_secs(5),
                ..defaults
            }
        );
        assert_eq!(cfg.authentication_time_window, Duration::from_secs(5400));
        assert!(cfg.no_expiration_checks);
        assert_eq!(cfg.metrics_provider, MetricsProvider::Disabled);

        // Zero means Fabric's default.
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[
                ("ORDERER_GENERAL_KEEPALIVE_SERVERINTERVAL", "0"),
                ("ORDERER_GENERAL_MAXRECVMSGSIZE", "0"),
                ("ORDERER_GENERAL_AUTHENTICATION_TIMEWINDOW", "0s"),
                ("ORDERER_GENERAL_CONNECTIONTIMEOUT", "0"),
                ("ORDERER_GENERAL_MAXCONNECTIONS", "0"),
                ("ORDERER_GENERAL_BACKPRESSURE_MAXRECEIVINGBYTES", "0"),
                ("ORDERER_ADMIN_WRITETIMEOUT", "0s"),
            ]),
        )
        .expect("loads");
        assert_eq!(cfg.grpc, GrpcServerSettings::default());
        assert_eq!(cfg.admin_http, HttpServerSettings::default());
        assert_eq!(cfg.authentication_time_window, Duration::from_secs(900));
    }

    #[test]
    fn values_ordo_cannot_honour_are_refused_saying_so() {
        for (variable, value, key) in [
            (
                "ORDERER_GENERAL_THROTTLING_RATE",
                "1000",
                "General.Throttling.Rate",
            ),
            (
                "ORDERER_GENERAL_BCCSP_DEFAULT",
                "PKCS11",
                "General.BCCSP.Default",
            ),
            (
                "ORDERER_GENERAL_BCCSP_SW_SECURITY",
                "384",
                "General.BCCSP.SW.Security",
            ),
            (
                "ORDERER_GENERAL_BCCSP_SW_FILEKEYSTORE_KEYSTORE",
                "/keys",
                "General.BCCSP.SW.FileKeyStore.KeyStore",
            ),
            ("ORDERER_METRICS_PROVIDER", "statsd", "Metrics.Provider"),
            (
                "ORDERER_GENERAL_PROFILE_ENABLED",
                "true",
                "General.Profile.Enabled",
            ),
            (
                "ORDERER_DEBUG_BROADCASTTRACEDIR",
                "/tmp/trace",
                "Debug.BroadcastTraceDir",
            ),
            (
                "ORDERER_GENERAL_TLS_TLSHANDSHAKETIMESHIFT",
                "1h",
                "General.TLS.TLSHandshakeTimeShift",
            ),
        ] {
            let err =
                NodeConfig::load_with_env(None, vars(&[(variable, value)])).expect_err(variable);
            assert!(
                matches!(err, ConfigError::Unsupported { .. }),
                "{variable}: {err}"
            );
            let text = err.to_string();
            assert!(text.contains(key) && text.contains("Ordo"), "{text}");
        }
        for (variable, value, key) in [
            (
                "ORDERER_GENERAL_KEEPALIVE_SERVERTIMEOUT",
                "soon",
                "General.Keepalive.ServerTimeout",
            ),
            (
                "ORDERER_GENERAL_MAXRECVMSGSIZE",
                "lots",
                "General.MaxRecvMsgSize",
            ),
            ("ORDERER_METRICS_PROVIDER", "graphite", "Metrics.Provider"),
            (
                "ORDERER_GENERAL_CONNECTIONIDLETIMEOUT",
                "a while",
                "General.ConnectionIdleTimeout",
            ),
            (
                "ORDERER_GENERAL_BACKPRESSURE_MAXRECEIVINGBYTES",
                "8 GB",
                "General.Backpressure.MaxReceivingBytes",
            ),
            (
                "ORDERER_OPERATIONS_READHEADERTIMEOUT",
                "later",
                "Operations.ReadHeaderTimeout",
            ),
            (
                "ORDERER_GENERAL_CLUSTER_DIALTIMEOUT",
                "5",
                "General.Cluster.DialTimeout",
            ),
            // The cluster's own listener needs all four of its keys.
            (
                "ORDERER_GENERAL_CLUSTER_LISTENPORT",
                "7051",
                "General.Cluster.ListenAddress",
            ),
        ] {
            if key == "General.Cluster.DialTimeout" {
                // A bare number is nanoseconds, as a YAML number is in Fabric.
                NodeConfig::load_with_env(None, vars(&[(variable, value)])).expect(variable);
                continue;
            }
            let err =
                NodeConfig::load_with_env(None, vars(&[(variable, value)])).expect_err(variable);
            assert!(err.to_string().contains(key), "{err}");
        }
    }

    #[test]
    fn fabric_2_keys_are_read() {
        let yaml = "General:
  GenesisMethod: file
  GenesisFile: genesis.block
FileLedger:
  Location: ledger
  Prefix: hyperledger-fabric-ordererledger
Kafka:
  Retry:
    ShortInterval: 5s
    ShortTotal: 10m
    LongInterval: 5m
    LongTotal: 12h
    NetworkTimeouts:
      DialTimeout: 10s
      ReadTimeout: 10s
      WriteTimeout: 10s
    Metadata:
      RetryBackoff: 250ms
      RetryMax: 3
    Producer:
      RetryBackoff: 100ms
      RetryMax: 3
    Consumer:
      RetryBackoff: 2s
  Topic:
    ReplicationFactor: 3
  Verbose: false
  TLS:
    Enabled: false
    PrivateKey:
    Certificate:
    RootCAs:
  SASLPlain:
    Enabled: false
    User:
    Password:
  Version:
";
        let cfg = NodeConfig::from_yaml(yaml, Path::new("/etc/ordo"), vars(&[])).expect("loads");
        assert_eq!(cfg.bootstrap_method, BootstrapMethod::File);
        assert_eq!(
            cfg.bootstrap_file,
            Some(PathBuf::from("/etc/ordo/genesis.block"))
        );
        assert_eq!(cfg.raw.kafka.retry.short_interval, "5s");
        assert_eq!(cfg.raw.kafka.topic.replication_factor, 3);
    }

    #[test]
    fn operations_tls_is_read_when_enabled() {
        let cfg = NodeConfig::load_with_env(None, vars(&[])).expect("loads");
        assert!(cfg.operations_tls.is_none());
        let err =
            NodeConfig::load_with_env(None, vars(&[("ORDERER_OPERATIONS_TLS_ENABLED", "true")]))
                .expect_err("no certificate");
        assert!(
            err.to_string().contains("Operations.TLS.Certificate"),
            "{err}"
        );

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), "-----BEGIN CERTIFICATE-----\n")
            .expect("write");
        std::fs::write(dir.path().join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("write");
        let yaml = "Operations:\n  TLS:\n    Enabled: true\n    Certificate: cert.pem\n    PrivateKey: key.pem\n    ClientAuthRequired: true\n";
        let cfg = NodeConfig::from_yaml(yaml, dir.path(), vars(&[])).expect("loads");
        let tls = cfg.operations_tls.expect("operations TLS");
        assert!(tls.client_auth_required);
        assert!(tls.client_root_cas_pem.is_empty());

        let err = NodeConfig::from_yaml(
            yaml,
            dir.path(),
            vars(&[("ORDERER_OPERATIONS_TLS_CLIENTROOTCAS", "[missing.pem]")]),
        )
        .expect_err("missing CA file");
        assert!(
            err.to_string().contains("Operations.TLS.ClientRootCAs"),
            "{err}"
        );
    }

    #[test]
    fn admin_tls_requires_mutual_tls_as_fabric_does() {
        let cfg = NodeConfig::load_with_env(None, vars(&[])).expect("default loads");
        assert!(cfg.admin_tls.is_none());

        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("cert.pem"), "-----BEGIN CERTIFICATE-----\n")
            .expect("write");
        std::fs::write(dir.path().join("key.pem"), "-----BEGIN PRIVATE KEY-----\n").expect("write");
        std::fs::write(dir.path().join("ca.pem"), "-----BEGIN CERTIFICATE-----\n").expect("write");
        let yaml = "Admin:\n  TLS:\n    Enabled: true\n    Certificate: cert.pem\n    PrivateKey: key.pem\n";
        let err = NodeConfig::from_yaml(yaml, dir.path(), vars(&[])).expect_err("no client auth");
        assert_eq!(
            err.to_string(),
            "invalid node config: Admin.TLS.ClientAuthRequired: must be set to true if \
             Admin.TLS.Enabled is set to true"
        );

        let mutual = vars(&[("ORDERER_ADMIN_TLS_CLIENTAUTHREQUIRED", "true")]);
        let err = NodeConfig::from_yaml(yaml, dir.path(), mutual.clone()).expect_err("no CAs");
        assert!(err.to_string().contains("Admin.TLS.ClientRootCAs"), "{err}");

        let mut with_cas = mutual.clone();
        with_cas.extend(vars(&[("ORDERER_ADMIN_TLS_CLIENTROOTCAS", "[ca.pem]")]));
        let cfg = NodeConfig::from_yaml(yaml, dir.path(), with_cas.clone()).expect("loads");
        let tls = cfg.admin_tls.expect("admin TLS");
        assert!(tls.client_auth_required);
        assert!(!tls.client_root_cas_pem.is_empty());
        // The admin listener's TLS is its own: the main listener stays plain.
        assert!(cfg.tls.is_none());

        let mut missing_key = with_cas;
        missing_key.extend(vars(&[("ORDERER_ADMIN_TLS_PRIVATEKEY", "nosuch.pem")]));
        let err = NodeConfig::from_yaml(yaml, dir.path(), missing_key).expect_err("no key");
        assert!(err.to_string().contains("Admin.TLS.PrivateKey"), "{err}");
        assert!(err.to_string().contains("nosuch.pem"), "{err}");
    }

    #[test]
    fn channel_participation_is_forced_on() {
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[("ORDERER_CHANNELPARTICIPATION_ENABLED", "false")]),
        )
        .expect("loads");
        assert!(cfg.channel_participation);
        assert!(cfg.raw.channel_participation.enabled);
    }

    #[test]
    fn unreadable_file_is_reported_with_its_path() {
        let err =
            NodeConfig::load_with_env(Some(Path::new("/nonexistent/orderer.yaml")), vars(&[]))
                .expect_err("missing file");
        assert!(
            err.to_string().contains("/nonexistent/orderer.yaml"),
            "{err}"
        );
    }

    #[test]
    fn expiration_checks_are_on_unless_turned_off_and_the_old_signature_key_is_refused() {
        let cfg = NodeConfig::load_with_env(None, vars(&[])).expect("default");
        assert!(!cfg.no_expiration_checks);
        let cfg = NodeConfig::load_with_env(
            None,
            vars(&[("ORDERER_GENERAL_AUTHENTICATION_NOEXPIRATIONCHECKS", "true")]),
        )
        .expect("loads");
        assert!(cfg.no_expiration_checks);

        let old = "General:\n  Authentication:\n    VerifyEnvelopeSignatures: false\n";
        let err = NodeConfig::from_yaml(old, Path::new("."), vars(&[])).expect_err("removed key");
        assert!(
            err.to_string().contains(
                "General.Authentication.VerifyEnvelopeSignatures: is no longer supported"
            ),
            "{err}"
        );
        let err = NodeConfig::load_with_env(
            None,
            vars(&[(
                "ORDERER_GENERAL_AUTHENTICATION_VERIFYENVELOPESIGNATURES",
                "true",
            )]),
        )
        .expect_err("removed key from the environment");
        assert!(
            err.to_string().contains("VerifyEnvelopeSignatures"),
            "{err}"
        );
    }
}
