//! Blocks and checks shared by the store's tests.

use bytes::Bytes;
use prost::Message;

use super::{BlockStore, ChainTip};
use crate::fabric::blockutil;
use crate::fabric::channelconfig::genesis::GenesisProfile;
use crate::fabric::protos::common::Block;

pub(super) fn genesis(channel: &str) -> Block {
    GenesisProfile::embedded(channel, vec![]).genesis_block()
}

/// The block after `tip`, holding `payload`.
pub(super) fn block_after(tip: &ChainTip, payload: &[u8]) -> Block {
    blockutil::new_block(
        tip.height,
        tip.last_hash.clone(),
        vec![Bytes::copy_from_slice(payload)],
        tip.last_config,
        Bytes::new(),
    )
}

pub(super) fn next(store: &BlockStore, payload: &[u8]) -> Block {
    block_after(&store.tip(), payload)
}

pub(super) fn encoded(blocks: &[Block]) -> Vec<Bytes> {
    blocks
        .iter()
        .map(|b| Bytes::from(b.encode_to_vec()))
        .collect()
}

/// A block as a record of a block file.
pub(super) fn record(block: &Block) -> Vec<u8> {
    let mut record = Vec::new();
    prost::encoding::encode_varint(block.encoded_len() as u64, &mut record);
    block.encode(&mut record).expect("encode");
    record
}

/// Appends and publishes; returns the blocks as stored.
pub(super) fn append_acknowledged(store: &BlockStore, blocks: &[Block]) -> Vec<Bytes> {
    let mut writer = store.writer().expect("writer");
    writer.append(blocks).expect("append");
    writer.publish();
    encoded(blocks)
}

/// Checks every block of the store: number, previous hash, data hash.
/// Returns the blocks as stored.
pub(super) fn valid_chain(store: &BlockStore) -> Vec<Bytes> {
    let mut previous_hash = Bytes::new();
    (0..store.height())
        .map(|number| {
            let bytes = store
                .block_bytes(number)
                .expect("read")
                .expect("below the height");
            let block = Block::decode(bytes.clone()).expect("decode");
            let header = block.header.as_ref().expect("header");
            assert_eq!(header.number, number);
            assert_eq!(header.previous_hash, previous_hash, "block {number}");
            assert_eq!(
                header.data_hash,
                blockutil::data_hash(blockutil::entries(&block)),
                "block {number}"
            );
            previous_hash = blockutil::header_hash(header);
            bytes
        })
        .collect()
}

/// Appends raw bytes to a file.
pub(super) fn append_to_file(path: &std::path::Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .expect("open");
    std::io::Write::write_all(&mut file, bytes).expect("write");
}
