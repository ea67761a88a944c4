//! The node config as operators write it: Fabric's sample orderer.yaml, an
//! unknown key, a missing BootstrapMethod, and keys that reach the gRPC server.

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use ordo::fabric::localconfig::NodeConfig;
use ordo::runtime::node::Node;

use crate::common::*;

/// Fabric 3.1's sample orderer.yaml, every key in its layout.
const FABRIC_SAMPLE: &str = include_str!("../fixtures/fabric-3.1-orderer.yaml");

/// Listeners on free loopback ports, the ledger in `dir` and a node identity,
/// as an operator overrides a file from the environment.
fn local_overrides(dir: &std::path::Path) -> Vec<(String, String)> {
    let mut vars = identity_env(dir);
    vars.extend([
        ("ORDERER_GENERAL_LISTENPORT".into(), "0".into()),
        ("ORDERER_ADMIN_LISTENADDRESS".into(), "127.0.0.1:0".into()),
        (
            "ORDERER_OPERATIONS_LISTENADDRESS".into(),
            "127.0.0.1:0".into(),
        ),
        (
            "ORDERER_FILELEDGER_LOCATION".into(),
            ledger_dir(dir).display().to_string(),
        ),
    ]);
    vars
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fabrics_sample_orderer_yaml_starts_a_node_without_channels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orderer.yaml");
    std::fs::write(&path, FABRIC_SAMPLE).expect("write");
    let config = NodeConfig::load_with_env(Some(&path), local_overrides(dir.path()))
        .expect("Fabric's sample loads");
    let node = Node::start(config).await.expect("starts");
    assert!(node.registrar().channel_ids().is_empty());
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_users_file_without_bootstrap_method_starts_without_channels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orderer.yaml");
    std::fs::write(&path, "General:\n  ListenAddress: 127.0.0.1\n").expect("write");
    let config =
        NodeConfig::load_with_env(Some(&path), local_overrides(dir.path())).expect("loads");
    let node = Node::start(config).await.expect("starts");
    assert!(node.registrar().channel_ids().is_empty());
    node.shutdown().await;

    // Ordo's built-in config keeps its embedded channel.
    let node = TestNode::embedded().await;
    assert_eq!(
        node.node
            .as_ref()
            .expect("running")
            .registrar()
            .channel_ids(),
        vec![CHANNEL.to_string()]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordo_start_refuses_an_unknown_key_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("orderer.yaml");
    let yaml = FABRIC_SAMPLE.replace(
        "    Authentication:\n",
        "    Authentication:\n        TimeWindw: 15m\n",
    );
    std::fs::write(&path, yaml).expect("write");
    let (ok, _, stderr) = run_ordo(&["start", "--config", &path.display().to_string()]).await;
    assert!(!ok, "started with an unknown key");
    assert!(
        stderr.contains("General.Authentication.TimeWindw"),
        "{stderr}"
    );

    let yaml = FABRIC_SAMPLE.replace("Provider: disabled", "Provider: statsd");
    std::fs::write(&path, yaml).expect("write");
    let (ok, _, stderr) = run_ordo(&["start", "--config", &path.display().to_string()]).await;
    assert!(!ok, "started with statsd");
    assert!(
        stderr.contains("Metrics.Provider") && stderr.contains("Ordo"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_over_max_recv_msg_size_is_resource_exhausted() {
    let node = TestNode::with_env(vec![(
        "ORDERER_GENERAL_MAXRECVMSGSIZE".to_string(),
        "4096".to_string(),
    )])
    .await;
    let mut client = node.client().await;
    let big = tx(&[7u8; 8192]);
    let mut responses = client
        .broadcast(tokio_stream::iter(vec![big]))
        .await
        .expect("stream opens")
        .into_inner();
    let status = tokio::time::timeout(PATIENCE, responses.message())
        .await
        .expect("answered")
        .expect_err("refused");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");

    // Messages within the limit are ordered as before.
    let mut responses = client
        .broadcast(tokio_stream::iter(vec![tx(&[1u8; 1024])]))
        .await
        .expect("stream opens")
        .into_inner();
    let answer = responses.message().await.expect("answer").expect("one");
    assert_eq!(
        answer.status,
        ordo::fabric::protos::common::Status::Success as i32
    );
}

/// An HTTP/2 frame header: length, type, flags.
async fn read_frame(socket: &mut tokio::net::TcpStream) -> Option<(u8, u8)> {
    let mut header = [0u8; 9];
    socket.read_exact(&mut header).await.ok()?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    socket.read_exact(&mut payload).await.ok()?;
    Some((header[3], header[4]))
}

const SETTINGS: u8 = 4;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const ACK: u8 = 1;

/// General.Keepalive reaches the server: an idle client is pinged after
/// ServerInterval, and a ping left unanswered for ServerTimeout closes the
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_pings_idle_clients_and_drops_silent_ones() {
    let node = TestNode::with_env(vec![
        (
            "ORDERER_GENERAL_KEEPALIVE_SERVERINTERVAL".to_string(),
            "1s".to_string(),
        ),
        (
            "ORDERER_GENERAL_KEEPALIVE_SERVERTIMEOUT".to_string(),
            "1s".to_string(),
        ),
    ])
    .await;
    let mut socket = tokio::net::TcpStream::connect(node.address())
        .await
        .expect("connect");
    socket
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    socket
        .write_all(&[0, 0, 0, SETTINGS, 0, 0, 0, 0, 0])
        .await
        .expect("settings");
    let outcome = tokio::time::timeout(PATIENCE, async {
        let mut pinged = false;
        loop {
            match read_frame(&mut socket).await {
                Some((SETTINGS, flags)) if flags & ACK == 0 => {
                    socket
                        .write_all(&[0, 0, 0, SETTINGS, ACK, 0, 0, 0, 0])
                        .await
                        .expect("settings ack");
                }
                // Never answered.
                Some((PING, flags)) if flags & ACK == 0 => pinged = true,
                Some((GOAWAY, _)) | None => return pinged,
                Some(_) => {}
            }
        }
    })
    .await
    .expect("the server pinged and then closed the connection");
    assert!(outcome, "closed without a ping");
}
