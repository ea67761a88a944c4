//! Identities made here: a self-signed CA and the identities it issues, each
//! writable as an MSP folder in Fabric's layout. For the node's development
//! identity, the client's load identities, and tests.

use std::path::Path;

use bytes::Bytes;
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};

use super::{SignerError, SigningIdentity};

/// NodeOUs as cryptogen writes them: every role told by the OU its CA put
/// in the certificate.
const NODE_OUS: &str = "NodeOUs:
  Enable: true
  ClientOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: client
  PeerOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: peer
  AdminOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: admin
  OrdererOUIdentifier:
    Certificate: cacerts/ca-cert.pem
    OrganizationalUnitIdentifier: orderer
";

fn failed(e: impl std::fmt::Display) -> SignerError {
    SignerError::Generate(e.to_string())
}

/// A self-signed CA of one MSP.
pub struct CertificateAuthority {
    msp_id: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("msp_id", &self.msp_id)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// A new P-256 CA named `ca.<msp_id>`.
    pub fn generate(msp_id: &str) -> Result<CertificateAuthority, SignerError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("ca.{msp_id}"));
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, msp_id.to_string());
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let issuer = rcgen::CertifiedIssuer::self_signed(params, key).map_err(failed)?;
        Ok(CertificateAuthority {
            msp_id: msp_id.to_string(),
            issuer,
        })
    }

    /// The CA's certificate, PEM.
    pub fn certificate_pem(&self) -> String {
        self.issuer.pem()
    }

    /// An identity of this CA's MSP: a new P-256 key and a certificate for
    /// `common_name` whose OU is `role` (client, peer, admin or orderer, as
    /// NodeOUs tell roles).
    pub fn issue(&self, common_name: &str, role: &str) -> Result<SigningIdentity, SignerError> {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name.to_string());
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationalUnitName, role.to_string());
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        let key = rcgen::KeyPair::generate().map_err(failed)?;
        let certificate = params.signed_by(&key, &self.issuer).map_err(failed)?;
        let signing_key = SigningKey::from_pkcs8_der(&key.serialize_der()).map_err(failed)?;
        let mut identity = SigningIdentity::new(
            &self.msp_id,
            certificate.der(),
            signing_key,
            Path::new(common_name),
        )?;
        identity.ca_pem = Some(Bytes::from(self.certificate_pem().into_bytes()));
        Ok(identity)
    }
}

impl SigningIdentity {
    /// A new CA and a client identity it issued (OU "client"), for load
    /// tools and tests.
    pub fn generate(msp_id: &str) -> Result<SigningIdentity, SignerError> {
        CertificateAuthority::generate(msp_id)?.issue(&format!("loadclient@{msp_id}"), "client")
    }

    /// Writes an identity made here as an MSP folder: `cacerts/`,
    /// `signcerts/`, `keystore/priv_sk` (PKCS#8, readable by the owner only)
    /// and a NodeOUs `config.yaml`. A configtx.yaml can name the folder for
    /// the organization, and the node can load it as its local MSP.
    pub fn write_msp(&self, dir: &Path) -> Result<(), SignerError> {
        let ca = self.ca_pem.as_ref().ok_or_else(|| SignerError::Invalid {
            path: dir.to_path_buf(),
            reason: "only an identity made here can be written out".into(),
        })?;
        let key = self
            .key
            .to_pkcs8_pem(p256::pkcs8::LineEnding::LF)
            .map_err(failed)?;
        write_file(&dir.join("cacerts/ca-cert.pem"), ca, false)?;
        write_file(
            &dir.join("signcerts/cert.pem"),
            &self.certificate_pem,
            false,
        )?;
        write_file(&dir.join("config.yaml"), NODE_OUS.as_bytes(), false)?;
        write_file(&dir.join("keystore/priv_sk"), key.as_bytes(), true)
    }
}

/// Writes a file, creating its folder; a secret is readable by its owner only.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), SignerError> {
    let write = || -> std::io::Result<()> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        if secret {
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        #[cfg(not(unix))]
        let _ = secret;
        let mut file = options.open(path)?;
        // `mode` applies only to a new file: an existing one is narrowed too.
        #[cfg(unix)]
        if secret {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        std::io::Write::write_all(&mut file, bytes)
    };
    write().map_err(|source| SignerError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::protos::msp::FabricMspConfig;
    use prost::Message;

    #[test]
    fn an_issued_identity_round_trips_through_an_msp_folder() {
        let ca = CertificateAuthority::generate("Org1MSP").expect("ca");
        let identity = ca.issue("orderer1.org1", "orderer").expect("issue");
        let dir = tempfile::tempdir().expect("tempdir");
        identity.write_msp(dir.path()).expect("write");
        let again = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect("load");
        assert_eq!(again.serialized(), identity.serialized());
        assert_eq!(again.verifying_key(), identity.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("keystore/priv_sk"))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // The folder is one configtx.yaml can name, with its NodeOUs.
        let msp = crate::fabric::configtxgen::msp::read_msp(dir.path(), "Org1MSP").expect("msp");
        let fabric = FabricMspConfig::decode(msp.config).expect("fabric msp");
        assert_eq!(fabric.root_certs.len(), 1);
        let ous = fabric.fabric_node_ous.expect("node OUs");
        assert!(ous.enable);
        let orderer = ous.orderer_ou_identifier.expect("orderer OU");
        assert_eq!(orderer.organizational_unit_identifier, "orderer");
    }

    #[test]
    fn only_identities_made_here_are_written_out() {
        let ca = CertificateAuthority::generate("Org1MSP").expect("ca");
        let dir = tempfile::tempdir().expect("tempdir");
        ca.issue("a", "client")
            .expect("issue")
            .write_msp(dir.path())
            .expect("write");
        let loaded = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect("load");
        let err = loaded
            .write_msp(&dir.path().join("copy"))
            .expect_err("no CA");
        assert!(
            err.to_string().contains("only an identity made here"),
            "{err}"
        );
    }
}
