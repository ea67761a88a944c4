//! `ordo channel`: manage an orderer's channels through its admin listener,
//! with osnadmin's flags and output.

use std::path::Path;

use prost::Message;

use super::{print_json, read, write, CommandError};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::protos::common::{Block, Envelope};
use crate::runtime::server::participation::{parse_block_id, validate_update_envelope};
use crate::tools::client::participation::{AdminAnswer, AdminClient, AdminTls};

/// Where the admin listener is and how to reach it (osnadmin's global flags).
#[derive(Debug, Clone, Default)]
pub struct AdminTarget<'a> {
    /// `-o/--orderer-address`.
    pub address: &'a str,
    /// `--ca-file`: with it the listener is reached over TLS.
    pub ca_file: Option<&'a Path>,
    /// `--client-cert` and `--client-key`: the certificate for mutual TLS.
    pub client_cert: Option<&'a Path>,
    pub client_key: Option<&'a Path>,
    /// `--no-status`: leave the "Status: N" line out.
    pub no_status: bool,
}

impl AdminTarget<'_> {
    fn client(&self) -> Result<AdminClient, CommandError> {
        Ok(match self.ca_file {
            Some(ca) => {
                let tls = AdminTls::from_files(ca, self.client_cert, self.client_key)?;
                AdminClient::with_tls(self.address, &tls)?
            }
            None => AdminClient::new(self.address),
        })
    }
}

/// Joins the channel of the config block in `config_block`; with
/// `channel_id`, first checks that the block is that channel's.
pub async fn join(
    target: &AdminTarget<'_>,
    channel_id: Option<&str>,
    config_block: &Path,
) -> Result<(), CommandError> {
    let block = read(config_block)?;
    if let Some(expected) = channel_id {
        let decoded = Block::decode(block.as_slice()).map_err(|source| CommandError::Decode {
            path: config_block.to_path_buf(),
            what: "a block",
            source,
        })?;
        let config = ChannelConfig::from_config_block(&decoded).map_err(|source| {
            CommandError::NotConfigBlock {
                path: config_block.to_path_buf(),
                source,
            }
        })?;
        mismatch(expected, &config.channel_id, "config block")?;
    }
    show(target, target.client()?.join(block).await?)
}

/// Every channel, or with `channel_id` that one channel's details (as osnadmin).
pub async fn list(target: &AdminTarget<'_>, channel_id: Option<&str>) -> Result<(), CommandError> {
    let client = target.client()?;
    let answer = match channel_id {
        Some(id) => client.info(id).await?,
        None => client.list().await?,
    };
    show(target, answer)
}

pub async fn info(target: &AdminTarget<'_>, channel_id: &str) -> Result<(), CommandError> {
    show(target, target.client()?.info(channel_id).await?)
}

/// Removes a channel and its ledger.
pub async fn remove(target: &AdminTarget<'_>, channel_id: &str) -> Result<(), CommandError> {
    show(target, target.client()?.remove(channel_id).await?)
}

/// Writes block `block_id` (newest, oldest, config or a number) of the
/// channel to `output`.
pub async fn fetch(
    target: &AdminTarget<'_>,
    channel_id: &str,
    block_id: &str,
    output: &Path,
) -> Result<(), CommandError> {
    parse_block_id(block_id).map_err(CommandError::BlockId)?;
    let answer = target.client()?.fetch(channel_id, block_id).await?;
    if answer.status == 200 {
        write(output, &answer.raw)?;
        status_line(target, answer.status);
        return Ok(());
    }
    show(target, answer)
}

/// Submits the CONFIG_UPDATE envelope in `envelope`; with `channel_id`,
/// first checks that it updates that channel.
pub async fn update(
    target: &AdminTarget<'_>,
    channel_id: Option<&str>,
    envelope: &Path,
) -> Result<(), CommandError> {
    let bytes = read(envelope)?;
    if let Some(expected) = channel_id {
        let decoded =
            Envelope::decode(bytes.as_slice()).map_err(|source| CommandError::Decode {
                path: envelope.to_path_buf(),
                what: "an envelope",
                source,
            })?;
        let found =
            validate_update_envelope(&decoded).map_err(|reason| CommandError::NotConfigUpdate {
                path: envelope.to_path_buf(),
                reason,
            })?;
        mismatch(expected, &found, "config update envelope")?;
    }
    show(target, target.client()?.update(bytes).await?)
}

fn mismatch(expected: &str, found: &str, what: &'static str) -> Result<(), CommandError> {
    if expected == found {
        return Ok(());
    }
    Err(CommandError::ChannelMismatch {
        given: expected.to_string(),
        found: found.to_string(),
        what,
    })
}

fn status_line(target: &AdminTarget<'_>, status: u16) {
    if !target.no_status {
        println!("Status: {status}");
    }
}

/// Prints the answer as osnadmin does (the status, then the body); fails
/// unless the status is a success.
fn show(target: &AdminTarget<'_>, answer: AdminAnswer) -> Result<(), CommandError> {
    status_line(target, answer.status);
    let body = answer.json();
    if !body.is_null() {
        print_json(&body)?;
    }
    if !answer.is_success() {
        return Err(CommandError::AdminStatus(answer.status));
    }
    Ok(())
}
