//! Fabric's envelope arithmetic: timestamps, transaction IDs, and the
//! header-payload-envelope nesting every client-built message shares.
//!
//! The transaction ID is computed as Fabric's `protoutil.ComputeTxID`: hex
//! SHA-256 of nonce ‖ creator. Signing is left to the caller: the signature is
//! over the envelope's `payload` bytes.

#[cfg(test)]
pub(crate) mod testing;

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::fabric::protos::common::{
    ChannelHeader, Envelope, Header, HeaderType, Payload, SignatureHeader,
};

/// Bytes of random nonce in a signature header (Fabric uses 24).
pub const NONCE_BYTES: usize = 24;

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

/// The transaction ID's 32 bytes: SHA-256 of nonce ‖ creator.
pub fn tx_id(nonce: &[u8], creator: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(nonce)
        .chain_update(creator)
        .finalize()
        .into()
}

/// An unsigned envelope of `kind` for `channel` carrying `data`, naming
/// `creator`, with a fresh nonce; also returns the transaction ID's 32 bytes.
pub fn new_envelope(
    channel: &str,
    kind: HeaderType,
    data: Bytes,
    creator: Bytes,
) -> (Envelope, [u8; 32]) {
    let mut nonce = [0u8; NONCE_BYTES];
    rand::rng().fill_bytes(&mut nonce);
    let id = tx_id(&nonce, &creator);
    let channel_header = ChannelHeader {
        r#type: kind as i32,
        version: 0,
        timestamp: Some(now()),
        channel_id: channel.into(),
        tx_id: hex::encode(id),
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
    let envelope = Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    };
    (envelope, id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_id_is_the_hash_of_nonce_and_creator() {
        let creator = Bytes::from_static(b"creator");
        let (envelope, id) = new_envelope(
            "c1",
            HeaderType::EndorserTransaction,
            Bytes::from_static(b"tx"),
            creator.clone(),
        );
        let payload = Payload::decode(envelope.payload).expect("payload");
        let header = payload.header.expect("header");
        let channel_header = ChannelHeader::decode(header.channel_header).expect("channel header");
        let signature_header =
            SignatureHeader::decode(header.signature_header).expect("signature header");
        assert_eq!(signature_header.nonce.len(), NONCE_BYTES);
        assert_eq!(signature_header.creator, creator);
        assert_eq!(id, tx_id(&signature_header.nonce, &creator));
        assert_eq!(channel_header.tx_id, hex::encode(id));
        assert_eq!(channel_header.channel_id, "c1");
        assert_eq!(payload.data, Bytes::from_static(b"tx"));
        assert!(envelope.signature.is_empty());
    }
}
