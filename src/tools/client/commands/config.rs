//! `ordo config`: read and write config blocks and updates as JSON (what
//! configtxlator does).

use std::path::Path;

use prost::Message;

use super::{print_json, read, read_json, write, CommandError};
use crate::fabric::blockutil;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::compute::{compute_update, config_update_envelope};
use crate::fabric::protojson::ProtoJson;
use crate::fabric::protos::common::Block;

/// Prints the block in `block` as JSON, config values, policies and MSPs decoded.
pub fn inspect(block: &Path) -> Result<(), CommandError> {
    let json = ProtoJson::new()?.block_to_json(&read(block)?)?;
    print_json(&json)
}

/// Turns JSON from [`inspect`] back into a block, written to `output`.
pub fn encode(json: &Path, output: &Path) -> Result<(), CommandError> {
    let bytes = ProtoJson::new()?.json_to_block(&read_json(json)?)?;
    let block = decode_block(json, &bytes)?;
    let data_hash = blockutil::data_hash(blockutil::entries(&block));
    if block.header.as_ref().map(|h| &h.data_hash) != Some(&data_hash) {
        eprintln!("warning: the block's data_hash does not match its data (edited data, or map entries written in another order)");
    }
    write(output, &bytes)
}

/// Writes to `output` the CONFIG_UPDATE envelope that turns the config block
/// in `original` into the one in `updated` (both JSON from [`inspect`]).
pub fn update(original: &Path, updated: &Path, output: &Path) -> Result<(), CommandError> {
    let codec = ProtoJson::new()?;
    let config_of = |path: &Path| -> Result<ChannelConfig, CommandError> {
        let bytes = codec.json_to_block(&read_json(path)?)?;
        let block = decode_block(path, &bytes)?;
        ChannelConfig::from_config_block(&block).map_err(|source| CommandError::NotConfigBlock {
            path: path.to_path_buf(),
            source,
        })
    };
    let before = config_of(original)?;
    let after = config_of(updated)?;
    if before.channel_id != after.channel_id {
        return Err(CommandError::DifferentChannels {
            original: before.channel_id,
            updated: after.channel_id,
        });
    }
    let update = compute_update(&before.channel_id, &before.config, &after.config)?;
    write(output, &config_update_envelope(&update).encode_to_vec())?;
    println!(
        "wrote the config update of channel {} to {}",
        before.channel_id,
        output.display()
    );
    Ok(())
}

/// `bytes`, encoded from the JSON in `path`, as a block.
fn decode_block(path: &Path, bytes: &[u8]) -> Result<Block, CommandError> {
    Block::decode(bytes).map_err(|source| CommandError::Decode {
        path: path.to_path_buf(),
        what: "a block",
        source,
    })
}
