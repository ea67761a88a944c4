//! Channel creation through a system channel (Fabric 1.x/2.x): a CONFIG_UPDATE
//! for a channel that does not exist becomes the new channel's first config.
//!
//! As Fabric's system channel processor and its default templator do it:
//! 1. read the consortium the update names (the `Consortium` value of its
//!    write set) and find it in the system channel's `Consortiums`;
//! 2. build a template config: the system channel's channel-level values and
//!    policies, its Orderer group, an Application group holding the members
//!    of the consortium the update names, modified under the consortium's
//!    `ChannelCreationPolicy` (named `Admins` when the update is made by a
//!    newer configtxgen and the orderer capability allows it), every version
//!    zero;
//! 3. apply the update to the template like any config update
//!    ([`super::propose_config_update`]): the signatures must satisfy the
//!    creation policy, the read set must match, the result must be valid.
//!
//! The result is the new channel's CONFIG envelope (sequence 1), unsigned;
//! the caller signs it and wraps it in an ORDERER_TRANSACTION for the system
//! channel.

use std::collections::HashMap;

use prost::Message;

use super::{propose_config_update, ConfigUpdateError, PolicyEvaluator, ProposedConfig};
use crate::fabric::channelconfig::{keys, validate_channel_id, ChannelConfig};
use crate::fabric::protos::common::{
    ChannelHeader, Config, ConfigGroup, ConfigPolicy, ConfigUpdate, ConfigUpdateEnvelope,
    ConfigValue, Consortium, Envelope, HeaderType, Payload,
};

/// Orderer capabilities under which the template is predictable (Fabric's
/// `PredictableChannelTemplate`: V1_1 and every later one).
const PREDICTABLE_TEMPLATE: [&str; 3] = ["V1_1", "V1_4_2", "V2_0"];
/// Orderer capabilities under which a creation may name its Application
/// group's policy `Admins` (Fabric's `UseChannelCreationPolicyAsAdmins`).
const CREATION_POLICY_AS_ADMINS: [&str; 1] = ["V2_0"];

/// Why a channel creation was refused; the text is Fabric's. Broadcast
/// answers BAD_REQUEST.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CreationError {
    #[error("{0}")]
    Malformed(String),
    #[error(
        "Failing initial channel config creation: mismatched channel IDs: '{update}' != '{header}'"
    )]
    ChannelMismatch { update: String, header: String },
    #[error("Config update has an empty writeset")]
    EmptyWriteSet,
    #[error("Config update has missing application group")]
    NoApplication,
    #[error(
        "Config update for channel creation does not set application group version to 1, was {0}"
    )]
    ApplicationVersion(u64),
    #[error("Consortium config value missing")]
    NoConsortium,
    #[error("Error reading unmarshaling consortium name: {0}")]
    BadConsortium(String),
    #[error("The ordering system channel does not appear to support creating channels")]
    NotSystemChannel,
    #[error("Unknown consortium name: {0}")]
    UnknownConsortium(String),
    #[error(
        "Proposed configuration has no application group members, but consortium contains members"
    )]
    NoMembers,
    #[error("Attempted to include a member which is not in the consortium")]
    NotAMember,
    #[error("initializing configtx manager failed: bad channel ID: {0}")]
    ChannelId(String),
    /// The template is not a config this node can run (should not happen
    /// with a valid system channel config).
    #[error("{0}")]
    Template(String),
    #[error("error validating channel creation transaction for new channel '{channel}', could not successfully apply update to template configuration: {source}")]
    Apply {
        channel: String,
        source: ConfigUpdateError,
    },
}

/// What a creation request names, read from its CONFIG_UPDATE envelope.
struct CreationRequest {
    channel_id: String,
    update: ConfigUpdate,
    consortium: String,
}

/// The CONFIG envelope (unsigned) and config of the channel `update_envelope`
/// creates, checked against the system channel's `system` config.
pub fn propose_channel_creation(
    system: &ChannelConfig,
    update_envelope: &Envelope,
    policies: &dyn PolicyEvaluator,
) -> Result<ProposedConfig, CreationError> {
    let template = new_channel_template(system, update_envelope)?;
    propose_config_update(&template, update_envelope, policies).map_err(|source| {
        CreationError::Apply {
            channel: template.channel_id.clone(),
            source,
        }
    })
}

/// The channel ID a CONFIG_UPDATE envelope names in its channel header.
pub fn requested_channel(update_envelope: &Envelope) -> Result<String, CreationError> {
    let payload = Payload::decode(update_envelope.payload.clone()).map_err(|e| {
        CreationError::Malformed(format!(
            "Failing initial channel config creation because of payload unmarshaling error: {e}"
        ))
    })?;
    Ok(creation_header(&payload)?.channel_id)
}

/// The channel header of a creation's payload, refused in Fabric's words.
fn creation_header(payload: &Payload) -> Result<ChannelHeader, CreationError> {
    let header = payload.header.as_ref().ok_or_else(|| {
        CreationError::Malformed(
            "Failed initial channel config creation because config update header was missing"
                .into(),
        )
    })?;
    ChannelHeader::decode(header.channel_header.clone()).map_err(|e| {
        CreationError::Malformed(format!(
            "Failed initial channel config creation because channel header was malformed: {e}"
        ))
    })
}

fn read_request(update_envelope: &Envelope) -> Result<CreationRequest, CreationError> {
    let malformed = |what: &str, e: prost::DecodeError| {
        CreationError::Malformed(format!(
            "Failing initial channel config creation because of {what} unmarshaling error: {e}"
        ))
    };
    let payload =
        Payload::decode(update_envelope.payload.clone()).map_err(|e| malformed("payload", e))?;
    let envelope = ConfigUpdateEnvelope::decode(payload.data.clone())
        .map_err(|e| malformed("config update envelope", e))?;
    let channel_header = creation_header(&payload)?;
    if channel_header.r#type != HeaderType::ConfigUpdate as i32 {
        return Err(CreationError::Malformed(
            "invalid header type, expected CONFIG_UPDATE".into(),
        ));
    }
    let update = ConfigUpdate::decode(envelope.config_update.clone())
        .map_err(|e| malformed("config update", e))?;
    if update.channel_id != channel_header.channel_id {
        return Err(CreationError::ChannelMismatch {
            update: update.channel_id,
            header: channel_header.channel_id,
        });
    }
    let write_set = update
        .write_set
        .as_ref()
        .ok_or(CreationError::EmptyWriteSet)?;
    let application = write_set
        .groups
        .get(keys::APPLICATION_GROUP)
        .ok_or(CreationError::NoApplication)?;
    if application.version != 1 {
        return Err(CreationError::ApplicationVersion(application.version));
    }
    let value = write_set
        .values
        .get(keys::CONSORTIUM)
        .ok_or(CreationError::NoConsortium)?;
    let consortium = Consortium::decode(value.value.clone())
        .map_err(|e| CreationError::BadConsortium(e.to_string()))?;
    Ok(CreationRequest {
        channel_id: channel_header.channel_id,
        update,
        consortium: consortium.name,
    })
}

/// The template config a creation applies to (Fabric's
/// `DefaultTemplator.NewChannelConfig`), as a config of the new channel at
/// sequence 0.
pub fn new_channel_template(
    system: &ChannelConfig,
    update_envelope: &Envelope,
) -> Result<ChannelConfig, CreationError> {
    let request = read_request(update_envelope)?;
    let consortiums = system
        .consortiums
        .as_ref()
        .ok_or(CreationError::NotSystemChannel)?;
    let consortium = consortiums
        .get(&request.consortium)
        .ok_or_else(|| CreationError::UnknownConsortium(request.consortium.clone()))?;
    let system_root = system
        .config
        .channel_group
        .as_ref()
        .ok_or(CreationError::NotSystemChannel)?;
    let members = system_root
        .groups
        .get(keys::CONSORTIUMS_GROUP)
        .and_then(|c| c.groups.get(&request.consortium))
        .map(|c| &c.groups)
        .ok_or_else(|| CreationError::UnknownConsortium(request.consortium.clone()))?;
    // Checked by read_request: the write set has an Application group.
    let requested = request
        .update
        .write_set
        .as_ref()
        .and_then(|w| w.groups.get(keys::APPLICATION_GROUP))
        .ok_or(CreationError::NoApplication)?;

    let capabilities = &system.orderer.capabilities;
    let has = |wanted: &[&str]| capabilities.iter().any(|c| wanted.contains(&c.as_str()));
    // An update from an older configtxgen writes the Application group's
    // Admins policy at version 0, next to ChannelCreationPolicy; a newer one
    // expects the creation policy under the name Admins.
    let policy_name = if has(&CREATION_POLICY_AS_ADMINS)
        && !requested.policies.is_empty()
        && requested
            .policies
            .get(keys::ADMINS)
            .is_none_or(|admins| admins.version != 0)
    {
        keys::ADMINS
    } else {
        keys::CHANNEL_CREATION_POLICY
    };
    let mut application = ConfigGroup {
        mod_policy: policy_name.to_string(),
        ..ConfigGroup::default()
    };
    application.policies.insert(
        policy_name.to_string(),
        ConfigPolicy {
            version: 0,
            policy: consortium.channel_creation_policy.clone(),
            mod_policy: policy_name.to_string(),
        },
    );
    // A consortium without members lets the request name any; otherwise
    // the request names at least one, and only members.
    if !members.is_empty() {
        if requested.groups.is_empty() {
            return Err(CreationError::NoMembers);
        }
        for name in requested.groups.keys() {
            let member = members.get(name).ok_or(CreationError::NotAMember)?;
            application.groups.insert(name.clone(), member.clone());
        }
    }

    let mut channel = ConfigGroup {
        values: system_root.values.clone(),
        policies: system_root.policies.clone(),
        groups: HashMap::new(),
        ..ConfigGroup::default()
    };
    if let Some(orderer) = system_root.groups.get(keys::ORDERER_GROUP) {
        channel
            .groups
            .insert(keys::ORDERER_GROUP.to_string(), orderer.clone());
    }
    channel
        .groups
        .insert(keys::APPLICATION_GROUP.to_string(), application);
    channel.values.insert(
        keys::CONSORTIUM.to_string(),
        ConfigValue {
            version: 0,
            value: Consortium {
                name: request.consortium.clone(),
            }
            .encode_to_vec()
            .into(),
            mod_policy: keys::ADMINS.to_string(),
        },
    );
    if has(&PREDICTABLE_TEMPLATE) {
        channel.mod_policy = system_root.mod_policy.clone();
        zero_versions(&mut channel);
    }

    validate_channel_id(&request.channel_id).map_err(|e| {
        CreationError::ChannelId(fabric_channel_id_reason(&request.channel_id, e.reason))
    })?;
    let config = Config {
        sequence: 0,
        channel_group: Some(channel),
    };
    ChannelConfig::from_config(request.channel_id, config)
        .map_err(|e| CreationError::Template(e.to_string()))
}

/// Fabric's words for a channel ID it refuses.
fn fabric_channel_id_reason(id: &str, reason: &str) -> String {
    match reason {
        "empty" => "channel ID illegal, cannot be empty".into(),
        "longer than 249 characters" => "channel ID illegal, cannot be longer than 249".into(),
        _ => format!("'{id}' contains illegal characters"),
    }
}

fn zero_versions(group: &mut ConfigGroup) {
    group.version = 0;
    for value in group.values.values_mut() {
        value.version = 0;
    }
    for policy in group.policies.values_mut() {
        policy.version = 0;
    }
    for child in group.groups.values_mut() {
        zero_versions(child);
    }
}

/// A system channel config and creation updates for tests.
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::configtx::compute::signed_config_update_envelope;
    use crate::fabric::protos::common::{policy::PolicyType, ImplicitMetaPolicy, Policy};
    use crate::security::testing::{TestIdentity, TestOrg};

    pub(crate) struct System {
        pub(crate) config: ChannelConfig,
        pub(crate) orderer: TestOrg,
        pub(crate) org1: TestOrg,
    }

    /// A system channel: the embedded profile's Orderer group, no
    /// Application group, SampleConsortium with Org1MSP and Org2MSP.
    pub(crate) fn system() -> System {
        let orderer = TestOrg::new("OrdererMSP");
        let org1 = TestOrg::new("Org1MSP");
        let org2 = TestOrg::new("Org2MSP");
        let mut profile = GenesisProfile::embedded("syschannel", vec![]);
        profile.orderer_organizations = vec![orderer.profile()];
        profile.application_organizations = Some(vec![org1.profile(), org2.profile()]);
        let mut config = profile.config();
        let root = config.channel_group.as_mut().expect("root");
        let application = root
            .groups
            .remove(keys::APPLICATION_GROUP)
            .expect("application");
        let creation = Policy {
            r#type: PolicyType::ImplicitMeta as i32,
            value: ImplicitMetaPolicy {
                sub_policy: keys::ADMINS.into(),
                rule: 0, // ANY
            }
            .encode_to_vec()
            .into(),
        };
        let consortium = ConfigGroup {
            groups: application.groups,
            values: HashMap::from([(
                keys::CHANNEL_CREATION_POLICY.to_string(),
                ConfigValue {
                    version: 0,
                    value: creation.encode_to_vec().into(),
                    mod_policy: "/Channel/Orderer/Admins".into(),
                },
            )]),
            mod_policy: "/Channel/Orderer/Admins".into(),
            ..ConfigGroup::default()
        };
        root.groups.insert(
            keys::CONSORTIUMS_GROUP.into(),
            ConfigGroup {
                groups: HashMap::from([("SampleConsortium".to_string(), consortium)]),
                mod_policy: "/Channel/Orderer/Admins".into(),
                ..ConfigGroup::default()
            },
        );
        System {
            config: ChannelConfig::from_config("syschannel".into(), config).expect("system"),
            orderer,
            org1,
        }
    }

    /// configtxgen's creation update for `channel` in `consortium` with
    /// these members (Application to version 1, its policies at version
    /// `admins_version`), signed by `signer`.
    pub(crate) fn creation(
        channel: &str,
        consortium: &str,
        members: &[&str],
        app_version: u64,
        signer: &TestIdentity,
    ) -> Envelope {
        let member_groups = || -> HashMap<String, ConfigGroup> {
            members
                .iter()
                .map(|m| (m.to_string(), ConfigGroup::default()))
                .collect()
        };
        let admins = ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: PolicyType::ImplicitMeta as i32,
                value: ImplicitMetaPolicy {
                    sub_policy: keys::ADMINS.into(),
                    rule: 2, // MAJORITY
                }
                .encode_to_vec()
                .into(),
            }),
            mod_policy: keys::ADMINS.into(),
        };
        let read_app = ConfigGroup {
            groups: member_groups(),
            ..ConfigGroup::default()
        };
        let write_app = ConfigGroup {
            version: app_version,
            groups: member_groups(),
            policies: HashMap::from([(keys::ADMINS.to_string(), admins)]),
            mod_policy: keys::ADMINS.into(),
            ..ConfigGroup::default()
        };
        let consortium_value = ConfigValue {
            value: Consortium {
                name: consortium.into(),
            }
            .encode_to_vec()
            .into(),
            ..ConfigValue::default()
        };
        let update = ConfigUpdate {
            channel_id: channel.into(),
            read_set: Some(ConfigGroup {
                groups: HashMap::from([(keys::APPLICATION_GROUP.to_string(), read_app)]),
                values: HashMap::from([(keys::CONSORTIUM.to_string(), ConfigValue::default())]),
                ..ConfigGroup::default()
            }),
            write_set: Some(ConfigGroup {
                groups: HashMap::from([(keys::APPLICATION_GROUP.to_string(), write_app)]),
                values: HashMap::from([(keys::CONSORTIUM.to_string(), consortium_value)]),
                ..ConfigGroup::default()
            }),
            ..ConfigUpdate::default()
        };
        signer.as_update_signer(|s| {
            signed_config_update_envelope(&update, std::slice::from_ref(s), s)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{creation, system};
    use super::*;
    use crate::fabric::configtx::ChannelPolicies;

    #[test]
    fn an_admin_of_a_member_creates_a_channel_from_the_template() {
        let system = system();
        let update = creation(
            "appchannel",
            "SampleConsortium",
            &["Org1MSP"],
            1,
            &system.org1.admin,
        );
        let proposed =
            propose_channel_creation(&system.config, &update, &ChannelPolicies).expect("created");
        let config = proposed.config;
        assert_eq!(config.channel_id, "appchannel");
        assert_eq!(config.sequence, 1);
        assert!(config.consortiums.is_none());
        let root = config.config.channel_group.as_ref().expect("root");
        let system_root = system.config.config.channel_group.as_ref().expect("root");
        assert_eq!(
            root.groups[keys::ORDERER_GROUP],
            system_root.groups[keys::ORDERER_GROUP],
            "the system channel's orderer group"
        );
        let application = &root.groups[keys::APPLICATION_GROUP];
        assert_eq!(application.version, 1);
        assert_eq!(application.groups.keys().collect::<Vec<_>>(), ["Org1MSP"]);
        // The member is the consortium's definition of it.
        assert_eq!(
            application.groups["Org1MSP"],
            system_root.groups[keys::CONSORTIUMS_GROUP].groups["SampleConsortium"].groups
                ["Org1MSP"]
        );
        // The update's policies replace the template's creation policy.
        assert_eq!(
            application.policies.keys().collect::<Vec<_>>(),
            [keys::ADMINS]
        );
        let consortium =
            Consortium::decode(root.values[keys::CONSORTIUM].value.clone()).expect("consortium");
        assert_eq!(consortium.name, "SampleConsortium");
    }

    #[test]
    fn refusals_carry_fabrics_reasons() {
        let system = system();
        let admin = &system.org1.admin;
        let refused = |update: Envelope| {
            propose_channel_creation(&system.config, &update, &ChannelPolicies)
                .expect_err("refused")
        };
        let by_client = refused(creation(
            "appchannel",
            "SampleConsortium",
            &["Org1MSP"],
            1,
            &system.org1.client,
        ));
        assert!(
            matches!(
                &by_client,
                CreationError::Apply { source: ConfigUpdateError::PolicyNotSatisfied { key, .. }, .. }
                    if key == "[Group]  /Channel/Application"
            ),
            "{by_client}"
        );
        assert!(by_client.to_string().starts_with(
            "error validating channel creation transaction for new channel 'appchannel', could not successfully apply update to template configuration: "
        ));
        assert_eq!(
            refused(creation("appchannel", "Nope", &["Org1MSP"], 1, admin)),
            CreationError::UnknownConsortium("Nope".into())
        );
        assert_eq!(
            refused(creation(
                "appchannel",
                "SampleConsortium",
                &["Org3MSP"],
                1,
                admin
            )),
            CreationError::NotAMember
        );
        assert_eq!(
            refused(creation("appchannel", "SampleConsortium", &[], 1, admin)),
            CreationError::NoMembers
        );
        assert_eq!(
            refused(creation(
                "appchannel",
                "SampleConsortium",
                &["Org1MSP"],
                0,
                admin
            )),
            CreationError::ApplicationVersion(0)
        );
        assert_eq!(
            refused(creation(
                "App_Channel",
                "SampleConsortium",
                &["Org1MSP"],
                1,
                admin
            )),
            CreationError::ChannelId("'App_Channel' contains illegal characters".into())
        );
        let mut application_channel = system.config.clone();
        application_channel.consortiums = None;
        assert_eq!(
            propose_channel_creation(
                &application_channel,
                &creation("appchannel", "SampleConsortium", &["Org1MSP"], 1, admin),
                &ChannelPolicies
            )
            .expect_err("not a system channel"),
            CreationError::NotSystemChannel
        );
    }
}
