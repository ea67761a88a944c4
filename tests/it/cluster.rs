//! The node's cluster service (`orderer.Cluster/Step`) on its listeners: on
//! the main one by default, asking every TLS client for a certificate
//! without requiring one; on a listener of its own (General.Cluster's
//! ListenAddress and the rest) with mutual TLS.

use bytes::Bytes;
use futures::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use ordo::fabric::protos::common::{Envelope, Status};
use ordo::fabric::protos::orderer::cluster_client::ClusterClient;
use ordo::fabric::protos::orderer::{step_request, step_response, StepRequest, SubmitRequest};

use crate::common::*;
use crate::tls::Pki;

fn tls_env(pki: &Pki) -> Vec<(String, String)> {
    let p = |name: &str| pki.path(name).display().to_string();
    vec![
        ("ORDERER_GENERAL_TLS_ENABLED".into(), "true".into()),
        ("ORDERER_GENERAL_TLS_CERTIFICATE".into(), p("server.crt")),
        ("ORDERER_GENERAL_TLS_PRIVATEKEY".into(), p("server.key")),
        // Other orderers' TLS certificates come from this CA.
        (
            "ORDERER_GENERAL_CLUSTER_ROOTCAS".into(),
            format!("[{}]", p("ca.crt")),
        ),
    ]
}

/// A TLS connection to `address`, with the test client certificate when
/// `with_certificate`.
async fn connect(pki: &Pki, address: &str, with_certificate: bool) -> Result<Channel, String> {
    let read = |name: &str| std::fs::read(pki.path(name)).expect("read");
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read("ca.crt")))
        .domain_name("localhost");
    if with_certificate {
        tls = tls.identity(Identity::from_pem(read("client.crt"), read("client.key")));
    }
    Endpoint::from_shared(format!("https://{address}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("TLS")
        .connect()
        .await
        .map_err(|e| format!("{e:?}"))
}

/// Forwards one submission for `channel` and returns the answer, or the
/// status the stream ended with.
async fn forward_once(channel: Channel, to: &str) -> Result<(i32, String), tonic::Status> {
    let request = StepRequest {
        payload: Some(step_request::Payload::SubmitRequest(SubmitRequest {
            channel: to.into(),
            last_validation_seq: 0,
            payload: Some(Envelope {
                payload: Bytes::from_static(b"payload"),
                signature: Bytes::new(),
            }),
        })),
    };
    let mut responses = ClusterClient::new(channel)
        .step(futures::stream::iter(vec![request]).chain(futures::stream::pending()))
        .await?
        .into_inner();
    match responses.message().await?.and_then(|r| r.payload) {
        Some(step_response::Payload::SubmitRes(answer)) => Ok((answer.status, answer.info)),
        None => Err(tonic::Status::unknown("no answer")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_main_listener_serves_the_cluster_service() {
    let pki = Pki::new();
    let node = TestNode::with_env(tls_env(&pki)).await;
    let address = node.address();
    assert_eq!(
        node.node
            .as_ref()
            .expect("running")
            .cluster_addr()
            .to_string(),
        address
    );

    // A client of a trusted CA is served; the solo channel is not one of
    // the cluster's, so the submission is answered "not found".
    let channel = connect(&pki, &address, true).await.expect("connected");
    let (status, info) = forward_once(channel, CHANNEL).await.expect("answered");
    assert_eq!(status, Status::ServiceUnavailable as i32);
    assert_eq!(info, format!("channel {CHANNEL} not found"));

    // Without a certificate the connection is made (Broadcast clients need
    // none) but the cluster refuses the stream.
    let anonymous = connect(&pki, &address, false).await.expect("connected");
    let refused = forward_once(anonymous, CHANNEL).await.expect_err("refused");
    assert_eq!(refused.code(), tonic::Code::PermissionDenied, "{refused}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_listener_of_its_own_requires_client_certificates() {
    let pki = Pki::new();
    let p = |name: &str| pki.path(name).display().to_string();
    let port = free_port();
    let mut env = tls_env(&pki);
    env.extend([
        (
            "ORDERER_GENERAL_CLUSTER_LISTENADDRESS".to_string(),
            "127.0.0.1".to_string(),
        ),
        (
            "ORDERER_GENERAL_CLUSTER_LISTENPORT".to_string(),
            port.to_string(),
        ),
        (
            "ORDERER_GENERAL_CLUSTER_SERVERCERTIFICATE".to_string(),
            p("server.crt"),
        ),
        (
            "ORDERER_GENERAL_CLUSTER_SERVERPRIVATEKEY".to_string(),
            p("server.key"),
        ),
    ]);
    let node = TestNode::with_env(env).await;
    let cluster = node
        .node
        .as_ref()
        .expect("running")
        .cluster_addr()
        .to_string();
    assert_eq!(cluster, format!("127.0.0.1:{port}"));
    assert_ne!(cluster, node.address());

    let channel = connect(&pki, &cluster, true).await.expect("connected");
    let (status, _) = forward_once(channel, CHANNEL).await.expect("answered");
    assert_eq!(status, Status::ServiceUnavailable as i32);

    // No certificate: no TLS session (or none that serves a request).
    if let Ok(anonymous) = connect(&pki, &cluster, false).await {
        forward_once(anonymous, CHANNEL)
            .await
            .expect_err("no client certificate");
    }

    // The main listener no longer serves the cluster service.
    let main = connect(&pki, &node.address(), true)
        .await
        .expect("connected");
    let status = forward_once(main, CHANNEL).await.expect_err("not served");
    assert_eq!(status.code(), tonic::Code::Unimplemented, "{status}");
}
