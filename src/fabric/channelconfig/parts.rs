//! The typed parts of a channel config beyond batching: channel-wide values,
//! organizations with their MSPs, the etcdraft consenters, and every policy.

use std::collections::BTreeMap;

use bytes::Bytes;
use prost::Message;

use super::{keys, ChannelConfigError};
use crate::fabric::protos::common::{
    policy::PolicyType, BlockDataHashingStructure, Capabilities, ConfigGroup, HashingAlgorithm,
    ImplicitMetaPolicy, OrdererAddresses,
};
use crate::fabric::protos::etcdraft;
use crate::fabric::protos::msp::{FabricMspConfig, MspConfig};

/// The consensus type of etcdraft channels.
pub const ETCDRAFT: &str = "etcdraft";

/// Values of the `/Channel` group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelValues {
    pub hashing_algorithm: String,
    pub block_data_hashing_width: u32,
    pub orderer_addresses: Vec<String>,
    pub capabilities: Vec<String>,
}

/// An organization of the Orderer or Application group.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Organization {
    /// The group's name in the config.
    pub name: String,
    /// The MSP ID its members' identities name.
    pub msp_id: String,
    pub root_certs: Vec<Bytes>,
    pub intermediate_certs: Vec<Bytes>,
    pub tls_root_certs: Vec<Bytes>,
    pub admins: Vec<Bytes>,
    pub node_ous_enabled: bool,
    /// `Endpoints` of an orderer organization.
    pub orderer_endpoints: Vec<String>,
}

/// The etcdraft consenters and options from `ConsensusType.metadata`.
#[derive(Debug, Clone, PartialEq)]
pub struct EtcdRaftConfig {
    pub consenters: Vec<etcdraft::Consenter>,
    pub options: Option<etcdraft::Options>,
}

/// `ConsensusType.state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusState {
    Normal,
    Maintenance,
}

/// The Orderer group beyond batching.
#[derive(Debug, Clone, PartialEq)]
pub struct OrdererValues {
    pub consensus_state: ConsensusState,
    /// Set when the consensus type is etcdraft.
    pub etcdraft: Option<EtcdRaftConfig>,
    /// `ChannelRestrictions.max_count` (0: no limit).
    pub max_channels: u64,
    pub capabilities: Vec<String>,
    pub organizations: BTreeMap<String, Organization>,
}

/// The Application group, when the channel has one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplicationValues {
    pub capabilities: Vec<String>,
    pub organizations: BTreeMap<String, Organization>,
}

/// One consortium of a system channel: the organizations that may create
/// channels together, and the policy a creation must satisfy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Consortium {
    pub name: String,
    /// The member organizations, by their group name.
    pub organizations: BTreeMap<String, Organization>,
    /// `ChannelCreationPolicy`: the policy a new channel's Application group
    /// is modified under while it is created.
    pub channel_creation_policy: Option<crate::fabric::protos::common::Policy>,
}

/// What kind of rule a policy is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRule {
    /// A signature policy over MSP principals (kept encoded).
    Signature(Bytes),
    /// ANY/ALL/MAJORITY of the sub-policy of the child groups.
    ImplicitMeta {
        rule: String,
        sub_policy: String,
    },
    Other {
        policy_type: i32,
        value: Bytes,
    },
}

/// One policy of the config tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyInfo {
    pub rule: PolicyRule,
    pub mod_policy: String,
}

pub(super) fn channel_values(root: &ConfigGroup) -> Result<ChannelValues, ChannelConfigError> {
    let hashing_algorithm =
        optional::<HashingAlgorithm>(root, keys::HASHING_ALGORITHM, "Channel/HashingAlgorithm")?
            .map(|h| h.name)
            .unwrap_or_else(|| "SHA256".into());
    if hashing_algorithm != "SHA256" {
        return Err(ChannelConfigError::Invalid {
            path: "Channel/HashingAlgorithm",
            reason: format!("{hashing_algorithm} is not supported, only SHA256"),
        });
    }
    let block_data_hashing_width = optional::<BlockDataHashingStructure>(
        root,
        keys::BLOCK_DATA_HASHING_STRUCTURE,
        "Channel/BlockDataHashingStructure",
    )?
    .map(|s| s.width)
    .unwrap_or(u32::MAX);
    if block_data_hashing_width != u32::MAX {
        return Err(ChannelConfigError::Invalid {
            path: "Channel/BlockDataHashingStructure",
            reason: format!("width {block_data_hashing_width} is not supported, only 4294967295"),
        });
    }
    Ok(ChannelValues {
        hashing_algorithm,
        block_data_hashing_width,
        orderer_addresses: optional::<OrdererAddresses>(
            root,
            keys::ORDERER_ADDRESSES,
            "Channel/OrdererAddresses",
        )?
        .map(|a| a.addresses)
        .unwrap_or_default(),
        capabilities: capabilities(root, "Channel/Capabilities")?,
    })
}

pub(super) fn orderer_values(
    orderer: &ConfigGroup,
    consensus_type: &str,
    consensus_metadata: &Bytes,
    consensus_state: i32,
) -> Result<OrdererValues, ChannelConfigError> {
    let consensus_state = match consensus_state {
        0 => ConsensusState::Normal,
        1 => ConsensusState::Maintenance,
        other => {
            return Err(ChannelConfigError::Invalid {
                path: "Channel/Orderer/ConsensusType",
                reason: format!("unknown state {other}"),
            })
        }
    };
    let etcdraft = if consensus_type == ETCDRAFT {
        let metadata =
            etcdraft::ConfigMetadata::decode(consensus_metadata.clone()).map_err(|e| {
                ChannelConfigError::Invalid {
                    path: "Channel/Orderer/ConsensusType",
                    reason: format!("etcdraft metadata: {e}"),
                }
            })?;
        if metadata.consenters.is_empty() {
            return Err(ChannelConfigError::Invalid {
                path: "Channel/Orderer/ConsensusType",
                reason: "etcdraft metadata names no consenters".into(),
            });
        }
        Some(EtcdRaftConfig {
            consenters: metadata.consenters,
            options: metadata.options,
        })
    } else {
        None
    };
    let max_channels = optional::<crate::fabric::protos::orderer::ChannelRestrictions>(
        orderer,
        keys::CHANNEL_RESTRICTIONS,
        "Channel/Orderer/ChannelRestrictions",
    )?
    .map(|r| r.max_count)
    .unwrap_or(0);
    Ok(OrdererValues {
        consensus_state,
        etcdraft,
        max_channels,
        capabilities: capabilities(orderer, "Channel/Orderer/Capabilities")?,
        organizations: organizations(orderer, "Channel/Orderer")?,
    })
}

pub(super) fn application_values(
    application: &ConfigGroup,
) -> Result<ApplicationValues, ChannelConfigError> {
    Ok(ApplicationValues {
        capabilities: capabilities(application, "Channel/Application/Capabilities")?,
        organizations: organizations(application, "Channel/Application")?,
    })
}

/// The `Consortiums` group of a system channel: consortium name -> members
/// and creation policy.
pub(super) fn consortiums(
    group: &ConfigGroup,
) -> Result<BTreeMap<String, Consortium>, ChannelConfigError> {
    group
        .groups
        .iter()
        .map(|(name, consortium)| {
            let channel_creation_policy = optional::<crate::fabric::protos::common::Policy>(
                consortium,
                keys::CHANNEL_CREATION_POLICY,
                "Channel/Consortiums/ChannelCreationPolicy",
            )?;
            Ok((
                name.clone(),
                Consortium {
                    name: name.clone(),
                    organizations: organizations(consortium, "Channel/Consortiums")?,
                    channel_creation_policy,
                },
            ))
        })
        .collect()
}

/// Every policy of the tree, by absolute path (`/Channel/Orderer/Admins`).
pub(super) fn policies(root: &ConfigGroup) -> BTreeMap<String, PolicyInfo> {
    let mut out = BTreeMap::new();
    collect_policies(root, "/Channel", &mut out);
    out
}

fn collect_policies(group: &ConfigGroup, path: &str, out: &mut BTreeMap<String, PolicyInfo>) {
    for (name, policy) in &group.policies {
        let rule = match &policy.policy {
            Some(p) if p.r#type == PolicyType::Signature as i32 => {
                PolicyRule::Signature(p.value.clone())
            }
            Some(p) if p.r#type == PolicyType::ImplicitMeta as i32 => {
                match ImplicitMetaPolicy::decode(p.value.clone()) {
                    Ok(meta) => PolicyRule::ImplicitMeta {
                        rule: meta.rule().as_str_name().to_string(),
                        sub_policy: meta.sub_policy,
                    },
                    Err(_) => PolicyRule::Other {
                        policy_type: p.r#type,
                        value: p.value.clone(),
                    },
                }
            }
            Some(p) => PolicyRule::Other {
                policy_type: p.r#type,
                value: p.value.clone(),
            },
            None => PolicyRule::Other {
                policy_type: 0,
                value: Bytes::new(),
            },
        };
        out.insert(
            format!("{path}/{name}"),
            PolicyInfo {
                rule,
                mod_policy: policy.mod_policy.clone(),
            },
        );
    }
    for (name, child) in &group.groups {
        collect_policies(child, &format!("{path}/{name}"), out);
    }
}

fn organizations(
    group: &ConfigGroup,
    path: &'static str,
) -> Result<BTreeMap<String, Organization>, ChannelConfigError> {
    group
        .groups
        .iter()
        .map(|(name, org)| Ok((name.clone(), organization(name, org, path)?)))
        .collect()
}

fn organization(
    name: &str,
    group: &ConfigGroup,
    path: &'static str,
) -> Result<Organization, ChannelConfigError> {
    let invalid = |reason: String| ChannelConfigError::Invalid {
        path,
        reason: format!("organization {name}: {reason}"),
    };
    let mut org = Organization {
        name: name.to_string(),
        ..Organization::default()
    };
    if let Some(value) = group.values.get(keys::MSP) {
        let msp = MspConfig::decode(value.value.clone())
            .map_err(|e| invalid(format!("MSP value: {e}")))?;
        // Type 0 is Fabric's X.509 MSP; others (idemix) keep only their name.
        if msp.r#type == 0 {
            let fabric = FabricMspConfig::decode(msp.config)
                .map_err(|e| invalid(format!("FabricMSPConfig: {e}")))?;
            if fabric.name.is_empty() {
                return Err(invalid("MSP has no name (MSP ID)".into()));
            }
            org.msp_id = fabric.name;
            org.root_certs = fabric.root_certs;
            org.intermediate_certs = fabric.intermediate_certs;
            org.tls_root_certs = fabric.tls_root_certs;
            org.admins = fabric.admins;
            org.node_ous_enabled = fabric.fabric_node_ous.is_some_and(|n| n.enable);
        }
    }
    if let Some(value) = group.values.get(keys::ENDPOINTS) {
        let endpoints = OrdererAddresses::decode(value.value.clone())
            .map_err(|e| invalid(format!("Endpoints: {e}")))?;
        org.orderer_endpoints = endpoints.addresses;
    }
    Ok(org)
}

fn capabilities(
    group: &ConfigGroup,
    path: &'static str,
) -> Result<Vec<String>, ChannelConfigError> {
    let mut names: Vec<String> = optional::<Capabilities>(group, keys::CAPABILITIES, path)?
        .map(|c| c.capabilities.into_keys().collect())
        .unwrap_or_default();
    names.sort();
    Ok(names)
}

fn optional<M: Message + Default>(
    group: &ConfigGroup,
    key: &str,
    path: &'static str,
) -> Result<Option<M>, ChannelConfigError> {
    group
        .values
        .get(key)
        .map(|v| {
            M::decode(v.value.clone()).map_err(|e| ChannelConfigError::Invalid {
                path,
                reason: e.to_string(),
            })
        })
        .transpose()
}
