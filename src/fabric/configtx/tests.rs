use super::compute::{compute_update, config_update_envelope};
use super::*;
use crate::fabric::channelconfig::genesis::GenesisProfile;
use crate::fabric::protos::common::{ConfigGroup, ConfigValue};
use crate::fabric::protos::orderer::{BatchSize, ConsensusType};

fn current() -> ChannelConfig {
    let block =
        GenesisProfile::embedded("mychannel", vec!["127.0.0.1:7050".into()]).genesis_block();
    ChannelConfig::from_config_block(&block).expect("genesis")
}

fn orderer_mut(config: &mut Config) -> &mut ConfigGroup {
    config
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::ORDERER_GROUP))
        .expect("orderer group")
}

fn set_value(config: &mut Config, key: &str, message: &impl Message) {
    let orderer = orderer_mut(config);
    let value = orderer
        .values
        .entry(key.to_string())
        .or_insert(ConfigValue {
            version: 0,
            value: Bytes::new(),
            mod_policy: keys::ADMINS.into(),
        });
    value.value = message.encode_to_vec().into();
}

fn batch_size(max_message_count: u32) -> BatchSize {
    BatchSize {
        max_message_count,
        absolute_max_bytes: 10 * 1024 * 1024,
        preferred_max_bytes: 2 * 1024 * 1024,
    }
}

/// The update that changes MaxMessageCount of `from` to `count`.
fn batch_update(from: &ChannelConfig, count: u32) -> ConfigUpdate {
    let mut updated = from.config.clone();
    set_value(&mut updated, keys::BATCH_SIZE, &batch_size(count));
    compute_update(&from.channel_id, &from.config, &updated).expect("a difference")
}

/// Accepts every modification: for checks that do not depend on signatures.
struct AnySignatures;

impl PolicyEvaluator for AnySignatures {
    fn evaluate(
        &self,
        _: &ChannelConfig,
        _: &[String],
        _: &[SignedData],
    ) -> Result<(), crate::security::policies::PolicyError> {
        Ok(())
    }
}

fn propose(
    from: &ChannelConfig,
    update: &ConfigUpdate,
) -> Result<ProposedConfig, ConfigUpdateError> {
    propose_config_update(from, &config_update_envelope(update), &ChannelPolicies)
}

#[test]
fn a_batch_size_update_makes_the_next_config() {
    let from = current();
    let update = batch_update(&from, 10);
    let proposed = propose(&from, &update).expect("valid update");
    assert_eq!(proposed.config.sequence, 1);
    assert_eq!(proposed.config.batch_size.max_message_count, 10);
    assert_eq!(proposed.config.batch_timeout, from.batch_timeout);

    // The CONFIG envelope carries the new config and the update it came from.
    let again = ChannelConfig::from_config_envelope(&proposed.envelope).expect("config envelope");
    assert_eq!(again.batch_size.max_message_count, 10);
    assert_eq!(again.sequence, 1);
    let last = last_update(&proposed.envelope.encode_to_vec().into()).expect("last update");
    let update_of = |e: &Envelope| {
        let payload = Payload::decode(e.payload.clone()).expect("payload");
        let inner = ConfigUpdateEnvelope::decode(payload.data).expect("update envelope");
        ConfigUpdate::decode(inner.config_update).expect("update")
    };
    assert_eq!(update_of(&last), update);

    // Only BatchSize moved to version 1; the groups above it kept theirs.
    let orderer = &proposed
        .config
        .config
        .channel_group
        .as_ref()
        .expect("root")
        .groups["Orderer"];
    assert_eq!(orderer.version, 0);
    assert_eq!(orderer.values["BatchSize"].version, 1);
    assert_eq!(orderer.values["BatchTimeout"].version, 0);
}

#[test]
fn unknown_values_are_carried_forward() {
    let mut from = current();
    let orderer = orderer_mut(&mut from.config);
    orderer.values.insert(
        "SomethingNew".into(),
        ConfigValue {
            version: 3,
            value: Bytes::from_static(b"opaque"),
            mod_policy: keys::ADMINS.into(),
        },
    );
    let proposed = propose(&from, &batch_update(&from, 10)).expect("valid update");
    let orderer = &proposed
        .config
        .config
        .channel_group
        .as_ref()
        .expect("root")
        .groups["Orderer"];
    assert_eq!(
        orderer.values["SomethingNew"].value,
        Bytes::from_static(b"opaque")
    );
    assert_eq!(orderer.values["SomethingNew"].version, 3);
}

#[test]
fn a_stale_read_set_is_refused() {
    let from = current();
    let mut update = batch_update(&from, 10);
    // Name the value being changed in the read set, at its version now.
    let read_orderer = update
        .read_set
        .as_mut()
        .and_then(|r| r.groups.get_mut("Orderer"))
        .expect("read orderer");
    read_orderer.values.insert(
        "BatchSize".into(),
        ConfigValue {
            version: 0,
            ..ConfigValue::default()
        },
    );
    let next = propose(&from, &update)
        .expect("valid the first time")
        .config;
    let err = propose(&next, &update).expect_err("stale");
    assert_eq!(
        err,
        ConfigUpdateError::StaleRead {
            key: "[Value]  /Channel/Orderer/BatchSize".into(),
            wanted: 0,
            actual: 1
        }
    );
    assert!(err.to_string().contains("at version 1"), "{err}");
}

#[test]
fn versions_must_go_up_by_exactly_one() {
    let from = current();
    let mut update = batch_update(&from, 10);
    let value = update
        .write_set
        .as_mut()
        .and_then(|w| w.groups.get_mut("Orderer"))
        .and_then(|o| o.values.get_mut("BatchSize"))
        .expect("written value");
    value.version = 2;
    let err = propose(&from, &update).expect_err("jump");
    assert!(
        matches!(
            err,
            ConfigUpdateError::VersionJump {
                proposed: 2,
                current: 0,
                ..
            }
        ),
        "{err}"
    );
    // Applying the same update twice is a jump too: 1 is not above 1.
    let update = batch_update(&from, 10);
    let next = propose(&from, &update).expect("first").config;
    assert!(matches!(
        propose(&next, &update),
        Err(ConfigUpdateError::VersionJump { .. })
    ));
}

#[test]
fn unknown_groups_are_refused() {
    let from = current();
    // Read set naming a group that does not exist.
    let mut update = batch_update(&from, 10);
    update
        .read_set
        .as_mut()
        .expect("read set")
        .groups
        .insert("Nowhere".into(), ConfigGroup::default());
    let err = propose(&from, &update).expect_err("unknown");
    assert_eq!(
        err,
        ConfigUpdateError::ReadMissing("[Group]  /Channel/Nowhere".into())
    );

    // A new group without changing /Channel.
    let mut update = batch_update(&from, 10);
    update.write_set.as_mut().expect("write set").groups.insert(
        "Extra".into(),
        ConfigGroup {
            mod_policy: keys::ADMINS.into(),
            ..ConfigGroup::default()
        },
    );
    let err = propose(&from, &update).expect_err("parent unchanged");
    assert!(
        matches!(err, ConfigUpdateError::ParentUnchanged { .. }),
        "{err}"
    );

    // A new group with /Channel changed: not a group a channel may have.
    let mut updated = from.config.clone();
    updated.channel_group.as_mut().expect("root").groups.insert(
        "Extra".into(),
        ConfigGroup {
            mod_policy: keys::ADMINS.into(),
            ..ConfigGroup::default()
        },
    );
    let update = compute_update("mychannel", &from.config, &updated).expect("difference");
    assert_eq!(
        propose(&from, &update).expect_err("unknown group"),
        ConfigUpdateError::UnknownGroup("/Channel/Extra".into())
    );
}

#[test]
fn garbage_and_foreign_updates_are_refused() {
    let from = current();
    let mut envelope = config_update_envelope(&batch_update(&from, 10));
    let mut payload = Payload::decode(envelope.payload.clone()).expect("payload");
    payload.data = Bytes::from_static(b"\xff\xff\xff garbage");
    envelope.payload = payload.encode_to_vec().into();
    let err = propose_config_update(&from, &envelope, &ChannelPolicies).expect_err("garbage");
    assert!(err.to_string().contains("ConfigUpdateEnvelope"), "{err}");

    let mut update = batch_update(&from, 10);
    update.channel_id = "other".into();
    assert!(matches!(
        propose(&from, &update),
        Err(ConfigUpdateError::WrongChannel { .. })
    ));
}

#[test]
fn updates_that_change_nothing_or_break_the_config_are_refused() {
    let from = current();
    let mut update = batch_update(&from, 10);
    update.write_set = update.read_set.clone();
    assert_eq!(
        propose(&from, &update).expect_err("empty"),
        ConfigUpdateError::EmptyDelta
    );

    let err = propose(&from, &batch_update(&from, 0)).expect_err("invalid");
    assert!(err.to_string().contains("MaxMessageCount"), "{err}");

    let mut updated = from.config.clone();
    set_value(
        &mut updated,
        keys::CONSENSUS_TYPE,
        &ConsensusType {
            r#type: "kafka".into(),
            ..ConsensusType::default()
        },
    );
    let update = compute_update("mychannel", &from.config, &updated).expect("difference");
    assert_eq!(
        propose(&from, &update).expect_err("type change"),
        ConfigUpdateError::Maintenance(
            "attempted to change consensus type from solo to kafka, but current config \
             ConsensusType.State is not in maintenance mode"
                .into()
        )
    );
}

/// `from` with ConsensusType set to `kind` in `state`, as the next config.
fn with_consensus(from: &Config, kind: &str, state: i32) -> Config {
    let mut updated = from.clone();
    set_value(
        &mut updated,
        keys::CONSENSUS_TYPE,
        &ConsensusType {
            r#type: kind.into(),
            state,
            ..ConsensusType::default()
        },
    );
    updated
}

fn update_to(from: &ChannelConfig, updated: &Config) -> ConfigUpdate {
    compute_update(&from.channel_id, &from.config, updated).expect("difference")
}

const MAINTENANCE: i32 = 1;

#[test]
fn maintenance_mode_is_entered_and_left_with_nothing_else_changing() {
    let normal = current();
    // Entering together with another change is refused.
    let both = with_consensus(&with_batch(&normal.config, 10), "solo", MAINTENANCE);
    assert_eq!(
        propose(&normal, &update_to(&normal, &both)).expect_err("two changes"),
        ConfigUpdateError::Maintenance(
            "config update contain more then just the ConsensusType value in the Orderer group"
                .into()
        )
    );
    // Entering alone is accepted.
    let enter = with_consensus(&normal.config, "solo", MAINTENANCE);
    let maintenance = propose(&normal, &update_to(&normal, &enter))
        .expect("enter maintenance")
        .config;
    assert_eq!(
        maintenance.orderer.consensus_state,
        crate::fabric::channelconfig::ConsensusState::Maintenance
    );
    // In maintenance mode any other authorised change is allowed.
    let tuned = propose(&maintenance, &batch_update(&maintenance, 20))
        .expect("a change in maintenance")
        .config;
    // A consensus-type change there: Fabric's target list first, then this
    // orderer's refusal to switch a running channel's consenter.
    let kafka = with_consensus(&tuned.config, "kafka", MAINTENANCE);
    assert_eq!(
        propose(&tuned, &update_to(&tuned, &kafka)).expect_err("kafka"),
        ConfigUpdateError::Maintenance(
            "attempted to change consensus type from solo to kafka, transition not supported"
                .into()
        )
    );
    let mut raft = with_consensus(&tuned.config, "etcdraft", MAINTENANCE);
    set_value(
        &mut raft,
        keys::CONSENSUS_TYPE,
        &ConsensusType {
            r#type: "etcdraft".into(),
            state: MAINTENANCE,
            metadata: crate::fabric::protos::etcdraft::ConfigMetadata {
                consenters: vec![crate::fabric::protos::etcdraft::Consenter {
                    host: "127.0.0.1".into(),
                    port: 7050,
                    ..Default::default()
                }],
                ..Default::default()
            }
            .encode_to_vec()
            .into(),
        },
    );
    assert!(matches!(
        propose(&tuned, &update_to(&tuned, &raft)),
        Err(ConfigUpdateError::MigrationUnsupported { .. })
    ));
    // Leaving while changing the type is refused; leaving alone is accepted.
    let leave_as_kafka = with_consensus(&tuned.config, "kafka", 0);
    let err = propose(&tuned, &update_to(&tuned, &leave_as_kafka)).expect_err("type and state");
    assert_eq!(
        err,
        ConfigUpdateError::Maintenance(
            "attempted to change ConsensusType.Type from solo to kafka, but ConsensusType.State \
             is changing from STATE_MAINTENANCE to STATE_NORMAL"
                .into()
        )
    );
    let leave = with_consensus(&tuned.config, "solo", 0);
    let back = propose(&tuned, &update_to(&tuned, &leave))
        .expect("leave maintenance")
        .config;
    assert_eq!(
        back.orderer.consensus_state,
        crate::fabric::channelconfig::ConsensusState::Normal
    );
    assert_eq!(back.batch_size.max_message_count, 20);
}

#[test]
fn without_the_migration_capability_the_type_and_state_stay() {
    let mut from = current();
    orderer_mut(&mut from.config)
        .values
        .remove(keys::CAPABILITIES);
    let from = ChannelConfig::from_config(from.channel_id.clone(), from.config).expect("config");
    let enter = with_consensus(&from.config, "solo", MAINTENANCE);
    assert_eq!(
        propose(&from, &update_to(&from, &enter)).expect_err("no capability"),
        ConfigUpdateError::Maintenance(
            "next config attempted to change ConsensusType.State to STATE_MAINTENANCE, but \
             capability is disabled"
                .into()
        )
    );
    let kafka = with_consensus(&from.config, "kafka", 0);
    let err = propose(&from, &update_to(&from, &kafka)).expect_err("no capability");
    assert_eq!(
        err.to_string(),
        "attempted to change consensus type from solo to kafka"
    );
}

#[test]
fn unsupported_capabilities_are_not_compatible() {
    let from = current();
    let mut updated = from.config.clone();
    set_value(
        &mut updated,
        keys::CAPABILITIES,
        &crate::fabric::protos::common::Capabilities {
            capabilities: [(
                "V9_9".to_string(),
                crate::fabric::protos::common::Capability {},
            )]
            .into(),
        },
    );
    let err = propose(&from, &update_to(&from, &updated)).expect_err("unsupported");
    assert_eq!(
        err.to_string(),
        "config update is not compatible: config requires unsupported orderer capabilities: \
         Orderer capability V9_9 is required but not supported: Orderer capability V9_9 is \
         required but not supported"
    );
}

#[test]
fn names_and_mod_policies_must_be_fabric_ids_and_paths() {
    let from = current();
    let mut updated = from.config.clone();
    orderer_mut(&mut updated).values.insert(
        "Bad Name".into(),
        ConfigValue {
            version: 0,
            value: Bytes::from_static(b"x"),
            mod_policy: keys::ADMINS.into(),
        },
    );
    assert_eq!(
        propose(&from, &update_to(&from, &updated))
            .expect_err("illegal name")
            .to_string(),
        "error authorizing update: error mapping WriteSet: illegal characters in key: [Value]  : \
         config ID 'Bad Name' contains illegal characters"
    );

    let mut updated = from.config.clone();
    orderer_mut(&mut updated)
        .values
        .get_mut(keys::BATCH_SIZE)
        .expect("batch size")
        .mod_policy = "/Channel//Admins".into();
    assert_eq!(
        propose(&from, &update_to(&from, &updated))
            .expect_err("bad mod_policy")
            .to_string(),
        "error authorizing update: error validating DeltaSet: invalid mod_policy for element \
         [Value]  /Channel/Orderer/BatchSize: path element at 1 is invalid: config ID illegal, \
         cannot be empty"
    );
}

#[test]
fn an_organization_keeps_its_msp_id() {
    let from = current();
    let mut updated = from.config.clone();
    let org = ConfigGroup {
        mod_policy: keys::ADMINS.into(),
        values: [(
            keys::MSP.to_string(),
            ConfigValue {
                version: 0,
                value: msp_value("Org1MSP"),
                mod_policy: "/Channel/Orderer/Admins".into(),
            },
        )]
        .into(),
        ..ConfigGroup::default()
    };
    orderer_mut(&mut updated)
        .groups
        .insert("OrdererOrg".into(), org);
    let with_org = propose(&from, &update_to(&from, &updated))
        .expect("org added")
        .config;
    let mut renamed = with_org.config.clone();
    orderer_mut(&mut renamed)
        .groups
        .get_mut("OrdererOrg")
        .expect("org")
        .values
        .get_mut(keys::MSP)
        .expect("msp")
        .value = msp_value("OtherMSP");
    // Signed or not, a renamed MSP is refused: the check is not a policy's.
    assert_eq!(
        propose_config_update(
            &with_org,
            &config_update_envelope(&update_to(&with_org, &renamed)),
            &AnySignatures,
        )
        .expect_err("renamed")
        .to_string(),
        "orderer org OrdererOrg attempted to change MSP ID from Org1MSP to OtherMSP"
    );
}

/// A valid MSP of MSP ID `name` (the channel config sets every MSP up).
fn msp_value(name: &str) -> Bytes {
    crate::security::testing::TestOrg::new(name)
        .msp_config()
        .encode_to_vec()
        .into()
}

fn with_batch(config: &Config, count: u32) -> Config {
    let mut updated = config.clone();
    set_value(&mut updated, keys::BATCH_SIZE, &batch_size(count));
    updated
}

#[test]
fn modification_policies_must_be_named_and_exist() {
    let from = current();
    let mut updated = from.config.clone();
    let orderer = orderer_mut(&mut updated);
    orderer.values.insert(
        "NoPolicy".into(),
        ConfigValue {
            version: 0,
            value: Bytes::from_static(b"x"),
            mod_policy: String::new(),
        },
    );
    let update = compute_update("mychannel", &from.config, &updated).expect("difference");
    assert!(matches!(
        propose(&from, &update),
        Err(ConfigUpdateError::NoModPolicy { .. })
    ));

    let mut from = current();
    orderer_mut(&mut from.config)
        .values
        .get_mut(keys::BATCH_SIZE)
        .expect("batch size")
        .mod_policy = "/Channel/Orderer/Missing".into();
    let err = propose(&from, &batch_update(&from, 10)).expect_err("missing policy");
    assert!(
        err.to_string()
            .contains("unexpected missing policy /Channel/Orderer/Missing for item [Value]  /Channel/Orderer/BatchSize"),
        "{err}"
    );
}

#[test]
fn adding_an_organization_bumps_its_parent_group() {
    let from = current();
    let mut updated = from.config.clone();
    orderer_mut(&mut updated).groups.insert(
        "OrdererOrg".into(),
        ConfigGroup {
            mod_policy: keys::ADMINS.into(),
            ..ConfigGroup::default()
        },
    );
    let update = compute_update("mychannel", &from.config, &updated).expect("difference");
    let proposed = propose(&from, &update).expect("valid");
    let orderer = &proposed
        .config
        .config
        .channel_group
        .as_ref()
        .expect("root")
        .groups["Orderer"];
    assert_eq!(orderer.version, 1);
    assert!(orderer.groups.contains_key("OrdererOrg"));
    assert_eq!(
        orderer.values.len(),
        from.config.channel_group.as_ref().expect("root").groups["Orderer"]
            .values
            .len()
    );
}

/// A channel whose Orderer group has two organizations: changing BatchSize
/// (mod_policy Admins of the Orderer group: MAJORITY of the orgs' Admins)
/// needs both admins.
fn two_org_channel() -> (
    ChannelConfig,
    crate::security::testing::TestOrg,
    crate::security::testing::TestOrg,
) {
    let org1 = crate::security::testing::TestOrg::new("Orderer1MSP");
    let org2 = crate::security::testing::TestOrg::new("Orderer2MSP");
    let mut profile = GenesisProfile::embedded("mychannel", vec![]);
    profile.orderer_organizations = vec![org1.profile(), org2.profile()];
    let config = ChannelConfig::from_config_block(&profile.genesis_block()).expect("genesis");
    (config, org1, org2)
}

#[test]
fn a_config_update_needs_the_signatures_its_mod_policy_names() {
    use super::compute::signed_config_update_envelope;
    let (from, org1, org2) = two_org_channel();
    let update = batch_update(&from, 10);

    let one_admin = org1.admin.as_update_signer(|admin| {
        signed_config_update_envelope(&update, std::slice::from_ref(admin), admin)
    });
    let err = propose_config_update(&from, &one_admin, &ChannelPolicies).expect_err("one of two");
    assert_eq!(
        err.to_string(),
        "error authorizing update: error validating DeltaSet: policy for [Value]  /Channel/Orderer/BatchSize not satisfied: implicit policy evaluation failed - 1 sub-policies were satisfied, but this policy requires 2 of the 'Admins' sub-policies to be satisfied"
    );
    let unsigned = config_update_envelope(&update);
    assert!(matches!(
        propose_config_update(&from, &unsigned, &ChannelPolicies),
        Err(ConfigUpdateError::PolicyNotSatisfied { .. })
    ));
    // Members who are not admins do not count.
    let members = org1.client.as_update_signer(|c1| {
        org2.client.as_update_signer(|c2| {
            signed_config_update_envelope(&update, &[c1.clone(), c2.clone()], c1)
        })
    });
    assert!(propose_config_update(&from, &members, &ChannelPolicies).is_err());

    let both = org1.admin.as_update_signer(|a1| {
        org2.admin.as_update_signer(|a2| {
            signed_config_update_envelope(&update, &[a1.clone(), a2.clone()], a1)
        })
    });
    // The admins' identities are now in the channel's cache.
    assert!(from.msp_manager.cached_identities() >= 2);
    let proposed = propose_config_update(&from, &both, &ChannelPolicies).expect("both admins");
    assert_eq!(proposed.config.batch_size.max_message_count, 10);
    assert_eq!(proposed.config.sequence, 1);
    // The next config has MSPs of its own, with an empty cache.
    assert_eq!(proposed.config.msp_manager.cached_identities(), 0);
}

#[test]
fn an_update_that_breaks_an_msp_is_refused() {
    use super::compute::signed_config_update_envelope;
    use crate::security::testing::wrap;
    let (from, org1, org2) = two_org_channel();
    let mut updated = from.config.clone();
    let mut broken = org1.fabric_msp_config();
    broken.root_certs.clear();
    orderer_mut(&mut updated)
        .groups
        .get_mut(&org1.name)
        .and_then(|org| org.values.get_mut(keys::MSP))
        .expect("org1 MSP")
        .value = wrap(&broken).encode_to_vec().into();
    let update = compute_update("mychannel", &from.config, &updated).expect("difference");
    // Org1's MSP value is modified by Org1's admins.
    let envelope = org1.admin.as_update_signer(|a1| {
        org2.admin.as_update_signer(|a2| {
            signed_config_update_envelope(&update, &[a1.clone(), a2.clone()], a1)
        })
    });
    let err = propose_config_update(&from, &envelope, &ChannelPolicies).expect_err("broken MSP");
    assert!(matches!(err, ConfigUpdateError::InvalidResult(_)), "{err}");
    assert!(
        err.to_string()
            .contains("expected at least one CA certificate"),
        "{err}"
    );
}

#[test]
fn etcdraft_consenters_keep_their_places() {
    use crate::fabric::protos::etcdraft::{ConfigMetadata, Consenter};
    let consenter = |port: u32, cert: &'static str| Consenter {
        host: "127.0.0.1".into(),
        port,
        client_tls_cert: Bytes::from_static(cert.as_bytes()),
        server_tls_cert: Bytes::from_static(cert.as_bytes()),
    };
    let metadata = |consenters: Vec<Consenter>| -> Bytes {
        ConfigMetadata {
            consenters,
            options: None,
        }
        .encode_to_vec()
        .into()
    };
    let mut profile = GenesisProfile::embedded("raftchannel", vec![]);
    profile.consensus_type = "etcdraft".into();
    profile.consensus_metadata = metadata(vec![consenter(7051, "a"), consenter(7052, "b")]);
    let current = ChannelConfig::from_config_block(&profile.genesis_block()).expect("config");
    let with = |consenters: Vec<Consenter>| {
        let mut config = current.config.clone();
        set_value(
            &mut config,
            crate::fabric::channelconfig::keys::CONSENSUS_TYPE,
            &ConsensusType {
                r#type: "etcdraft".into(),
                state: 0,
                metadata: metadata(consenters),
            },
        );
        update_to(&current, &config)
    };
    // A renewed certificate keeps the consenter where it is.
    propose(
        &current,
        &with(vec![consenter(7051, "a2"), consenter(7052, "b")]),
    )
    .expect("certificate renewal");
    for changed in [
        vec![
            consenter(7051, "a"),
            consenter(7052, "b"),
            consenter(7053, "c"),
        ],
        vec![consenter(7051, "a")],
        vec![consenter(7052, "b"), consenter(7051, "a")],
    ] {
        assert!(matches!(
            propose(&current, &with(changed)),
            Err(ConfigUpdateError::ConsenterSetChange(_))
        ));
    }
}

/// `from` with a chain of `depth` new groups under /Channel/Application,
/// the deepest holding a policy (a policy nests one level more than a
/// group, so the chain can reach any depth of the protobuf decoder).
fn with_nested_groups(from: &Config, depth: usize) -> Config {
    use crate::fabric::protos::common::{
        implicit_meta_policy::Rule, policy::PolicyType, ConfigPolicy, ImplicitMetaPolicy, Policy,
    };
    let mut updated = from.clone();
    let policy = ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: PolicyType::ImplicitMeta as i32,
            value: ImplicitMetaPolicy {
                sub_policy: keys::ADMINS.into(),
                rule: Rule::Any as i32,
            }
            .encode_to_vec()
            .into(),
        }),
        mod_policy: keys::ADMINS.into(),
    };
    let mut group = ConfigGroup {
        policies: std::collections::HashMap::from([(keys::ADMINS.to_string(), policy)]),
        mod_policy: keys::ADMINS.into(),
        ..ConfigGroup::default()
    };
    for _ in 1..depth {
        group = ConfigGroup {
            groups: std::collections::HashMap::from([("Nested".to_string(), group)]),
            mod_policy: keys::ADMINS.into(),
            ..ConfigGroup::default()
        };
    }
    updated
        .channel_group
        .as_mut()
        .and_then(|root| root.groups.get_mut(keys::APPLICATION_GROUP))
        .expect("application group")
        .groups
        .insert("Deep".into(), group);
    updated
}

/// Whether protobuf bytes of `message` decode again (prost's recursion limit).
fn decodes<M: Message + Default>(message: &M) -> bool {
    M::decode(message.encode_to_vec().as_slice()).is_ok()
}

#[test]
fn an_update_whose_config_would_not_decode_at_start_up_is_refused() {
    let from = current();
    // The config envelope nests one level deeper than the update: find the
    // depths where the update still decodes and the config it makes does not.
    let mut refused = 0;
    for depth in 40..=52 {
        let update = update_to(&from, &with_nested_groups(&from.config, depth));
        let envelope = config_update_envelope(&update);
        let update_decodes = decodes(&update);
        let made = Config {
            sequence: 1,
            channel_group: with_nested_groups(&from.config, depth).channel_group,
        };
        let config_decodes = decodes(&ConfigEnvelope {
            config: Some(made),
            last_update: None,
        });
        let answer = propose_config_update(&from, &envelope, &ChannelPolicies);
        match (update_decodes, config_decodes) {
            (true, true) => {
                let proposed = answer.expect("a config that reads back is accepted");
                let block = blockutil::new_block(
                    1,
                    Bytes::from(vec![0u8; 32]),
                    vec![proposed.envelope.encode_to_vec().into()],
                    1,
                    Bytes::new(),
                );
                let read = Block::decode(block.encode_to_vec().as_slice()).expect("block");
                ChannelConfig::from_config_block(&read).expect("reads back at start-up");
            }
            (true, false) => {
                let err = answer.expect_err("a config start-up could not read");
                assert!(matches!(err, ConfigUpdateError::Unreadable(_)), "{err}");
                assert_eq!(
                    err.to_string(),
                    format!(
                        "the config block this update makes could not be read back: \
                         the config nests too deeply for the protobuf decoder: \
                         {} groups down to /Channel/Application/Deep{}",
                        depth + 2,
                        "/Nested".repeat(depth - 1)
                    )
                );
                refused += 1;
            }
            (false, _) => {
                // The update itself arrives as bytes and cannot be read:
                // Broadcast refuses it before this point.
            }
        }
    }
    assert!(refused > 0, "some depth makes an unreadable config");
}

#[test]
fn a_config_block_too_large_to_fetch_is_refused() {
    let from = current();
    let proposed = propose(&from, &batch_update(&from, 10)).expect("valid");
    let size = proposed.envelope.encode_to_vec().len();
    // Under a limit just below the block it makes, the same update is refused.
    let err = check_storable(&proposed.envelope, &proposed.config, size + SIGNING_ROOM)
        .expect_err("too large");
    assert!(matches!(err, ConfigUpdateError::TooLarge { .. }), "{err}");
    check_storable(
        &proposed.envelope,
        &proposed.config,
        size + SIGNING_ROOM + 1024,
    )
    .expect("fits with room for the block around it");

    // A value of 60 MiB makes a block of twice that (the config and the
    // update it came from): more than a follower can fetch.
    let mut updated = from.config.clone();
    orderer_mut(&mut updated).values.insert(
        "Huge".into(),
        ConfigValue {
            version: 0,
            value: Bytes::from(vec![7u8; 60 * 1024 * 1024]),
            mod_policy: keys::ADMINS.into(),
        },
    );
    let update = update_to(&from, &updated);
    let err = propose(&from, &update).expect_err("too large");
    assert!(matches!(err, ConfigUpdateError::TooLarge { .. }), "{err}");
}

#[test]
fn a_config_that_reads_back_differently_is_refused() {
    let from = current();
    let proposed = propose(&from, &batch_update(&from, 10)).expect("valid");
    let mut other = proposed.config.clone();
    other.config.sequence += 1;
    let err = check_storable(&proposed.envelope, &other, MAX_BLOCK_BYTES).expect_err("differs");
    assert!(matches!(err, ConfigUpdateError::Unreadable(_)), "{err}");
}
