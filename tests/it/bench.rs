//! The load tool and the backpressure sweep, run as the binary against real nodes.

use std::process::Stdio;
use std::time::Duration;

use crate::common::*;

/// The JSON line the load tool prints last.
fn report(stdout: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON line in:\n{stdout}"));
    serde_json::from_str(line).expect("JSON report")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_load_run_sees_every_envelope_delivered() {
    let node = TestNode::from_profile(&profile(CHANNEL), vec![]).await;
    let address = node.address();
    let (ok, out, err) = run_ordo(&[
        "bench",
        "load",
        "--address",
        &address,
        "--count",
        "3100",
        "--streams",
        "3",
        "--size",
        "256",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let json = report(&out);
    assert_eq!(json["passed"], true, "{out}");
    assert_eq!(json["acknowledged"], 3100);
    assert_eq!(json["delivered"], 3100);
    assert_eq!(json["undelivered"], 0);
    assert!(json["blocks"].as_u64().expect("blocks") >= 7, "{out}");
    // The last 100 wait for the 200 ms batch timeout before their block is cut.
    let slowest = json["delivery_latency_ms"]["max"].as_f64().expect("max");
    assert!((150.0..60_000.0).contains(&slowest), "{out}");
    assert!(
        out.contains("broadcast-to-delivery latency ms: p50"),
        "{out}"
    );

    // Signed by a generated identity whose MSP folder is written out.
    let dir = tempfile::tempdir().expect("tempdir");
    let msp = dir.path().join("msp");
    let (ok, out, err) = run_ordo(&[
        "bench",
        "load",
        "--address",
        &address,
        "--count",
        "200",
        "--streams",
        "2",
        "--sign-as",
        "LoadMSP",
        "--save-msp",
        &msp.display().to_string(),
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("signed by LoadMSP"), "{out}");
    assert_eq!(report(&out)["delivered"], 200);
    // The envelopes in the blocks carry verifiable signatures by that identity.
    let identity = ordo::tools::client::identity::SigningIdentity::from_msp_dir(&msp, "LoadMSP")
        .expect("saved MSP");
    let blocks = all_blocks(&node, CHANNEL).await;
    let last = blocks.last().expect("a block");
    let raw = ordo::fabric::blockutil::entries(last)
        .last()
        .expect("an envelope");
    let envelope: ordo::fabric::protos::common::Envelope =
        prost::Message::decode(raw.clone()).expect("envelope");
    let signature = p256::ecdsa::Signature::from_der(&envelope.signature).expect("DER signature");
    p256::ecdsa::signature::Verifier::verify(
        &identity.verifying_key(),
        &envelope.payload,
        &signature,
    )
    .expect("signature verifies");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_run_against_a_node_killed_midway_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let mut node = spawn_ordo(dir.path(), port, &[], Stdio::null()).await;
    let address = format!("127.0.0.1:{port}");
    let args: Vec<String> = [
        "bench",
        "load",
        "--address",
        &address,
        "--count",
        "5000000",
        "--streams",
        "2",
        "--size",
        "512",
        "--deliver-timeout",
        "2",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    let load = tokio::spawn(async move { run_ordo(&args).await });
    // Let the run get going, then kill the node without warning.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    node.kill().expect("kill");
    let _ = node.wait();
    let (ok, out, err) = tokio::time::timeout(PATIENCE, load)
        .await
        .expect("the load tool ends")
        .expect("join");
    assert!(!ok, "must fail:\n{out}\n{err}");
    assert!(err.contains("load run failed"), "{err}");
    assert_eq!(report(&out)["passed"], false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backpressure_sweep_writes_its_csv_and_chart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("sweep");
    let (ok, out, err) = run_ordo(&[
        "bench",
        "backpressure",
        "--inflight",
        "1024,8192",
        "--streams",
        "1,3",
        "--count",
        "3000",
        "--size",
        "512",
        "--sample-ms",
        "20",
        "--output-dir",
        &out_dir.display().to_string(),
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let settings = std::fs::read_to_string(out_dir.join("settings.csv")).expect("settings.csv");
    let rows: Vec<&str> = settings.lines().collect();
    assert!(rows[0].starts_with(
        "max_inflight_envelopes,streams,sent,acknowledged,delivered,undelivered,refused"
    ));
    assert_eq!(rows.len(), 5, "{settings}");
    for row in &rows[1..] {
        let cells: Vec<&str> = row.split(',').collect();
        assert_eq!(cells[2..7], ["3000", "3000", "3000", "0", "0"], "{row}");
        assert_eq!(cells.last(), Some(&"true"), "{row}");
        assert!(cells[14].parse::<f64>().expect("peak MB") > 1.0, "{row}");
    }
    let samples = std::fs::read_to_string(out_dir.join("samples.csv")).expect("samples.csv");
    assert!(samples.lines().count() > 4, "{samples}");
    assert!(samples.starts_with(
        "max_inflight_envelopes,streams,seconds,envelopes_per_second,blocks_inflight"
    ));
    let svg = std::fs::read_to_string(out_dir.join("backpressure.svg")).expect("svg");
    assert!(svg.starts_with("<svg"), "not an SVG");
    assert!(svg.contains("Blocks in flight") && svg.contains("Submissions waiting"));
    assert!(svg.contains("inflight 8192 / 3 streams"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_backpressure_sweep_runs_on_three_etcdraft_nodes() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_dir = dir.path().join("sweep");
    let out_path = out_dir.display().to_string();
    // MaxInflightBlocks belongs to etcdraft: refused for solo before anything starts.
    let (ok, _, err) = run_ordo(&[
        "bench",
        "backpressure",
        "--max-inflight-blocks",
        "5",
        "--output-dir",
        &out_path,
    ])
    .await;
    assert!(!ok && err.contains("etcdraft"), "{err}");

    let (ok, out, err) = run_ordo(&[
        "bench",
        "backpressure",
        "--consenter",
        "etcdraft",
        "--nodes",
        "3",
        "--max-inflight-blocks",
        "5",
        "--streams",
        "2",
        "--count",
        "400",
        "--size",
        "256",
        "--sample-ms",
        "20",
        "--output-dir",
        &out_path,
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let settings = std::fs::read_to_string(out_dir.join("settings.csv")).expect("settings.csv");
    let rows: Vec<Vec<&str>> = settings.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), 2, "{settings}");
    let column = |name: &str| {
        let index = rows[0]
            .iter()
            .position(|c| *c == name)
            .unwrap_or_else(|| panic!("no column {name}: {settings}"));
        rows[1][index]
    };
    for (name, value) in [
        ("max_inflight_envelopes", "2048"),
        ("streams", "2"),
        ("sent", "400"),
        ("acknowledged", "400"),
        ("delivered", "400"),
        ("undelivered", "0"),
        ("refused", "0"),
        ("nodes", "3"),
        ("max_inflight_blocks", "5"),
        ("passed", "true"),
    ] {
        assert_eq!(column(name), value, "{name}: {settings}");
    }
    for name in ["leader_rss_mb", "max_follower_rss_mb"] {
        let mb: f64 = column(name).parse().expect("MB");
        assert!(mb > 1.0, "{name}: {settings}");
    }
    let samples = std::fs::read_to_string(out_dir.join("samples.csv")).expect("samples.csv");
    assert!(samples.lines().count() > 1, "{samples}");
    let svg = std::fs::read_to_string(out_dir.join("backpressure.svg")).expect("svg");
    assert!(svg.contains("etcdraft on 3 nodes") && svg.contains("MaxInflightBlocks"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_a_channel_with_an_organization_its_signed_load_passes_and_strangers_are_forbidden() {
    // The load's identity, written out as an MSP folder, is the channel's
    // application organization.
    let dir = tempfile::tempdir().expect("tempdir");
    let msp_dir = dir.path().join("msp");
    let identity =
        ordo::tools::client::identity::SigningIdentity::generate("LoadMSP").expect("identity");
    identity.write_msp(&msp_dir).expect("write MSP");
    let mut channel = profile(CHANNEL);
    // An ordering organization too: an Orderer group without organizations
    // would make its Writers (ANY of none) admit anyone, as in Fabric.
    channel.orderer_organizations =
        vec![ordo::security::testing::TestOrg::new("OrdererMSP").profile()];
    channel.application_organizations = Some(vec![
        ordo::fabric::channelconfig::genesis::OrganizationProfile {
            name: "LoadOrg".into(),
            msp_id: "LoadMSP".into(),
            msp: ordo::fabric::configtxgen::msp::read_msp(&msp_dir, "LoadMSP").expect("MSP"),
            orderer_endpoints: Vec::new(),
        },
    ]);
    let node = TestNode::from_profile(&channel, vec![]).await;
    let address = node.address();
    let msp_path = msp_dir.display().to_string();
    let (ok, out, err) = run_ordo(&[
        "bench",
        "load",
        "--address",
        &address,
        "--count",
        "400",
        "--streams",
        "2",
        "--msp-dir",
        &msp_path,
        "--msp-id",
        "LoadMSP",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(report(&out)["delivered"], 400);

    // Unsigned, and signed by an identity of the same name from another CA.
    for signer in [&[][..], &["--sign-as", "LoadMSP"][..]] {
        let mut args = vec![
            "bench",
            "load",
            "--address",
            &address,
            "--count",
            "10",
            "--streams",
            "1",
            "--deliver-timeout",
            "1",
        ];
        args.extend_from_slice(signer);
        // Refused as a reader (the load reads the height first) or a writer.
        let (ok, out, err) = run_ordo(&args).await;
        assert!(!ok, "{out}");
        assert!(
            out.contains("answered FORBIDDEN") || err.contains("deliver answered FORBIDDEN"),
            "{out}\n{err}"
        );
    }

    // A signed envelope whose payload was changed after signing.
    let mut envelope = ordo::tools::client::envelope::signed_transaction(
        CHANNEL,
        bytes::Bytes::from_static(b"original"),
        &identity,
    );
    let mut payload = envelope.payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    envelope.payload = payload.into();
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(envelope).await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(
        answer.status,
        ordo::fabric::protos::common::Status::Forbidden as i32
    );
    assert!(
        answer.info.ends_with("permission denied"),
        "{}",
        answer.info
    );
}
