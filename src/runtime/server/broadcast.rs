//! Broadcast: one task per stream.
//!
//! Envelopes that are already waiting on the stream are taken together
//! (up to 128 or 4 MB), validated on the calling task (so decoding runs on every
//! core), and consecutive envelopes for one channel are submitted to its chain
//! in one message. The stream first acquires in-flight permits for them: when the
//! channel's bound is reached it waits, stops reading, and the client's sends
//! slow down; nothing is dropped. Responses keep the envelopes' order. After a
//! non-SUCCESS answer the stream ends, as in Fabric.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use prost::Message;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::{Status as GrpcStatus, Streaming};

use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx;
use crate::fabric::protos::common::{Envelope, Status};
use crate::fabric::protos::orderer::BroadcastResponse;
use crate::runtime::blockcutter::OrderedMessage;
use crate::runtime::channel::ChannelHandle;
use crate::runtime::consensus::{Configure, InflightPermit, Submit, SubmitError};
use crate::runtime::metrics::{BroadcastRecorder, UNKNOWN};
use crate::runtime::msgprocessor::{self, Classification, Rejection};
use crate::runtime::registrar::Registrar;
use crate::security::signer::SigningIdentity;

/// Responses buffered towards a client before the stream stops reading.
pub const RESPONSE_BUFFER: usize = 1024;
/// Envelopes taken from a stream at once.
const MAX_CHUNK: usize = 128;
/// Bytes taken from a stream at once: envelopes are read (and held) before
/// their in-flight room is taken, so a stream of large envelopes holds about
/// this much beyond the channel's byte bound, not 128 envelopes.
const MAX_CHUNK_BYTES: usize = 4 << 20;

type Inbound = Result<Envelope, GrpcStatus>;

/// `first` and the envelopes already waiting behind it, up to [`MAX_CHUNK`]
/// and [`MAX_CHUNK_BYTES`]; and whether the stream ended.
fn take_ready(first: Inbound, inbound: &mut Streaming<Envelope>) -> (Vec<Inbound>, bool) {
    let size = |item: &Inbound| {
        item.as_ref()
            .map_or(0, |e| e.payload.len() + e.signature.len())
    };
    let mut bytes = size(&first);
    let mut chunk = vec![first];
    while chunk.len() < MAX_CHUNK && bytes < MAX_CHUNK_BYTES {
        match futures::FutureExt::now_or_never(inbound.next()) {
            Some(Some(item)) => {
                bytes += size(&item);
                chunk.push(item);
            }
            Some(None) => return (chunk, true),
            None => break,
        }
    }
    (chunk, false)
}

type Responses = mpsc::Sender<Result<BroadcastResponse, GrpcStatus>>;

/// An envelope that passed validation.
struct Accepted {
    channel: Arc<ChannelHandle>,
    config_seq: u64,
    message: OrderedMessage,
    /// For a config message: the config it makes.
    config: Option<Arc<ChannelConfig>>,
}

/// Consecutive accepted envelopes for one channel, not yet submitted. A config
/// message is always a run of its own.
struct Run {
    channel: Arc<ChannelHandle>,
    config_seq: u64,
    messages: Vec<OrderedMessage>,
    config: Option<Arc<ChannelConfig>>,
    /// When the stream read the chunk the run came from.
    received: Instant,
}

pub struct BroadcastStream {
    registrar: Arc<Registrar>,
    responses: Responses,
    shutdown: CancellationToken,
    metrics: BroadcastRecorder,
}

impl BroadcastStream {
    pub fn new(
        registrar: Arc<Registrar>,
        responses: Responses,
        shutdown: CancellationToken,
    ) -> Self {
        BroadcastStream {
            metrics: BroadcastRecorder::new(registrar.metrics().clone()),
            registrar,
            responses,
            shutdown,
        }
    }

    pub async fn run(mut self, mut inbound: Streaming<Envelope>) {
        loop {
            let first = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                first = inbound.next() => first,
            };
            let Some(first) = first else { break };
            let (chunk, ended) = take_ready(first, &mut inbound);
            if !self.process(chunk).await || ended {
                break;
            }
        }
        tracing::debug!("broadcast stream closed");
    }

    /// Handles one chunk; false once the stream must end.
    async fn process(&mut self, chunk: Vec<Result<Envelope, GrpcStatus>>) -> bool {
        let received = Instant::now();
        let mut run: Option<Run> = None;
        for item in chunk {
            let envelope = match item {
                Ok(envelope) => envelope,
                Err(status) => {
                    tracing::debug!(%status, "broadcast stream error from client");
                    let _ = self.submit(run.take()).await;
                    let _ = self.responses.send(Err(super::inbound_error(status))).await;
                    return false;
                }
            };
            match self.accept(envelope) {
                Ok(accepted) => {
                    self.metrics.accepted(accepted.channel.id());
                    let limit = accepted.channel.max_inflight().min(MAX_CHUNK);
                    let continues = accepted.config.is_none()
                        && run.as_ref().is_some_and(|r| {
                            r.config.is_none()
                                && Arc::ptr_eq(&r.channel, &accepted.channel)
                                && r.config_seq == accepted.config_seq
                                && r.messages.len() < limit
                        });
                    if continues {
                        if let Some(r) = run.as_mut() {
                            r.messages.push(accepted.message);
                        }
                    } else {
                        if !self.submit(run.take()).await {
                            return false;
                        }
                        run = Some(Run {
                            channel: accepted.channel,
                            config_seq: accepted.config_seq,
                            messages: vec![accepted.message],
                            config: accepted.config,
                            received,
                        });
                    }
                }
                Err((channel, rejection)) => {
                    if self.submit(run.take()).await {
                        tracing::warn!(status = ?rejection.status, info = %rejection.info, "rejecting broadcast message");
                        self.metrics
                            .refused(&channel, rejection.status.as_str_name());
                        let _ = self.respond(rejection.status, rejection.info).await;
                    }
                    return false;
                }
            }
        }
        self.submit(run).await
    }

    /// Validates one envelope: its channel, its kind, the channel's filters.
    /// A refusal names the channel for the metrics ("unknown" when it is not
    /// known: clients must not be able to make up label values).
    fn accept(&mut self, envelope: Envelope) -> Result<Accepted, (String, Rejection)> {
        self.metrics.validating();
        let unknown = |r| (UNKNOWN.to_string(), r);
        let header = msgprocessor::channel_header(&envelope).map_err(unknown)?;
        self.metrics.header_type(header.r#type);
        // Looked up for every envelope (a read lock), so a removed channel is gone at once.
        let system = self.registrar.system_channel_id().is_some();
        let Some(channel) = self.registrar.channel(&header.channel_id) else {
            // A channel that could not start is known, only not running.
            if let Some(failed) = self.registrar.failed_channel(&header.channel_id) {
                return Err(unknown(Rejection::service_unavailable(format!(
                    "channel {} failed to start: {}",
                    failed.id, failed.reason
                ))));
            }
            // Fabric 1.x/2.x: the system channel takes what no channel
            // does; a config update there creates the channel.
            if let Some(system) = self.registrar.system_channel() {
                let id = system.id().to_string();
                return accept_creation(&self.registrar, system, &header, &envelope)
                    .map_err(|r| (id, r));
            }
            return Err(unknown(Rejection::bad_request(
                msgprocessor::CHANNEL_DOES_NOT_EXIST,
            )));
        };
        let id = channel.id().to_string();
        accept_on(channel, &header, envelope, self.registrar.signer(), system).map_err(|r| (id, r))
    }
}

impl BroadcastStream {
    /// Submits a run and answers SUCCESS for each envelope; false once the stream must end.
    async fn submit(&mut self, run: Option<Run>) -> bool {
        let Some(mut run) = run else {
            return true;
        };
        // A channel that is down answers at once rather than after a wait for room.
        if let Err(reason) = run.channel.chain() {
            return self.unavailable(&run.channel, reason).await;
        }
        if let Some(fault) = run.channel.write_fault() {
            return self.write_fault(&run.channel, fault).await;
        }
        // Submit in pieces that fit the room there is, so a run never waits
        // for more room than the channel can free: a pending batch below
        // MaxMessageCount frees nothing until more envelopes come.
        while !run.messages.is_empty() {
            self.metrics.enqueueing();
            let sizes: Vec<usize> = run.messages.iter().map(|m| m.envelope.len()).collect();
            let Ok(permit) = room_for(&run.channel, &sizes).await else {
                let reason = format!("channel {} is closed", run.channel.id());
                return self.unavailable(&run.channel, reason).await;
            };
            let rest = run.messages.split_off(permit.envelopes());
            let piece = Run {
                channel: run.channel.clone(),
                config_seq: run.config_seq,
                messages: std::mem::replace(&mut run.messages, rest),
                config: run.config.take(),
                received: run.received,
            };
            if !self.submit_piece(piece, permit).await {
                return false;
            }
        }
        true
    }

    /// Submits envelopes holding their in-flight room.
    async fn submit_piece(&mut self, run: Run, permit: InflightPermit) -> bool {
        let Run {
            channel,
            config_seq,
            mut messages,
            config,
            received,
        } = run;
        let count = messages.len();
        // The chain may have gone down during the wait.
        let chain = match channel.chain() {
            Ok(chain) => chain,
            Err(reason) => return self.unavailable(&channel, reason).await,
        };
        let answer = match (config, messages.pop()) {
            (Some(config), Some(message)) => {
                let configure = Configure {
                    message,
                    config_seq,
                    config,
                    permit,
                    received,
                };
                chain.configure.send(configure).await
            }
            (_, last) => {
                messages.extend(last);
                let submit = Submit {
                    messages,
                    config_seq,
                    permit,
                    received,
                };
                chain.submit.send(submit).await
            }
        };
        match answer {
            Ok(Ok(())) => {
                // Accepted by the chain, but the storage failed since: what
                // was accepted may never be written, so it is not acknowledged.
                if let Some(fault) = channel.write_fault() {
                    return self.write_fault(&channel, fault).await;
                }
                self.metrics.answered(Status::Success.as_str_name(), count);
                for _ in 0..count {
                    // Answers wait on a slow client: a fault raised
                    // meanwhile stops the rest.
                    if let Some(fault) = channel.write_fault() {
                        return self.write_fault(&channel, fault).await;
                    }
                    if !self.respond(Status::Success, String::new()).await {
                        return false;
                    }
                }
                true
            }
            Ok(Err(SubmitError::Unavailable(reason))) => self.unavailable(&channel, reason).await,
            Ok(Err(SubmitError::Invalid(reason))) => {
                tracing::warn!(%reason, "rejecting broadcast message");
                self.metrics.answered(Status::BadRequest.as_str_name(), 1);
                let _ = self.respond(Status::BadRequest, reason).await;
                false
            }
            Err(e) => {
                // The chain's mailbox is gone (or it stopped before answering):
                // nothing was accepted. The supervisor must hear of it, so the
                // channel does not stay active with nothing running.
                chain.report_unreachable(&format!("a submission ({e})"));
                let reason = format!("channel {} is not running", channel.id());
                self.unavailable(&channel, reason).await
            }
        }
    }

    async fn write_fault(&mut self, channel: &ChannelHandle, fault: String) -> bool {
        let reason = format!(
            "channel {} cannot write its storage ({fault}); it resumes once the storage takes writes again",
            channel.id()
        );
        self.unavailable(channel, reason).await
    }

    async fn unavailable(&mut self, channel: &ChannelHandle, reason: String) -> bool {
        tracing::warn!(%reason, channel = %channel.id(), "broadcast refused: service unavailable");
        self.metrics
            .answered(Status::ServiceUnavailable.as_str_name(), 1);
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

/// Turns a CONFIG_UPDATE into the CONFIG envelope to order (Fabric's
/// `ProcessConfigUpdateMsg`), checked against the channel's current config.
///
/// The channel's filters (signatures among them) judge the client's update
/// envelope; the CONFIG envelope made from it is the orderer's own, signed by
/// the node's identity, and passes the filters again. Refusals carry Fabric's
/// wording of each stage.
fn config_update(
    channel: Arc<ChannelHandle>,
    update: &Envelope,
    signer: &SigningIdentity,
) -> Result<Accepted, Rejection> {
    let config = channel.config();
    channel
        .filters()
        .apply(update, update.encoded_len(), &config)
        .map_err(|r| r.within("config update for existing channel did not pass initial checks"))?;
    let proposed = configtx::propose_config_update(&config, update, channel.policies().as_ref())
        .map_err(|e| match e {
            configtx::ConfigUpdateError::Maintenance(reason) => Rejection::bad_request(format!(
                "config update for existing channel did not pass maintenance checks: \
                 config transaction inspection failed: {reason}"
            )),
            e => Rejection::bad_request(format!(
                "error applying config update to existing channel '{}': {e}",
                channel.id()
            )),
        })?;
    // Fabric answers BAD_REQUEST for any failure to make the envelope.
    let envelope = signer
        .sign_envelope(&proposed.envelope)
        .map_err(|e| Rejection::bad_request(format!("cannot sign the config envelope: {e}")))?;
    // As Fabric: the CONFIG envelope passes the channel's filters too, so a
    // node whose identity may not write the channel changes nothing.
    let encoded = envelope.encode_to_vec();
    channel
        .filters()
        .apply(&envelope, encoded.len(), &config)
        .map_err(|r| r.within("config update for existing channel did not pass final checks"))?;
    channel.warn_if_bound_below_batch(&proposed.config);
    Ok(accepted(
        channel,
        &config,
        &envelope,
        encoded,
        Some(Arc::new(proposed.config)),
    ))
}

/// Runs the channel's filters on an envelope to order under `config`.
fn filtered(
    channel: Arc<ChannelHandle>,
    config: &ChannelConfig,
    envelope: &Envelope,
    makes: Option<Arc<ChannelConfig>>,
) -> Result<Accepted, Rejection> {
    // Measured, not encoded, for the size rule: an envelope over
    // AbsoluteMaxBytes is refused without a copy of it.
    channel
        .filters()
        .apply(envelope, envelope.encoded_len(), config)?;
    let encoded = envelope.encode_to_vec();
    Ok(accepted(channel, config, envelope, encoded, makes))
}

fn accepted(
    channel: Arc<ChannelHandle>,
    config: &ChannelConfig,
    envelope: &Envelope,
    encoded: Vec<u8>,
    makes: Option<Arc<ChannelConfig>>,
) -> Accepted {
    let size = envelope.payload.len() + envelope.signature.len();
    Accepted {
        channel,
        config_seq: config.sequence,
        message: OrderedMessage {
            envelope: encoded.into(),
            size,
        },
        config: makes,
    }
}

/// Validates an envelope for a known channel. `system`: whether the node
/// runs a system channel (Fabric 2.x's wording of refusals then).
fn accept_on(
    channel: Arc<ChannelHandle>,
    header: &crate::fabric::protos::common::ChannelHeader,
    envelope: Envelope,
    signer: &SigningIdentity,
    system: bool,
) -> Result<Accepted, Rejection> {
    let kind = msgprocessor::classify(header);
    let refusal = if system {
        kind.refusal_with_system_channel()
    } else {
        kind.refusal()
    };
    if let Some(refusal) = refusal {
        return Err(refusal);
    }
    if kind == Classification::ConfigUpdate {
        return config_update(channel, &envelope, signer);
    }
    let config = channel.config();
    msgprocessor::check_normal_allowed(&config)?;
    filtered(channel, &config, &envelope, None)
}

/// An envelope for a channel that does not exist, on a node with a system
/// channel (Fabric's system channel processor): a CONFIG_UPDATE creates the
/// channel through the system channel; anything else is refused.
fn accept_creation(
    registrar: &Registrar,
    system: Arc<ChannelHandle>,
    header: &crate::fabric::protos::common::ChannelHeader,
    envelope: &Envelope,
) -> Result<Accepted, Rejection> {
    let kind = msgprocessor::classify(header);
    if let Some(refusal) = kind.refusal_with_system_channel() {
        return Err(refusal);
    }
    if kind != Classification::ConfigUpdate {
        return Err(Rejection {
            status: Status::NotFound,
            info: msgprocessor::CHANNEL_DOES_NOT_EXIST.into(),
        });
    }
    let config = system.config();
    let creation = msgprocessor::systemchannel::process_channel_creation(
        &config,
        system.policies().as_ref(),
        registrar.signer(),
        system.filters(),
        envelope,
    )?;
    msgprocessor::systemchannel::check_channel_count(&config, registrar.channel_count())?;
    tracing::info!(channel = %creation.channel_id, system_channel = %system.id(), "ordering a channel creation on the system channel");
    let encoded = creation.envelope.encode_to_vec();
    // Ordered through `Configure` (a block of its own) under the system
    // channel's current config, which it does not change.
    Ok(accepted(
        system,
        &config,
        &creation.envelope,
        encoded,
        Some(config.clone()),
    ))
}

/// In-flight room for the longest prefix of envelopes of these `sizes` that
/// fits what is free now, or, when not even the first fits, room for the
/// first as soon as it frees (plus whatever else fits then). Never waits for
/// more than one envelope, so a waiting stream cannot hold up the others
/// behind a request the channel cannot meet. The wait is the backpressure.
async fn room_for(
    channel: &ChannelHandle,
    sizes: &[usize],
) -> Result<InflightPermit, tokio::sync::AcquireError> {
    let room = channel.inflight();
    let metrics = channel.metrics();
    if let Some(permit) = room.try_take(sizes) {
        metrics.observe_wait(std::time::Duration::ZERO);
        return Ok(permit);
    }
    let waiting = Instant::now();
    metrics.submissions_waiting.inc();
    let first = room.take_one(sizes[0]).await;
    metrics.submissions_waiting.dec();
    metrics.observe_wait(waiting.elapsed());
    let mut permit = first?;
    if let Some(more) = room.try_take(&sizes[1..]) {
        permit.merge(more);
    }
    Ok(permit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::runtime::channel::testing::{eventually, supervised};

    #[actix_rt::test]
    async fn room_is_what_is_free_or_one_as_soon_as_it_frees() {
        let handle = supervised(GenesisProfile::embedded("c1", vec![])).handle;
        let bound = handle.max_inflight();
        // Most of the room is held (by a pending batch, say): a run of 100
        // gets what is left at once instead of waiting for 100.
        let held = handle
            .inflight()
            .try_take_exact(bound as u32 - 3, 0)
            .expect("held");
        let room = room_for(&handle, &[10; 100]).await.expect("room");
        assert_eq!(room.envelopes(), 3);

        // Nothing free: wait for one, and get it as soon as one frees.
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { room_for(&handle, &[10; 100]).await.map(|p| p.envelopes()) }
        });
        eventually("the second request waits", || {
            handle.metrics().submissions_waiting.get() == 1
        })
        .await;
        assert!(!waiting.is_finished());
        let mut room = room;
        drop(room.split(1, 10));
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("served once one frees")
            .expect("join")
            .expect("room");
        assert_eq!(got, 1);
        drop(held);
    }
}
