//! What an orderer signs: every block it writes (Fabric's block writer) and
//! the CONFIG envelopes it makes from config updates (Fabric's
//! `CreateSignedEnvelope`).

use bytes::Bytes;
use prost::Message;

use super::{SignerError, SigningIdentity};
use crate::fabric::blockutil;
use crate::fabric::protos::common::{
    Block, BlockMetadataIndex, Envelope, Metadata, MetadataSignature, Payload,
};

impl SigningIdentity {
    /// Signs a block as Fabric 3.x's block writer does: the SIGNATURES slot
    /// keeps its value (the `OrdererBlockMetadata`: last config index and
    /// consenter metadata) and holds one `MetadataSignature` of this
    /// identity, over value ‖ signature header ‖ header DER. LAST_CONFIG is
    /// left as it is (unsigned, as in Fabric 3.x).
    pub fn sign_block(&self, block: &mut Block) -> Result<(), SignerError> {
        let unsignable = |what: &str| SignerError::Sign(format!("the block has no {what}"));
        let header = block.header.as_ref().ok_or_else(|| unsignable("header"))?;
        let slot = block
            .metadata
            .as_mut()
            .and_then(|m| m.metadata.get_mut(BlockMetadataIndex::Signatures as usize))
            .ok_or_else(|| unsignable("SIGNATURES metadata slot"))?;
        let value = Metadata::decode(slot.clone())
            .map_err(|e| {
                SignerError::Sign(format!("the SIGNATURES metadata is not Metadata: {e}"))
            })?
            .value;
        let signature_header = self.signature_header();
        let signature = self.sign(&blockutil::block_signature_message(
            &value,
            &signature_header,
            header,
        ));
        *slot = Metadata {
            value,
            signatures: vec![MetadataSignature {
                signature_header,
                signature,
                identifier_header: Bytes::new(),
            }],
        }
        .encode_to_vec()
        .into();
        Ok(())
    }

    /// `envelope` as this identity's own: its signature header names this
    /// identity with a fresh nonce, and its signature covers the new payload.
    /// The channel header and the data stay as they are.
    pub fn sign_envelope(&self, envelope: &Envelope) -> Result<Envelope, SignerError> {
        let mut payload = Payload::decode(envelope.payload.clone())
            .map_err(|e| SignerError::Sign(format!("the envelope's payload: {e}")))?;
        let header = payload
            .header
            .as_mut()
            .ok_or_else(|| SignerError::Sign("the envelope's payload has no header".into()))?;
        header.signature_header = self.signature_header();
        let payload = Bytes::from(payload.encode_to_vec());
        Ok(Envelope {
            signature: self.sign(&payload),
            payload,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::protos::common::{
        ChannelHeader, ConfigEnvelope, LastConfig, OrdererBlockMetadata, SignatureHeader,
    };
    use crate::security::signer::CertificateAuthority;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::Signature;
    use sha2::{Digest, Sha256};

    fn identity() -> SigningIdentity {
        CertificateAuthority::generate("OrdererMSP")
            .expect("ca")
            .issue("orderer1", "orderer")
            .expect("identity")
    }

    fn slot(block: &Block, index: BlockMetadataIndex) -> Metadata {
        let metadata = block.metadata.as_ref().expect("metadata");
        Metadata::decode(metadata.metadata[index as usize].clone()).expect("metadata slot")
    }

    #[test]
    fn a_block_signature_verifies_over_value_header_and_block_header_bytes() {
        let signer = identity();
        let data = vec![Bytes::from_static(b"tx1"), Bytes::from_static(b"tx2")];
        let mut block = blockutil::new_block(7, Bytes::from(vec![9u8; 32]), data, 3, Bytes::new());
        let unsigned = block.clone();
        signer.sign_block(&mut block).expect("signed");

        // Header, data and LAST_CONFIG are untouched; the value is kept.
        assert_eq!(block.header, unsigned.header);
        assert_eq!(block.data, unsigned.data);
        let last_config = slot(&block, BlockMetadataIndex::LastConfig);
        assert!(last_config.signatures.is_empty());
        assert_eq!(
            LastConfig::decode(last_config.value)
                .expect("last config")
                .index,
            3
        );
        let signatures = slot(&block, BlockMetadataIndex::Signatures);
        assert_eq!(
            signatures.value,
            slot(&unsigned, BlockMetadataIndex::Signatures).value
        );
        let obm = OrdererBlockMetadata::decode(signatures.value.clone()).expect("obm");
        assert_eq!(obm.last_config.expect("last config").index, 3);
        assert!(obm.consenter_metadata.is_empty());
        assert_eq!(blockutil::last_config_index(&block), Some(3));

        let [signature] = signatures.signatures.as_slice() else {
            panic!("one signature")
        };
        assert!(signature.identifier_header.is_empty());
        let header = SignatureHeader::decode(signature.signature_header.clone()).expect("header");
        assert_eq!(header.creator, signer.serialized());
        assert_eq!(header.nonce.len(), 24);

        // The signed bytes, put together here from their definitions: the
        // value, the signature header, and the DER of
        // SEQUENCE { INTEGER 7, OCTET STRING prev, OCTET STRING data hash }.
        let h = block.header.as_ref().expect("header");
        let mut der = vec![0x30, 0x47, 0x02, 0x01, 0x07, 0x04, 0x20];
        der.extend_from_slice(&h.previous_hash);
        der.extend_from_slice(&[0x04, 0x20]);
        der.extend_from_slice(&h.data_hash);
        assert_eq!(h.data_hash.as_ref(), Sha256::digest(b"tx1tx2").as_slice());
        let mut message = signatures.value.to_vec();
        message.extend_from_slice(&signature.signature_header);
        message.extend_from_slice(&der);
        assert_eq!(
            blockutil::block_signature_message(&signatures.value, &signature.signature_header, h),
            message
        );
        let sig = Signature::from_der(&signature.signature).expect("DER");
        assert!(sig.normalize_s() == sig, "low S");
        signer
            .verifying_key()
            .verify(&message, &sig)
            .expect("verifies");

        // Any change to the header breaks it.
        let mut tampered = h.clone();
        tampered.number = 8;
        let other = blockutil::block_signature_message(
            &signatures.value,
            &signature.signature_header,
            &tampered,
        );
        assert!(signer.verifying_key().verify(&other, &sig).is_err());
    }

    #[test]
    fn a_block_without_header_or_metadata_is_not_signed() {
        let signer = identity();
        let mut block = blockutil::new_block(1, Bytes::new(), Vec::new(), 0, Bytes::new());
        block.metadata = None;
        assert!(signer.sign_block(&mut block).is_err());
        block.header = None;
        assert!(signer.sign_block(&mut block).is_err());
    }

    #[test]
    fn a_config_envelope_is_signed_by_its_maker() {
        let signer = identity();
        let genesis = GenesisProfile::embedded("c1", vec![]);
        let unsigned =
            crate::fabric::channelconfig::genesis::config_envelope("c1", genesis.config(), None);
        let signed = signer.sign_envelope(&unsigned).expect("signed");

        let before = Payload::decode(unsigned.payload.clone()).expect("payload");
        let after = Payload::decode(signed.payload.clone()).expect("payload");
        assert_eq!(after.data, before.data);
        let (before, after) = (
            before.header.expect("header"),
            after.header.expect("header"),
        );
        assert_eq!(after.channel_header, before.channel_header);
        let channel_header = ChannelHeader::decode(after.channel_header).expect("channel header");
        assert_eq!(channel_header.channel_id, "c1");
        let header = SignatureHeader::decode(after.signature_header).expect("signature header");
        assert_eq!(header.creator, signer.serialized());
        assert_eq!(header.nonce.len(), 24);
        ConfigEnvelope::decode(Payload::decode(signed.payload.clone()).expect("p").data)
            .expect("still a config envelope");

        let sig = Signature::from_der(&signed.signature).expect("DER");
        signer
            .verifying_key()
            .verify(&signed.payload, &sig)
            .expect("the signature covers the payload");
    }
}
