//! Whether a block may be used to join a channel: the checks Fabric's
//! `ValidateJoinBlock` makes before the registrar sees the block, with its
//! texts (the API prefixes them with "invalid join block: "), then what this
//! node needs to start the channel again from its ledger: a header that
//! begins a chain, a LAST_CONFIG that names the block itself, a channel ID
//! the ledger accepts, and a block that reads back, as stored, into the same
//! config and, for etcdraft, the same consenter metadata.

use bytes::Bytes;
use prost::Message;

use crate::fabric::blockutil;
use crate::fabric::channelconfig::{
    keys, validate_channel_id, ChannelConfig, ChannelConfigError, InvalidChannelId,
};
use crate::fabric::protos::common::{Block, ChannelHeader, Envelope, HeaderType, Payload};
use crate::runtime::consensus::etcdraft::membership::Membership;

/// The group only a system channel has.
const CONSORTIUMS_GROUP: &str = "Consortiums";
/// Length of a SHA-256 header hash: what a later block's previous hash is.
const HASH_BYTES: usize = 32;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinBlockError {
    #[error("block is not a config block")]
    NotConfigBlock,
    #[error("invalid block: does not have metadata")]
    NoMetadata,
    #[error("invalid block: does not have a header")]
    NoHeader,
    #[error("invalid block: Header.DataHash is different from Hash(block.Data)")]
    DataHash,
    #[error("invalid block: block 0 has a previous hash")]
    GenesisPreviousHash,
    #[error(
        "invalid block: the previous hash of block {number} is {len} bytes, not a SHA-256 hash"
    )]
    PreviousHash { number: u64, len: usize },
    #[error("invalid block: block {number} is the channel's last config block, but its metadata names {named:?} as the last config")]
    LastConfig { number: u64, named: Option<u64> },
    #[error(transparent)]
    Config(#[from] ChannelConfigError),
    #[error("invalid config: {0}")]
    ChannelId(#[from] InvalidChannelId),
    #[error(
        "invalid config: the last update is for channel '{update}' but the block for '{channel}'"
    )]
    LastUpdateChannel { update: String, channel: String },
    #[error("invalid config: must contain application config")]
    NoApplication,
    #[error(
        "invalid block: {size} bytes exceeds the largest block a follower can fetch, {max} bytes"
    )]
    TooLarge { size: usize, max: usize },
    #[error("invalid block: it does not read back as it would be stored: {0}")]
    Unreadable(String),
    #[error("invalid block: {0}")]
    ConsenterMetadata(String),
}

/// Checks a join block as Fabric does, in Fabric's order, then as this
/// node's start-up will read it; returns the channel's config read from it.
/// `max_block_bytes`: the largest block followers fetch (MaxSendMsgSize).
pub fn validate_join_block(
    block: &Block,
    max_block_bytes: usize,
) -> Result<ChannelConfig, JoinBlockError> {
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
    let header = block.header.as_ref().ok_or(JoinBlockError::NoHeader)?;
    if header.data_hash != blockutil::data_hash(blockutil::entries(block)) {
        return Err(JoinBlockError::DataHash);
    }
    check_chain_position(block, header.number, &header.previous_hash)?;
    let config = ChannelConfig::from_config_block(block)?;
    validate_channel_id(&config.channel_id)?;
    check_last_update(block, &config.channel_id)?;
    let groups = config
        .config
        .channel_group
        .as_ref()
        .map(|root| &root.groups);
    // A system channel (Fabric 1.x/2.x) has consortiums and no application
    // config; the registrar decides whether this node may join it.
    let system_channel = groups.is_some_and(|g| g.contains_key(CONSORTIUMS_GROUP));
    if !system_channel && !groups.is_some_and(|g| g.contains_key(keys::APPLICATION_GROUP)) {
        return Err(JoinBlockError::NoApplication);
    }
    check_reads_back(block, &config, max_block_bytes)?;
    if let Some(etcdraft) = &config.orderer.etcdraft {
        // What the etcdraft chain reads from the last block when it starts.
        Membership::read(etcdraft, block)
            .map_err(|e| JoinBlockError::ConsenterMetadata(e.to_string()))?;
    }
    Ok(config)
}

/// Block 0 starts a chain (no previous hash); a later config block links
/// to a block by its SHA-256 hash. Either way the block is the channel's
/// last config block, and its metadata must say so: start-up reads the
/// config from the block that the last block's LAST_CONFIG names.
fn check_chain_position(
    block: &Block,
    number: u64,
    previous_hash: &Bytes,
) -> Result<(), JoinBlockError> {
    if number == 0 && !previous_hash.is_empty() {
        return Err(JoinBlockError::GenesisPreviousHash);
    }
    if number > 0 && previous_hash.len() != HASH_BYTES {
        return Err(JoinBlockError::PreviousHash {
            number,
            len: previous_hash.len(),
        });
    }
    let named = blockutil::last_config_index(block);
    // A genesis block may leave it out (configtxgen's does): the ledger
    // then takes block 0.
    let names_itself = named == Some(number) || (number == 0 && named.is_none());
    if !names_itself {
        return Err(JoinBlockError::LastConfig { number, named });
    }
    Ok(())
}

/// The CONFIG_UPDATE a later config block was made from must be for the
/// same channel.
fn check_last_update(block: &Block, channel: &str) -> Result<(), JoinBlockError> {
    let Some(raw) = blockutil::entries(block).first() else {
        return Ok(());
    };
    let Ok(last_update) = crate::fabric::configtx::last_update(raw) else {
        // No last update: a genesis block.
        return Ok(());
    };
    let update = Payload::decode(last_update.payload)
        .ok()
        .and_then(|p| p.header)
        .and_then(|h| ChannelHeader::decode(h.channel_header).ok())
        .map(|h| h.channel_id)
        .unwrap_or_default();
    if update != channel {
        return Err(JoinBlockError::LastUpdateChannel {
            update,
            channel: channel.to_string(),
        });
    }
    Ok(())
}

/// The block as the ledger will store it (marshalled again), read back as
/// start-up reads it: it must be the same block and make the same config,
/// and fit what followers can fetch.
fn check_reads_back(
    block: &Block,
    config: &ChannelConfig,
    max_block_bytes: usize,
) -> Result<(), JoinBlockError> {
    let stored = block.encode_to_vec();
    if stored.len() > max_block_bytes {
        return Err(JoinBlockError::TooLarge {
            size: stored.len(),
            max: max_block_bytes,
        });
    }
    let unreadable = |reason: String| JoinBlockError::Unreadable(reason);
    let read = Block::decode(stored.as_slice()).map_err(|e| unreadable(e.to_string()))?;
    if read != *block {
        return Err(unreadable("the block decodes differently".into()));
    }
    let again = ChannelConfig::from_config_block(&read).map_err(|e| unreadable(e.to_string()))?;
    if again.channel_id != config.channel_id || again.config != config.config {
        return Err(unreadable("the config decodes differently".into()));
    }
    Ok(())
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

    fn validate_join_block_default(block: &Block) -> Result<ChannelConfig, JoinBlockError> {
        validate_join_block(block, crate::fabric::configtx::MAX_BLOCK_BYTES)
    }

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
        let config = validate_join_block_default(&good()).expect("valid");
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
        let err = validate_join_block_default(&junk).expect_err("not config");
        assert_eq!(err.to_string(), "block is not a config block");
        assert_eq!(
            validate_join_block_default(&Block::default())
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
            validate_join_block_default(&two).expect_err("two envelopes"),
            JoinBlockError::NotConfigBlock
        );

        let mut bare = good();
        bare.metadata = None;
        assert_eq!(
            validate_join_block_default(&bare)
                .expect_err("no metadata")
                .to_string(),
            "invalid block: does not have metadata"
        );

        let mut tampered = good();
        if let Some(header) = tampered.header.as_mut() {
            header.data_hash = Bytes::from_static(&[0; 32]);
        }
        assert_eq!(
            validate_join_block_default(&tampered)
                .expect_err("bad hash")
                .to_string(),
            "invalid block: Header.DataHash is different from Hash(block.Data)"
        );

        // A system channel's block is valid; the registrar decides whether
        // this node may join it.
        let system = edited(|groups| {
            groups.remove(keys::APPLICATION_GROUP);
            groups.insert(CONSORTIUMS_GROUP.into(), ConfigGroup::default());
        });
        let config = validate_join_block_default(&system).expect("a system channel block");
        assert!(config.is_system_channel());

        let orderer_only = edited(|groups| {
            groups.remove(keys::APPLICATION_GROUP);
        });
        assert_eq!(
            validate_join_block_default(&orderer_only)
                .expect_err("no app")
                .to_string(),
            "invalid config: must contain application config"
        );

        let no_orderer = edited(|groups| {
            groups.remove(keys::ORDERER_GROUP);
        });
        assert!(matches!(
            validate_join_block_default(&no_orderer),
            Err(JoinBlockError::Config(_))
        ));
    }

    /// `good()` with its header changed by `edit` (the data hash kept right).
    fn with_header(edit: impl FnOnce(&mut crate::fabric::protos::common::BlockHeader)) -> Block {
        let mut block = good();
        if let Some(header) = block.header.as_mut() {
            edit(header);
        }
        block
    }

    #[test]
    fn the_header_must_begin_a_chain_and_name_the_block_as_last_config() {
        let mut headless = good();
        headless.header = None;
        assert_eq!(
            validate_join_block_default(&headless).expect_err("no header"),
            JoinBlockError::NoHeader
        );
        let linked = with_header(|h| h.previous_hash = Bytes::from(vec![1u8; 32]));
        assert_eq!(
            validate_join_block_default(&linked)
                .expect_err("genesis with a previous hash")
                .to_string(),
            "invalid block: block 0 has a previous hash"
        );
        let later = |previous: usize| {
            let mut block = with_header(|h| {
                h.number = 4;
                h.previous_hash = Bytes::from(vec![1u8; previous]);
            });
            block.metadata = Some(blockutil::orderer_metadata(4, Bytes::new()));
            block
        };
        assert_eq!(
            validate_join_block_default(&later(3)).expect_err("short hash"),
            JoinBlockError::PreviousHash { number: 4, len: 3 }
        );
        validate_join_block_default(&later(32)).expect("a later config block checks out");

        // The metadata points start-up at another block as the last config.
        let mut elsewhere = good();
        elsewhere.metadata = Some(blockutil::orderer_metadata(7, Bytes::new()));
        assert_eq!(
            validate_join_block_default(&elsewhere).expect_err("last config elsewhere"),
            JoinBlockError::LastConfig {
                number: 0,
                named: Some(7)
            }
        );
        // configtxgen's genesis block names none: block 0 it is.
        let mut unnamed = good();
        if let Some(metadata) = unnamed.metadata.as_mut() {
            metadata.metadata = vec![Bytes::new(); blockutil::METADATA_SLOTS];
        }
        validate_join_block_default(&unnamed).expect("no last config in a genesis block");
    }

    #[test]
    fn the_channel_id_must_be_one_the_ledger_takes() {
        let block = GenesisProfile::embedded("Not_A_Channel", vec![]).genesis_block();
        assert!(matches!(
            validate_join_block_default(&block),
            Err(JoinBlockError::ChannelId(_))
        ));
    }

    #[test]
    fn a_block_larger_than_a_follower_can_fetch_is_refused() {
        let block = good();
        let size = block.encoded_len();
        assert_eq!(
            validate_join_block(&block, size - 1).expect_err("too large"),
            JoinBlockError::TooLarge {
                size,
                max: size - 1
            }
        );
        validate_join_block(&block, size).expect("fits");
    }

    #[test]
    fn etcdraft_consenter_metadata_must_read_as_the_chain_reads_it() {
        use crate::fabric::protos::etcdraft::{BlockMetadata, ConfigMetadata, Consenter};
        let mut profile = GenesisProfile::embedded("raft", vec![]);
        profile.consensus_type = "etcdraft".into();
        profile.consensus_metadata = ConfigMetadata {
            consenters: vec![Consenter {
                host: "127.0.0.1".into(),
                port: 7050,
                client_tls_cert: Bytes::from_static(b"c"),
                server_tls_cert: Bytes::from_static(b"s"),
            }],
            options: None,
        }
        .encode_to_vec()
        .into();
        let mut block = profile.genesis_block();
        validate_join_block_default(&block).expect("no consenter metadata in a genesis block");
        let two_ids = BlockMetadata {
            consenter_ids: vec![1, 2],
            next_consenter_id: 3,
            raft_index: 0,
        };
        block.metadata = Some(blockutil::orderer_metadata(
            0,
            two_ids.encode_to_vec().into(),
        ));
        assert!(matches!(
            validate_join_block_default(&block),
            Err(JoinBlockError::ConsenterMetadata(_))
        ));
    }

    /// Every one-byte change of a genesis block that the check accepts makes
    /// a ledger that opens again and yields the same channel config: what
    /// start-up will do with it.
    #[test]
    fn every_accepted_mutation_of_a_join_block_opens_again() {
        use crate::runtime::ledger::LedgerFactory;
        let original = good().encode_to_vec();
        let mut accepted = 0;
        for at in 0..original.len() {
            for flip in [0x01u8, 0x80, 0xff] {
                let mut bytes = original.clone();
                bytes[at] ^= flip;
                let Ok(block) = Block::decode(bytes.as_slice()) else {
                    continue;
                };
                let Ok(config) = validate_join_block_default(&block) else {
                    continue;
                };
                accepted += 1;
                let dir = tempfile::tempdir().expect("tempdir");
                {
                    let factory = LedgerFactory::open(dir.path()).expect("open");
                    factory
                        .create_store(&config.channel_id, &block)
                        .expect("create");
                }
                let factory = LedgerFactory::open(dir.path()).expect("reopen");
                let store = factory
                    .open_store(&config.channel_id)
                    .unwrap_or_else(|e| panic!("byte {at} ^ {flip:#x}: {e}"));
                let tip = store.tip();
                let last_config = store
                    .block(tip.last_config)
                    .expect("read")
                    .unwrap_or_else(|| panic!("byte {at} ^ {flip:#x}: no last config block"));
                let again = ChannelConfig::from_config_block(&last_config)
                    .unwrap_or_else(|e| panic!("byte {at} ^ {flip:#x}: {e}"));
                assert_eq!(again.config, config.config);
            }
        }
        // Flips of the header's data hash, of the config's bytes, are all
        // refused; a few in places the config does not read are not.
        assert!(accepted < original.len(), "{accepted} accepted");
    }
}
