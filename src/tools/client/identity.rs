//! A client's signing identity: an MSP identity whose envelopes carry a real
//! ECDSA P-256 signature, as Fabric clients sign them (SHA-256 of the
//! payload, DER, low S). `ordo bench load` signs with it.
//!
//! Either generated (a CA and a client certificate it issued, which can be
//! written out as an MSP folder for a channel's config) or read from an MSP
//! folder (`signcerts/` and `keystore/`).

use std::path::{Path, PathBuf};

use bytes::Bytes;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use prost::Message;
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_ASN1_SIGNING};

use crate::fabric::protos::msp::SerializedIdentity;

#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("cannot generate an identity: {0}")]
    Generate(String),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

/// NodeOUs as cryptogen writes them: the four roles, certified by the CA.
/// (An MSP needs an admin OU or admincerts to be valid.)
const NODE_OUS_CONFIG: &str = "NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: orderer
";

/// An MSP identity that signs.
pub struct SigningIdentity {
    msp_id: String,
    certificate_pem: Bytes,
    key: SigningKey,
    /// The same key for ring, which signs about twice as fast.
    signer: EcdsaKeyPair,
    rng: SystemRandom,
    /// The CA certificate, for a generated identity.
    ca_pem: Option<Bytes>,
    creator: Bytes,
}

impl std::fmt::Debug for SigningIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningIdentity")
            .field("msp_id", &self.msp_id)
            .finish_non_exhaustive()
    }
}

impl SigningIdentity {
    fn new(
        msp_id: &str,
        certificate_pem: Bytes,
        key: SigningKey,
        ca_pem: Option<Bytes>,
    ) -> Result<Self, IdentityError> {
        let creator = SerializedIdentity {
            mspid: msp_id.to_string(),
            id_bytes: certificate_pem.clone(),
        }
        .encode_to_vec()
        .into();
        let rng = SystemRandom::new();
        let pkcs8 = key
            .to_pkcs8_der()
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let signer =
            EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, pkcs8.as_bytes(), &rng)
                .map_err(|e| IdentityError::Generate(e.to_string()))?;
        Ok(SigningIdentity {
            msp_id: msp_id.to_string(),
            certificate_pem,
            key,
            signer,
            rng,
            ca_pem,
            creator,
        })
    }

    /// A new CA and a client identity it issued (OU "client", as NodeOUs want).
    pub fn generate(msp_id: &str) -> Result<SigningIdentity, IdentityError> {
        let fail = |e: rcgen::Error| IdentityError::Generate(e.to_string());
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("ca.{msp_id}"));
        ca_params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, msp_id.to_string());
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = rcgen::KeyPair::generate().map_err(fail)?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(fail)?;

        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("loadclient@{msp_id}"));
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, "client");
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().map_err(fail)?;
        let certificate = params.signed_by(&key, &ca).map_err(fail)?;
        let signing_key = SigningKey::from_pkcs8_der(&key.serialize_der())
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        SigningIdentity::new(
            msp_id,
            certificate.pem().into_bytes().into(),
            signing_key,
            Some(ca.pem().into_bytes().into()),
        )
    }

    /// Reads `signcerts/` (the first certificate) and `keystore/` (the first
    /// PKCS#8 key) of an MSP folder.
    pub fn from_msp_dir(dir: &Path, msp_id: &str) -> Result<SigningIdentity, IdentityError> {
        let certificate = first_file(&dir.join("signcerts"))?;
        let key_path = first_file(&dir.join("keystore"))?;
        let certificate_pem = read(&certificate)?;
        let key_pem =
            String::from_utf8(read(&key_path)?.to_vec()).map_err(|_| IdentityError::Invalid {
                path: key_path.clone(),
                reason: "not a PEM file".into(),
            })?;
        let key = SigningKey::from_pkcs8_pem(&key_pem).map_err(|e| IdentityError::Invalid {
            path: key_path,
            reason: format!("not a PKCS#8 P-256 private key: {e}"),
        })?;
        SigningIdentity::new(msp_id, certificate_pem, key, None)
    }

    /// Writes a generated identity as an MSP folder: `cacerts/`, `signcerts/`,
    /// `keystore/` and a NodeOUs `config.yaml`.
    pub fn write_msp(&self, dir: &Path) -> Result<(), IdentityError> {
        let ca = self.ca_pem.as_ref().ok_or_else(|| IdentityError::Invalid {
            path: dir.to_path_buf(),
            reason: "only a generated identity can be written out".into(),
        })?;
        let key = self
            .key
            .to_pkcs8_pem(Default::default())
            .map_err(|e| IdentityError::Generate(e.to_string()))?;
        let files: [(&str, &[u8]); 4] = [
            ("cacerts/ca-cert.pem", ca),
            ("signcerts/cert.pem", &self.certificate_pem),
            ("keystore/priv_sk", key.as_bytes()),
            ("config.yaml", NODE_OUS_CONFIG.as_bytes()),
        ];
        for (name, bytes) in files {
            let path = dir.join(name);
            let write = || -> std::io::Result<()> {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, bytes)
            };
            write().map_err(|source| IdentityError::Read {
                path: path.clone(),
                source,
            })?;
        }
        Ok(())
    }

    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    /// The marshalled `SerializedIdentity` envelopes name as creator.
    pub fn creator(&self) -> Bytes {
        self.creator.clone()
    }

    /// ECDSA over SHA-256 of `message`, DER-encoded, with a low S (Fabric
    /// refuses high-S signatures).
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
    pub fn verifying_key(&self) -> p256::ecdsa::VerifyingKey {
        *self.key.verifying_key()
    }
}

fn read(path: &Path) -> Result<Bytes, IdentityError> {
    std::fs::read(path)
        .map(Bytes::from)
        .map_err(|source| IdentityError::Read {
            path: path.to_path_buf(),
            source,
        })
}

fn first_file(dir: &Path) -> Result<PathBuf, IdentityError> {
    let entries = std::fs::read_dir(dir).map_err(|source| IdentityError::Read {
        path: dir.to_path_buf(),
        source,
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .next()
        .ok_or_else(|| IdentityError::Invalid {
            path: dir.to_path_buf(),
            reason: "holds no file".into(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;

    #[test]
    fn generated_identities_sign_low_s_and_round_trip_through_an_msp_folder() {
        let identity = SigningIdentity::generate("LoadMSP").expect("generate");
        let message = b"payload bytes";
        let der = identity.sign(message);
        let signature = Signature::from_der(&der).expect("DER");
        assert!(signature.normalize_s() == signature, "low S");
        identity
            .verifying_key()
            .verify(message, &signature)
            .expect("verifies");

        let dir = tempfile::tempdir().expect("tempdir");
        identity.write_msp(dir.path()).expect("write");
        let again = SigningIdentity::from_msp_dir(dir.path(), "LoadMSP").expect("read back");
        assert_eq!(again.creator(), identity.creator());
        let signature = Signature::from_der(&again.sign(message)).expect("DER");
        identity
            .verifying_key()
            .verify(message, &signature)
            .expect("same key");
        let creator = SerializedIdentity::decode(identity.creator()).expect("identity");
        assert_eq!(creator.mspid, "LoadMSP");
        assert!(creator.id_bytes.starts_with(b"-----BEGIN CERTIFICATE-----"));
        // The MSP folder is one configtx.yaml can name.
        let msp = crate::fabric::configtxgen::msp::read_msp(dir.path(), "LoadMSP").expect("msp");
        assert_eq!(msp.r#type, 0);
        // ... and a channel's MSP takes the identity as a client.
        let msps = crate::security::msp::MspManager::new(&[msp]).expect("a valid MSP");
        msps.deserialize_identity(&identity.creator())
            .expect("a member")
            .satisfies_role(crate::security::msp::Role::Client)
            .expect("a client");
    }
}
