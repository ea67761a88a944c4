//! Builds a genesis config block, laid out as Fabric's configtxgen lays it out:
//! a Channel group with HashingAlgorithm, BlockDataHashingStructure,
//! OrdererAddresses and Capabilities, an Orderer group with the batch and
//! consensus values, an Application group (an application channel, which
//! Fabric requires of a channel joined through the participation API), and
//! ImplicitMeta policies at each level. Organizations (an MSP each, with
//! configtxgen's default policies) may be added to the Orderer group and to
//! the Application group.

use std::collections::HashMap;

use bytes::Bytes;
use prost::Message;

use super::keys;
use crate::fabric::blockutil;
use crate::fabric::configtxgen::policydsl;
use crate::fabric::protos::common::{
    implicit_meta_policy::Rule, policy::PolicyType, Block, BlockData, BlockDataHashingStructure,
    BlockHeader, Capabilities, Capability, ChannelHeader, Config, ConfigEnvelope, ConfigGroup,
    ConfigPolicy, ConfigValue, Envelope, HashingAlgorithm, Header, HeaderType, ImplicitMetaPolicy,
    OrdererAddresses, Payload, Policy, SignatureHeader,
};
use crate::fabric::protos::msp::MspConfig;
use crate::fabric::protos::orderer::{
    BatchSize, BatchTimeout, ChannelRestrictions, ConsensusType, KafkaBrokers,
};

/// The Orderer group value that lists a Kafka channel's brokers.
pub const KAFKA_BROKERS: &str = "KafkaBrokers";

/// Consensus type name of the solo consenter.
pub const SOLO: &str = "solo";

/// What a genesis block says about a channel.
#[derive(Debug, Clone)]
pub struct GenesisProfile {
    pub channel_id: String,
    pub consensus_type: String,
    pub consensus_metadata: Bytes,
    pub batch_size: BatchSize,
    /// A Go duration, as Fabric stores it ("2s").
    pub batch_timeout: String,
    pub orderer_addresses: Vec<String>,
    /// Organizations of the Orderer group.
    pub orderer_organizations: Vec<OrganizationProfile>,
    /// The Application group's organizations; `None`: no Application group.
    pub application_organizations: Option<Vec<OrganizationProfile>>,
    /// `KafkaBrokers` of a kafka channel (host:port).
    pub kafka_brokers: Vec<String>,
}

/// An organization of a genesis profile: its MSP, and configtxgen's default
/// policies (Readers and Writers: any member; Admins: any admin).
#[derive(Debug, Clone)]
pub struct OrganizationProfile {
    /// The group's name.
    pub name: String,
    pub msp_id: String,
    pub msp: MspConfig,
    /// `Endpoints` of an orderer organization.
    pub orderer_endpoints: Vec<String>,
}

impl OrganizationProfile {
    fn group(&self, application: bool) -> ConfigGroup {
        let signature = |rule: String| ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: PolicyType::Signature as i32,
                // The rules are well-formed by construction.
                value: policydsl::parse(&rule)
                    .map(|envelope| envelope.encode_to_vec())
                    .unwrap_or_default()
                    .into(),
            }),
            mod_policy: keys::ADMINS.into(),
        };
        let member = format!("OR('{}.member')", self.msp_id);
        let mut policies = HashMap::from([
            (keys::READERS.to_string(), signature(member.clone())),
            (keys::WRITERS.to_string(), signature(member.clone())),
            (
                keys::ADMINS.to_string(),
                signature(format!("OR('{}.admin')", self.msp_id)),
            ),
        ]);
        if application {
            policies.insert("Endorsement".into(), signature(member));
        }
        let mut values = HashMap::from([value(keys::MSP, &self.msp)]);
        if !self.orderer_endpoints.is_empty() {
            values.extend([value(
                keys::ENDPOINTS,
                &OrdererAddresses {
                    addresses: self.orderer_endpoints.clone(),
                },
            )]);
        }
        ConfigGroup {
            version: 0,
            groups: HashMap::new(),
            values,
            policies,
            mod_policy: keys::ADMINS.into(),
        }
    }
}

impl GenesisProfile {
    /// The embedded default: solo, 500 messages / 10 MB absolute / 2 MB preferred, 2 s.
    pub fn embedded(channel_id: &str, orderer_addresses: Vec<String>) -> GenesisProfile {
        GenesisProfile {
            channel_id: channel_id.into(),
            consensus_type: SOLO.into(),
            consensus_metadata: Bytes::new(),
            batch_size: BatchSize {
                max_message_count: 500,
                absolute_max_bytes: 10 * 1024 * 1024,
                preferred_max_bytes: 2 * 1024 * 1024,
            },
            batch_timeout: "2s".into(),
            orderer_addresses,
            orderer_organizations: Vec::new(),
            application_organizations: None,
            kafka_brokers: Vec::new(),
        }
    }

    /// The config tree of this profile, at sequence 0.
    pub fn config(&self) -> Config {
        let orderer = ConfigGroup {
            version: 0,
            groups: self
                .orderer_organizations
                .iter()
                .map(|org| (org.name.clone(), org.group(false)))
                .collect(),
            values: HashMap::from([
                value(keys::BATCH_SIZE, &self.batch_size),
                value(
                    keys::BATCH_TIMEOUT,
                    &BatchTimeout {
                        timeout: self.batch_timeout.clone(),
                    },
                ),
                value(
                    keys::CONSENSUS_TYPE,
                    &ConsensusType {
                        r#type: self.consensus_type.clone(),
                        metadata: self.consensus_metadata.clone(),
                        state: 0,
                    },
                ),
                value(
                    keys::CHANNEL_RESTRICTIONS,
                    &ChannelRestrictions { max_count: 0 },
                ),
                value(keys::CAPABILITIES, &capabilities("V2_0")),
            ])
            .into_iter()
            .chain((!self.kafka_brokers.is_empty()).then(|| {
                value(
                    KAFKA_BROKERS,
                    &KafkaBrokers {
                        brokers: self.kafka_brokers.clone(),
                    },
                )
            }))
            .collect(),
            policies: HashMap::from([
                implicit_meta(keys::READERS, Rule::Any),
                implicit_meta(keys::WRITERS, Rule::Any),
                implicit_meta(keys::ADMINS, Rule::Majority),
                (
                    keys::BLOCK_VALIDATION.to_string(),
                    implicit_meta_policy(keys::WRITERS, Rule::Any),
                ),
            ]),
            mod_policy: keys::ADMINS.into(),
        };
        let mut values = hashing_values();
        values.extend([
            value(
                keys::ORDERER_ADDRESSES,
                &OrdererAddresses {
                    addresses: self.orderer_addresses.clone(),
                },
            ),
            value(keys::CAPABILITIES, &capabilities("V3_0")),
        ]);
        let mut groups = HashMap::from([(keys::ORDERER_GROUP.to_string(), orderer)]);
        // Always an application channel: Fabric's participation API joins no
        // other kind.
        groups.insert(
            keys::APPLICATION_GROUP.to_string(),
            application_group(self.application_organizations.as_deref().unwrap_or(&[])),
        );
        let channel = ConfigGroup {
            version: 0,
            groups,
            values,
            policies: HashMap::from([
                implicit_meta(keys::READERS, Rule::Any),
                implicit_meta(keys::WRITERS, Rule::Any),
                implicit_meta(keys::ADMINS, Rule::Majority),
            ]),
            mod_policy: keys::ADMINS.into(),
        };
        Config {
            sequence: 0,
            channel_group: Some(channel),
        }
    }

    /// Block 0 of the channel: one CONFIG envelope, no previous hash.
    pub fn genesis_block(&self) -> Block {
        genesis_block(&self.channel_id, self.config())
    }
}

/// An Application group as configtxgen writes it by default.
fn application_group(organizations: &[OrganizationProfile]) -> ConfigGroup {
    ConfigGroup {
        version: 0,
        groups: organizations
            .iter()
            .map(|org| (org.name.clone(), org.group(true)))
            .collect(),
        values: HashMap::from([value(keys::CAPABILITIES, &capabilities("V2_5"))]),
        policies: HashMap::from([
            implicit_meta(keys::READERS, Rule::Any),
            implicit_meta(keys::WRITERS, Rule::Any),
            implicit_meta(keys::ADMINS, Rule::Majority),
            (
                "LifecycleEndorsement".to_string(),
                implicit_meta_policy("Endorsement", Rule::Majority),
            ),
            (
                "Endorsement".to_string(),
                implicit_meta_policy("Endorsement", Rule::Majority),
            ),
        ]),
        mod_policy: keys::ADMINS.into(),
    }
}

/// Block 0 of channel `channel_id`: one CONFIG envelope of `config`.
pub fn genesis_block(channel_id: &str, config: Config) -> Block {
    let envelope = config_envelope(channel_id, config, None);
    genesis_block_from_envelope(envelope.encode_to_vec().into())
}

/// The values every channel group carries: Fabric's hashing settings.
pub fn hashing_values() -> HashMap<String, ConfigValue> {
    HashMap::from([
        value(
            keys::HASHING_ALGORITHM,
            &HashingAlgorithm {
                name: "SHA256".into(),
            },
        ),
        value(
            keys::BLOCK_DATA_HASHING_STRUCTURE,
            &BlockDataHashingStructure { width: u32::MAX },
        ),
    ])
}

/// Wraps a config tree in an (unsigned) CONFIG envelope for `channel_id`.
/// `last_update`: the CONFIG_UPDATE it was made from (none for a genesis block).
pub fn config_envelope(
    channel_id: &str,
    config: Config,
    last_update: Option<Envelope>,
) -> Envelope {
    let channel_header = ChannelHeader {
        r#type: HeaderType::Config as i32,
        version: 0,
        timestamp: Some(crate::fabric::envelopeutil::now()),
        channel_id: channel_id.into(),
        tx_id: String::new(),
        epoch: 0,
        extension: Bytes::new(),
        tls_cert_hash: Bytes::new(),
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: SignatureHeader::default().encode_to_vec().into(),
        }),
        data: ConfigEnvelope {
            config: Some(config),
            last_update,
        }
        .encode_to_vec()
        .into(),
    };
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    }
}

/// Block 0 holding one marshalled CONFIG envelope, as a channel's genesis.
pub fn genesis_block_from_envelope(envelope: Bytes) -> Block {
    let data = vec![envelope];
    Block {
        header: Some(BlockHeader {
            number: 0,
            previous_hash: Bytes::new(),
            data_hash: blockutil::data_hash(&data),
        }),
        data: Some(BlockData { data }),
        metadata: Some(blockutil::orderer_metadata(0, Bytes::new())),
    }
}

/// A config value at version 0, modified by Admins.
pub fn value(key: &str, message: &impl Message) -> (String, ConfigValue) {
    (
        key.to_string(),
        ConfigValue {
            version: 0,
            value: message.encode_to_vec().into(),
            mod_policy: keys::ADMINS.into(),
        },
    )
}

fn capabilities(name: &str) -> Capabilities {
    Capabilities {
        capabilities: HashMap::from([(name.to_string(), Capability {})]),
    }
}

fn implicit_meta(name: &str, rule: Rule) -> (String, ConfigPolicy) {
    (name.to_string(), implicit_meta_policy(name, rule))
}

fn implicit_meta_policy(sub_policy: &str, rule: Rule) -> ConfigPolicy {
    ConfigPolicy {
        version: 0,
        policy: Some(Policy {
            r#type: PolicyType::ImplicitMeta as i32,
            value: ImplicitMetaPolicy {
                sub_policy: sub_policy.into(),
                rule: rule as i32,
            }
            .encode_to_vec()
            .into(),
        }),
        mod_policy: keys::ADMINS.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn genesis_block_is_block_zero_with_a_valid_data_hash() {
        let block = GenesisProfile::embedded("c1", vec![]).genesis_block();
        let header = block.header.as_ref().expect("header");
        assert_eq!(header.number, 0);
        assert!(header.previous_hash.is_empty());
        assert_eq!(
            header.data_hash,
            blockutil::data_hash(blockutil::entries(&block))
        );
        assert_eq!(blockutil::last_config_index(&block), Some(0));
        let config =
            crate::fabric::channelconfig::ChannelConfig::from_config_block(&block).expect("config");
        let application = config.application.expect("an application channel");
        assert_eq!(application.capabilities, vec!["V2_5".to_string()]);
        assert!(application.organizations.is_empty());
    }
}
