//! `ordo genesis`: genesis config blocks from profiles in a `configtx.yaml`,
//! a readable subset of Fabric's file of the same name.
//!
//! The subset: `Organizations` (Name, ID, MSPDir, Policies, OrdererEndpoints),
//! `Orderer` defaults (OrdererType, Addresses, BatchTimeout, BatchSize,
//! MaxChannels, EtcdRaft consenters and options, Kafka brokers, Policies,
//! Capabilities),
//! `Application`, `Channel` and `Profiles`. YAML anchors, aliases and `<<`
//! merge keys work as in Fabric's samples; a profile may also list
//! organizations by name. Paths (MSPDir, TLS certificates) are relative to the
//! file's folder. Policies left out get configtxgen's defaults.

mod consortiums;
pub mod msp;
pub mod policydsl;

pub use consortiums::sign_channel_creation;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use prost::Message;
use serde::Deserialize;

use crate::fabric::channelconfig::genesis::{genesis_block, hashing_values, value, KAFKA_BROKERS};
use crate::fabric::channelconfig::{keys, parse_go_duration, ETCDRAFT};
use crate::fabric::localconfig::parse_byte_size;
use crate::fabric::protos::common::{
    implicit_meta_policy::Rule, policy::PolicyType, Block, Capabilities, Capability, Config,
    ConfigGroup, ConfigPolicy, ConfigValue, ImplicitMetaPolicy, OrdererAddresses, Policy,
};
use crate::fabric::protos::etcdraft;
use crate::fabric::protos::orderer::{
    BatchSize, BatchTimeout, ChannelRestrictions, ConsensusType, KafkaBrokers,
};

/// Consensus type name of the Kafka consenter.
const KAFKA: &str = "kafka";

/// The file name Fabric's tools look for.
pub const CONFIGTX_FILE: &str = "configtx.yaml";

#[derive(Debug, thiserror::Error)]
pub enum GenesisError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid configtx.yaml: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("profile {name:?} is not in {path} (profiles: {known})")]
    NoProfile {
        name: String,
        path: PathBuf,
        known: String,
    },
    #[error("profile {profile}: {reason}")]
    Invalid { profile: String, reason: String },
    #[error("profile {profile}: {source}")]
    Msp {
        profile: String,
        source: msp::MspError,
    },
    #[error("profile {profile}: {source}")]
    Policy {
        profile: String,
        source: policydsl::PolicyDslError,
    },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigTxYaml {
    #[serde(default)]
    organizations: Vec<OrganizationYaml>,
    #[serde(default)]
    profiles: BTreeMap<String, ProfileYaml>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProfileYaml {
    orderer: Option<OrdererYaml>,
    application: Option<ApplicationYaml>,
    /// A system channel's consortiums (Fabric 1.x/2.x).
    #[serde(default)]
    consortiums: Option<BTreeMap<String, consortiums::ConsortiumYaml>>,
    /// The consortium a channel-creation profile creates its channel in.
    #[serde(default)]
    consortium: Option<String>,
    #[serde(default)]
    policies: Option<BTreeMap<String, PolicyYaml>>,
    #[serde(default)]
    capabilities: Option<BTreeMap<String, bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrdererYaml {
    orderer_type: String,
    #[serde(default)]
    addresses: Option<Vec<String>>,
    batch_timeout: String,
    batch_size: BatchSizeYaml,
    #[serde(default)]
    max_channels: u64,
    etcd_raft: Option<EtcdRaftYaml>,
    kafka: Option<KafkaYaml>,
    #[serde(default)]
    organizations: Option<Vec<OrganizationRef>>,
    #[serde(default)]
    policies: Option<BTreeMap<String, PolicyYaml>>,
    #[serde(default)]
    capabilities: Option<BTreeMap<String, bool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct KafkaYaml {
    #[serde(default)]
    brokers: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct BatchSizeYaml {
    max_message_count: u32,
    absolute_max_bytes: ByteSize,
    preferred_max_bytes: ByteSize,
}

/// "10 MB" or a number of bytes.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ByteSize {
    Bytes(u64),
    Text(String),
}

impl ByteSize {
    fn bytes(&self) -> Option<u64> {
        match self {
            ByteSize::Bytes(n) => Some(*n),
            ByteSize::Text(t) => parse_byte_size(t).map(|n| n as u64),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EtcdRaftYaml {
    #[serde(default)]
    consenters: Vec<ConsenterYaml>,
    options: Option<EtcdRaftOptionsYaml>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConsenterYaml {
    host: String,
    port: u32,
    #[serde(rename = "ClientTLSCert")]
    client_tls_cert: String,
    #[serde(rename = "ServerTLSCert")]
    server_tls_cert: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct EtcdRaftOptionsYaml {
    tick_interval: Option<String>,
    election_tick: Option<u32>,
    heartbeat_tick: Option<u32>,
    max_inflight_blocks: Option<u32>,
    snapshot_interval_size: Option<ByteSize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ApplicationYaml {
    #[serde(default)]
    organizations: Option<Vec<OrganizationRef>>,
    #[serde(default)]
    policies: Option<BTreeMap<String, PolicyYaml>>,
    #[serde(default)]
    capabilities: Option<BTreeMap<String, bool>>,
}

/// An organization written out (or aliased), or named.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum OrganizationRef {
    Name(String),
    Inline(OrganizationYaml),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OrganizationYaml {
    name: String,
    #[serde(rename = "ID")]
    id: String,
    #[serde(rename = "MSPDir")]
    msp_dir: String,
    #[serde(default)]
    policies: Option<BTreeMap<String, PolicyYaml>>,
    #[serde(default)]
    orderer_endpoints: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PolicyYaml {
    #[serde(rename = "Type")]
    kind: String,
    rule: String,
}

/// A loaded configtx.yaml.
#[derive(Debug, Clone)]
pub struct ConfigTx {
    path: PathBuf,
    base_dir: PathBuf,
    parsed: ConfigTxYaml,
}

impl ConfigTx {
    /// Loads `configtx.yaml` from a file, or from a folder that holds one.
    pub fn load(path: &Path) -> Result<ConfigTx, GenesisError> {
        let path = if path.is_dir() {
            path.join(CONFIGTX_FILE)
        } else {
            path.to_path_buf()
        };
        let text = std::fs::read_to_string(&path).map_err(|source| GenesisError::Read {
            path: path.clone(),
            source,
        })?;
        let parse_err = |reason: String| GenesisError::Parse {
            path: path.clone(),
            reason,
        };
        let mut tree: serde_json::Value = config::Config::builder()
            .add_source(config::File::from_str(&text, config::FileFormat::Yaml))
            .build()
            .and_then(|c| c.try_deserialize())
            .map_err(|e| parse_err(e.to_string()))?;
        apply_merge_keys(&mut tree);
        let parsed: ConfigTxYaml =
            serde_json::from_value(tree).map_err(|e| parse_err(e.to_string()))?;
        let base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        Ok(ConfigTx {
            path,
            base_dir,
            parsed,
        })
    }

    pub fn profile_names(&self) -> Vec<String> {
        self.parsed.profiles.keys().cloned().collect()
    }

    /// The config tree of a profile, at sequence 0.
    pub fn channel_config(&self, profile: &str) -> Result<Config, GenesisError> {
        let found = self
            .parsed
            .profiles
            .get(profile)
            .ok_or_else(|| GenesisError::NoProfile {
                name: profile.to_string(),
                path: self.path.clone(),
                known: self.profile_names().join(", "),
            })?;
        let builder = Builder {
            profile,
            base_dir: &self.base_dir,
            organizations: &self.parsed.organizations,
        };
        builder.channel(found)
    }

    /// Block 0 of channel `channel_id` from `profile`.
    pub fn genesis_block(&self, profile: &str, channel_id: &str) -> Result<Block, GenesisError> {
        crate::fabric::channelconfig::validate_channel_id(channel_id).map_err(|e| {
            GenesisError::Invalid {
                profile: profile.to_string(),
                reason: e.to_string(),
            }
        })?;
        let config = self.channel_config(profile)?;
        // The block must make a valid channel config for Ordo itself.
        crate::fabric::channelconfig::ChannelConfig::from_config(
            channel_id.to_string(),
            config.clone(),
        )
        .map_err(|e| GenesisError::Invalid {
            profile: profile.to_string(),
            reason: e.to_string(),
        })?;
        Ok(genesis_block(channel_id, config))
    }
}

/// Resolves YAML `<<` merge keys: the merged maps' entries that the map does
/// not set itself.
fn apply_merge_keys(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(merged) = map.remove("<<") {
                let sources = match merged {
                    serde_json::Value::Array(list) => list,
                    other => vec![other],
                };
                for source in sources {
                    if let serde_json::Value::Object(entries) = source {
                        for (key, v) in entries {
                            map.entry(key).or_insert(v);
                        }
                    }
                }
            }
            for v in map.values_mut() {
                apply_merge_keys(v);
            }
        }
        serde_json::Value::Array(list) => list.iter_mut().for_each(apply_merge_keys),
        _ => {}
    }
}

struct Builder<'a> {
    profile: &'a str,
    base_dir: &'a Path,
    organizations: &'a [OrganizationYaml],
}

impl Builder<'_> {
    fn invalid(&self, reason: impl Into<String>) -> GenesisError {
        GenesisError::Invalid {
            profile: self.profile.to_string(),
            reason: reason.into(),
        }
    }

    fn channel(&self, profile: &ProfileYaml) -> Result<Config, GenesisError> {
        let orderer = profile
            .orderer
            .as_ref()
            .ok_or_else(|| self.invalid("has no Orderer section"))?;
        let mut groups = HashMap::from([(keys::ORDERER_GROUP.to_string(), self.orderer(orderer)?)]);
        if let Some(application) = &profile.application {
            groups.insert(
                keys::APPLICATION_GROUP.to_string(),
                self.application(application)?,
            );
        }
        if let Some(consortiums) = &profile.consortiums {
            groups.insert(
                keys::CONSORTIUMS_GROUP.to_string(),
                self.consortiums(consortiums)?,
            );
        }
        let mut values = hashing_values();
        values.extend(consortiums::consortium_value(profile.consortium.as_deref()));
        if let Some(addresses) = orderer.addresses.as_ref().filter(|a| !a.is_empty()) {
            values.extend([value(
                keys::ORDERER_ADDRESSES,
                &OrdererAddresses {
                    addresses: addresses.clone(),
                },
            )]);
        }
        values.extend(capabilities(&profile.capabilities));
        let policies = self.policies(&profile.policies, &meta_defaults(false))?;
        Ok(Config {
            sequence: 0,
            channel_group: Some(group(groups, values, policies)),
        })
    }

    fn orderer(&self, orderer: &OrdererYaml) -> Result<ConfigGroup, GenesisError> {
        if orderer.orderer_type.is_empty() {
            return Err(self.invalid("Orderer.OrdererType is empty"));
        }
        parse_go_duration(&orderer.batch_timeout)
            .map_err(|e| self.invalid(format!("Orderer.BatchTimeout: {e}")))?;
        let size = |name: &str, s: &ByteSize| -> Result<u32, GenesisError> {
            s.bytes()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.invalid(format!("Orderer.BatchSize.{name} is not a size")))
        };
        let batch_size = BatchSize {
            max_message_count: orderer.batch_size.max_message_count,
            absolute_max_bytes: size("AbsoluteMaxBytes", &orderer.batch_size.absolute_max_bytes)?,
            preferred_max_bytes: size(
                "PreferredMaxBytes",
                &orderer.batch_size.preferred_max_bytes,
            )?,
        };
        let metadata = if orderer.orderer_type == ETCDRAFT {
            self.etcdraft_metadata(orderer.etcd_raft.as_ref())?
                .encode_to_vec()
                .into()
        } else {
            Bytes::new()
        };
        let mut values = HashMap::from([
            value(keys::BATCH_SIZE, &batch_size),
            value(
                keys::BATCH_TIMEOUT,
                &BatchTimeout {
                    timeout: orderer.batch_timeout.clone(),
                },
            ),
            value(
                keys::CONSENSUS_TYPE,
                &ConsensusType {
                    r#type: orderer.orderer_type.clone(),
                    metadata,
                    state: 0,
                },
            ),
            value(
                keys::CHANNEL_RESTRICTIONS,
                &ChannelRestrictions {
                    max_count: orderer.max_channels,
                },
            ),
        ]);
        values.extend(capabilities(&orderer.capabilities));
        if orderer.orderer_type == KAFKA {
            // As configtxgen: a kafka channel names its brokers.
            let brokers = orderer
                .kafka
                .as_ref()
                .map(|k| k.brokers.clone())
                .unwrap_or_default();
            if brokers.is_empty() {
                return Err(self.invalid("OrdererType kafka needs Orderer.Kafka.Brokers"));
            }
            values.extend([value(KAFKA_BROKERS, &KafkaBrokers { brokers })]);
        }
        let mut defaults = meta_defaults(false);
        defaults.push((
            keys::BLOCK_VALIDATION,
            implicit_meta(keys::WRITERS, Rule::Any),
        ));
        let policies = self.policies(&orderer.policies, &defaults)?;
        let groups = self.organizations(orderer.organizations.as_deref(), true)?;
        Ok(group(groups, values, policies))
    }

    fn etcdraft_metadata(
        &self,
        raft: Option<&EtcdRaftYaml>,
    ) -> Result<etcdraft::ConfigMetadata, GenesisError> {
        let raft =
            raft.ok_or_else(|| self.invalid("OrdererType etcdraft needs Orderer.EtcdRaft"))?;
        if raft.consenters.is_empty() {
            return Err(self.invalid("Orderer.EtcdRaft.Consenters is empty"));
        }
        let consenters = raft
            .consenters
            .iter()
            .map(|c| {
                let cert = |file: &str| {
                    msp::read_cert(&self.base_dir.join(file)).map_err(|source| GenesisError::Msp {
                        profile: self.profile.to_string(),
                        source,
                    })
                };
                Ok(etcdraft::Consenter {
                    host: c.host.clone(),
                    port: c.port,
                    client_tls_cert: cert(&c.client_tls_cert)?,
                    server_tls_cert: cert(&c.server_tls_cert)?,
                })
            })
            .collect::<Result<Vec<_>, GenesisError>>()?;
        let given = raft.options.as_ref();
        let snapshot = match given.and_then(|o| o.snapshot_interval_size.as_ref()) {
            Some(s) => s
                .bytes()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| {
                    self.invalid("EtcdRaft.Options.SnapshotIntervalSize is not a size")
                })?,
            None => 16 * 1024 * 1024,
        };
        let tick = given
            .and_then(|o| o.tick_interval.clone())
            .unwrap_or_else(|| "500ms".into());
        parse_go_duration(&tick)
            .map_err(|e| self.invalid(format!("EtcdRaft.Options.TickInterval: {e}")))?;
        Ok(etcdraft::ConfigMetadata {
            consenters,
            options: Some(etcdraft::Options {
                tick_interval: tick,
                election_tick: given.and_then(|o| o.election_tick).unwrap_or(10),
                heartbeat_tick: given.and_then(|o| o.heartbeat_tick).unwrap_or(1),
                max_inflight_blocks: given.and_then(|o| o.max_inflight_blocks).unwrap_or(5),
                snapshot_interval_size: snapshot,
            }),
        })
    }

    fn application(&self, application: &ApplicationYaml) -> Result<ConfigGroup, GenesisError> {
        let values = capabilities(&application.capabilities).collect();
        let policies = self.policies(&application.policies, &meta_defaults(true))?;
        let groups = self.organizations(application.organizations.as_deref(), false)?;
        Ok(group(groups, values, policies))
    }

    fn organizations(
        &self,
        refs: Option<&[OrganizationRef]>,
        orderer: bool,
    ) -> Result<HashMap<String, ConfigGroup>, GenesisError> {
        let mut groups = HashMap::new();
        for org_ref in refs.unwrap_or_default() {
            let org = match org_ref {
                OrganizationRef::Inline(org) => org,
                OrganizationRef::Name(name) => self
                    .organizations
                    .iter()
                    .find(|o| &o.name == name)
                    .ok_or_else(|| self.invalid(format!("organization {name:?} is not defined")))?,
            };
            groups.insert(org.name.clone(), self.organization(org, orderer)?);
        }
        Ok(groups)
    }

    fn organization(
        &self,
        org: &OrganizationYaml,
        orderer: bool,
    ) -> Result<ConfigGroup, GenesisError> {
        if org.id.is_empty() {
            return Err(self.invalid(format!("organization {} has no ID", org.name)));
        }
        let msp = msp::read_msp(&self.base_dir.join(&org.msp_dir), &org.id).map_err(|source| {
            GenesisError::Msp {
                profile: self.profile.to_string(),
                source,
            }
        })?;
        let mut values = HashMap::from([value(keys::MSP, &msp)]);
        if let Some(endpoints) = org.orderer_endpoints.as_ref().filter(|e| !e.is_empty()) {
            values.extend([value(
                keys::ENDPOINTS,
                &OrdererAddresses {
                    addresses: endpoints.clone(),
                },
            )]);
        }
        let member = format!("OR('{}.member')", org.id);
        let admin = format!("OR('{}.admin')", org.id);
        let mut defaults = vec![
            (keys::READERS, PolicyYaml::signature(&member)),
            (keys::WRITERS, PolicyYaml::signature(&member)),
            (keys::ADMINS, PolicyYaml::signature(&admin)),
        ];
        if !orderer {
            defaults.push(("Endorsement", PolicyYaml::signature(&member)));
        }
        let policies = self.policies(&org.policies, &defaults)?;
        Ok(group(HashMap::new(), values, policies))
    }

    fn policies(
        &self,
        given: &Option<BTreeMap<String, PolicyYaml>>,
        defaults: &[(&str, PolicyYaml)],
    ) -> Result<HashMap<String, ConfigPolicy>, GenesisError> {
        let chosen: Vec<(String, PolicyYaml)> = match given {
            Some(map) => map.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            None => defaults
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        chosen
            .into_iter()
            .map(|(name, policy)| Ok((name, self.policy(&policy)?)))
            .collect()
    }

    fn policy(&self, policy: &PolicyYaml) -> Result<ConfigPolicy, GenesisError> {
        let (policy_type, value) = match policy.kind.as_str() {
            "ImplicitMeta" => {
                let (rule, sub_policy) = policy
                    .rule
                    .trim()
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| {
                        self.invalid(format!(
                            "ImplicitMeta rule {:?} is not \"ANY|ALL|MAJORITY SubPolicy\"",
                            policy.rule
                        ))
                    })?;
                let rule = match rule {
                    "ANY" => Rule::Any,
                    "ALL" => Rule::All,
                    "MAJORITY" => Rule::Majority,
                    other => {
                        return Err(self.invalid(format!("unknown ImplicitMeta rule {other:?}")))
                    }
                };
                (
                    PolicyType::ImplicitMeta,
                    ImplicitMetaPolicy {
                        sub_policy: sub_policy.trim().to_string(),
                        rule: rule as i32,
                    }
                    .encode_to_vec(),
                )
            }
            "Signature" => (
                PolicyType::Signature,
                policydsl::parse(&policy.rule)
                    .map_err(|source| GenesisError::Policy {
                        profile: self.profile.to_string(),
                        source,
                    })?
                    .encode_to_vec(),
            ),
            other => {
                return Err(self.invalid(format!(
                    "unknown policy type {other:?} (Signature or ImplicitMeta)"
                )))
            }
        };
        Ok(ConfigPolicy {
            version: 0,
            policy: Some(Policy {
                r#type: policy_type as i32,
                value: value.into(),
            }),
            mod_policy: keys::ADMINS.into(),
        })
    }
}

impl PolicyYaml {
    fn signature(rule: &str) -> PolicyYaml {
        PolicyYaml {
            kind: "Signature".into(),
            rule: rule.into(),
        }
    }
}

fn implicit_meta(sub_policy: &str, rule: Rule) -> PolicyYaml {
    PolicyYaml {
        kind: "ImplicitMeta".into(),
        rule: format!("{} {sub_policy}", rule.as_str_name()),
    }
}

/// configtxgen's defaults: Readers/Writers ANY, Admins MAJORITY; the
/// Application group adds the endorsement policies.
fn meta_defaults(application: bool) -> Vec<(&'static str, PolicyYaml)> {
    let mut defaults = vec![
        (keys::READERS, implicit_meta(keys::READERS, Rule::Any)),
        (keys::WRITERS, implicit_meta(keys::WRITERS, Rule::Any)),
        (keys::ADMINS, implicit_meta(keys::ADMINS, Rule::Majority)),
    ];
    if application {
        defaults.push((
            "LifecycleEndorsement",
            implicit_meta("Endorsement", Rule::Majority),
        ));
        defaults.push(("Endorsement", implicit_meta("Endorsement", Rule::Majority)));
    }
    defaults
}

fn group(
    groups: HashMap<String, ConfigGroup>,
    values: HashMap<String, ConfigValue>,
    policies: HashMap<String, ConfigPolicy>,
) -> ConfigGroup {
    ConfigGroup {
        version: 0,
        groups,
        values,
        policies,
        mod_policy: keys::ADMINS.into(),
    }
}

/// The `Capabilities` value of the names set to true, if any.
fn capabilities(
    given: &Option<BTreeMap<String, bool>>,
) -> impl Iterator<Item = (String, ConfigValue)> {
    let names: HashMap<String, Capability> = given
        .iter()
        .flatten()
        .filter(|(_, on)| **on)
        .map(|(name, _)| (name.clone(), Capability {}))
        .collect();
    (!names.is_empty())
        .then(|| {
            value(
                keys::CAPABILITIES,
                &Capabilities {
                    capabilities: names,
                },
            )
        })
        .into_iter()
}

#[cfg(test)]
mod tests;
