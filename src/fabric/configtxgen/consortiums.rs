//! The system channel parts of configtx.yaml (Fabric 1.x/2.x): a genesis
//! profile's `Consortiums`, and the channel creation transaction of a
//! profile with `Consortium` and `Application` (`configtxgen
//! -outputCreateChannelTx`).

use std::collections::{BTreeMap, HashMap};

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;

use super::{Builder, ConfigTx, GenesisError, OrganizationRef};
use crate::fabric::channelconfig::keys;
use crate::fabric::protos::common::{
    implicit_meta_policy::Rule, policy::PolicyType, signature_policy::Type as SignatureRule,
    ChannelHeader, ConfigGroup, ConfigPolicy, ConfigUpdate, ConfigUpdateEnvelope, ConfigValue,
    Consortium, Envelope, Header, HeaderType, ImplicitMetaPolicy, Payload, Policy, SignatureHeader,
    SignaturePolicy, SignaturePolicyEnvelope,
};

/// What the orderer admins modify in a system channel's consortiums.
const ORDERER_ADMINS: &str = "/Channel/Orderer/Admins";

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ConsortiumYaml {
    #[serde(default)]
    organizations: Option<Vec<OrganizationRef>>,
}

/// The channel's `Consortium` value, when the profile names one.
pub(super) fn consortium_value(name: Option<&str>) -> Option<(String, ConfigValue)> {
    name.map(|name| {
        crate::fabric::channelconfig::genesis::value(
            keys::CONSORTIUM,
            &Consortium { name: name.into() },
        )
    })
}

impl Builder<'_> {
    /// configtxgen's Consortiums group: Admins accepts everyone, each
    /// consortium holds its members and `ChannelCreationPolicy` (ANY Admins),
    /// everything modified by the orderer admins.
    pub(super) fn consortiums(
        &self,
        consortiums: &BTreeMap<String, ConsortiumYaml>,
    ) -> Result<ConfigGroup, GenesisError> {
        let accept_all = SignaturePolicyEnvelope {
            version: 0,
            rule: Some(SignaturePolicy {
                r#type: Some(SignatureRule::NOutOf(
                    crate::fabric::protos::common::signature_policy::NOutOf {
                        n: 0,
                        rules: Vec::new(),
                    },
                )),
            }),
            identities: Vec::new(),
        };
        let mut groups = HashMap::new();
        for (name, consortium) in consortiums {
            let creation = Policy {
                r#type: PolicyType::ImplicitMeta as i32,
                value: ImplicitMetaPolicy {
                    sub_policy: keys::ADMINS.into(),
                    rule: Rule::Any as i32,
                }
                .encode_to_vec()
                .into(),
            };
            let members = self.organizations(consortium.organizations.as_deref(), false)?;
            groups.insert(
                name.clone(),
                ConfigGroup {
                    version: 0,
                    groups: members,
                    values: HashMap::from([(
                        keys::CHANNEL_CREATION_POLICY.to_string(),
                        ConfigValue {
                            version: 0,
                            value: creation.encode_to_vec().into(),
                            mod_policy: ORDERER_ADMINS.into(),
                        },
                    )]),
                    policies: HashMap::new(),
                    mod_policy: ORDERER_ADMINS.into(),
                },
            );
        }
        Ok(ConfigGroup {
            version: 0,
            groups,
            values: HashMap::new(),
            policies: HashMap::from([(
                keys::ADMINS.to_string(),
                ConfigPolicy {
                    version: 0,
                    policy: Some(Policy {
                        r#type: PolicyType::Signature as i32,
                        value: accept_all.encode_to_vec().into(),
                    }),
                    mod_policy: ORDERER_ADMINS.into(),
                },
            )]),
            mod_policy: ORDERER_ADMINS.into(),
        })
    }
}

impl ConfigTx {
    /// The channel creation transaction of `channel_id` from `profile` (a
    /// profile with `Consortium` and `Application`), as `configtxgen
    /// -outputCreateChannelTx` writes it: the update from the profile with
    /// its Application values and policies taken out to the profile, plus
    /// the Consortium value; unsigned (`peer channel create` signs it, see
    /// [`sign_channel_creation`]).
    pub fn channel_creation_tx(
        &self,
        profile: &str,
        channel_id: &str,
    ) -> Result<Envelope, GenesisError> {
        let invalid = |reason: &str| GenesisError::Invalid {
            profile: profile.to_string(),
            reason: reason.to_string(),
        };
        crate::fabric::channelconfig::validate_channel_id(channel_id)
            .map_err(|e| invalid(&e.to_string()))?;
        let found = self
            .parsed
            .profiles
            .get(profile)
            .ok_or_else(|| GenesisError::NoProfile {
                name: profile.to_string(),
                path: self.path.clone(),
                known: self.profile_names().join(", "),
            })?;
        let application = found
            .application
            .as_ref()
            .ok_or_else(|| invalid("cannot define a new channel with no Application section"))?;
        let consortium = found
            .consortium
            .as_deref()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| invalid("cannot define a new channel with no Consortium value"))?;
        let builder = Builder {
            profile,
            base_dir: &self.base_dir,
            organizations: &self.parsed.organizations,
        };
        let full = builder.application(application)?;
        // Both sets name the members at version 0 and nothing of them: they
        // come from the consortium's definitions on the orderer.
        let members = || -> HashMap<String, ConfigGroup> {
            full.groups
                .keys()
                .map(|name| (name.clone(), ConfigGroup::default()))
                .collect()
        };
        let read_application = ConfigGroup {
            groups: members(),
            ..ConfigGroup::default()
        };
        let write_application = ConfigGroup {
            version: 1,
            groups: members(),
            values: full.values.clone(),
            policies: full.policies.clone(),
            mod_policy: full.mod_policy.clone(),
        };
        let update = ConfigUpdate {
            channel_id: channel_id.to_string(),
            read_set: Some(ConfigGroup {
                groups: HashMap::from([(keys::APPLICATION_GROUP.to_string(), read_application)]),
                values: HashMap::from([(keys::CONSORTIUM.to_string(), ConfigValue::default())]),
                ..ConfigGroup::default()
            }),
            write_set: Some(ConfigGroup {
                groups: HashMap::from([(keys::APPLICATION_GROUP.to_string(), write_application)]),
                values: HashMap::from([(
                    keys::CONSORTIUM.to_string(),
                    ConfigValue {
                        version: 0,
                        value: Consortium {
                            name: consortium.to_string(),
                        }
                        .encode_to_vec()
                        .into(),
                        mod_policy: String::new(),
                    },
                )]),
                ..ConfigGroup::default()
            }),
            isolated_data: HashMap::new(),
        };
        let data = ConfigUpdateEnvelope {
            config_update: update.encode_to_vec().into(),
            signatures: Vec::new(),
        };
        Ok(envelope(
            channel_id,
            data.encode_to_vec().into(),
            Bytes::new(),
        ))
    }
}

/// An envelope of a CONFIG_UPDATE for `channel_id` (no transaction ID, as
/// Fabric's `CreateSignedEnvelope`), naming `creator` (empty: unsigned).
fn envelope(channel_id: &str, data: Bytes, creator: Bytes) -> Envelope {
    let now = crate::fabric::envelopeutil::now();
    let channel_header = ChannelHeader {
        r#type: HeaderType::ConfigUpdate as i32,
        timestamp: Some(prost_types::Timestamp {
            seconds: now.seconds,
            nanos: 0,
        }),
        channel_id: channel_id.to_string(),
        ..ChannelHeader::default()
    };
    let signature_header = if creator.is_empty() {
        SignatureHeader::default()
    } else {
        let mut nonce = [0u8; crate::fabric::envelopeutil::NONCE_BYTES];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut nonce);
        SignatureHeader {
            creator,
            nonce: Bytes::copy_from_slice(&nonce),
        }
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: signature_header.encode_to_vec().into(),
        }),
        data,
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
}

/// Signs a channel creation transaction as `peer channel create` does: the
/// signer adds its `ConfigSignature` to the update's signatures and makes
/// and signs a new envelope around it.
pub fn sign_channel_creation(
    unsigned: &Envelope,
    signer: &crate::security::signer::SigningIdentity,
) -> Result<Envelope, String> {
    let payload = Payload::decode(unsigned.payload.clone()).map_err(|e| e.to_string())?;
    let header = payload.header.ok_or("the envelope has no header")?;
    let channel_header = ChannelHeader::decode(header.channel_header).map_err(|e| e.to_string())?;
    if channel_header.r#type != HeaderType::ConfigUpdate as i32 {
        return Err("not a CONFIG_UPDATE envelope".into());
    }
    let mut data = ConfigUpdateEnvelope::decode(payload.data).map_err(|e| e.to_string())?;
    let signature_header = signer.signature_header();
    let mut signed = signature_header.to_vec();
    signed.extend_from_slice(&data.config_update);
    data.signatures
        .push(crate::fabric::protos::common::ConfigSignature {
            signature: signer.sign(&signed),
            signature_header,
        });
    let mut out = envelope(
        &channel_header.channel_id,
        data.encode_to_vec().into(),
        signer.creator(),
    );
    out.signature = signer.sign(&out.payload);
    Ok(out)
}
