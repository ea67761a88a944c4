//! X.509 certificates and CRLs as an MSP reads them: parsed once into the
//! fields validation needs, with the DER kept for signature checks and for
//! comparing certificates byte for byte (as Fabric compares `cert.Raw`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::oid_registry::{
    Oid, OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
    OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
};
use x509_parser::prelude::FromDer;
use x509_parser::revocation_list::CertificateRevocationList;

/// The fields of a certificate that MSP validation reads.
#[derive(Debug, Clone)]
pub struct Cert {
    pub der: Bytes,
    /// The signed part (TBSCertificate), DER: what makes two encodings of a
    /// certificate the same certificate. The CA's signature around it can be
    /// re-encoded (its high-S twin verifies too), so identities are compared
    /// by this, as Fabric compares sanitized certificates.
    pub signed_body: Bytes,
    /// Raw DER of the subject and issuer names (chains link by them).
    pub subject: Vec<u8>,
    pub issuer: Vec<u8>,
    /// The serial number's DER content bytes (CRLs list them the same way).
    pub serial: Vec<u8>,
    /// Validity, in seconds since the Unix epoch.
    pub not_before: i64,
    pub not_after: i64,
    /// `Some((is_ca, path_len))` when the BasicConstraints extension is present.
    pub basic_constraints: Option<(bool, Option<u32>)>,
    /// KeyUsage bits, when the extension is present.
    pub key_usage: Option<u16>,
    /// `(any, server_auth)` of ExtendedKeyUsage, when present.
    pub extended_key_usage: Option<(bool, bool)>,
    pub subject_key_id: Option<Vec<u8>>,
    /// The subject's OU attributes, in order.
    pub organizational_units: Vec<String>,
    /// X.509 version as encoded (0 for v1, 2 for v3).
    pub version: u32,
}

/// KeyUsage bit 5: keyCertSign.
const KEY_CERT_SIGN: u16 = 1 << 5;

impl Cert {
    /// Parses a DER certificate.
    pub fn from_der(der: Bytes) -> Result<Cert, String> {
        let (rest, x509) = X509Certificate::from_der(&der)
            .map_err(|e| format!("failed to parse x509 certificate: {e}"))?;
        // As Go's parser: nothing may follow the certificate.
        if !rest.is_empty() {
            return Err("failed to parse x509 certificate: trailing data".into());
        }
        let tbs = &x509.tbs_certificate;
        let signed_body = Bytes::copy_from_slice(tbs.as_ref());
        let basic_constraints = tbs
            .basic_constraints()
            .map_err(|e| format!("invalid BasicConstraints extension: {e}"))?
            .map(|bc| (bc.value.ca, bc.value.path_len_constraint));
        let key_usage = tbs
            .key_usage()
            .map_err(|e| format!("invalid KeyUsage extension: {e}"))?
            .map(|ku| ku.value.flags);
        let extended_key_usage = tbs
            .extended_key_usage()
            .map_err(|e| format!("invalid ExtendedKeyUsage extension: {e}"))?
            .map(|eku| (eku.value.any, eku.value.server_auth));
        let subject_key_id = tbs
            .get_extension_unique(&OID_X509_EXT_SUBJECT_KEY_IDENTIFIER)
            .map_err(|e| format!("invalid SubjectKeyIdentifier extension: {e}"))?
            .and_then(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            });
        let organizational_units = tbs
            .subject
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok().map(str::to_string))
            .collect();
        Ok(Cert {
            subject: tbs.subject.as_raw().to_vec(),
            issuer: tbs.issuer.as_raw().to_vec(),
            serial: tbs.raw_serial().to_vec(),
            not_before: tbs.validity.not_before.timestamp(),
            not_after: tbs.validity.not_after.timestamp(),
            basic_constraints,
            key_usage,
            extended_key_usage,
            subject_key_id,
            organizational_units,
            version: tbs.version.0,
            signed_body,
            der,
        })
    }

    /// Parses the first PEM block of `pem` (any label, as Fabric's `pem.Decode`).
    pub fn from_pem(pem: &[u8]) -> Result<Cert, String> {
        Cert::from_der(pem_to_der(pem)?)
    }

    /// Whether BasicConstraints says this is a CA.
    pub fn is_ca(&self) -> bool {
        matches!(self.basic_constraints, Some((true, _)))
    }

    pub fn valid_at(&self, unix_seconds: i64) -> bool {
        self.not_before <= unix_seconds && unix_seconds <= self.not_after
    }

    pub fn not_after_time(&self) -> SystemTime {
        unix_time(self.not_after)
    }

    /// Whether `self` was signed by `parent`'s key, and `parent` may sign
    /// certificates (Go's `CheckSignatureFrom`: a v3 parent needs the CA flag,
    /// and keyCertSign when it states key usages).
    pub fn check_signature_from(&self, parent: &Cert) -> Result<(), String> {
        let may_sign = match parent.basic_constraints {
            Some((is_ca, _)) => is_ca,
            None => parent.version < 2,
        };
        if !may_sign {
            return Err("the issuer is not a CA".into());
        }
        if parent
            .key_usage
            .is_some_and(|ku| ku != 0 && ku & KEY_CERT_SIGN == 0)
        {
            return Err("the issuer may not sign certificates (no keyCertSign usage)".into());
        }
        let (_, child) = X509Certificate::from_der(&self.der).map_err(|e| e.to_string())?;
        let (_, issuer) = X509Certificate::from_der(&parent.der).map_err(|e| e.to_string())?;
        child
            .verify_signature(Some(issuer.public_key()))
            .map_err(|e| format!("signature by the issuer does not verify: {e}"))
    }

    /// The uncompressed P-256 point of the certificate's key, or why it is not one.
    pub fn p256_public_key(&self) -> Result<Vec<u8>, String> {
        let (_, x509) = X509Certificate::from_der(&self.der).map_err(|e| e.to_string())?;
        let spki = x509.public_key();
        let algorithm = &spki.algorithm.algorithm;
        if *algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY {
            return Err(format!(
                "the certificate holds a key of algorithm {}; only ECDSA P-256 identities are supported",
                oid_name(algorithm)
            ));
        }
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok());
        if curve.as_ref() != Some(&OID_EC_P256) {
            let name = curve.map_or_else(|| "unnamed".to_string(), |c| oid_name(&c));
            return Err(format!(
                "the certificate holds an ECDSA key on curve {name}; only ECDSA P-256 identities are supported"
            ));
        }
        // Refuses points that are not on the curve before the key is trusted.
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&spki.subject_public_key.data)
            .map_err(|_| "the certificate's P-256 public key is not a valid point".to_string())?;
        Ok(key.to_sec1_point(false).as_bytes().to_vec())
    }
}

fn oid_name(oid: &Oid) -> String {
    let registry = x509_parser::oid_registry::OidRegistry::default().with_all_crypto();
    registry
        .get(oid)
        .map(|entry| entry.sn().to_string())
        .unwrap_or_else(|| oid.to_id_string())
}

pub fn unix_time(seconds: i64) -> SystemTime {
    if seconds >= 0 {
        UNIX_EPOCH + Duration::from_secs(seconds as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(seconds.unsigned_abs())
    }
}

/// The DER of the first PEM block.
pub fn pem_to_der(pem: &[u8]) -> Result<Bytes, String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .map_err(|_| "could not decode the PEM structure".to_string())?;
    Ok(block.contents.into())
}

/// A certificate revocation list, checked against the CA that issued it.
#[derive(Debug, Clone)]
pub struct Crl {
    der: Bytes,
    authority_key_id: Vec<u8>,
    revoked_serials: Vec<Vec<u8>>,
}

impl Crl {
    /// Parses a CRL in PEM or DER (Fabric's `x509.ParseCRL` takes either).
    pub fn parse(bytes: &[u8]) -> Result<Crl, String> {
        let der: Bytes = if bytes.trim_ascii_start().starts_with(b"-----BEGIN") {
            pem_to_der(bytes)?
        } else {
            Bytes::copy_from_slice(bytes)
        };
        let (_, crl) = CertificateRevocationList::from_der(&der)
            .map_err(|e| format!("could not parse RevocationList: {e}"))?;
        let authority_key_id = crl
            .tbs_cert_list
            .find_extension(&OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER)
            .and_then(|ext| match ext.parsed_extension() {
                ParsedExtension::AuthorityKeyIdentifier(aki) => {
                    aki.key_identifier.as_ref().map(|k| k.0.to_vec())
                }
                _ => None,
            })
            .ok_or_else(|| {
                "could not parse RevocationList: authorityKeyIdentifier not found".to_string()
            })?;
        let revoked_serials = crl
            .iter_revoked_certificates()
            .map(|r| r.raw_serial().to_vec())
            .collect();
        Ok(Crl {
            authority_key_id,
            revoked_serials,
            der,
        })
    }

    /// Whether this CRL names `ca` as its issuer (by key identifier) and
    /// revokes `serial`.
    pub fn revokes(&self, ca: &Cert, serial: &[u8]) -> bool {
        ca.subject_key_id.as_deref() == Some(self.authority_key_id.as_slice())
            && self.revoked_serials.iter().any(|s| s == serial)
    }

    /// Whether `ca`'s key signed this CRL.
    pub fn signed_by(&self, ca: &Cert) -> Result<(), String> {
        let (_, crl) = CertificateRevocationList::from_der(&self.der).map_err(|e| e.to_string())?;
        let (_, issuer) = X509Certificate::from_der(&ca.der).map_err(|e| e.to_string())?;
        crl.verify_signature(issuer.public_key())
            .map_err(|e| e.to_string())
    }
}
