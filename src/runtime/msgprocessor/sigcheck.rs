//! The signature rule: an envelope must be signed, by the key of the X.509
//! certificate its creator names, with ECDSA over SHA-256 and a low S (as
//! Fabric requires).
//!
//! What this does not do yet: check that the certificate chains to an MSP of
//! the channel, and evaluate /Channel/Writers over it. Those arrive with the
//! security work; this rule is the per-envelope cryptographic cost they add
//! to, and is off unless `General.Authentication.VerifyEnvelopeSignatures`.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};

use bytes::Bytes;
use p256::ecdsa::Signature;
use prost::Message;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};
use sha2::{Digest, Sha256};

use super::{Rejection, Rule};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::protos::common::{Envelope, Payload, SignatureHeader, Status};
use crate::fabric::protos::msp::SerializedIdentity;

/// Creators remembered; the cache is cleared when it grows past this.
const CACHE_LIMIT: usize = 4096;

/// A creator's public key: the uncompressed P-256 point, verified with ring
/// (about three times faster than a portable implementation).
type PublicKey = UnparsedPublicKey<Bytes>;

/// Verifies envelope signatures; remembers each creator's parsed key, as
/// Fabric's identity cache does, so a certificate is parsed once.
#[derive(Default)]
pub struct SignatureCheck {
    keys: RwLock<HashMap<[u8; 32], PublicKey>>,
}

fn forbidden(info: impl Into<String>) -> Rejection {
    Rejection {
        status: Status::Forbidden,
        info: info.into(),
    }
}

impl SignatureCheck {
    fn key_of(&self, creator: &Bytes) -> Result<PublicKey, Rejection> {
        let id: [u8; 32] = Sha256::digest(creator).into();
        if let Some(key) = self
            .keys
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
        {
            return Ok(key.clone());
        }
        let key = parse_creator(creator)?;
        let mut keys = self.keys.write().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= CACHE_LIMIT {
            keys.clear();
        }
        keys.insert(id, key.clone());
        Ok(key)
    }
}

fn parse_creator(creator: &Bytes) -> Result<PublicKey, Rejection> {
    let identity = SerializedIdentity::decode(creator.clone())
        .map_err(|e| forbidden(format!("creator is not a serialized identity: {e}")))?;
    let (_, pem) = x509_parser::pem::parse_x509_pem(&identity.id_bytes).map_err(|e| {
        forbidden(format!(
            "creator of MSP {} holds no PEM certificate: {e}",
            identity.mspid
        ))
    })?;
    let certificate = pem
        .parse_x509()
        .map_err(|e| forbidden(format!("creator certificate is not X.509: {e}")))?;
    let point = &certificate.public_key().subject_public_key.data;
    // Checks that the point is a P-256 key before it is trusted for verifying.
    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(point)
        .map_err(|_| forbidden("creator certificate does not hold an ECDSA P-256 key"))?;
    let uncompressed = key.to_sec1_point(false);
    Ok(UnparsedPublicKey::new(
        &ECDSA_P256_SHA256_ASN1,
        Bytes::copy_from_slice(uncompressed.as_bytes()),
    ))
}

impl Rule for SignatureCheck {
    fn apply(&self, envelope: &Envelope, _: usize, _: &ChannelConfig) -> Result<(), Rejection> {
        let payload = Payload::decode(envelope.payload.clone())
            .map_err(|e| Rejection::bad_request(format!("error unmarshalling payload: {e}")))?;
        let header = payload
            .header
            .ok_or_else(|| Rejection::bad_request("header not set"))?;
        let signature_header = SignatureHeader::decode(header.signature_header).map_err(|e| {
            Rejection::bad_request(format!("error unmarshalling signature header: {e}"))
        })?;
        if signature_header.creator.is_empty() {
            return Err(forbidden("envelope names no creator"));
        }
        let key = self.key_of(&signature_header.creator)?;
        let signature = Signature::from_der(&envelope.signature)
            .map_err(|_| forbidden("envelope signature is not a DER ECDSA signature"))?;
        if signature.normalize_s() != signature {
            return Err(forbidden(
                "signature has a high S value: only low-S signatures are accepted",
            ));
        }
        key.verify(&envelope.payload, &envelope.signature)
            .map_err(|_| forbidden("envelope signature does not verify with its creator's key"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::envelopeutil::testing::{transaction, TestSigner};

    fn config() -> ChannelConfig {
        let block = GenesisProfile::embedded("c1", vec![]).genesis_block();
        ChannelConfig::from_config_block(&block).expect("config")
    }

    #[test]
    fn accepts_signed_envelopes_and_refuses_the_rest() {
        let rule = SignatureCheck::default();
        let signer = TestSigner::generate("Org1MSP");
        let good = signer.transaction("c1", Bytes::from_static(b"tx"));
        assert_eq!(rule.apply(&good, 0, &config()), Ok(()));
        // Again, from the cache.
        assert_eq!(rule.apply(&good, 0, &config()), Ok(()));

        let mut tampered = good.clone();
        let mut payload = tampered.payload.to_vec();
        let last = payload.len() - 1;
        payload[last] ^= 1;
        tampered.payload = payload.into();
        let err = rule.apply(&tampered, 0, &config()).expect_err("tampered");
        assert_eq!(err.status, Status::Forbidden);
        assert!(err.info.contains("does not verify"), "{}", err.info);

        // The same signature with S replaced by n - S: valid ECDSA, refused.
        let signature = Signature::from_der(&good.signature).expect("DER");
        let (r, s) = signature.split_scalars();
        let high = Signature::from_scalars(r, -*s).expect("high S");
        let mut high_s = good.clone();
        high_s.signature = Bytes::from(high.to_der().as_bytes().to_vec());
        let err = rule.apply(&high_s, 0, &config()).expect_err("high S");
        assert!(err.info.contains("high S"), "{}", err.info);

        let unsigned = transaction("c1", Bytes::from_static(b"tx"));
        let err = rule.apply(&unsigned, 0, &config()).expect_err("unsigned");
        assert_eq!(err.status, Status::Forbidden);
    }
}
