//! The system channel, as Fabric 1.x/2.x ran it: a node booted from a
//! system channel genesis (laid out by the official protos as configtxgen
//! 2.5 lays it out) creates channels from `peer channel create`'s
//! transaction, orders them, finds them again after a restart, and answers
//! refusals as Fabric 2.5 does.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::ChannelConfig;
use ordo::fabric::protos::common::{ChannelHeader, Envelope, HeaderType, Payload, Status};
use ordo::runtime::channel::ChannelState;
use ordo::security::signer::{CertificateAuthority, SigningIdentity};
use ordo::tools::client::envelope::signed_transaction;

use crate::common::*;
use crate::conformance::{run_python, script};

const SYSTEM: &str = "syschannel";
const APP: &str = "appchannel";

/// The crypto material and the system channel genesis made from it.
pub(crate) struct Fixture {
    crypto: PathBuf,
    genesis: PathBuf,
    /// Org1's admin, as an MSP folder (`peer channel create` signs with it).
    org1_admin: PathBuf,
    /// An Org1 client, as an MSP folder.
    org1_client_msp: PathBuf,
    pub(crate) org1_client: Arc<SigningIdentity>,
    /// The node's own identity (OrdererMSP).
    pub(crate) orderer: Arc<SigningIdentity>,
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, bytes).expect("write");
}

/// Org1MSP and Org2MSP (their CAs made here), the sample orderer
/// organization, and the system channel genesis with ChannelRestrictions
/// MaxCount `max_count`.
fn fixture(dir: &Path, max_count: u64) -> Fixture {
    fixture_with(dir, max_count, &[])
}

/// The same, ordering through Kafka on `kafka_brokers` when any are given.
pub(crate) fn fixture_with(dir: &Path, max_count: u64, kafka_brokers: &[String]) -> Fixture {
    let sample = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/crypto");
    let crypto = dir.join("crypto");
    // The ordering organization is the node's own: its CA issues the
    // node's identity, which signs the system channel's transactions.
    let orderer_ca = CertificateAuthority::generate("OrdererMSP").expect("orderer ca");
    write(
        &crypto.join("ordererorg/msp/cacerts/ca-cert.pem"),
        orderer_ca.certificate_pem().as_bytes(),
    );
    let tls = "msp/tlscacerts/tlsca-cert.pem";
    write(
        &crypto.join("ordererorg").join(tls),
        &std::fs::read(sample.join("ordererorg").join(tls)).expect("sample"),
    );
    orderer_ca
        .issue("orderer.example.com", "orderer")
        .expect("orderer")
        .write_msp(&crypto.join("orderer"))
        .expect("orderer msp");
    let tls_ca = std::fs::read(sample.join("org1/msp/tlscacerts/tlsca-cert.pem")).expect("tls");
    let mut org1_client = None;
    for org in ["org1", "org2"] {
        let msp_id = format!("Org{}MSP", &org[3..]);
        let ca = CertificateAuthority::generate(&msp_id).expect("ca");
        let msp = crypto.join(org).join("msp");
        write(
            &msp.join("cacerts/ca-cert.pem"),
            ca.certificate_pem().as_bytes(),
        );
        write(&msp.join("tlscacerts/tlsca-cert.pem"), &tls_ca);
        let admin = ca.issue(&format!("Admin@{org}"), "admin").expect("admin");
        admin
            .write_msp(&crypto.join(format!("{org}admin")))
            .expect("admin msp");
        let client = ca.issue(&format!("User1@{org}"), "client").expect("client");
        client
            .write_msp(&crypto.join(format!("{org}client")))
            .expect("client msp");
        if org == "org1" {
            org1_client = Some(Arc::new(client));
        }
    }
    let genesis = dir.join("system.block");
    let max_count = max_count.to_string();
    let mut args = vec![
        script("fabric_genesis.py").into_os_string(),
        "syschannel".into(),
        genesis.clone().into_os_string(),
        crypto.clone().into_os_string(),
        max_count.into(),
    ];
    args.extend(kafka_brokers.iter().map(|b| b.into()));
    let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let out = run_python(&refs);
    assert!(out.contains("wrote the system channel genesis"), "{out}");
    Fixture {
        org1_admin: crypto.join("org1admin"),
        org1_client_msp: crypto.join("org1client"),
        genesis,
        org1_client: org1_client.expect("org1 client"),
        orderer: Arc::new(
            SigningIdentity::from_msp_dir(&crypto.join("orderer"), "OrdererMSP")
                .expect("orderer identity"),
        ),
        crypto,
    }
}

impl Fixture {
    /// `configtxgen -outputCreateChannelTx`, signed by `signer` (an MSP
    /// folder of `signer_id`) as `peer channel create` signs it.
    fn create_tx(
        &self,
        channel: &str,
        consortium: &str,
        signer: &Path,
        signer_id: &str,
        orgs: &[&str],
    ) -> Envelope {
        let out = self.crypto.join(format!("{channel}-{consortium}.tx"));
        let mut args = vec![
            script("fabric_genesis.py").into_os_string(),
            "createtx".into(),
            out.clone().into_os_string(),
            channel.into(),
            consortium.into(),
            signer.as_os_str().to_owned(),
            signer_id.into(),
        ];
        args.extend(orgs.iter().map(|o| (*o).into()));
        let refs: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
        let printed = run_python(&refs);
        assert!(printed.contains("wrote the channel creation"), "{printed}");
        Envelope::decode(std::fs::read(&out).expect("tx").as_slice()).expect("envelope")
    }

    pub(crate) fn admin_create_tx(&self, channel: &str) -> Envelope {
        self.create_tx(
            channel,
            "SampleConsortium",
            &self.org1_admin,
            "Org1MSP",
            &["Org1MSP", "Org2MSP"],
        )
    }

    pub(crate) fn boot_env(&self) -> Vec<(String, String)> {
        vec![
            ("ORDERER_GENERAL_BOOTSTRAPMETHOD".into(), "file".into()),
            (
                "ORDERER_GENERAL_BOOTSTRAPFILE".into(),
                self.genesis.display().to_string(),
            ),
            (
                "ORDERER_GENERAL_LOCALMSPDIR".into(),
                self.crypto.join("orderer").display().to_string(),
            ),
            ("ORDERER_GENERAL_LOCALMSPID".into(), "OrdererMSP".into()),
        ]
    }
}

pub(crate) async fn send_one(node: &TestNode, envelope: Envelope) -> (Status, String) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(envelope).await;
    let answer = stream.next().await.expect("an answer");
    (
        Status::try_from(answer.status).expect("a status"),
        answer.info,
    )
}

fn has_channel(node: &TestNode, channel: &str) -> bool {
    node.node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(channel)
        .is_some()
}

fn runs_channel(node: &TestNode, channel: &str) -> bool {
    node.node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(channel)
        .is_some_and(|c| c.state() == ChannelState::Active && c.chain().is_ok())
}

/// Waits until the registrar has created `channel` and its chain runs.
pub(crate) async fn wait_for_channel(node: &TestNode, channel: &str) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !runs_channel(node, channel) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "channel {channel} was not created"
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

fn header_type(raw: &Bytes) -> i32 {
    let envelope = Envelope::decode(raw.clone()).expect("envelope");
    let payload = Payload::decode(envelope.payload).expect("payload");
    ChannelHeader::decode(payload.header.expect("header").channel_header)
        .expect("channel header")
        .r#type
}

/// Orders three transactions of Org1's client on `channel` and reads them back.
pub(crate) async fn orders_transactions(node: &TestNode, client: &SigningIdentity, channel: &str) {
    let before = node.height(channel);
    let mut grpc = node.client().await;
    let mut stream = BroadcastStream::open(&mut grpc).await;
    for i in 0..3u8 {
        stream
            .send(signed_transaction(channel, Bytes::from(vec![i; 8]), client))
            .await;
    }
    for _ in 0..3 {
        let answer = stream.next().await.expect("answer");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
    wait_for_height(node, channel, before + 1).await;
    let blocks = all_blocks(node, channel).await;
    verify_chain(&blocks);
    let last = blocks.last().expect("a block");
    assert_eq!(blockutil::entries(last).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_created_through_the_system_channel_orders_and_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = fixture(dir.path(), 1);
    let mut node = TestNode::with_env(fixture.boot_env()).await;
    node.reader = Some(fixture.org1_client.clone());
    let registrar = node.node.as_ref().expect("running").registrar().clone();
    assert_eq!(registrar.system_channel_id().as_deref(), Some(SYSTEM));
    let system = registrar.channel(SYSTEM).expect("system channel");
    let consortiums = system.config().consortiums.clone().expect("consortiums");
    let sample = &consortiums["SampleConsortium"];
    assert_eq!(
        sample.organizations.keys().collect::<Vec<_>>(),
        ["Org1MSP", "Org2MSP"]
    );
    assert!(sample.channel_creation_policy.is_some());

    // The participation API names the system channel apart.
    let list = node.admin().list().await.expect("list");
    assert_eq!(
        list.json(),
        serde_json::json!({
            "systemChannel": {"name": SYSTEM, "url": "/participation/v1/channels/syschannel"},
            "channels": null
        })
    );

    // `peer channel create`: the org admin's transaction creates the channel.
    let (status, info) = send_one(&node, fixture.admin_create_tx(APP)).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_channel(&node, APP).await;

    // The system channel wrote the ORDERER_TRANSACTION alone in block 1,
    // signed by the node, and its config did not move.
    wait_for_height(&node, SYSTEM, 2).await;
    // The system channel's readers are the orderers.
    node.reader = Some(fixture.orderer.clone());
    let system_blocks = all_blocks(&node, SYSTEM).await;
    node.reader = Some(fixture.org1_client.clone());
    verify_chain(&system_blocks);
    let creation = &system_blocks[1];
    assert_eq!(blockutil::entries(creation).len(), 1);
    assert_eq!(
        header_type(&blockutil::entries(creation)[0]),
        HeaderType::OrdererTransaction as i32
    );
    assert_eq!(blockutil::last_config_index(creation), Some(0));
    assert_eq!(system.config().sequence, 0);

    // The new channel's genesis holds the CONFIG envelope the system
    // channel carried: sequence 1, the consortium's members, the system
    // channel's orderer group, solo inherited.
    let app_blocks = all_blocks(&node, APP).await;
    assert_eq!(app_blocks.len(), 1);
    let config = ChannelConfig::from_config_block(&app_blocks[0]).expect("config");
    assert_eq!(config.sequence, 1);
    assert_eq!(config.consensus_type, "solo");
    assert!(config.consortiums.is_none());
    let application = config.application.as_ref().expect("application");
    assert_eq!(
        application.organizations.keys().collect::<Vec<_>>(),
        ["Org1MSP", "Org2MSP"]
    );
    assert_eq!(
        config.orderer.organizations["OrdererOrg"].msp_id,
        "OrdererMSP"
    );
    let inner = {
        let outer = Envelope::decode(blockutil::entries(creation)[0].clone()).expect("outer");
        Payload::decode(outer.payload).expect("payload").data
    };
    assert_eq!(blockutil::entries(&app_blocks[0])[0], inner);

    // Org1's client orders on the new channel.
    orders_transactions(&node, &fixture.org1_client, APP).await;

    // A second creation of the same channel is an update of the existing
    // channel, refused as Fabric refuses it: the Application group moved.
    let (status, info) = send_one(&node, fixture.admin_create_tx(APP)).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert!(
        info.starts_with("error applying config update to existing channel 'appchannel'"),
        "{info}"
    );
    assert!(
        info.contains(
            "[Group]  /Channel/Application be at version 0, but it is currently at version 1"
        ),
        "{info}"
    );

    // MaxCount 1: two channels now, a third is refused.
    let (status, info) = send_one(&node, fixture.admin_create_tx("another")).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert_eq!(
        info,
        "channel creation would exceed maximimum number of channels: 1"
    );
    assert!(!has_channel(&node, "another"));

    // Participation while a system channel runs: as Fabric 2.x.
    let admin = node.admin();
    let join = admin
        .join(app_blocks[0].encode_to_vec())
        .await
        .expect("join");
    assert_eq!(join.status, 405);
    assert_eq!(join.header("allow"), "GET");
    assert_eq!(
        join.json(),
        serde_json::json!({"error": "cannot join: system channel exists"})
    );
    let remove = admin.remove(APP).await.expect("remove");
    assert_eq!(remove.status, 405);
    assert_eq!(
        remove.json(),
        serde_json::json!({"error": "cannot remove: system channel exists"})
    );
    let remove = admin.remove(SYSTEM).await.expect("remove");
    assert_eq!(remove.status, 400);
    assert_eq!(
        remove.json(),
        serde_json::json!({"error": "cannot remove: cannot remove solo system channel: syschannel"})
    );
    let list = admin.list().await.expect("list");
    assert_eq!(
        list.json()["channels"],
        serde_json::json!([{"name": APP, "url": "/participation/v1/channels/appchannel"}])
    );

    // Restart: the system channel is found again, and so is the channel.
    // (The registrar and its channels are let go first: their ledgers close.)
    drop((registrar, system));
    node.restart().await;
    let registrar = node.node.as_ref().expect("running").registrar().clone();
    assert_eq!(registrar.failed_channels(), vec![]);
    assert_eq!(registrar.system_channel_id().as_deref(), Some(SYSTEM));
    assert!(has_channel(&node, APP));
    drop(registrar);
    wait_for_channel(&node, APP).await;
    orders_transactions(&node, &fixture.org1_client, APP).await;

    // A crash after the system channel wrote the creation and before the
    // channel existed: start-up creates it from the system channel's ledger.
    node.stop().await;
    std::fs::remove_dir_all(ledger_dir(node.dir.path()).join("chains").join(APP))
        .expect("remove the channel's ledger");
    node.start().await;
    assert!(has_channel(&node, APP), "created again at start-up");
    let again = all_blocks(&node, APP).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].encode_to_vec(), app_blocks[0].encode_to_vec());
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creations_are_refused_with_fabrics_answers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = fixture(dir.path(), 0);
    let mut node = TestNode::with_env(fixture.boot_env()).await;

    // Signed by a client, not an admin: the creation policy (ANY Admins of
    // the consortium's members) is not satisfied.
    let by_client = fixture.create_tx(
        APP,
        "SampleConsortium",
        &fixture.org1_client_msp,
        "Org1MSP",
        &["Org1MSP"],
    );
    let (status, info) = send_one(&node, by_client).await;
    assert_eq!(status, Status::BadRequest, "{info}");
    assert!(info.starts_with("error validating channel creation transaction for new channel 'appchannel', could not successfully apply update to template configuration: error authorizing update: error validating DeltaSet: policy for [Group]  /Channel/Application not satisfied"), "{info}");

    let unknown = fixture.create_tx(
        APP,
        "NoSuchConsortium",
        &fixture.org1_admin,
        "Org1MSP",
        &["Org1MSP"],
    );
    let (status, info) = send_one(&node, unknown).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(info, "Unknown consortium name: NoSuchConsortium");

    let stranger = fixture.create_tx(
        APP,
        "SampleConsortium",
        &fixture.org1_admin,
        "Org1MSP",
        &["Org1MSP", "Org3MSP"],
    );
    let (status, info) = send_one(&node, stranger).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(
        info,
        "Attempted to include a member which is not in the consortium"
    );
    assert!(!has_channel(&node, APP));

    // An ORDERER_TRANSACTION is the orderer's own: never taken from a client.
    let forged = ordo::tools::client::envelope::envelope(
        SYSTEM,
        HeaderType::OrdererTransaction,
        Bytes::from_static(b"x"),
    );
    let (status, info) = send_one(&node, forged).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(info, "message is of type that cannot be processed directly");

    // A transaction for a channel that does not exist.
    let (status, info) = send_one(
        &node,
        signed_transaction("nowhere", Bytes::from_static(b"tx"), &fixture.org1_client),
    )
    .await;
    assert_eq!(status, Status::NotFound);
    assert_eq!(info, "channel does not exist");

    // Nothing was ordered on the system channel.
    assert_eq!(node.height(SYSTEM), 1);
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_system_channel_is_joined_only_by_a_node_without_channels() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = fixture(dir.path(), 0);
    let genesis = std::fs::read(&fixture.genesis).expect("genesis");

    // A node with an application channel: Fabric 2.x's 403.
    let mut busy = TestNode::embedded().await;
    let answer = busy.admin().join(genesis.clone()).await.expect("join");
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert_eq!(
        answer.json(),
        serde_json::json!({"error": "cannot join: application channels already exist"})
    );
    busy.stop().await;

    // A node without channels joins it, and creates channels through it.
    let mut env = fixture.boot_env();
    env.retain(|(key, _)| key != "ORDERER_GENERAL_BOOTSTRAPFILE");
    env.retain(|(key, _)| key != "ORDERER_GENERAL_BOOTSTRAPMETHOD");
    env.push(("ORDERER_GENERAL_BOOTSTRAPMETHOD".into(), "none".into()));
    let mut node = TestNode::with_env(env).await;
    node.reader = Some(fixture.org1_client.clone());
    let answer = node.admin().join(genesis.clone()).await.expect("join");
    assert_eq!(answer.status, 201, "{}", answer.body);
    assert_eq!(answer.json()["name"], SYSTEM);
    let list = node.admin().list().await.expect("list");
    assert_eq!(list.json()["systemChannel"]["name"], SYSTEM);
    let again = node.admin().join(genesis).await.expect("join");
    assert_eq!(again.status, 405);
    assert_eq!(
        again.json(),
        serde_json::json!({"error": "cannot join: system channel exists"})
    );

    let (status, info) = send_one(&node, fixture.admin_create_tx(APP)).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_channel(&node, APP).await;
    orders_transactions(&node, &fixture.org1_client, APP).await;
    node.stop().await;
}

/// A configtx.yaml over the fixture's organizations: a system channel
/// genesis profile and a two-organization channel creation profile.
const CONFIGTX: &str = r#"
Organizations:
  - &OrdererOrg
    Name: OrdererOrg
    ID: OrdererMSP
    MSPDir: crypto/ordererorg/msp
    OrdererEndpoints: [127.0.0.1:7050]
  - &Org1
    Name: Org1MSP
    ID: Org1MSP
    MSPDir: crypto/org1/msp
  - &Org2
    Name: Org2MSP
    ID: Org2MSP
    MSPDir: crypto/org2/msp
Profiles:
  SystemGenesis:
    Capabilities: {V2_0: true}
    Orderer:
      OrdererType: solo
      BatchTimeout: 500ms
      BatchSize: {MaxMessageCount: 10, AbsoluteMaxBytes: 10 MB, PreferredMaxBytes: 512 KB}
      Capabilities: {V2_0: true}
      Organizations: [*OrdererOrg]
    Consortiums:
      SampleConsortium:
        Organizations: [*Org1, *Org2]
  TwoOrgsChannel:
    Consortium: SampleConsortium
    Application:
      Capabilities: {V2_0: true}
      Organizations: [*Org1, *Org2]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordo_genesis_writes_system_channel_genesis_and_creation_transactions() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fixture = fixture(dir.path(), 0);
    // The organizations' MSP folders tell roles by NodeOUs, as cryptogen's do.
    for (org, member) in [
        ("org1", "org1admin"),
        ("org2", "org2admin"),
        ("ordererorg", "orderer"),
    ] {
        std::fs::copy(
            fixture.crypto.join(member).join("config.yaml"),
            fixture.crypto.join(org).join("msp/config.yaml"),
        )
        .expect("config.yaml");
    }
    std::fs::write(dir.path().join("configtx.yaml"), CONFIGTX).expect("configtx");
    let base = dir.path().display().to_string();
    let genesis = dir.path().join("ordo-system.block");
    let (ok, out, err) = run_ordo(&[
        "genesis",
        "--config-path",
        &base,
        "--profile",
        "SystemGenesis",
        "--channel-id",
        SYSTEM,
        "--output-block",
        &genesis.display().to_string(),
    ])
    .await;
    assert!(ok, "{out}{err}");
    let tx = dir.path().join("toolchannel.tx");
    let (ok, out, err) = run_ordo(&[
        "genesis",
        "--config-path",
        &base,
        "--profile",
        "TwoOrgsChannel",
        "--channel-id",
        "toolchannel",
        "--output-create-channel-tx",
        &tx.display().to_string(),
        "--sign-msp-dir",
        &fixture.org1_admin.display().to_string(),
        "--msp-id",
        "Org1MSP",
    ])
    .await;
    assert!(ok, "{out}{err}");
    let checked = run_python(&[
        script("fabric_genesis.py").as_os_str(),
        "checksystem".as_ref(),
        genesis.as_os_str(),
        tx.as_os_str(),
    ]);
    assert!(checked.contains("read as Fabric's layout"), "{checked}");

    let mut env = fixture.boot_env();
    env.retain(|(key, _)| key != "ORDERER_GENERAL_BOOTSTRAPFILE");
    env.push((
        "ORDERER_GENERAL_BOOTSTRAPFILE".into(),
        genesis.display().to_string(),
    ));
    let mut node = TestNode::with_env(env).await;
    node.reader = Some(fixture.org1_client.clone());
    let registrar = node.node.as_ref().expect("running").registrar().clone();
    assert_eq!(registrar.system_channel_id().as_deref(), Some(SYSTEM));
    drop(registrar);

    // Ordo's own transaction, and one laid out by the official protos.
    let own = Envelope::decode(std::fs::read(&tx).expect("tx").as_slice()).expect("envelope");
    let (status, info) = send_one(&node, own).await;
    assert_eq!(status, Status::Success, "{info}");
    let (status, info) = send_one(&node, fixture.admin_create_tx(APP)).await;
    assert_eq!(status, Status::Success, "{info}");
    for channel in ["toolchannel", APP] {
        wait_for_channel(&node, channel).await;
        orders_transactions(&node, &fixture.org1_client, channel).await;
    }
    // Unsigned, as configtxgen writes it: the creation policy refuses it.
    let (ok, out, err) = run_ordo(&[
        "genesis",
        "--config-path",
        &base,
        "--profile",
        "TwoOrgsChannel",
        "--channel-id",
        "unsigned",
        "--output-create-channel-tx",
        &tx.display().to_string(),
    ])
    .await;
    assert!(ok, "{out}{err}");
    let unsigned = Envelope::decode(std::fs::read(&tx).expect("tx").as_slice()).expect("envelope");
    let (status, info) = send_one(&node, unsigned).await;
    assert_eq!(status, Status::BadRequest);
    assert!(
        info.contains("policy for [Group]  /Channel/Application not satisfied"),
        "{info}"
    );
    node.stop().await;
}
