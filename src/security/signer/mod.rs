//! A signing identity: an MSP identity (MSP ID + X.509 certificate) and its
//! private key. The node's own one (Fabric's local MSP signer, from
//! `General.LocalMSPDir` and `General.LocalMSPID`) signs every block the node
//! writes and every CONFIG envelope it makes; the client commands sign their
//! envelopes with the same type.
//!
//! Signatures are ECDSA P-256 over SHA-256 of the message, DER-encoded, with
//! a low S: Fabric refuses high-S signatures.

mod block;
mod development;
mod issue;
mod msp_dir;

use std::path::PathBuf;

use bytes::Bytes;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use p256::pkcs8::EncodePrivateKey;
use prost::Message;
use rand::RngCore;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::fabric::envelopeutil::NONCE_BYTES;
use crate::fabric::protos::common::SignatureHeader;
use crate::fabric::protos::msp::SerializedIdentity;

pub use development::{local_signer, DEVELOPMENT_MSP_DIR};
pub use issue::CertificateAuthority;

/// Why an identity could not be loaded, made or used. Each names the file or
/// folder at fault.
#[derive(Debug, thiserror::Error)]
pub enum SignerError {
    #[error("{0} is not a folder (an MSP folder holds signcerts/ and keystore/)")]
    NoFolder(PathBuf),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no certificate in {0}")]
    NoCertificate(PathBuf),
    #[error("no CA certificate in {0}")]
    NoCaCertificate(PathBuf),
    #[error("no private key in {0}")]
    NoKey(PathBuf),
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error("no private key in {keystore} belongs to the certificate {certificate}")]
    KeyMismatch {
        keystore: PathBuf,
        certificate: PathBuf,
    },
    #[error("cannot generate an identity: {0}")]
    Generate(String),
    #[error("cannot sign: {0}")]
    Sign(String),
}

/// An MSP identity that signs.
pub struct SigningIdentity {
    msp_id: String,
    /// The certificate as Fabric serializes it: one PEM block, 64-column
    /// base64, LF line ends.
    certificate_pem: Bytes,
    key: SigningKey,
    /// The same key for ring, which signs about twice as fast.
    signer: EcdsaKeyPair,
    rng: SystemRandom,
    /// The certificate of the CA that issued it, for an identity made here
    /// (to write it out as an MSP folder).
    ca_pem: Option<Bytes>,
    serialized: Bytes,
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("msp_id", &self.msp_id)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    /// The identity of `certificate_der` signing with `key`, which must be the
    /// key of the certificate (P-256). `source` names where the certificate
    /// came from, for errors.
    fn new(
        msp_id: &str,
        certificate_der: &[u8],
        key: SigningKey,
        source: &std::path::Path,
    ) -> Result<SigningIdentity, SignerError> {
        let invalid = |reason: String| SignerError::Invalid {
            path: source.to_path_buf(),
            reason,
        };
        let public = certificate_key(certificate_der).map_err(invalid)?;
        if public != *key.verifying_key() {
            return Err(invalid(
                "the private key is not the certificate's key".into(),
            ));
        }
        let certificate_pem = pem::encode_config(
            &pem::Pem::new("CERTIFICATE", certificate_der),
            pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
        );
        let certificate_pem = Bytes::from(certificate_pem.into_bytes());
        let serialized = SerializedIdentity {
            mspid: msp_id.to_string(),
            id_bytes: certificate_pem.clone(),
        }
        .encode_to_vec()
        .into();
        let rng = SystemRandom::new();
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| SignerError::Generate(e.to_string()))?;
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_bytes(), &rng)
                .map_err(|e| SignerError::Generate(e.to_string()))?;
        Ok(SigningIdentity {
            msp_id: msp_id.to_string(),
            certificate_pem,
            key,
            signer,
            rng,
            ca_pem: None,
            serialized,
        })
    }

    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// The certificate, PEM.
    pub fn certificate_pem(&self) -> &Bytes {
        &self.certificate_pem
    }

    /// The marshalled `SerializedIdentity` (MSP ID + PEM certificate): what
    /// signature headers name as creator.
    pub fn serialized(&self) -> Bytes {
        self.serialized.clone()
    }

    /// The same bytes as [`SigningIdentity::serialized`], under the name
    /// envelopes give them.
    pub fn creator(&self) -> Bytes {
        self.serialized()
    }

    /// A marshalled `SignatureHeader`: this identity as creator and a fresh
    /// 24-byte nonce (Fabric's `NewSignatureHeader`).
    pub fn signature_header(&self) -> Bytes {
        let mut nonce = [0u8; NONCE_BYTES];
        rand::rng().fill_bytes(&mut nonce);
        SignatureHeader {
            creator: self.serialized(),
            nonce: Bytes::copy_from_slice(&nonce),
        }
        .encode_to_vec()
        .into()
    }

    /// ECDSA over SHA-256 of `message`, DER-encoded, with a low S.
    pub fn sign(&self, message: &[u8]) -> Bytes {
        let normalized = self
            .signer
            .sign(&self.rng, message)
            .ok()
            .and_then(|signed| Signature::from_der(signed.as_ref()).ok())
            .map(|signature| signature.normalize_s());
        // ring fails only if the system RNG does; then sign with the portable code.
        let signature = normalized.unwrap_or_else(|| {
            let signature: Signature = p256::ecdsa::signature::Signer::sign(&self.key, message);
            signature.normalize_s()
        });
        Bytes::from(signature.to_der().as_bytes().to_vec())
    }

    /// The verifying half, to check signatures in tests and benchmarks.
    pub fn verifying_key(&self) -> VerifyingKey {
        *self.key.verifying_key()
    }

    /// The PEM certificate of the CA that issued this identity, when it was
    /// made by a [`CertificateAuthority`] here.
    pub fn ca_pem(&self) -> Option<&Bytes> {
        self.ca_pem.as_ref()
    }
}

/// The P-256 public key of a DER certificate.
fn certificate_key(der: &[u8]) -> Result<VerifyingKey, String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let point = &certificate.public_key().subject_public_key.data;
    VerifyingKey::from_sec1_bytes(point)
        .map_err(|_| "the certificate's key is not an ECDSA P-256 key".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn signatures_are_low_s_der_and_verify() {
        let ca = CertificateAuthority::generate("Org1MSP").expect("ca");
        let identity = ca.issue("node1", "orderer").expect("identity");
        let key = identity.verifying_key();
        // A high S is as likely as a low one: 64 signatures would all but
        // surely include one that needed normalizing.
        for i in 0..64u32 {
            let message = i.to_be_bytes();
            let der = identity.sign(&message);
            let signature = Signature::from_der(&der).expect("DER");
            assert!(signature.normalize_s() == signature, "low S");
            key.verify(&message, &signature).expect("verifies");
        }
        let wrong = Signature::from_der(&identity.sign(b"a")).expect("DER");
        assert!(key.verify(b"b", &wrong).is_err());
    }

    #[test]
    fn the_serialized_identity_is_msp_id_and_canonical_pem() {
        let ca = CertificateAuthority::generate("Org1MSP").expect("ca");
        let identity = ca.issue("node1", "orderer").expect("identity");
        let serialized = SerializedIdentity::decode(identity.serialized()).expect("identity");
        assert_eq!(serialized.mspid, "Org1MSP");
        assert_eq!(serialized.id_bytes, *identity.certificate_pem());
        let text = std::str::from_utf8(&serialized.id_bytes).expect("text");
        assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"));
        assert!(text.ends_with("\n-----END CERTIFICATE-----\n"));
        assert!(text.lines().all(|line| line.len() <= 64));
        assert_eq!(identity.creator(), identity.serialized());

        let header = SignatureHeader::decode(identity.signature_header()).expect("header");
        assert_eq!(header.creator, identity.serialized());
        assert_eq!(header.nonce.len(), NONCE_BYTES);
        let again = SignatureHeader::decode(identity.signature_header()).expect("header");
        assert_ne!(header.nonce, again.nonce, "a fresh nonce each time");
    }
}
