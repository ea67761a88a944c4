//! Broadcast: one task per stream.
//!
//! Envelopes that are already waiting on the stream are taken together
//! (`ready_chunks`), validated on the calling task (so decoding runs on every
//! core), and consecutive envelopes for one channel are submitted to its chain
//! in one message. The stream first acquires in-flight permits for them: when the
//! channel's bound is reached it waits, stops reading, and the client's sends
//! slow down; nothing is dropped. Responses keep the envelopes' order. After a
//! non-SUCCESS answer the stream ends, as in Fabric.

use std::sync::Arc;

use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status as GrpcStatus, Streaming};

use crate::blockcutter::OrderedMessage;
use crate::channel::ChannelHandle;
use crate::consensus::{Submit, SubmitError};
use crate::msgprocessor::{self, Classification, Rejection};
use crate::protos::common::{Envelope, Status};
use crate::protos::orderer::BroadcastResponse;
use crate::registrar::Registrar;

/// Responses buffered towards a client before the stream stops reading.
pub const RESPONSE_BUFFER: usize = 1024;
/// Envelopes taken from a stream at once.
const MAX_CHUNK: usize = 128;

type Responses = mpsc::Sender<Result<BroadcastResponse, GrpcStatus>>;

/// Consecutive accepted envelopes for one channel, not yet submitted.
struct Run {
    channel: Arc<ChannelHandle>,
    config_seq: u64,
    messages: Vec<OrderedMessage>,
}

pub struct BroadcastStream {
    registrar: Arc<Registrar>,
    responses: Responses,
    shutdown: CancellationToken,
    /// The channel of the previous envelope: most streams use one channel.
    last_channel: Option<Arc<ChannelHandle>>,
}

impl BroadcastStream {
    pub fn new(
        registrar: Arc<Registrar>,
        responses: Responses,
        shutdown: CancellationToken,
    ) -> Self {
        BroadcastStream {
            registrar,
            responses,
            shutdown,
            last_channel: None,
        }
    }

    pub async fn run(mut self, inbound: Streaming<Envelope>) {
        let mut chunks = inbound.ready_chunks(MAX_CHUNK);
        loop {
            let chunk = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                chunk = chunks.next() => chunk,
            };
            let Some(chunk) = chunk else { break };
            if !self.process(chunk).await {
                break;
            }
        }
        tracing::debug!("broadcast stream closed");
    }

    /// Handles one chunk; false once the stream must end.
    async fn process(&mut self, chunk: Vec<Result<Envelope, GrpcStatus>>) -> bool {
        let mut run: Option<Run> = None;
        for item in chunk {
            let envelope = match item {
                Ok(envelope) => envelope,
                Err(status) => {
                    tracing::debug!(%status, "broadcast stream error from client");
                    let _ = self.submit(run.take()).await;
                    return false;
                }
            };
            match self.accept(envelope) {
                Ok((channel, config_seq, message)) => {
                    let limit = channel.max_inflight().min(MAX_CHUNK);
                    let continues = run.as_ref().is_some_and(|r| {
                        Arc::ptr_eq(&r.channel, &channel)
                            && r.config_seq == config_seq
                            && r.messages.len() < limit
                    });
                    if !continues {
                        if !self.submit(run.take()).await {
                            return false;
                        }
                        run = Some(Run {
                            channel,
                            config_seq,
                            messages: Vec::new(),
                        });
                    }
                    if let Some(r) = run.as_mut() {
                        r.messages.push(message);
                    }
                }
                Err(rejection) => {
                    if self.submit(run.take()).await {
                        tracing::warn!(status = ?rejection.status, info = %rejection.info, "rejecting broadcast message");
                        let _ = self.respond(rejection.status, rejection.info).await;
                    }
                    return false;
                }
            }
        }
        self.submit(run).await
    }

    /// Validates one envelope: its channel, its kind, the channel's filters.
    fn accept(
        &mut self,
        envelope: Envelope,
    ) -> Result<(Arc<ChannelHandle>, u64, OrderedMessage), Rejection> {
        let header = msgprocessor::channel_header(&envelope)?;
        let channel = match &self.last_channel {
            Some(c) if c.id() == header.channel_id => c.clone(),
            _ => {
                let c = self.registrar.channel(&header.channel_id).ok_or_else(|| {
                    Rejection::bad_request(format!("channel does not exist: {}", header.channel_id))
                })?;
                self.last_channel = Some(c.clone());
                c
            }
        };
        if msgprocessor::classify(&header) != Classification::Normal {
            return Err(Rejection {
                status: Status::NotImplemented,
                info: "config transactions are not supported by this version of Ordo yet".into(),
            });
        }
        let config = channel.config();
        let encoded = envelope.encode_to_vec();
        channel.filters().apply(&envelope, encoded.len(), &config)?;
        let size = envelope.payload.len() + envelope.signature.len();
        Ok((
            channel,
            config.sequence,
            OrderedMessage {
                envelope: encoded.into(),
                size,
            },
        ))
    }

    /// Submits a run and answers SUCCESS for each envelope; false once the stream must end.
    async fn submit(&mut self, run: Option<Run>) -> bool {
        let Some(Run {
            channel,
            config_seq,
            messages,
        }) = run
        else {
            return true;
        };
        if messages.is_empty() {
            return true;
        }
        let count = messages.len();
        // A channel that is down answers at once rather than after a wait for permits.
        if let Err(reason) = channel.chain() {
            return self.unavailable(reason).await;
        }
        // Waits while the channel holds its bound of envelopes: this is the backpressure.
        let Ok(permit) = channel
            .inflight()
            .clone()
            .acquire_many_owned(count as u32)
            .await
        else {
            return self
                .unavailable(format!("channel {} is closed", channel.id()))
                .await;
        };
        // The chain may have gone down during the wait.
        let chain = match channel.chain() {
            Ok(chain) => chain,
            Err(reason) => return self.unavailable(reason).await,
        };
        let submit = Submit {
            messages,
            config_seq,
            permit: Some(permit),
        };
        match chain.submit.send(submit).await {
            Ok(Ok(())) => {
                for _ in 0..count {
                    if !self.respond(Status::Success, String::new()).await {
                        return false;
                    }
                }
                true
            }
            Ok(Err(SubmitError::Unavailable(reason))) => self.unavailable(reason).await,
            Err(_) => {
                self.unavailable(format!("channel {} is not running", channel.id()))
                    .await
            }
        }
    }

    async fn unavailable(&mut self, reason: String) -> bool {
        tracing::warn!(%reason, "broadcast refused: service unavailable");
        let _ = self.respond(Status::ServiceUnavailable, reason).await;
        false
    }

    async fn respond(&mut self, status: Status, info: String) -> bool {
        let response = BroadcastResponse {
            status: status as i32,
            info,
        };
        self.responses.send(Ok(response)).await.is_ok()
    }
}
