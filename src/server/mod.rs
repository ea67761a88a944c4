//! The node's services: gRPC (AtomicBroadcast) and HTTP (channel
//! participation). They know their protocols, not consensus: they validate,
//! find the channel in the registrar and talk to the channel's actors by message.

mod broadcast;
mod deliver;
pub mod operations;
pub mod participation;

use std::sync::Arc;

use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use crate::protos::common::Envelope;
use crate::protos::orderer::atomic_broadcast_server::{AtomicBroadcast, AtomicBroadcastServer};
use crate::protos::orderer::{BroadcastResponse, DeliverResponse};
use crate::registrar::Registrar;

/// Largest gRPC message accepted or sent (Fabric's default MaxRecvMsgSize and
/// MaxSendMsgSize): room for an envelope up to AbsoluteMaxBytes and a full block.
pub const MAX_MESSAGE_BYTES: usize = 100 * 1024 * 1024;

/// `orderer.AtomicBroadcast`: Broadcast and Deliver.
#[derive(Clone)]
pub struct AtomicBroadcastService {
    registrar: Arc<Registrar>,
    shutdown: CancellationToken,
}

impl AtomicBroadcastService {
    pub fn new(registrar: Arc<Registrar>, shutdown: CancellationToken) -> AtomicBroadcastService {
        AtomicBroadcastService {
            registrar,
            shutdown,
        }
    }

    /// The tonic service, with Fabric's message size limits.
    pub fn into_server(self) -> AtomicBroadcastServer<AtomicBroadcastService> {
        AtomicBroadcastServer::new(self)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }
}

fn peer(request: &Request<Streaming<Envelope>>) -> String {
    request
        .remote_addr()
        .map_or_else(|| "unknown".to_string(), |a| a.to_string())
}

#[tonic::async_trait]
impl AtomicBroadcast for AtomicBroadcastService {
    type BroadcastStream = ReceiverStream<Result<BroadcastResponse, Status>>;
    type DeliverStream = ReceiverStream<Result<DeliverResponse, Status>>;

    async fn broadcast(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::BroadcastStream>, Status> {
        let span = tracing::info_span!("broadcast", peer = %peer(&request));
        let (tx, rx) = tokio::sync::mpsc::channel(broadcast::RESPONSE_BUFFER);
        let stream =
            broadcast::BroadcastStream::new(self.registrar.clone(), tx, self.shutdown.clone());
        tokio::spawn(stream.run(request.into_inner()).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn deliver(
        &self,
        request: Request<Streaming<Envelope>>,
    ) -> Result<Response<Self::DeliverStream>, Status> {
        let span = tracing::info_span!("deliver", peer = %peer(&request));
        let (tx, rx) = tokio::sync::mpsc::channel(deliver::RESPONSE_BUFFER);
        let stream = deliver::DeliverStream::new(self.registrar.clone(), tx, self.shutdown.clone());
        tokio::spawn(stream.run(request.into_inner()).instrument(span));
        Ok(Response::new(ReceiverStream::new(rx)))
    }
}

/// Serves an HTTP router on `address` until `shutdown`; returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve_http(
    router: axum::Router,
    address: &str,
    shutdown: CancellationToken,
) -> std::io::Result<(
    std::net::SocketAddr,
    tokio::task::JoinHandle<std::io::Result<()>>,
)> {
    let listener = tokio::net::TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let server = async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await
    };
    Ok((local, tokio::spawn(server)))
}
