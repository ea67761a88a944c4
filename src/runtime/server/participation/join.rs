//! Whether a block may be used to join a channel: the checks Fabric's
//! `ValidateJoinBlock` makes before the registrar sees the block, with its
//! texts (the API prefixes them with "invalid join block: ").

use prost::Message;

use crate::fabric::blockutil;
use crate::fabric::channelconfig::{keys, ChannelConfig, ChannelConfigError};
use crate::fabric::protos::common::{Block, ChannelHeader, Envelope, HeaderType, Payload};

/// The group only a system channel has.
const CONSORTIUMS_GROUP: &str = "Consortiums";

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinBlockError {
    #[error("block is not a config block")]
    NotConfigBlock,
    #[error("invalid block: does not have metadata")]
    NoMetadata,
    #[error("invalid block: Header.DataHash is different from Hash(block.Data)")]
    DataHash,
    #[error(transparent)]
    Config(#[from] ChannelConfigError),
    #[error("invalid config: contains consortiums: system channel not supported")]
    SystemChannel,
    #[error("invalid config: must contain application config")]
    NoApplication,
}

/// Checks a join block as Fabric does, in Fabric's order; returns the
/// channel's config read from it.
pub fn validate_join_block(block: &Block) -> Result<ChannelConfig, JoinBlockError> {
    if !is_config_block(block) {
        return Err(JoinBlockError::NotConfigBlock);
    }
    if block
        .metadata
        .as_ref()
        .is_none_or(|m| m.metadata.is_empty())
    {
        return Err(JoinBlockError::NoMetadata);
    }
    let entries = blockutil::entries(block);
    let hash_matches = block
        .header
        .as_ref()
        .is_some_and(|h| h.data_hash == blockutil::data_hash(entries));
    if !hash_matches {
        return Err(JoinBlockError::DataHash);
    }
    let config = ChannelConfig::from_config_block(block)?;
    let groups = config
        .config
        .channel_group
        .as_ref()
        .map(|root| &root.groups);
    if groups.is_some_and(|g| g.contains_key(CONSORTIUMS_GROUP)) {
        return Err(JoinBlockError::SystemChannel);
    }
    if !groups.is_some_and(|g| g.contains_key(keys::APPLICATION_GROUP)) {
        return Err(JoinBlockError::NoApplication);
    }
    Ok(config)
}

/// Fabric's `IsConfigBlock`: exactly one envelope, whose channel header says CONFIG.
fn is_config_block(block: &Block) -> bool {
    let [raw] = blockutil::entries(block) else {
        return false;
    };
    let Ok(envelope) = Envelope::decode(raw.clone()) else {
        return false;
    };
    if envelope.payload.is_empty() {
        return false;
    }
    let Ok(payload) = Payload::decode(envelope.payload) else {
        return false;
    };
    let Some(header) = payload.header else {
        return false;
    };
    ChannelHeader::decode(header.channel_header)
        .is_ok_and(|h| h.r#type == HeaderType::Config as i32)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use bytes::Bytes;

    use super::*;
    use crate::fabric::channelconfig::genesis::{self, GenesisProfile};
    use crate::fabric::protos::common::ConfigGroup;

    fn good() -> Block {
        GenesisProfile::embedded("alpha", vec![]).genesis_block()
    }

    /// The genesis block of a config edited by `edit`.
    fn edited(edit: impl FnOnce(&mut HashMap<String, ConfigGroup>)) -> Block {
        let mut config = GenesisProfile::embedded("alpha", vec![]).config();
        if let Some(root) = config.channel_group.as_mut() {
            edit(&mut root.groups);
        }
        genesis::genesis_block("alpha", config)
    }

    #[test]
    fn an_application_channel_genesis_block_is_accepted() {
        let config = validate_join_block(&good()).expect("valid");
        assert_eq!(config.channel_id, "alpha");
    }

    #[test]
    fn refusals_carry_fabric_texts() {
        let junk = blockutil::new_block(
            0,
            Bytes::new(),
            vec![Bytes::from_static(b"junk")],
            0,
            Bytes::new(),
        );
        let err = validate_join_block(&junk).expect_err("not config");
        assert_eq!(err.to_string(), "block is not a config block");
        assert_eq!(
            validate_join_block(&Block::default())
                .expect_err("empty")
                .to_string(),
            "block is not a config block"
        );

        let mut two = good();
        if let Some(data) = two.data.as_mut() {
            let first = data.data[0].clone();
            data.data.push(first);
        }
        assert_eq!(
            validate_join_block(&two).expect_err("two envelopes"),
            JoinBlockError::NotConfigBlock
        );

        let mut bare = good();
        bare.metadata = None;
        assert_eq!(
            validate_join_block(&bare)
                .expect_err("no metadata")
                .to_string(),
            "invalid block: does not have metadata"
        );

        let mut tampered = good();
        if let Some(header) = tampered.header.as_mut() {
            header.data_hash = Bytes::from_static(&[0; 32]);
        }
        assert_eq!(
            validate_join_block(&tampered)
                .expect_err("bad hash")
                .to_string(),
            "invalid block: Header.DataHash is different from Hash(block.Data)"
        );

        let system = edited(|groups| {
            groups.insert(CONSORTIUMS_GROUP.into(), ConfigGroup::default());
        });
        assert_eq!(
            validate_join_block(&system)
                .expect_err("system")
                .to_string(),
            "invalid config: contains consortiums: system channel not supported"
        );

        let orderer_only = edited(|groups| {
            groups.remove(keys::APPLICATION_GROUP);
        });
        assert_eq!(
            validate_join_block(&orderer_only)
                .expect_err("no app")
                .to_string(),
            "invalid config: must contain application config"
        );

        let no_orderer = edited(|groups| {
            groups.remove(keys::ORDERER_GROUP);
        });
        assert!(matches!(
            validate_join_block(&no_orderer),
            Err(JoinBlockError::Config(_))
        ));
    }
}
