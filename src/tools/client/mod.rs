//! A small AtomicBroadcast client: what `ordo broadcast` and `ordo deliver` use,
//! and what the end-to-end tests drive the node with. `commands` holds the
//! bodies of the binary's client subcommands; the admin client (HTTP) is part
//! of the `tools` feature.

pub mod broadcast;
pub mod commands;
pub mod envelope;
pub mod identity;
#[cfg(feature = "tools")]
pub mod participation;

use tonic::transport::{Channel, Endpoint};

use crate::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use crate::runtime::server::MAX_MESSAGE_BYTES;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid orderer address {0:?}")]
    Address(String),
    #[error("cannot connect to the orderer at {address}: {source}")]
    Connect {
        address: String,
        source: tonic::transport::Error,
    },
}

/// TLS towards the orderer: the CA that signed its certificate, the name to
/// check it against, and optionally a client certificate (mutual TLS).
#[derive(Debug, Clone)]
pub struct TlsOptions {
    pub ca_pem: Vec<u8>,
    /// Server name to verify; default: the host of the address.
    pub domain: Option<String>,
    /// Client certificate and key (PEM), for orderers that require client auth.
    pub client_identity: Option<(Vec<u8>, Vec<u8>)>,
}

/// Connects to an orderer at `host:port` (plaintext gRPC).
pub async fn connect(address: &str) -> Result<AtomicBroadcastClient<Channel>, ClientError> {
    connect_with(address, None).await
}

/// Connects to an orderer at `host:port`, over TLS when `tls` is given.
pub async fn connect_with(
    address: &str,
    tls: Option<&TlsOptions>,
) -> Result<AtomicBroadcastClient<Channel>, ClientError> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("{scheme}://{address}")
    };
    let mut endpoint = Endpoint::from_shared(uri)
        .map_err(|_| ClientError::Address(address.into()))?
        .tcp_nodelay(true);
    if let Some(tls) = tls {
        let mut config = tonic::transport::ClientTlsConfig::new()
            .ca_certificate(tonic::transport::Certificate::from_pem(&tls.ca_pem));
        if let Some(domain) = &tls.domain {
            config = config.domain_name(domain.clone());
        }
        if let Some((cert, key)) = &tls.client_identity {
            config = config.identity(tonic::transport::Identity::from_pem(cert, key));
        }
        endpoint = endpoint
            .tls_config(config)
            .map_err(|source| ClientError::Connect {
                address: address.into(),
                source,
            })?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|source| ClientError::Connect {
            address: address.into(),
            source,
        })?;
    Ok(AtomicBroadcastClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}
