//! The operations listener: health, metrics moving under load, log levels at
//! run time, version.

use std::time::Duration;

use ordo::tools::client::broadcast::{broadcast, BroadcastOptions};

use crate::common::*;

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn healthz_is_ok_and_names_a_failed_channel() {
    let node = TestNode::embedded().await;
    let (status, body) = get(&operations_url(&node, "/healthz")).await;
    assert_eq!(status, 200, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "OK");

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
    assert_eq!(status, 503, "{body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(json["status"], "Service Unavailable");
    assert_eq!(json["failed_checks"][0]["component"], "channel/broken");
    assert!(json["failed_checks"][0]["reason"]
        .as_str()
        .expect("reason")
        .contains("BFT"));
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
