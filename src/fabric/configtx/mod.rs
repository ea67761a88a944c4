//! Config updates: checking a CONFIG_UPDATE against the current config and
//! turning it into the next full config (Fabric's `configtx` validator).
//!
//! The rules, as every OSN applies them:
//! - the update is for this channel;
//! - every element of the read set exists at exactly the version it names;
//! - the delta (write-set elements whose version differs from the read set's)
//!   is not empty; a changed element goes up by exactly one version, a new one
//!   starts at version 0 inside a group that the update also changes;
//! - every changed element names a modification policy that exists, and the
//!   update's signatures satisfy it ([`PolicyEvaluator`]; the node's is
//!   [`ChannelPolicies`], the current config's compiled policies);
//! - every name is one Fabric allows, every mod_policy a valid path;
//! - the resulting config is a valid channel config that this orderer
//!   supports, within the maintenance-mode rules ([`validate`]);
//! - the config block it makes can be read back as start-up reads it, and
//!   every follower can fetch it ([`check_storable`]).
//!
//! The result is a CONFIG envelope (`ConfigEnvelope{config, last_update}`) at
//! sequence + 1; ordering it in a block of its own is the chain's job.

pub mod compute;
pub mod configmap;
pub mod creation;
pub mod semantic;
pub mod validate;

use bytes::Bytes;
use prost::Message;

use crate::fabric::blockutil;
use crate::fabric::channelconfig::genesis::config_envelope;
use crate::fabric::channelconfig::{keys, ChannelConfig};
use crate::fabric::localconfig::DEFAULT_MAX_MESSAGE_BYTES;
use crate::fabric::protos::common::{
    Block, ChannelHeader, Config, ConfigEnvelope, ConfigGroup, ConfigUpdate, ConfigUpdateEnvelope,
    Envelope, HeaderType, Payload,
};
use crate::security::policies::{config_update_as_signed_data, PolicyError};
use configmap::{flatten, rebuild, ConfigMap, ElementKey, Kind};

pub use crate::security::policies::SignedData;

/// The largest block every follower can fetch with Deliver: gRPC's message
/// limit as Fabric sets it by default (`General.MaxSendMsgSize`, 100 MiB).
pub const MAX_BLOCK_BYTES: usize = DEFAULT_MAX_MESSAGE_BYTES;

/// What signing adds to a CONFIG envelope and its block after the checks:
/// the orderer's creator certificate and nonce in the envelope and again in
/// the block's SIGNATURES slot, two signatures, the block's own header.
pub const SIGNING_ROOM: usize = 64 * 1024;

/// Groups allowed directly under `/Channel`.
const CHANNEL_GROUPS: [&str; 3] = [keys::ORDERER_GROUP, keys::APPLICATION_GROUP, "Consortiums"];

/// Why a config update was refused. Broadcast answers BAD_REQUEST with the text.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ConfigUpdateError {
    #[error("{0}")]
    Malformed(String),
    #[error("error authorizing update: ConfigUpdate for channel '{update}' but envelope for channel '{channel}'")]
    WrongChannel { update: String, channel: String },
    #[error("error authorizing update: error mapping {set}: illegal characters in key: {prefix}: {reason}")]
    IllegalKey {
        set: &'static str,
        prefix: &'static str,
        reason: String,
    },
    #[error("error authorizing update: error validating ReadSet: existing config does not contain element for {0} but was in the read set")]
    ReadMissing(String),
    #[error("error authorizing update: error validating ReadSet: proposed update requires that key {key} be at version {wanted}, but it is currently at version {actual}")]
    StaleRead {
        key: String,
        wanted: u64,
        actual: u64,
    },
    #[error("error authorizing update: error validating DeltaSet: delta set was empty -- update would have no effect")]
    EmptyDelta,
    #[error("error authorizing update: error validating DeltaSet: attempt to set key {key} to version {proposed}, but key is at version {current}")]
    VersionJump {
        key: String,
        proposed: u64,
        current: u64,
    },
    #[error("error authorizing update: error validating DeltaSet: attempted to set key {key} to version {proposed}, but key does not exist")]
    NewNotZero { key: String, proposed: u64 },
    #[error("attempt to add {key}, but its group {group} is not part of the update (its version must go up by one)")]
    ParentUnchanged { key: String, group: String },
    #[error("unknown group {0}: only Orderer, Application and Consortiums may sit under /Channel")]
    UnknownGroup(String),
    #[error("error authorizing update: error validating DeltaSet: invalid mod_policy for element {key}: mod_policy not set")]
    NoModPolicy { key: String },
    #[error("error authorizing update: error validating DeltaSet: invalid mod_policy for element {key}: {reason}")]
    InvalidModPolicy { key: String, reason: String },
    #[error("error authorizing update: error validating DeltaSet: policy for {key} not satisfied: {reason}")]
    PolicyNotSatisfied {
        /// The element, as Fabric names it (`[Value]  /Channel/Orderer/BatchSize`).
        key: String,
        policy: String,
        reason: String,
    },
    #[error("error authorizing update: error validating DeltaSet: unexpected missing policy {mod_policy} for item {key}")]
    MissingPolicy { key: String, mod_policy: String },
    #[error("the update would make an invalid config: {0}")]
    InvalidResult(String),
    #[error("attempted to change consensus type from {from} to {to}")]
    ConsensusTypeChange { from: String, to: String },
    #[error("config update is not compatible: {0}")]
    Incompatible(String),
    #[error("{0}")]
    MspIdChange(String),
    /// Refused by the maintenance filter (Broadcast words it as Fabric does).
    #[error("{0}")]
    Maintenance(String),
    #[error("consensus-type migration from {from} to {to} is not supported by this orderer: a running channel cannot switch consenters")]
    MigrationUnsupported { from: String, to: String },
    #[error("etcdraft consenter set changes are not supported by this orderer yet: {0}")]
    ConsenterSetChange(String),
    /// The config block would not read back as start-up reads it (too deep
    /// for the protobuf decoder, for one): ordering it would stop the
    /// channel at the next start.
    #[error("the config block this update makes could not be read back: {0}")]
    Unreadable(String),
    #[error("the config block this update makes is {size} bytes and exceeds the maximum a follower can fetch, {max} bytes")]
    TooLarge { size: usize, max: usize },
}

/// Evaluates a modification policy against an update's signatures.
pub trait PolicyEvaluator: Send + Sync {
    /// `policy`: the absolute path of the policy (`["Channel", "Orderer", "Admins"]`).
    fn evaluate(
        &self,
        config: &ChannelConfig,
        policy: &[String],
        signed: &[SignedData],
    ) -> Result<(), PolicyError>;
}

/// Evaluates with the policies of the config the update applies to.
pub struct ChannelPolicies;

impl PolicyEvaluator for ChannelPolicies {
    fn evaluate(
        &self,
        config: &ChannelConfig,
        policy: &[String],
        signed: &[SignedData],
    ) -> Result<(), PolicyError> {
        config
            .policy_manager
            .evaluate_signed_data(&format!("/{}", policy.join("/")), signed)
    }
}

/// A validated update: the CONFIG envelope to order and the config it makes.
#[derive(Debug, Clone)]
pub struct ProposedConfig {
    pub envelope: Envelope,
    pub config: ChannelConfig,
}

/// Checks a CONFIG_UPDATE envelope against `current` and builds the CONFIG
/// envelope of the next config (Fabric's `ProposeConfigUpdate`).
pub fn propose_config_update(
    current: &ChannelConfig,
    update_envelope: &Envelope,
    policies: &dyn PolicyEvaluator,
) -> Result<ProposedConfig, ConfigUpdateError> {
    let malformed = |what: &str, e: prost::DecodeError| {
        ConfigUpdateError::Malformed(format!("error unmarshalling {what}: {e}"))
    };
    let payload =
        Payload::decode(update_envelope.payload.clone()).map_err(|e| malformed("Payload", e))?;
    let header = payload
        .header
        .ok_or_else(|| ConfigUpdateError::Malformed("payload header not set".into()))?;
    let channel_header =
        ChannelHeader::decode(header.channel_header).map_err(|e| malformed("ChannelHeader", e))?;
    if channel_header.r#type != HeaderType::ConfigUpdate as i32 {
        return Err(ConfigUpdateError::Malformed(format!(
            "expected a CONFIG_UPDATE envelope, got header type {}",
            channel_header.r#type
        )));
    }
    let update_envelope_msg = ConfigUpdateEnvelope::decode(payload.data)
        .map_err(|e| malformed("ConfigUpdateEnvelope", e))?;
    let update = ConfigUpdate::decode(update_envelope_msg.config_update.clone())
        .map_err(|e| malformed("ConfigUpdate", e))?;
    if update.channel_id != current.channel_id {
        return Err(ConfigUpdateError::WrongChannel {
            update: update.channel_id,
            channel: current.channel_id.clone(),
        });
    }
    let signed = signed_data(&update_envelope_msg)?;

    let existing_root = current.config.channel_group.as_ref().ok_or_else(|| {
        ConfigUpdateError::InvalidResult("the current config has no Channel group".into())
    })?;
    let existing = flatten(existing_root);
    if let Some(read) = &update.read_set {
        validate::validate_set_ids("ReadSet", read)?;
    }
    let read_set = update.read_set.as_ref().map(flatten).unwrap_or_default();
    verify_read_set(&existing, &read_set)?;
    if let Some(write) = &update.write_set {
        validate::validate_set_ids("WriteSet", write)?;
    }
    let write_set = update
        .write_set
        .as_ref()
        .map(flatten)
        .ok_or_else(|| ConfigUpdateError::Malformed("config update has no write set".into()))?;

    let delta = delta_set(&read_set, &write_set);
    verify_delta_set(current, &existing, &delta, &signed, policies)?;

    let mut merged = existing;
    merged.extend(delta);
    let root = rebuild(&merged).map_err(|missing| {
        ConfigUpdateError::InvalidResult(format!("the update names {missing} but does not hold it"))
    })?;
    for name in root.groups.keys() {
        if !existing_root.groups.contains_key(name) && !CHANNEL_GROUPS.contains(&name.as_str()) {
            return Err(ConfigUpdateError::UnknownGroup(format!("/Channel/{name}")));
        }
    }
    let config = Config {
        sequence: current.sequence + 1,
        channel_group: Some(root),
    };
    let next = ChannelConfig::from_config(current.channel_id.clone(), config.clone())
        .map_err(|e| ConfigUpdateError::InvalidResult(e.to_string()))?;
    validate::check_next_config(current, &next, &update)?;
    let envelope = config_envelope(&current.channel_id, config, Some(update_envelope.clone()));
    check_storable(&envelope, &next, MAX_BLOCK_BYTES)?;
    Ok(ProposedConfig {
        envelope,
        config: next,
    })
}

/// Checks that the config block holding `envelope` is one the node can
/// live with: encoded as the ledger stores it, decoded as start-up decodes
/// it ([`ChannelConfig::from_config_block`]), it makes `expected` again; and,
/// with room for the signatures still to come, it fits `max_block_bytes`.
pub fn check_storable(
    envelope: &Envelope,
    expected: &ChannelConfig,
    max_block_bytes: usize,
) -> Result<(), ConfigUpdateError> {
    // The block's number and previous hash are not known yet: the largest
    // number and a full hash make it as large as it can be.
    let block = blockutil::new_block(
        u64::MAX,
        Bytes::from(vec![0u8; 32]),
        vec![envelope.encode_to_vec().into()],
        u64::MAX,
        Bytes::new(),
    );
    let stored = block.encode_to_vec();
    let size = stored.len() + SIGNING_ROOM;
    if size > max_block_bytes {
        return Err(ConfigUpdateError::TooLarge {
            size,
            max: max_block_bytes,
        });
    }
    let unreadable = |reason: String| {
        // prost names every level it went through: say it in a line.
        if reason.contains("recursion limit reached") {
            let (depth, path) = expected
                .config
                .channel_group
                .as_ref()
                .map(|root| deepest_group(root, "/Channel"))
                .unwrap_or_default();
            return ConfigUpdateError::Unreadable(format!(
                "the config nests too deeply for the protobuf decoder: {depth} groups down to {path}"
            ));
        }
        ConfigUpdateError::Unreadable(reason)
    };
    let read = Block::decode(stored.as_slice()).map_err(|e| unreadable(e.to_string()))?;
    let config = ChannelConfig::from_config_block(&read).map_err(|e| unreadable(e.to_string()))?;
    if config.channel_id != expected.channel_id || config.config != expected.config {
        return Err(unreadable(
            "it reads back as a different config than the one validated".into(),
        ));
    }
    Ok(())
}

/// How many groups deep the deepest group under `group` is (`group` counts
/// one), and its path.
fn deepest_group(group: &ConfigGroup, path: &str) -> (usize, String) {
    let mut deepest = (1, path.to_string());
    let mut pending = vec![(group, 1, path.to_string())];
    while let Some((group, depth, path)) = pending.pop() {
        if depth > deepest.0 {
            deepest = (depth, path.clone());
        }
        for (name, child) in &group.groups {
            pending.push((child, depth + 1, format!("{path}/{name}")));
        }
    }
    deepest
}

/// The CONFIG_UPDATE an ordered CONFIG envelope was made from, to re-check it
/// when the config moved on before the envelope was ordered.
pub fn last_update(config_envelope_bytes: &Bytes) -> Result<Envelope, ConfigUpdateError> {
    let malformed = |what: &str, e: prost::DecodeError| {
        ConfigUpdateError::Malformed(format!("error unmarshalling {what}: {e}"))
    };
    let envelope =
        Envelope::decode(config_envelope_bytes.clone()).map_err(|e| malformed("Envelope", e))?;
    let payload = Payload::decode(envelope.payload).map_err(|e| malformed("Payload", e))?;
    let config_envelope =
        ConfigEnvelope::decode(payload.data).map_err(|e| malformed("ConfigEnvelope", e))?;
    config_envelope
        .last_update
        .ok_or_else(|| ConfigUpdateError::Malformed("config envelope has no last update".into()))
}

fn signed_data(envelope: &ConfigUpdateEnvelope) -> Result<Vec<SignedData>, ConfigUpdateError> {
    config_update_as_signed_data(envelope).map_err(|e| ConfigUpdateError::Malformed(e.to_string()))
}

fn verify_read_set(existing: &ConfigMap, read_set: &ConfigMap) -> Result<(), ConfigUpdateError> {
    for (key, element) in read_set {
        let current = existing
            .get(key)
            .ok_or_else(|| ConfigUpdateError::ReadMissing(key.to_string()))?;
        if current.version() != element.version() {
            return Err(ConfigUpdateError::StaleRead {
                key: key.to_string(),
                wanted: element.version(),
                actual: current.version(),
            });
        }
    }
    Ok(())
}

/// Write-set elements that the read set does not hold at the same version.
fn delta_set(read_set: &ConfigMap, write_set: &ConfigMap) -> ConfigMap {
    write_set
        .iter()
        .filter(|(key, element)| {
            read_set
                .get(*key)
                .is_none_or(|read| read.version() != element.version())
        })
        .map(|(k, e)| (k.clone(), e.clone()))
        .collect()
}

fn verify_delta_set(
    current: &ChannelConfig,
    existing: &ConfigMap,
    delta: &ConfigMap,
    signed: &[SignedData],
    policies: &dyn PolicyEvaluator,
) -> Result<(), ConfigUpdateError> {
    if delta.is_empty() {
        return Err(ConfigUpdateError::EmptyDelta);
    }
    for (key, element) in delta {
        if element.mod_policy().is_empty() {
            return Err(ConfigUpdateError::NoModPolicy {
                key: key.to_string(),
            });
        }
        validate::validate_mod_policy(element.mod_policy()).map_err(|reason| {
            ConfigUpdateError::InvalidModPolicy {
                key: key.to_string(),
                reason,
            }
        })?;
        match existing.get(key) {
            Some(current_element) => {
                if element.version() != current_element.version() + 1 {
                    return Err(ConfigUpdateError::VersionJump {
                        key: key.to_string(),
                        proposed: element.version(),
                        current: current_element.version(),
                    });
                }
                let policy = mod_policy_path(key, current_element.mod_policy());
                policies
                    .evaluate(current, &policy, signed)
                    .map_err(|e| match e {
                        PolicyError::NoSuchPolicy(_) => ConfigUpdateError::MissingPolicy {
                            key: key.to_string(),
                            mod_policy: current_element.mod_policy().to_string(),
                        },
                        other => ConfigUpdateError::PolicyNotSatisfied {
                            key: key.to_string(),
                            policy: format!("/{}", policy.join("/")),
                            reason: other.to_string(),
                        },
                    })?;
            }
            None => {
                if element.version() != 0 {
                    return Err(ConfigUpdateError::NewNotZero {
                        key: key.to_string(),
                        proposed: element.version(),
                    });
                }
                // A new element is authorised by the change of its group, which
                // is either changed (version + 1) or new itself.
                let group = ElementKey {
                    kind: Kind::Group,
                    path: key.parent_path().to_vec(),
                };
                if !delta.contains_key(&group) {
                    return Err(ConfigUpdateError::ParentUnchanged {
                        key: key.to_string(),
                        group: group.path_string(),
                    });
                }
            }
        }
    }
    Ok(())
}

/// A mod_policy as an absolute path: relative names resolve against the group
/// itself for a group, against the holding group for a value or policy.
fn mod_policy_path(key: &ElementKey, mod_policy: &str) -> Vec<String> {
    if let Some(absolute) = mod_policy.strip_prefix('/') {
        return absolute.split('/').map(str::to_string).collect();
    }
    let mut path = match key.kind {
        Kind::Group => key.path.clone(),
        Kind::Value | Kind::Policy => key.parent_path().to_vec(),
    };
    path.extend(mod_policy.split('/').map(str::to_string));
    path
}

#[cfg(test)]
mod tests;
