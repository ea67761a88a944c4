//! Certificate authorities and the certificates they issue, shaped as
//! cryptogen shapes them: ECDSA P-256 keys, ten years of validity starting
//! five minutes back, a CA subject of C/ST/L/O/CN (O is the organization's
//! domain), leaf subjects of C/ST/L/OU/CN, and every signature with a low S,
//! the only form Fabric accepts.

use std::time::Duration;

use rcgen::string::PrintableString;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SignatureAlgorithm, SigningKey,
};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::spec::Subject;

/// cryptogen's certificates last about ten years.
const VALIDITY: Duration = Duration::from_secs(3650 * 24 * 60 * 60);
/// ... and start a little in the past, for clocks that lag.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

const STREET_ADDRESS: &[u64] = &[2, 5, 4, 9];
const POSTAL_CODE: &[u64] = &[2, 5, 4, 17];

#[derive(Debug, thiserror::Error)]
#[error("cannot make a key or certificate for {common_name}: {source}")]
pub struct CaError {
    common_name: String,
    source: rcgen::Error,
}

impl CaError {
    /// A key for `common_name` could not be made.
    pub fn from_key(common_name: &str, source: rcgen::Error) -> CaError {
        CaError {
            common_name: common_name.to_string(),
            source,
        }
    }
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// An MSP signing certificate: digital signature only.
    Signing,
    /// A TLS certificate, good for both ends of a connection as cryptogen
    /// makes them (orderers dial each other).
    Tls,
}

/// A new ECDSA P-256 key.
pub fn generate_key() -> Result<KeyPair, rcgen::Error> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
}

/// The key's PKCS#8 PEM, as cryptogen writes `priv_sk`.
pub fn private_key_pem(key: &KeyPair) -> String {
    key.serialize_pem()
}

/// The period every certificate of one run is valid for.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
}

impl Validity {
    /// From five minutes before `now` (to the minute) for ten years.
    pub fn starting(now: OffsetDateTime) -> Validity {
        let minute = now
            .replace_nanosecond(0)
            .and_then(|t| t.replace_second(0))
            .unwrap_or(now);
        let not_before = minute - BACKDATE;
        Validity {
            not_before,
            not_after: not_before + VALIDITY,
        }
    }

    pub fn now() -> Validity {
        Validity::starting(OffsetDateTime::now_utc())
    }
}

/// Signs like the key it wraps, then turns a high S into `n - S`.
struct LowS(KeyPair);

impl PublicKeyData for LowS {
    fn der_bytes(&self) -> &[u8] {
        self.0.der_bytes()
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.0.algorithm()
    }
}

impl SigningKey for LowS {
    fn sign(&self, msg: &[u8]) -> Result<Vec<u8>, rcgen::Error> {
        let der = self.0.sign(msg)?;
        let signature =
            p256::ecdsa::Signature::from_der(&der).map_err(|_| rcgen::Error::RemoteKeyError)?;
        Ok(signature.normalize_s().to_der().as_bytes().to_vec())
    }
}

/// A self-signed CA that issues an organization's certificates.
pub struct CertificateAuthority {
    common_name: String,
    subject: Subject,
    validity: Validity,
    issuer: Issuer<'static, LowS>,
    certificate_pem: String,
    private_key_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("common_name", &self.common_name)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new key and a self-signed certificate for `common_name` of
    /// `organization` (the domain).
    pub fn new(
        common_name: &str,
        organization: &str,
        subject: &Subject,
        validity: Validity,
    ) -> Result<CertificateAuthority, CaError> {
        let fail = |source| CaError {
            common_name: common_name.to_string(),
            source,
        };
        let key = generate_key().map_err(fail)?;
        let mut params = base_params(validity);
        params.distinguished_name =
            distinguished_name(subject, Some(organization), &[], common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ClientAuth,
            ExtendedKeyUsagePurpose::ServerAuth,
        ];
        // SHA-256 of the public point, as cryptogen computes it: what Fabric's
        // key stores use to find a key by its certificate.
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(Sha256::digest(key.public_key_raw()).to_vec());
        let private_key_pem = private_key_pem(&key);
        let signer = LowS(key);
        let certificate = params.self_signed(&signer).map_err(fail)?;
        Ok(CertificateAuthority {
            common_name: common_name.to_string(),
            subject: subject.clone(),
            validity,
            issuer: Issuer::new(params, signer),
            certificate_pem: certificate.pem(),
            private_key_pem,
        })
    }

    pub fn common_name(&self) -> &str {
        &self.common_name
    }

    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    pub fn private_key_pem(&self) -> &str {
        &self.private_key_pem
    }

    /// A certificate for `key`, named `common_name`, with the OUs `ous` (after
    /// the CA's own OU, if it has one) and, for TLS, the names `sans`.
    pub fn issue(
        &self,
        common_name: &str,
        ous: &[&str],
        sans: &[String],
        usage: Usage,
        key: &KeyPair,
    ) -> Result<String, CaError> {
        let fail = |source| CaError {
            common_name: common_name.to_string(),
            source,
        };
        let mut params = base_params(self.validity);
        params.distinguished_name = distinguished_name(&self.subject, None, ous, common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_identifier_method =
            KeyIdMethod::PreSpecified(Sha256::digest(key.public_key_raw()).to_vec());
        match usage {
            Usage::Signing => {
                params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            }
            Usage::Tls => {
                params.key_usages = vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ];
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ];
                params.subject_alt_names = sans
                    .iter()
                    .map(|san| san_type(san))
                    .collect::<Result<_, _>>()
                    .map_err(fail)?;
            }
        }
        let certificate = params.signed_by(key, &self.issuer).map_err(fail)?;
        Ok(certificate.pem())
    }
}

fn base_params(validity: Validity) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.not_before = validity.not_before;
    params.not_after = validity.not_after;
    let mut serial: [u8; 16] = rand::random();
    // Positive and a full 16 bytes.
    serial[0] = (serial[0] & 0x7f) | 0x40;
    params.serial_number = Some(serial.to_vec().into());
    params
}

/// Go's order of subject attributes: C, ST, L, street, postal code, O, OU, CN.
fn distinguished_name(
    subject: &Subject,
    organization: Option<&str>,
    ous: &[&str],
    common_name: &str,
) -> DistinguishedName {
    let or = |value: &str, default: &str| {
        if value.is_empty() {
            default.to_string()
        } else {
            value.to_string()
        }
    };
    let mut name = DistinguishedName::new();
    name.push(DnType::CountryName, printable(&or(&subject.country, "US")));
    name.push(
        DnType::StateOrProvinceName,
        or(&subject.province, "California"),
    );
    name.push(DnType::LocalityName, or(&subject.locality, "San Francisco"));
    if !subject.street_address.is_empty() {
        name.push(
            DnType::CustomDnType(STREET_ADDRESS.to_vec()),
            subject.street_address.clone(),
        );
    }
    if !subject.postal_code.is_empty() {
        name.push(
            DnType::CustomDnType(POSTAL_CODE.to_vec()),
            subject.postal_code.clone(),
        );
    }
    if let Some(organization) = organization {
        name.push(DnType::OrganizationName, organization);
    }
    // The spec refuses a CA OU together with NodeOUs, so there is one OU at most.
    let ou = ous
        .first()
        .copied()
        .or(Some(subject.organizational_unit.as_str()).filter(|ou| !ou.is_empty()));
    if let Some(ou) = ou {
        name.push(DnType::OrganizationalUnitName, ou);
    }
    name.push(DnType::CommonName, common_name);
    name
}

/// X.509 wants country codes as PrintableString.
fn printable(value: &str) -> DnValue {
    match PrintableString::try_from(value) {
        Ok(printable) => DnValue::PrintableString(printable),
        Err(_) => DnValue::Utf8String(value.to_string()),
    }
}

fn san_type(san: &str) -> Result<SanType, rcgen::Error> {
    Ok(match san.parse::<std::net::IpAddr>() {
        Ok(ip) => SanType::IpAddress(ip),
        Err(_) => SanType::DnsName(san.try_into()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use x509_parser::extensions::GeneralName;
    use x509_parser::prelude::{FromDer, X509Certificate};

    fn der(pem: &str) -> Vec<u8> {
        x509_parser::pem::parse_x509_pem(pem.as_bytes())
            .expect("pem")
            .1
            .contents
    }

    fn verify_signed_by(child: &X509Certificate<'_>, issuer: &X509Certificate<'_>) {
        let signature = child.signature_value.data.as_ref();
        let parsed = p256::ecdsa::Signature::from_der(signature).expect("DER signature");
        assert!(parsed.normalize_s() == parsed, "low S");
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            issuer.public_key().subject_public_key.data.as_ref(),
        )
        .verify(child.tbs_certificate.as_ref(), signature)
        .expect("signature verifies");
    }

    #[test]
    fn a_ca_issues_signing_and_tls_certificates_as_cryptogen() {
        let subject = Subject {
            postal_code: "94016".into(),
            ..Subject::default()
        };
        let ca =
            CertificateAuthority::new("ca.example.com", "example.com", &subject, Validity::now())
                .expect("ca");
        let ca_der = der(ca.certificate_pem());
        let (_, ca_cert) = X509Certificate::from_der(&ca_der).expect("ca cert");
        assert!(ca_cert.is_ca());
        verify_signed_by(&ca_cert, &ca_cert);
        let subject_text = ca_cert.subject().to_string();
        assert!(
            subject_text.contains("C=US") && subject_text.contains("O=example.com"),
            "{subject_text}"
        );
        assert!(subject_text.contains("CN=ca.example.com"), "{subject_text}");
        let validity = ca_cert.validity();
        let years = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86400;
        assert_eq!(years, 3650);

        let key = generate_key().expect("key");
        let pem = ca
            .issue("peer0.example.com", &["peer"], &[], Usage::Signing, &key)
            .expect("issue");
        let leaf_der = der(&pem);
        let (_, leaf) = X509Certificate::from_der(&leaf_der).expect("leaf");
        verify_signed_by(&leaf, &ca_cert);
        assert!(!leaf.is_ca());
        let ous: Vec<_> = leaf
            .subject()
            .iter_organizational_unit()
            .filter_map(|ou| ou.as_str().ok())
            .collect();
        assert_eq!(ous, vec!["peer"]);
        assert!(leaf.subject().iter_organization().next().is_none());
        assert!(leaf.extended_key_usage().expect("eku").is_none());
        assert_eq!(
            leaf.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );

        let tls_key = generate_key().expect("key");
        let sans = vec!["peer0.example.com".to_string(), "127.0.0.1".into()];
        let pem = ca
            .issue("peer0.example.com", &[], &sans, Usage::Tls, &tls_key)
            .expect("issue");
        let tls_der = der(&pem);
        let (_, tls) = X509Certificate::from_der(&tls_der).expect("tls");
        verify_signed_by(&tls, &ca_cert);
        let eku = tls
            .extended_key_usage()
            .expect("eku")
            .expect("present")
            .value;
        assert!(eku.server_auth && eku.client_auth);
        let names: Vec<String> = tls
            .subject_alternative_name()
            .expect("san")
            .expect("present")
            .value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => dns.to_string(),
                GeneralName::IPAddress(ip) => format!("{ip:?}"),
                other => format!("{other:?}"),
            })
            .collect();
        assert_eq!(
            names,
            vec!["peer0.example.com".to_string(), "[127, 0, 0, 1]".into()]
        );
    }

    #[test]
    fn every_signature_has_a_low_s() {
        use p256::ecdsa::signature::Verifier;
        let signer = LowS(generate_key().expect("key"));
        let verifying =
            p256::ecdsa::VerifyingKey::from_sec1_bytes(signer.der_bytes()).expect("public key");
        // Half of raw ECDSA signatures have a high S: 32 in a row low is no luck.
        for i in 0u8..32 {
            let message = [i; 8];
            let der = signer.sign(&message).expect("sign");
            let signature = p256::ecdsa::Signature::from_der(&der).expect("DER");
            assert!(
                signature.normalize_s() == signature,
                "signature {i} has a high S"
            );
            verifying.verify(&message, &signature).expect("verifies");
        }
    }

    #[test]
    fn validity_starts_five_minutes_back_on_the_minute() {
        let now = OffsetDateTime::from_unix_timestamp(1_700_000_123).expect("time");
        let validity = Validity::starting(now);
        assert_eq!(validity.not_before.unix_timestamp(), 1_700_000_100 - 5 * 60);
        assert_eq!(
            validity.not_after - validity.not_before,
            time::Duration::days(3650)
        );
    }
}
