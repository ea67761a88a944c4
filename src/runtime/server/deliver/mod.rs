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
//!
//! Every request passes [`access`] first: its timestamp, its TLS binding and
//! the channel's Readers policy.
//!
//! On the wire ([`wire`]) blocks go out as their stored bytes. A stream reads
//! the next block only once the one before has been taken by its response
//! body, so a client that stops reading holds a block or two, shared with
//! the cache, not a queue of copies.

pub mod access;
pub mod wire;

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
use crate::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType, SeekErrorResponse};
use crate::fabric::protos::orderer::seek_position::Type as Position;
use crate::fabric::protos::orderer::SeekInfo;
use crate::fabric::protos::ordo::wire::{deliver_response, DeliverResponse};
use crate::runtime::channel::{ChannelHandle, ChannelState};
use crate::runtime::consensus::ChainStatus;
use crate::runtime::msgprocessor;
use crate::runtime::registrar::Registrar;
use access::{DeliverAccess, SessionAccess};

/// Answers buffered towards a client: one, so that a block is read from the
/// ledger only once the client's response body has room for it.
pub const RESPONSE_BUFFER: usize = 1;

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
    access: Arc<DeliverAccess>,
    /// SHA-256 of the client's TLS certificate, if its connection sent one.
    connection_certificate: Option<Vec<u8>>,
}

/// A validated request: which blocks, and how.
struct Seek {
    /// The first block; for a start Fabric's ledger cannot find (a number
    /// above the height, or no position at all), the request answers
    /// NOT_FOUND when it comes to reading it.
    start: Start,
    /// The request ends (SUCCESS) after the block of exactly this number, as
    /// Fabric compares: a stop below the start never ends it.
    stop: u64,
    fail_if_not_ready: bool,
    /// BEST_EFFORT: blocks keep coming from the ledger while the consenter is down.
    best_effort: bool,
    header_only: bool,
}

#[derive(Clone, Copy)]
enum Start {
    At(u64),
    NotFound,
}

impl Start {
    /// The number Fabric's iterator reports for the start (0 when not found).
    fn number(self) -> u64 {
        match self {
            Start::At(n) => n,
            Start::NotFound => 0,
        }
    }
}

impl DeliverStream {
    pub fn new(
        registrar: Arc<Registrar>,
        responses: Responses,
        shutdown: CancellationToken,
        access: Arc<DeliverAccess>,
        connection_certificate: Option<Vec<u8>>,
    ) -> Self {
        DeliverStream {
            registrar,
            responses,
            shutdown,
            access,
            connection_certificate,
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
        super::memory::release_soon();
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
        let (channel, seek, session) = match self.parse(envelope) {
            Ok(parsed) => parsed,
            Err((status, reason)) => {
                tracing::warn!(?status, %reason, "deliver request refused");
                return Outcome::Status(status);
            }
        };
        let span = tracing::debug_span!("seek", channel = %channel.id(), start = seek.start.number(), stop = seek.stop);
        self.stream_blocks(&channel, &seek, session)
            .instrument(span)
            .await
    }

    /// Reads a request as Fabric's deliver handler does, in its order: the
    /// header's timestamp and TLS binding, the channel (an empty or unknown
    /// ID: NOT_FOUND), the SeekInfo, the consenter's state (unless
    /// BEST_EFFORT), the requester's access, then the positions.
    fn parse(
        &self,
        envelope: &Envelope,
    ) -> Result<(Arc<ChannelHandle>, Seek, SessionAccess), (Status, String)> {
        let bad = |reason: String| (Status::BadRequest, reason);
        let header = msgprocessor::channel_header(envelope).map_err(|r| bad(r.info))?;
        self.access
            .check_header(&header, self.connection_certificate.as_deref())
            .map_err(bad)?;
        let channel = self.registrar.channel(&header.channel_id).ok_or_else(|| {
            // A channel that could not start is known, only not serving.
            match self.registrar.failed_channel(&header.channel_id) {
                Some(failed) => (
                    Status::ServiceUnavailable,
                    format!("channel {} failed to start: {}", failed.id, failed.reason),
                ),
                None => (
                    Status::NotFound,
                    format!("channel {:?} not found", header.channel_id),
                ),
            }
        })?;
        let payload = Payload::decode(envelope.payload.clone())
            .map_err(|e| bad(format!("error unmarshalling payload: {e}")))?;
        let seek_info = SeekInfo::decode(payload.data)
            .map_err(|e| bad(format!("error unmarshalling SeekInfo: {e}")))?;
        let best_effort = seek_info.error_response == SeekErrorResponse::BestEffort as i32;
        if let Some(reason) = unavailable(&channel.state(), best_effort) {
            return Err((Status::ServiceUnavailable, reason));
        }
        if let Some(reason) = consenter_errored(&channel.chain_status(), best_effort) {
            return Err((Status::ServiceUnavailable, reason));
        }
        let mut session =
            SessionAccess::new(envelope, channel.clone(), &self.access).map_err(bad)?;
        session
            .evaluate()
            .map_err(|reason| (Status::Forbidden, reason))?;
        let (Some(start_position), Some(stop_position)) = (seek_info.start, seek_info.stop) else {
            return Err(bad("seek start or stop position not set".into()));
        };
        let height = channel.store().height();
        let newest = height.saturating_sub(1);
        let start = match start_position.r#type {
            Some(Position::Oldest(_)) => Start::At(0),
            Some(Position::Newest(_)) => Start::At(newest),
            Some(Position::Specified(s)) if s.number <= height => Start::At(s.number),
            Some(Position::Specified(_)) | None => Start::NotFound,
            Some(Position::NextCommit(_)) => Start::At(height),
        };
        let number = start.number();
        let stop = match &stop_position.r#type {
            Some(Position::Oldest(_)) => number,
            // Newest to newest is the one block, even if another is written meanwhile.
            Some(Position::Newest(_)) if start_position == stop_position => number,
            Some(Position::Newest(_)) => newest,
            Some(Position::Specified(s)) if s.number < number => {
                return Err(bad(format!(
                    "start number {number} greater than stop number {}",
                    s.number
                )))
            }
            Some(Position::Specified(s)) => s.number,
            // Fabric leaves the stop at 0 for these.
            Some(Position::NextCommit(_)) | None => 0,
        };
        Ok((
            channel,
            Seek {
                start,
                stop,
                fail_if_not_ready: seek_info.behavior == SeekBehavior::FailIfNotReady as i32,
                best_effort,
                header_only: seek_info.content_type == SeekContentType::HeaderWithSig as i32,
            },
            session,
        ))
    }

    async fn stream_blocks(
        &self,
        channel: &ChannelHandle,
        seek: &Seek,
        mut session: SessionAccess,
    ) -> Outcome {
        let store = channel.store();
        // Counted while it reads, so the channel's followers share blocks.
        let _reader = store.deliver_reader();
        let mut heights = store.subscribe();
        let mut states = channel.subscribe_state();
        let mut chain_status = channel.status_publisher().subscribe();
        let Start::At(mut number) = seek.start else {
            return Outcome::Status(Status::NotFound);
        };
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
                        if changed.is_err() || unavailable(&state, seek.best_effort).is_some() {
                            return Outcome::Status(Status::ServiceUnavailable);
                        }
                    }
                    changed = chain_status.changed() => {
                        let status = chain_status.borrow_and_update().clone();
                        if changed.is_err() || consenter_errored(&status, seek.best_effort).is_some() {
                            return Outcome::Status(Status::ServiceUnavailable);
                        }
                    }
                    _ = self.shutdown.cancelled() => return Outcome::Status(Status::ServiceUnavailable),
                    _ = self.responses.closed() => return Outcome::StreamGone,
                }
            }
            // Room for the block first: a client that does not read keeps
            // the next block on disk (or in the shared cache), not here.
            let slot = tokio::select! {
                slot = self.responses.reserve() => match slot {
                    Ok(slot) => slot,
                    Err(_) => return Outcome::StreamGone,
                },
                _ = self.shutdown.cancelled() => return Outcome::Status(Status::ServiceUnavailable),
            };
            let block = match store.encoded_block(number).await {
                Ok(Some(block)) => block,
                Ok(None) => return Outcome::Status(Status::NotFound),
                Err(e) => {
                    tracing::error!(error = %e, "cannot read block for deliver");
                    return Outcome::Status(Status::InternalServerError);
                }
            };
            // A config change or the requester's expiry may end its access.
            if let Err(reason) = session.evaluate() {
                tracing::warn!(%reason, "client authorization revoked for deliver request");
                return Outcome::Status(Status::Forbidden);
            }
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
            slot.send(Ok(response));
            channel.metrics().deliver_blocks_sent.inc();
            if number == seek.stop {
                return Outcome::Status(Status::Success);
            }
            number = match number.checked_add(1) {
                Some(next) => next,
                None => return Outcome::Status(Status::NotFound),
            };
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

/// Why Deliver is refused while the consenter has lost its backend (Kafka's
/// brokers): Fabric's `Errored()`, which BEST_EFFORT requests ignore.
fn consenter_errored(status: &ChainStatus, best_effort: bool) -> Option<String> {
    let reason = status.errored.as_ref().filter(|_| !best_effort)?;
    Some(format!("the consenter is errored: {reason}"))
}

/// Why a channel in this state cannot serve Deliver, if it cannot. A
/// BEST_EFFORT request reads the ledger whatever the consenter does; only a
/// channel that stopped ends it.
fn unavailable(state: &ChannelState, best_effort: bool) -> Option<String> {
    let serves = if best_effort {
        !matches!(state, ChannelState::Stopped)
    } else {
        // A channel whose storage failed still serves what is durable.
        state.serves() || matches!(state, ChannelState::StorageFault(_))
    };
    (!serves).then(|| format!("channel is {state}"))
}
