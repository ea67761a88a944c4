//! What each key of Fabric's orderer.yaml does in Ordo. A key takes effect,
//! is kept for a consenter that reads it (checked here all the same), or,
//! when its value needs something Ordo does not have, stops start-up with a
//! message saying so. Fabric's sample values always pass.

use std::time::Duration;

use super::duration::parse_go_duration;
use super::{invalid, parse_byte_size, ConfigError, OrdererConfig, Tls};

/// gRPC's default message limit, Fabric's `MaxRecvMsgSize`/`MaxSendMsgSize`.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;
/// Fabric's defaults for a keepalive key given as zero or not at all.
const DEFAULT_KEEPALIVE_MIN_INTERVAL: Duration = Duration::from_secs(60);
const DEFAULT_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(2 * 60 * 60);
const DEFAULT_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);
/// Fabric's `General.ConnectionTimeout` when zero or absent.
const DEFAULT_CONNECTION_TIMEOUT: Duration = Duration::from_secs(5);
/// `General.Authentication.TimeWindow` when zero or absent.
const DEFAULT_TIME_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Ordo's own connection limits when zero or absent.
pub(super) const DEFAULT_MAX_CONNECTIONS: u32 = 1024;
pub(super) const DEFAULT_MAX_CONCURRENT_STREAMS: u32 = 100;
const DEFAULT_CONNECTION_IDLE_TIMEOUT: Duration = Duration::from_secs(5 * 60);
pub(super) const DEFAULT_MAX_RECEIVING_BYTES: &str = "512 MB";
/// The HTTP listeners' limits when zero or absent; the read and write
/// timeouts are those of Fabric's operations server.
pub(super) const DEFAULT_HTTP_READ_HEADER_TIMEOUT: &str = "10s";
pub(super) const DEFAULT_HTTP_READ_TIMEOUT: &str = "10s";
pub(super) const DEFAULT_HTTP_WRITE_TIMEOUT: &str = "2m";
pub(super) const DEFAULT_HTTP_MAX_CONNECTIONS: u32 = 64;

/// How the gRPC listeners are set up (`General.Keepalive`,
/// `General.MaxRecvMsgSize`, `General.MaxSendMsgSize`,
/// `General.ConnectionTimeout` and Ordo's connection limits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcServerSettings {
    /// Largest message a client may send; larger ones end the stream with
    /// RESOURCE_EXHAUSTED.
    pub max_recv_msg_size: usize,
    /// Largest message the node sends.
    pub max_send_msg_size: usize,
    /// Idle time after which the server pings a client (`ServerInterval`).
    pub keepalive_interval: Duration,
    /// How long a ping may go unanswered before the connection is closed
    /// (`ServerTimeout`).
    pub keepalive_timeout: Duration,
    /// A client pinging more often than this (more than twice in a row) is
    /// sent GOAWAY `too_many_pings` and disconnected (`ServerMinInterval`).
    pub keepalive_min_interval: Duration,
    /// How long a connection may take to finish its TLS handshake and send
    /// HTTP/2's preface (`ConnectionTimeout`).
    pub connection_timeout: Duration,
    /// Connections served at once on a gRPC listener (`MaxConnections`).
    pub max_connections: usize,
    /// Streams at once on one connection (`MaxConcurrentStreams`).
    pub max_concurrent_streams: u32,
    /// A connection without a stream for this long is closed
    /// (`ConnectionIdleTimeout`).
    pub connection_idle_timeout: Duration,
    /// Bytes of large messages being received at once by the whole node
    /// (`Backpressure.MaxReceivingBytes`).
    pub max_receiving_bytes: usize,
}

impl Default for GrpcServerSettings {
    fn default() -> Self {
        GrpcServerSettings {
            max_recv_msg_size: DEFAULT_MAX_MESSAGE_BYTES,
            max_send_msg_size: DEFAULT_MAX_MESSAGE_BYTES,
            keepalive_interval: DEFAULT_KEEPALIVE_INTERVAL,
            keepalive_timeout: DEFAULT_KEEPALIVE_TIMEOUT,
            keepalive_min_interval: DEFAULT_KEEPALIVE_MIN_INTERVAL,
            connection_timeout: DEFAULT_CONNECTION_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS as usize,
            max_concurrent_streams: DEFAULT_MAX_CONCURRENT_STREAMS,
            connection_idle_timeout: DEFAULT_CONNECTION_IDLE_TIMEOUT,
            max_receiving_bytes: 512 << 20,
        }
    }
}

/// The limits of an HTTP listener (`Admin.*`, `Operations.*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpServerSettings {
    /// Time to send a request's headers, and the longest wait for the next
    /// request on a kept-alive connection (`ReadHeaderTimeout`); also the
    /// TLS handshake's limit.
    pub read_header_timeout: Duration,
    /// Time to send a whole request, body included (`ReadTimeout`).
    pub read_timeout: Duration,
    /// How long a write may wait for the client to read (`WriteTimeout`).
    pub write_timeout: Duration,
    /// Connections served at once (`MaxConnections`).
    pub max_connections: usize,
}

impl Default for HttpServerSettings {
    fn default() -> Self {
        HttpServerSettings {
            read_header_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(120),
            max_connections: DEFAULT_HTTP_MAX_CONNECTIONS as usize,
        }
    }
}

/// `Metrics.Provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsProvider {
    /// `/metrics` on the operations listener, in Prometheus text format.
    Prometheus,
    /// No `/metrics` (404), as Fabric.
    Disabled,
}

/// The settings that the checked keys give the node.
#[derive(Debug, Clone)]
pub(super) struct Settings {
    pub grpc: GrpcServerSettings,
    pub admin_http: HttpServerSettings,
    pub operations_http: HttpServerSettings,
    pub metrics_provider: MetricsProvider,
    pub authentication_time_window: Duration,
    /// `General.Cluster.DialTimeout` (zero or absent: 5s).
    pub cluster_dial_timeout: Duration,
    /// `General.Cluster` names a listener of its own (all four of its keys).
    pub cluster_listener: bool,
}

pub(super) fn check(raw: &OrdererConfig) -> Result<Settings, ConfigError> {
    let g = &raw.general;

    let grpc = GrpcServerSettings {
        max_recv_msg_size: message_size("General.MaxRecvMsgSize", &g.max_recv_msg_size)?,
        max_send_msg_size: message_size("General.MaxSendMsgSize", &g.max_send_msg_size)?,
        keepalive_interval: or_default(
            duration(
                "General.Keepalive.ServerInterval",
                &g.keepalive.server_interval,
            )?,
            DEFAULT_KEEPALIVE_INTERVAL,
        ),
        keepalive_timeout: or_default(
            duration(
                "General.Keepalive.ServerTimeout",
                &g.keepalive.server_timeout,
            )?,
            DEFAULT_KEEPALIVE_TIMEOUT,
        ),
        keepalive_min_interval: or_default(
            duration(
                "General.Keepalive.ServerMinInterval",
                &g.keepalive.server_min_interval,
            )?,
            DEFAULT_KEEPALIVE_MIN_INTERVAL,
        ),
        connection_timeout: or_default(
            duration("General.ConnectionTimeout", &g.connection_timeout)?,
            DEFAULT_CONNECTION_TIMEOUT,
        ),
        max_connections: count_or_default(g.max_connections, DEFAULT_MAX_CONNECTIONS),
        max_concurrent_streams: if g.max_concurrent_streams == 0 {
            DEFAULT_MAX_CONCURRENT_STREAMS
        } else {
            g.max_concurrent_streams
        },
        connection_idle_timeout: or_default(
            duration("General.ConnectionIdleTimeout", &g.connection_idle_timeout)?,
            DEFAULT_CONNECTION_IDLE_TIMEOUT,
        ),
        max_receiving_bytes: receiving_bytes(&g.backpressure.max_receiving_bytes)?,
    };
    let admin_http = http_settings(
        [
            "Admin.ReadHeaderTimeout",
            "Admin.ReadTimeout",
            "Admin.WriteTimeout",
        ],
        [
            &raw.admin.read_header_timeout,
            &raw.admin.read_timeout,
            &raw.admin.write_timeout,
        ],
        raw.admin.max_connections,
    )?;
    let operations_http = http_settings(
        [
            "Operations.ReadHeaderTimeout",
            "Operations.ReadTimeout",
            "Operations.WriteTimeout",
        ],
        [
            &raw.operations.read_header_timeout,
            &raw.operations.read_timeout,
            &raw.operations.write_timeout,
        ],
        raw.operations.max_connections,
    )?;

    if g.throttling.rate != 0 {
        return Err(unsupported(
            "General.Throttling.Rate",
            format!(
                "{}: Ordo does not rate-limit Broadcast clients (its in-flight bounds, \
                 General.Backpressure, slow senders down instead); use 0",
                g.throttling.rate
            ),
        ));
    }
    duration(
        "General.Throttling.InactivityTimeout",
        &g.throttling.inactivity_timeout,
    )?;

    duration("General.Backoff.BaseDelay", &g.backoff.base_delay)?;
    duration("General.Backoff.MaxDelay", &g.backoff.max_delay)?;
    if !(g.backoff.multiplier.is_finite() && g.backoff.multiplier > 0.0) {
        return Err(invalid(
            "General.Backoff.Multiplier",
            format!("{} is not a positive number", g.backoff.multiplier),
        ));
    }

    let (cluster_dial_timeout, cluster_listener) = check_cluster(raw)?;

    handshake_shift("General.TLS.TLSHandshakeTimeShift", &g.tls)?;
    handshake_shift("Admin.TLS.TLSHandshakeTimeShift", &raw.admin.tls)?;
    handshake_shift("Operations.TLS.TLSHandshakeTimeShift", &raw.operations.tls)?;

    if g.profile.enabled {
        return Err(unsupported(
            "General.Profile.Enabled",
            "Go's pprof listener is Fabric's; Ordo has none (profile it with perf instead)",
        ));
    }

    check_bccsp(raw)?;

    let authentication_time_window = or_default(
        duration(
            "General.Authentication.TimeWindow",
            &g.authentication.time_window,
        )?,
        DEFAULT_TIME_WINDOW,
    );

    if !raw.debug.broadcast_trace_dir.trim().is_empty() {
        return Err(unsupported(
            "Debug.BroadcastTraceDir",
            "Ordo does not write Broadcast requests to files; leave it empty",
        ));
    }
    if !raw.debug.deliver_trace_dir.trim().is_empty() {
        return Err(unsupported(
            "Debug.DeliverTraceDir",
            "Ordo does not write Deliver requests to files; leave it empty",
        ));
    }

    let metrics_provider = metrics_provider(raw)?;

    duration(
        "Consensus.EvictionSuspicion",
        &raw.consensus.eviction_suspicion,
    )?;
    duration(
        "Consensus.TickIntervalOverride",
        &raw.consensus.tick_interval_override,
    )?;
    check_kafka(raw)?;

    Ok(Settings {
        grpc,
        admin_http,
        operations_http,
        metrics_provider,
        authentication_time_window,
        cluster_dial_timeout,
        cluster_listener,
    })
}

/// `General.Cluster.DialTimeout` when zero or absent (Fabric's default).
const DEFAULT_CLUSTER_DIAL_TIMEOUT: Duration = Duration::from_secs(5);

/// The dial timeout, and whether the cluster service has a listener of its
/// own.
fn check_cluster(raw: &OrdererConfig) -> Result<(Duration, bool), ConfigError> {
    let c = &raw.general.cluster;
    let dial_timeout = or_default(
        duration("General.Cluster.DialTimeout", &c.dial_timeout)?,
        DEFAULT_CLUSTER_DIAL_TIMEOUT,
    );
    duration("General.Cluster.RPCTimeout", &c.rpc_timeout)?;
    duration(
        "General.Cluster.ReplicationPullTimeout",
        &c.replication_pull_timeout,
    )?;
    duration(
        "General.Cluster.ReplicationRetryTimeout",
        &c.replication_retry_timeout,
    )?;
    duration(
        "General.Cluster.ReplicationBackgroundRefreshInterval",
        &c.replication_background_refresh_interval,
    )?;
    duration(
        "General.Cluster.CertExpirationWarningThreshold",
        &c.cert_expiration_warning_threshold,
    )?;
    if !duration(
        "General.Cluster.TLSHandshakeTimeShift",
        &c.tls_handshake_time_shift,
    )?
    .is_zero()
    {
        return Err(unsupported(
            "General.Cluster.TLSHandshakeTimeShift",
            "Ordo does not accept expired TLS certificates between orderers; leave it unset or 0",
        ));
    }
    match c.replication_policy.trim().to_ascii_lowercase().as_str() {
        "" | "consensus" | "simple" => {}
        _ => {
            return Err(invalid(
                "General.Cluster.ReplicationPolicy",
                format!(
                    "unknown policy {:?} (expected consensus or simple)",
                    c.replication_policy
                ),
            ))
        }
    }
    // A listener of its own is named by all four keys, or none (as Fabric
    // requires); without them the cluster service shares the main listener.
    let separate: [(&'static str, bool); 4] = [
        (
            "General.Cluster.ListenAddress",
            !c.listen_address.trim().is_empty(),
        ),
        ("General.Cluster.ListenPort", c.listen_port != 0),
        (
            "General.Cluster.ServerCertificate",
            !c.server_certificate.trim().is_empty(),
        ),
        (
            "General.Cluster.ServerPrivateKey",
            !c.server_private_key.trim().is_empty(),
        ),
    ];
    let given = separate.iter().filter(|(_, set)| *set).count();
    if given != 0 && given != separate.len() {
        let (key, _) = separate
            .iter()
            .find(|(_, set)| !*set)
            .copied()
            .unwrap_or(separate[0]);
        return Err(invalid(
            key,
            "ListenAddress, ListenPort, ServerCertificate and ServerPrivateKey of \
             General.Cluster name the cluster's own listener together: give all four or none",
        ));
    }
    let listener = given == separate.len();
    if listener && !raw.general.tls.enabled {
        return Err(invalid(
            "General.Cluster.ListenPort",
            "a listener of the cluster's own needs General.TLS.Enabled: other orderers are \
             known there by their TLS client certificates",
        ));
    }
    Ok((dial_timeout, listener))
}

fn check_bccsp(raw: &OrdererConfig) -> Result<(), ConfigError> {
    let b = &raw.general.bccsp;
    match b.default.trim().to_ascii_uppercase().as_str() {
        "SW" | "" => {}
        "PKCS11" => {
            return Err(unsupported(
                "General.BCCSP.Default",
                "PKCS11 (keys in a hardware security module) is not available in Ordo; use SW",
            ))
        }
        _ => {
            return Err(invalid(
                "General.BCCSP.Default",
                format!("unknown provider {:?} (expected SW)", b.default),
            ))
        }
    }
    match b.sw.hash.trim().to_ascii_uppercase().as_str() {
        "SHA2" | "" => {}
        "SHA3" => {
            return Err(unsupported(
                "General.BCCSP.SW.Hash",
                "Ordo hashes with SHA2 only",
            ))
        }
        _ => {
            return Err(invalid(
                "General.BCCSP.SW.Hash",
                format!("unknown hash family {:?} (expected SHA2)", b.sw.hash),
            ))
        }
    }
    match b.sw.security {
        0 | 256 => {}
        384 => {
            return Err(unsupported(
                "General.BCCSP.SW.Security",
                "384: Ordo signs and verifies with P-256 keys only; use 256",
            ))
        }
        other => {
            return Err(invalid(
                "General.BCCSP.SW.Security",
                format!("{other} is not a security level (expected 256)"),
            ))
        }
    }
    if !b.sw.file_key_store.key_store.trim().is_empty() {
        return Err(unsupported(
            "General.BCCSP.SW.FileKeyStore.KeyStore",
            "Ordo reads the signing key from the keystore folder of General.LocalMSPDir; \
             leave it empty",
        ));
    }
    Ok(())
}

fn metrics_provider(raw: &OrdererConfig) -> Result<MetricsProvider, ConfigError> {
    let m = &raw.metrics;
    match m.statsd.network.trim().to_ascii_lowercase().as_str() {
        "udp" | "tcp" | "" => {}
        _ => {
            return Err(invalid(
                "Metrics.Statsd.Network",
                format!("{:?} is not udp or tcp", m.statsd.network),
            ))
        }
    }
    duration("Metrics.Statsd.WriteInterval", &m.statsd.write_interval)?;
    match m.provider.trim().to_ascii_lowercase().as_str() {
        "prometheus" => Ok(MetricsProvider::Prometheus),
        "disabled" | "" => Ok(MetricsProvider::Disabled),
        "statsd" => Err(unsupported(
            "Metrics.Provider",
            "statsd: Ordo exposes its metrics to Prometheus only (/metrics on the operations \
             listener); use prometheus or disabled",
        )),
        _ => Err(invalid(
            "Metrics.Provider",
            format!(
                "unknown provider {:?} (expected prometheus, statsd or disabled)",
                m.provider
            ),
        )),
    }
}

fn check_kafka(raw: &OrdererConfig) -> Result<(), ConfigError> {
    let r = &raw.kafka.retry;
    let durations: [(&'static str, &str); 11] = [
        ("Kafka.Retry.ShortInterval", &r.short_interval),
        ("Kafka.Retry.ShortTotal", &r.short_total),
        ("Kafka.Retry.LongInterval", &r.long_interval),
        ("Kafka.Retry.LongTotal", &r.long_total),
        (
            "Kafka.Retry.NetworkTimeouts.DialTimeout",
            &r.network_timeouts.dial_timeout,
        ),
        (
            "Kafka.Retry.NetworkTimeouts.ReadTimeout",
            &r.network_timeouts.read_timeout,
        ),
        (
            "Kafka.Retry.NetworkTimeouts.WriteTimeout",
            &r.network_timeouts.write_timeout,
        ),
        (
            "Kafka.Retry.Metadata.RetryBackoff",
            &r.metadata.retry_backoff,
        ),
        (
            "Kafka.Retry.Producer.RetryBackoff",
            &r.producer.retry_backoff,
        ),
        (
            "Kafka.Retry.Consumer.RetryBackoff",
            &r.consumer.retry_backoff,
        ),
        (
            "Kafka.TLS.TLSHandshakeTimeShift",
            &raw.kafka.tls.tls_handshake_time_shift,
        ),
    ];
    for (key, text) in durations {
        duration(key, text)?;
    }
    Ok(())
}

fn handshake_shift(key: &'static str, tls: &Tls) -> Result<(), ConfigError> {
    if duration(key, &tls.tls_handshake_time_shift)?.is_zero() {
        Ok(())
    } else {
        Err(unsupported(
            key,
            "Ordo does not accept expired TLS certificates; leave it unset or 0",
        ))
    }
}

fn duration(key: &'static str, text: &str) -> Result<Duration, ConfigError> {
    parse_go_duration(text).ok_or_else(|| {
        invalid(
            key,
            format!("{text:?} is not a duration (e.g. \"15m\", \"20s\", \"250ms\")"),
        )
    })
}

fn count_or_default(value: u32, default: u32) -> usize {
    if value == 0 {
        default as usize
    } else {
        value as usize
    }
}

/// `General.Backpressure.MaxReceivingBytes`: a size; zero or empty: 512 MB.
fn receiving_bytes(text: &str) -> Result<usize, ConfigError> {
    const KEY: &str = "General.Backpressure.MaxReceivingBytes";
    let text = if text.trim().is_empty() {
        DEFAULT_MAX_RECEIVING_BYTES
    } else {
        text
    };
    match parse_byte_size(text) {
        Some(0) => receiving_bytes(""),
        // Taken from a semaphore whose permits count bytes in a u32.
        Some(bytes) if bytes <= u32::MAX as usize => Ok(bytes),
        _ => Err(invalid(
            KEY,
            format!("{text:?} is not a size between 1 byte and 4 GB (e.g. \"512 MB\")"),
        )),
    }
}

/// An HTTP listener's limits; a timeout of zero or empty takes its default.
fn http_settings(
    keys: [&'static str; 3],
    values: [&str; 3],
    max_connections: u32,
) -> Result<HttpServerSettings, ConfigError> {
    let defaults = HttpServerSettings::default();
    Ok(HttpServerSettings {
        read_header_timeout: or_default(
            duration(keys[0], values[0])?,
            defaults.read_header_timeout,
        ),
        read_timeout: or_default(duration(keys[1], values[1])?, defaults.read_timeout),
        write_timeout: or_default(duration(keys[2], values[2])?, defaults.write_timeout),
        max_connections: count_or_default(max_connections, DEFAULT_HTTP_MAX_CONNECTIONS),
    })
}

fn or_default(value: Duration, default: Duration) -> Duration {
    if value.is_zero() {
        default
    } else {
        value
    }
}

/// A gRPC message limit: bytes (Fabric writes 104857600) or a size; zero or
/// absent is Fabric's default, 100 MiB.
fn message_size(key: &'static str, text: &str) -> Result<usize, ConfigError> {
    if text.trim().is_empty() {
        return Ok(DEFAULT_MAX_MESSAGE_BYTES);
    }
    match parse_byte_size(text) {
        Some(0) => Ok(DEFAULT_MAX_MESSAGE_BYTES),
        // Fabric holds these in an int32.
        Some(bytes) if bytes <= i32::MAX as usize => Ok(bytes),
        _ => Err(invalid(
            key,
            format!("{text:?} is not a size between 1 byte and 2 GB (e.g. 104857600)"),
        )),
    }
}

fn unsupported(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Unsupported {
        key,
        reason: reason.into(),
    }
}
