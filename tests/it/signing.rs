//! The node's signing identity: every block after the genesis block and every
//! CONFIG envelope the node makes carry its signature, checked as a Fabric
//! peer checks them with the official Python protos; a node whose identity
//! cannot be read does not start; Ordo's built-in config alone makes a
//! development identity.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use bytes::Bytes;
use prost::Message;

use crate::common::*;
use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::{keys, ChannelConfig};
use ordo::fabric::configtx::compute::{compute_update, config_update_envelope};
use ordo::fabric::configtxgen::ConfigTx;
use ordo::fabric::protos::common::{
    BlockMetadataIndex, ConfigSignature, ConfigUpdateEnvelope, Envelope, Metadata, Payload,
    SignatureHeader, Status,
};
use ordo::fabric::protos::orderer::seek_info::SeekBehavior;
use ordo::fabric::protos::orderer::BatchSize;
use ordo::security::signer::{CertificateAuthority, SigningIdentity, DEVELOPMENT_MSP_DIR};
use ordo::tools::client::envelope::{signed_transaction, BlockPosition};

const CHANNEL_ID: &str = "signedchannel";
const ORDERER_MSP: &str = "OrdererMSP";

/// A channel of one orderer organization (the node, an admin, a client of
/// one CA) and one application organization, whose blocks must be signed by
/// an orderer of OrdererMSP.
const CONFIGTX: &str = r#"
Organizations:
  - &OrdererOrg
    Name: OrdererOrg
    ID: OrdererMSP
    MSPDir: orderer
    Policies:
      Readers:
        Type: Signature
        Rule: "OR('OrdererMSP.member')"
      Writers:
        Type: Signature
        Rule: "OR('OrdererMSP.member')"
      Admins:
        Type: Signature
        Rule: "OR('OrdererMSP.admin')"
    OrdererEndpoints:
      - 127.0.0.1:7050
  - &Org1
    Name: Org1MSP
    ID: Org1MSP
    MSPDir: org1
    Policies:
      Readers:
        Type: Signature
        Rule: "OR('Org1MSP.member')"
      Writers:
        Type: Signature
        Rule: "OR('Org1MSP.member')"
      Admins:
        Type: Signature
        Rule: "OR('Org1MSP.admin')"

Orderer: &OrdererDefaults
  OrdererType: solo
  BatchTimeout: 200ms
  BatchSize:
    MaxMessageCount: 10
    AbsoluteMaxBytes: 10 MB
    PreferredMaxBytes: 2 MB
  Organizations:
  Policies:
    Readers:
      Type: ImplicitMeta
      Rule: "ANY Readers"
    Writers:
      Type: ImplicitMeta
      Rule: "ANY Writers"
    Admins:
      Type: ImplicitMeta
      Rule: "MAJORITY Admins"
    BlockValidation:
      Type: Signature
      Rule: "OR('OrdererMSP.orderer')"
  Capabilities:
    V2_0: true

Application: &ApplicationDefaults
  Organizations:
  Policies:
    Readers:
      Type: ImplicitMeta
      Rule: "ANY Readers"
    Writers:
      Type: ImplicitMeta
      Rule: "ANY Writers"
    Admins:
      Type: ImplicitMeta
      Rule: "MAJORITY Admins"
  Capabilities:
    V2_5: true

Channel: &ChannelDefaults
  Policies:
    Readers:
      Type: ImplicitMeta
      Rule: "ANY Readers"
    Writers:
      Type: ImplicitMeta
      Rule: "ANY Writers"
    Admins:
      Type: ImplicitMeta
      Rule: "MAJORITY Admins"
  Capabilities:
    V3_0: true

Profiles:
  Signed:
    <<: *ChannelDefaults
    Orderer:
      <<: *OrdererDefaults
      Organizations:
        - *OrdererOrg
    Application:
      <<: *ApplicationDefaults
      Organizations:
        - *Org1
"#;

/// The identities of the channel's organizations, with their MSP folders
/// under one folder.
struct Network {
    dir: tempfile::TempDir,
    admin: SigningIdentity,
    client: SigningIdentity,
}

impl Network {
    fn new() -> Network {
        let dir = tempfile::tempdir().expect("tempdir");
        let orderer_org = CertificateAuthority::generate(ORDERER_MSP).expect("CA");
        // The node's MSP folder is also the organization's for configtx.yaml.
        orderer_org
            .issue("orderer1.example.com", "orderer")
            .expect("node")
            .write_msp(&dir.path().join("orderer"))
            .expect("write");
        let client = orderer_org
            .issue("User1@example.com", "client")
            .expect("client");
        client.write_msp(&dir.path().join("client")).expect("write");
        CertificateAuthority::generate("Org1MSP")
            .expect("CA")
            .issue("peer0.org1.example.com", "peer")
            .expect("peer")
            .write_msp(&dir.path().join("org1"))
            .expect("write");
        std::fs::write(dir.path().join("configtx.yaml"), CONFIGTX).expect("configtx.yaml");
        Network {
            admin: orderer_org
                .issue("Admin@example.com", "admin")
                .expect("admin"),
            client,
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A node booted from the channel's genesis block, signing as the orderer.
    async fn node(&self) -> TestNode {
        let genesis = ConfigTx::load(self.dir.path())
            .expect("configtx.yaml")
            .genesis_block("Signed", CHANNEL_ID)
            .expect("genesis");
        std::fs::write(self.path("genesis.block"), genesis.encode_to_vec()).expect("write");
        let env = |k: &str, v: String| (k.to_string(), v);
        TestNode::with_env(vec![
            env("ORDERER_GENERAL_BOOTSTRAPMETHOD", "file".into()),
            env(
                "ORDERER_GENERAL_BOOTSTRAPFILE",
                self.path("genesis.block").display().to_string(),
            ),
            env(
                "ORDERER_GENERAL_LOCALMSPDIR",
                self.path("orderer").display().to_string(),
            ),
            env("ORDERER_GENERAL_LOCALMSPID", ORDERER_MSP.into()),
        ])
        .await
    }
}

/// A CONFIG_UPDATE setting MaxMessageCount, signed by `admin` (in the
/// update's signatures and on the envelope), as `peer channel update` sends it.
fn signed_batch_update(config: &ChannelConfig, count: u32, admin: &SigningIdentity) -> Envelope {
    let mut updated = config.config.clone();
    let value = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .and_then(|orderer| orderer.values.get_mut(keys::BATCH_SIZE))
        .expect("batch size");
    let mut size = BatchSize::decode(value.value.clone()).expect("batch size");
    size.max_message_count = count;
    value.value = size.encode_to_vec().into();
    let update = compute_update(CHANNEL_ID, &config.config, &updated).expect("a difference");

    let unsigned = config_update_envelope(&update);
    let mut payload = Payload::decode(unsigned.payload).expect("payload");
    let mut update_envelope = ConfigUpdateEnvelope::decode(payload.data).expect("update envelope");
    let signature_header = admin.signature_header();
    let mut signed = signature_header.to_vec();
    signed.extend_from_slice(&update_envelope.config_update);
    update_envelope.signatures.push(ConfigSignature {
        signature_header,
        signature: admin.sign(&signed),
    });
    payload.data = update_envelope.encode_to_vec().into();
    let envelope = Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    };
    admin.sign_envelope(&envelope).expect("signed envelope")
}

async fn send_all(node: &TestNode, envelopes: Vec<Envelope>) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    let count = envelopes.len();
    for envelope in envelopes {
        stream.send(envelope).await;
    }
    for _ in 0..count {
        let answer = stream.next().await.expect("an answer");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
}

fn transactions(client: &SigningIdentity, from: u32, count: u32) -> Vec<Envelope> {
    (from..from + count)
        .map(|i| signed_transaction(CHANNEL_ID, Bytes::from(i.to_be_bytes().to_vec()), client))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_block_and_config_envelope_verifies_as_a_peer_checks_it() {
    let network = Network::new();
    let mut node = network.node().await;
    node.reader = Some(std::sync::Arc::new(
        SigningIdentity::from_msp_dir(&network.path("client"), ORDERER_MSP).expect("client"),
    ));

    // 25 transactions (blocks of 10, 10, 5), a config update, 7 more.
    send_all(&node, transactions(&network.client, 0, 25)).await;
    let blocks = wait_for_transactions(&node, CHANNEL_ID, 25).await;
    let config = ChannelConfig::from_config_block(&blocks[0]).expect("config");
    send_all(&node, vec![signed_batch_update(&config, 5, &network.admin)]).await;
    send_all(&node, transactions(&network.client, 25, 7)).await;
    let blocks = wait_for_transactions(&node, CHANNEL_ID, 32).await;
    verify_chain(&blocks);
    assert!(blocks.iter().skip(1).any(blockutil::is_config_block));

    // Signed by the node's identity (a quick look here; the full check is
    // the independent one below).
    let node_identity = SigningIdentity::from_msp_dir(&network.path("orderer"), ORDERER_MSP)
        .expect("node identity");
    let last = blocks.last().expect("a block");
    let slot = &last.metadata.as_ref().expect("metadata").metadata
        [BlockMetadataIndex::Signatures as usize];
    let metadata = Metadata::decode(slot.clone()).expect("metadata");
    let header = SignatureHeader::decode(metadata.signatures[0].signature_header.clone())
        .expect("signature header");
    assert_eq!(header.creator, node_identity.serialized());

    let address = node.address();
    let client_msp = network.path("client");
    let out = tokio::task::spawn_blocking(move || {
        crate::conformance::run_python(&[
            crate::conformance::script("block_signatures.py").as_os_str(),
            address.as_ref(),
            CHANNEL_ID.as_ref(),
            client_msp.as_os_str(),
            ORDERER_MSP.as_ref(),
        ])
    })
    .await
    .expect("join");
    assert!(out.contains("block signatures: all checks passed"), "{out}");
    assert!(out.contains("config envelopes verified: 1"), "{out}");
}

/// `ordo start --config FILE`; returns (success, stderr).
async fn start_with_file(config: &Path) -> (bool, String) {
    let (ok, _, err) = run_ordo(&["start", "--config", &config.display().to_string()]).await;
    (ok, err)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_config_without_a_readable_identity_does_not_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("orderer.yaml");
    let yaml = |msp: &str| {
        format!(
            "General:\n  ListenAddress: 127.0.0.1\n  ListenPort: {}\n  BootstrapMethod: none\n  LocalMSPDir: {msp}\n  LocalMSPID: OrdererMSP\nFileLedger:\n  Location: ledger\nAdmin:\n  ListenAddress: 127.0.0.1:0\nOperations:\n  ListenAddress: 127.0.0.1:0\n",
            free_port()
        )
    };

    std::fs::write(&config, yaml("no-such-msp")).expect("write");
    let (ok, err) = start_with_file(&config).await;
    assert!(!ok, "started without an identity");
    assert!(err.contains("General.LocalMSPDir"), "{err}");
    assert!(
        err.contains(&dir.path().join("no-such-msp").display().to_string()),
        "{err}"
    );
    // No development identity for a user's file.
    assert!(!dir.path().join("ledger").join(DEVELOPMENT_MSP_DIR).exists());

    // A folder whose key is not the certificate's.
    let msp = dir.path().join("msp");
    let ca = CertificateAuthority::generate("OrdererMSP").expect("CA");
    ca.issue("orderer1", "orderer")
        .expect("identity")
        .write_msp(&msp)
        .expect("write");
    let other = dir.path().join("other");
    ca.issue("orderer2", "orderer")
        .expect("identity")
        .write_msp(&other)
        .expect("write");
    std::fs::copy(other.join("keystore/priv_sk"), msp.join("keystore/priv_sk")).expect("copy");
    std::fs::write(&config, yaml("msp")).expect("write");
    let (ok, err) = start_with_file(&config).await;
    assert!(!ok, "started with a key of another certificate");
    assert!(
        err.contains("General.LocalMSPDir: no private key in"),
        "{err}"
    );
    assert!(err.contains("belongs to the certificate"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_built_in_config_alone_signs_with_a_development_identity() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let log = dir.path().join("ordo.log");
    // The built-in config, run where no `msp` folder is.
    let mut child = Command::new(env!("CARGO_BIN_EXE_ordo"))
        .arg("start")
        .current_dir(dir.path())
        .env("ORDERER_GENERAL_LISTENPORT", port.to_string())
        .env("ORDERER_ADMIN_LISTENADDRESS", "")
        .env("ORDERER_OPERATIONS_LISTENADDRESS", "")
        .env("FABRIC_LOGGING_SPEC", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn ordo");
    let address = format!("127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + PATIENCE;
    let mut client = loop {
        if let Ok(client) = ordo::tools::client::connect(&address).await {
            break client;
        }
        assert!(std::time::Instant::now() < deadline, "ordo did not start");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let development = dir.path().join("ordo-data").join(DEVELOPMENT_MSP_DIR);
    let identity =
        SigningIdentity::from_msp_dir(&development, "SampleOrg").expect("development identity");
    let warning = std::fs::read_to_string(&log).expect("log");
    assert!(warning.contains("development identity"), "{warning}");

    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(tx(b"hello")).await;
    assert_eq!(
        stream.next().await.expect("answer").status,
        Status::Success as i32
    );
    // Block 1, once the batch timeout has cut it.
    let got = deliver(
        &mut client,
        CHANNEL,
        BlockPosition::Number(1),
        BlockPosition::Number(1),
        SeekBehavior::BlockUntilReady,
    )
    .await;
    assert_eq!(got.status, Some(Status::Success));
    let block = &got.blocks[0];
    let slot = &block.metadata.as_ref().expect("metadata").metadata
        [BlockMetadataIndex::Signatures as usize];
    let metadata = Metadata::decode(slot.clone()).expect("metadata");
    let signature = &metadata.signatures[0];
    let message = blockutil::block_signature_message(
        &metadata.value,
        &signature.signature_header,
        block.header.as_ref().expect("header"),
    );
    let der = p256::ecdsa::Signature::from_der(&signature.signature).expect("DER");
    p256::ecdsa::signature::Verifier::verify(&identity.verifying_key(), &message, &der)
        .expect("signed by the development identity");
    let _ = child.kill();
    let _ = child.wait();
}
