//! Deliver: one task per stream, serving SeekInfo requests in turn.
//!
//! A stream waiting for a block not yet written awaits the ledger's height watch
//! (no polling, no thread): hundreds of streams at the head cost hundreds of
//! parked tasks. The response buffer is small, so a slow reader slows its own
//! stream only.
//!
//! Blocks are sent as the ledger stores them, marshalled: read off the async
//! workers and shared through the channel's block cache, so streams following
//! the head share one read of each block and none decodes or encodes it.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status as GrpcStatus, Streaming};
use tracing::Instrument;

use crate::fabric::blockutil;
use crate::fabric::protos::common::{Block, Envelope, Payload, Status};
use crate::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use crate::fabric::protos::orderer::seek_position::Type as Position;
use crate::fabric::protos::orderer::SeekInfo;
use crate::fabric::protos::ordo::wire::{deliver_response, DeliverResponse};
use crate::runtime::channel::{ChannelHandle, ChannelState};
use crate::runtime::msgprocessor;
use crate::runtime::registrar::Registrar;

/// Blocks buffered towards a client.
pub const RESPONSE_BUFFER: usize = 4;

type Responses = mpsc::Sender<Result<DeliverResponse, GrpcStatus>>;

/// How a request ended: with a status for the client, or with the stream gone.
enum Outcome {
    Status(Status),
    StreamGone,
}

pub struct DeliverStream {
    registrar: Arc<Registrar>,
    responses: Responses,
    shutdown: CancellationToken,
}

/// A validated request: which blocks, and how.
struct Seek {
    start: u64,
    stop: u64,
    fail_if_not_ready: bool,
    header_only: bool,
}

impl DeliverStream {
    pub fn new(
        registrar: Arc<Registrar>,
        responses: Responses,
        shutdown: CancellationToken,
    ) -> Self {
        DeliverStream {
            registrar,
            responses,
            shutdown,
        }
    }

    pub async fn run(self, mut inbound: Streaming<Envelope>) {
        let _open = self.registrar.metrics().deliver_stream_opened();
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                next = inbound.next() => next,
            };
            let envelope = match next {
                Some(Ok(envelope)) => envelope,
                Some(Err(status)) => {
                    tracing::debug!(%status, "deliver stream error from client");
                    let _ = self.responses.send(Err(super::inbound_error(status))).await;
                    break;
                }
                None => break,
            };
            match self.serve(&envelope).await {
                Outcome::StreamGone => break,
                Outcome::Status(status) => {
                    let response = DeliverResponse {
                        r#type: Some(deliver_response::Type::Status(status as i32)),
                    };
                    if self.responses.send(Ok(response)).await.is_err() || status != Status::Success
                    {
                        break;
                    }
                }
            }
        }
        tracing::debug!("deliver stream closed");
    }

    /// Serves one request, counted (as Fabric counts them) once its channel
    /// is known.
    async fn serve(&self, envelope: &Envelope) -> Outcome {
        let counted = msgprocessor::channel_header(envelope)
            .ok()
            .and_then(|header| self.registrar.channel(&header.channel_id));
        if let Some(channel) = &counted {
            channel.metrics().deliver_requests_received.inc();
        }
        let outcome = self.serve_request(envelope).await;
        if let Some(channel) = counted {
            let success = matches!(outcome, Outcome::Status(Status::Success));
            channel.metrics().deliver_request_completed(success);
        }
        outcome
    }

    async fn serve_request(&self, envelope: &Envelope) -> Outcome {
        let (channel, seek) = match self.parse(envelope) {
            Ok(parsed) => parsed,
            Err((status, reason)) => {
                tracing::warn!(?status, %reason, "deliver request refused");
                return Outcome::Status(status);
            }
        };
        let span = tracing::debug_span!("seek", channel = %channel.id(), start = seek.start, stop = seek.stop);
        self.stream_blocks(&channel, &seek).instrument(span).await
    }

    fn parse(&self, envelope: &Envelope) -> Result<(Arc<ChannelHandle>, Seek), (Status, String)> {
        let bad = |reason: String| (Status::BadRequest, reason);
        let header = msgprocessor::channel_header(envelope).map_err(|r| bad(r.info))?;
        let channel = self.registrar.channel(&header.channel_id).ok_or_else(|| {
            (
                Status::NotFound,
                format!("channel {} not found", header.channel_id),
            )
        })?;
        if let Some(reason) = unavailable(&channel.state()) {
            return Err((Status::ServiceUnavailable, reason));
        }
        let payload = Payload::decode(envelope.payload.clone())
            .map_err(|e| bad(format!("error unmarshalling payload: {e}")))?;
        let seek_info = SeekInfo::decode(payload.data)
            .map_err(|e| bad(format!("error unmarshalling SeekInfo: {e}")))?;
        let start = seek_info
            .start
            .and_then(|p| p.r#type)
            .ok_or_else(|| bad("seek start position not set".into()))?;
        let stop = seek_info
            .stop
            .and_then(|p| p.r#type)
            .ok_or_else(|| bad("seek stop position not set".into()))?;
        let fail_if_not_ready = seek_info.behavior == SeekBehavior::FailIfNotReady as i32;
        let height = channel.store().height();
        let newest = height.saturating_sub(1);
        let start = match start {
            Position::Oldest(_) => 0,
            Position::Newest(_) => newest,
            Position::Specified(s) => s.number,
            Position::NextCommit(_) => height,
        };
        if fail_if_not_ready && start >= height {
            return Err((
                Status::NotFound,
                format!("block {start} is not ready (height {height})"),
            ));
        }
        let stop = match stop {
            Position::Oldest(_) => 0,
            Position::Newest(_) => newest,
            Position::Specified(s) => s.number,
            Position::NextCommit(_) => {
                return Err(bad("next_commit is not a valid stop position".into()))
            }
        };
        if stop < start {
            return Err(bad(format!(
                "stop block {stop} is before start block {start}"
            )));
        }
        let header_only = seek_info.content_type == SeekContentType::HeaderWithSig as i32;
        Ok((
            channel,
            Seek {
                start,
                stop,
                fail_if_not_ready,
                header_only,
            },
        ))
    }

    async fn stream_blocks(&self, channel: &ChannelHandle, seek: &Seek) -> Outcome {
        let store = channel.store();
        // Counted while it reads, so the channel's followers share blocks.
        let _reader = store.deliver_reader();
        let mut heights = store.subscribe();
        let mut states = channel.subscribe_state();
        let mut number = seek.start;
        loop {
            while store.height() <= number {
                if seek.fail_if_not_ready {
                    return Outcome::Status(Status::NotFound);
                }
                tokio::select! {
                    changed = heights.changed() => {
                        if changed.is_err() {
                            return Outcome::Status(Status::ServiceUnavailable);
                        }
                    }
                    changed = states.changed() => {
                        let state = states.borrow_and_update().clone();
                        if changed.is_err() || unavailable(&state).is_some() {
                            return Outcome::Status(Status::ServiceUnavailable);
                        }
                    }
                    _ = self.shutdown.cancelled() => return Outcome::Status(Status::ServiceUnavailable),
                    _ = self.responses.closed() => return Outcome::StreamGone,
                }
            }
            let block = match store.encoded_block(number).await {
                Ok(Some(block)) => block,
                Ok(None) => return Outcome::Status(Status::NotFound),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read block for deliver");
                    return Outcome::Status(Status::InternalServerError);
                }
            };
            let block = if seek.header_only {
                match header_only(block) {
                    Ok(block) => block,
                    Err(e) => {
                        tracing::error!(block = number, error = %e, "cannot decode block for deliver");
                        return Outcome::Status(Status::InternalServerError);
                    }
                }
            } else {
                block
            };
            let response = DeliverResponse {
                r#type: Some(deliver_response::Type::Block(block)),
            };
            if self.responses.send(Ok(response)).await.is_err() {
                return Outcome::StreamGone;
            }
            channel.metrics().deliver_blocks_sent.inc();
            if number >= seek.stop {
                return Outcome::Status(Status::Success);
            }
            number += 1;
        }
    }
}

/// A HEADER_WITH_SIG answer: the block without its data. Fabric strips the data
/// of normal blocks only: config blocks stay whole.
fn header_only(marshalled: Bytes) -> Result<Bytes, prost::DecodeError> {
    let block = Block::decode(marshalled.clone())?;
    if blockutil::is_config_block(&block) {
        return Ok(marshalled);
    }
    let stripped = Block {
        header: block.header,
        data: None,
        metadata: block.metadata,
    };
    Ok(Bytes::from(stripped.encode_to_vec()))
}

/// Why a channel in this state cannot serve Deliver, if it cannot.
fn unavailable(state: &ChannelState) -> Option<String> {
    (!state.serves()).then(|| format!("channel is {state}"))
}
