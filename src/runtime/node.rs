//! A running orderer node: the actor system, the registrar and the gRPC server.
//!
//! Runtime layout: gRPC (tonic) runs on a multi-threaded tokio runtime, so
//! decoding and validating envelopes, and encoding blocks for Deliver, use every
//! core. The channels' actors run on a small pool of actix arbiters (one thread
//! each, one per core by default), a channel's whole tree on one of them, so a
//! busy channel cannot stall the timers of channels on other arbiters, and a
//! channel's actors share state without locks. Disk writes and re-validation
//! leave the actor threads for the blocking pool.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_rt::{Arbiter, ArbiterHandle, System};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

use crate::fabric::localconfig::{MetricsProvider, NodeConfig, ServerTls};
use crate::runtime::clock::Clock;
use crate::runtime::cluster::{Cluster, ClusterSettings, Reconnect};
use crate::runtime::consensus::etcdraft::transport::SharedTransportFactory;
use crate::runtime::consensus::{BlockPullerFactory, Consenters, NodeIdentity, NodeResources};
use crate::runtime::metrics::Metrics;
use crate::runtime::registrar::{Registrar, RegistrarError};
use crate::runtime::server::connections::{self, ConnectionLimit};
use crate::runtime::server::deliver::access::DeliverAccess;
use crate::runtime::server::operations::HealthChecks;
use crate::runtime::server::receive::{Budgeted, ReceiveBudget};
use crate::runtime::server::tls::{ListenerTls, TlsError, TlsSettings};
use crate::runtime::server::trust::ChannelTlsTrust;
use crate::runtime::server::{
    grpc_incoming, grpc_incoming_tls, grpc_server, operations, participation, serve_http,
    serve_https, AtomicBroadcastService,
};
use crate::security::signer::{local_signer, SignerError, SigningIdentity};

/// How long a clean stop waits for gRPC connections to close.
const SERVER_STOP_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error("cannot start the actor system: {0}")]
    Actors(String),
    #[error(transparent)]
    Registrar(#[from] RegistrarError),
    #[error("invalid TLS material (General.TLS): {0}")]
    Tls(String),
    #[error("invalid TLS material (Operations.TLS): {0}")]
    OperationsTls(String),
    #[error("invalid TLS material (Admin.TLS): {0}")]
    AdminTls(String),
    #[error("invalid TLS material (General.Cluster): {0}")]
    ClusterTls(String),
    #[error(transparent)]
    Cluster(#[from] crate::runtime::cluster::ClusterError),
    #[error("General.LocalMSPDir: {0}")]
    LocalMsp(#[from] SignerError),
    #[error("cannot listen on {address}: {source}")]
    Listen {
        address: String,
        source: std::io::Error,
    },
}

/// A listener's TLS, if its section is enabled; an error names the section.
fn listener_tls(
    tls: Option<&ServerTls>,
    settings: fn(&ServerTls) -> Result<TlsSettings, TlsError>,
    section: fn(String) -> NodeError,
) -> Result<Option<Arc<ListenerTls>>, NodeError> {
    tls.map(|tls| settings(tls).and_then(ListenerTls::new).map(Arc::new))
        .transpose()
        .map_err(|e| section(e.to_string()))
}

/// The actix system on a thread of its own, and the arbiters channels run on.
struct ActorSystem {
    system: System,
    arbiters: Vec<Arbiter>,
    thread: Option<std::thread::JoinHandle<()>>,
    /// Resolves when the actor system's thread ends, however it ends.
    ended: Option<tokio::sync::oneshot::Receiver<()>>,
}

impl ActorSystem {
    fn start(arbiters: usize) -> Result<ActorSystem, NodeError> {
        let (tx, rx) = std::sync::mpsc::channel();
        let (ended_tx, ended) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("ordo-actors".into())
            .spawn(move || {
                // Dropped when this thread ends, even by unwinding from a panic.
                let _ended = ended_tx;
                let runner = System::new();
                let pool: std::io::Result<Vec<Arbiter>> =
                    (0..arbiters.max(1)).map(|_| Arbiter::try_new()).collect();
                let failed = pool.is_err();
                let _ = tx.send(pool.map(|pool| (System::current(), pool)));
                if failed {
                    return;
                }
                if let Err(e) = runner.run() {
                    tracing::error!(error = %e, "actor system ended with an error");
                }
            })
            .map_err(|e| NodeError::Actors(e.to_string()))?;
        let (system, arbiters) = rx
            .recv()
            .map_err(|_| NodeError::Actors("the actor thread ended at start".into()))?
            .map_err(|e| NodeError::Actors(format!("cannot start an actor thread: {e}")))?;
        Ok(ActorSystem {
            system,
            arbiters,
            thread: Some(thread),
            ended: Some(ended),
        })
    }

    fn handles(&self) -> Vec<ArbiterHandle> {
        self.arbiters.iter().map(Arbiter::handle).collect()
    }

    async fn stop(mut self) {
        for arbiter in &self.arbiters {
            arbiter.stop();
        }
        let arbiters = std::mem::take(&mut self.arbiters);
        let _ = tokio::task::spawn_blocking(move || {
            for arbiter in arbiters {
                let _ = arbiter.join();
            }
        })
        .await;
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

/// What a node is started with beside its config: the consenters it serves
/// and its clock. Tests register consenters of their own here.
pub struct NodeOptions {
    pub consenters: Consenters,
    pub clock: Clock,
    /// Actor threads; `None`: one per core.
    pub actor_threads: Option<usize>,
}

impl Default for NodeOptions {
    fn default() -> Self {
        NodeOptions {
            consenters: Consenters::standard(),
            clock: Clock::system(),
            actor_threads: None,
        }
    }
}

fn node_resources(
    config: &NodeConfig,
    clock: Clock,
    signer: SigningIdentity,
    cluster: SharedTransportFactory,
) -> NodeResources {
    NodeResources {
        identity: NodeIdentity {
            tls_certificate: config.tls.as_ref().map(|t| t.certificate_pem.clone()),
            endpoint: config.listen_address.clone(),
        },
        signer: Arc::new(signer),
        cluster,
        wal_dir: config.wal_dir.clone(),
        snap_dir: config.snap_dir.clone(),
        block_puller: BlockPullerFactory::default(),
        clock,
        // Checked when the config was read.
        raft_tick_override: crate::fabric::channelconfig::duration::parse_go_duration(
            &config.raw.consensus.tick_interval_override,
        )
        .ok(),
        kafka: Arc::new(config.kafka.clone()),
    }
}

/// Waits for a gRPC server to stop. One that misses the grace period is
/// aborted, with its connections: dropping its handle alone would leave it
/// running.
async fn stop_grpc_server(server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>) {
    let abort = server.abort_handle();
    match tokio::time::timeout(SERVER_STOP_GRACE, server).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server ended with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
        Err(_) => {
            tracing::warn!("gRPC connections did not close in time; closing them");
            abort.abort();
        }
    }
}

/// The cluster's own listener: mutual TLS, trusting `General.Cluster.RootCAs`
/// and the TLS CAs of every channel's organizations.
#[allow(clippy::too_many_arguments)]
async fn serve_cluster(
    cluster: &Cluster,
    address: &str,
    tls: Arc<ListenerTls>,
    config: &NodeConfig,
    limits: &ListenerLimits,
    registrar: &Arc<Registrar>,
    shutdown: &CancellationToken,
) -> Result<
    (
        SocketAddr,
        tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    ),
    NodeError,
> {
    let listen_error = |source| NodeError::Listen {
        address: address.to_string(),
        source,
    };
    let listener = TcpListener::bind(address).await.map_err(listen_error)?;
    let local = listener.local_addr().map_err(listen_error)?;
    registrar.observe(Arc::new(ChannelTlsTrust::new(tls.clone())));
    let limit = limits
        .cluster
        .clone()
        .unwrap_or_else(|| limits.grpc.clone());
    let incoming = grpc_incoming_tls(listener, tls, &config.grpc, limit, shutdown.clone());
    let router = grpc_server(&config.grpc).add_service(Budgeted::new(
        cluster.service(true, shutdown.clone()),
        limits.receiving.clone(),
    ));
    let stopped = shutdown.clone().cancelled_owned();
    Ok((
        local,
        tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped)),
    ))
}

/// What the listeners may hold: connections each, and the bytes of large
/// messages being received by all of them.
struct ListenerLimits {
    grpc: ConnectionLimit,
    /// The cluster's own listener, when it has one.
    cluster: Option<ConnectionLimit>,
    admin: ConnectionLimit,
    operations: ConnectionLimit,
    receiving: ReceiveBudget,
}

impl ListenerLimits {
    /// The configured limits, lowered together when the process may not
    /// open that many files (the ledger keeps its share).
    fn of(config: &NodeConfig) -> ListenerLimits {
        let grpc = config.grpc.max_connections;
        let cluster = config.cluster.listener.is_some().then_some(grpc);
        let admin = config
            .admin_address
            .as_ref()
            .map(|_| config.admin_http.max_connections);
        let operations = config
            .operations_address
            .as_ref()
            .map(|_| config.operations_http.max_connections);
        let requested = [Some(grpc), cluster, admin, operations];
        let present: Vec<usize> = requested.iter().flatten().copied().collect();
        let open_files = connections::open_file_limit();
        let fitted = match open_files {
            Some(files) => connections::fit_to_open_file_limit(&present, files),
            None => present.clone(),
        };
        if fitted != present {
            tracing::warn!(
                open_files,
                reserved = connections::RESERVED_FILE_DESCRIPTORS,
                requested = ?present,
                lowered_to = ?fitted,
                "the listeners' connection limits (General.MaxConnections, Admin.MaxConnections, \
                 Operations.MaxConnections) exceed what the process may open: lowered"
            );
        }
        let mut fitted = fitted.into_iter();
        let mut next = |wanted: Option<usize>| wanted.map(|w| fitted.next().unwrap_or(w));
        let grpc = next(Some(grpc)).unwrap_or(grpc);
        let cluster = next(cluster);
        let admin = next(admin).unwrap_or(config.admin_http.max_connections);
        let operations = next(operations).unwrap_or(config.operations_http.max_connections);
        ListenerLimits {
            grpc: ConnectionLimit::new("grpc", grpc),
            cluster: cluster.map(|max| ConnectionLimit::new("cluster", max)),
            admin: ConnectionLimit::new("admin", admin),
            operations: ConnectionLimit::new("operations", operations),
            receiving: ReceiveBudget::new(
                config.grpc.max_receiving_bytes,
                config.grpc.max_recv_msg_size,
            ),
        }
    }
}

/// A started node. Stop it with [`Node::shutdown`].
pub struct Node {
    local_addr: SocketAddr,
    admin_addr: Option<SocketAddr>,
    operations_addr: Option<SocketAddr>,
    http_servers: Vec<tokio::task::JoinHandle<std::io::Result<()>>>,
    registrar: Arc<Registrar>,
    shutdown: CancellationToken,
    server: tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
    /// Where the cluster service is served: its own listener or the main one.
    cluster_addr: SocketAddr,
    /// The cluster's own listener, when it has one.
    cluster_server: Option<tokio::task::JoinHandle<Result<(), tonic::transport::Error>>>,
    actors: ActorSystem,
    /// `grpc.health.v1.Health` on the main listener.
    grpc_health: HealthReporter,
    /// What `/healthz` checks.
    health_checks: Arc<HealthChecks>,
}

impl Node {
    /// Opens the ledger, starts every channel and serves gRPC. Must run inside a
    /// multi-threaded tokio runtime.
    pub async fn start(config: NodeConfig) -> Result<Node, NodeError> {
        Self::start_with(config, NodeOptions::default()).await
    }

    /// As [`Node::start`], with the consenters and clock given.
    pub async fn start_with(config: NodeConfig, options: NodeOptions) -> Result<Node, NodeError> {
        // Without its identity the node cannot sign a block: nothing starts.
        let msp = &config.local_msp;
        let development_ledger = msp
            .development_fallback
            .then_some(config.ledger_dir.as_path());
        let signer = local_signer(&msp.dir, &msp.id, development_ledger)?;
        tracing::info!(msp_id = %signer.msp_id(), "signing identity loaded");
        let threads = options.actor_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let actors = ActorSystem::start(threads)?;
        let metrics =
            Metrics::with_exposition(config.metrics_provider == MetricsProvider::Prometheus);
        let cluster = match Cluster::new(ClusterSettings {
            config: config.cluster.clone(),
            grpc: config.grpc,
            reconnect: Reconnect::default(),
        }) {
            Ok(cluster) => cluster,
            Err(e) => {
                actors.stop().await;
                return Err(e.into());
            }
        };
        let resources = Arc::new(node_resources(
            &config,
            options.clock,
            signer,
            Arc::new(cluster.clone()),
        ));
        let clock = resources.clock.clone();
        let registrar = {
            let config = config.clone();
            let arbiters = actors.handles();
            let consenters = options.consenters;
            tokio::task::spawn_blocking(move || {
                Registrar::open(&config, arbiters, consenters, resources, metrics)
            })
            .await
            .map_err(|e| NodeError::Actors(e.to_string()))?
        };
        let registrar = match registrar {
            Ok(r) => Arc::new(r),
            Err(e) => {
                actors.stop().await;
                return Err(e.into());
            }
        };
        registrar.wait_started().await;
        registrar.follow_system_channel();
        let own_cluster_listener = config.cluster.listener.as_ref();
        let main_tls = if own_cluster_listener.is_some() {
            listener_tls(
                config.tls.as_ref(),
                TlsSettings::main_listener,
                NodeError::Tls,
            )
        } else {
            // Other orderers' Step streams come here, known by their
            // client certificates.
            config
                .tls
                .as_ref()
                .map(|tls| {
                    TlsSettings::main_listener_with_cluster(tls, &config.cluster.root_cas_pem)
                        .and_then(ListenerTls::new)
                        .map(Arc::new)
                })
                .transpose()
                .map_err(|e| NodeError::Tls(e.to_string()))
        };
        let cluster_tls = own_cluster_listener
            .map(|listener| {
                TlsSettings::cluster_listener(listener, &config.cluster.root_cas_pem)
                    .and_then(ListenerTls::new)
                    .map(Arc::new)
            })
            .transpose()
            .map_err(|e| NodeError::ClusterTls(e.to_string()));
        let operations_tls = listener_tls(
            config.operations_tls.as_ref(),
            TlsSettings::http_listener,
            NodeError::OperationsTls,
        );
        // Fabric's admin listener always requires a client certificate (the
        // config also refuses Admin.TLS without ClientAuthRequired).
        let admin_tls = listener_tls(
            config.admin_tls.as_ref(),
            TlsSettings::admin_listener,
            NodeError::AdminTls,
        );
        let (main_tls, operations_tls, admin_tls, cluster_tls) =
            match (main_tls, operations_tls, admin_tls, cluster_tls) {
                (Ok(main), Ok(operations), Ok(admin), Ok(cluster)) => {
                    (main, operations, admin, cluster)
                }
                (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
                    registrar.shutdown().await;
                    actors.stop().await;
                    return Err(e);
                }
            };
        let listener = match TcpListener::bind(&config.listen_address).await {
            Ok(l) => l,
            Err(source) => {
                registrar.shutdown().await;
                actors.stop().await;
                return Err(NodeError::Listen {
                    address: config.listen_address.clone(),
                    source,
                });
            }
        };
        let local_addr = match listener.local_addr() {
            Ok(address) => address,
            Err(source) => {
                registrar.shutdown().await;
                actors.stop().await;
                return Err(NodeError::Listen {
                    address: config.listen_address.clone(),
                    source,
                });
            }
        };
        let shutdown = CancellationToken::new();
        let limits = ListenerLimits::of(&config);
        let deliver_access = DeliverAccess {
            time_window: config.authentication_time_window,
            // As Fabric: requests are bound to their TLS session when the
            // listener requires client certificates.
            mutual_tls: config.tls.as_ref().is_some_and(|t| t.client_auth_required),
            expiration_checks: !config.no_expiration_checks,
            clock,
        };
        let service =
            AtomicBroadcastService::new(registrar.clone(), shutdown.clone(), deliver_access);
        // Overall health ("") is SERVING while the node serves, as Fabric's.
        let (grpc_health, health_service) = tonic_health::server::health_reporter();
        let router = grpc_server(&config.grpc)
            .add_service(health_service)
            .add_service(Budgeted::new(
                service.into_server_with(&config.grpc),
                limits.receiving.clone(),
            ))
            .add_optional_service(own_cluster_listener.is_none().then(|| {
                Budgeted::new(
                    cluster.service(main_tls.is_some(), shutdown.clone()),
                    limits.receiving.clone(),
                )
            }));
        let stopped = shutdown.clone().cancelled_owned();
        let server = match &main_tls {
            Some(tls) => {
                // Client certificates from every channel organization's TLS CAs.
                registrar.observe(Arc::new(ChannelTlsTrust::new(tls.clone())));
                let incoming = grpc_incoming_tls(
                    listener,
                    tls.clone(),
                    &config.grpc,
                    limits.grpc.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
            }
            None => {
                let incoming = grpc_incoming(
                    listener,
                    &config.grpc,
                    limits.grpc.clone(),
                    shutdown.clone(),
                );
                tokio::spawn(router.serve_with_incoming_shutdown(incoming, stopped))
            }
        };
        let failed: Vec<String> = registrar
            .failed_channels()
            .into_iter()
            .map(|c| c.id)
            .collect();
        tracing::info!(address = %local_addr, tls = config.tls.is_some(), channels = ?registrar.channel_ids(), ?failed, "ordo is serving AtomicBroadcast");
        let (cluster_addr, cluster_server) = match (own_cluster_listener, cluster_tls) {
            (Some(listener), Some(tls)) => {
                match serve_cluster(
                    &cluster,
                    listener.address.as_str(),
                    tls,
                    &config,
                    &limits,
                    &registrar,
                    &shutdown,
                )
                .await
                {
                    Ok((address, server)) => (address, Some(server)),
                    Err(e) => {
                        shutdown.cancel();
                        registrar.shutdown().await;
                        actors.stop().await;
                        return Err(e);
                    }
                }
            }
            _ => (local_addr, None),
        };
        tracing::info!(address = %cluster_addr, own_listener = cluster_server.is_some(), "ordo is serving the cluster service");

        let health_checks = Arc::new(HealthChecks::default());
        let mut http_servers = Vec::new();
        let mut listeners = Vec::new();
        if let Some(address) = &config.admin_address {
            let router = participation::router(
                registrar.clone(),
                config.max_join_body_bytes,
                shutdown.clone(),
            );
            listeners.push((
                "admin",
                address.clone(),
                router,
                admin_tls.clone(),
                config.admin_http,
                limits.admin.clone(),
            ));
        }
        if let Some(address) = &config.operations_address {
            let router = operations::router(
                registrar.clone(),
                health_checks.clone(),
                operations_tls.is_some(),
            );
            listeners.push((
                "operations",
                address.clone(),
                router,
                operations_tls,
                config.operations_http,
                limits.operations.clone(),
            ));
        }
        let mut admin_addr = None;
        let mut operations_addr = None;
        for (name, address, router, tls, settings, limit) in listeners {
            let secure = tls.is_some();
            let served = match tls {
                Some(tls) => {
                    serve_https(router, &address, tls, &settings, limit, shutdown.clone()).await
                }
                None => serve_http(router, &address, &settings, limit, shutdown.clone()).await,
            };
            match served {
                Ok((local, task)) => {
                    tracing::info!(address = %local, tls = secure, "{name} listener serving");
                    match name {
                        "admin" => admin_addr = Some(local),
                        _ => operations_addr = Some(local),
                    }
                    http_servers.push(task);
                }
                Err(source) => {
                    shutdown.cancel();
                    registrar.shutdown().await;
                    actors.stop().await;
                    return Err(NodeError::Listen { address, source });
                }
            }
        }
        Ok(Node {
            local_addr,
            admin_addr,
            operations_addr,
            http_servers,
            registrar,
            shutdown,
            server,
            cluster_addr,
            cluster_server,
            actors,
            grpc_health,
            health_checks,
        })
    }

    /// The address gRPC listens on (useful with port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address the cluster service (`orderer.Cluster`) listens on: its
    /// own listener's, or the main one's.
    pub fn cluster_addr(&self) -> SocketAddr {
        self.cluster_addr
    }

    /// The admin listener's address, if it has one.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    /// The operations listener's address, if it has one.
    pub fn operations_addr(&self) -> Option<SocketAddr> {
        self.operations_addr
    }

    pub fn registrar(&self) -> &Arc<Registrar> {
        &self.registrar
    }

    /// The node-level checks `/healthz` runs; components register here.
    pub fn health_checks(&self) -> &Arc<HealthChecks> {
        &self.health_checks
    }

    /// Resolves if the actor thread ends while the node runs: a panic in an
    /// actor. Every channel has stopped then; the process should exit so that
    /// whatever supervises it restarts it (Fabric's orderer exits on a panic).
    pub async fn actors_ended(&mut self) {
        match self.actors.ended.as_mut() {
            Some(ended) => {
                let _ = ended.await;
                self.actors.ended = None;
            }
            None => futures::future::pending().await,
        }
    }

    /// Clean stop: stop taking envelopes, end the streams, write every channel's
    /// pending batch, flush the ledger, stop the actors.
    pub async fn shutdown(self) {
        tracing::info!("stopping: no new envelopes are taken");
        self.grpc_health
            .set_service_status("", ServingStatus::NotServing)
            .await;
        self.shutdown.cancel();
        let grpc = std::iter::once(self.server)
            .chain(self.cluster_server)
            .map(stop_grpc_server);
        futures::future::join_all(grpc).await;
        let http = self.http_servers.into_iter().map(|server| async move {
            let abort = server.abort_handle();
            match tokio::time::timeout(SERVER_STOP_GRACE, server).await {
                Ok(Ok(Err(e))) => tracing::warn!(error = %e, "HTTP listener ended with an error"),
                Err(_) => {
                    tracing::warn!("HTTP connections did not close in time; closing them");
                    abort.abort();
                }
                _ => {}
            }
        });
        futures::future::join_all(http).await;
        self.registrar.shutdown().await;
        self.actors.stop().await;
        tracing::info!("stopped; every accepted envelope is on disk");
    }
}
