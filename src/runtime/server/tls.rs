//! TLS for the node's listeners, on rustls directly rather than tonic's own
//! TLS: the CAs trusted for client certificates can change while the node
//! runs (the main listener trusts every channel organization's TLS CAs, as
//! Fabric does), so each new connection takes the server config current at
//! its accept.
//!
//! Connections reach tonic as `tokio_rustls::server::TlsStream<TcpStream>`
//! (inside the [`Admitted`] that holds their listener's slot), so a
//! handler's `Request::peer_certs()` and `remote_addr()` work as with
//! tonic's own TLS; axum handlers get a [`TlsPeer`] as their connect info.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::WebPkiClientVerifier;
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig,
    SignatureScheme,
};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use super::connections::{self, Admitted, ConnectionLimit, Refusal};
use crate::fabric::localconfig::{ClusterListener, ServerTls};

/// A client that has not finished its handshake by then is dropped, unless
/// the listener says otherwise (Fabric's default `General.ConnectionTimeout`).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Handshaken connections waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("the certificate is not PEM: {0}")]
    Certificate(String),
    #[error("the certificate file holds no certificate")]
    NoCertificate,
    #[error("the private key is not a PEM key: {0}")]
    PrivateKey(String),
    #[error("a client root CA is not PEM: {0}")]
    ClientRoot(String),
    #[error("cannot set up TLS with this certificate and key: {0}")]
    Config(#[from] rustls::Error),
    #[error("cannot trust the client root CAs: {0}")]
    Verifier(#[from] rustls::server::VerifierBuilderError),
}

/// Whether a listener asks clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Never asks.
    None,
    /// Asks; a client may send none, but one it sends must verify.
    Optional,
    /// A verified client certificate is required.
    Required,
}

/// What a TLS listener is built from.
pub struct TlsSettings {
    /// The server's certificate (and chain), PEM.
    pub certificate_pem: Vec<u8>,
    pub private_key_pem: Vec<u8>,
    /// CAs from the node's config, always trusted.
    pub client_roots: Vec<CertificateDer<'static>>,
    pub client_auth: ClientAuth,
    /// ALPN protocols offered (`h2` for gRPC).
    pub alpn: Vec<Vec<u8>>,
}

impl TlsSettings {
    /// The main (gRPC) listener, `General.TLS`: a client certificate is asked
    /// for when `ClientAuthRequired` is set (and then required) or when
    /// `ClientRootCAs` names CAs (and then optional).
    pub fn main_listener(tls: &ServerTls) -> Result<TlsSettings, TlsError> {
        let client_roots =
            certificates_from_pem(&tls.client_root_cas_pem).map_err(TlsError::ClientRoot)?;
        let client_auth = if tls.client_auth_required {
            ClientAuth::Required
        } else if client_roots.is_empty() {
            ClientAuth::None
        } else {
            ClientAuth::Optional
        };
        Ok(TlsSettings {
            certificate_pem: tls.certificate_pem.clone(),
            private_key_pem: tls.private_key_pem.clone(),
            client_roots,
            client_auth,
            alpn: vec![b"h2".to_vec()],
        })
    }

    /// An HTTP listener as Fabric's operations server sets up TLS: a client
    /// certificate is always asked for, and required with
    /// `ClientAuthRequired`.
    pub fn http_listener(tls: &ServerTls) -> Result<TlsSettings, TlsError> {
        let client_roots =
            certificates_from_pem(&tls.client_root_cas_pem).map_err(TlsError::ClientRoot)?;
        Ok(TlsSettings {
            certificate_pem: tls.certificate_pem.clone(),
            private_key_pem: tls.private_key_pem.clone(),
            client_roots,
            client_auth: if tls.client_auth_required {
                ClientAuth::Required
            } else {
                ClientAuth::Optional
            },
            alpn: Vec::new(),
        })
    }
}

impl TlsSettings {
    /// The main listener when it also serves the cluster service: other
    /// orderers are known there by their client certificates, so every
    /// client is asked for one (verified when sent, against ClientRootCAs,
    /// `cluster_roots_pem` and the channels' CAs) but need not send one:
    /// Broadcast and Deliver clients without a certificate keep working.
    pub fn main_listener_with_cluster(
        tls: &ServerTls,
        cluster_roots_pem: &[u8],
    ) -> Result<TlsSettings, TlsError> {
        let mut settings = TlsSettings::main_listener(tls)?;
        settings
            .client_roots
            .extend(certificates_from_pem(cluster_roots_pem).map_err(TlsError::ClientRoot)?);
        if settings.client_auth == ClientAuth::None {
            settings.client_auth = ClientAuth::Optional;
        }
        Ok(settings)
    }

    /// The cluster's own listener (`General.Cluster.ServerCertificate`):
    /// mutual TLS, with `General.Cluster.RootCAs` (`roots_pem`) and the
    /// channels' CAs trusted for client certificates.
    pub fn cluster_listener(
        listener: &ClusterListener,
        roots_pem: &[u8],
    ) -> Result<TlsSettings, TlsError> {
        Ok(TlsSettings {
            certificate_pem: listener.certificate_pem.clone(),
            private_key_pem: listener.private_key_pem.clone(),
            client_roots: certificates_from_pem(roots_pem).map_err(TlsError::ClientRoot)?,
            client_auth: ClientAuth::Required,
            alpn: vec![b"h2".to_vec()],
        })
    }

    /// The admin listener, `Admin.TLS`: a verified client certificate is
    /// always required, whatever the config says, as Fabric's admin server
    /// requires one.
    pub fn admin_listener(tls: &ServerTls) -> Result<TlsSettings, TlsError> {
        let mut settings = TlsSettings::http_listener(tls)?;
        settings.client_auth = ClientAuth::Required;
        Ok(settings)
    }
}

/// Every certificate in PEM text.
pub fn certificates_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())
}

/// Certificates as channel configs carry them: PEM (as configtxgen writes
/// them), or DER. What cannot be read is left out with a warning, as Fabric
/// leaves out what its certificate pool cannot parse.
pub fn certificates_from_config(raw: &[u8]) -> Vec<CertificateDer<'static>> {
    if raw.windows(10).any(|w| w == b"-----BEGIN") {
        CertificateDer::pem_slice_iter(raw)
            .filter_map(|c| {
                c.map_err(|e| tracing::warn!(error = %e, "a TLS CA in a channel config is not PEM; ignored"))
                    .ok()
            })
            .collect()
    } else if raw.is_empty() {
        Vec::new()
    } else {
        vec![CertificateDer::from(raw.to_vec())]
    }
}

/// What stays the same across rebuilds of a listener's server config.
struct Material {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    client_auth: ClientAuth,
    alpn: Vec<Vec<u8>>,
    provider: Arc<CryptoProvider>,
    static_roots: Vec<CertificateDer<'static>>,
}

/// A listener's TLS server config, rebuilt when the trusted client CAs change.
pub struct ListenerTls {
    material: Material,
    /// CAs trusted on behalf of others (each channel), by source name.
    extra_roots: Mutex<BTreeMap<String, Vec<CertificateDer<'static>>>>,
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ListenerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ListenerTls")
            .field("client_auth", &self.material.client_auth)
            .field("static_roots", &self.material.static_roots.len())
            .finish_non_exhaustive()
    }
}

impl ListenerTls {
    pub fn new(settings: TlsSettings) -> Result<ListenerTls, TlsError> {
        let chain =
            certificates_from_pem(&settings.certificate_pem).map_err(TlsError::Certificate)?;
        if chain.is_empty() {
            return Err(TlsError::NoCertificate);
        }
        let key = PrivateKeyDer::from_pem_slice(&settings.private_key_pem)
            .map_err(|e| TlsError::PrivateKey(e.to_string()))?;
        let material = Material {
            chain,
            key,
            client_auth: settings.client_auth,
            alpn: settings.alpn,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
            static_roots: settings.client_roots,
        };
        let extra = BTreeMap::new();
        let config = material.build(&extra)?;
        Ok(ListenerTls {
            material,
            extra_roots: Mutex::new(extra),
            current: RwLock::new(Arc::new(config)),
        })
    }

    /// The server config for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub fn client_auth(&self) -> ClientAuth {
        self.material.client_auth
    }

    /// Trusts `roots` for `source` (a channel), replacing what it had.
    pub fn set_extra_roots(&self, source: &str, roots: Vec<CertificateDer<'static>>) {
        let mut extra = self
            .extra_roots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if extra.get(source) == Some(&roots) {
            return;
        }
        extra.insert(source.to_string(), roots);
        self.rebuild(&extra);
    }

    /// Stops trusting what `source` added.
    pub fn remove_extra_roots(&self, source: &str) {
        let mut extra = self
            .extra_roots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if extra.remove(source).is_some() {
            self.rebuild(&extra);
        }
    }

    /// The distinct client CAs trusted now.
    pub fn trusted_roots(&self) -> Vec<CertificateDer<'static>> {
        let extra = self
            .extra_roots
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.material.roots(&extra)
    }

    fn rebuild(&self, extra: &BTreeMap<String, Vec<CertificateDer<'static>>>) {
        match self.material.build(extra) {
            Ok(config) => {
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(config);
            }
            // Only the roots changed since the first good build, and roots
            // that cannot be parsed are skipped, so this is not expected.
            Err(e) => {
                tracing::error!(error = %e, "cannot rebuild the TLS config; the trusted client CAs stay as they were")
            }
        }
    }
}

impl Material {
    fn roots(
        &self,
        extra: &BTreeMap<String, Vec<CertificateDer<'static>>>,
    ) -> Vec<CertificateDer<'static>> {
        let mut roots: Vec<CertificateDer<'static>> = self
            .static_roots
            .iter()
            .chain(extra.values().flatten())
            .cloned()
            .collect();
        // A CA trusted by several channels is sent once in the hints.
        roots.sort_by(|a, b| a.as_ref().cmp(b.as_ref()));
        roots.dedup();
        roots
    }

    fn build(
        &self,
        extra: &BTreeMap<String, Vec<CertificateDer<'static>>>,
    ) -> Result<ServerConfig, TlsError> {
        let builder = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()?;
        let builder = match self.client_auth {
            ClientAuth::None => builder.with_no_client_auth(),
            auth => builder.with_client_cert_verifier(self.verifier(auth, extra)?),
        };
        let mut config = builder.with_single_cert(self.chain.clone(), self.key.clone_key())?;
        config.alpn_protocols = self.alpn.clone();
        Ok(config)
    }

    fn verifier(
        &self,
        auth: ClientAuth,
        extra: &BTreeMap<String, Vec<CertificateDer<'static>>>,
    ) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
        let mut store = RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(self.roots(extra));
        if ignored > 0 {
            tracing::warn!(
                ignored,
                "client CA certificates that cannot be parsed are not trusted"
            );
        }
        let required = auth == ClientAuth::Required;
        if store.is_empty() {
            return Ok(Arc::new(NoTrustedRoots {
                required,
                provider: self.provider.clone(),
            }));
        }
        let builder =
            WebPkiClientVerifier::builder_with_provider(Arc::new(store), self.provider.clone());
        Ok(if required {
            builder.build()?
        } else {
            builder.allow_unauthenticated().build()?
        })
    }
}

/// Asks for a client certificate while no CA is trusted: every certificate
/// offered is refused (as Go's TLS does with an empty pool).
#[derive(Debug)]
struct NoTrustedRoots {
    required: bool,
    provider: Arc<CryptoProvider>,
}

impl ClientCertVerifier for NoTrustedRoots {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        self.required
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Who is on the other end of an HTTPS connection: axum's connect info.
#[derive(Debug, Clone)]
pub struct TlsPeer {
    pub remote_addr: Option<SocketAddr>,
    /// The client's certificate, present only once it has verified.
    pub client_certificate: Option<CertificateDer<'static>>,
}

impl TlsPeer {
    pub(crate) fn of(stream: &TlsStream<TcpStream>) -> TlsPeer {
        let (tcp, session) = stream.get_ref();
        TlsPeer {
            remote_addr: tcp.peer_addr().ok(),
            client_certificate: session
                .peer_certificates()
                .and_then(|chain| chain.first().cloned()),
        }
    }
}

/// Connections of a TLS listener, handshaken: a stream for tonic's
/// `serve_with_incoming`. Each holds a slot of the listener's
/// [`ConnectionLimit`], taken before its handshake.
pub struct TlsIncoming {
    accepted: mpsc::Receiver<Admitted<TlsStream<TcpStream>>>,
}

impl TlsIncoming {
    /// [`TlsIncoming::limited`] with the default limits: 1024 connections,
    /// handshakes within [`HANDSHAKE_TIMEOUT`].
    pub fn new(listener: TcpListener, tls: Arc<ListenerTls>, shutdown: CancellationToken) -> Self {
        let defaults = crate::fabric::localconfig::GrpcServerSettings::default();
        let limit = ConnectionLimit::new("tls", defaults.max_connections);
        Self::limited(listener, tls, limit, HANDSHAKE_TIMEOUT, shutdown)
    }

    /// Accepts on `listener` until `shutdown` or until this is dropped; each
    /// handshake runs on its own task, with the config current at its
    /// accept, and must finish within `handshake_timeout`.
    pub fn limited(
        listener: TcpListener,
        tls: Arc<ListenerTls>,
        limit: ConnectionLimit,
        handshake_timeout: Duration,
        shutdown: CancellationToken,
    ) -> Self {
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        tokio::spawn(accept_loop(
            listener,
            tls,
            limit,
            handshake_timeout,
            tx,
            shutdown,
        ));
        TlsIncoming { accepted }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ListenerTls>,
    limit: ConnectionLimit,
    handshake_timeout: Duration,
    tx: mpsc::Sender<Admitted<TlsStream<TcpStream>>>,
    shutdown: CancellationToken,
) {
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return,
            next = connections::accept(&listener, &limit, Refusal::Close, &shutdown) => next,
        };
        let Some((tcp, peer, slot)) = next else {
            return;
        };
        let acceptor = TlsAcceptor::from(tls.config());
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = tx.send(Admitted::new(stream, slot)).await;
                }
                Ok(Err(e)) => {
                    tracing::warn!(%peer, error = %e, "TLS handshake failed")
                }
                Err(_) => tracing::warn!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

impl futures::Stream for TlsIncoming {
    type Item = Result<Admitted<TlsStream<TcpStream>>, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accepted.poll_recv(cx).map(|next| next.map(Ok))
    }
}

/// Certificates made in tests: CAs, and leaves they sign.
#[cfg(test)]
pub(crate) mod testing {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};

    pub struct TestCa {
        pub issuer: CertifiedIssuer<'static, KeyPair>,
    }

    /// A PEM certificate and its PEM key.
    pub struct Leaf {
        pub cert_pem: String,
        pub key_pem: String,
    }

    impl TestCa {
        pub fn new(name: &str) -> TestCa {
            let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.distinguished_name.push(DnType::CommonName, name);
            let key = KeyPair::generate().expect("key");
            TestCa {
                issuer: CertifiedIssuer::self_signed(params, key).expect("CA"),
            }
        }

        pub fn pem(&self) -> String {
            self.issuer.pem()
        }

        pub fn der(&self) -> Vec<u8> {
            self.issuer.der().to_vec()
        }

        pub fn leaf(&self, names: &[&str]) -> Leaf {
            let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            let params = CertificateParams::new(names).expect("params");
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &self.issuer).expect("signed");
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{Leaf, TestCa};
    use super::*;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server};
    use tonic::{Request, Response, Status};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::health_server::{Health, HealthServer};
    use tonic_health::pb::{HealthCheckRequest, HealthCheckResponse};

    /// A caller's certificate and address, as a handler saw them.
    type Caller = (Option<CertificateDer<'static>>, Option<SocketAddr>);

    /// A health service that notes who called.
    #[derive(Default, Clone)]
    struct Recorder {
        seen: Arc<Mutex<Vec<Caller>>>,
    }

    #[tonic::async_trait]
    impl Health for Recorder {
        async fn check(
            &self,
            request: Request<HealthCheckRequest>,
        ) -> Result<Response<HealthCheckResponse>, Status> {
            self.seen.lock().expect("lock").push((
                crate::runtime::server::client_certificate(&request),
                request.remote_addr(),
            ));
            Ok(Response::new(HealthCheckResponse { status: 1 }))
        }

        type WatchStream = futures::stream::Empty<Result<HealthCheckResponse, Status>>;

        async fn watch(
            &self,
            _request: Request<HealthCheckRequest>,
        ) -> Result<Response<Self::WatchStream>, Status> {
            Ok(Response::new(futures::stream::empty()))
        }
    }

    fn server_tls(ca: &TestCa, client_roots: &[&TestCa], auth: ClientAuth) -> Arc<ListenerTls> {
        let server = ca.leaf(&["127.0.0.1", "localhost"]);
        let settings = TlsSettings {
            certificate_pem: server.cert_pem.into_bytes(),
            private_key_pem: server.key_pem.into_bytes(),
            client_roots: client_roots
                .iter()
                .map(|c| CertificateDer::from(c.der()))
                .collect(),
            client_auth: auth,
            alpn: vec![b"h2".to_vec()],
        };
        Arc::new(ListenerTls::new(settings).expect("TLS"))
    }

    async fn serve(tls: Arc<ListenerTls>, recorder: Recorder) -> (SocketAddr, CancellationToken) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let incoming = TlsIncoming::new(listener, tls, shutdown.clone());
        tokio::spawn(
            Server::builder()
                .add_service(HealthServer::new(recorder))
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
        );
        (address, shutdown)
    }

    /// One health check on a new connection; the error if it fails.
    async fn check(
        address: SocketAddr,
        server_ca: &TestCa,
        client: Option<&Leaf>,
    ) -> Result<(), String> {
        let mut tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(server_ca.pem()))
            .domain_name("localhost");
        if let Some(leaf) = client {
            tls = tls.identity(Identity::from_pem(&leaf.cert_pem, &leaf.key_pem));
        }
        let channel: Channel = Endpoint::from_shared(format!("https://{address}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client TLS")
            .connect()
            .await
            .map_err(|e| format!("connect: {e:?}"))?;
        HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .map(|_| ())
            .map_err(|e| format!("check: {e}"))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_handler_sees_the_client_certificate_and_address() {
        let ca = TestCa::new("tlsca");
        let client = ca.leaf(&["client.test"]);
        let recorder = Recorder::default();
        let (address, shutdown) = serve(
            server_tls(&ca, &[&ca], ClientAuth::Required),
            recorder.clone(),
        )
        .await;
        check(address, &ca, Some(&client)).await.expect("served");
        let seen = recorder.seen.lock().expect("lock").clone();
        let expected = CertificateDer::from_pem_slice(client.cert_pem.as_bytes()).expect("pem");
        assert_eq!(seen.len(), 1);
        assert_eq!(seen[0].0.as_ref(), Some(&expected));
        let from = seen[0].1.expect("remote address");
        assert!(from.ip().is_loopback() && from.port() != address.port());
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn trusted_client_cas_change_at_run_time() {
        let ca = TestCa::new("tlsca");
        let org_ca = TestCa::new("org-tlsca");
        let stranger_ca = TestCa::new("stranger");
        let org_client = org_ca.leaf(&["peer.org"]);
        let config_client = ca.leaf(&["admin"]);
        let tls = server_tls(&ca, &[&ca], ClientAuth::Required);
        let (address, shutdown) = serve(tls.clone(), Recorder::default()).await;

        check(address, &ca, Some(&config_client))
            .await
            .expect("a client of ClientRootCAs");
        check(address, &ca, Some(&org_client))
            .await
            .expect_err("not trusted yet");
        check(address, &ca, None).await.expect_err("no certificate");

        tls.set_extra_roots("mychannel", vec![CertificateDer::from(org_ca.der())]);
        check(address, &ca, Some(&org_client))
            .await
            .expect("trusted through the channel");
        check(address, &ca, Some(&stranger_ca.leaf(&["x"])))
            .await
            .expect_err("a stranger");

        tls.remove_extra_roots("mychannel");
        check(address, &ca, Some(&org_client))
            .await
            .expect_err("the channel has gone");
        check(address, &ca, Some(&config_client))
            .await
            .expect("ClientRootCAs stay");
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_beyond_the_limit_and_silent_handshakes_are_dropped() {
        use tokio::io::AsyncReadExt;
        let ca = TestCa::new("tlsca");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let shutdown = CancellationToken::new();
        let limit = ConnectionLimit::new("test", 1);
        let incoming = TlsIncoming::limited(
            listener,
            server_tls(&ca, &[], ClientAuth::None),
            limit.clone(),
            Duration::from_millis(200),
            shutdown.clone(),
        );
        tokio::spawn(
            Server::builder()
                .add_service(HealthServer::new(Recorder::default()))
                .serve_with_incoming_shutdown(incoming, shutdown.clone().cancelled_owned()),
        );
        // A client that never starts its handshake is dropped in time.
        let mut silent = TcpStream::connect(address).await.expect("connect");
        let mut seen = Vec::new();
        silent.read_to_end(&mut seen).await.expect("closed");
        assert!(seen.is_empty());
        while limit.open() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }

        // One connection held: the next is closed before any handshake.
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(ca.pem()))
            .domain_name("localhost");
        let held = Endpoint::from_shared(format!("https://{address}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client TLS")
            .connect()
            .await
            .expect("the first connection");
        HealthClient::new(held.clone())
            .check(HealthCheckRequest::default())
            .await
            .expect("served");
        assert_eq!(limit.open(), 1);
        check(address, &ca, None).await.expect_err("over the limit");
        assert!(limit.refused() >= 1);
        drop(held);
        while limit.open() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        check(address, &ca, None).await.expect("room again");
        shutdown.cancel();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn optional_client_auth_and_no_trusted_cas() {
        let ca = TestCa::new("tlsca");
        let client = ca.leaf(&["client"]);
        // Optional: no certificate is fine; one that verifies too.
        let (address, shutdown) = serve(
            server_tls(&ca, &[&ca], ClientAuth::Optional),
            Recorder::default(),
        )
        .await;
        check(address, &ca, None).await.expect("anonymous");
        check(address, &ca, Some(&client)).await.expect("verified");
        check(address, &ca, Some(&TestCa::new("other").leaf(&["x"])))
            .await
            .expect_err("a certificate that does not verify");
        shutdown.cancel();

        // Required with nothing trusted: nobody gets in.
        let (address, shutdown) = serve(
            server_tls(&ca, &[], ClientAuth::Required),
            Recorder::default(),
        )
        .await;
        check(address, &ca, Some(&client))
            .await
            .expect_err("no CA is trusted");
        shutdown.cancel();
    }

    #[test]
    fn config_certificates_are_pem_or_der() {
        let ca = TestCa::new("tlsca");
        let two = format!("{}{}", ca.pem(), TestCa::new("other").pem());
        assert_eq!(certificates_from_config(two.as_bytes()).len(), 2);
        assert_eq!(
            certificates_from_config(&ca.der()),
            vec![CertificateDer::from(ca.der())]
        );
        assert!(certificates_from_config(b"").is_empty());
        assert!(certificates_from_config(b"-----BEGIN CERTIFICATE-----\nnot base64!\n").is_empty());
    }
}
