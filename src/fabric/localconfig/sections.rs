//! The sections of Fabric's orderer.yaml beyond listeners, ledger and
//! bootstrap: their keys, layout and Fabric's defaults. Which of them take
//! effect in Ordo, and which values are refused, is decided in `support`.
//!
//! Durations are kept as text and parsed when the config is checked, so a
//! bad value is refused with its key's name.

use serde::{Deserialize, Serialize};

/// `General.Keepalive`: HTTP/2 keepalive of the gRPC server.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Keepalive {
    pub server_min_interval: String,
    pub server_interval: String,
    pub server_timeout: String,
}

impl Default for Keepalive {
    fn default() -> Self {
        Keepalive {
            server_min_interval: "60s".into(),
            server_interval: "7200s".into(),
            server_timeout: "20s".into(),
        }
    }
}

/// `General.Backoff`: reconnection backoff of the node's own gRPC clients
/// (towards other orderers), kept for the replicated consenters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Backoff {
    pub base_delay: String,
    pub multiplier: f64,
    pub max_delay: String,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base_delay: "1s".into(),
            multiplier: 1.6,
            max_delay: "2m".into(),
        }
    }
}

/// `General.Throttling`: Fabric's rate limit on Broadcast, shared by the
/// clients active within `InactivityTimeout`. `Rate: 0` turns it off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Throttling {
    pub rate: u64,
    pub inactivity_timeout: String,
}

impl Default for Throttling {
    fn default() -> Self {
        Throttling {
            rate: 0,
            inactivity_timeout: "5s".into(),
        }
    }
}

/// `General.Cluster`: intra-cluster communication of replicated consenters.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Cluster {
    pub send_buffer_size: u32,
    pub client_certificate: String,
    pub client_private_key: String,
    pub listen_port: u16,
    pub listen_address: String,
    pub server_certificate: String,
    pub server_private_key: String,
    #[serde(rename = "RootCAs", deserialize_with = "super::string_or_list")]
    pub root_cas: Vec<String>,
    pub dial_timeout: String,
    #[serde(rename = "RPCTimeout")]
    pub rpc_timeout: String,
    pub replication_buffer_size: u64,
    pub replication_pull_timeout: String,
    pub replication_retry_timeout: String,
    pub replication_background_refresh_interval: String,
    pub replication_max_retries: u32,
    pub replication_policy: String,
    pub cert_expiration_warning_threshold: String,
    #[serde(rename = "TLSHandshakeTimeShift")]
    pub tls_handshake_time_shift: String,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            send_buffer_size: 100,
            client_certificate: String::new(),
            client_private_key: String::new(),
            listen_port: 0,
            listen_address: String::new(),
            server_certificate: String::new(),
            server_private_key: String::new(),
            root_cas: Vec::new(),
            dial_timeout: "5s".into(),
            rpc_timeout: "7s".into(),
            replication_buffer_size: 20_971_520,
            replication_pull_timeout: "5s".into(),
            replication_retry_timeout: "5s".into(),
            replication_background_refresh_interval: "5m".into(),
            replication_max_retries: 12,
            replication_policy: String::new(),
            cert_expiration_warning_threshold: "168h".into(),
            tls_handshake_time_shift: String::new(),
        }
    }
}

/// `General.Profile`: Go's pprof listener.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Profile {
    pub enabled: bool,
    pub address: String,
}

impl Default for Profile {
    fn default() -> Self {
        Profile {
            enabled: false,
            address: "0.0.0.0:6060".into(),
        }
    }
}

/// `General.BCCSP`: the crypto provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Bccsp {
    pub default: String,
    #[serde(rename = "SW")]
    pub sw: SoftwareProvider,
    /// Kept as given: its keys depend on the module, and only matter when
    /// `Default` is `PKCS11`, which is refused.
    #[serde(rename = "PKCS11")]
    pub pkcs11: serde_json::Value,
}

impl Default for Bccsp {
    fn default() -> Self {
        Bccsp {
            default: "SW".into(),
            sw: SoftwareProvider::default(),
            pkcs11: serde_json::Value::Object(serde_json::Map::new()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SoftwareProvider {
    pub hash: String,
    pub security: u32,
    pub file_key_store: FileKeyStore,
}

impl Default for SoftwareProvider {
    fn default() -> Self {
        SoftwareProvider {
            hash: "SHA2".into(),
            security: 256,
            file_key_store: FileKeyStore::default(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct FileKeyStore {
    pub key_store: String,
}

/// `Debug`: request trace folders.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Debug {
    pub broadcast_trace_dir: String,
    pub deliver_trace_dir: String,
}

/// `Metrics`: which provider exposes the node's metrics.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Metrics {
    /// `prometheus`, `statsd` or `disabled` (Fabric's default).
    pub provider: String,
    pub statsd: Statsd,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            provider: "disabled".into(),
            statsd: Statsd::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Statsd {
    pub network: String,
    pub address: String,
    pub write_interval: String,
    pub prefix: String,
}

impl Default for Statsd {
    fn default() -> Self {
        Statsd {
            network: "udp".into(),
            address: "127.0.0.1:8125".into(),
            write_interval: "30s".into(),
            prefix: String::new(),
        }
    }
}

/// `Kafka`: Fabric 2.x's settings of the Kafka consenter, in its layout,
/// with its defaults. Read for the Kafka consenter; no channel uses them yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct Kafka {
    pub retry: KafkaRetry,
    pub topic: KafkaTopic,
    pub verbose: bool,
    #[serde(rename = "TLS")]
    pub tls: super::Tls,
    #[serde(rename = "SASLPlain")]
    pub sasl_plain: SaslPlain,
    pub version: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KafkaRetry {
    pub short_interval: String,
    pub short_total: String,
    pub long_interval: String,
    pub long_total: String,
    pub network_timeouts: KafkaNetworkTimeouts,
    pub metadata: KafkaRetries,
    pub producer: KafkaRetries,
    pub consumer: KafkaConsumer,
}

impl Default for KafkaRetry {
    fn default() -> Self {
        KafkaRetry {
            short_interval: "1m".into(),
            short_total: "10m".into(),
            long_interval: "10m".into(),
            long_total: "12h".into(),
            network_timeouts: KafkaNetworkTimeouts::default(),
            metadata: KafkaRetries {
                retry_backoff: "250ms".into(),
                retry_max: 3,
            },
            producer: KafkaRetries {
                retry_backoff: "100ms".into(),
                retry_max: 3,
            },
            consumer: KafkaConsumer::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KafkaNetworkTimeouts {
    pub dial_timeout: String,
    pub read_timeout: String,
    pub write_timeout: String,
}

impl Default for KafkaNetworkTimeouts {
    fn default() -> Self {
        KafkaNetworkTimeouts {
            dial_timeout: "30s".into(),
            read_timeout: "30s".into(),
            write_timeout: "30s".into(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KafkaRetries {
    pub retry_backoff: String,
    pub retry_max: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KafkaConsumer {
    pub retry_backoff: String,
}

impl Default for KafkaConsumer {
    fn default() -> Self {
        KafkaConsumer {
            retry_backoff: "2s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct KafkaTopic {
    pub replication_factor: u16,
}

impl Default for KafkaTopic {
    fn default() -> Self {
        KafkaTopic {
            replication_factor: 3,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
pub struct SaslPlain {
    pub enabled: bool,
    pub user: String,
    pub password: String,
}
