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
            key: "value /Channel/Orderer/BatchSize".into(),
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
        ConfigUpdateError::ReadMissing("group /Channel/Nowhere".into())
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
    assert!(matches!(
        propose(&from, &update),
        Err(ConfigUpdateError::ConsensusTypeChange { .. })
    ));
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
