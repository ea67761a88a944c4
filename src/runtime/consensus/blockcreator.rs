//! Turns batches into signed blocks that continue the chain (Fabric's
//! blockcreator and the signing half of its block writer).

use std::sync::Arc;

use bytes::Bytes;

use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::runtime::blockcutter::Batch;
use crate::runtime::ledger::ChainTip;
use crate::security::signer::{SignerError, SigningIdentity};

/// Numbers blocks, links each to the previous header hash, and has the
/// node's identity sign them.
#[derive(Debug)]
pub struct BlockCreator {
    next_number: u64,
    previous_hash: Bytes,
    last_config: u64,
    signer: Arc<SigningIdentity>,
}

/// The next block's place in the chain, to be made (data hash, header,
/// signature) wherever the caller likes: making it reads every byte of the
/// batch and signs, so a chain actor makes it off its thread. Hand the made
/// block back with [`BlockCreator::made`] before asking for the next one.
#[derive(Debug)]
pub struct NextBlock {
    number: u64,
    previous_hash: Bytes,
    last_config: u64,
    signer: Arc<SigningIdentity>,
}

impl NextBlock {
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The signed block over `batch`. `consenter_metadata` goes into the
    /// block's `OrdererBlockMetadata` (empty for solo).
    pub fn make(self, batch: Batch, consenter_metadata: Bytes) -> Result<Block, SignerError> {
        let mut block = blockutil::new_block(
            self.number,
            self.previous_hash,
            batch,
            self.last_config,
            consenter_metadata,
        );
        self.signer.sign_block(&mut block)?;
        Ok(block)
    }
}

impl NextBlock {
    /// The block over `batch` without the node's signature: a Raft leader
    /// proposes it so, and every consenter signs the block it writes.
    pub fn make_unsigned(self, batch: Batch) -> Block {
        blockutil::new_block(
            self.number,
            self.previous_hash,
            batch,
            self.last_config,
            Bytes::new(),
        )
    }
}

impl BlockCreator {
    /// Continues from the ledger's tip; `signer` signs every block.
    pub fn new(tip: &ChainTip, signer: Arc<SigningIdentity>) -> BlockCreator {
        BlockCreator {
            next_number: tip.height,
            previous_hash: tip.last_hash.clone(),
            last_config: tip.last_config,
            signer,
        }
    }

    /// The next block's place. A config block's LAST_CONFIG names itself,
    /// and every later block names it.
    pub fn next_block(&self, is_config: bool) -> NextBlock {
        NextBlock {
            number: self.next_number,
            previous_hash: self.previous_hash.clone(),
            last_config: if is_config {
                self.next_number
            } else {
                self.last_config
            },
            signer: self.signer.clone(),
        }
    }

    /// The block made from [`BlockCreator::next_block`] continues the chain:
    /// the next one links to it.
    pub fn made(&mut self, block: &Block) {
        let Some(header) = &block.header else {
            return;
        };
        debug_assert_eq!(header.number, self.next_number, "blocks are made in order");
        if let Some(index) = blockutil::last_config_index(block) {
            self.last_config = index;
        }
        self.previous_hash = blockutil::header_hash(header);
        self.next_number = header.number + 1;
    }

    /// Makes the next block over `batch` here and now (for consenters whose
    /// blocks are small, and tests).
    pub fn create_next_block(
        &mut self,
        batch: Batch,
        is_config: bool,
        consenter_metadata: Bytes,
    ) -> Result<Block, SignerError> {
        let block = self.next_block(is_config).make(batch, consenter_metadata)?;
        self.made(&block);
        Ok(block)
    }

    pub fn next_number(&self) -> u64 {
        self.next_number
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::common::{BlockMetadataIndex, Metadata, SignatureHeader};
    use crate::security::signer::CertificateAuthority;
    use p256::ecdsa::signature::Verifier;
    use prost::Message;

    fn signer() -> Arc<SigningIdentity> {
        let ca = CertificateAuthority::generate("OrdererMSP").expect("ca");
        Arc::new(ca.issue("orderer1", "orderer").expect("identity"))
    }

    #[test]
    fn links_each_block_to_the_previous_header() {
        let tip = ChainTip {
            height: 4,
            last_hash: Bytes::from_static(b"h3"),
            last_config: 2,
        };
        let signer = signer();
        let mut creator = BlockCreator::new(&tip, signer.clone());
        let mut make = |data: &'static [u8], is_config| {
            creator
                .create_next_block(vec![Bytes::from_static(data)], is_config, Bytes::new())
                .expect("block")
        };
        let b4 = make(b"a", false);
        let b5 = make(b"b", false);
        let h4 = b4.header.as_ref().expect("header");
        let h5 = b5.header.as_ref().expect("header");
        assert_eq!((h4.number, h5.number), (4, 5));
        assert_eq!(h4.previous_hash, Bytes::from_static(b"h3"));
        assert_eq!(h5.previous_hash, blockutil::header_hash(h4));
        assert_eq!(blockutil::last_config_index(&b5), Some(2));
        let b6 = make(b"c", true);
        assert_eq!(blockutil::last_config_index(&b6), Some(6));
        assert_eq!(creator.next_number(), 7);

        // Made elsewhere (as a chain does off its thread): the same chain.
        let next = creator.next_block(false);
        assert_eq!(next.number(), 7);
        let b7 = next
            .make(vec![Bytes::from_static(b"d")], Bytes::new())
            .expect("block");
        creator.made(&b7);
        let h7 = b7.header.as_ref().expect("header");
        assert_eq!(
            h7.previous_hash,
            blockutil::header_hash(b6.header.as_ref().expect("header"))
        );
        assert_eq!(blockutil::last_config_index(&b7), Some(6));
        assert_eq!(creator.next_number(), 8);

        // Every block carries the signer's signature over its own header.
        for block in [&b4, &b5, &b6, &b7] {
            let raw = &block.metadata.as_ref().expect("metadata").metadata
                [BlockMetadataIndex::Signatures as usize];
            let metadata = Metadata::decode(raw.clone()).expect("metadata");
            let [signature] = metadata.signatures.as_slice() else {
                panic!("one signature")
            };
            let header = SignatureHeader::decode(signature.signature_header.clone()).expect("sh");
            assert_eq!(header.creator, signer.serialized());
            let message = blockutil::block_signature_message(
                &metadata.value,
                &signature.signature_header,
                block.header.as_ref().expect("header"),
            );
            let sig = p256::ecdsa::Signature::from_der(&signature.signature).expect("DER");
            signer
                .verifying_key()
                .verify(&message, &sig)
                .expect("verifies");
        }
    }
}
