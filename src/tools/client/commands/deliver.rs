//! `ordo deliver`: print blocks, one line each (number, transactions, header hash).

use futures::StreamExt;

use super::{open_deliver, status_name, CommandError, DeliverClient};
use crate::fabric::blockutil;
use crate::fabric::protos::common::Status;
use crate::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use crate::fabric::protos::orderer::seek_info::SeekBehavior;
use crate::tools::client::envelope::BlockPosition;

/// Prints blocks `start..=stop` of `channel` as they come; ends at the
/// orderer's closing status, failing unless it is SUCCESS.
pub async fn run(
    client: &DeliverClient,
    channel: &str,
    start: BlockPosition,
    stop: BlockPosition,
    fail_if_not_ready: bool,
) -> Result<(), CommandError> {
    let behavior = if fail_if_not_ready {
        SeekBehavior::FailIfNotReady
    } else {
        SeekBehavior::BlockUntilReady
    };
    let request = client.seek(channel, start, stop, behavior);
    let mut responses = open_deliver(client, request).await?;
    while let Some(item) = responses.next().await {
        let response = item.map_err(|source| CommandError::Stream {
            call: "deliver",
            source,
        })?;
        match response.r#type {
            Some(DeliverItem::Block(block)) => {
                let hash = block
                    .header
                    .as_ref()
                    .map(blockutil::header_hash)
                    .unwrap_or_default();
                println!(
                    "block {} txs {} hash {}",
                    blockutil::number(&block),
                    blockutil::entries(&block).len(),
                    hex::encode(hash)
                );
            }
            Some(DeliverItem::Status(code)) => {
                if code == Status::Success as i32 {
                    return Ok(());
                }
                return Err(CommandError::Refused {
                    answer: "deliver ended with status",
                    status: status_name(code),
                });
            }
            None => return Err(CommandError::EmptyResponse),
        }
    }
    Err(CommandError::Closed("a status"))
}
