//! One organization's MSP, set up from its `FabricMSPConfig` as Fabric's
//! MSP v1.4.3 (the version of every channel with V2_0 or V3_0 capabilities)
//! sets it up: root and intermediate CAs (each a valid CA with a subject key
//! identifier), CRLs, TLS CAs, organizational-unit identifiers, NodeOUs and
//! admins.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use sha2::{Digest, Sha256, Sha384};

use super::cert::{Cert, Crl};
use super::chain::{unique_chain, Pool};
use super::MspError;
use crate::fabric::protos::msp::{FabricMspConfig, FabricOuIdentifier};

/// An OU an identity carries, with the chain of CAs that certified it
/// (Fabric's `OUIdentifier`). An empty certifiers identifier in the MSP's
/// configuration matches any chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OuIdentifier {
    pub organizational_unit: String,
    pub certifiers_identifier: Vec<u8>,
}

/// The role OUs of NodeOUs; a role whose identifier is not configured is None.
#[derive(Debug, Clone, Default)]
pub(super) struct NodeOus {
    pub client: Option<OuIdentifier>,
    pub peer: Option<OuIdentifier>,
    pub admin: Option<OuIdentifier>,
    pub orderer: Option<OuIdentifier>,
}

impl NodeOus {
    pub fn all(&self) -> impl Iterator<Item = &OuIdentifier> {
        [&self.client, &self.peer, &self.admin, &self.orderer]
            .into_iter()
            .flatten()
    }
}

/// The hash of certification chain identifiers.
#[derive(Debug, Clone, Copy)]
enum IdentifierHash {
    Sha256,
    Sha384,
}

#[derive(Debug)]
pub(super) struct Msp {
    pub id: String,
    pub roots: Vec<Cert>,
    pub intermediates: Vec<Cert>,
    /// CAs that issued an intermediate: they may not issue identities.
    pub internal_nodes: HashSet<Bytes>,
    pub crls: Vec<Crl>,
    /// Admin certificates (DER), from `admincerts`.
    pub admins: Vec<Bytes>,
    /// Their signed parts, which an identity is matched against.
    pub admin_bodies: Vec<Bytes>,
    /// `organizational_unit_identifiers`: OU → certifiers identifiers.
    pub ou_identifiers: HashMap<String, Vec<Vec<u8>>>,
    /// Set when NodeOUs are enforced.
    pub node_ous: Option<NodeOus>,
    /// TLS root and intermediate CAs (DER).
    pub tls_certs: Vec<Bytes>,
    hash: IdentifierHash,
}

impl Msp {
    pub fn new(config: &FabricMspConfig) -> Result<Msp, MspError> {
        let fail = |reason: String| MspError::Setup {
            msp: config.name.clone(),
            reason,
        };
        let hash = match config
            .crypto_config
            .as_ref()
            .map(|c| c.identity_identifier_hash_function.as_str())
        {
            None | Some("") | Some("SHA256") => IdentifierHash::Sha256,
            Some("SHA384") => IdentifierHash::Sha384,
            Some(other) => {
                return Err(fail(format!(
                    "identity identifier hash function {other} is not supported (SHA256 or SHA384)"
                )))
            }
        };
        if config.root_certs.is_empty() {
            return Err(fail("expected at least one CA certificate".into()));
        }
        let parse_all = |list: &[Bytes], what: &str| -> Result<Vec<Cert>, MspError> {
            list.iter()
                .enumerate()
                .map(|(i, pem)| Cert::from_pem(pem).map_err(|e| fail(format!("{what} {i}: {e}"))))
                .collect()
        };
        let mut msp = Msp {
            id: config.name.clone(),
            roots: parse_all(&config.root_certs, "root certificate")?,
            intermediates: parse_all(&config.intermediate_certs, "intermediate certificate")?,
            internal_nodes: HashSet::new(),
            crls: config
                .revocation_list
                .iter()
                .map(|crl| Crl::parse(crl).map_err(fail))
                .collect::<Result<_, _>>()?,
            admins: Vec::new(),
            admin_bodies: Vec::new(),
            ou_identifiers: HashMap::new(),
            node_ous: None,
            tls_certs: Vec::new(),
            hash,
        };
        msp.finalize_cas().map_err(fail)?;
        msp.tls_certs = tls_cas(config, &msp.crls).map_err(fail)?;
        for ou in &config.organizational_unit_identifiers {
            let certifiers = msp.certifiers_identifier(&ou.certificate).map_err(|e| {
                fail(format!(
                    "failed getting certificate for OU {}: {e}",
                    ou.organizational_unit_identifier
                ))
            })?;
            let known = msp
                .ou_identifiers
                .entry(ou.organizational_unit_identifier.clone())
                .or_default();
            if !known.contains(&certifiers) {
                known.push(certifiers);
            }
        }
        msp.node_ous = msp.node_ous_of(config).map_err(fail)?;
        let admins = config
            .admins
            .iter()
            .enumerate()
            .map(|(i, pem)| {
                Cert::from_pem(pem).map_err(|e| fail(format!("admin certificate {i}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        msp.admin_bodies = admins.iter().map(|c| c.signed_body.clone()).collect();
        msp.admins = admins.into_iter().map(|c| c.der).collect();
        if msp.admins.is_empty() && msp.node_ous.as_ref().is_none_or(|n| n.admin.is_none()) {
            return Err(fail(
                "administrators must be declared when no admin ou classification is set".into(),
            ));
        }
        msp.check_admins().map_err(fail)?;
        Ok(msp)
    }

    pub fn pool(&self) -> Pool<'_> {
        Pool {
            roots: &self.roots,
            intermediates: &self.intermediates,
        }
    }

    /// The hash of a certification chain (Fabric hashes the certificates' DER, concatenated).
    pub fn chain_identifier(&self, chain: &[&Cert]) -> Vec<u8> {
        match self.hash {
            IdentifierHash::Sha256 => {
                let mut hasher = Sha256::new();
                chain.iter().for_each(|c| hasher.update(&c.der));
                hasher.finalize().to_vec()
            }
            IdentifierHash::Sha384 => {
                let mut hasher = Sha384::new();
                chain.iter().for_each(|c| hasher.update(&c.der));
                hasher.finalize().to_vec()
            }
        }
    }

    /// Every CA is a CA with a subject key identifier, valid within the MSP
    /// and not revoked; the parents of intermediates are marked as internal.
    fn finalize_cas(&mut self) -> Result<(), String> {
        for cert in self.roots.iter().chain(&self.intermediates) {
            check_ca(cert)?;
            let at = cert.not_before + 1;
            let chain = unique_chain(cert, &self.pool(), at)
                .map_err(|e| format!("CA certificate is not valid, (SN: {}): could not obtain certification chain: {e}", serial(cert)))?;
            if chain.len() > 1 {
                not_revoked(cert, &chain, &self.crls).map_err(|e| {
                    format!("CA certificate is not valid, (SN: {}): {e}", serial(cert))
                })?;
            }
        }
        let mut internal = HashSet::new();
        for cert in &self.intermediates {
            let chain = unique_chain(cert, &self.pool(), cert.not_before + 1)?;
            internal.extend(chain[1..].iter().map(|c| c.der.clone()));
        }
        self.internal_nodes = internal;
        Ok(())
    }

    /// The certifiers identifier of a CA certificate of this MSP: the hash of
    /// its chain up to the root.
    fn certifiers_identifier(&self, pem: &[u8]) -> Result<Vec<u8>, String> {
        let cert = Cert::from_pem(pem)?;
        if self.roots.iter().any(|r| r.der == cert.der) {
            return Ok(self.chain_identifier(&[&cert]));
        }
        if !self.intermediates.iter().any(|r| r.der == cert.der) {
            return Err(
                "the certificate is not among the MSP's root or intermediate certificates".into(),
            );
        }
        let chain = unique_chain(&cert, &self.pool(), cert.not_before + 1)?;
        if chain.len() < 2 {
            return Err(format!(
                "expected a chain of length at least 2, got {}",
                chain.len()
            ));
        }
        if self.internal_nodes.contains(&chain[0].der) {
            return Err("invalid validation chain: the certificate should be a leaf of the certification tree".into());
        }
        Ok(self.chain_identifier(&chain))
    }

    fn node_ous_of(&self, config: &FabricMspConfig) -> Result<Option<NodeOus>, String> {
        let Some(node_ous) = &config.fabric_node_ous else {
            return Ok(None);
        };
        let identifier = |ou: &Option<FabricOuIdentifier>| -> Result<Option<OuIdentifier>, String> {
            let Some(ou) = ou else { return Ok(None) };
            let certifiers_identifier = if ou.certificate.is_empty() {
                Vec::new()
            } else {
                self.certifiers_identifier(&ou.certificate)
                    .map_err(|e| format!("NodeOU {}: {e}", ou.organizational_unit_identifier))?
            };
            Ok(Some(OuIdentifier {
                organizational_unit: ou.organizational_unit_identifier.clone(),
                certifiers_identifier,
            }))
        };
        let ous = NodeOus {
            client: identifier(&node_ous.client_ou_identifier)?,
            peer: identifier(&node_ous.peer_ou_identifier)?,
            admin: identifier(&node_ous.admin_ou_identifier)?,
            orderer: identifier(&node_ous.orderer_ou_identifier)?,
        };
        // NodeOUs without any identifier are not enforced, as in Fabric.
        Ok((node_ous.enable && ous.all().next().is_some()).then_some(ous))
    }

    /// With NodeOUs, admins carry the client or admin OU; without, they are
    /// valid members.
    fn check_admins(&self) -> Result<(), String> {
        for (i, der) in self.admins.iter().enumerate() {
            let cert = Cert::from_der(der.clone())?;
            match &self.node_ous {
                Some(node_ous) => {
                    let carries = |ou: &Option<OuIdentifier>| {
                        ou.as_ref().is_some_and(|ou| {
                            cert.organizational_units.contains(&ou.organizational_unit)
                        })
                    };
                    if !carries(&node_ous.client) && !carries(&node_ous.admin) {
                        return Err(format!(
                            "admin {i} is invalid: it carries neither the client nor the admin OU"
                        ));
                    }
                }
                None => {
                    self.validate(&cert)
                        .map_err(|e| format!("admin {i} is invalid: {e}"))?;
                }
            }
        }
        Ok(())
    }
}

fn check_ca(cert: &Cert) -> Result<(), String> {
    if !cert.is_ca() {
        return Err(format!(
            "CA Certificate did not have the CA attribute, (SN: {})",
            serial(cert)
        ));
    }
    if cert.subject_key_id.is_none() {
        return Err(format!(
            "CA Certificate problem with Subject Key Identifier extension, (SN: {}): subjectKeyIdentifier not found in certificate",
            serial(cert)
        ));
    }
    Ok(())
}

/// Refuses `cert` if a CRL of its issuer (`chain[1]`), signed by that
/// issuer, lists its serial number.
pub(super) fn not_revoked(cert: &Cert, chain: &[&Cert], crls: &[Crl]) -> Result<(), String> {
    let Some(issuer) = chain.get(1) else {
        return Ok(());
    };
    if issuer.subject_key_id.is_none() {
        return Err("could not obtain Subject Key Identifier for signer cert".into());
    }
    for crl in crls {
        if crl.revokes(issuer, &cert.serial) {
            match crl.signed_by(issuer) {
                Ok(()) => return Err("The certificate has been revoked".into()),
                Err(e) => {
                    tracing::warn!(error = %e, "a CRL naming the issuer of a certificate is not signed by it; ignored")
                }
            }
        }
    }
    Ok(())
}

fn tls_cas(config: &FabricMspConfig, crls: &[Crl]) -> Result<Vec<Bytes>, String> {
    let parse = |list: &[Bytes], what: &str| -> Result<Vec<Cert>, String> {
        list.iter()
            .enumerate()
            .map(|(i, pem)| Cert::from_pem(pem).map_err(|e| format!("{what} {i}: {e}")))
            .collect()
    };
    let roots = parse(&config.tls_root_certs, "TLS root certificate")?;
    let intermediates = parse(
        &config.tls_intermediate_certs,
        "TLS intermediate certificate",
    )?;
    let pool = Pool {
        roots: &roots,
        intermediates: &intermediates,
    };
    for cert in roots.iter().chain(&intermediates) {
        check_ca(cert)?;
        let chain = unique_chain(cert, &pool, cert.not_before + 1)
            .map_err(|e| format!("CA Certificate is not valid, (SN: {}): {e}", serial(cert)))?;
        not_revoked(cert, &chain, crls)?;
    }
    Ok(roots
        .into_iter()
        .chain(intermediates)
        .map(|c| c.der)
        .collect())
}

fn serial(cert: &Cert) -> String {
    hex::encode(&cert.serial)
}
