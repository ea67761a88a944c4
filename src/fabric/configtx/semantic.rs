//! Config equality by meaning, not bytes. Two encoders can write the same
//! message differently (map entries in another order; Go and Python write an
//! empty message as a map value, prost leaves it out), so config values and
//! policies of known types are compared decoded.

use prost::Message;

use crate::fabric::protos::common::{
    policy::PolicyType, BlockDataHashingStructure, Capabilities, ConfigGroup, ConfigPolicy,
    ConfigValue, Consortium, HashingAlgorithm, ImplicitMetaPolicy, OrdererAddresses,
    SignaturePolicyEnvelope,
};
use crate::fabric::protos::msp::{FabricMspConfig, MspConfig};
use crate::fabric::protos::orderer::{BatchSize, BatchTimeout, ChannelRestrictions, ConsensusType};

fn same_as<M: Message + Default + PartialEq>(a: &[u8], b: &[u8]) -> bool {
    match (M::decode(a), M::decode(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

fn same_consensus_type(a: &[u8], b: &[u8]) -> bool {
    match (ConsensusType::decode(a), ConsensusType::decode(b)) {
        (Ok(x), Ok(y)) => {
            x.r#type == y.r#type
                && x.state == y.state
                && (x.metadata == y.metadata
                    || (x.r#type == crate::fabric::channelconfig::ETCDRAFT
                        && same_as::<crate::fabric::protos::etcdraft::ConfigMetadata>(
                            &x.metadata,
                            &y.metadata,
                        )))
        }
        _ => false,
    }
}

fn same_msp(a: &[u8], b: &[u8]) -> bool {
    match (MspConfig::decode(a), MspConfig::decode(b)) {
        (Ok(x), Ok(y)) => {
            x.r#type == y.r#type
                && (x.config == y.config
                    || (x.r#type == 0 && same_as::<FabricMspConfig>(&x.config, &y.config)))
        }
        _ => false,
    }
}

/// Whether two values stored under `key` mean the same.
pub fn same_value_bytes(key: &str, a: &[u8], b: &[u8]) -> bool {
    if a == b {
        return true;
    }
    match key {
        "Capabilities" => same_as::<Capabilities>(a, b),
        "BatchSize" => same_as::<BatchSize>(a, b),
        "BatchTimeout" => same_as::<BatchTimeout>(a, b),
        "ConsensusType" => same_consensus_type(a, b),
        "ChannelRestrictions" => same_as::<ChannelRestrictions>(a, b),
        "HashingAlgorithm" => same_as::<HashingAlgorithm>(a, b),
        "BlockDataHashingStructure" => same_as::<BlockDataHashingStructure>(a, b),
        "OrdererAddresses" | "Endpoints" => same_as::<OrdererAddresses>(a, b),
        "Consortium" => same_as::<Consortium>(a, b),
        "MSP" => same_msp(a, b),
        _ => false,
    }
}

pub fn same_value(key: &str, a: &ConfigValue, b: &ConfigValue) -> bool {
    a.version == b.version
        && a.mod_policy == b.mod_policy
        && same_value_bytes(key, &a.value, &b.value)
}

/// Whether two policies (ignoring versions and mod_policy) mean the same.
pub fn same_policy_rule(a: &ConfigPolicy, b: &ConfigPolicy) -> bool {
    match (&a.policy, &b.policy) {
        (Some(x), Some(y)) if x.r#type == y.r#type => {
            x.value == y.value
                || (x.r#type == PolicyType::Signature as i32
                    && same_as::<SignaturePolicyEnvelope>(&x.value, &y.value))
                || (x.r#type == PolicyType::ImplicitMeta as i32
                    && same_as::<ImplicitMetaPolicy>(&x.value, &y.value))
        }
        (None, None) => true,
        _ => false,
    }
}

/// Whether two config trees mean the same, versions and mod policies included.
pub fn same_group(a: &ConfigGroup, b: &ConfigGroup) -> bool {
    a.version == b.version
        && a.mod_policy == b.mod_policy
        && a.values.len() == b.values.len()
        && a.policies.len() == b.policies.len()
        && a.groups.len() == b.groups.len()
        && a.values
            .iter()
            .all(|(k, v)| b.values.get(k).is_some_and(|w| same_value(k, v, w)))
        && a.policies.iter().all(|(k, p)| {
            b.policies.get(k).is_some_and(|q| {
                p.version == q.version && p.mod_policy == q.mod_policy && same_policy_rule(p, q)
            })
        })
        && a.groups
            .iter()
            .all(|(k, g)| b.groups.get(k).is_some_and(|h| same_group(g, h)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::common::Capability;

    #[test]
    fn an_empty_map_value_written_out_or_left_out_is_the_same() {
        let caps = Capabilities {
            capabilities: [("V2_0".to_string(), Capability {})].into(),
        };
        let prost_bytes = caps.encode_to_vec();
        // As Go and Python write it: the entry's empty value message is present.
        let explicit = b"\n\x08\n\x04V2_0\x12\0".to_vec();
        assert_ne!(prost_bytes, explicit);
        assert!(same_value_bytes("Capabilities", &prost_bytes, &explicit));
        assert!(!same_value_bytes("Unknown", &prost_bytes, &explicit));
        let other = Capabilities {
            capabilities: [("V3_0".to_string(), Capability {})].into(),
        };
        assert!(!same_value_bytes(
            "Capabilities",
            &prost_bytes,
            &other.encode_to_vec()
        ));
    }
}
