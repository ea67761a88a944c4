//! Test material generated in memory, for tests and benchmarks: CAs (roots
//! and intermediates), identities with the OUs NodeOUs read, CRLs, and
//! organizations whose MSP a channel config can carry. Nothing here is
//! written to disk.

use bytes::Bytes;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use prost::Message;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, CertifiedIssuer,
    DistinguishedName, DnType, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, RevokedCertParams,
    SerialNumber,
};

use crate::fabric::channelconfig::genesis::OrganizationProfile;
use crate::fabric::configtx::compute::UpdateSigner;
use crate::fabric::envelopeutil::new_envelope;
use crate::fabric::protos::common::{Envelope, HeaderType};
use crate::fabric::protos::msp::{
    FabricCryptoConfig, FabricMspConfig, FabricNodeOUs, FabricOuIdentifier, MspConfig,
    SerializedIdentity,
};

/// The OUs of NodeOUs, as cryptogen names them.
pub const CLIENT_OU: &str = "client";
pub const PEER_OU: &str = "peer";
pub const ADMIN_OU: &str = "admin";
pub const ORDERER_OU: &str = "orderer";

fn serial() -> SerialNumber {
    let mut bytes = [0u8; 8];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut bytes);
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from(bytes.to_vec())
}

/// The OID of the OU attribute, to write a second OU (rcgen keeps one
/// value per attribute type).
const OU_OID: [u64; 4] = [2, 5, 4, 11];

/// A subject with up to two OUs.
fn name(common_name: &str, organization: &str, ous: &[&str]) -> DistinguishedName {
    assert!(ous.len() <= 2, "test certificates carry at most two OUs");
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn.push(DnType::OrganizationName, organization);
    if let Some(first) = ous.first() {
        dn.push(DnType::OrganizationalUnitName, *first);
    }
    if let Some(second) = ous.get(1) {
        dn.push(DnType::CustomDnType(OU_OID.to_vec()), *second);
    }
    dn
}

/// A certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    organization: String,
}

impl TestCa {
    /// A self-signed root CA.
    pub fn root(common_name: &str) -> TestCa {
        let params = TestCa::params(common_name, common_name);
        let key = KeyPair::generate().expect("key");
        TestCa {
            issuer: CertifiedIssuer::self_signed(params, key).expect("root CA"),
            organization: common_name.to_string(),
        }
    }

    /// An intermediate CA issued by this one.
    pub fn intermediate(&self, common_name: &str) -> TestCa {
        let params = TestCa::params(common_name, &self.organization);
        let key = KeyPair::generate().expect("key");
        TestCa {
            issuer: CertifiedIssuer::signed_by(params, key, &self.issuer).expect("intermediate"),
            organization: self.organization.clone(),
        }
    }

    fn params(common_name: &str, organization: &str) -> CertificateParams {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = name(common_name, organization, &[]);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.serial_number = Some(serial());
        params
    }

    /// The CA's certificate, PEM.
    pub fn pem(&self) -> Bytes {
        self.issuer.pem().into_bytes().into()
    }

    pub fn der(&self) -> Bytes {
        Bytes::copy_from_slice(self.issuer.der())
    }

    /// A P-256 identity of `msp_id` carrying `ous`, valid for decades.
    pub fn issue(&self, msp_id: &str, common_name: &str, ous: &[&str]) -> TestIdentity {
        self.issue_with(msp_id, common_name, ous, Validity::Current)
    }

    /// An identity as `issue` makes, with the given validity.
    pub fn issue_with(
        &self,
        msp_id: &str,
        common_name: &str,
        ous: &[&str],
        validity: Validity,
    ) -> TestIdentity {
        let key = KeyPair::generate().expect("key");
        let (certificate, serial) = self.certificate(&key, common_name, ous, validity);
        let signing_key = SigningKey::from_pkcs8_der(&key.serialize_der()).expect("P-256 key");
        TestIdentity::new(msp_id, certificate, Some(signing_key), serial)
    }

    /// An identity whose key is ECDSA P-384 (which Ordo does not accept).
    pub fn issue_p384(&self, msp_id: &str, common_name: &str, ous: &[&str]) -> TestIdentity {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("P-384 key");
        let (certificate, serial) = self.certificate(&key, common_name, ous, Validity::Current);
        TestIdentity::new(msp_id, certificate, None, serial)
    }

    fn certificate(
        &self,
        key: &KeyPair,
        common_name: &str,
        ous: &[&str],
        validity: Validity,
    ) -> (Bytes, SerialNumber) {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.distinguished_name = name(common_name, &self.organization, ous);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let serial = serial();
        params.serial_number = Some(serial.clone());
        let ((from_y, from_m, from_d), until) = match validity {
            Validity::Current => ((2020, 1, 1), rcgen::date_time_ymd(2099, 12, 31)),
            Validity::Expired => ((2001, 1, 1), rcgen::date_time_ymd(2002, 1, 1)),
            Validity::Until(end) => ((2020, 1, 1), time::OffsetDateTime::from(end)),
        };
        params.not_before = rcgen::date_time_ymd(from_y, from_m, from_d);
        params.not_after = until;
        let certificate = params.signed_by(key, &self.issuer).expect("certificate");
        (certificate.pem().into_bytes().into(), serial)
    }

    /// A CRL of this CA revoking `revoked`, PEM.
    pub fn crl(&self, revoked: &[&TestIdentity]) -> Bytes {
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2020, 1, 1),
            next_update: rcgen::date_time_ymd(2099, 1, 1),
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|identity| RevokedCertParams {
                    serial_number: identity.serial.clone(),
                    revocation_time: rcgen::date_time_ymd(2020, 6, 1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        let crl = params.signed_by(&self.issuer).expect("CRL");
        crl.pem().expect("PEM").into_bytes().into()
    }
}

/// When a test certificate is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validity {
    /// From 2020 to 2099.
    Current,
    /// During 2001 only.
    Expired,
    /// From 2020 until the given time.
    Until(std::time::SystemTime),
}

/// A certificate and, for P-256 identities, its key.
pub struct TestIdentity {
    msp_id: String,
    certificate_pem: Bytes,
    key: Option<SigningKey>,
    serial: SerialNumber,
}

impl TestIdentity {
    fn new(
        msp_id: &str,
        certificate_pem: Bytes,
        key: Option<SigningKey>,
        serial: SerialNumber,
    ) -> TestIdentity {
        TestIdentity {
            msp_id: msp_id.to_string(),
            certificate_pem,
            key,
            serial,
        }
    }

    pub fn msp_id(&self) -> &str {
        &self.msp_id
    }

    pub fn certificate_pem(&self) -> Bytes {
        self.certificate_pem.clone()
    }

    /// The same certificate named as a member of another MSP.
    pub fn claiming(&self, msp_id: &str) -> TestIdentity {
        TestIdentity {
            msp_id: msp_id.to_string(),
            certificate_pem: self.certificate_pem.clone(),
            key: self.key.clone(),
            serial: self.serial.clone(),
        }
    }

    /// The marshalled `SerializedIdentity`.
    pub fn creator(&self) -> Bytes {
        SerializedIdentity {
            mspid: self.msp_id.clone(),
            id_bytes: self.certificate_pem.clone(),
        }
        .encode_to_vec()
        .into()
    }

    fn signature(&self, message: &[u8]) -> Signature {
        let key = self.key.as_ref().expect("a P-256 identity signs");
        let signature: Signature = p256::ecdsa::signature::Signer::sign(key, message);
        signature.normalize_s()
    }

    /// DER ECDSA over SHA-256 of `message`, low S.
    pub fn sign(&self, message: &[u8]) -> Bytes {
        Bytes::from(self.signature(message).to_der().as_bytes().to_vec())
    }

    /// The same signature with S replaced by n - S: valid ECDSA, high S.
    pub fn sign_high_s(&self, message: &[u8]) -> Bytes {
        let (r, s) = self.signature(message).split_scalars();
        let high = Signature::from_scalars(r, -*s).expect("high S");
        Bytes::from(high.to_der().as_bytes().to_vec())
    }

    /// A transaction this identity created and signed.
    pub fn transaction(&self, channel: &str, data: Bytes) -> Envelope {
        let (mut envelope, _) = new_envelope(
            channel,
            HeaderType::EndorserTransaction,
            data,
            self.creator(),
        );
        envelope.signature = self.sign(&envelope.payload);
        envelope
    }

    /// Calls `with` with this identity as a signer of config updates.
    pub fn as_update_signer<R>(&self, with: impl FnOnce(&UpdateSigner<'_>) -> R) -> R {
        let sign = |message: &[u8]| self.sign(message);
        with(&UpdateSigner {
            creator: self.creator(),
            sign: &sign,
        })
    }
}

/// An organization as cryptogen makes one: a CA, a TLS CA, NodeOUs, and an
/// identity of each role.
pub struct TestOrg {
    pub name: String,
    pub msp_id: String,
    pub ca: TestCa,
    pub tls_ca: TestCa,
    pub admin: TestIdentity,
    pub client: TestIdentity,
    pub peer: TestIdentity,
    pub orderer: TestIdentity,
}

impl TestOrg {
    pub fn new(msp_id: &str) -> TestOrg {
        let ca = TestCa::root(&format!("ca.{msp_id}"));
        let tls_ca = TestCa::root(&format!("tlsca.{msp_id}"));
        TestOrg {
            name: msp_id.to_string(),
            msp_id: msp_id.to_string(),
            admin: ca.issue(msp_id, &format!("Admin@{msp_id}"), &[ADMIN_OU]),
            client: ca.issue(msp_id, &format!("User1@{msp_id}"), &[CLIENT_OU]),
            peer: ca.issue(msp_id, &format!("peer0.{msp_id}"), &[PEER_OU]),
            orderer: ca.issue(msp_id, &format!("orderer.{msp_id}"), &[ORDERER_OU]),
            ca,
            tls_ca,
        }
    }

    /// The MSP as a channel config carries it: NodeOUs with the four roles
    /// certified by the CA, no admincerts.
    pub fn fabric_msp_config(&self) -> FabricMspConfig {
        let ou = |name: &str| {
            Some(FabricOuIdentifier {
                certificate: self.ca.pem(),
                organizational_unit_identifier: name.to_string(),
            })
        };
        FabricMspConfig {
            name: self.msp_id.clone(),
            root_certs: vec![self.ca.pem()],
            crypto_config: Some(FabricCryptoConfig {
                signature_hash_family: "SHA2".into(),
                identity_identifier_hash_function: "SHA256".into(),
            }),
            tls_root_certs: vec![self.tls_ca.pem()],
            fabric_node_ous: Some(FabricNodeOUs {
                enable: true,
                client_ou_identifier: ou(CLIENT_OU),
                peer_ou_identifier: ou(PEER_OU),
                admin_ou_identifier: ou(ADMIN_OU),
                orderer_ou_identifier: ou(ORDERER_OU),
            }),
            ..FabricMspConfig::default()
        }
    }

    pub fn msp_config(&self) -> MspConfig {
        wrap(&self.fabric_msp_config())
    }

    /// The orderer identity's MSP folder at `dir` (signcerts, keystore,
    /// cacerts), as a node of this organization signs with it; returns
    /// the `ORDERER_GENERAL_LOCALMSP*` variables that name it.
    pub fn write_orderer_msp(&self, dir: &std::path::Path) -> Vec<(String, String)> {
        self.write_msp(&self.orderer, dir);
        vec![
            (
                "ORDERER_GENERAL_LOCALMSPDIR".to_string(),
                dir.display().to_string(),
            ),
            (
                "ORDERER_GENERAL_LOCALMSPID".to_string(),
                self.msp_id.clone(),
            ),
        ]
    }

    /// `who`'s MSP folder at `dir`: signcerts, keystore (PKCS#8), cacerts.
    pub fn write_msp(&self, who: &TestIdentity, dir: &std::path::Path) {
        use p256::pkcs8::EncodePrivateKey;
        let key = who
            .key
            .as_ref()
            .expect("a P-256 identity")
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .expect("PKCS#8");
        for (folder, file, content) in [
            ("signcerts", "cert.pem", who.certificate_pem.to_vec()),
            ("keystore", "priv_sk", key.as_bytes().to_vec()),
            ("cacerts", "ca.pem", self.ca.pem().to_vec()),
        ] {
            std::fs::create_dir_all(dir.join(folder)).expect("MSP folder");
            std::fs::write(dir.join(folder).join(file), content).expect("MSP file");
        }
    }

    /// The organization for a genesis profile.
    pub fn profile(&self) -> OrganizationProfile {
        OrganizationProfile {
            name: self.name.clone(),
            msp_id: self.msp_id.clone(),
            msp: self.msp_config(),
            orderer_endpoints: Vec::new(),
        }
    }
}

/// An `MSPConfig` of type FABRIC around `config`.
pub fn wrap(config: &FabricMspConfig) -> MspConfig {
    MspConfig {
        r#type: 0,
        config: config.encode_to_vec().into(),
    }
}
