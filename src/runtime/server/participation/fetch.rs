//! `GET .../channels/{id}/blocks/{newest|oldest|config|N}`: one block of a
//! channel, as the marshalled `common.Block` the ledger holds (the bytes
//! Deliver sends).

use bytes::Bytes;

use crate::runtime::channel::ChannelHandle;
use crate::runtime::ledger::LedgerError;

/// Which block a fetch names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    Newest,
    Oldest,
    /// The last config block.
    Config,
    Number(u64),
}

/// Fabric's `ValidateFetchBlockID`, with its text. A number is the decimal
/// form of a block number: no sign, nothing but digits.
pub fn parse_block_id(text: &str) -> Result<BlockId, String> {
    match text {
        "" => Err("block ID illegal, cannot be empty".into()),
        "newest" => Ok(BlockId::Newest),
        "oldest" => Ok(BlockId::Oldest),
        "config" => Ok(BlockId::Config),
        _ => text
            .bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| text.parse::<u64>().ok())
            .flatten()
            .map(BlockId::Number)
            .ok_or_else(|| format!("'{text}' not equal <newest|oldest|config|(number)>")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// Fabric's block store text for a number beyond the height.
    #[error("no such block number [{0}] in index")]
    NoSuchBlock(u64),
    #[error("cannot read block {number}: {source}")]
    Ledger { number: u64, source: LedgerError },
}

/// The block's bytes as stored.
pub async fn block(channel: &ChannelHandle, id: BlockId) -> Result<Bytes, FetchError> {
    let store = channel.store();
    let tip = store.tip();
    let number = match id {
        BlockId::Newest => tip.height.saturating_sub(1),
        BlockId::Oldest => 0,
        BlockId::Config => tip.last_config,
        BlockId::Number(n) => n,
    };
    match store.encoded_block(number).await {
        Ok(Some(bytes)) => Ok(bytes),
        Ok(None) => Err(FetchError::NoSuchBlock(number)),
        Err(source) => Err(FetchError::Ledger { number, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_ids_as_fabric_takes_them() {
        assert_eq!(parse_block_id("newest"), Ok(BlockId::Newest));
        assert_eq!(parse_block_id("oldest"), Ok(BlockId::Oldest));
        assert_eq!(parse_block_id("config"), Ok(BlockId::Config));
        assert_eq!(parse_block_id("17"), Ok(BlockId::Number(17)));
        for bad in ["-1", "+1", "1.5", "Newest", "99999999999999999999999"] {
            assert_eq!(
                parse_block_id(bad),
                Err(format!("'{bad}' not equal <newest|oldest|config|(number)>")),
                "{bad}"
            );
        }
        assert_eq!(
            parse_block_id(""),
            Err("block ID illegal, cannot be empty".to_string())
        );
    }
}
