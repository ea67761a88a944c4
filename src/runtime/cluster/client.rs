//! The outbound side: a channel's [`RaftTransport`]. Each remote consenter
//! of the channel gets a bounded queue and a task that owns one Step stream
//! to it, opened at the first message and opened again, after a back-off,
//! when it breaks. The chain only ever queues: a message that finds the
//! queue full, or its consenter unreachable, is dropped and the consenter
//! reported unreachable, which Raft answers by slowing down.
//!
//! A forwarded submission travels on the same stream; the leader answers
//! the submissions of a stream in the order it received them, so the task
//! matches each answer to the oldest submission still waiting.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix::Recipient;
use futures::future::BoxFuture;
use futures::FutureExt;
use hyper_util::rt::TokioIo;
use protobuf::Message as _;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::codegen::http::Uri;
use tonic::transport::{Channel, Endpoint};
use tonic::Streaming;

use super::{auth, Shared};
use crate::fabric::protos::common::Status as FabricStatus;
use crate::fabric::protos::orderer::cluster_client::ClusterClient;
use crate::fabric::protos::orderer::{
    step_request, step_response, ConsensusRequest, StepRequest, StepResponse, SubmitRequest,
    SubmitResponse,
};
use crate::runtime::consensus::etcdraft::transport::{
    RaftPeer, RaftTransport, TransportError, TransportEvent,
};
use crate::runtime::consensus::SubmitError;

/// HTTP/2 pings towards other orderers, as Fabric's cluster client sends
/// them: after a minute without traffic, answered within 20 s.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// Requests taken from a consenter's queue but not yet written to its
/// stream: one, so the queue's bound is what the chain sees.
const STREAM_BUFFER: usize = 1;

/// Where a consenter's stream stands, as `send` reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum LinkState {
    /// No stream; the next message opens one.
    Idle = 0,
    Connecting = 1,
    Connected = 2,
    /// The last attempt failed; waiting before the next one. What is sent
    /// meanwhile is dropped at once.
    Down = 3,
}

impl LinkState {
    fn load(state: &AtomicU8) -> LinkState {
        match state.load(Ordering::Acquire) {
            0 => LinkState::Idle,
            1 => LinkState::Connecting,
            2 => LinkState::Connected,
            _ => LinkState::Down,
        }
    }
}

/// What a consenter's queue carries.
enum Outbound {
    Raft(raft::eraftpb::Message),
    Submit {
        request: SubmitRequest,
        answer: oneshot::Sender<Result<(), SubmitError>>,
    },
}

/// The chain's side of one remote consenter.
struct PeerLink {
    endpoint: String,
    queue: mpsc::Sender<Outbound>,
    state: Arc<AtomicU8>,
    /// Forwarded submissions waiting for room in the queue: while any
    /// waits, later ones wait behind it, so they keep their order.
    submits_waiting: Arc<AtomicUsize>,
}

/// One channel's connection to its other consenters.
pub(super) struct ChannelTransport {
    shared: Arc<Shared>,
    channel: String,
    generation: u64,
    links: HashMap<u64, PeerLink>,
    events: Recipient<TransportEvent>,
    /// Stops every consenter's task (and so closes its stream) on drop.
    stop: CancellationToken,
}

impl ChannelTransport {
    pub(super) fn start(
        shared: Arc<Shared>,
        channel: &str,
        generation: u64,
        self_id: u64,
        peers: &[RaftPeer],
        events: Recipient<TransportEvent>,
    ) -> Result<ChannelTransport, TransportError> {
        let stop = CancellationToken::new();
        let capacity = shared.settings.config.send_buffer_size.max(1);
        let mut links = HashMap::new();
        for peer in peers.iter().filter(|p| p.id != self_id) {
            let dialer = Dialer::new(&shared, peer).map_err(|e| {
                TransportError::Other(format!(
                    "channel {channel}: consenter {} at {}: {e}",
                    peer.id,
                    peer.endpoint()
                ))
            })?;
            let (queue, receiver) = mpsc::channel(capacity);
            let state = Arc::new(AtomicU8::new(LinkState::Idle as u8));
            let task = LinkTask {
                shared: shared.clone(),
                channel: channel.to_string(),
                id: peer.id,
                endpoint: peer.endpoint(),
                dialer,
                queue: receiver,
                state: state.clone(),
                events: events.clone(),
            };
            shared.runtime.spawn(task.run(stop.clone()));
            links.insert(
                peer.id,
                PeerLink {
                    endpoint: peer.endpoint(),
                    queue,
                    state,
                    submits_waiting: Arc::default(),
                },
            );
        }
        Ok(ChannelTransport {
            shared,
            channel: channel.to_string(),
            generation,
            links,
            events,
            stop,
        })
    }

    fn unreachable(&self, id: u64) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        self.events.do_send(TransportEvent::Unreachable(id));
    }

    fn forward_failed(&self, leader: u64, reason: impl std::fmt::Display) -> SubmitError {
        forward_failed(&self.channel, leader, reason)
    }
}

fn forward_failed(channel: &str, leader: u64, reason: impl std::fmt::Display) -> SubmitError {
    SubmitError::Unavailable(format!(
        "channel {channel}: forwarding to the leader failed (consenter {leader}): {reason}"
    ))
}

impl RaftTransport for ChannelTransport {
    fn send(&self, message: raft::eraftpb::Message) {
        let to = message.to;
        let Some(link) = self.links.get(&to) else {
            tracing::warn!(channel = %self.channel, to, "a Raft message for a node that is not another consenter of the channel is dropped");
            self.unreachable(to);
            return;
        };
        if LinkState::load(&link.state) == LinkState::Down {
            self.unreachable(to);
            return;
        }
        if let Err(e) = link.queue.try_send(Outbound::Raft(message)) {
            if matches!(e, mpsc::error::TrySendError::Full(_)) {
                tracing::debug!(channel = %self.channel, to, endpoint = %link.endpoint, "the send buffer to the consenter is full; a Raft message is dropped");
            }
            self.unreachable(to);
        }
    }

    fn forward(
        &self,
        leader: u64,
        request: SubmitRequest,
    ) -> BoxFuture<'static, Result<(), SubmitError>> {
        let Some(link) = self.links.get(&leader) else {
            let error = self.forward_failed(leader, "not another consenter of the channel");
            return futures::future::ready(Err(error)).boxed();
        };
        if LinkState::load(&link.state) == LinkState::Down {
            self.unreachable(leader);
            let error = self.forward_failed(leader, format!("{} is unreachable", link.endpoint));
            return futures::future::ready(Err(error)).boxed();
        }
        let (answer, answered) = oneshot::channel();
        let channel = self.channel.clone();
        // Queued now if there is room and nothing waits before it; otherwise
        // it waits for room (as Fabric's sendOrDrop: Raft messages are
        // dropped when the queue is full, a forwarded transaction waits, and
        // the leader's backpressure reaches this node's clients).
        let waiting = link.submits_waiting.clone();
        let submit = Outbound::Submit { request, answer };
        let queued = if waiting.load(Ordering::Acquire) == 0 {
            match link.queue.try_send(submit) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Full(submit)) => Some(submit),
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    let error = self.forward_failed(leader, "the transport has stopped");
                    return futures::future::ready(Err(error)).boxed();
                }
            }
        } else {
            Some(submit)
        };
        let wait_for_room = queued.map(|submit| {
            waiting.fetch_add(1, Ordering::AcqRel);
            (link.queue.clone(), submit)
        });
        async move {
            if let Some((queue, submit)) = wait_for_room {
                let sent = queue.send(submit).await;
                waiting.fetch_sub(1, Ordering::AcqRel);
                if sent.is_err() {
                    return Err(forward_failed(
                        &channel,
                        leader,
                        "the transport has stopped",
                    ));
                }
            }
            answered.await.unwrap_or_else(|_| {
                Err(forward_failed(
                    &channel,
                    leader,
                    "the transport stopped before the leader answered",
                ))
            })
        }
        .boxed()
    }
}

impl Drop for ChannelTransport {
    fn drop(&mut self) {
        self.stop.cancel();
        self.shared.unregister(&self.channel, self.generation);
    }
}

/// Counts an open outbound stream while it lives.
struct EgressStream<'a>(&'a Shared);

impl<'a> EgressStream<'a> {
    fn open(shared: &'a Shared) -> EgressStream<'a> {
        shared.egress_streams.fetch_add(1, Ordering::Relaxed);
        EgressStream(shared)
    }
}

impl Drop for EgressStream<'_> {
    fn drop(&mut self) {
        self.0.egress_streams.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The task that owns one consenter's stream.
struct LinkTask {
    shared: Arc<Shared>,
    channel: String,
    id: u64,
    endpoint: String,
    dialer: Dialer,
    queue: mpsc::Receiver<Outbound>,
    state: Arc<AtomicU8>,
    events: Recipient<TransportEvent>,
}

/// The two halves of an open Step stream.
struct StepStream {
    requests: mpsc::Sender<StepRequest>,
    responses: Streaming<StepResponse>,
}

impl LinkTask {
    async fn run(mut self, stop: CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.work() => {}
        }
        tracing::debug!(channel = %self.channel, consenter = self.id, "stream to the consenter closed");
    }

    fn set_state(&self, state: LinkState) {
        self.state.store(state as u8, Ordering::Release);
    }

    /// Until the transport is dropped: open a stream at the first message,
    /// serve it until it breaks, wait, again.
    async fn work(&mut self) {
        let reconnect = self.shared.settings.reconnect;
        let mut delay = reconnect.first;
        let mut failures: u32 = 0;
        loop {
            self.set_state(LinkState::Idle);
            let Some(first) = self.queue.recv().await else {
                return;
            };
            self.set_state(LinkState::Connecting);
            let reason = match self.dialer.open().await {
                Ok(stream) => {
                    if failures > 0 {
                        tracing::info!(channel = %self.channel, consenter = self.id, endpoint = %self.endpoint, "reached the consenter again");
                    } else {
                        tracing::debug!(channel = %self.channel, consenter = self.id, endpoint = %self.endpoint, "stream to the consenter opened");
                    }
                    failures = 0;
                    let opened = tokio::time::Instant::now();
                    let Some(reason) = self.serve(stream, first).await else {
                        return;
                    };
                    // A stream that lasted starts the back-off over.
                    if opened.elapsed() >= reconnect.max {
                        delay = reconnect.first;
                    }
                    tracing::warn!(channel = %self.channel, consenter = self.id, endpoint = %self.endpoint, %reason, "stream to the consenter ended");
                    reason
                }
                Err(reason) => {
                    failures += 1;
                    if failures == 1 {
                        tracing::warn!(channel = %self.channel, consenter = self.id, endpoint = %self.endpoint, %reason, "cannot reach the consenter");
                    } else {
                        tracing::debug!(channel = %self.channel, consenter = self.id, endpoint = %self.endpoint, %reason, failures, "cannot reach the consenter");
                    }
                    self.drop_item(first, &reason);
                    reason
                }
            };
            self.set_state(LinkState::Down);
            self.events.do_send(TransportEvent::Unreachable(self.id));
            let pause = tokio::time::sleep(delay);
            tokio::pin!(pause);
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    item = self.queue.recv() => match item {
                        Some(item) => self.drop_item(item, &reason),
                        None => return,
                    },
                }
            }
            delay = (delay * 2).min(reconnect.max);
        }
    }

    /// Drops what could not be sent; a forwarded submission is answered.
    fn drop_item(&self, item: Outbound, reason: &str) {
        self.shared.dropped.fetch_add(1, Ordering::Relaxed);
        if let Outbound::Submit { answer, .. } = item {
            let _ = answer.send(Err(forward_failed(&self.channel, self.id, reason)));
        }
    }

    /// Writes what the queue holds to the stream and matches the answers
    /// to forwarded submissions, until the stream breaks (its reason) or the
    /// transport is dropped (`None`).
    async fn serve(&mut self, stream: StepStream, first: Outbound) -> Option<String> {
        let _open = EgressStream::open(&self.shared);
        self.set_state(LinkState::Connected);
        let StepStream {
            requests,
            mut responses,
        } = stream;
        let mut waiting: VecDeque<oneshot::Sender<Result<(), SubmitError>>> = VecDeque::new();
        let mut next = Some(first);
        let reason = loop {
            let item = match next.take() {
                Some(item) => item,
                None => tokio::select! {
                    biased;
                    response = responses.message() => match response {
                        Ok(Some(response)) => {
                            self.answered(&mut waiting, response);
                            continue;
                        }
                        Ok(None) => break "the consenter ended the stream".to_string(),
                        Err(status) => break format!("the stream broke: {}", status_text(&status)),
                    },
                    item = self.queue.recv() => match item {
                        Some(item) => item,
                        None => return None,
                    },
                },
            };
            let request = match item {
                Outbound::Raft(message) => match self.consensus_request(&message) {
                    Some(request) => request,
                    None => continue,
                },
                Outbound::Submit { request, answer } => {
                    waiting.push_back(answer);
                    StepRequest {
                        payload: Some(step_request::Payload::SubmitRequest(request)),
                    }
                }
            };
            if requests.send(request).await.is_err() {
                break "the stream closed".to_string();
            }
        };
        for answer in waiting {
            let _ = answer.send(Err(forward_failed(&self.channel, self.id, &reason)));
        }
        Some(reason)
    }

    fn consensus_request(&self, message: &raft::eraftpb::Message) -> Option<StepRequest> {
        match message.write_to_bytes() {
            Ok(payload) => Some(StepRequest {
                payload: Some(step_request::Payload::ConsensusRequest(ConsensusRequest {
                    channel: self.channel.clone(),
                    payload: payload.into(),
                    metadata: Default::default(),
                })),
            }),
            Err(e) => {
                tracing::warn!(channel = %self.channel, consenter = self.id, error = %e, "a Raft message cannot be encoded; dropped");
                None
            }
        }
    }

    fn answered(
        &self,
        waiting: &mut VecDeque<oneshot::Sender<Result<(), SubmitError>>>,
        response: StepResponse,
    ) {
        match response.payload {
            Some(step_response::Payload::SubmitRes(answer)) => match waiting.pop_front() {
                Some(waiter) => {
                    let _ = waiter.send(submit_result(answer));
                }
                None => {
                    tracing::warn!(channel = %self.channel, consenter = self.id, "an answer to no forwarded submission is ignored")
                }
            },
            None => {
                tracing::debug!(channel = %self.channel, consenter = self.id, "an empty answer is ignored")
            }
        }
    }
}

/// The leader's answer as the chain takes it.
fn submit_result(answer: SubmitResponse) -> Result<(), SubmitError> {
    let status = FabricStatus::try_from(answer.status);
    let info = if answer.info.is_empty() {
        format!(
            "the leader answered {}",
            status.map_or("an unknown status", |s| s.as_str_name())
        )
    } else {
        answer.info
    };
    match status {
        Ok(FabricStatus::Success) => Ok(()),
        Ok(FabricStatus::ServiceUnavailable) => Err(SubmitError::Unavailable(info)),
        _ => Err(SubmitError::Invalid(info)),
    }
}

fn status_text(status: &tonic::Status) -> String {
    if status.message().is_empty() {
        format!("{:?}", status.code())
    } else {
        format!("{:?}: {}", status.code(), status.message())
    }
}

/// An error with its causes, for a log line.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // Some errors already print their cause.
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// Opens Step streams to one consenter.
struct Dialer {
    endpoint: Endpoint,
    /// TLS towards the consenter; `None`: plaintext.
    tls: Option<TlsConnect>,
    dial_timeout: Duration,
    max_recv: usize,
    max_send: usize,
}

impl Dialer {
    fn new(shared: &Shared, peer: &RaftPeer) -> Result<Dialer, String> {
        let address = if peer.host.contains(':') && !peer.host.starts_with('[') {
            format!("[{}]:{}", peer.host, peer.port)
        } else {
            peer.endpoint()
        };
        let settings = &shared.settings;
        let dial_timeout = settings.config.dial_timeout;
        // With TLS the connector below makes the TLS session, so tonic is
        // given a plain URI.
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| format!("not an address: {e}"))?
            .connect_timeout(dial_timeout)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT);
        let tls = match &shared.identity {
            None => None,
            Some(identity) => Some(TlsConnect {
                config: identity
                    .client_config(auth::certificate_of(&peer.server_tls_cert))
                    .map_err(|e| e.to_string())?,
                name: auth::server_name(&peer.host)?,
                address,
            }),
        };
        Ok(Dialer {
            endpoint,
            tls,
            dial_timeout,
            max_recv: settings.grpc.max_recv_msg_size,
            max_send: settings.grpc.max_send_msg_size,
        })
    }

    async fn open(&self) -> Result<StepStream, String> {
        let channel: Channel = match &self.tls {
            None => self.endpoint.connect().await,
            Some(tls) => self.endpoint.connect_with_connector(tls.clone()).await,
        }
        .map_err(|e| error_chain(&e))?;
        let mut client = ClusterClient::new(channel)
            .max_decoding_message_size(self.max_recv)
            .max_encoding_message_size(self.max_send);
        let (requests, outgoing) = mpsc::channel(STREAM_BUFFER);
        let response = tokio::time::timeout(
            self.dial_timeout,
            client.step(ReceiverStream::new(outgoing)),
        )
        .await
        .map_err(|_| format!("no answer within {:?}", self.dial_timeout))?
        .map_err(|status| status_text(&status))?;
        Ok(StepStream {
            requests,
            responses: response.into_inner(),
        })
    }
}

/// Connects over TCP and makes the TLS session with the node's client
/// identity and the consenter's expected server certificate.
#[derive(Clone)]
struct TlsConnect {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    address: String,
}

impl tonic::codegen::Service<Uri> for TlsConnect {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: Uri) -> Self::Future {
        let this = self.clone();
        async move {
            let tcp = TcpStream::connect(&this.address).await?;
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(address = %this.address, error = %e, "cannot set TCP_NODELAY");
            }
            let tls = tokio_rustls::TlsConnector::from(this.config)
                .connect(this.name, tcp)
                .await?;
            Ok(TokioIo::new(tls))
        }
        .boxed()
    }
}
