//! A client's signing identity: the node's signer type
//! ([`crate::security::signer::SigningIdentity`]), which signs envelopes as
//! Fabric clients do (SHA-256 of the payload, DER, low S). `ordo bench load`
//! signs with it, either generated (a CA and a client certificate it issued,
//! writable as an MSP folder for a channel's config) or read from an MSP
//! folder (`signcerts/` and `keystore/`).

pub use crate::security::signer::{SignerError as IdentityError, SigningIdentity};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::msp::SerializedIdentity;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::Signature;
    use prost::Message;

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
