//! `ordo genesis`: make a genesis config block from a profile of
//! configtx.yaml (what configtxgen does).

use std::path::{Path, PathBuf};

use prost::Message;

use super::{write, CommandError};
use crate::fabric::configtxgen::ConfigTx;

/// Writes the genesis block of `channel_id` by `profile` to `output_block`.
/// `config_path` is configtx.yaml or its folder; by default
/// `$FABRIC_CFG_PATH`, else `./config`, as configtxgen looks.
pub fn run(
    config_path: Option<PathBuf>,
    profile: &str,
    channel_id: &str,
    output_block: &Path,
) -> Result<(), CommandError> {
    let path = config_path
        .or_else(|| std::env::var_os("FABRIC_CFG_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config"));
    let configtx = ConfigTx::load(&path)?;
    let block = configtx.genesis_block(profile, channel_id)?;
    write(output_block, &block.encode_to_vec())?;
    println!(
        "wrote the genesis block of channel {channel_id} (profile {profile}) to {}",
        output_block.display()
    );
    Ok(())
}
