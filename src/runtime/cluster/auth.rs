//! Who is on the other end of a cluster stream. Inbound, a consenter is
//! known by its TLS client certificate: the one the channel's config names
//! for it. Outbound, the node presents its own client certificate and
//! accepts a server that shows the certificate the channel's config names
//! for that consenter, or one that a trusted CA issued for its host.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::ClusterError;
use crate::fabric::localconfig::ClusterClientTls;
use crate::runtime::consensus::etcdraft::transport::RaftPeer;
use crate::runtime::server::tls::{certificates_from_config, certificates_from_pem};

/// A certificate as a channel config carries it (PEM or DER): the first one.
pub(crate) fn certificate_of(raw: &[u8]) -> Option<CertificateDer<'static>> {
    certificates_from_config(raw).into_iter().next()
}

/// The consenters of one channel, by the client certificate each presents.
#[derive(Debug, Default)]
pub(crate) struct Consenters {
    by_certificate: Vec<(CertificateDer<'static>, u64)>,
}

impl Consenters {
    pub(crate) fn of(channel: &str, peers: &[RaftPeer]) -> Consenters {
        let by_certificate = peers
            .iter()
            .filter_map(|peer| match certificate_of(&peer.client_tls_cert) {
                Some(certificate) => Some((certificate, peer.id)),
                None => {
                    tracing::warn!(%channel, consenter = peer.id, "the consenter's client TLS certificate cannot be read; its streams will be refused");
                    None
                }
            })
            .collect();
        Consenters { by_certificate }
    }

    /// The consenter whose client certificate this is.
    pub(crate) fn id_of(&self, certificate: &CertificateDer<'_>) -> Option<u64> {
        self.by_certificate
            .iter()
            .find(|(known, _)| known.as_ref() == certificate.as_ref())
            .map(|(_, id)| *id)
    }
}

/// The node as a TLS client of other orderers.
pub(crate) struct ClientIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    /// Verifies a server against the configured CAs; `None` when none is
    /// configured (then only the certificate a channel names is accepted).
    by_roots: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ClientIdentity {
    pub(crate) fn new(tls: &ClusterClientTls) -> Result<ClientIdentity, ClusterError> {
        let chain = certificates_from_pem(&tls.certificate_pem)
            .map_err(|e| ClusterError::ClientTls(format!("the client certificate: {e}")))?;
        if chain.is_empty() {
            return Err(ClusterError::ClientTls(
                "the client certificate file holds no certificate".into(),
            ));
        }
        let key = PrivateKeyDer::from_pem_slice(&tls.private_key_pem)
            .map_err(|e| ClusterError::ClientTls(format!("the client private key: {e}")))?;
        let roots = certificates_from_pem(&tls.server_root_cas_pem)
            .map_err(|e| ClusterError::ClientTls(format!("a root CA: {e}")))?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut store = RootCertStore::empty();
        let (_, ignored) = store.add_parsable_certificates(roots);
        if ignored > 0 {
            tracing::warn!(
                ignored,
                "root CAs of other orderers that cannot be parsed are not trusted"
            );
        }
        let by_roots = if store.is_empty() {
            None
        } else {
            Some(
                WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                    .build()
                    .map_err(|e| ClusterError::ClientTls(format!("the root CAs: {e}")))?,
            )
        };
        let identity = ClientIdentity {
            chain,
            key,
            by_roots,
            provider,
        };
        // Refuse a certificate and key that do not go together now, not at
        // the first dial.
        identity.client_config(None)?;
        Ok(identity)
    }

    /// The TLS client config for dialing a consenter whose listener presents
    /// `server_certificate` (from the channel's config).
    pub(crate) fn client_config(
        &self,
        server_certificate: Option<CertificateDer<'static>>,
    ) -> Result<Arc<ClientConfig>, ClusterError> {
        let verifier = Arc::new(ConsenterServerVerifier {
            expected: server_certificate,
            by_roots: self.by_roots.clone(),
            provider: self.provider.clone(),
        });
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| ClusterError::ClientTls(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| ClusterError::ClientTls(e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts the server certificate the channel's config names for the
/// consenter (the config is what the channel's admins signed; Fabric pins
/// it too), while it is valid, or else one that chains to a configured CA
/// and names the host dialed.
#[derive(Debug)]
struct ConsenterServerVerifier {
    expected: Option<CertificateDer<'static>>,
    by_roots: Option<Arc<WebPkiServerVerifier>>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for ConsenterServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self
            .expected
            .as_ref()
            .is_some_and(|expected| expected.as_ref() == end_entity.as_ref())
        {
            return within_validity(end_entity, now).map(|()| ServerCertVerified::assertion());
        }
        match &self.by_roots {
            Some(verifier) => verifier.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            ),
            None => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
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

fn within_validity(certificate: &CertificateDer<'_>, now: UnixTime) -> Result<(), rustls::Error> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let now = i64::try_from(now.as_secs())
        .ok()
        .and_then(|secs| x509_parser::time::ASN1Time::from_timestamp(secs).ok())
        .ok_or(rustls::Error::InvalidCertificate(
            CertificateError::BadEncoding,
        ))?;
    let validity = parsed.validity();
    if now < validity.not_before {
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet,
        ))
    } else if now > validity.not_after {
        Err(rustls::Error::InvalidCertificate(CertificateError::Expired))
    } else {
        Ok(())
    }
}

/// The name a consenter's listener is verified against: its host.
pub(crate) fn server_name(host: &str) -> Result<ServerName<'static>, String> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_string()).map_err(|e| format!("{host:?} is not a host name: {e}"))
}
