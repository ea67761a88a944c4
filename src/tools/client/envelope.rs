//! Building the envelopes a Fabric client sends: transactions for Broadcast and
//! signed-header SeekInfo requests for Deliver (unsigned until the security work).

use std::str::FromStr;

use bytes::Bytes;
use prost::Message;

use super::identity::SigningIdentity;
use crate::fabric::envelopeutil::new_envelope;
use crate::fabric::protos::common::{Envelope, HeaderType};
use crate::fabric::protos::msp::SerializedIdentity;
use crate::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use crate::fabric::protos::orderer::seek_position::Type as Position;
use crate::fabric::protos::orderer::{
    SeekInfo, SeekNewest, SeekOldest, SeekPosition, SeekSpecified,
};

/// MSP ID of the identity the client names as creator.
pub const CLIENT_MSP_ID: &str = "SampleOrg";

fn creator() -> Bytes {
    SerializedIdentity {
        mspid: CLIENT_MSP_ID.into(),
        id_bytes: Bytes::new(),
    }
    .encode_to_vec()
    .into()
}

/// An envelope of `kind` for `channel` carrying `data`, with a fresh nonce and a
/// transaction ID computed as Fabric does (hex SHA-256 of nonce ‖ creator).
pub fn envelope(channel: &str, kind: HeaderType, data: Bytes) -> Envelope {
    envelope_by(channel, kind, data, creator(), None)
}

/// A transaction created and signed by `identity`.
pub fn signed_transaction(channel: &str, data: Bytes, identity: &SigningIdentity) -> Envelope {
    envelope_by(
        channel,
        HeaderType::EndorserTransaction,
        data,
        identity.creator(),
        Some(identity),
    )
}

/// An envelope naming `creator`, signed over its payload if a signer is given.
pub fn envelope_by(
    channel: &str,
    kind: HeaderType,
    data: Bytes,
    creator: Bytes,
    signer: Option<&SigningIdentity>,
) -> Envelope {
    envelope_with_id(channel, kind, data, creator, signer).0
}

/// As [`envelope_by`], also returning the transaction ID's 32 bytes.
pub fn envelope_with_id(
    channel: &str,
    kind: HeaderType,
    data: Bytes,
    creator: Bytes,
    signer: Option<&SigningIdentity>,
) -> (Envelope, [u8; 32]) {
    let (mut envelope, id) = new_envelope(channel, kind, data, creator);
    if let Some(signer) = signer {
        envelope.signature = signer.sign(&envelope.payload);
    }
    (envelope, id)
}

/// The creator unsigned envelopes name (MSP ID [`CLIENT_MSP_ID`], no certificate).
pub fn default_creator() -> Bytes {
    creator()
}

/// A transaction envelope whose data is `data` (an endorser transaction's place).
pub fn transaction(channel: &str, data: Bytes) -> Envelope {
    envelope(channel, HeaderType::EndorserTransaction, data)
}

/// A block position for a seek, as typed on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockPosition {
    Oldest,
    Newest,
    Number(u64),
}

impl FromStr for BlockPosition {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "oldest" => Ok(BlockPosition::Oldest),
            "newest" => Ok(BlockPosition::Newest),
            "forever" | "max" => Ok(BlockPosition::Number(u64::MAX)),
            n => n
                .parse()
                .map(BlockPosition::Number)
                .map_err(|_| format!("{n:?} is not oldest, newest, forever or a block number")),
        }
    }
}

impl From<BlockPosition> for SeekPosition {
    fn from(position: BlockPosition) -> SeekPosition {
        let kind = match position {
            BlockPosition::Oldest => Position::Oldest(SeekOldest {}),
            BlockPosition::Newest => Position::Newest(SeekNewest {}),
            BlockPosition::Number(number) => Position::Specified(SeekSpecified { number }),
        };
        SeekPosition { r#type: Some(kind) }
    }
}

/// A Deliver request for blocks `start..=stop`.
pub fn seek(
    channel: &str,
    start: BlockPosition,
    stop: BlockPosition,
    behavior: SeekBehavior,
    content: SeekContentType,
) -> Envelope {
    let info = SeekInfo {
        start: Some(start.into()),
        stop: Some(stop.into()),
        behavior: behavior as i32,
        error_response: 0,
        content_type: content as i32,
    };
    envelope(
        channel,
        HeaderType::DeliverSeekInfo,
        info.encode_to_vec().into(),
    )
}
