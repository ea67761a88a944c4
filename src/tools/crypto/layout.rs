//! cryptogen's folders for one organization:
//!
//! ```text
//! <domain>/ca/{ca.<domain>-cert.pem, priv_sk}
//! <domain>/tlsca/{tlsca.<domain>-cert.pem, priv_sk}
//! <domain>/msp/{admincerts, cacerts, tlscacerts, config.yaml}
//! <domain>/{orderers|peers}/<node>/msp/{admincerts, cacerts, keystore/priv_sk,
//!                                       signcerts, tlscacerts, config.yaml}
//! <domain>/{orderers|peers}/<node>/tls/{ca.crt, server.crt, server.key}
//! <domain>/users/<user>/msp/...   and  tls/{ca.crt, client.crt, client.key}
//! ```
//!
//! With NodeOUs every certificate's OU is its role and `config.yaml` maps the
//! roles; without, `admincerts/` lists who is an admin: the Admin user for the
//! organization and its nodes, and each user for itself, as cryptogen does.

use std::path::{Path, PathBuf};

use super::ca::{self, CaError, CertificateAuthority, Usage, Validity};
use super::spec::Organization;

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error(transparent)]
    Certificate(#[from] CaError),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The OU a certificate carries when NodeOUs are on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Client,
    Admin,
    Peer,
    Orderer,
}

impl Role {
    fn ou(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Admin => "admin",
            Role::Peer => "peer",
            Role::Orderer => "orderer",
        }
    }
}

/// Writes `org`'s CAs, MSP, nodes and users under `dir`.
pub fn write_organization(
    dir: &Path,
    org: &Organization,
    validity: Validity,
) -> Result<(), LayoutError> {
    let sign_ca =
        CertificateAuthority::new(&org.ca_common_name, &org.domain, &org.subject, validity)?;
    let tls_ca = CertificateAuthority::new(
        &format!("tls{}", org.ca_common_name),
        &org.domain,
        &org.subject,
        validity,
    )?;
    for (folder, ca) in [("ca", &sign_ca), ("tlsca", &tls_ca)] {
        write_file(
            &dir.join(folder).join(cert_file(ca.common_name())),
            ca.certificate_pem(),
        )?;
        write_key(&dir.join(folder).join("priv_sk"), ca.private_key_pem())?;
    }
    let cas = Cas {
        sign: &sign_ca,
        tls: &tls_ca,
        node_ous: org.node_ous,
    };

    // Users first: without NodeOUs the Admin's certificate goes to every
    // node's admincerts.
    let users_dir = dir.join("users");
    let mut admin_cert = None;
    for user in &org.users {
        let role = if user.admin && org.node_ous {
            Role::Admin
        } else {
            Role::Client
        };
        let user_dir = users_dir.join(&user.common_name);
        let cert = cas.write_local_msp(&user_dir, &user.common_name, &[], role, None)?;
        if user.admin {
            admin_cert = Some((user.common_name.as_str(), cert));
        }
    }
    let admin = admin_cert.as_ref().map(|(name, pem)| (*name, pem.as_str()));

    let node_role = match org.kind {
        super::spec::OrgKind::Orderer => Role::Orderer,
        super::spec::OrgKind::Peer => Role::Peer,
    };
    let nodes_dir = dir.join(org.kind.nodes_folder());
    for node in &org.nodes {
        cas.write_local_msp(
            &nodes_dir.join(&node.common_name),
            &node.common_name,
            &node.sans,
            node_role,
            admin,
        )?;
    }

    cas.write_verifying_msp(&dir.join("msp"), admin)
}

/// The two CAs of an organization and whether it uses NodeOUs.
struct Cas<'a> {
    sign: &'a CertificateAuthority,
    tls: &'a CertificateAuthority,
    node_ous: bool,
}

impl Cas<'_> {
    /// The organization's MSP: what a channel config carries.
    fn write_verifying_msp(
        &self,
        msp: &Path,
        admin: Option<(&str, &str)>,
    ) -> Result<(), LayoutError> {
        self.write_ca_folders(msp)?;
        let admincerts = msp.join("admincerts");
        create_dir(&admincerts)?;
        if !self.node_ous {
            if let Some((name, pem)) = admin {
                write_file(&admincerts.join(cert_file(name)), pem)?;
            }
        }
        Ok(())
    }

    /// A node's or user's MSP and TLS folders; returns its signing certificate.
    fn write_local_msp(
        &self,
        dir: &Path,
        name: &str,
        sans: &[String],
        role: Role,
        admin: Option<(&str, &str)>,
    ) -> Result<String, LayoutError> {
        let msp = dir.join("msp");
        self.write_ca_folders(&msp)?;

        let key = ca::generate_key().map_err(|source| CaError::from_key(name, source))?;
        write_key(
            &msp.join("keystore").join("priv_sk"),
            &ca::private_key_pem(&key),
        )?;
        let ous: &[&str] = if self.node_ous { &[role.ou()] } else { &[] };
        let cert = self.sign.issue(name, ous, &[], Usage::Signing, &key)?;
        write_file(&msp.join("signcerts").join(cert_file(name)), &cert)?;

        let admincerts = msp.join("admincerts");
        create_dir(&admincerts)?;
        if !self.node_ous {
            // Nodes name the organization's Admin; a user names itself.
            let (admin_name, admin_pem) = admin.unwrap_or((name, cert.as_str()));
            write_file(&admincerts.join(cert_file(admin_name)), admin_pem)?;
        }

        let tls = dir.join("tls");
        let tls_key = ca::generate_key().map_err(|source| CaError::from_key(name, source))?;
        let tls_cert = self.tls.issue(name, &[], sans, Usage::Tls, &tls_key)?;
        let prefix = match role {
            Role::Client | Role::Admin => "client",
            Role::Peer | Role::Orderer => "server",
        };
        write_file(&tls.join("ca.crt"), self.tls.certificate_pem())?;
        write_file(&tls.join(format!("{prefix}.crt")), &tls_cert)?;
        write_key(
            &tls.join(format!("{prefix}.key")),
            &ca::private_key_pem(&tls_key),
        )?;
        Ok(cert)
    }

    /// cacerts/, tlscacerts/ and, with NodeOUs, config.yaml.
    fn write_ca_folders(&self, msp: &Path) -> Result<(), LayoutError> {
        let ca_file = cert_file(self.sign.common_name());
        write_file(
            &msp.join("cacerts").join(&ca_file),
            self.sign.certificate_pem(),
        )?;
        write_file(
            &msp.join("tlscacerts")
                .join(cert_file(self.tls.common_name())),
            self.tls.certificate_pem(),
        )?;
        if self.node_ous {
            write_file(&msp.join("config.yaml"), &node_ous_config(&ca_file))?;
        }
        Ok(())
    }
}

fn cert_file(name: &str) -> String {
    format!("{name}-cert.pem")
}

/// The NodeOUs of an MSP's config.yaml, each role identified by the CA
/// certificate in cacerts/ and its OU.
fn node_ous_config(ca_file: &str) -> String {
    let mut text = String::from("NodeOUs:\n  Enable: true\n");
    for (key, ou) in [
        ("ClientOUIdentifier", "client"),
        ("PeerOUIdentifier", "peer"),
        ("AdminOUIdentifier", "admin"),
        ("OrdererOUIdentifier", "orderer"),
    ] {
        text.push_str(&format!(
            "  {key}:\n    Certificate: cacerts/{ca_file}\n    OrganizationalUnitIdentifier: {ou}\n"
        ));
    }
    text
}

fn create_dir(dir: &Path) -> Result<(), LayoutError> {
    std::fs::create_dir_all(dir).map_err(|source| LayoutError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

fn write_file(path: &Path, text: &str) -> Result<(), LayoutError> {
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    std::fs::write(path, text).map_err(|source| LayoutError::Write {
        path: path.to_path_buf(),
        source,
    })
}

/// A private key: readable by its owner only, and never over another file.
fn write_key(path: &Path, pem: &str) -> Result<(), LayoutError> {
    use std::io::Write;
    if let Some(parent) = path.parent() {
        create_dir(parent)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(path)
        .and_then(|mut file| file.write_all(pem.as_bytes()))
        .map_err(|source| LayoutError::Write {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ous(path: &Path) -> Vec<String> {
        let pem = std::fs::read(path).expect("read");
        let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("pem");
        let cert = pem.parse_x509().expect("x509");
        cert.subject()
            .iter_organizational_unit()
            .map(|ou| ou.as_str().expect("utf8").to_string())
            .collect()
    }

    #[test]
    fn with_node_ous_each_certificate_carries_its_role_and_config_yaml_maps_them() {
        let dir = tempfile::tempdir().expect("tempdir");
        let org = super::super::spec::parse(
            "PeerOrgs:\n  - Domain: org1.example.com\n    EnableNodeOUs: true\n    Template:\n      Count: 1\n    Users:\n      Count: 1\n",
        )
        .expect("spec")
        .remove(0);
        write_organization(dir.path(), &org, Validity::now()).expect("write");
        for (who, role) in [
            ("peers/peer0.org1.example.com", "peer"),
            ("users/User1@org1.example.com", "client"),
            ("users/Admin@org1.example.com", "admin"),
        ] {
            let name = who.rsplit('/').next().expect("name");
            let signcert = dir
                .path()
                .join(who)
                .join(format!("msp/signcerts/{name}-cert.pem"));
            assert_eq!(ous(&signcert), vec![role], "{who}");
            // TLS certificates carry no role.
            let tls = if role == "peer" { "server" } else { "client" };
            assert!(ous(&dir.path().join(who).join(format!("tls/{tls}.crt"))).is_empty());
            let admincerts = dir.path().join(who).join("msp/admincerts");
            assert_eq!(
                std::fs::read_dir(admincerts).expect("admincerts").count(),
                0
            );
        }
        // configtxgen's MSP reader takes the folder as it is.
        let msp = crate::fabric::configtxgen::msp::read_msp(&dir.path().join("msp"), "Org1MSP")
            .expect("msp");
        let fabric: crate::fabric::protos::msp::FabricMspConfig =
            prost::Message::decode(msp.config).expect("decode");
        let ous = fabric.fabric_node_ous.expect("NodeOUs");
        assert!(ous.enable);
        let admin = ous.admin_ou_identifier.expect("admin OU");
        assert_eq!(admin.organizational_unit_identifier, "admin");
        assert_eq!(admin.certificate, fabric.root_certs[0]);
        assert!(fabric.admins.is_empty());
        assert_eq!(fabric.tls_root_certs.len(), 1);
    }
}
