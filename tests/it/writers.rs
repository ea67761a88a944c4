//! A channel with organizations, over real gRPC: Broadcast takes what the
//! channel's Writers sign and answers everyone else as Fabric does, and a
//! config update applies only with the admin signatures its modification
//! policy asks for.

use bytes::Bytes;
use prost::Message;

use ordo::fabric::blockutil;
use ordo::fabric::channelconfig::genesis::GenesisProfile;
use ordo::fabric::channelconfig::{keys, ChannelConfig};
use ordo::fabric::configtx::compute::{compute_update, signed_config_update_envelope};
use ordo::fabric::protos::common::{Block, Envelope, Status};
use ordo::fabric::protos::orderer::BatchSize;
use ordo::security::testing::{TestCa, TestOrg, Validity, CLIENT_OU};

use crate::common::*;

/// Two ordering organizations (so the Orderer group's Admins, a MAJORITY,
/// needs both) and one application organization.
struct Network {
    orderer1: TestOrg,
    orderer2: TestOrg,
    org1: TestOrg,
}

impl Network {
    fn new() -> Network {
        Network {
            orderer1: TestOrg::new("Orderer1MSP"),
            orderer2: TestOrg::new("Orderer2MSP"),
            org1: TestOrg::new("Org1MSP"),
        }
    }

    fn profile(&self) -> GenesisProfile {
        let mut profile = profile(CHANNEL);
        profile.orderer_organizations = vec![self.orderer1.profile(), self.orderer2.profile()];
        profile.application_organizations = Some(vec![self.org1.profile()]);
        profile
    }

    /// A node of the first ordering organization on the channel.
    async fn node(&self, extra_env: Vec<(String, String)>) -> TestNode {
        let msp = tempfile::tempdir().expect("tempdir");
        let mut env = self.orderer1.write_orderer_msp(&msp.path().join("msp"));
        env.extend(extra_env);
        let node = TestNode::from_profile(&self.profile(), env).await;
        // The MSP folder was read at start.
        drop(msp);
        node
    }
}

/// The channel's blocks as the ledger holds them.
fn stored_blocks(node: &TestNode) -> Vec<Block> {
    let channel = node
        .node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(CHANNEL)
        .expect("channel");
    let store = channel.store();
    (0..store.height())
        .map(|n| store.block(n).expect("readable").expect("stored"))
        .collect()
}

/// Sends one envelope on a stream of its own and returns the answer.
async fn send_one(node: &TestNode, envelope: Envelope) -> (Status, String) {
    let mut client = node.client().await;
    let mut stream = BroadcastStream::open(&mut client).await;
    stream.send(envelope).await;
    let answer = stream.next().await.expect("an answer");
    (
        Status::try_from(answer.status).expect("status"),
        answer.info,
    )
}

fn tx_from(org: &ordo::security::testing::TestIdentity, data: &'static [u8]) -> Envelope {
    org.transaction(CHANNEL, Bytes::from_static(data))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_write_and_strangers_expired_or_tampered_envelopes_are_refused() {
    let network = Network::new();
    let node = network.node(vec![]).await;

    let stranger = TestCa::root("ca.Org1MSP").issue("Org1MSP", "User1@Org1MSP", &[CLIENT_OU]);
    let expired =
        network
            .org1
            .ca
            .issue_with("Org1MSP", "User9@Org1MSP", &[CLIENT_OU], Validity::Expired);
    let mut tampered = tx_from(&network.org1.client, b"tampered");
    let mut payload = tampered.payload.to_vec();
    let last = payload.len() - 1;
    payload[last] ^= 0x01;
    tampered.payload = payload.into();
    let mut high_s = tx_from(&network.org1.client, b"high S");
    high_s.signature = network.org1.client.sign_high_s(&high_s.payload);

    let refused = [
        (
            "stranger",
            tx_from(&stranger, b"stranger"),
            Status::Forbidden,
            "implicit policy evaluation failed - 0 sub-policies were satisfied, but this policy requires 1 of the 'Writers' sub-policies to be satisfied: permission denied",
        ),
        (
            "expired",
            tx_from(&expired, b"expired"),
            Status::BadRequest,
            "broadcast client identity expired",
        ),
        (
            "tampered",
            tampered,
            Status::Forbidden,
            "permission denied",
        ),
        ("high S", high_s, Status::Forbidden, "permission denied"),
        (
            "unsigned",
            ordo::tools::client::envelope::transaction(CHANNEL, Bytes::from_static(b"unsigned")),
            Status::Forbidden,
            "permission denied",
        ),
    ];
    let mut refused_ids = Vec::new();
    for (name, envelope, status, info) in refused {
        refused_ids.push(tx_id_of(&envelope));
        let (got, text) = send_one(&node, envelope).await;
        assert_eq!(got, status, "{name}: {text}");
        assert!(text.contains(info), "{name}: {text}");
    }

    // Members of the application org and of an ordering org write.
    let member = tx_from(&network.org1.client, b"member");
    let orderer = tx_from(&network.orderer2.orderer, b"orderer");
    let accepted = [tx_id_of(&member), tx_id_of(&orderer)];
    for envelope in [member, orderer] {
        let (status, info) = send_one(&node, envelope).await;
        assert_eq!(status, Status::Success, "{info}");
    }
    wait_for_height(&node, CHANNEL, 2).await;
    let blocks = stored_blocks(&node);
    verify_chain(&blocks);
    let written = tx_ids(&blocks);
    assert_eq!(written.len(), 2, "only the members' envelopes: {written:?}");
    for id in accepted {
        assert!(written.contains(&id));
    }
    for id in refused_ids {
        assert!(!written.contains(&id), "a refused envelope was ordered");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_no_expiration_checks_an_expired_member_writes() {
    let network = Network::new();
    let node = network
        .node(vec![(
            "ORDERER_GENERAL_AUTHENTICATION_NOEXPIRATIONCHECKS".into(),
            "true".into(),
        )])
        .await;
    let expired =
        network
            .org1
            .ca
            .issue_with("Org1MSP", "User9@Org1MSP", &[CLIENT_OU], Validity::Expired);
    let (status, info) = send_one(&node, tx_from(&expired, b"late")).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 2).await;
}

fn batch_size_update(
    current: &ChannelConfig,
    count: u32,
) -> ordo::fabric::protos::common::ConfigUpdate {
    let mut updated = current.config.clone();
    let value = updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .and_then(|orderer| orderer.values.get_mut(keys::BATCH_SIZE))
        .expect("batch size");
    let mut size = BatchSize::decode(value.value.clone()).expect("batch size");
    size.max_message_count = count;
    value.value = size.encode_to_vec().into();
    compute_update(CHANNEL, &current.config, &updated).expect("a difference")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_update_needs_a_majority_of_the_orderer_admins() {
    let network = Network::new();
    let node = network.node(vec![]).await;
    let genesis = ChannelConfig::from_config_block(&stored_blocks(&node)[0]).expect("config");
    let update = batch_size_update(&genesis, 7);

    // One admin of two: refused, as Fabric refuses it.
    let one = network.orderer1.admin.as_update_signer(|admin| {
        signed_config_update_envelope(&update, std::slice::from_ref(admin), admin)
    });
    let (status, info) = send_one(&node, one).await;
    assert_eq!(status, Status::BadRequest);
    assert_eq!(
        info,
        "error applying config update to existing channel 'mychannel': error authorizing update: error validating DeltaSet: policy for [Value]  /Channel/Orderer/BatchSize not satisfied: implicit policy evaluation failed - 1 sub-policies were satisfied, but this policy requires 2 of the 'Admins' sub-policies to be satisfied"
    );

    // An application admin is no orderer admin.
    let wrong = network.orderer1.admin.as_update_signer(|a1| {
        network.org1.admin.as_update_signer(|app| {
            signed_config_update_envelope(&update, &[a1.clone(), app.clone()], a1)
        })
    });
    let (status, _) = send_one(&node, wrong).await;
    assert_eq!(status, Status::BadRequest);

    // Submitted by someone who may not write: refused before the update is read.
    let stranger = TestOrg::new("Orderer1MSP");
    let outsider = network.orderer1.admin.as_update_signer(|a1| {
        network.orderer2.admin.as_update_signer(|a2| {
            stranger.admin.as_update_signer(|submitter| {
                signed_config_update_envelope(&update, &[a1.clone(), a2.clone()], submitter)
            })
        })
    });
    let (status, info) = send_one(&node, outsider).await;
    assert_eq!(status, Status::Forbidden, "{info}");
    assert_eq!(node.height(CHANNEL), 1, "nothing was ordered");

    // Both admins: the update applies from the next block on.
    let both = network.orderer1.admin.as_update_signer(|a1| {
        network.orderer2.admin.as_update_signer(|a2| {
            signed_config_update_envelope(&update, &[a1.clone(), a2.clone()], a1)
        })
    });
    let (status, info) = send_one(&node, both).await;
    assert_eq!(status, Status::Success, "{info}");
    wait_for_height(&node, CHANNEL, 2).await;
    let blocks = stored_blocks(&node);
    assert!(blockutil::is_config_block(&blocks[1]));
    let next = ChannelConfig::from_config_block(&blocks[1]).expect("config");
    assert_eq!(next.sequence, 1);
    assert_eq!(next.batch_size.max_message_count, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_channels_organizations_changes_no_config() {
    let network = Network::new();
    // The node signs with an identity of its own CA, a member of no
    // organization of the channel: its CONFIG envelope fails Writers.
    let node = TestNode::from_profile(&network.profile(), vec![]).await;
    let genesis = ChannelConfig::from_config_block(&stored_blocks(&node)[0]).expect("config");
    let update = batch_size_update(&genesis, 7);
    let both = network.orderer1.admin.as_update_signer(|a1| {
        network.orderer2.admin.as_update_signer(|a2| {
            signed_config_update_envelope(&update, &[a1.clone(), a2.clone()], a1)
        })
    });
    let (status, info) = send_one(&node, both).await;
    assert_eq!(status, Status::Forbidden, "{info}");
    assert!(
        info.starts_with("config update for existing channel did not pass final checks: "),
        "{info}"
    );
    assert_eq!(node.height(CHANNEL), 1, "nothing was ordered");
}
