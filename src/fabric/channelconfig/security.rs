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
    let mut configs = Vec::new();
    for section in [keys::ORDERER_GROUP, keys::APPLICATION_GROUP] {
        let Some(group) = root.groups.get(section) else {
            continue;
        };
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
