//! `ordo fetch`: write one block of a channel to a file (what `peer channel
//! fetch` does).

use futures::StreamExt;
use prost::Message;

use super::{open_deliver, status_name, write, CommandError, DeliverClient};
use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use crate::fabric::protos::orderer::seek_info::SeekBehavior;
use crate::tools::client::envelope::BlockPosition;

/// Writes block `block` of `channel` to `output`: "config" (the current
/// config block), or a position as `ordo deliver` takes it.
pub async fn run(
    client: &DeliverClient,
    channel: &str,
    block: &str,
    output: &std::path::Path,
) -> Result<(), CommandError> {
    let fetched = if block == "config" {
        let newest = fetch_block(client, channel, BlockPosition::Newest).await?;
        let index = blockutil::last_config_index(&newest).ok_or(CommandError::NoLastConfig)?;
        fetch_block(client, channel, BlockPosition::Number(index)).await?
    } else {
        let position: BlockPosition = block.parse().map_err(|reason| CommandError::Position {
            given: block.to_string(),
            reason,
        })?;
        fetch_block(client, channel, position).await?
    };
    write(output, &fetched.encode_to_vec())?;
    println!(
        "wrote block {} of channel {channel} to {}",
        blockutil::number(&fetched),
        output.display()
    );
    Ok(())
}

/// One block, fetched with a Deliver request that fails if it does not exist.
pub async fn fetch_block(
    client: &DeliverClient,
    channel: &str,
    position: BlockPosition,
) -> Result<Block, CommandError> {
    let request = client.seek(channel, position, position, SeekBehavior::FailIfNotReady);
    let mut responses = open_deliver(client, request).await?;
    match responses.next().await {
        Some(Ok(response)) => match response.r#type {
            Some(DeliverItem::Block(block)) => Ok(block),
            Some(DeliverItem::Status(code)) => Err(CommandError::Refused {
                answer: "deliver answered",
                status: status_name(code),
            }),
            None => Err(CommandError::EmptyResponse),
        },
        Some(Err(source)) => Err(CommandError::Stream {
            call: "deliver",
            source,
        }),
        None => Err(CommandError::Closed("a block")),
    }
}
