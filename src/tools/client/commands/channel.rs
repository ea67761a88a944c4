//! `ordo channel`: manage an orderer's channels through its admin listener
//! (what osnadmin does).

use std::path::Path;

use super::{print_json, read, CommandError};
use crate::tools::client::participation::{AdminAnswer, AdminClient};

/// Joins the channel of the config block in `config_block`.
pub async fn join(admin_address: &str, config_block: &Path) -> Result<(), CommandError> {
    let block = read(config_block)?;
    show(AdminClient::new(admin_address).join(block).await?)
}

pub async fn list(admin_address: &str) -> Result<(), CommandError> {
    show(AdminClient::new(admin_address).list().await?)
}

pub async fn info(admin_address: &str, channel_id: &str) -> Result<(), CommandError> {
    show(AdminClient::new(admin_address).info(channel_id).await?)
}

/// Removes a channel and its ledger.
pub async fn remove(admin_address: &str, channel_id: &str) -> Result<(), CommandError> {
    show(AdminClient::new(admin_address).remove(channel_id).await?)
}

/// Prints the answer as osnadmin does (the status, then the body); fails
/// unless the status is a success.
fn show(answer: AdminAnswer) -> Result<(), CommandError> {
    println!("Status: {}", answer.status);
    let body = answer.json();
    if !body.is_null() {
        print_json(&body)?;
    }
    if !answer.is_success() {
        return Err(CommandError::AdminStatus(answer.status));
    }
    Ok(())
}
