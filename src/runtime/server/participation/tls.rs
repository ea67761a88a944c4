//! The admin listener over mutual TLS (`Admin.TLS`), as Fabric serves it:
//! the server's certificate from `Admin.TLS.Certificate`, and a client
//! certificate required that chains to `Admin.TLS.ClientRootCAs`. A client
//! without one fails the handshake, so nothing at all is served to it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

use crate::fabric::localconfig::ServerTls;

/// A client that has not finished its handshake by then is dropped, so
/// half-open connections cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("Admin.TLS.Certificate holds no PEM certificate: {0}")]
    Certificate(String),
    #[error("Admin.TLS.PrivateKey holds no usable PEM private key: {0}")]
    PrivateKey(String),
    #[error("Admin.TLS.ClientRootCAs: {0}")]
    ClientRoots(String),
    #[error("invalid admin TLS material: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The rustls server config for the admin listener: TLS 1.2 and 1.3,
/// HTTP/1.1, client certificates verified against the client roots.
pub fn server_config(tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsSetupError> {
    let certificates = CertificateDer::pem_slice_iter(&tls.certificate_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsSetupError::Certificate(e.to_string()))?;
    if certificates.is_empty() {
        return Err(TlsSetupError::Certificate("no certificate found".into()));
    }
    let key = PrivateKeyDer::from_pem_slice(&tls.private_key_pem)
        .map_err(|e| TlsSetupError::PrivateKey(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(&tls.client_root_cas_pem) {
        let certificate = certificate.map_err(|e| TlsSetupError::ClientRoots(e.to_string()))?;
        roots
            .add(certificate)
            .map_err(|e| TlsSetupError::ClientRoots(e.to_string()))?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::ClientRoots("no CA certificate found".into()));
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| TlsSetupError::ClientRoots(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Serves `router` over TLS on `address` until `shutdown`; returns the bound
/// address and the server task, which ends once every connection has closed.
pub async fn serve_https(
    router: axum::Router,
    address: &str,
    config: Arc<ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let acceptor = TlsAcceptor::from(config);
    let server = async move {
        let mut connections = JoinSet::new();
        loop {
            let (tcp, peer) = tokio::select! {
                _ = shutdown.cancelled() => break,
                accepted = listener.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // Out of descriptors and the like: the listener stays up.
                        tracing::warn!(error = %e, "admin listener cannot accept a connection");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            while connections.try_join_next().is_some() {}
            connections.spawn(serve_connection(
                acceptor.clone(),
                tcp,
                peer,
                router.clone(),
                shutdown.clone(),
            ));
        }
        drop(listener);
        while connections.join_next().await.is_some() {}
        Ok(())
    };
    Ok((local, tokio::spawn(server)))
}

async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    shutdown: CancellationToken,
) {
    let handshake = tokio::select! {
        _ = shutdown.cancelled() => return,
        handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)) => handshake,
    };
    let stream = match handshake {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            tracing::warn!(%peer, error = %e, "admin TLS handshake refused");
            return;
        }
        Err(_) => {
            tracing::warn!(%peer, "admin TLS handshake timed out");
            return;
        }
    };
    let service = hyper_util::service::TowerToHyperService::new(router);
    let connection =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material() -> ServerTls {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = rcgen::CertifiedIssuer::self_signed(
            ca_params,
            rcgen::KeyPair::generate().expect("key"),
        )
        .expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let cert = rcgen::CertificateParams::new(vec!["127.0.0.1".into()])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("signed");
        ServerTls {
            certificate_pem: cert.pem().into_bytes(),
            private_key_pem: key.serialize_pem().into_bytes(),
            client_auth_required: true,
            client_root_cas_pem: ca.pem().into_bytes(),
        }
    }

    #[test]
    fn material_is_checked_naming_the_key() {
        let good = material();
        let config = server_config(&good).expect("valid");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);

        let no_cert = ServerTls {
            certificate_pem: b"-----BEGIN NOTHING-----\n".to_vec(),
            ..good.clone()
        };
        let err = server_config(&no_cert).expect_err("no certificate");
        assert!(
            err.to_string().starts_with("Admin.TLS.Certificate"),
            "{err}"
        );

        let no_key = ServerTls {
            private_key_pem: good.certificate_pem.clone(),
            ..good.clone()
        };
        let err = server_config(&no_key).expect_err("no key");
        assert!(err.to_string().starts_with("Admin.TLS.PrivateKey"), "{err}");

        let no_roots = ServerTls {
            client_root_cas_pem: Vec::new(),
            ..good.clone()
        };
        let err = server_config(&no_roots).expect_err("no roots");
        assert!(
            err.to_string().starts_with("Admin.TLS.ClientRootCAs"),
            "{err}"
        );

        // A key that is not the certificate's.
        let other = material();
        let mismatched = ServerTls {
            private_key_pem: other.private_key_pem,
            ..good
        };
        assert!(server_config(&mismatched).is_err());
    }
}
