//! Conformance with Fabric's official protos (PyPI `hyperledger-fabric-protos`):
//! our `.proto` files against the official descriptors, and the official Python
//! client (grpcio) against a running node. `scripts/setup-test-env.sh` installs
//! the Python side into `.venv`.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ORDO_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

pub fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
}

/// Runs a conformance script; returns its output, failing the test on a non-zero exit.
pub fn run_python(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(python())
        .args(args)
        .output()
        .expect("python runs (install it with scripts/setup-test-env.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance script failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn our_protos_match_the_official_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let descriptors = dir.path().join("ordo.desc");
    std::fs::write(&descriptors, ordo::fabric::protos::FILE_DESCRIPTOR_SET).expect("write");
    let out = run_python(&[
        script("check_protos.py").as_os_str(),
        descriptors.as_os_str(),
    ]);
    assert!(out.contains("match the official definitions"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_broadcasts_and_delivers() {
    let node = TestNode::from_profile(&profile(CHANNEL), vec![]).await;
    let address = node.address();
    let out = tokio::task::spawn_blocking(move || {
        run_python(&[
            script("client_test.py").as_os_str(),
            address.as_ref(),
            CHANNEL.as_ref(),
        ])
    })
    .await
    .expect("join");
    assert!(out.contains("conformance: all checks passed"), "{out}");
}

/// The genesis blocks the official protos build to configtxgen's layout,
/// and a client of their application organization Org1MSP (whose CA is
/// generated here; the ordering organization is the sample's).
fn fabric_made_blocks(
    dir: &std::path::Path,
) -> (
    PathBuf,
    PathBuf,
    ordo::tools::client::identity::SigningIdentity,
) {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/crypto");
    let crypto = dir.join("crypto");
    let client =
        ordo::tools::client::identity::SigningIdentity::generate("Org1MSP").expect("identity");
    client
        .write_msp(&crypto.join("org1/msp"))
        .expect("write org1");
    let copy = |from: &str, to: &str| {
        let target = crypto.join(to);
        std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
        std::fs::copy(sample.join(from), target).expect("copy");
    };
    copy(
        "org1/msp/tlscacerts/tlsca-cert.pem",
        "org1/msp/tlscacerts/tlsca-cert.pem",
    );
    for file in [
        "msp/cacerts/ca-cert.pem",
        "msp/tlscacerts/tlsca-cert.pem",
        "tls/orderer1.crt",
        "tls/orderer2.crt",
        "tls/orderer3.crt",
    ] {
        copy(&format!("ordererorg/{file}"), &format!("ordererorg/{file}"));
    }
    let out = run_python(&[
        script("fabric_genesis.py").as_os_str(),
        "make".as_ref(),
        dir.as_os_str(),
        crypto.as_os_str(),
    ]);
    assert!(out.contains("wrote solo.block"), "{out}");
    (dir.join("solo.block"), dir.join("etcdraft.block"), client)
}

fn boot_from(block: &std::path::Path) -> Vec<(String, String)> {
    vec![
        ("ORDERER_GENERAL_BOOTSTRAPMETHOD".into(), "file".into()),
        (
            "ORDERER_GENERAL_BOOTSTRAPFILE".into(),
            block.display().to_string(),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_solo_genesis_block_made_by_fabric_tools_boots_ordo() {
    use bytes::Bytes;
    use ordo::fabric::protos::common::Status;
    use ordo::tools::client::envelope::signed_transaction;

    let dir = tempfile::tempdir().expect("tempdir");
    let (solo, _, client_identity) = fabric_made_blocks(dir.path());
    let client_identity = std::sync::Arc::new(client_identity);
    let mut node = TestNode::with_env(boot_from(&solo)).await;
    // The channel's Readers are its organizations' members.
    node.reader = Some(client_identity.clone());
    let channel = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel("pysolo")
        .expect("channel pysolo");
    let config = channel.config();
    assert_eq!(config.consensus_type, "solo");
    assert_eq!(config.batch_size.max_message_count, 77);
    assert_eq!(config.batch_size.absolute_max_bytes, 5 * 1024 * 1024);
    assert_eq!(config.batch_timeout, std::time::Duration::from_millis(750));
    assert_eq!(
        config.orderer.organizations["OrdererOrg"].msp_id,
        "OrdererMSP"
    );

    // 80 transactions of an Org1 client: one block of 77 (MaxMessageCount),
    // then 3 at the timeout.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    for i in 0..80u32 {
        stream
            .send(signed_transaction(
                "pysolo",
                Bytes::from(i.to_be_bytes().to_vec()),
                &client_identity,
            ))
            .await;
    }
    for _ in 0..80 {
        assert_eq!(
            stream.next().await.expect("answer").status,
            Status::Success as i32
        );
    }
    wait_for_height(&node, "pysolo", 3).await;
    let blocks = all_blocks(&node, "pysolo").await;
    verify_chain(&blocks);
    let counts: Vec<usize> = blocks
        .iter()
        .map(|b| ordo::fabric::blockutil::entries(b).len())
        .collect();
    assert_eq!(counts, vec![1, 77, 3]);
    // Block 0 is served exactly as Fabric's tools wrote it.
    use prost::Message;
    assert_eq!(
        blocks[0].encode_to_vec(),
        std::fs::read(&solo).expect("read")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_etcdraft_genesis_block_made_by_fabric_tools_is_read_whole() {
    use bytes::Bytes;
    use ordo::fabric::protos::common::Status;
    use ordo::runtime::channel::ChannelState;
    use ordo::runtime::consensus::{ChainRole, ConsensusRelation, ParticipationStatus};
    use ordo::tools::client::envelope::signed_transaction;

    let dir = tempfile::tempdir().expect("tempdir");
    let (_, raft, client_identity) = fabric_made_blocks(dir.path());
    let node = TestNode::with_env(boot_from(&raft)).await;
    let channel = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel("pyraft")
        .expect("channel pyraft");
    let config = channel.config();
    assert_eq!(config.consensus_type, "etcdraft");
    assert_eq!(config.batch_size.max_message_count, 77);
    let raft = config.orderer.etcdraft.as_ref().expect("etcdraft metadata");
    assert_eq!(raft.consenters.len(), 3);
    assert_eq!(raft.consenters[2].port, 7053);
    assert_eq!(
        raft.options.as_ref().expect("options").max_inflight_blocks,
        5
    );

    // The block names three other nodes (127.0.0.1:7051-7053); this one is
    // not among them. The channel starts, and the node says it follows the
    // channel without ordering it: Fabric's consensusRelation "follower",
    // "onboarding" until it has pulled the consenters' blocks.
    let mut state = channel.subscribe_state();
    tokio::time::timeout(
        PATIENCE,
        state.wait_for(|s| !matches!(s, ChannelState::Starting)),
    )
    .await
    .expect("the channel starts in time")
    .expect("state watch");
    assert!(
        matches!(channel.state(), ChannelState::Active),
        "{:?}",
        channel.state()
    );
    let status = channel.chain_status();
    assert_eq!(status.relation, ConsensusRelation::Follower);
    assert_eq!(status.status, ParticipationStatus::Onboarding);
    assert_eq!(status.role, ChainRole::None);
    let info = node.admin().info("pyraft").await.expect("info").json();
    assert_eq!(info["consensusRelation"], "follower", "{info}");
    assert_eq!(info["status"], "onboarding", "{info}");

    // It does not order: a member's transaction is refused as unavailable.
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream
        .send(signed_transaction(
            "pyraft",
            Bytes::from_static(b"to a node that is not a consenter"),
            &client_identity,
        ))
        .await;
    let answer = stream.next().await.expect("answer");
    assert_eq!(
        answer.status,
        Status::ServiceUnavailable as i32,
        "{}",
        answer.info
    );
    assert!(answer.info.contains("not a consenter"), "{}", answer.info);
}

#[test]
fn fabric_made_blocks_inspect_and_encode_back() {
    use prost::Message;
    let dir = tempfile::tempdir().expect("tempdir");
    let (solo, raft, _) = fabric_made_blocks(dir.path());
    let codec = ordo::fabric::protojson::ProtoJson::new().expect("descriptors");
    for path in [solo, raft] {
        let raw = std::fs::read(&path).expect("read");
        let json = codec.block_to_json(&raw).expect("inspect");
        let config = &json["data"]["data"][0]["payload"]["data"]["config"]["channel_group"];
        let orderer = &config["groups"]["Orderer"];
        assert_eq!(
            orderer["values"]["BatchSize"]["value"]["max_message_count"],
            77
        );
        assert_eq!(
            orderer["groups"]["OrdererOrg"]["values"]["MSP"]["value"]["config"]["name"],
            "OrdererMSP"
        );
        let encoded = codec.json_to_block(&json).expect("encode");
        assert_eq!(codec.block_to_json(&encoded).expect("again"), json);
        let original = ordo::fabric::protos::common::Block::decode(raw.as_slice()).expect("block");
        let back = ordo::fabric::protos::common::Block::decode(encoded.as_slice()).expect("block");
        assert_eq!(back.header, original.header);
        let root = |b: &ordo::fabric::protos::common::Block| {
            ordo::fabric::channelconfig::ChannelConfig::from_config_block(b)
                .expect("config")
                .config
                .channel_group
                .expect("root")
        };
        assert!(ordo::fabric::configtx::semantic::same_group(
            &root(&back),
            &root(&original)
        ));
        // Nothing changed, so no update: the comparison sees through encodings.
        let config = |b: &ordo::fabric::protos::common::Block| {
            ordo::fabric::channelconfig::ChannelConfig::from_config_block(b)
                .expect("config")
                .config
        };
        assert!(ordo::fabric::configtx::compute::compute_update(
            "c",
            &config(&original),
            &config(&back)
        )
        .is_err());
    }
    // The etcdraft metadata is shown decoded.
    let raw = std::fs::read(dir.path().join("etcdraft.block")).expect("read");
    let json = codec.block_to_json(&raw).expect("inspect");
    let consensus = &json["data"]["data"][0]["payload"]["data"]["config"]["channel_group"]
        ["groups"]["Orderer"]["values"]["ConsensusType"]["value"];
    assert_eq!(consensus["metadata"]["consenters"][0]["port"], 7051);
}

#[test]
fn ordo_genesis_blocks_read_as_fabric_layout_with_the_official_protos() {
    let dir = tempfile::tempdir().expect("tempdir");
    let block = dir.path().join("mychannel.block");
    let configtx = ordo::fabric::configtxgen::ConfigTx::load(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config"),
    )
    .expect("sample configtx");
    let genesis = configtx
        .genesis_block("SoloChannel", "mychannel")
        .expect("genesis");
    std::fs::write(&block, prost::Message::encode_to_vec(&genesis)).expect("write");
    let out = run_python(&[
        script("fabric_genesis.py").as_os_str(),
        "check".as_ref(),
        block.as_os_str(),
    ]);
    assert!(out.contains("reads as Fabric's layout"), "{out}");
}
