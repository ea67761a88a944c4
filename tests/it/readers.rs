//! Deliver on a channel with organizations, over real gRPC: members of the
//! channel's Readers read; strangers, expired and unsigned requesters are
//! FORBIDDEN; a request stamped outside the time window is BAD_REQUEST; and a
//! config change that takes a reader out of Readers ends its stream.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use ordo::fabric::channelconfig::{keys, ChannelConfig};
use ordo::fabric::configtx::compute::{compute_update, signed_config_update_envelope};
use ordo::fabric::configtxgen::policydsl;
use ordo::fabric::envelopeutil::new_envelope;
use ordo::fabric::protos::common::policy::PolicyType;
use ordo::fabric::protos::common::{ChannelHeader, Envelope, HeaderType, Payload, Policy, Status};
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::fabric::protos::orderer::SeekInfo;
use ordo::security::testing::{TestCa, TestIdentity, TestOrg, Validity, CLIENT_OU};
use ordo::tools::client::envelope::BlockPosition;

use crate::common::*;

struct Network {
    orderer: TestOrg,
    org1: TestOrg,
}

impl Network {
    fn new() -> Network {
        Network {
            orderer: TestOrg::new("OrdererMSP"),
            org1: TestOrg::new("Org1MSP"),
        }
    }

    fn profile(&self) -> ordo::fabric::channelconfig::genesis::GenesisProfile {
        let mut profile = profile(CHANNEL);
        profile.orderer_organizations = vec![self.orderer.profile()];
        profile.application_organizations = Some(vec![self.org1.profile()]);
        profile
    }

    /// A node of the ordering organization on the channel.
    async fn node(&self) -> TestNode {
        self.node_with(Vec::new()).await
    }

    async fn node_with(&self, extra_env: Vec<(String, String)>) -> TestNode {
        let msp = tempfile::tempdir().expect("tempdir");
        let mut env = self.orderer.write_orderer_msp(&msp.path().join("msp"));
        env.extend(extra_env);
        TestNode::from_profile(&self.profile(), env).await
    }
}

/// A seek for `start..=stop`, signed by `who` (unsigned if `None`), its
/// timestamp moved by `skew_seconds`.
fn seek_by(
    who: Option<&TestIdentity>,
    start: BlockPosition,
    stop: BlockPosition,
    behavior: SeekBehavior,
    skew_seconds: i64,
) -> Envelope {
    let info = SeekInfo {
        start: Some(start.into()),
        stop: Some(stop.into()),
        behavior: behavior as i32,
        error_response: 0,
        content_type: SeekContentType::Block as i32,
    };
    let creator = who.map(TestIdentity::creator).unwrap_or_default();
    let (mut envelope, _) = new_envelope(
        CHANNEL,
        HeaderType::DeliverSeekInfo,
        info.encode_to_vec().into(),
        creator,
    );
    if skew_seconds != 0 {
        let mut payload = Payload::decode(envelope.payload.clone()).expect("payload");
        let header = payload.header.as_mut().expect("header");
        let mut channel_header =
            ChannelHeader::decode(header.channel_header.clone()).expect("channel header");
        if let Some(timestamp) = channel_header.timestamp.as_mut() {
            timestamp.seconds += skew_seconds;
        }
        header.channel_header = channel_header.encode_to_vec().into();
        envelope.payload = payload.encode_to_vec().into();
    }
    if let Some(who) = who {
        envelope.signature = who.sign(&envelope.payload);
    }
    envelope
}

fn everything(who: Option<&TestIdentity>) -> Envelope {
    seek_by(
        who,
        BlockPosition::Oldest,
        BlockPosition::Newest,
        SeekBehavior::FailIfNotReady,
        0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_read_and_everyone_else_is_refused_as_fabric_refuses() {
    let network = Network::new();
    let node = network.node().await;
    let mut client = node.client().await;

    // Members of either organization read.
    for member in [&network.org1.client, &network.orderer.client] {
        let got = deliver_envelope(&mut client, everything(Some(member))).await;
        assert_eq!(got.status, Some(Status::Success));
        assert_eq!(got.blocks.len(), 1);
    }

    let stranger = TestCa::root("ca.Org1MSP").issue("Org1MSP", "User1@Org1MSP", &[CLIENT_OU]);
    let expired =
        network
            .org1
            .ca
            .issue_with("Org1MSP", "User9@Org1MSP", &[CLIENT_OU], Validity::Expired);
    let mut tampered = everything(Some(&network.org1.client));
    tampered.signature = network.org1.client.sign(b"something else");
    for (who, request) in [
        ("stranger", everything(Some(&stranger))),
        ("expired", everything(Some(&expired))),
        ("unsigned", everything(None)),
        ("tampered", tampered),
    ] {
        let got = deliver_envelope(&mut client, request).await;
        assert_eq!(got.status, Some(Status::Forbidden), "{who}");
        assert!(got.blocks.is_empty(), "{who} read nothing");
    }

    // Outside General.Authentication.TimeWindow (15 minutes) either way.
    for skew in [-16 * 60, 16 * 60] {
        let request = seek_by(
            Some(&network.org1.client),
            BlockPosition::Oldest,
            BlockPosition::Newest,
            SeekBehavior::FailIfNotReady,
            skew,
        );
        let got = deliver_envelope(&mut client, request).await;
        assert_eq!(got.status, Some(Status::BadRequest), "skew {skew}s");
        assert!(got.blocks.is_empty());
    }
    let within = seek_by(
        Some(&network.org1.client),
        BlockPosition::Oldest,
        BlockPosition::Newest,
        SeekBehavior::FailIfNotReady,
        -10 * 60,
    );
    let got = deliver_envelope(&mut client, within).await;
    assert_eq!(got.status, Some(Status::Success));
}

/// Application/Readers narrowed to Org1's admins, signed by Org1's admin
/// (Application/Admins is a MAJORITY of the one organization's admins).
fn narrow_readers(network: &Network, current: &ChannelConfig) -> Envelope {
    let mut updated = current.config.clone();
    let application = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::APPLICATION_GROUP))
        .expect("application group");
    let rule = policydsl::parse("OR('Org1MSP.admin')").expect("policy");
    application.policies = HashMap::from_iter(application.policies.drain().map(|(name, mut p)| {
        if name == keys::READERS {
            p.policy = Some(Policy {
                r#type: PolicyType::Signature as i32,
                value: rule.encode_to_vec().into(),
            });
        }
        (name, p)
    }));
    let update = compute_update(CHANNEL, &current.config, &updated).expect("a difference");
    network.org1.admin.as_update_signer(|admin| {
        signed_config_update_envelope(&update, std::slice::from_ref(admin), admin)
    })
}

/// The next block or status of a Deliver stream.
async fn next(
    stream: &mut tonic::Streaming<ordo::fabric::protos::orderer::DeliverResponse>,
) -> ordo::fabric::protos::orderer::deliver_response::Type {
    tokio::time::timeout(PATIENCE, futures::StreamExt::next(stream))
        .await
        .expect("an answer in time")
        .expect("stream open")
        .expect("no gRPC error")
        .r#type
        .expect("a block or a status")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_change_that_drops_a_reader_ends_its_stream() {
    let network = Network::new();
    let node = network.node().await;
    let mut follower = node.client().await;
    let mut stream = follower
        .deliver(tokio_stream::once(seek_by(
            Some(&network.org1.client),
            BlockPosition::Oldest,
            BlockPosition::Number(u64::MAX),
            SeekBehavior::BlockUntilReady,
            0,
        )))
        .await
        .expect("deliver")
        .into_inner();
    use ordo::fabric::protos::orderer::deliver_response::Type as Item;
    let Item::Block(genesis) = next(&mut stream).await else {
        panic!("block 0 first");
    };

    // A transaction still reaches the follower.
    let mut client = node.client().await;
    let mut broadcast = BroadcastStream::open(&mut client).await;
    broadcast
        .send(
            network
                .org1
                .client
                .transaction(CHANNEL, Bytes::from_static(b"before")),
        )
        .await;
    assert_eq!(
        broadcast.next().await.expect("answer").status,
        Status::Success as i32
    );
    assert!(matches!(next(&mut stream).await, Item::Block(_)));

    // Readers narrowed to Org1's admins: the config block is not sent to a
    // client; its stream ends FORBIDDEN.
    let current = ChannelConfig::from_config_block(&genesis).expect("config");
    let update = narrow_readers(&network, &current);
    broadcast.send(update).await;
    let answer = broadcast.next().await.expect("answer");
    assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    assert_eq!(
        next(&mut stream).await,
        Item::Status(Status::Forbidden as i32)
    );

    // The admin still reads everything, the client nothing.
    let mut reader = node.client().await;
    let got = deliver_envelope(&mut reader, everything(Some(&network.org1.admin))).await;
    assert_eq!(got.status, Some(Status::Success));
    assert_eq!(got.blocks.len(), 3);
    let got = deliver_envelope(&mut reader, everything(Some(&network.org1.client))).await;
    assert_eq!(got.status, Some(Status::Forbidden));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_ends_when_its_readers_certificate_expires() {
    use std::time::{Duration, SystemTime};

    use ordo::runtime::clock::Clock;
    use ordo::runtime::node::{Node, NodeOptions};

    let network = Network::new();
    let dir = tempfile::tempdir().expect("tempdir");
    let genesis = dir.path().join("genesis.block");
    std::fs::write(&genesis, network.profile().genesis_block().encode_to_vec())
        .expect("write genesis");
    let mut env = network
        .orderer
        .write_orderer_msp(&dir.path().join("orderer-msp"));
    env.extend([
        (
            "ORDERER_GENERAL_BOOTSTRAPMETHOD".to_string(),
            "file".to_string(),
        ),
        (
            "ORDERER_GENERAL_BOOTSTRAPFILE".to_string(),
            genesis.display().to_string(),
        ),
    ]);
    // The node's clock starts at the real time and moves only by hand.
    let (clock, hand) = Clock::manual();
    let options = NodeOptions {
        clock,
        ..NodeOptions::default()
    };
    let node = Node::start_with(config_for(dir.path(), &env), options)
        .await
        .expect("node starts");
    let node = TestNode {
        node: Some(node),
        dir,
        extra_env: env,
        consenters: ordo::runtime::consensus::Consenters::standard(),
        reader: None,
    };

    let reader = network.org1.ca.issue_with(
        "Org1MSP",
        "Reader@Org1MSP",
        &[CLIENT_OU],
        Validity::Until(SystemTime::now() + Duration::from_secs(3600)),
    );
    let mut follower = node.client().await;
    let mut stream = follower
        .deliver(tokio_stream::once(seek_by(
            Some(&reader),
            BlockPosition::Oldest,
            BlockPosition::Number(u64::MAX),
            SeekBehavior::BlockUntilReady,
            0,
        )))
        .await
        .expect("deliver")
        .into_inner();
    use ordo::fabric::protos::orderer::deliver_response::Type as Item;
    assert!(matches!(next(&mut stream).await, Item::Block(_)));

    // Two hours on: the reader's certificate has expired when block 1 comes.
    hand.advance(Duration::from_secs(2 * 3600));
    let mut client = node.client().await;
    let mut broadcast = BroadcastStream::open(&mut client).await;
    broadcast
        .send(
            network
                .org1
                .client
                .transaction(CHANNEL, Bytes::from_static(b"later")),
        )
        .await;
    assert_eq!(
        broadcast.next().await.expect("answer").status,
        Status::Success as i32
    );
    // The block is cut at the batch timeout, on the node's clock.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while node.height(CHANNEL) < 2 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "block 1 was not cut"
        );
        hand.advance(Duration::from_secs(1));
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        next(&mut stream).await,
        Item::Status(Status::Forbidden as i32)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_commands_read_as_a_member_and_nobody_else_reads() {
    let network = Network::new();
    let node = network.node().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let msp = dir.path().join("user1");
    network.org1.write_msp(&network.org1.client, &msp);
    let address = node.address();
    let output = dir.path().join("newest.block");
    let fetch = |signed: bool| {
        let mut args = vec![
            "fetch".to_string(),
            "--channel".into(),
            CHANNEL.into(),
            "--block".into(),
            "newest".into(),
            "--output".into(),
            output.display().to_string(),
            "--address".into(),
            address.clone(),
        ];
        if signed {
            args.extend([
                "--msp-dir".into(),
                msp.display().to_string(),
                "--msp-id".into(),
                "Org1MSP".into(),
            ]);
        }
        args
    };
    let (ok, out, err) = run_ordo(&fetch(false)).await;
    assert!(!ok, "{out}");
    assert!(err.contains("FORBIDDEN"), "{err}");
    let (ok, out, err) = run_ordo(&fetch(true)).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("wrote block 0"), "{out}");

    let (ok, out, err) = run_ordo(&[
        "deliver",
        "--channel",
        CHANNEL,
        "--address",
        &address,
        "--msp-dir",
        &msp.display().to_string(),
        "--msp-id",
        "Org1MSP",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("block 0 txs 1 hash "), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_expiration_checks_an_expired_member_reads() {
    let network = Network::new();
    let node = network
        .node_with(vec![(
            "ORDERER_GENERAL_AUTHENTICATION_NOEXPIRATIONCHECKS".into(),
            "true".into(),
        )])
        .await;
    let expired =
        network
            .org1
            .ca
            .issue_with("Org1MSP", "User9@Org1MSP", &[CLIENT_OU], Validity::Expired);
    let mut client = node.client().await;
    let got = deliver_envelope(&mut client, everything(Some(&expired))).await;
    assert_eq!(got.status, Some(Status::Success));
    assert_eq!(got.blocks.len(), 1);
}
