//! Building the envelopes a Fabric client sends: transactions for Broadcast and
//! signed-header SeekInfo requests for Deliver (unsigned until the security work).

use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::identity::SigningIdentity;
use crate::protos::common::{
    ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader,
};
use crate::protos::msp::SerializedIdentity;
use crate::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use crate::protos::orderer::seek_position::Type as Position;
use crate::protos::orderer::{SeekInfo, SeekNewest, SeekOldest, SeekPosition, SeekSpecified};

/// MSP ID of the identity the client names as creator.
pub const CLIENT_MSP_ID: &str = "SampleOrg";

/// The current time as a protobuf timestamp.
pub fn now() -> prost_types::Timestamp {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
    }
}

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
    let mut nonce = [0u8; 24];
    rand::rng().fill_bytes(&mut nonce);
    let id: [u8; 32] = Sha256::new()
        .chain_update(nonce)
        .chain_update(&creator)
        .finalize()
        .into();
    let tx_id = hex::encode(id);
    let channel_header = ChannelHeader {
        r#type: kind as i32,
        version: 0,
        timestamp: Some(now()),
        channel_id: channel.into(),
        tx_id,
        epoch: 0,
        extension: Bytes::new(),
        tls_cert_hash: Bytes::new(),
    };
    let signature_header = SignatureHeader {
        creator,
        nonce: Bytes::copy_from_slice(&nonce),
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: signature_header.encode_to_vec().into(),
        }),
        data,
    };
    let payload: Bytes = payload.encode_to_vec().into();
    let signature = signer.map(|s| s.sign(&payload)).unwrap_or_default();
    (Envelope { payload, signature }, id)
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
