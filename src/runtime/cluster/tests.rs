//! Nodes in one process, each with its own cluster and listener on
//! 127.0.0.1, and a small actor as each channel's chain that records what
//! reaches it.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use raft::eraftpb::{Message as RaftMessage, MessageType};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, Server};

use super::*;
use crate::fabric::localconfig::ClusterClientTls;
use crate::fabric::protos::common::{Envelope, Status as FabricStatus};
use crate::fabric::protos::orderer::cluster_client::ClusterClient;
use crate::fabric::protos::orderer::{
    step_request, step_response, ConsensusRequest, StepRequest, StepResponse, SubmitRequest,
};
use crate::runtime::channel::testing::eventually;
use crate::runtime::consensus::etcdraft::transport::{ForwardedSubmit, Step, TransportEvent};
use crate::runtime::consensus::SubmitError;
use crate::runtime::server::tls::testing::{Leaf, TestCa};
use crate::runtime::server::tls::{ClientAuth, ListenerTls, TlsIncoming, TlsSettings};

const CHANNEL: &str = "mychannel";

/// What a test chain received.
#[derive(Default)]
struct Received {
    steps: Vec<(u64, RaftMessage)>,
    /// Sender and the envelope's payload, which says how to answer.
    submits: Vec<(u64, Bytes)>,
    unreachable: Vec<u64>,
}

/// A chain that records what arrives. A forwarded submission is answered by
/// its envelope's payload: `ok`, `refuse` (Invalid), `busy` (Unavailable),
/// or `hold` (Ok once the test adds a permit to `gate`).
struct Recorder {
    received: Arc<Mutex<Received>>,
    gate: Arc<Semaphore>,
}

impl Actor for Recorder {
    type Context = Context<Self>;
}

impl Handler<Step> for Recorder {
    type Result = ();
    fn handle(&mut self, step: Step, _: &mut Context<Self>) {
        self.received
            .lock()
            .expect("lock")
            .steps
            .push((step.from, step.message));
    }
}

impl Handler<ForwardedSubmit> for Recorder {
    type Result = ResponseFuture<Result<(), SubmitError>>;
    fn handle(&mut self, submit: ForwardedSubmit, _: &mut Context<Self>) -> Self::Result {
        let payload = submit.request.payload.unwrap_or_default().payload;
        self.received
            .lock()
            .expect("lock")
            .submits
            .push((submit.from, payload.clone()));
        let gate = self.gate.clone();
        Box::pin(async move {
            match &payload[..] {
                b"refuse" => Err(SubmitError::Invalid("refused".into())),
                b"busy" => Err(SubmitError::Unavailable("busy".into())),
                b"hold" => {
                    gate.acquire().await.expect("gate").forget();
                    Ok(())
                }
                _ => Ok(()),
            }
        })
    }
}

impl Handler<TransportEvent> for Recorder {
    type Result = ();
    fn handle(&mut self, event: TransportEvent, _: &mut Context<Self>) {
        let TransportEvent::Unreachable(id) = event;
        self.received.lock().expect("lock").unreachable.push(id);
    }
}

/// One node: its cluster, listener and test chain.
struct TestNode {
    id: u64,
    cluster: Cluster,
    address: SocketAddr,
    /// The node's TLS certificate (server and client), when TLS is on.
    leaf: Option<Leaf>,
    server: Option<(CancellationToken, tokio::task::JoinHandle<()>)>,
    received: Arc<Mutex<Received>>,
    gate: Arc<Semaphore>,
}

struct Options {
    send_buffer_size: usize,
    dial_timeout: Duration,
    /// CAs trusted for other nodes' listeners.
    server_roots: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            send_buffer_size: 100,
            dial_timeout: Duration::from_secs(10),
            server_roots: Vec::new(),
        }
    }
}

fn settings(leaf: Option<&Leaf>, options: &Options) -> ClusterSettings {
    ClusterSettings {
        config: ClusterConfig {
            send_buffer_size: options.send_buffer_size,
            dial_timeout: options.dial_timeout,
            client_tls: leaf.map(|leaf| ClusterClientTls {
                certificate_pem: leaf.cert_pem.clone().into_bytes(),
                private_key_pem: leaf.key_pem.clone().into_bytes(),
                server_root_cas_pem: options.server_roots.concat().into_bytes(),
            }),
            listener: None,
            root_cas_pem: Vec::new(),
        },
        grpc: GrpcServerSettings::default(),
        // Short, so a test that waits for a reconnect does not wait long.
        reconnect: Reconnect {
            first: Duration::from_millis(1),
            max: Duration::from_millis(20),
        },
    }
}

impl TestNode {
    /// A node with TLS when `tls` names the CA its certificate comes from
    /// and the CA client certificates must chain to.
    async fn start(id: u64, tls: Option<(&TestCa, &TestCa)>, options: Options) -> TestNode {
        let leaf = tls.map(|(issuer, _)| issuer.leaf(&["127.0.0.1", "localhost"]));
        let cluster = Cluster::new(settings(leaf.as_ref(), &options)).expect("cluster");
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let mut node = TestNode {
            id,
            cluster,
            address,
            leaf,
            server: None,
            received: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        };
        node.serve(listener, tls.map(|(_, clients)| clients));
        node
    }

    fn serve(&mut self, listener: TcpListener, client_ca: Option<&TestCa>) {
        let shutdown = CancellationToken::new();
        let router = Server::builder()
            .add_service(self.cluster.service(self.leaf.is_some(), shutdown.clone()));
        let stopped = shutdown.clone().cancelled_owned();
        let server = match (&self.leaf, client_ca) {
            (Some(leaf), Some(ca)) => {
                let tls = Arc::new(
                    ListenerTls::new(TlsSettings {
                        certificate_pem: leaf.cert_pem.clone().into_bytes(),
                        private_key_pem: leaf.key_pem.clone().into_bytes(),
                        client_roots: vec![CertificateDer::from(ca.der())],
                        client_auth: ClientAuth::Required,
                        alpn: vec![b"h2".to_vec()],
                    })
                    .expect("TLS"),
                );
                let incoming = TlsIncoming::new(listener, tls, shutdown.clone());
                tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, stopped)
                        .await
                        .expect("served");
                })
            }
            _ => {
                let incoming = tonic::transport::server::TcpIncoming::from(listener);
                tokio::spawn(async move {
                    router
                        .serve_with_incoming_shutdown(incoming, stopped)
                        .await
                        .expect("served");
                })
            }
        };
        self.server = Some((shutdown, server));
    }

    /// Stops the listener; its streams end.
    async fn stop(&mut self) {
        let (shutdown, server) = self.server.take().expect("serving");
        shutdown.cancel();
        server.await.expect("server task");
    }

    /// Serves again on the same address, once the old listener has let
    /// it go.
    async fn restart(&mut self, client_ca: Option<&TestCa>) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let listener = loop {
            match TcpListener::bind(self.address).await {
                Ok(listener) => break listener,
                Err(e) => {
                    assert!(tokio::time::Instant::now() < deadline, "bind again: {e}");
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        };
        self.serve(listener, client_ca);
    }

    fn peer(&self) -> RaftPeer {
        let certificate = self
            .leaf
            .as_ref()
            .map(|leaf| leaf.cert_pem.clone().into_bytes())
            .unwrap_or_default();
        RaftPeer {
            id: self.id,
            host: "127.0.0.1".into(),
            port: u32::from(self.address.port()),
            client_tls_cert: certificate.clone(),
            server_tls_cert: certificate,
        }
    }

    fn inbox(&self) -> ChainInbox {
        let recorder = Recorder {
            received: self.received.clone(),
            gate: self.gate.clone(),
        }
        .start();
        ChainInbox {
            step: recorder.clone().recipient(),
            submit: recorder.clone().recipient(),
            events: recorder.recipient(),
        }
    }

    fn connect(&self, peers: &[RaftPeer]) -> Box<dyn RaftTransport> {
        self.cluster
            .connect(CHANNEL, self.id, peers, self.inbox())
            .expect("connected")
    }

    fn steps(&self) -> Vec<(u64, RaftMessage)> {
        self.received.lock().expect("lock").steps.clone()
    }

    fn submits(&self) -> Vec<(u64, Bytes)> {
        self.received.lock().expect("lock").submits.clone()
    }

    fn unreachable(&self) -> Vec<u64> {
        self.received.lock().expect("lock").unreachable.clone()
    }
}

fn heartbeat(from: u64, to: u64, term: u64) -> RaftMessage {
    let mut message = RaftMessage::default();
    message.set_msg_type(MessageType::MsgHeartbeat);
    message.from = from;
    message.to = to;
    message.term = term;
    message
}

fn submission(payload: &'static str) -> SubmitRequest {
    SubmitRequest {
        channel: CHANNEL.into(),
        last_validation_seq: 3,
        payload: Some(Envelope {
            payload: Bytes::from_static(payload.as_bytes()),
            signature: Bytes::from_static(b"signature"),
        }),
    }
}

/// Three nodes of one CA, each connected for the channel.
async fn three_nodes() -> (TestCa, Vec<TestNode>, Vec<Box<dyn RaftTransport>>) {
    let ca = TestCa::new("tlsca");
    let mut nodes = Vec::new();
    for id in 1..=3 {
        nodes.push(TestNode::start(id, Some((&ca, &ca)), Options::default()).await);
    }
    let peers: Vec<RaftPeer> = nodes.iter().map(TestNode::peer).collect();
    let transports = nodes.iter().map(|node| node.connect(&peers)).collect();
    (ca, nodes, transports)
}

#[actix_rt::test]
async fn a_raft_message_reaches_its_consenter_from_its_sender() {
    let (_ca, nodes, transports) = three_nodes().await;
    transports[0].send(heartbeat(1, 2, 7));
    transports[0].send(heartbeat(1, 3, 7));
    transports[2].send(heartbeat(3, 1, 8));
    eventually("each message arrives", || {
        nodes[0].steps().len() == 1 && nodes[1].steps().len() == 1 && nodes[2].steps().len() == 1
    })
    .await;
    let (from, message) = nodes[1].steps().remove(0);
    assert_eq!((from, message.to, message.term), (1, 2, 7));
    assert_eq!(message.get_msg_type(), MessageType::MsgHeartbeat);
    assert_eq!(nodes[2].steps()[0].0, 1);
    assert_eq!(nodes[0].steps()[0].0, 3);
    assert_eq!(nodes[0].steps()[0].1.term, 8);
    assert!(nodes.iter().all(|n| n.unreachable().is_empty()));
}

#[actix_rt::test]
async fn forwarded_submissions_are_answered_in_their_order() {
    let (_ca, nodes, transports) = three_nodes().await;
    let leader = 1;
    let held = transports[1].forward(leader, submission("hold"));
    let admitted = transports[1].forward(leader, submission("ok"));
    let refused = transports[1].forward(leader, submission("refuse"));
    let busy = transports[1].forward(leader, submission("busy"));
    eventually("the first submission reaches the leader", || {
        !nodes[0].submits().is_empty()
    })
    .await;
    // The leader answers a stream's submissions one at a time: nothing
    // behind the held one has been answered.
    let mut admitted = admitted.shared();
    assert!(admitted.clone().now_or_never().is_none());
    nodes[0].gate.add_permits(1);

    assert_eq!(held.await, Ok(()));
    assert_eq!((&mut admitted).await, Ok(()));
    assert_eq!(refused.await, Err(SubmitError::Invalid("refused".into())));
    assert_eq!(busy.await, Err(SubmitError::Unavailable("busy".into())));
    let submits = nodes[0].submits();
    let order: Vec<&[u8]> = submits.iter().map(|(_, p)| &p[..]).collect();
    assert_eq!(
        order,
        vec![&b"hold"[..], &b"ok"[..], &b"refuse"[..], &b"busy"[..]]
    );
    assert!(submits.iter().all(|(from, _)| *from == 2));
}

#[actix_rt::test]
async fn raft_messages_flow_while_a_submission_is_held() {
    let (_ca, nodes, transports) = three_nodes().await;
    let held = transports[1].forward(1, submission("hold"));
    eventually("the submission reaches the leader", || {
        nodes[0].submits().len() == 1
    })
    .await;
    // Same stream, behind the held submission.
    transports[1].send(heartbeat(2, 1, 4));
    eventually("the Raft message arrives", || nodes[0].steps().len() == 1).await;
    nodes[0].gate.add_permits(1);
    assert_eq!(held.await, Ok(()));
}

#[actix_rt::test]
async fn a_certificate_of_no_consenter_is_refused() {
    let (ca, nodes, _transports) = three_nodes().await;
    // Trusted by the listener's TLS, but none of the channel's consenters.
    let stranger = ca.leaf(&["stranger"]);
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca.pem()))
        .domain_name("localhost")
        .identity(Identity::from_pem(&stranger.cert_pem, &stranger.key_pem));
    let channel = Endpoint::from_shared(format!("https://{}", nodes[0].address))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS")
        .connect()
        .await
        .expect("connected");
    let payload = protobuf::Message::write_to_bytes(&heartbeat(2, 1, 1)).expect("encoded");
    let request = StepRequest {
        payload: Some(step_request::Payload::ConsensusRequest(ConsensusRequest {
            channel: CHANNEL.into(),
            payload: payload.into(),
            metadata: Bytes::new(),
        })),
    };
    let mut responses = ClusterClient::new(channel)
        .step(futures::stream::iter(vec![request]).chain(futures::stream::pending()))
        .await
        .expect("stream opened")
        .into_inner();
    let status = responses.message().await.expect_err("refused");
    assert_eq!(status.code(), tonic::Code::PermissionDenied, "{status}");
    assert!(status.message().contains(CHANNEL), "{status}");
    assert!(nodes[0].steps().is_empty());
}

#[actix_rt::test]
async fn a_full_queue_drops_raft_messages_and_holds_forwarded_submissions() {
    let ca = TestCa::new("tlsca");
    let node = TestNode::start(
        1,
        Some((&ca, &ca)),
        Options {
            send_buffer_size: 2,
            dial_timeout: Duration::from_secs(600),
            ..Options::default()
        },
    )
    .await;
    // A consenter whose listener takes connections and never answers: the
    // first message waits in the dial, the queue fills up behind it.
    let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let mut peer = node.peer();
    peer.id = 9;
    peer.port = u32::from(silent.local_addr().expect("address").port());
    let transport = node.connect(&[node.peer(), peer]);
    for term in 0..50 {
        transport.send(heartbeat(1, 9, term));
    }
    // At most the queue and the message being dialed are kept: Raft
    // messages are dropped and the consenter reported unreachable.
    assert!(node.cluster.dropped_messages() >= 47);
    eventually("the consenter is reported unreachable", || {
        node.unreachable().contains(&9)
    })
    .await;
    // A forwarded submission is not dropped: it waits for room, and fails
    // only when the transport stops.
    let mut forward = transport.forward(9, submission("ok"));
    assert!(futures::poll!(&mut forward).is_pending());
    drop(transport);
    let refused = forward.await;
    assert!(
        matches!(&refused, Err(SubmitError::Unavailable(reason)) if reason.contains("forwarding to the leader failed")),
        "{refused:?}"
    );
}

#[actix_rt::test]
async fn messages_flow_again_once_a_consenter_is_back() {
    let ca = TestCa::new("tlsca");
    let one = TestNode::start(1, Some((&ca, &ca)), Options::default()).await;
    let mut two = TestNode::start(2, Some((&ca, &ca)), Options::default()).await;
    let peers = [one.peer(), two.peer()];
    let transport = one.connect(&peers);
    let _two_transport = two.connect(&peers);
    transport.send(heartbeat(1, 2, 1));
    eventually("the first message arrives", || two.steps().len() == 1).await;
    assert_eq!(one.cluster.egress_streams(), 1);

    two.stop().await;
    eventually("the consenter is reported unreachable", || {
        transport.send(heartbeat(1, 2, 2));
        one.unreachable().contains(&2)
    })
    .await;
    let while_down = transport.forward(2, submission("ok")).await;
    assert!(
        matches!(&while_down, Err(SubmitError::Unavailable(_))),
        "{while_down:?}"
    );

    two.restart(Some(&ca)).await;
    eventually("messages arrive again", || {
        transport.send(heartbeat(1, 2, 3));
        two.steps().iter().any(|(_, m)| m.term == 3)
    })
    .await;
    assert_eq!(transport.forward(2, submission("ok")).await, Ok(()));
}

#[actix_rt::test]
async fn dropping_the_transport_closes_its_streams() {
    let (_ca, nodes, mut transports) = three_nodes().await;
    transports[0].send(heartbeat(1, 2, 1));
    transports[0].send(heartbeat(1, 3, 1));
    eventually("two streams open", || {
        nodes[0].cluster.egress_streams() == 2
    })
    .await;

    // A chain restarted: its new connect replaces the first, and dropping
    // the first does not disconnect the second.
    let peers: Vec<RaftPeer> = nodes.iter().map(TestNode::peer).collect();
    let replacement = nodes[0].connect(&peers);
    drop(transports.remove(0));
    eventually("the streams close", || {
        nodes[0].cluster.egress_streams() == 0
    })
    .await;
    assert!(nodes[0].cluster.is_connected(CHANNEL));
    transports[0].send(heartbeat(2, 1, 5));
    eventually("the replacement receives", || {
        nodes[0].steps().iter().any(|(_, m)| m.term == 5)
    })
    .await;

    drop(replacement);
    assert!(!nodes[0].cluster.is_connected(CHANNEL));
}

#[actix_rt::test]
async fn without_tls_senders_name_themselves() {
    let one = TestNode::start(1, None, Options::default()).await;
    let two = TestNode::start(2, None, Options::default()).await;
    let peers = [one.peer(), two.peer()];
    let transport = two.connect(&peers);
    let _one_transport = one.connect(&peers);
    transport.send(heartbeat(2, 1, 1));
    assert_eq!(transport.forward(1, submission("ok")).await, Ok(()));
    eventually("the Raft message arrives", || one.steps().len() == 1).await;
    assert_eq!(one.steps()[0].0, 2);
    assert_eq!(one.submits()[0].0, 0, "an unknown sender");
}

#[actix_rt::test]
async fn an_unknown_channel_does_not_end_the_stream() {
    let node = TestNode::start(1, None, Options::default()).await;
    let _transport = node.connect(&[node.peer()]);
    let consensus = |channel: &str, term| {
        let payload = protobuf::Message::write_to_bytes(&heartbeat(2, 1, term)).expect("encoded");
        StepRequest {
            payload: Some(step_request::Payload::ConsensusRequest(ConsensusRequest {
                channel: channel.into(),
                payload: payload.into(),
                metadata: Bytes::new(),
            })),
        }
    };
    let mut unknown = submission("ok");
    unknown.channel = "otherchannel".into();
    let requests = vec![
        consensus("otherchannel", 1),
        StepRequest {
            payload: Some(step_request::Payload::SubmitRequest(unknown)),
        },
        consensus(CHANNEL, 2),
        StepRequest {
            payload: Some(step_request::Payload::SubmitRequest(submission("ok"))),
        },
    ];
    let mut responses = ClusterClient::connect(format!("http://{}", node.address))
        .await
        .expect("connected")
        .step(futures::stream::iter(requests).chain(futures::stream::pending()))
        .await
        .expect("stream opened")
        .into_inner();
    let answer = |response: Option<StepResponse>| match response.and_then(|r| r.payload) {
        Some(step_response::Payload::SubmitRes(answer)) => answer,
        other => panic!("not an answer: {other:?}"),
    };
    let first = answer(responses.message().await.expect("answered"));
    assert_eq!(first.status, FabricStatus::ServiceUnavailable as i32);
    assert_eq!(first.info, "channel otherchannel not found");
    let second = answer(responses.message().await.expect("answered"));
    assert_eq!(
        (second.channel.as_str(), second.status),
        (CHANNEL, FabricStatus::Success as i32)
    );
    eventually("the Raft message of the known channel arrives", || {
        node.steps().len() == 1
    })
    .await;
    assert_eq!(node.steps()[0].1.term, 2);
}

/// The server certificate a consenter's config names is accepted whoever
/// issued it; any other must come from a trusted CA.
#[actix_rt::test]
async fn a_listener_is_trusted_by_its_pinned_certificate_or_by_a_ca() {
    let ca = TestCa::new("tlsca");
    let other_ca = TestCa::new("other-tlsca");
    let one = TestNode::start(
        1,
        Some((&ca, &other_ca)),
        Options {
            server_roots: vec![ca.pem()],
            ..Options::default()
        },
    )
    .await;
    // Its listener's certificate comes from a CA node 1 does not trust.
    let two = TestNode::start(2, Some((&other_ca, &ca)), Options::default()).await;
    let _two_transport = two.connect(&[one.peer(), two.peer()]);

    let mut unpinned = two.peer();
    unpinned.server_tls_cert = Vec::new();
    let refused = one.connect(&[one.peer(), unpinned]);
    refused.send(heartbeat(1, 2, 1));
    eventually("the listener is not trusted", || {
        one.unreachable().contains(&2)
    })
    .await;
    assert!(two.steps().is_empty());
    drop(refused);

    let pinned = one.connect(&[one.peer(), two.peer()]);
    pinned.send(heartbeat(1, 2, 2));
    eventually("the pinned listener is trusted", || two.steps().len() == 1).await;

    // Node 1's own listener has a certificate of the CA it trusts: two
    // reaches it without a pin when it trusts that CA.
    let three = TestNode::start(
        3,
        Some((&other_ca, &other_ca)),
        Options {
            server_roots: vec![ca.pem()],
            ..Options::default()
        },
    )
    .await;
    let mut one_unpinned = one.peer();
    one_unpinned.server_tls_cert = Vec::new();
    // Node 1 trusts client certificates of other_ca, so three's is accepted.
    let _one_again = one.connect(&[one.peer(), three.peer()]);
    let from_three = three.connect(&[one_unpinned, three.peer()]);
    from_three.send(heartbeat(3, 1, 3));
    eventually("the CA-verified listener is trusted", || {
        one.steps()
            .iter()
            .any(|(from, m)| *from == 3 && m.term == 3)
    })
    .await;
}
