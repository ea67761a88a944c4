//! A validated identity: its certificate, its OUs, the key its signatures
//! verify with, and the MSP it belongs to (for role checks).

use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use p256::ecdsa::Signature;
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_ASN1};

use super::principal::{Principal, Role};
use super::setup::{Msp, OuIdentifier};
use super::MspError;
use crate::fabric::protos::common::MspPrincipal;

/// An identity of one MSP of a channel, validated when it was deserialized.
pub struct Identity {
    msp: Arc<Msp>,
    certificate: Bytes,
    /// The certificate's signed part: identities are compared by it.
    signed_body: Bytes,
    not_after: SystemTime,
    organizational_units: Vec<OuIdentifier>,
    /// The uncompressed P-256 point, verified with ring (about three times
    /// faster than a portable implementation).
    key: UnparsedPublicKey<Bytes>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("msp_id", &self.msp.id)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Identity {
    pub(super) fn new(
        msp: Arc<Msp>,
        certificate: Bytes,
        signed_body: Bytes,
        not_after: SystemTime,
        organizational_units: Vec<OuIdentifier>,
        point: Vec<u8>,
    ) -> Identity {
        Identity {
            msp,
            certificate,
            signed_body,
            not_after,
            organizational_units,
            key: UnparsedPublicKey::new(&ECDSA_P256_SHA256_ASN1, point.into()),
        }
    }

    pub fn msp_id(&self) -> &str {
        &self.msp.id
    }

    /// The certificate, DER.
    pub fn certificate_der(&self) -> &[u8] {
        &self.certificate
    }

    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The OUs of the certificate's subject, with their certifiers identifier.
    pub fn organizational_units(&self) -> &[OuIdentifier] {
        &self.organizational_units
    }

    /// Checks a DER ECDSA P-256 signature over SHA-256 of `message`. High-S
    /// signatures are refused, as Fabric refuses them.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), MspError> {
        let parsed = Signature::from_der(signature)
            .map_err(|_| MspError::Signature("not a DER ECDSA signature".into()))?;
        if parsed.normalize_s() != parsed {
            return Err(MspError::Signature(
                "invalid S: it must be smaller than half the order of the curve".into(),
            ));
        }
        self.key
            .verify(message, signature)
            .map_err(|_| MspError::Signature("the signature is invalid".into()))
    }

    /// Whether this identity satisfies `principal` (Fabric's
    /// `SatisfiesPrincipal`, MSP v1.4.3).
    pub fn satisfies_principal(&self, principal: &MspPrincipal) -> Result<(), MspError> {
        self.satisfies(&Principal::from_proto(principal)?)
    }

    /// As [`Identity::satisfies_principal`], for a decoded principal.
    pub fn satisfies(&self, principal: &Principal) -> Result<(), MspError> {
        let not = |why: String| Err(MspError::Principal(why));
        match principal {
            Principal::Role { msp_id, role } => {
                if *msp_id != self.msp.id {
                    return not(format!(
                        "the identity is a member of a different MSP (expected {msp_id}, got {})",
                        self.msp.id
                    ));
                }
                self.satisfies_role(*role)
            }
            Principal::Identity {
                msp_id,
                signed_body,
            } => {
                if *msp_id != self.msp.id {
                    return not(format!(
                        "invalid identity principal: expected MSP ID {}, received {msp_id}",
                        self.msp.id
                    ));
                }
                if *signed_body == self.signed_body {
                    return Ok(());
                }
                not("The identities do not match".into())
            }
            Principal::OrganizationUnit {
                msp_id,
                organizational_unit,
                certifiers_identifier,
            } => {
                if *msp_id != self.msp.id {
                    return not(format!(
                        "the identity is a member of a different MSP (expected {msp_id}, got {})",
                        self.msp.id
                    ));
                }
                let matches = self.organizational_units.iter().any(|ou| {
                    ou.organizational_unit == *organizational_unit
                        && ou.certifiers_identifier == certifiers_identifier.as_ref()
                });
                if matches {
                    return Ok(());
                }
                not("The identities do not match".into())
            }
            Principal::Anonymity { anonymous: false } => Ok(()),
            Principal::Anonymity { anonymous: true } => not(
                "Principal is anonymous, but X.509 MSP does not support anonymous identities"
                    .into(),
            ),
            Principal::Combined(all) => all.iter().try_for_each(|p| self.satisfies(p)),
        }
    }

    /// Whether this identity has `role` in its own MSP. It is valid already,
    /// so a member; admins are listed in admincerts or carry the admin OU;
    /// the other roles need NodeOUs.
    pub fn satisfies_role(&self, role: Role) -> Result<(), MspError> {
        let msp = &self.msp;
        let not = |why: String| Err(MspError::Principal(why));
        match (role, &msp.node_ous) {
            (Role::Member, _) => Ok(()),
            (Role::Admin, _) if msp.admin_bodies.contains(&self.signed_body) => Ok(()),
            (Role::Admin, None) => not("This identity is not an admin".into()),
            (Role::Orderer, None) => not(format!("invalid MSP role type {}", 4)),
            (Role::Client | Role::Peer, None) => not(format!(
                "The identity is not a [{}] under this MSP [{}]: NodeOUs not activated. Cannot tell apart identities.",
                role.name(),
                msp.id
            )),
            (_, Some(node_ous)) => {
                let ou = match role {
                    Role::Admin => &node_ous.admin,
                    Role::Client => &node_ous.client,
                    Role::Peer => &node_ous.peer,
                    Role::Orderer => &node_ous.orderer,
                    Role::Member => return Ok(()),
                };
                let Some(ou) = ou else {
                    return not(format!(
                        "cannot test for classification, node ou for type [{}], not defined, msp: [{}]",
                        role.name(),
                        msp.id
                    ));
                };
                if self
                    .organizational_units
                    .iter()
                    .any(|mine| mine.organizational_unit == ou.organizational_unit)
                {
                    return Ok(());
                }
                not(format!(
                    "The identity is not a [{}] under this MSP [{}]: The identity does not contain OU [{}]",
                    role.name(),
                    msp.id,
                    role.name()
                ))
            }
        }
    }

    /// Whether two identities are the same (same MSP, same certificate
    /// however its CA signature is encoded).
    pub fn same_as(&self, other: &Identity) -> bool {
        self.msp.id == other.msp.id && self.signed_body == other.signed_body
    }
}
