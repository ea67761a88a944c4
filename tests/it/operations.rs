//! The operations listener: health, metrics moving under load, log levels at
//! run time, version, Fabric's answers to other methods; over TLS, /logspec
//! and /metrics need a client certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ordo::runtime::server::operations::HealthChecker;
use ordo::tools::client::broadcast::{broadcast, BroadcastOptions};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::*;
use crate::tls::Pki;

fn operations_url(node: &TestNode, path: &str) -> String {
    let address = node
        .node
        .as_ref()
        .expect("running")
        .operations_addr()
        .expect("operations listener");
    format!("http://{address}{path}")
}

async fn get(url: &str) -> (u16, String) {
    let (status, _, body) = get_typed(url).await;
    (status, body)
}

/// Status, content type and body.
async fn get_typed(url: &str) -> (u16, String, String) {
    let response = reqwest::get(url).await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, response.text().await.expect("body"))
}

/// The value of one sample (`name{labels}` exactly as exposed), if present.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let rest = line.strip_prefix(series)?;
        rest.strip_prefix(' ')?.trim().parse().ok()
    })
}

struct Failing;

impl HealthChecker for Failing {
    fn health_check(&self) -> Result<(), String> {
        Err("disk full".into())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_follows_node_checks_not_channels() {
    let node = TestNode::embedded().await;
    let (status, body) = get(&operations_url(&node, "/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "OK");
    assert!(json.get("failed_checks").is_none(), "{body}");
    // Go's RFC 3339 with nanoseconds: a UTC time that parses back.
    let time = json["time"].as_str().expect("time");
    humantime::parse_rfc3339(time).expect("RFC 3339");

    // A failed channel does not fail the node's health: it shows in the
    // participation API and in the chain metrics instead.
    let mut p = profile("broken");
    p.consensus_type = "BFT".into();
    let joined = node
        .admin()
        .join(prost::Message::encode_to_vec(&p.genesis_block()))
        .await
        .expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(joined.json()["status"], "failed");
    let (status, body) = get(&operations_url(&node, "/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let info = node.admin().info("broken").await.expect("info");
    assert_eq!(info.json()["status"], "failed", "{}", info.body);
    let (_, metrics) = get(&operations_url(&node, "/metrics")).await;
    assert_eq!(
        sample(&metrics, "ordo_chain_active{channel=\"broken\"}"),
        Some(0.0),
        "{metrics}"
    );

    // A registered node-level check that fails does.
    let checks = node.node.as_ref().expect("running").health_checks().clone();
    checks
        .register("ledger.disk", Arc::new(Failing))
        .expect("registered");
    let (status, body) = get(&operations_url(&node, "/healthz")).await;
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "Service Unavailable");
    assert_eq!(
        json["failed_checks"],
        serde_json::json!([{"component": "ledger.disk", "reason": "disk full"}])
    );
    checks.deregister("ledger.disk");
    assert_eq!(get(&operations_url(&node, "/healthz")).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_and_paths_get_fabrics_answers() {
    let node = TestNode::embedded().await;
    let client = reqwest::Client::new();
    let send = |method: reqwest::Method, path: &str| {
        client.request(method, operations_url(&node, path)).send()
    };
    let healthz = send(reqwest::Method::POST, "/healthz").await.expect("post");
    assert_eq!(healthz.status().as_u16(), 405);
    assert_eq!(healthz.text().await.expect("body"), "");

    let version = send(reqwest::Method::POST, "/version").await.expect("post");
    assert_eq!(version.status().as_u16(), 400);
    let body: serde_json::Value = version.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"Error": "invalid request method: POST"})
    );

    let logspec = send(reqwest::Method::DELETE, "/logspec")
        .await
        .expect("delete");
    assert_eq!(logspec.status().as_u16(), 400);
    let body: serde_json::Value = logspec.json().await.expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({"error": "invalid request method: DELETE"})
    );

    let missing = send(reqwest::Method::GET, "/nothing/here")
        .await
        .expect("get");
    assert_eq!(missing.status().as_u16(), 404);
    assert_eq!(missing.text().await.expect("body"), "404 page not found\n");

    let version = send(reqwest::Method::GET, "/version").await.expect("get");
    let text = version.text().await.expect("body");
    assert!(text.starts_with("{\"CommitSHA\":"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_exposed_and_move_under_load() {
    let node = TestNode::from_profile(&profile(CHANNEL), vec![]).await;
    let url = operations_url(&node, "/metrics");
    let (status, content_type, before) = get_typed(&url).await;
    assert_eq!(status, 200);
    // Prometheus's text format, as Fabric's orderer serves it.
    assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
    let height = |text: &str| sample(text, "ledger_blockchain_height{channel=\"mychannel\"}");
    assert_eq!(height(&before), Some(1.0));

    let options = BroadcastOptions {
        address: node.address(),
        channel: CHANNEL.into(),
        count: 2000,
        size: 512,
        streams: 2,
    };
    let report = broadcast(&options).await.expect("broadcast");
    assert_eq!(report.succeeded, 2000);
    let blocks = wait_for_transactions(&node, CHANNEL, 2000).await;

    // Room is released, and mailboxes empty, just after the blocks are
    // served: wait for the node to settle.
    let ch = "channel=\"mychannel\"";
    let settled = |text: &str| {
        [
            "ordo_blocks_inflight",
            "ordo_envelopes_inflight",
            "ordo_bytes_inflight",
        ]
        .iter()
        .all(|name| sample(text, &format!("{name}{{{ch}}}")) == Some(0.0))
            && ["chain", "cutter", "ledger"].iter().all(|actor| {
                sample(
                    text,
                    &format!("ordo_mailbox_depth{{{ch},actor=\"{actor}\"}}"),
                ) == Some(0.0)
            })
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let after = loop {
        let (_, text) = get(&url).await;
        if settled(&text) || tokio::time::Instant::now() > deadline {
            break text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Fabric's names and types, counters without a _total suffix; Ordo's own
    // metrics under ordo_.
    for (name, kind) in [
        ("broadcast_validate_duration", "histogram"),
        ("broadcast_enqueue_duration", "histogram"),
        ("broadcast_processed_count", "counter"),
        ("deliver_streams_opened", "counter"),
        ("deliver_streams_closed", "counter"),
        ("deliver_requests_received", "counter"),
        ("deliver_requests_completed", "counter"),
        ("deliver_blocks_sent", "counter"),
        ("ledger_blockchain_height", "gauge"),
        ("ordo_blocks_committed_total", "counter"),
        ("ordo_envelopes_per_block", "histogram"),
        ("ordo_mailbox_depth", "gauge"),
        ("ordo_messages_handled_total", "counter"),
        ("ordo_blocks_inflight", "gauge"),
        ("ordo_envelopes_inflight", "gauge"),
        ("ordo_bytes_inflight", "gauge"),
        ("ordo_chain_is_leader", "gauge"),
        ("ordo_chain_active", "gauge"),
        ("ordo_submissions_waiting", "gauge"),
        ("ordo_submission_wait_seconds", "histogram"),
        ("ordo_broadcast_to_block_seconds", "histogram"),
        ("ordo_chain_restarts_total", "counter"),
    ] {
        assert!(
            after.contains(&format!("# TYPE {name} {kind}\n")),
            "{name} {kind} missing:\n{after}"
        );
    }
    for fabric in ["broadcast_", "deliver_", "ledger_"] {
        assert!(
            !after
                .lines()
                .any(|l| l.starts_with(fabric) && l.contains("_total")),
            "a Fabric counter with _total:\n{after}"
        );
    }
    assert!(!after.contains("# EOF") && !after.contains("# UNIT"));
    assert_eq!(
        sample(&after, &format!("ordo_chain_is_leader{{{ch}}}")),
        Some(1.0)
    );
    assert_eq!(
        sample(&after, &format!("ordo_chain_active{{{ch}}}")),
        Some(1.0)
    );
    let broadcast = format!("{ch},status=\"SUCCESS\",type=\"ENDORSER_TRANSACTION\"");
    assert_eq!(
        sample(&after, &format!("broadcast_processed_count{{{broadcast}}}")),
        Some(2000.0),
        "{after}"
    );
    for histogram in ["broadcast_validate_duration", "broadcast_enqueue_duration"] {
        assert_eq!(
            sample(&after, &format!("{histogram}_count{{{broadcast}}}")),
            Some(2000.0),
            "{histogram}: {after}"
        );
        assert_eq!(
            sample(
                &after,
                &format!("{histogram}_bucket{{le=\"+Inf\",{broadcast}}}")
            ),
            Some(2000.0),
            "{histogram}: {after}"
        );
    }
    assert_eq!(height(&after), Some(blocks.len() as f64));
    assert_eq!(
        sample(&after, &format!("ordo_blocks_committed_total{{{ch}}}")),
        Some((blocks.len() - 1) as f64)
    );
    assert_eq!(
        sample(&after, &format!("ordo_envelopes_per_block_sum{{{ch}}}")),
        Some(2000.0)
    );
    assert_eq!(
        sample(
            &after,
            &format!("ordo_broadcast_to_block_seconds_count{{{ch}}}")
        ),
        Some(2000.0)
    );
    let handled = |actor: &str| {
        sample(
            &after,
            &format!("ordo_messages_handled_total{{{ch},actor=\"{actor}\"}}"),
        )
        .unwrap_or(0.0)
    };
    assert!(handled("chain") > 0.0 && handled("cutter") > 0.0 && handled("ledger") > 0.0);
    // Everything was handled and written: nothing is left queued or in flight.
    for actor in ["chain", "cutter", "ledger"] {
        assert_eq!(
            sample(
                &after,
                &format!("ordo_mailbox_depth{{{ch},actor=\"{actor}\"}}")
            ),
            Some(0.0),
            "{actor}"
        );
    }
    assert_eq!(
        sample(&after, &format!("ordo_blocks_inflight{{{ch}}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, &format!("ordo_envelopes_inflight{{{ch}}}")),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, &format!("ordo_bytes_inflight{{{ch}}}")),
        Some(0.0)
    );
    let deliver = format!("{ch},data_type=\"block\",filtered=\"false\"");
    assert!(
        sample(&after, &format!("deliver_blocks_sent{{{deliver}}}")).unwrap_or(0.0)
            >= blocks.len() as f64,
        "{after}"
    );
    let received = sample(&after, &format!("deliver_requests_received{{{deliver}}}"));
    assert!(received.unwrap_or(0.0) >= 1.0, "{after}");
    let completed = sample(
        &after,
        &format!("deliver_requests_completed{{{deliver},success=\"true\"}}"),
    );
    assert!(completed.unwrap_or(0.0) >= 1.0, "{after}");
    assert!(sample(&after, "deliver_streams_opened").unwrap_or(0.0) >= 1.0);
}

/// Metrics.Provider disabled: no /metrics, as in Fabric; the rest of the
/// operations listener serves as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_provider_disabled_serves_no_metrics() {
    let node = TestNode::with_env(vec![(
        "ORDERER_METRICS_PROVIDER".to_string(),
        "disabled".to_string(),
    )])
    .await;
    let (status, _) = get(&operations_url(&node, "/metrics")).await;
    assert_eq!(status, 404);
    let (status, _) = get(&operations_url(&node, "/healthz")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn version_and_bad_logspecs() {
    let node = TestNode::embedded().await;
    let (status, body) = get(&operations_url(&node, "/version")).await;
    assert_eq!(status, 200);
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["Version"], env!("CARGO_PKG_VERSION"));
    assert!(json["CommitSHA"].is_string());

    let client = reqwest::Client::new();
    let url = operations_url(&node, "/logspec");
    let bad = client
        .put(&url)
        .json(&serde_json::json!({"spec": "loud"}))
        .send()
        .await
        .expect("put");
    assert_eq!(bad.status().as_u16(), 400);
    assert!(bad.text().await.expect("body").contains("loud"));
    let garbage = client.put(&url).body("not json").send().await.expect("put");
    assert_eq!(garbage.status().as_u16(), 400);
}

/// On the real binary: a level changed through /logspec takes effect at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_logspec_change_takes_effect_at_run_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (grpc, ops) = (free_port(), free_port());
    let log = dir.path().join("ordo.log");
    let mut child = spawn_ordo(
        dir.path(),
        grpc,
        &[(
            "ORDERER_OPERATIONS_LISTENADDRESS",
            format!("127.0.0.1:{ops}"),
        )],
        std::fs::File::create(&log).expect("log file").into(),
    )
    .await;
    let url = format!("http://127.0.0.1:{ops}/logspec");
    let deadline = std::time::Instant::now() + PATIENCE;
    let spec = loop {
        if let Ok(response) = reqwest::get(&url).await {
            break response.json::<serde_json::Value>().await.expect("JSON");
        }
        assert!(std::time::Instant::now() < deadline, "ordo did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(spec["spec"], "warn");
    let address = format!("127.0.0.1:{grpc}");
    let send = |count| BroadcastOptions {
        address: address.clone(),
        channel: CHANNEL.into(),
        count,
        size: 10,
        streams: 1,
    };
    broadcast(&send(5)).await.expect("broadcast");
    let quiet = std::fs::read_to_string(&log).expect("log");
    assert!(!quiet.contains("DEBUG"), "{quiet}");

    let changed = reqwest::Client::new()
        .put(&url)
        .json(&serde_json::json!({"spec": "ordo.server=debug:warn"}))
        .send()
        .await
        .expect("put");
    assert_eq!(changed.status().as_u16(), 204);
    assert_eq!(
        reqwest::get(&url)
            .await
            .expect("get")
            .json::<serde_json::Value>()
            .await
            .expect("JSON")["spec"],
        "ordo.server=debug:warn"
    );
    broadcast(&send(5)).await.expect("broadcast");
    let deadline = std::time::Instant::now() + PATIENCE;
    loop {
        let text = std::fs::read_to_string(&log).expect("log");
        if text.contains("DEBUG") && text.contains("broadcast stream closed") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no debug line:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(&mut child);
}

fn stop(child: &mut std::process::Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// One HTTP/1.1 request over TLS to `address` (server name localhost), with
/// an optional client certificate; the status and body, or why it failed.
async fn https(
    address: SocketAddr,
    server_ca: &[u8],
    client: Option<(&[u8], &[u8])>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(server_ca) {
        roots.add(cert.expect("CA PEM")).expect("CA");
    }
    let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert)
                    .collect::<Result<Vec<_>, _>>()
                    .expect("cert"),
                PrivateKeyDer::from_pem_slice(key).expect("key"),
            )
            .expect("client auth"),
        None => builder.with_no_client_auth(),
    };
    let tcp = tokio::net::TcpStream::connect(address)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    // A form type, as `curl -d` sends: the body is read as JSON regardless.
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    tls.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut answer = Vec::new();
    if let Err(e) = tls.read_to_end(&mut answer).await {
        if answer.is_empty() {
            return Err(format!("read: {e}"));
        }
    }
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no HTTP answer: {answer:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status: {head:?}"))?;
    Ok((status, body.to_string()))
}

fn operations_tls_env(pki: &Pki, required: bool) -> Vec<(&'static str, String)> {
    let p = |name: &str| pki.path(name).display().to_string();
    vec![
        ("ORDERER_OPERATIONS_TLS_ENABLED", "true".into()),
        ("ORDERER_OPERATIONS_TLS_CERTIFICATE", p("server.crt")),
        ("ORDERER_OPERATIONS_TLS_PRIVATEKEY", p("server.key")),
        (
            "ORDERER_OPERATIONS_TLS_CLIENTROOTCAS",
            format!("[{}]", p("ca.crt")),
        ),
        (
            "ORDERER_OPERATIONS_TLS_CLIENTAUTHREQUIRED",
            required.to_string(),
        ),
    ]
}

/// On the real binary, so that a log level change takes effect: with
/// Operations.TLS on, /logspec and /metrics need a verified client
/// certificate; /healthz and /version do not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_over_tls_require_a_client_certificate_for_logspec_and_metrics() {
    let pki = Pki::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let (grpc, ops) = (free_port(), free_port());
    let mut env = operations_tls_env(&pki, false);
    env.push((
        "ORDERER_OPERATIONS_LISTENADDRESS",
        format!("127.0.0.1:{ops}"),
    ));
    let mut child = spawn_ordo(dir.path(), grpc, &env, std::process::Stdio::null()).await;
    let address: SocketAddr = format!("127.0.0.1:{ops}").parse().expect("address");
    let read = |name: &str| std::fs::read(pki.path(name)).expect("read");
    let (ca, cert, key) = (read("ca.crt"), read("client.crt"), read("client.key"));
    let client = Some((cert.as_slice(), key.as_slice()));
    let request = |client, method: &'static str, path: &'static str, body: &'static str| {
        https(address, &ca, client, method, path, body)
    };

    let deadline = std::time::Instant::now() + PATIENCE;
    let (status, body) = loop {
        match request(None, "GET", "/healthz", "").await {
            Ok(answer) => break answer,
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "operations listener never answered: {e}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        request(None, "GET", "/version", "").await.map(|a| a.0),
        Ok(200)
    );

    for (method, path) in [
        ("GET", "/metrics"),
        ("GET", "/logspec"),
        ("PUT", "/logspec"),
    ] {
        let answer = request(None, method, path, r#"{"spec":"debug"}"#).await;
        assert_eq!(answer, Ok((401, String::new())), "{method} {path}");
    }
    let (status, metrics) = request(client, "GET", "/metrics", "")
        .await
        .expect("metrics");
    assert_eq!(status, 200);
    assert!(metrics.contains("ledger_blockchain_height"), "{metrics}");

    let changed = request(client, "PUT", "/logspec", r#"{"spec":"debug"}"#)
        .await
        .expect("put");
    assert_eq!(changed.0, 204, "{}", changed.1);
    let (status, spec) = request(client, "GET", "/logspec", "").await.expect("get");
    assert_eq!(status, 200);
    let spec: serde_json::Value = serde_json::from_str(&spec).expect("JSON");
    assert_eq!(spec["spec"], "debug");

    // A certificate from a CA that is not trusted is refused at the handshake.
    let other = Pki::new();
    let (other_cert, other_key) = (
        std::fs::read(other.path("client.crt")).expect("read"),
        std::fs::read(other.path("client.key")).expect("read"),
    );
    request(
        Some((other_cert.as_slice(), other_key.as_slice())),
        "GET",
        "/healthz",
        "",
    )
    .await
    .expect_err("an untrusted client certificate");
    stop(&mut child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operations_with_client_auth_required_serve_nobody_without_a_certificate() {
    let pki = Pki::new();
    let env = operations_tls_env(&pki, true)
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let node = TestNode::with_env(env).await;
    let address = node
        .node
        .as_ref()
        .expect("running")
        .operations_addr()
        .expect("operations listener");
    let read = |name: &str| std::fs::read(pki.path(name)).expect("read");
    let (ca, cert, key) = (read("ca.crt"), read("client.crt"), read("client.key"));
    https(address, &ca, None, "GET", "/healthz", "")
        .await
        .expect_err("no client certificate");
    let (status, body) = https(
        address,
        &ca,
        Some((cert.as_slice(), key.as_slice())),
        "GET",
        "/healthz",
        "",
    )
    .await
    .expect("healthz");
    assert_eq!(status, 200, "{body}");
}
