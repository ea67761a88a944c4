//! A channel's configuration, read once from its config block into typed values.
//!
//! The rest of the node reads batch sizes, timeouts and the consensus type from
//! [`ChannelConfig`] and never walks the raw config tree itself. The config
//! also carries the channel's MSPs and compiled policies
//! ([`ChannelConfig::msp_manager`], [`ChannelConfig::policy_manager`]): a
//! config whose MSPs or policies cannot be set up is invalid.

pub mod duration;
pub mod genesis;
mod parts;
mod security;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use prost::Message;

pub use duration::parse_go_duration;
pub use parts::{
    ApplicationValues, ChannelValues, ConsensusState, Consortium, EtcdRaftConfig, OrdererValues,
    Organization, PolicyInfo, PolicyRule, ETCDRAFT,
};

use crate::fabric::protos::common::{
    Block, ChannelHeader, Config, ConfigEnvelope, ConfigGroup, Envelope, HeaderType, Payload,
};
use crate::fabric::protos::orderer::{BatchSize, BatchTimeout, ConsensusType};
use crate::security::msp::MspManager;
use crate::security::policies::PolicyManager;

/// Names of config groups and values, as Fabric spells them.
pub mod keys {
    pub const ORDERER_GROUP: &str = "Orderer";
    pub const APPLICATION_GROUP: &str = "Application";
    /// The group only a system channel has.
    pub const CONSORTIUMS_GROUP: &str = "Consortiums";
    /// The channel value naming the consortium a channel was created in.
    pub const CONSORTIUM: &str = "Consortium";
    pub const CHANNEL_CREATION_POLICY: &str = "ChannelCreationPolicy";
    pub const BATCH_SIZE: &str = "BatchSize";
    pub const BATCH_TIMEOUT: &str = "BatchTimeout";
    pub const CONSENSUS_TYPE: &str = "ConsensusType";
    pub const CHANNEL_RESTRICTIONS: &str = "ChannelRestrictions";
    pub const CAPABILITIES: &str = "Capabilities";
    pub const HASHING_ALGORITHM: &str = "HashingAlgorithm";
    pub const BLOCK_DATA_HASHING_STRUCTURE: &str = "BlockDataHashingStructure";
    pub const ORDERER_ADDRESSES: &str = "OrdererAddresses";
    pub const READERS: &str = "Readers";
    pub const WRITERS: &str = "Writers";
    pub const ADMINS: &str = "Admins";
    pub const BLOCK_VALIDATION: &str = "BlockValidation";
    pub const MSP: &str = "MSP";
    pub const ENDPOINTS: &str = "Endpoints";
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ChannelConfigError {
    #[error("block holds no envelope")]
    EmptyBlock,
    #[error("config block is malformed: {0}")]
    Malformed(String),
    #[error("block is not a config block (header type {0})")]
    NotConfig(i32),
    #[error("config value {0} is missing")]
    Missing(&'static str),
    #[error("config value {path} is invalid: {reason}")]
    Invalid { path: &'static str, reason: String },
    #[error("invalid MSP of organization {org}: {reason}")]
    Msp { org: String, reason: String },
    #[error("invalid policy: {0}")]
    Policy(String),
}

/// A channel ID that Fabric would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid channel ID {id:?}: {reason}")]
pub struct InvalidChannelId {
    pub id: String,
    pub reason: &'static str,
}

/// Fabric's channel name rules: lower-case letters, digits, '.' and '-', starting
/// with a letter, shorter than 250 characters.
pub fn validate_channel_id(id: &str) -> Result<(), InvalidChannelId> {
    let invalid = |reason| InvalidChannelId {
        id: id.into(),
        reason,
    };
    if id.is_empty() {
        return Err(invalid("empty"));
    }
    if id.len() > 249 {
        return Err(invalid("longer than 249 characters"));
    }
    if !id.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(invalid("must start with a lower-case letter"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        return Err(invalid(
            "only lower-case letters, digits, '.' and '-' are allowed",
        ));
    }
    Ok(())
}

/// The block-cutting limits of `Orderer/BatchSize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    pub max_message_count: u32,
    pub absolute_max_bytes: u32,
    pub preferred_max_bytes: u32,
}

/// A channel's configuration as of one config block.
#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub channel_id: String,
    /// `Config.sequence`: grows by one with every config change.
    pub sequence: u64,
    pub batch_size: BatchLimits,
    pub batch_timeout: Duration,
    /// `ConsensusType.type`: the consenter that orders this channel.
    pub consensus_type: String,
    pub consensus_metadata: Bytes,
    /// Values of the `/Channel` group.
    pub channel: ChannelValues,
    /// The Orderer group beyond batching: consenters, organizations.
    pub orderer: OrdererValues,
    /// The Application group, if the channel has one.
    pub application: Option<ApplicationValues>,
    /// The `Consortiums` group: set on a system channel only.
    pub consortiums: Option<std::collections::BTreeMap<String, Consortium>>,
    /// Every policy, by absolute path.
    pub policies: std::collections::BTreeMap<String, PolicyInfo>,
    /// The MSPs of every organization, with their identity cache.
    pub msp_manager: Arc<MspManager>,
    /// Every policy, compiled, evaluated with [`ChannelConfig::msp_manager`].
    pub policy_manager: Arc<PolicyManager>,
    /// The whole config tree, kept so that nothing unknown is ever dropped.
    pub config: Config,
}

impl ChannelConfig {
    /// Whether this is a system channel's config (it has consortiums).
    pub fn is_system_channel(&self) -> bool {
        self.consortiums.is_some()
    }

    /// Reads the config from a config block (its single CONFIG envelope).
    pub fn from_config_block(block: &Block) -> Result<ChannelConfig, ChannelConfigError> {
        let raw = crate::fabric::blockutil::entries(block)
            .first()
            .ok_or(ChannelConfigError::EmptyBlock)?;
        let envelope = Envelope::decode(raw.clone()).map_err(malformed("envelope"))?;
        Self::from_config_envelope(&envelope)
    }

    /// Reads the config from a CONFIG envelope.
    pub fn from_config_envelope(envelope: &Envelope) -> Result<ChannelConfig, ChannelConfigError> {
        let payload = Payload::decode(envelope.payload.clone()).map_err(malformed("payload"))?;
        let header = payload
            .header
            .ok_or_else(|| ChannelConfigError::Malformed("payload header not set".into()))?;
        let channel_header =
            ChannelHeader::decode(header.channel_header).map_err(malformed("channel header"))?;
        if channel_header.r#type != HeaderType::Config as i32 {
            return Err(ChannelConfigError::NotConfig(channel_header.r#type));
        }
        let config_envelope =
            ConfigEnvelope::decode(payload.data).map_err(malformed("config envelope"))?;
        let config = config_envelope
            .config
            .ok_or(ChannelConfigError::Missing("Config"))?;
        Self::from_config(channel_header.channel_id, config)
    }

    /// Types the values of a config tree.
    pub fn from_config(
        channel_id: String,
        config: Config,
    ) -> Result<ChannelConfig, ChannelConfigError> {
        if channel_id.is_empty() {
            return Err(ChannelConfigError::Malformed(
                "channel header has no channel ID".into(),
            ));
        }
        let root = config
            .channel_group
            .as_ref()
            .ok_or(ChannelConfigError::Missing("Channel"))?;
        let orderer = root
            .groups
            .get(keys::ORDERER_GROUP)
            .ok_or(ChannelConfigError::Missing("Channel/Orderer"))?;

        let batch_size: BatchSize = value(orderer, keys::BATCH_SIZE, "Channel/Orderer/BatchSize")?;
        let batch_size = check_batch_size(batch_size)?;
        let timeout: BatchTimeout =
            value(orderer, keys::BATCH_TIMEOUT, "Channel/Orderer/BatchTimeout")?;
        let batch_timeout =
            parse_go_duration(&timeout.timeout).map_err(|reason| ChannelConfigError::Invalid {
                path: "Channel/Orderer/BatchTimeout",
                reason,
            })?;
        if batch_timeout.is_zero() {
            return Err(ChannelConfigError::Invalid {
                path: "Channel/Orderer/BatchTimeout",
                reason: "must be greater than zero".into(),
            });
        }
        let consensus: ConsensusType = value(
            orderer,
            keys::CONSENSUS_TYPE,
            "Channel/Orderer/ConsensusType",
        )?;
        if consensus.r#type.is_empty() {
            return Err(ChannelConfigError::Invalid {
                path: "Channel/Orderer/ConsensusType",
                reason: "type is empty".into(),
            });
        }
        let orderer_values = parts::orderer_values(
            orderer,
            &consensus.r#type,
            &consensus.metadata,
            consensus.state,
        )?;
        let application = root
            .groups
            .get(keys::APPLICATION_GROUP)
            .map(parts::application_values)
            .transpose()?;
        let consortiums = root
            .groups
            .get(keys::CONSORTIUMS_GROUP)
            .map(parts::consortiums)
            .transpose()?;
        let (msp_manager, policy_manager) = security::build(root)?;
        Ok(ChannelConfig {
            channel_id,
            sequence: config.sequence,
            batch_size,
            batch_timeout,
            consensus_type: consensus.r#type,
            consensus_metadata: consensus.metadata,
            channel: parts::channel_values(root)?,
            orderer: orderer_values,
            application,
            consortiums,
            policies: parts::policies(root),
            msp_manager,
            policy_manager,
            config,
        })
    }
}

fn check_batch_size(size: BatchSize) -> Result<BatchLimits, ChannelConfigError> {
    let invalid = |reason: &str| ChannelConfigError::Invalid {
        path: "Channel/Orderer/BatchSize",
        reason: reason.into(),
    };
    if size.max_message_count == 0 {
        return Err(invalid("MaxMessageCount must be greater than 0"));
    }
    if size.absolute_max_bytes == 0 {
        return Err(invalid("AbsoluteMaxBytes must be greater than 0"));
    }
    if size.preferred_max_bytes == 0 {
        return Err(invalid("PreferredMaxBytes must be greater than 0"));
    }
    if size.preferred_max_bytes > size.absolute_max_bytes {
        return Err(invalid(
            "PreferredMaxBytes must be less than or equal to AbsoluteMaxBytes",
        ));
    }
    Ok(BatchLimits {
        max_message_count: size.max_message_count,
        absolute_max_bytes: size.absolute_max_bytes,
        preferred_max_bytes: size.preferred_max_bytes,
    })
}

fn value<M: Message + Default>(
    group: &ConfigGroup,
    key: &str,
    path: &'static str,
) -> Result<M, ChannelConfigError> {
    let value = group
        .values
        .get(key)
        .ok_or(ChannelConfigError::Missing(path))?;
    M::decode(value.value.clone()).map_err(|e| ChannelConfigError::Invalid {
        path,
        reason: e.to_string(),
    })
}

fn malformed(what: &'static str) -> impl Fn(prost::DecodeError) -> ChannelConfigError {
    move |e| ChannelConfigError::Malformed(format!("cannot decode {what}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_ids_follow_fabric_rules() {
        for ok in ["mychannel", "a", "chan-1.test"] {
            assert!(validate_channel_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "MyChannel",
            "1chan",
            "chan_1",
            "chan/1",
            &"a".repeat(250),
        ] {
            assert!(validate_channel_id(bad).is_err(), "{bad}");
        }
    }
    use crate::fabric::channelconfig::genesis::{GenesisProfile, SOLO};

    fn profile() -> GenesisProfile {
        GenesisProfile::embedded("mychannel", vec!["127.0.0.1:7050".into()])
    }

    #[test]
    fn reads_the_values_of_a_genesis_block() {
        let block = profile().genesis_block();
        let cfg = ChannelConfig::from_config_block(&block).expect("valid genesis");
        assert_eq!(cfg.channel_id, "mychannel");
        assert_eq!(cfg.sequence, 0);
        assert_eq!(cfg.consensus_type, SOLO);
        assert_eq!(
            cfg.batch_size,
            BatchLimits {
                max_message_count: 500,
                absolute_max_bytes: 10 * 1024 * 1024,
                preferred_max_bytes: 2 * 1024 * 1024,
            }
        );
        assert_eq!(cfg.batch_timeout, Duration::from_secs(2));
    }

    #[test]
    fn rejects_inconsistent_batch_sizes() {
        let mut p = profile();
        p.batch_size.preferred_max_bytes = p.batch_size.absolute_max_bytes + 1;
        let err = ChannelConfig::from_config_block(&p.genesis_block()).expect_err("invalid");
        assert!(err.to_string().contains("PreferredMaxBytes"), "{err}");

        let mut p = profile();
        p.batch_size.max_message_count = 0;
        assert!(ChannelConfig::from_config_block(&p.genesis_block()).is_err());

        let mut p = profile();
        p.batch_timeout = "soon".into();
        let err = ChannelConfig::from_config_block(&p.genesis_block()).expect_err("invalid");
        assert!(err.to_string().contains("BatchTimeout"), "{err}");
    }

    #[test]
    fn rejects_blocks_that_are_not_config_blocks() {
        let block = crate::fabric::blockutil::new_block(
            1,
            Bytes::new(),
            vec![Bytes::from_static(b"junk")],
            0,
            Bytes::new(),
        );
        assert!(matches!(
            ChannelConfig::from_config_block(&block),
            Err(ChannelConfigError::Malformed(_))
        ));
        let empty = crate::fabric::blockutil::new_block(1, Bytes::new(), vec![], 0, Bytes::new());
        assert_eq!(
            ChannelConfig::from_config_block(&empty).unwrap_err(),
            ChannelConfigError::EmptyBlock
        );
    }
}
