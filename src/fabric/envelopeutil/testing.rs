//! Test helpers: unsigned transactions, and transactions signed by a
//! throwaway self-signed identity, for the node's own unit tests.

use bytes::Bytes;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use prost::Message;

use super::new_envelope;
use crate::fabric::protos::common::{Envelope, HeaderType};
use crate::fabric::protos::msp::SerializedIdentity;

/// MSP ID unsigned test transactions name as creator.
pub const TEST_MSP_ID: &str = "SampleOrg";

fn creator(msp_id: &str, certificate_pem: Bytes) -> Bytes {
    SerializedIdentity {
        mspid: msp_id.into(),
        id_bytes: certificate_pem,
    }
    .encode_to_vec()
    .into()
}

/// An unsigned transaction whose creator names [`TEST_MSP_ID`] and no certificate.
pub fn transaction(channel: &str, data: Bytes) -> Envelope {
    let creator = creator(TEST_MSP_ID, Bytes::new());
    new_envelope(channel, HeaderType::EndorserTransaction, data, creator).0
}

/// A P-256 key and a self-signed certificate for it: enough for signature
/// checks, which read the key from the creator's certificate.
pub struct TestSigner {
    creator: Bytes,
    key: SigningKey,
}

impl TestSigner {
    pub fn generate(msp_id: &str) -> TestSigner {
        let key_pair = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec![format!("signer.{msp_id}")])
            .expect("certificate params");
        let certificate = params.self_signed(&key_pair).expect("certificate");
        let key = SigningKey::from_pkcs8_der(&key_pair.serialize_der()).expect("P-256 key");
        TestSigner {
            creator: creator(msp_id, certificate.pem().into_bytes().into()),
            key,
        }
    }

    /// A transaction this signer created and signed (low S, as Fabric wants).
    pub fn transaction(&self, channel: &str, data: Bytes) -> Envelope {
        let (mut envelope, _) = new_envelope(
            channel,
            HeaderType::EndorserTransaction,
            data,
            self.creator.clone(),
        );
        let signature: Signature =
            p256::ecdsa::signature::Signer::sign(&self.key, &envelope.payload);
        envelope.signature = Bytes::from(signature.normalize_s().to_der().as_bytes().to_vec());
        envelope
    }
}
