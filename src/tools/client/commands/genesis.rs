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
    let configtx = load(config_path)?;
    let block = configtx.genesis_block(profile, channel_id)?;
    write(output_block, &block.encode_to_vec())?;
    println!(
        "wrote the genesis block of channel {channel_id} (profile {profile}) to {}",
        output_block.display()
    );
    Ok(())
}

fn load(config_path: Option<PathBuf>) -> Result<ConfigTx, CommandError> {
    let path = config_path
        .or_else(|| std::env::var_os("FABRIC_CFG_PATH").map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("config"));
    Ok(ConfigTx::load(&path)?)
}

/// Writes the channel creation transaction of `channel_id` by `profile`
/// (configtxgen -outputCreateChannelTx) to `output`; signed as `peer
/// channel create` signs it when `signer` names an MSP folder and its ID.
pub fn create_channel_tx(
    config_path: Option<PathBuf>,
    profile: &str,
    channel_id: &str,
    output: &Path,
    signer: Option<(PathBuf, String)>,
) -> Result<(), CommandError> {
    let configtx = load(config_path)?;
    let mut envelope = configtx.channel_creation_tx(profile, channel_id)?;
    if let Some((dir, msp_id)) = signer {
        let identity = crate::security::signer::SigningIdentity::from_msp_dir(&dir, &msp_id)
            .map_err(|e| CommandError::Sign(e.to_string()))?;
        envelope = crate::fabric::configtxgen::sign_channel_creation(&envelope, &identity)
            .map_err(CommandError::Sign)?;
    }
    write(output, &envelope.encode_to_vec())?;
    println!(
        "wrote the channel creation transaction of channel {channel_id} (profile {profile}) to {}",
        output.display()
    );
    Ok(())
}
