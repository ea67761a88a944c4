//! Checks of a proposed config beyond versions and signatures, as Fabric's
//! orderer makes them: element names, mod_policy syntax, capabilities this
//! orderer supports, what may change from one config to the next, and the
//! maintenance-mode rules of consensus-type migration.

use crate::fabric::channelconfig::{keys, ChannelConfig, ConsensusState, Organization};
use crate::fabric::protos::common::{ConfigGroup, ConfigUpdate};

use super::configmap::{ElementKey, Kind};
use super::ConfigUpdateError;

/// Longest config element name Fabric accepts.
const MAX_ID_LENGTH: usize = 249;

/// Orderer capabilities Fabric 3.1's orderer supports.
const ORDERER_CAPABILITIES: [&str; 3] = ["V1_1", "V1_4_2", "V2_0"];
/// Channel capabilities Fabric 3.1's orderer supports.
const CHANNEL_CAPABILITIES: [&str; 6] = ["V1_1", "V1_3", "V1_4_2", "V1_4_3", "V2_0", "V3_0"];
/// Consensus types a channel may migrate to in maintenance mode (Fabric 3.x).
const MIGRATION_TARGETS: [&str; 2] = ["etcdraft", "BFT"];

/// Fabric's `ConsensusTypeMigration` orderer capability (V1_4_2 or V2_0): with
/// it, maintenance mode is enforced and consensus-type migration possible.
pub fn consensus_type_migration(config: &ChannelConfig) -> bool {
    config
        .orderer
        .capabilities
        .iter()
        .any(|c| c == "V1_4_2" || c == "V2_0")
}

/// Fabric's rule for the names of groups, values and policies: not empty, at
/// most 249 characters, not "." or "..", only `[a-zA-Z0-9.-]`.
pub fn validate_config_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("config ID illegal, cannot be empty".into());
    }
    if id.len() > MAX_ID_LENGTH {
        return Err(format!(
            "config ID illegal, cannot be longer than {MAX_ID_LENGTH}"
        ));
    }
    if id == "." || id == ".." {
        return Err(format!("config ID illegal, cannot be {id}"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
    {
        return Err(format!("config ID '{id}' contains illegal characters"));
    }
    Ok(())
}

/// A mod_policy must be set, and each element of its path (relative, or
/// absolute with a leading '/') must be a valid config ID.
pub fn validate_mod_policy(mod_policy: &str) -> Result<(), String> {
    if mod_policy.is_empty() {
        return Err("mod_policy not set".into());
    }
    let trimmed = mod_policy.strip_prefix('/').unwrap_or(mod_policy);
    for (i, element) in trimmed.split('/').enumerate() {
        validate_config_id(element).map_err(|e| format!("path element at {i} is invalid: {e}"))?;
    }
    Ok(())
}

/// Checks every name in a read or write set (`set`: "ReadSet" or "WriteSet").
pub fn validate_set_ids(set: &'static str, root: &ConfigGroup) -> Result<(), ConfigUpdateError> {
    let illegal = |kind, reason| ConfigUpdateError::IllegalKey {
        set,
        prefix: ElementKey::prefix(kind),
        reason,
    };
    validate_config_id(super::configmap::ROOT).map_err(|r| illegal(Kind::Group, r))?;
    let mut pending = vec![root];
    while let Some(group) = pending.pop() {
        for name in group.values.keys() {
            validate_config_id(name).map_err(|r| illegal(Kind::Value, r))?;
        }
        for name in group.policies.keys() {
            validate_config_id(name).map_err(|r| illegal(Kind::Policy, r))?;
        }
        for (name, child) in &group.groups {
            validate_config_id(name).map_err(|r| illegal(Kind::Group, r))?;
            pending.push(child);
        }
    }
    Ok(())
}

/// Checks the config an update makes against the current one, in Fabric's
/// order: capabilities this orderer supports, what the new bundle may change
/// (`ValidateNew`), then the maintenance filter.
pub fn check_next_config(
    current: &ChannelConfig,
    next: &ChannelConfig,
    update: &ConfigUpdate,
) -> Result<(), ConfigUpdateError> {
    check_capabilities(next)?;
    validate_new(current, next)?;
    inspect_maintenance(current, next, update).map_err(ConfigUpdateError::Maintenance)?;
    if current.consensus_type != next.consensus_type {
        // Fabric's rules allow it; the chain running this channel cannot hand
        // it to another consenter while it runs.
        return Err(ConfigUpdateError::MigrationUnsupported {
            from: current.consensus_type.clone(),
            to: next.consensus_type.clone(),
        });
    }
    same_consenters(current, next)?;
    Ok(())
}

/// An etcdraft channel keeps its consenters: each keeps its place in the
/// list and its host and port (its certificates may be renewed). Adding,
/// removing or moving a consenter is a Raft membership change, which this
/// orderer does not make yet; it would otherwise give Raft ids to the
/// wrong nodes.
fn same_consenters(current: &ChannelConfig, next: &ChannelConfig) -> Result<(), ConfigUpdateError> {
    let (Some(now), Some(then)) = (&current.orderer.etcdraft, &next.orderer.etcdraft) else {
        return Ok(());
    };
    let refused = ConfigUpdateError::ConsenterSetChange;
    if now.consenters.len() != then.consenters.len() {
        return Err(refused(format!(
            "the update has {} consenters, the channel {}",
            then.consenters.len(),
            now.consenters.len()
        )));
    }
    for (i, (a, b)) in now.consenters.iter().zip(&then.consenters).enumerate() {
        if (a.host.as_str(), a.port) != (b.host.as_str(), b.port) {
            return Err(refused(format!(
                "consenter {} would move from {}:{} to {}:{}",
                i + 1,
                a.host,
                a.port,
                b.host,
                b.port
            )));
        }
    }
    Ok(())
}

/// Fabric's `checkResources`: every capability the config requires must be one
/// this orderer has.
fn check_capabilities(next: &ChannelConfig) -> Result<(), ConfigUpdateError> {
    let unsupported = |kind: &str, wanted: &[String], known: &[&str]| {
        wanted
            .iter()
            .find(|c| !known.contains(&c.as_str()))
            .map(|c| format!("{kind} capability {c} is required but not supported"))
    };
    if let Some(e) = unsupported("Orderer", &next.orderer.capabilities, &ORDERER_CAPABILITIES) {
        // Fabric names the cause twice (its message embeds the error it wraps).
        return Err(ConfigUpdateError::Incompatible(format!(
            "config requires unsupported orderer capabilities: {e}: {e}"
        )));
    }
    if let Some(e) = unsupported("Channel", &next.channel.capabilities, &CHANNEL_CAPABILITIES) {
        return Err(ConfigUpdateError::Incompatible(format!(
            "config requires unsupported channel capabilities: {e}: {e}"
        )));
    }
    Ok(())
}

/// Fabric's `Bundle.ValidateNew`: the consensus type changes only with the
/// migration capability, and no organization changes its MSP ID.
fn validate_new(current: &ChannelConfig, next: &ChannelConfig) -> Result<(), ConfigUpdateError> {
    if !consensus_type_migration(current) && current.consensus_type != next.consensus_type {
        return Err(ConfigUpdateError::ConsensusTypeChange {
            from: current.consensus_type.clone(),
            to: next.consensus_type.clone(),
        });
    }
    same_msp_ids(
        "orderer",
        &current.orderer.organizations,
        &next.orderer.organizations,
    )?;
    if let Some(app) = &current.application {
        let Some(next_app) = &next.application else {
            return Err(ConfigUpdateError::InvalidResult(
                "current config has application section, but new config does not".into(),
            ));
        };
        same_msp_ids("application", &app.organizations, &next_app.organizations)?;
    }
    Ok(())
}

fn same_msp_ids(
    section: &str,
    current: &std::collections::BTreeMap<String, Organization>,
    next: &std::collections::BTreeMap<String, Organization>,
) -> Result<(), ConfigUpdateError> {
    for (name, org) in current {
        if let Some(next_org) = next.get(name) {
            if next_org.msp_id != org.msp_id {
                return Err(ConfigUpdateError::MspIdChange(format!(
                    "{section} org {name} attempted to change MSP ID from {} to {}",
                    org.msp_id, next_org.msp_id
                )));
            }
        }
    }
    Ok(())
}

fn state_name(state: ConsensusState) -> &'static str {
    match state {
        ConsensusState::Normal => "STATE_NORMAL",
        ConsensusState::Maintenance => "STATE_MAINTENANCE",
    }
}

/// Fabric's maintenance filter: entering and leaving maintenance mode changes
/// nothing but ConsensusType.state, and the consensus type changes only inside
/// maintenance mode, to a type Fabric can migrate to.
fn inspect_maintenance(
    current: &ChannelConfig,
    next: &ChannelConfig,
    update: &ConfigUpdate,
) -> Result<(), String> {
    let (from, to) = (&current.consensus_type, &next.consensus_type);
    let (state, next_state) = (
        current.orderer.consensus_state,
        next.orderer.consensus_state,
    );
    if !consensus_type_migration(current) {
        if next_state != ConsensusState::Normal {
            return Err(format!(
                "next config attempted to change ConsensusType.State to {}, but capability is disabled",
                state_name(next_state)
            ));
        }
        if from != to {
            return Err(format!(
                "next config attempted to change ConsensusType.Type from {from} to {to}, but capability is disabled"
            ));
        }
        return Ok(());
    }
    if state != next_state {
        consensus_type_change_only(update)?;
        if from != to {
            return Err(format!(
                "attempted to change ConsensusType.Type from {from} to {to}, but ConsensusType.State is changing from {} to {}",
                state_name(state),
                state_name(next_state)
            ));
        }
        if current.consensus_metadata != next.consensus_metadata {
            return Err(format!(
                "attempted to change ConsensusType.Metadata, but ConsensusType.State is changing from {} to {}",
                state_name(state),
                state_name(next_state)
            ));
        }
    }
    if from != to {
        if state == ConsensusState::Normal {
            return Err(format!(
                "attempted to change consensus type from {from} to {to}, but current config ConsensusType.State is not in maintenance mode"
            ));
        }
        if next_state == ConsensusState::Normal {
            return Err(format!(
                "attempted to change consensus type from {from} to {to}, but next config ConsensusType.State is not in maintenance mode"
            ));
        }
        if !MIGRATION_TARGETS.contains(&to.as_str()) {
            return Err(format!(
                "attempted to change consensus type from {from} to {to}, transition not supported"
            ));
        }
    }
    Ok(())
}

/// The write set of an update that enters or leaves maintenance mode may hold
/// the Orderer group with its ConsensusType value and nothing else.
fn consensus_type_change_only(update: &ConfigUpdate) -> Result<(), String> {
    let empty = ConfigGroup::default();
    let write_set = update.write_set.as_ref().unwrap_or(&empty);
    if write_set.groups.is_empty() {
        return Err("config update contains no changes".into());
    }
    if !write_set.values.is_empty() {
        return Err(format!(
            "config update contains changes to values in group {}",
            super::configmap::ROOT
        ));
    }
    if write_set.groups.len() > 1 {
        return Err("config update contains changes to more than one group".into());
    }
    let Some(orderer) = write_set.groups.get(keys::ORDERER_GROUP) else {
        return Err(format!(
            "update does not contain the {} group",
            keys::ORDERER_GROUP
        ));
    };
    if !orderer.groups.is_empty() {
        return Err(format!(
            "config update contains changes to groups within the {} group",
            keys::ORDERER_GROUP
        ));
    }
    if !orderer.values.contains_key(keys::CONSENSUS_TYPE) {
        return Err(format!(
            "config update does not contain the {} value",
            keys::CONSENSUS_TYPE
        ));
    }
    if orderer.values.len() > 1 {
        return Err(format!(
            "config update contain more then just the {} value in the {} group",
            keys::CONSENSUS_TYPE,
            keys::ORDERER_GROUP
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_ids_follow_fabric_rules() {
        for ok in ["Orderer", "Org1MSP", "a.b-c", "V2-0"] {
            assert_eq!(validate_config_id(ok), Ok(()), "{ok}");
        }
        assert_eq!(
            validate_config_id(""),
            Err("config ID illegal, cannot be empty".into())
        );
        assert_eq!(
            validate_config_id(".."),
            Err("config ID illegal, cannot be ..".into())
        );
        assert_eq!(
            validate_config_id(&"a".repeat(250)),
            Err("config ID illegal, cannot be longer than 249".into())
        );
        assert!(validate_config_id(&"a".repeat(249)).is_ok());
        for bad in ["a b", "a_b", "a/b", "é"] {
            assert_eq!(
                validate_config_id(bad),
                Err(format!("config ID '{bad}' contains illegal characters")),
                "{bad}"
            );
        }
    }

    #[test]
    fn mod_policies_are_relative_or_absolute_paths_of_ids() {
        for ok in ["Admins", "/Channel/Orderer/Admins", "Orderer/Admins"] {
            assert_eq!(validate_mod_policy(ok), Ok(()), "{ok}");
        }
        assert_eq!(validate_mod_policy(""), Err("mod_policy not set".into()));
        assert_eq!(
            validate_mod_policy("/"),
            Err("path element at 0 is invalid: config ID illegal, cannot be empty".into())
        );
        assert_eq!(
            validate_mod_policy("/Channel//Admins"),
            Err("path element at 1 is invalid: config ID illegal, cannot be empty".into())
        );
        assert_eq!(
            validate_mod_policy("Org 1/Admins"),
            Err(
                "path element at 0 is invalid: config ID 'Org 1' contains illegal characters"
                    .into()
            )
        );
    }
}
