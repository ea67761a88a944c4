//! Building the envelopes a Fabric client sends: transactions for Broadcast and
//! SeekInfo requests for Deliver, signed when the client has an identity.

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

/// An unsigned Deliver request for blocks `start..=stop`: enough for a
/// channel whose Readers admit anyone.
pub fn seek(
    channel: &str,
    start: BlockPosition,
    stop: BlockPosition,
    behavior: SeekBehavior,
    content: SeekContentType,
) -> Envelope {
    signed_seek(
        channel,
        start,
        stop,
        behavior,
        content,
        &Requester::default(),
    )
}

/// Who asks for blocks: the identity that signs the request, and the SHA-256
/// of the TLS client certificate its connection presents (an orderer that
/// requires client certificates binds each request to it).
#[derive(Default, Clone, Copy)]
pub struct Requester<'a> {
    pub identity: Option<&'a SigningIdentity>,
    pub tls_cert_hash: Option<&'a [u8]>,
}

/// SHA-256 of the first certificate of a PEM chain, as a request's TLS
/// binding names it.
pub fn tls_cert_hash(certificate_pem: &[u8]) -> Option<Vec<u8>> {
    use sha2::Digest;
    let (_, pem) = x509_parser::pem::parse_x509_pem(certificate_pem).ok()?;
    Some(sha2::Sha256::digest(&pem.contents).to_vec())
}

/// A Deliver request for blocks `start..=stop` by `requester`.
pub fn signed_seek(
    channel: &str,
    start: BlockPosition,
    stop: BlockPosition,
    behavior: SeekBehavior,
    content: SeekContentType,
    requester: &Requester<'_>,
) -> Envelope {
    let info = SeekInfo {
        start: Some(start.into()),
        stop: Some(stop.into()),
        behavior: behavior as i32,
        error_response: 0,
        content_type: content as i32,
    };
    let creator = requester
        .identity
        .map_or_else(creator, SigningIdentity::creator);
    let (mut envelope, _) = new_envelope(
        channel,
        HeaderType::DeliverSeekInfo,
        info.encode_to_vec().into(),
        creator,
    );
    if let Some(hash) = requester.tls_cert_hash {
        envelope = with_tls_cert_hash(envelope, hash);
    }
    if let Some(identity) = requester.identity {
        envelope.signature = identity.sign(&envelope.payload);
    }
    envelope
}

/// The envelope with its channel header naming `hash`; an envelope this
/// module made always decodes.
fn with_tls_cert_hash(envelope: Envelope, hash: &[u8]) -> Envelope {
    use crate::fabric::protos::common::{ChannelHeader, Payload};
    let Ok(mut payload) = Payload::decode(envelope.payload.clone()) else {
        return envelope;
    };
    let Some(header) = payload.header.as_mut() else {
        return envelope;
    };
    let Ok(mut channel_header) = ChannelHeader::decode(header.channel_header.clone()) else {
        return envelope;
    };
    channel_header.tls_cert_hash = Bytes::copy_from_slice(hash);
    header.channel_header = channel_header.encode_to_vec().into();
    Envelope {
        payload: payload.encode_to_vec().into(),
        signature: envelope.signature,
    }
}
