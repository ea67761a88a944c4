//! Fabric's block arithmetic: header hash, data hash, metadata slots.
//!
//! The header hash is SHA-256 over the ASN.1 DER encoding of
//! `SEQUENCE { INTEGER number, OCTET STRING previous_hash, OCTET STRING data_hash }`,
//! exactly as Fabric's `protoutil.BlockHeaderBytes`; the data hash is SHA-256 over
//! the concatenation of the block's data entries.

use bytes::Bytes;
use prost::Message;
use sha2::{Digest, Sha256};

use crate::fabric::protos::common::{
    Block, BlockData, BlockHeader, BlockMetadata, BlockMetadataIndex, ChannelHeader, Envelope,
    HeaderType, LastConfig, Metadata, OrdererBlockMetadata, Payload,
};

/// Number of metadata slots Fabric writes in every block (SIGNATURES .. COMMIT_HASH).
pub const METADATA_SLOTS: usize = 5;

/// The DER bytes Fabric hashes to identify a block header.
pub fn header_bytes(header: &BlockHeader) -> Vec<u8> {
    yasna::construct_der(|writer| {
        writer.write_sequence(|seq| {
            seq.next().write_u64(header.number);
            seq.next().write_bytes(&header.previous_hash);
            seq.next().write_bytes(&header.data_hash);
        })
    })
}

/// SHA-256 of the header's DER encoding: the value the next block stores as `previous_hash`.
pub fn header_hash(header: &BlockHeader) -> Bytes {
    Bytes::from(Sha256::digest(header_bytes(header)).to_vec())
}

/// SHA-256 over the concatenated data entries, hashed incrementally (no concatenation copy).
pub fn data_hash<'a>(entries: impl IntoIterator<Item = &'a Bytes>) -> Bytes {
    let mut hasher = Sha256::new();
    for entry in entries {
        hasher.update(entry);
    }
    Bytes::from(hasher.finalize().to_vec())
}

/// Builds a block over `data`, with its data hash and the metadata slots Fabric fills for
/// an orderer-written block: SIGNATURES holds an `OrdererBlockMetadata` (last config index
/// and consenter metadata), LAST_CONFIG repeats the index for 1.x-era readers.
pub fn new_block(
    number: u64,
    previous_hash: Bytes,
    data: Vec<Bytes>,
    last_config_index: u64,
    consenter_metadata: Bytes,
) -> Block {
    let header = BlockHeader {
        number,
        previous_hash,
        data_hash: data_hash(&data),
    };
    Block {
        header: Some(header),
        data: Some(BlockData { data }),
        metadata: Some(orderer_metadata(last_config_index, consenter_metadata)),
    }
}

/// Metadata slots of an orderer-written block (no orderer signature yet).
/// `consenter_metadata` is stored wrapped in a `Metadata`, as Fabric's block
/// writer stores it (nothing at all when empty).
pub fn orderer_metadata(last_config_index: u64, consenter_metadata: Bytes) -> BlockMetadata {
    let mut slots = vec![Bytes::new(); METADATA_SLOTS];
    let last_config = LastConfig {
        index: last_config_index,
    };
    let consenter_metadata = Metadata {
        value: consenter_metadata,
        signatures: Vec::new(),
    }
    .encode_to_vec()
    .into();
    let signatures = Metadata {
        value: OrdererBlockMetadata {
            last_config: Some(last_config),
            consenter_metadata,
        }
        .encode_to_vec()
        .into(),
        signatures: Vec::new(),
    };
    slots[BlockMetadataIndex::Signatures as usize] = signatures.encode_to_vec().into();
    slots[BlockMetadataIndex::LastConfig as usize] = Metadata {
        value: last_config.encode_to_vec().into(),
        signatures: Vec::new(),
    }
    .encode_to_vec()
    .into();
    BlockMetadata { metadata: slots }
}

/// The bytes an orderer signs for a block, and a peer verifies: the
/// SIGNATURES slot's `value` (the `OrdererBlockMetadata`) ‖ the marshalled
/// `SignatureHeader` of the signature ‖ the header's DER ([`header_bytes`]).
pub fn block_signature_message(
    value: &[u8],
    signature_header: &[u8],
    header: &BlockHeader,
) -> Vec<u8> {
    let header = header_bytes(header);
    let mut message = Vec::with_capacity(value.len() + signature_header.len() + header.len());
    message.extend_from_slice(value);
    message.extend_from_slice(signature_header);
    message.extend_from_slice(&header);
    message
}

/// The last config index a block points at: from the SIGNATURES slot's
/// `OrdererBlockMetadata` (Fabric 2.x and later), else from the LAST_CONFIG slot (1.x).
pub fn last_config_index(block: &Block) -> Option<u64> {
    let slots = &block.metadata.as_ref()?.metadata;
    let from_signatures = slots
        .get(BlockMetadataIndex::Signatures as usize)
        .and_then(|raw| Metadata::decode(raw.clone()).ok())
        .and_then(|md| OrdererBlockMetadata::decode(md.value).ok())
        .and_then(|obm| obm.last_config)
        .map(|lc| lc.index);
    from_signatures.or_else(|| {
        let raw = slots.get(BlockMetadataIndex::LastConfig as usize)?;
        let md = Metadata::decode(raw.clone()).ok()?;
        if md.value.is_empty() {
            return None;
        }
        LastConfig::decode(md.value).ok().map(|lc| lc.index)
    })
}

/// The consenter metadata an orderer put in the block (etcdraft's
/// `BlockMetadata`, Kafka's offsets): the SIGNATURES slot's
/// `OrdererBlockMetadata.consenter_metadata`, unwrapped from its `Metadata`.
/// `None` when the block has none.
pub fn consenter_metadata(block: &Block) -> Option<Bytes> {
    let raw = block
        .metadata
        .as_ref()?
        .metadata
        .get(BlockMetadataIndex::Signatures as usize)?;
    let obm = OrdererBlockMetadata::decode(Metadata::decode(raw.clone()).ok()?.value).ok()?;
    let value = Metadata::decode(obm.consenter_metadata).ok()?.value;
    (!value.is_empty()).then_some(value)
}

/// Whether the block is a config block: its single envelope is of type CONFIG
/// (or the legacy ORDERER_TRANSACTION).
pub fn is_config_block(block: &Block) -> bool {
    single_header_type(block).is_some_and(|t| {
        t == HeaderType::Config as i32 || t == HeaderType::OrdererTransaction as i32
    })
}

/// Whether the block holds a CONFIG envelope: a block that moves the
/// channel's config (and LAST_CONFIG). A system channel's ORDERER_TRANSACTION
/// block is a config block to [`is_config_block`] but does not.
pub fn holds_channel_config(block: &Block) -> bool {
    single_header_type(block) == Some(HeaderType::Config as i32)
}

/// Whether a marshalled envelope is a CONFIG envelope: the only kind whose
/// block is a config block (LAST_CONFIG names it, the config moves). A
/// system channel's ORDERER_TRANSACTION is ordered alone too, but is not.
pub fn is_config_envelope(envelope: &[u8]) -> bool {
    Envelope::decode(envelope)
        .ok()
        .and_then(|e| Payload::decode(e.payload).ok())
        .and_then(|p| p.header)
        .and_then(|h| ChannelHeader::decode(h.channel_header).ok())
        .is_some_and(|h| h.r#type == HeaderType::Config as i32)
}

/// The header type of a block's only envelope.
fn single_header_type(block: &Block) -> Option<i32> {
    let [raw] = entries(block) else {
        return None;
    };
    let envelope = Envelope::decode(raw.clone()).ok()?;
    let header = Payload::decode(envelope.payload).ok()?.header?;
    ChannelHeader::decode(header.channel_header)
        .ok()
        .map(|h| h.r#type)
}

/// Block number, or 0 for a block without header (only reachable with foreign input).
pub fn number(block: &Block) -> u64 {
    block.header.as_ref().map_or(0, |h| h.number)
}

/// The block's data entries (empty for a block without data).
pub fn entries(block: &Block) -> &[Bytes] {
    block.data.as_ref().map_or(&[], |d| &d.data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(number: u64, prev: &[u8], data: &[u8]) -> BlockHeader {
        BlockHeader {
            number,
            previous_hash: Bytes::copy_from_slice(prev),
            data_hash: Bytes::copy_from_slice(data),
        }
    }

    // Expected values computed independently with Python: pyasn1's DER encoder over
    // SEQUENCE{INTEGER, OCTET STRING, OCTET STRING} and hashlib.sha256
    // (see tests/conformance/hash_vectors.py).
    #[test]
    fn header_der_matches_independent_encoder() {
        assert_eq!(
            hex::encode(header_bytes(&hdr(0, b"", b""))),
            "300702010004000400"
        );
        assert_eq!(
            hex::encode(header_bytes(&hdr(128, b"\x01\x02", b"\x03"))),
            "300b0202008004020102040103"
        );
    }

    #[test]
    fn header_hash_matches_independent_vectors() {
        let sha = |s: &[u8]| Sha256::digest(s).to_vec();
        let cases: [(u64, Vec<u8>, Vec<u8>, &str); 6] = [
            (
                0,
                vec![],
                sha(b"genesis"),
                "506a957292c63f0f85b774fc1feab49d1b04b6ea8b4c081d96c49041baf8296e",
            ),
            (
                1,
                sha(b"a"),
                sha(b"b"),
                "21ebf27ccd34e73e98a190724ee135bbdf00f4db72eb9c143d5ad7a0f1e4cd5b",
            ),
            (
                255,
                vec![0xff; 32],
                vec![0; 32],
                "7c9ec275df43be6fbe3330babdd7edc207a63d022e56980d6425b9de560f70f2",
            ),
            (
                1 << 32,
                vec![1; 32],
                vec![2; 32],
                "735e6eecc72268dfeca5000a8564e0a6c3ec970d38a191913071b8653163b4b6",
            ),
            (
                (1 << 63) + 5,
                vec![0x80; 32],
                vec![0x7f; 32],
                "b9f3f4e548dd4ed7ee80424326f2d50d2bfb0c628eb8d81fa73504e68ab2f15e",
            ),
            (
                u64::MAX,
                vec![],
                vec![],
                "0f867fa41161925c3205313d2156753c9ca578818e2e1b80a940aeff9317dafb",
            ),
        ];
        for (number, prev, data, expected) in cases {
            assert_eq!(
                hex::encode(header_hash(&hdr(number, &prev, &data))),
                expected,
                "block {number}"
            );
        }
    }

    #[test]
    fn data_hash_is_sha256_of_concatenation() {
        let entries = [Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
        assert_eq!(
            hex::encode(data_hash(&entries)),
            "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        assert_eq!(
            hex::encode(data_hash(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn last_config_index_round_trips_through_metadata() {
        let block = new_block(
            7,
            Bytes::new(),
            vec![Bytes::from_static(b"x")],
            3,
            Bytes::new(),
        );
        assert_eq!(last_config_index(&block), Some(3));
        assert_eq!(
            block.metadata.as_ref().map(|m| m.metadata.len()),
            Some(METADATA_SLOTS)
        );
    }

    #[test]
    fn consenter_metadata_is_wrapped_in_metadata_as_fabric_stores_it() {
        let obm = |metadata: BlockMetadata| {
            let raw = metadata.metadata[BlockMetadataIndex::Signatures as usize].clone();
            OrdererBlockMetadata::decode(Metadata::decode(raw).expect("slot").value).expect("obm")
        };
        let wrapped = obm(orderer_metadata(2, Bytes::from_static(b"raft")));
        let inner = Metadata::decode(wrapped.consenter_metadata).expect("wrapped");
        assert_eq!(inner.value, Bytes::from_static(b"raft"));
        assert!(obm(orderer_metadata(2, Bytes::new()))
            .consenter_metadata
            .is_empty());
    }
}
