//! `ordo submit`: send one prepared envelope (e.g. a config update) and print
//! the answer.

use std::path::Path;

use futures::StreamExt;
use prost::Message;

use super::{read, status_name, CommandError};
use crate::fabric::protos::common::{Envelope, Status};
use crate::fabric::protos::orderer::BroadcastResponse;
use crate::tools::client::connect;

/// Sends the marshalled envelope in `path`; prints the status and info, and
/// fails unless the orderer answered SUCCESS.
pub async fn run(address: &str, path: &Path) -> Result<(), CommandError> {
    let envelope =
        Envelope::decode(read(path)?.as_slice()).map_err(|source| CommandError::Decode {
            path: path.to_path_buf(),
            what: "an envelope",
            source,
        })?;
    let answer = submit_one(address, envelope).await?;
    let status = status_name(answer.status);
    println!("{status} {}", answer.info);
    if answer.status != Status::Success as i32 {
        return Err(CommandError::Refused {
            answer: "the orderer answered",
            status,
        });
    }
    Ok(())
}

/// Broadcasts one envelope and returns the orderer's answer to it.
pub async fn submit_one(
    address: &str,
    envelope: Envelope,
) -> Result<BroadcastResponse, CommandError> {
    let mut client = connect(address).await?;
    let mut answers = client
        .broadcast(tokio_stream::once(envelope))
        .await
        .map_err(|source| CommandError::Request {
            call: "broadcast",
            source,
        })?
        .into_inner();
    answers
        .next()
        .await
        .ok_or(CommandError::Closed("an answer"))?
        .map_err(|source| CommandError::Stream {
            call: "broadcast",
            source,
        })
}
