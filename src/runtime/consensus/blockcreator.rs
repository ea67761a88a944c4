//! Turns batches into blocks that continue the chain (Fabric's blockcreator).

use bytes::Bytes;

use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::runtime::blockcutter::Batch;
use crate::runtime::ledger::ChainTip;

/// Numbers blocks and links each to the previous header hash.
#[derive(Debug)]
pub struct BlockCreator {
    next_number: u64,
    previous_hash: Bytes,
    last_config: u64,
}

impl BlockCreator {
    /// Continues from the ledger's tip.
    pub fn new(tip: &ChainTip) -> BlockCreator {
        BlockCreator {
            next_number: tip.height,
            previous_hash: tip.last_hash.clone(),
            last_config: tip.last_config,
        }
    }

    /// The next block over `batch`. `consenter_metadata` goes into the block's
    /// `OrdererBlockMetadata` (empty for solo). A config block's LAST_CONFIG
    /// names itself, and every later block names it.
    pub fn create_next_block(
        &mut self,
        batch: Batch,
        is_config: bool,
        consenter_metadata: Bytes,
    ) -> Block {
        if is_config {
            self.last_config = self.next_number;
        }
        let block = blockutil::new_block(
            self.next_number,
            self.previous_hash.clone(),
            batch,
            self.last_config,
            consenter_metadata,
        );
        if let Some(header) = &block.header {
            self.previous_hash = blockutil::header_hash(header);
        }
        self.next_number += 1;
        block
    }

    /// As [`BlockCreator::create_next_block`], with the batch's data hash
    /// already computed (off the actor thread: it reads every byte).
    pub fn create_next_block_hashed(
        &mut self,
        batch: Batch,
        data_hash: Bytes,
        is_config: bool,
        consenter_metadata: Bytes,
    ) -> Block {
        let mut block = self.create_next_block(Vec::new(), is_config, consenter_metadata);
        if let Some(header) = block.header.as_mut() {
            header.data_hash = data_hash;
            self.previous_hash = blockutil::header_hash(header);
        }
        if let Some(data) = block.data.as_mut() {
            data.data = batch;
        }
        block
    }

    pub fn next_number(&self) -> u64 {
        self.next_number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_each_block_to_the_previous_header() {
        let tip = ChainTip {
            height: 4,
            last_hash: Bytes::from_static(b"h3"),
            last_config: 2,
        };
        let mut creator = BlockCreator::new(&tip);
        let b4 = creator.create_next_block(vec![Bytes::from_static(b"a")], false, Bytes::new());
        let b5 = creator.create_next_block(vec![Bytes::from_static(b"b")], false, Bytes::new());
        let h4 = b4.header.as_ref().expect("header");
        let h5 = b5.header.as_ref().expect("header");
        assert_eq!((h4.number, h5.number), (4, 5));
        assert_eq!(h4.previous_hash, Bytes::from_static(b"h3"));
        assert_eq!(h5.previous_hash, blockutil::header_hash(h4));
        assert_eq!(blockutil::last_config_index(&b5), Some(2));
        assert_eq!(creator.next_number(), 6);

        let b6 = creator.create_next_block(vec![Bytes::from_static(b"c")], true, Bytes::new());
        let d = vec![Bytes::from_static(b"d")];
        let b7 = creator.create_next_block_hashed(
            d.clone(),
            blockutil::data_hash(&d),
            false,
            Bytes::new(),
        );
        assert_eq!(blockutil::last_config_index(&b6), Some(6));
        assert_eq!(blockutil::last_config_index(&b7), Some(6));
        // The same block as one made with the hash computed inline.
        let mut inline = BlockCreator::new(&tip);
        for (data, is_config) in [(b"a", false), (b"b", false), (b"c", true)] {
            inline.create_next_block(vec![Bytes::from_static(data)], is_config, Bytes::new());
        }
        assert_eq!(inline.create_next_block(d, false, Bytes::new()), b7);
    }
}
