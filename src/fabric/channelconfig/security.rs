//! The channel's MSPs and policies, built with its config: every
//! organization's MSP (Orderer and Application groups) in one
//! [`MspManager`], and every policy of the tree in one [`PolicyManager`]
//! that evaluates with it.

use std::sync::Arc;

use prost::Message;

use super::{keys, ChannelConfigError};
use crate::fabric::protos::common::ConfigGroup;
use crate::fabric::protos::msp::MspConfig;
use crate::security::msp::MspManager;
use crate::security::policies::PolicyManager;

pub(super) fn build(
    root: &ConfigGroup,
) -> Result<(Arc<MspManager>, Arc<PolicyManager>), ChannelConfigError> {
    let mut configs: Vec<(String, MspConfig)> = Vec::new();
    // A system channel's consortium members are MSPs of the channel too, as
    // in Fabric; one organization may be a member of several consortiums.
    let mut sections: Vec<(String, &ConfigGroup)> = [keys::ORDERER_GROUP, keys::APPLICATION_GROUP]
        .into_iter()
        .filter_map(|section| root.groups.get(section).map(|g| (section.to_string(), g)))
        .collect();
    if let Some(consortiums) = root.groups.get(keys::CONSORTIUMS_GROUP) {
        let mut names: Vec<&String> = consortiums.groups.keys().collect();
        names.sort();
        for name in names {
            if let Some(group) = consortiums.groups.get(name) {
                sections.push((format!("{}/{name}", keys::CONSORTIUMS_GROUP), group));
            }
        }
    }
    for (section, group) in sections {
        let mut orgs: Vec<(&String, &ConfigGroup)> = group.groups.iter().collect();
        orgs.sort_by(|a, b| a.0.cmp(b.0));
        for (name, org) in orgs {
            let Some(value) = org.values.get(keys::MSP) else {
                continue;
            };
            let config =
                MspConfig::decode(value.value.clone()).map_err(|e| ChannelConfigError::Msp {
                    org: format!("{section}/{name}"),
                    reason: format!("cannot decode the MSP value: {e}"),
                })?;
            // The same MSP defined twice alike is one MSP; defined two ways,
            // Fabric refuses the config, and so does the MSP manager below.
            if configs.iter().any(|(_, known)| *known == config) {
                continue;
            }
            configs.push((format!("{section}/{name}"), config));
        }
    }
    let list: Vec<MspConfig> = configs.iter().map(|(_, c)| c.clone()).collect();
    let msps = MspManager::new(&list).map_err(|e| {
        let org = match &e {
            crate::security::msp::MspError::Setup { msp, .. } => configs
                .iter()
                .find(|(_, c)| msp_name(c).as_deref() == Some(msp.as_str()))
                .map(|(org, _)| org.clone())
                .unwrap_or_default(),
            _ => String::new(),
        };
        ChannelConfigError::Msp {
            org,
            reason: e.to_string(),
        }
    })?;
    let msps = Arc::new(msps);
    let policies = PolicyManager::new(root, msps.clone())
        .map_err(|e| ChannelConfigError::Policy(e.to_string()))?;
    Ok((msps, Arc::new(policies)))
}

fn msp_name(config: &MspConfig) -> Option<String> {
    crate::fabric::protos::msp::FabricMspConfig::decode(config.config.clone())
        .ok()
        .map(|f| f.name)
}
