//! A small AtomicBroadcast client: what `ordo broadcast` and `ordo deliver` use,
//! and what the end-to-end tests drive the node with.

pub mod broadcast;
pub mod envelope;
pub mod participation;

use tonic::transport::{Channel, Endpoint};

use crate::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use crate::server::MAX_MESSAGE_BYTES;

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

/// Connects to an orderer at `host:port` (plaintext gRPC).
pub async fn connect(address: &str) -> Result<AtomicBroadcastClient<Channel>, ClientError> {
    let uri = if address.contains("://") {
        address.to_string()
    } else {
        format!("http://{address}")
    };
    let endpoint = Endpoint::from_shared(uri)
        .map_err(|_| ClientError::Address(address.into()))?
        .tcp_nodelay(true);
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
