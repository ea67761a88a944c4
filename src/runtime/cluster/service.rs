//! The inbound side: `orderer.Cluster/Step`. Each stream is read by one
//! task that routes every request by its channel. Raft messages go straight
//! to the channel's chain; submissions go to a second task per stream that
//! hands them to the chain one at a time and writes each answer back in the
//! order they came, so a submission waiting for its answer never holds up
//! the Raft messages behind it.

use std::collections::HashSet;
use std::sync::Arc;

use protobuf::Message as _;
use rustls::pki_types::CertificateDer;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};
use tracing::Instrument;

use super::{Registration, Shared};
use crate::fabric::protos::common::Status as FabricStatus;
use crate::fabric::protos::orderer::cluster_server::Cluster;
use crate::fabric::protos::orderer::{
    step_request, step_response, ConsensusRequest, StepRequest, StepResponse, SubmitRequest,
    SubmitResponse,
};
use crate::runtime::consensus::etcdraft::transport::{ForwardedSubmit, Step};
use crate::runtime::consensus::SubmitError;
use crate::runtime::server::client_certificate;

/// Answers buffered towards a slow reader before its stream's submissions
/// wait.
const RESPONSE_BUFFER: usize = 16;

/// Submissions a stream may have waiting for their answers. A follower
/// forwards no more than its in-flight bound allows, far below this; a
/// stream that goes past it is ended (RESOURCE_EXHAUSTED) rather than let
/// it stop its Raft messages or grow without bound.
const SUBMISSION_BACKLOG: usize = 16 * 1024;

/// `orderer.Cluster`.
pub struct ClusterService {
    shared: Arc<Shared>,
    /// Senders are known by their TLS client certificate.
    authenticate: bool,
    shutdown: CancellationToken,
}

impl ClusterService {
    pub(super) fn new(
        shared: Arc<Shared>,
        authenticate: bool,
        shutdown: CancellationToken,
    ) -> ClusterService {
        ClusterService {
            shared,
            authenticate,
            shutdown,
        }
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    type StepStream = ReceiverStream<Result<StepResponse, Status>>;

    async fn step(
        &self,
        request: Request<Streaming<StepRequest>>,
    ) -> Result<Response<Self::StepStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |a| a.to_string());
        let certificate = client_certificate(&request);
        if self.authenticate && certificate.is_none() {
            tracing::warn!(%peer, "a cluster stream without a TLS client certificate is refused");
            return Err(Status::permission_denied(
                "a TLS client certificate is required",
            ));
        }
        let (responses, answers) = mpsc::channel(RESPONSE_BUFFER);
        let (submissions, waiting) = mpsc::channel(SUBMISSION_BACKLOG);
        let span = tracing::info_span!("cluster_step", %peer);
        let reader = StreamReader {
            shared: self.shared.clone(),
            certificate: certificate.filter(|_| self.authenticate),
            submissions,
            shutdown: self.shutdown.clone(),
            unknown_channels: HashSet::new(),
        };
        tokio::spawn(
            answer_submissions(waiting, responses, self.shutdown.clone()).instrument(span.clone()),
        );
        tokio::spawn(reader.run(request.into_inner()).instrument(span));
        Ok(Response::new(ReceiverStream::new(answers)))
    }
}

/// What the submissions task of a stream does next, in the stream's order.
enum Work {
    /// Hand to the chain, write its answer.
    Forward {
        registration: Arc<Registration>,
        from: u64,
        request: SubmitRequest,
    },
    /// Write this answer.
    Answer(SubmitResponse),
    /// End the stream with this status.
    End(Status),
}

struct StreamReader {
    shared: Arc<Shared>,
    /// The stream's client certificate when senders are authenticated.
    certificate: Option<CertificateDer<'static>>,
    submissions: mpsc::Sender<Work>,
    shutdown: CancellationToken,
    /// Channels already warned about on this stream (Raft sends many
    /// messages a second).
    unknown_channels: HashSet<String>,
}

impl StreamReader {
    async fn run(mut self, mut requests: Streaming<StepRequest>) {
        loop {
            let next = tokio::select! {
                _ = self.shutdown.cancelled() => break,
                next = requests.message() => next,
            };
            match next {
                Ok(Some(request)) => {
                    if let Err(status) = self.handle(request) {
                        // After the answers already owed; nothing more is read.
                        let _ = self.submissions.try_send(Work::End(status));
                        break;
                    }
                }
                Ok(None) => break,
                Err(status) => {
                    tracing::debug!(%status, "cluster stream ended by its sender");
                    break;
                }
            }
        }
        // Dropping the reader's sender lets the submissions task answer what
        // it holds, then end the stream.
    }

    fn handle(&mut self, request: StepRequest) -> Result<(), Status> {
        match request.payload {
            Some(step_request::Payload::ConsensusRequest(request)) => self.consensus(request),
            Some(step_request::Payload::SubmitRequest(request)) => self.submit(request),
            None => {
                tracing::debug!("an empty cluster request is ignored");
                Ok(())
            }
        }
    }

    fn registration(&mut self, channel: &str) -> Option<Arc<Registration>> {
        let found = self.shared.registration(channel);
        if found.is_none() && self.unknown_channels.insert(channel.to_string()) {
            tracing::warn!(%channel, "channel {channel} not found: what other consenters send for it is dropped");
        }
        found
    }

    /// The consenter that sent the stream's requests for this channel;
    /// `None` without authentication. A certificate that is none of the
    /// channel's consenters ends the stream, as in Fabric.
    fn sender(&self, channel: &str, registration: &Registration) -> Result<Option<u64>, Status> {
        let Some(certificate) = &self.certificate else {
            return Ok(None);
        };
        match registration.consenters.id_of(certificate) {
            Some(id) => Ok(Some(id)),
            None => {
                tracing::warn!(%channel, "a cluster stream whose certificate is not a consenter of channel {channel} is refused");
                Err(Status::permission_denied(format!(
                    "the client certificate is not a consenter of channel {channel}"
                )))
            }
        }
    }

    fn consensus(&mut self, request: ConsensusRequest) -> Result<(), Status> {
        let channel = request.channel.as_str();
        let Some(registration) = self.registration(channel) else {
            return Ok(());
        };
        let authenticated = self.sender(channel, &registration)?;
        let message = match raft::eraftpb::Message::parse_from_carllerche_bytes(&request.payload) {
            Ok(message) => message,
            Err(e) => {
                tracing::warn!(%channel, error = %e, "a Raft message that cannot be read is dropped");
                return Ok(());
            }
        };
        let from = match authenticated {
            Some(id) if id != message.from => {
                tracing::warn!(%channel, sender = id, claimed = message.from, "a Raft message that claims another sender is dropped");
                return Ok(());
            }
            Some(id) => id,
            None => message.from,
        };
        registration.inbox.step.do_send(Step { from, message });
        Ok(())
    }

    fn submit(&mut self, request: SubmitRequest) -> Result<(), Status> {
        let work = match self.registration(&request.channel) {
            None => Work::Answer(SubmitResponse {
                info: format!("channel {} not found", request.channel),
                channel: request.channel,
                // Not yet, perhaps: the follower may try again.
                status: FabricStatus::ServiceUnavailable as i32,
            }),
            Some(registration) => Work::Forward {
                from: self.sender(&request.channel, &registration)?.unwrap_or(0),
                registration,
                request,
            },
        };
        self.submissions.try_send(work).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => {
                tracing::warn!("a cluster stream with too many submissions waiting is ended");
                Status::resource_exhausted("too many forwarded submissions waiting")
            }
            // The submissions task has ended: so has the stream.
            mpsc::error::TrySendError::Closed(_) => Status::cancelled("the stream has ended"),
        })
    }
}

/// Hands a stream's submissions to their chains one at a time and writes
/// each answer back, in order. Ends the stream when the reader is done and
/// every answer is written, or at shutdown.
async fn answer_submissions(
    mut work: mpsc::Receiver<Work>,
    responses: mpsc::Sender<Result<StepResponse, Status>>,
    shutdown: CancellationToken,
) {
    let stopped = shutdown.cancelled();
    tokio::pin!(stopped);
    loop {
        let item = tokio::select! {
            _ = &mut stopped => return,
            item = work.recv() => match item {
                Some(item) => item,
                None => return,
            },
        };
        let answer = match item {
            Work::Answer(answer) => Ok(answer),
            Work::End(status) => Err(status),
            Work::Forward {
                registration,
                from,
                request,
            } => {
                let channel = request.channel.clone();
                let answered = tokio::select! {
                    _ = &mut stopped => return,
                    answered = registration.inbox.submit.send(ForwardedSubmit { from, request }) => answered,
                };
                Ok(submit_response(channel, answered))
            }
        };
        let end = answer.is_err();
        let response = answer.map(|answer| StepResponse {
            payload: Some(step_response::Payload::SubmitRes(answer)),
        });
        let written = tokio::select! {
            _ = &mut stopped => return,
            written = responses.send(response) => written,
        };
        if written.is_err() || end {
            return;
        }
    }
}

fn submit_response(
    channel: String,
    answered: Result<Result<(), SubmitError>, actix::MailboxError>,
) -> SubmitResponse {
    let (status, info) = match answered {
        Ok(Ok(())) => (FabricStatus::Success, String::new()),
        Ok(Err(SubmitError::Unavailable(info))) => (FabricStatus::ServiceUnavailable, info),
        Ok(Err(SubmitError::Invalid(info))) => (FabricStatus::BadRequest, info),
        Err(_) => (
            FabricStatus::ServiceUnavailable,
            format!("the chain of channel {channel} is not running"),
        ),
    };
    SubmitResponse {
        channel,
        status: status as i32,
        info,
    }
}
