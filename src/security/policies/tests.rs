use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use prost::Message;

use super::*;
use crate::fabric::channelconfig::genesis::GenesisProfile;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtxgen::policydsl;
use crate::fabric::protos::common::{
    implicit_meta_policy::Rule, msp_principal::Classification, policy::PolicyType,
    signature_policy, ConfigGroup, ConfigPolicy, ConfigSignature, Header, ImplicitMetaPolicy,
    MspPrincipal, OrganizationUnit, Policy, SignaturePolicy, SignaturePolicyEnvelope,
};
use crate::security::msp::MspManager;
use crate::security::testing::{TestIdentity, TestOrg, CLIENT_OU};

thread_local! {
    /// Signature verifications done on this thread (counted by the manager).
    pub(super) static VERIFICATIONS: Cell<usize> = const { Cell::new(0) };
}

fn verifications() -> usize {
    VERIFICATIONS.with(Cell::get)
}

fn config_policy(policy_type: PolicyType, value: Vec<u8>) -> ConfigPolicy {
    ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: policy_type as i32,
            value: value.into(),
        }),
        mod_policy: "Admins".into(),
    }
}

fn signature(rule: &str) -> ConfigPolicy {
    let envelope = policydsl::parse(rule).expect("policy");
    config_policy(PolicyType::Signature, envelope.encode_to_vec())
}

fn implicit(sub_policy: &str, rule: Rule) -> ConfigPolicy {
    let meta = ImplicitMetaPolicy {
        sub_policy: sub_policy.into(),
        rule: rule as i32,
    };
    config_policy(PolicyType::ImplicitMeta, meta.encode_to_vec())
}

fn group(policies: Vec<(&str, ConfigPolicy)>, groups: Vec<(String, ConfigGroup)>) -> ConfigGroup {
    ConfigGroup {
        version: 0,
        groups: groups.into_iter().collect(),
        values: HashMap::new(),
        policies: policies
            .into_iter()
            .map(|(name, p)| (name.to_string(), p))
            .collect(),
        mod_policy: "Admins".into(),
    }
}

fn msps(orgs: &[&TestOrg]) -> Arc<MspManager> {
    let configs: Vec<_> = orgs.iter().map(|o| o.msp_config()).collect();
    Arc::new(MspManager::new(&configs).expect("MSPs"))
}

/// A manager whose `/Channel/Test` is `policy`.
fn single(policy: ConfigPolicy, orgs: &[&TestOrg]) -> PolicyManager {
    PolicyManager::new(&group(vec![("Test", policy)], vec![]), msps(orgs)).expect("compiles")
}

fn signed(identity: &TestIdentity, data: &[u8]) -> SignedData {
    SignedData {
        data: Bytes::copy_from_slice(data),
        identity: identity.creator(),
        signature: identity.sign(data),
    }
}

fn signers(identities: &[&TestIdentity]) -> Vec<SignedData> {
    identities.iter().map(|i| signed(i, b"update")).collect()
}

const TEST: &str = "/Channel/Test";

#[test]
fn nested_n_out_of_counts_each_signer_once_and_in_order() {
    let org1 = TestOrg::new("Org1MSP");
    let org2 = TestOrg::new("Org2MSP");
    let manager = single(
        signature(
            "OutOf(2, 'Org1MSP.admin', AND('Org2MSP.member', 'Org2MSP.peer'), 'Org1MSP.client')",
        ),
        &[&org1, &org2],
    );
    let check = |who: &[&TestIdentity]| manager.evaluate_signed_data(TEST, &signers(who));
    check(&[&org1.admin, &org1.client]).expect("two of three");
    check(&[&org1.admin, &org2.client, &org2.peer]).expect("admin and the AND");
    assert_eq!(
        check(&[&org1.admin]),
        Err(PolicyError::SignatureSetNotSatisfied)
    );
    // The peer alone is a member and a peer, but counts once.
    assert!(check(&[&org1.admin, &org2.peer]).is_err());
    // Greedy, in the order of the signatures, as Fabric evaluates: the peer
    // signing first is taken as the member, and the client is no peer.
    assert!(check(&[&org1.admin, &org2.peer, &org2.client]).is_err());
    assert!(check(&[]).is_err());
}

#[test]
fn a_signer_counts_once_however_often_it_signs() {
    let org = TestOrg::new("Org1MSP");
    let manager = single(
        signature("AND('Org1MSP.member', 'Org1MSP.member')"),
        &[&org],
    );
    let twice = signers(&[&org.client, &org.client]);
    assert_eq!(
        manager.evaluate_signed_data(TEST, &twice),
        Err(PolicyError::SignatureSetNotSatisfied)
    );
    // The same certificate under two different serializations is one signer.
    let mut reencoded = signed(&org.client, b"update");
    let pem = String::from_utf8(org.client.certificate_pem().to_vec()).expect("PEM");
    reencoded.identity = crate::fabric::protos::msp::SerializedIdentity {
        mspid: "Org1MSP".into(),
        id_bytes: format!("{pem}\n").into_bytes().into(),
    }
    .encode_to_vec()
    .into();
    let again = vec![signed(&org.client, b"update"), reencoded];
    assert!(manager.evaluate_signed_data(TEST, &again).is_err());
    manager
        .evaluate_signed_data(TEST, &signers(&[&org.client, &org.peer]))
        .expect("two members");
}

#[test]
fn a_signature_that_does_not_verify_counts_for_nothing() {
    let org = TestOrg::new("Org1MSP");
    let manager = single(signature("OR('Org1MSP.member')"), &[&org]);
    let mut tampered = signed(&org.client, b"update");
    tampered.data = Bytes::from_static(b"updatE");
    assert!(manager
        .evaluate_signed_data(TEST, std::slice::from_ref(&tampered))
        .is_err());
    let mut high_s = signed(&org.client, b"update");
    high_s.signature = org.client.sign_high_s(b"update");
    assert!(manager.evaluate_signed_data(TEST, &[high_s]).is_err());
    // A bad signature first does not hide the same signer's good one, nor another's.
    manager
        .evaluate_signed_data(TEST, &[tampered.clone(), signed(&org.client, b"update")])
        .expect("the good one counts");
    manager
        .evaluate_signed_data(TEST, &[tampered, signed(&org.peer, b"update")])
        .expect("another member");
    // A stranger, and garbage, count for nothing.
    let stranger = TestOrg::new("Org1MSP");
    assert!(manager
        .evaluate_signed_data(TEST, &signers(&[&stranger.client]))
        .is_err());
    let garbage = SignedData {
        data: Bytes::from_static(b"x"),
        identity: Bytes::from_static(b"\xff\xff"),
        signature: Bytes::new(),
    };
    assert!(manager.evaluate_signed_data(TEST, &[garbage]).is_err());
}

#[test]
fn identity_and_organization_unit_principals() {
    let org = TestOrg::new("Org1MSP");
    let client_only = MspPrincipal {
        principal_classification: Classification::Identity as i32,
        principal: org.client.creator(),
    };
    let in_client_ou = MspPrincipal {
        principal_classification: Classification::OrganizationUnit as i32,
        principal: OrganizationUnit {
            msp_identifier: "Org1MSP".into(),
            organizational_unit_identifier: CLIENT_OU.into(),
            certifiers_identifier: {
                use sha2::Digest;
                sha2::Sha256::digest(org.ca.der()).to_vec().into()
            },
        }
        .encode_to_vec()
        .into(),
    };
    for principal in [client_only, in_client_ou] {
        let envelope = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(SignaturePolicy {
                r#type: Some(signature_policy::Type::SignedBy(0)),
            }),
            identities: vec![principal],
        };
        let manager = single(
            config_policy(PolicyType::Signature, envelope.encode_to_vec()),
            &[&org],
        );
        manager
            .evaluate_signed_data(TEST, &signers(&[&org.client]))
            .expect("the client");
        assert!(manager
            .evaluate_signed_data(TEST, &signers(&[&org.admin, &org.peer]))
            .is_err());
    }
}

#[test]
fn implicit_meta_any_all_majority_over_child_groups() {
    let orgs: Vec<TestOrg> = ["Org1MSP", "Org2MSP", "Org3MSP"]
        .into_iter()
        .map(TestOrg::new)
        .collect();
    let children = orgs
        .iter()
        .map(|o| {
            let admins = signature(&format!("OR('{}.admin')", o.msp_id));
            (o.name.clone(), group(vec![("Admins", admins)], vec![]))
        })
        .collect();
    let root = group(
        vec![
            ("Any", implicit("Admins", Rule::Any)),
            ("All", implicit("Admins", Rule::All)),
            ("Majority", implicit("Admins", Rule::Majority)),
            ("Missing", implicit("Nothing", Rule::Any)),
        ],
        children,
    );
    let refs: Vec<&TestOrg> = orgs.iter().collect();
    let manager = PolicyManager::new(&root, msps(&refs)).expect("compiles");
    let admins = |n: usize| -> Vec<SignedData> {
        orgs[..n].iter().map(|o| signed(&o.admin, b"u")).collect()
    };
    let eval = |policy: &str, n: usize| manager.evaluate_signed_data(policy, &admins(n));

    assert!(eval("/Channel/Any", 0).is_err());
    eval("/Channel/Any", 1).expect("any");
    assert_eq!(
        eval("/Channel/Majority", 1),
        Err(PolicyError::ImplicitMetaNotSatisfied {
            satisfied: 1,
            required: 2,
            sub_policy: "Admins".into()
        })
    );
    assert_eq!(
        eval("/Channel/Majority", 1).expect_err("one of three").to_string(),
        "implicit policy evaluation failed - 1 sub-policies were satisfied, but this policy requires 2 of the 'Admins' sub-policies to be satisfied"
    );
    eval("/Channel/Majority", 2).expect("two of three");
    assert!(eval("/Channel/All", 2).is_err());
    eval("/Channel/All", 3).expect("all three");
    // A child without the sub-policy counts, and is never satisfied.
    assert_eq!(
        eval("/Channel/Missing", 3),
        Err(PolicyError::ImplicitMetaNotSatisfied {
            satisfied: 0,
            required: 1,
            sub_policy: "Nothing".into()
        })
    );
    assert_eq!(
        eval("/Channel/Nope", 3),
        Err(PolicyError::NoSuchPolicy("/Channel/Nope".into()))
    );
    assert!(manager.exists("/Channel/Org2MSP/Admins"));
    assert!(!manager.exists("/Channel/Org2MSP/Writers"));
}

#[test]
fn implicit_meta_without_child_groups_needs_no_signature() {
    let root = group(
        vec![
            ("Any", implicit("Writers", Rule::Any)),
            ("All", implicit("Writers", Rule::All)),
            ("Majority", implicit("Admins", Rule::Majority)),
        ],
        vec![],
    );
    let manager = PolicyManager::new(&root, Arc::new(MspManager::empty())).expect("compiles");
    let before = verifications();
    for policy in ["/Channel/Any", "/Channel/All", "/Channel/Majority"] {
        manager
            .evaluate_signed_data(policy, &[])
            .expect("threshold 0");
        let garbage = SignedData {
            data: Bytes::new(),
            identity: Bytes::from_static(b"junk"),
            signature: Bytes::new(),
        };
        manager
            .evaluate_signed_data(policy, &[garbage])
            .expect("nothing is read");
    }
    assert_eq!(verifications(), before);
}

#[test]
fn each_signature_is_verified_once_per_evaluation() {
    let orgs: Vec<TestOrg> = ["Org1MSP", "Org2MSP", "Org3MSP"]
        .into_iter()
        .map(TestOrg::new)
        .collect();
    let children = orgs
        .iter()
        .map(|o| {
            let admins = signature(&format!("OR('{}.admin')", o.msp_id));
            (o.name.clone(), group(vec![("Admins", admins)], vec![]))
        })
        .collect();
    let root = group(vec![("Admins", implicit("Admins", Rule::All))], children);
    let refs: Vec<&TestOrg> = orgs.iter().collect();
    let manager = PolicyManager::new(&root, msps(&refs)).expect("compiles");
    let all: Vec<SignedData> = orgs.iter().map(|o| signed(&o.admin, b"u")).collect();
    let before = verifications();
    manager
        .evaluate_signed_data("/Channel/Admins", &all)
        .expect("all three admins");
    // Three sub-policies read the three signatures: three verifications, not nine.
    assert_eq!(verifications() - before, 3);
}

#[test]
fn policies_that_do_not_compile_make_the_config_invalid() {
    let org = TestOrg::new("Org1MSP");
    let compile = |policy: ConfigPolicy| {
        PolicyManager::new(&group(vec![("Bad", policy)], vec![]), msps(&[&org]))
            .expect_err("refused")
            .to_string()
    };
    let mut versioned = policydsl::parse("OR('Org1MSP.member')").expect("parse");
    versioned.version = 1;
    assert!(compile(config_policy(
        PolicyType::Signature,
        versioned.encode_to_vec()
    ))
    .contains("only understands messages of version 0"));
    let out_of_range = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(SignaturePolicy {
            r#type: Some(signature_policy::Type::SignedBy(3)),
        }),
        identities: vec![],
    };
    assert!(compile(config_policy(
        PolicyType::Signature,
        out_of_range.encode_to_vec()
    ))
    .contains("identity index out of range, requested 3, but identities length is 0"));
    assert!(
        compile(config_policy(PolicyType::Signature, b"\xff\xff".to_vec()))
            .contains("/Channel/Bad")
    );
    assert!(compile(config_policy(PolicyType::Msp, vec![])).contains("unknown policy type"));
    let mut nil = signature("OR('Org1MSP.member')");
    nil.policy = None;
    assert!(compile(nil).contains("nil"));

    // A principal that does not decode is never satisfied, but compiles.
    let undecodable = SignaturePolicyEnvelope {
        version: 0,
        rule: Some(SignaturePolicy {
            r#type: Some(signature_policy::Type::SignedBy(0)),
        }),
        identities: vec![MspPrincipal {
            principal_classification: Classification::Role as i32,
            principal: Bytes::from_static(b"\xff\xff"),
        }],
    };
    let manager = single(
        config_policy(PolicyType::Signature, undecodable.encode_to_vec()),
        &[&org],
    );
    assert!(manager
        .evaluate_signed_data(TEST, &signers(&[&org.admin]))
        .is_err());
}

#[test]
fn a_channel_with_organizations_has_writers_from_every_org() {
    let orderer_org = TestOrg::new("OrdererMSP");
    let app_org = TestOrg::new("Org1MSP");
    let mut profile = GenesisProfile::embedded("c1", vec![]);
    profile.orderer_organizations = vec![orderer_org.profile()];
    profile.application_organizations = Some(vec![app_org.profile()]);
    let config = ChannelConfig::from_config_block(&profile.genesis_block()).expect("config");
    let policies = &config.policy_manager;
    let as_writer = |who: &TestIdentity, path: &str| {
        let envelope = who.transaction("c1", Bytes::from_static(b"tx"));
        policies.evaluate_signed_data(path, &envelope_as_signed_data(&envelope).expect("signed"))
    };
    as_writer(&app_org.client, CHANNEL_WRITERS).expect("an application member");
    as_writer(&orderer_org.orderer, CHANNEL_WRITERS).expect("an orderer member");
    as_writer(&orderer_org.orderer, CHANNEL_ORDERER_WRITERS).expect("orderer writers");
    assert!(as_writer(&app_org.client, CHANNEL_ORDERER_WRITERS).is_err());
    assert!(as_writer(&TestOrg::new("Org1MSP").client, CHANNEL_WRITERS).is_err());
    assert!(policies.exists(BLOCK_VALIDATION));
    assert_eq!(
        config.msp_manager.msp_ids(),
        vec!["OrdererMSP".to_string(), "Org1MSP".to_string()]
    );
}

#[test]
fn signed_data_of_envelopes_and_config_updates() {
    let org = TestOrg::new("Org1MSP");
    let envelope = org.client.transaction("c1", Bytes::from_static(b"tx"));
    let signed = envelope_as_signed_data(&envelope).expect("signed data");
    assert_eq!(
        signed,
        vec![SignedData {
            data: envelope.payload.clone(),
            identity: org.client.creator(),
            signature: envelope.signature.clone(),
        }]
    );
    let no_header = Envelope {
        payload: crate::fabric::protos::common::Payload::default()
            .encode_to_vec()
            .into(),
        signature: Bytes::new(),
    };
    assert_eq!(
        envelope_as_signed_data(&no_header),
        Err(PolicyError::Malformed("Missing Header".into()))
    );
    let bad_signature_header = Envelope {
        payload: crate::fabric::protos::common::Payload {
            header: Some(Header {
                channel_header: Bytes::new(),
                signature_header: Bytes::from_static(b"\xff\xff"),
            }),
            data: Bytes::new(),
        }
        .encode_to_vec()
        .into(),
        signature: Bytes::new(),
    };
    assert!(envelope_as_signed_data(&bad_signature_header).is_err());

    let header = crate::fabric::protos::common::SignatureHeader {
        creator: org.admin.creator(),
        nonce: Bytes::from_static(b"nonce"),
    }
    .encode_to_vec();
    let update = ConfigUpdateEnvelope {
        config_update: Bytes::from_static(b"the update"),
        signatures: vec![ConfigSignature {
            signature_header: header.clone().into(),
            signature: Bytes::from_static(b"sig"),
        }],
    };
    let signed = config_update_as_signed_data(&update).expect("signed data");
    let mut data = header;
    data.extend_from_slice(b"the update");
    assert_eq!(signed[0].data, Bytes::from(data));
    assert_eq!(signed[0].identity, org.admin.creator());
}
