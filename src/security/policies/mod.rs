//! Policies: who must have signed for something to be allowed.
//!
//! ```text
//! envelope_as_signed_data(&Envelope) -> Vec<SignedData>      the creator's signature
//! config_update_as_signed_data(&ConfigUpdateEnvelope)         every admin's signature
//! PolicyManager::new(&channel_group, Arc<MspManager>)         built with the ChannelConfig
//!   .evaluate_signed_data("/Channel/Writers", &signed)        Ok or why not
//!   .exists("/Channel/Orderer/BlockValidation")
//! ```
//!
//! Two kinds, as in Fabric: signature policies (n-out-of over principals,
//! [`signature`]) and ImplicitMeta policies (ANY, ALL or MAJORITY of the
//! policy of the same name in each child group; with no child group the
//! threshold is 0 and anyone satisfies it, which is what keeps a channel
//! without organizations open). A signer counts once; a signature that does
//! not verify, or a signer no MSP of the channel validates, counts for
//! nothing. The error texts are Fabric's, so clients see the same reasons.

mod manager;
pub mod signature;

use bytes::Bytes;
use prost::Message;

pub use manager::PolicyManager;

use crate::fabric::protos::common::{ConfigUpdateEnvelope, Envelope, Payload, SignatureHeader};

/// Well-known policy paths.
pub const CHANNEL_READERS: &str = "/Channel/Readers";
pub const CHANNEL_WRITERS: &str = "/Channel/Writers";
pub const CHANNEL_ORDERER_READERS: &str = "/Channel/Orderer/Readers";
pub const CHANNEL_ORDERER_WRITERS: &str = "/Channel/Orderer/Writers";
pub const BLOCK_VALIDATION: &str = "/Channel/Orderer/BlockValidation";

/// One signature to evaluate: the signed bytes, the signer's serialized
/// identity, and the signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedData {
    pub data: Bytes,
    pub identity: Bytes,
    pub signature: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The message does not hold what a signature needs.
    #[error("{0}")]
    Malformed(String),
    #[error("no such policy: '{0}'")]
    NoSuchPolicy(String),
    #[error("signature set did not satisfy policy")]
    SignatureSetNotSatisfied,
    #[error("implicit policy evaluation failed - {satisfied} sub-policies were satisfied, but this policy requires {required} of the '{sub_policy}' sub-policies to be satisfied")]
    ImplicitMetaNotSatisfied {
        satisfied: usize,
        required: usize,
        sub_policy: String,
    },
    /// A policy of the config that cannot be compiled.
    #[error("policy {path}: {reason}")]
    Invalid { path: String, reason: String },
}

/// The creator's signature over an envelope's payload (Fabric's
/// `EnvelopeAsSignedData`).
pub fn envelope_as_signed_data(envelope: &Envelope) -> Result<Vec<SignedData>, PolicyError> {
    let payload = Payload::decode(envelope.payload.clone())
        .map_err(|e| PolicyError::Malformed(e.to_string()))?;
    let header = payload
        .header
        .ok_or_else(|| PolicyError::Malformed("Missing Header".into()))?;
    let signature_header = SignatureHeader::decode(header.signature_header).map_err(|e| {
        PolicyError::Malformed(format!("GetSignatureHeaderFromBytes failed, err {e}"))
    })?;
    Ok(vec![SignedData {
        data: envelope.payload.clone(),
        identity: signature_header.creator,
        signature: envelope.signature.clone(),
    }])
}

/// Every signature of a config update: each over its signature header
/// followed by the update (Fabric's `ConfigUpdateEnvelopeAsSignedData`).
pub fn config_update_as_signed_data(
    envelope: &ConfigUpdateEnvelope,
) -> Result<Vec<SignedData>, PolicyError> {
    envelope
        .signatures
        .iter()
        .map(|signature| {
            let header =
                SignatureHeader::decode(signature.signature_header.clone()).map_err(|e| {
                    PolicyError::Malformed(format!("error unmarshalling SignatureHeader: {e}"))
                })?;
            let mut data =
                Vec::with_capacity(signature.signature_header.len() + envelope.config_update.len());
            data.extend_from_slice(&signature.signature_header);
            data.extend_from_slice(&envelope.config_update);
            Ok(SignedData {
                data: data.into(),
                identity: header.creator,
                signature: signature.signature.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
