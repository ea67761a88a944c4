//! MSP principals (who a policy's `SignedBy` names), read once from their
//! protobuf form so that evaluating a policy decodes nothing.

use bytes::Bytes;
use prost::Message;

use super::cert::{pem_to_der, Cert};
use super::MspError;
use crate::fabric::protos::common::{
    msp_identity_anonymity::MspIdentityAnonymityType, msp_principal::Classification,
    msp_role::MspRoleType, CombinedPrincipal, MspIdentityAnonymity, MspPrincipal, MspRole,
    OrganizationUnit,
};
use crate::fabric::protos::msp::SerializedIdentity;

/// The roles of `MSPRole`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Member,
    Admin,
    Client,
    Peer,
    Orderer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Member => "MEMBER",
            Role::Admin => "ADMIN",
            Role::Client => "CLIENT",
            Role::Peer => "PEER",
            Role::Orderer => "ORDERER",
        }
    }
}

/// A decoded `MSPPrincipal`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Role {
        msp_id: String,
        role: Role,
    },
    /// One certificate of an MSP, by its signed part (however its CA
    /// signature is encoded).
    Identity {
        msp_id: String,
        signed_body: Bytes,
    },
    OrganizationUnit {
        msp_id: String,
        organizational_unit: String,
        certifiers_identifier: Bytes,
    },
    /// NOMINAL is satisfied by every X.509 identity; ANONYMOUS by none.
    Anonymity {
        anonymous: bool,
    },
    /// Every one of these (nested combinations flattened).
    Combined(Vec<Principal>),
}

impl Principal {
    /// Decodes a principal; an error says why it can never be satisfied.
    pub fn from_proto(principal: &MspPrincipal) -> Result<Principal, MspError> {
        let bad = |what: &str, e: prost::DecodeError| {
            MspError::Principal(format!("could not unmarshal {what} from principal: {e}"))
        };
        let bytes = principal.principal.clone();
        match Classification::try_from(principal.principal_classification) {
            Ok(Classification::Role) => {
                let role = MspRole::decode(bytes).map_err(|e| bad("MSPRole", e))?;
                let kind = match MspRoleType::try_from(role.role) {
                    Ok(MspRoleType::Member) => Role::Member,
                    Ok(MspRoleType::Admin) => Role::Admin,
                    Ok(MspRoleType::Client) => Role::Client,
                    Ok(MspRoleType::Peer) => Role::Peer,
                    Ok(MspRoleType::Orderer) => Role::Orderer,
                    Err(_) => {
                        return Err(MspError::Principal(format!(
                            "invalid MSP role type {}",
                            role.role
                        )))
                    }
                };
                Ok(Principal::Role {
                    msp_id: role.msp_identifier,
                    role: kind,
                })
            }
            Ok(Classification::Identity) => {
                let identity =
                    SerializedIdentity::decode(bytes).map_err(|e| bad("SerializedIdentity", e))?;
                let certificate = pem_to_der(&identity.id_bytes)
                    .and_then(Cert::from_der)
                    .map_err(|e| {
                        MspError::Principal(format!(
                            "invalid identity principal, not a certificate: {e}"
                        ))
                    })?;
                Ok(Principal::Identity {
                    msp_id: identity.mspid,
                    signed_body: certificate.signed_body,
                })
            }
            Ok(Classification::OrganizationUnit) => {
                let ou = OrganizationUnit::decode(bytes).map_err(|e| bad("OrganizationUnit", e))?;
                Ok(Principal::OrganizationUnit {
                    msp_id: ou.msp_identifier,
                    organizational_unit: ou.organizational_unit_identifier,
                    certifiers_identifier: ou.certifiers_identifier,
                })
            }
            Ok(Classification::Anonymity) => {
                let anonymity = MspIdentityAnonymity::decode(bytes)
                    .map_err(|e| bad("MSPIdentityAnonymity", e))?;
                match MspIdentityAnonymityType::try_from(anonymity.anonymity_type) {
                    Ok(MspIdentityAnonymityType::Nominal) => {
                        Ok(Principal::Anonymity { anonymous: false })
                    }
                    Ok(MspIdentityAnonymityType::Anonymous) => {
                        Ok(Principal::Anonymity { anonymous: true })
                    }
                    Err(_) => Err(MspError::Principal(format!(
                        "Unknown principal anonymity type: {}",
                        anonymity.anonymity_type
                    ))),
                }
            }
            Ok(Classification::Combined) => {
                let combined =
                    CombinedPrincipal::decode(bytes).map_err(|e| bad("CombinedPrincipal", e))?;
                if combined.principals.is_empty() {
                    return Err(MspError::Principal(
                        "No principals in CombinedPrincipal".into(),
                    ));
                }
                let mut flat = Vec::new();
                for inner in &combined.principals {
                    match Principal::from_proto(inner)? {
                        Principal::Combined(list) => flat.extend(list),
                        other => flat.push(other),
                    }
                }
                Ok(Principal::Combined(flat))
            }
            Err(_) => Err(MspError::Principal(format!(
                "invalid principal type {}",
                principal.principal_classification
            ))),
        }
    }
}
