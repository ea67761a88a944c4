//! Whether a certificate is a valid identity of an MSP, as Fabric's
//! `validateIdentity` decides: not a CA; one certification chain to a root,
//! as of the certificate's own NotBefore (expiry is the expiration rule's
//! business, not the MSP's); issued by a CA at the edge of the certification
//! tree; not revoked; and its OUs acceptable to the MSP.

use super::cert::Cert;
use super::chain::unique_chain;
use super::setup::{not_revoked, Msp, OuIdentifier};

impl Msp {
    /// Validates `cert`; on success, the OUs it carries.
    pub fn validate(&self, cert: &Cert) -> Result<Vec<OuIdentifier>, String> {
        let chain = self
            .certification_chain(cert)
            .map_err(|e| format!("could not obtain certification chain: {e}"))?;
        not_revoked(cert, &chain, &self.crls)
            .map_err(|e| format!("could not validate identity against certification chain: {e}"))?;
        let certifiers_identifier = self.chain_identifier(&chain[1..]);
        let ous: Vec<OuIdentifier> = cert
            .organizational_units
            .iter()
            .map(|ou| OuIdentifier {
                organizational_unit: ou.clone(),
                certifiers_identifier: certifiers_identifier.clone(),
            })
            .collect();
        self.check_ous(&ous)
            .map_err(|e| format!("could not validate identity's OUs: {e}"))?;
        Ok(ous)
    }

    fn certification_chain<'a>(&'a self, cert: &'a Cert) -> Result<Vec<&'a Cert>, String> {
        if cert.is_ca() {
            return Err("An X509 certificate with Basic Constraint: Certificate Authority equals true cannot be used as an identity".into());
        }
        let chain = unique_chain(cert, &self.pool(), cert.not_before + 1)
            .map_err(|e| format!("failed getting validation chain: {e}"))?;
        if chain.len() < 2 {
            return Err(format!(
                "expected a chain of length at least 2, got {}",
                chain.len()
            ));
        }
        if self.internal_nodes.contains(&chain[1].der) {
            return Err("invalid validation chain. Parent certificate should be a leaf of the certification tree".into());
        }
        Ok(chain)
    }

    fn check_ous(&self, ous: &[OuIdentifier]) -> Result<(), String> {
        let names = || {
            ous.iter()
                .map(|ou| ou.organizational_unit.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        // The configured OU identifiers (if any) must include one of the
        // identity's OUs, with or without NodeOUs (as Fabric's V1.4.2 rules).
        if !self.ou_identifiers.is_empty() {
            let found = ous.iter().any(|ou| {
                self.ou_identifiers
                    .get(&ou.organizational_unit)
                    .is_some_and(|ids| ids.contains(&ou.certifiers_identifier))
            });
            if !found {
                if ous.is_empty() {
                    return Err(
                        "the identity certificate does not contain an Organizational Unit (OU)"
                            .into(),
                    );
                }
                return Err(format!(
                    "none of the identity's organizational units [{}] are in MSP {}",
                    names(),
                    self.id
                ));
            }
        }
        let Some(node_ous) = &self.node_ous else {
            return Ok(());
        };
        // With NodeOUs, exactly one role OU (client, peer, admin, orderer).
        let mut roles = 0;
        for ou in ous {
            let Some(role) = node_ous
                .all()
                .find(|r| r.organizational_unit == ou.organizational_unit)
            else {
                continue;
            };
            if !role.certifiers_identifier.is_empty()
                && role.certifiers_identifier != ou.certifiers_identifier
            {
                return Err(format!(
                    "certifiersIdentifier does not match: [{}], MSP: [{}]",
                    names(),
                    self.id
                ));
            }
            roles += 1;
            if roles > 1 {
                break;
            }
        }
        if roles != 1 {
            return Err(format!(
                "the identity must be a client, a peer, an orderer or an admin identity to be valid, not a combination of them. OUs: [{}], MSP: [{}]",
                names(),
                self.id
            ));
        }
        Ok(())
    }
}
