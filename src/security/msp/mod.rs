//! The channel's MSPs: which certificates are identities of which
//! organization, and in what role (Fabric's X.509 MSP, version 1.4.3, as
//! channels with V2_0 or V3_0 capabilities use it).
//!
//! ```text
//! MspManager::new(&[MspConfig])                    every org of one channel
//!   .deserialize_identity(serialized) -> Arc<Identity>   validated once, then cached
//!   .tls_root_certs() -> Vec<Bytes>                 TLS CAs (DER) of every org
//! Identity
//!   .msp_id() .certificate_der() .not_after()
//!   .verify(message, der_signature)                 ECDSA P-256 / SHA-256, low S only
//!   .satisfies_principal(&MspPrincipal)             ROLE, IDENTITY, ORGANIZATION_UNIT,
//!                                                   ANONYMITY, COMBINED
//! expires_at(serialized) -> Option<SystemTime>      the certificate's NotAfter
//! ```
//!
//! Validation follows Fabric: the certificate chains to a root through the
//! intermediates (as of its own NotBefore: an expired certificate is still an
//! identity; expiry is the expiration rule's), is not a CA, is issued by a CA
//! at the edge of the certification tree, is not revoked by a CRL its issuer
//! signed, and, with NodeOUs, carries exactly one role OU. Only ECDSA P-256
//! identities are supported. Idemix MSPs are accepted in a config but their
//! identities are refused.
//!
//! The cache belongs to the manager, and a manager to one config: a config
//! block that changes anything brings a new manager and an empty cache.

mod cache;
mod cert;
mod chain;
mod identity;
mod principal;
mod setup;
mod validation;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use prost::Message;

pub use identity::Identity;
pub use principal::{Principal, Role};
pub use setup::OuIdentifier;

use cert::Cert;
use setup::Msp;

use crate::fabric::protos::msp::{FabricMspConfig, MspConfig, SerializedIdentity};

/// MSP type of Fabric's X.509 MSP in `MSPConfig.type`.
const FABRIC_MSP: i32 = 0;
/// MSP type of Idemix.
const IDEMIX_MSP: i32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MspError {
    #[error("could not deserialize a SerializedIdentity: {0}")]
    Deserialize(String),
    #[error("MSP {0} is not defined on channel")]
    UnknownMsp(String),
    #[error("MSP {msp} does not support identities: {reason}")]
    Unsupported { msp: String, reason: String },
    #[error("the identity of MSP {msp} is not a usable certificate: {reason}")]
    Certificate { msp: String, reason: String },
    #[error("the identity is not valid under MSP {msp}: {reason}")]
    Invalid { msp: String, reason: String },
    #[error("the signature does not verify: {0}")]
    Signature(String),
    #[error("{0}")]
    Principal(String),
    #[error("setting up MSP {msp} failed: {reason}")]
    Setup { msp: String, reason: String },
}

enum Entry {
    X509(Arc<Msp>),
    /// An MSP type this node cannot evaluate (Idemix).
    Unsupported(&'static str),
}

/// Every MSP of one channel, with the cache of the identities they validated.
/// `Send + Sync`: Broadcast streams on every core share it.
pub struct MspManager {
    msps: HashMap<String, Entry>,
    cache: cache::IdentityCache,
}

impl std::fmt::Debug for MspManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MspManager")
            .field("msps", &self.msp_ids())
            .finish_non_exhaustive()
    }
}

impl MspManager {
    /// No MSP: every identity is refused.
    pub fn empty() -> MspManager {
        MspManager {
            msps: HashMap::new(),
            cache: cache::IdentityCache::new(cache::CAPACITY),
        }
    }

    /// Sets up the MSPs of a channel's organizations. The same MSP ID may
    /// appear in several groups only with the same config.
    pub fn new(configs: &[MspConfig]) -> Result<MspManager, MspError> {
        let mut manager = MspManager::empty();
        let mut seen: HashMap<String, &MspConfig> = HashMap::new();
        for config in configs {
            let (id, entry) = match config.r#type {
                FABRIC_MSP => {
                    let fabric = FabricMspConfig::decode(config.config.clone()).map_err(|e| {
                        MspError::Setup {
                            msp: String::new(),
                            reason: format!("failed unmarshalling fabric msp config: {e}"),
                        }
                    })?;
                    let id = fabric.name.clone();
                    if seen.contains_key(&id) {
                        (id, None)
                    } else {
                        (id, Some(Entry::X509(Arc::new(Msp::new(&fabric)?))))
                    }
                }
                IDEMIX_MSP => {
                    let id = idemix_name(&config.config);
                    (id, Some(Entry::Unsupported("Idemix")))
                }
                other => {
                    return Err(MspError::Setup {
                        msp: String::new(),
                        reason: format!("unknown MSP type {other}"),
                    })
                }
            };
            match seen.get(&id) {
                Some(previous) if *previous != config => {
                    return Err(MspError::Setup {
                        msp: id.clone(),
                        reason: format!("Attempted to define two different versions of MSP: {id}"),
                    })
                }
                Some(_) => {}
                None => {
                    seen.insert(id.clone(), config);
                    if let Some(entry) = entry {
                        manager.msps.insert(id, entry);
                    }
                }
            }
        }
        Ok(manager)
    }

    /// The MSP IDs of the channel, sorted.
    pub fn msp_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.msps.keys().cloned().collect();
        ids.sort();
        ids
    }

    /// Deserializes a `SerializedIdentity` and validates it with its MSP.
    /// Validated identities are cached by their serialized bytes.
    pub fn deserialize_identity(&self, serialized: &[u8]) -> Result<Arc<Identity>, MspError> {
        if let Some(identity) = self.cache.get(serialized) {
            return Ok(identity);
        }
        let identity = Arc::new(self.validate(serialized)?);
        self.cache.insert(serialized, identity.clone());
        Ok(identity)
    }

    fn validate(&self, serialized: &[u8]) -> Result<Identity, MspError> {
        let decoded = SerializedIdentity::decode(serialized)
            .map_err(|e| MspError::Deserialize(e.to_string()))?;
        let msp = match self.msps.get(&decoded.mspid) {
            Some(Entry::X509(msp)) => msp,
            Some(Entry::Unsupported(kind)) => {
                return Err(MspError::Unsupported {
                    msp: decoded.mspid,
                    reason: format!("{kind} identities are not supported by this orderer"),
                })
            }
            None => return Err(MspError::UnknownMsp(decoded.mspid)),
        };
        let certificate_error = |reason: String| MspError::Certificate {
            msp: msp.id.clone(),
            reason,
        };
        let cert = Cert::from_pem(&decoded.id_bytes).map_err(certificate_error)?;
        let point = cert.p256_public_key().map_err(certificate_error)?;
        let organizational_units = msp.validate(&cert).map_err(|reason| MspError::Invalid {
            msp: msp.id.clone(),
            reason,
        })?;
        Ok(Identity::new(
            msp.clone(),
            cert.der.clone(),
            cert.signed_body.clone(),
            cert.not_after_time(),
            organizational_units,
            point,
        ))
    }

    /// The identity validated earlier from these serialized bytes, if it is
    /// still cached; nothing is validated on a miss.
    pub fn cached_identity(&self, serialized: &[u8]) -> Option<Arc<Identity>> {
        self.cache.get(serialized)
    }

    /// Every organization's TLS root and intermediate certificates (DER).
    pub fn tls_root_certs(&self) -> Vec<Bytes> {
        let mut ids = self.msp_ids();
        ids.dedup();
        ids.iter()
            .filter_map(|id| match self.msps.get(id) {
                Some(Entry::X509(msp)) => Some(msp.tls_certs.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    /// How many validated identities are cached.
    pub fn cached_identities(&self) -> usize {
        self.cache.len()
    }
}

/// The name of an Idemix MSP (field 1 of `IdemixMSPConfig`).
fn idemix_name(config: &Bytes) -> String {
    crate::fabric::protos::msp::IdemixMspConfig::decode(config.clone())
        .map(|c| c.name)
        .unwrap_or_default()
}

/// Fabric's `crypto.ExpiresAt`: the NotAfter of a serialized identity's
/// certificate, or None when it cannot be read (then nothing is decided).
pub fn expires_at(serialized: &[u8]) -> Option<SystemTime> {
    let identity = SerializedIdentity::decode(serialized).ok()?;
    let cert = Cert::from_pem(&identity.id_bytes).ok()?;
    Some(cert.not_after_time())
}

#[cfg(test)]
mod tests;
