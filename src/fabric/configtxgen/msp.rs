//! Reads an MSP folder in Fabric's layout into the `FabricMSPConfig` that a
//! channel config carries for an organization:
//!
//! ```text
//! cacerts/  intermediatecerts/  admincerts/  tlscacerts/  tlsintermediatecerts/
//! crls/  config.yaml (NodeOUs)
//! ```
//!
//! Certificates are carried as their PEM files' bytes, as Fabric does.

use std::path::{Path, PathBuf};

use bytes::Bytes;
use serde::Deserialize;

use crate::fabric::protos::msp::{
    FabricCryptoConfig, FabricMspConfig, FabricNodeOUs, FabricOuIdentifier, MspConfig,
};

#[derive(Debug, thiserror::Error)]
pub enum MspError {
    #[error("cannot read MSP folder {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("MSP folder {0} has no CA certificate in cacerts/")]
    NoCaCert(PathBuf),
    #[error("{0} is not a PEM certificate")]
    NotPem(PathBuf),
    #[error("invalid NodeOUs config {path}: {reason}")]
    Config { path: PathBuf, reason: String },
}

/// Reads the MSP at `dir` for MSP ID `msp_id` and wraps it as an `MSPConfig`.
pub fn read_msp(dir: &Path, msp_id: &str) -> Result<MspConfig, MspError> {
    let root_certs = pem_files(&dir.join("cacerts"))?;
    if root_certs.is_empty() {
        return Err(MspError::NoCaCert(dir.to_path_buf()));
    }
    let fabric = FabricMspConfig {
        name: msp_id.to_string(),
        root_certs,
        intermediate_certs: pem_files(&dir.join("intermediatecerts"))?,
        admins: pem_files(&dir.join("admincerts"))?,
        revocation_list: pem_files_any(&dir.join("crls"))?,
        signing_identity: None,
        organizational_unit_identifiers: Vec::new(),
        crypto_config: Some(FabricCryptoConfig {
            signature_hash_family: "SHA2".into(),
            identity_identifier_hash_function: "SHA256".into(),
        }),
        tls_root_certs: pem_files(&dir.join("tlscacerts"))?,
        tls_intermediate_certs: pem_files(&dir.join("tlsintermediatecerts"))?,
        fabric_node_ous: node_ous(dir)?,
    };
    Ok(MspConfig {
        r#type: 0,
        config: prost::Message::encode_to_vec(&fabric).into(),
    })
}

/// Reads one PEM certificate file (an etcdraft consenter's TLS certificate).
pub fn read_cert(path: &Path) -> Result<Bytes, MspError> {
    let bytes = std::fs::read(path).map_err(|source| MspError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    if !is_pem_certificate(&bytes) {
        return Err(MspError::NotPem(path.to_path_buf()));
    }
    Ok(bytes.into())
}

fn is_pem_certificate(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| text.contains("-----BEGIN CERTIFICATE-----"))
}

/// Every certificate file of a folder, sorted by name; a missing folder is empty.
fn pem_files(dir: &Path) -> Result<Vec<Bytes>, MspError> {
    files(dir)?.iter().map(|path| read_cert(path)).collect()
}

/// Every file of a folder (CRLs are PEM but not certificates).
fn pem_files_any(dir: &Path) -> Result<Vec<Bytes>, MspError> {
    files(dir)?
        .iter()
        .map(|path| {
            std::fs::read(path)
                .map(Bytes::from)
                .map_err(|source| MspError::Read {
                    path: path.clone(),
                    source,
                })
        })
        .collect()
}

fn files(dir: &Path) -> Result<Vec<PathBuf>, MspError> {
    let read_err = |source| MspError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(read_err(e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let path = entry.map_err(read_err)?.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct MspConfigYaml {
    #[serde(rename = "NodeOUs")]
    node_ous: Option<NodeOUsYaml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct NodeOUsYaml {
    #[serde(default)]
    enable: bool,
    #[serde(rename = "ClientOUIdentifier")]
    client: Option<OuYaml>,
    #[serde(rename = "PeerOUIdentifier")]
    peer: Option<OuYaml>,
    #[serde(rename = "AdminOUIdentifier")]
    admin: Option<OuYaml>,
    #[serde(rename = "OrdererOUIdentifier")]
    orderer: Option<OuYaml>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OuYaml {
    certificate: Option<String>,
    organizational_unit_identifier: String,
}

/// `config.yaml`'s NodeOUs, with the certificates it names read in.
fn node_ous(dir: &Path) -> Result<Option<FabricNodeOUs>, MspError> {
    let path = dir.join("config.yaml");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(MspError::Read { path, source }),
    };
    let invalid = |reason: String| MspError::Config {
        path: path.clone(),
        reason,
    };
    let parsed: MspConfigYaml = config::Config::builder()
        .add_source(config::File::from_str(&text, config::FileFormat::Yaml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| invalid(e.to_string()))?;
    let Some(ous) = parsed.node_ous else {
        return Ok(None);
    };
    let identifier = |ou: Option<OuYaml>| -> Result<Option<FabricOuIdentifier>, MspError> {
        let Some(ou) = ou else { return Ok(None) };
        let certificate = match ou.certificate.filter(|c| !c.is_empty()) {
            Some(file) => read_cert(&dir.join(file))?,
            None => Bytes::new(),
        };
        Ok(Some(FabricOuIdentifier {
            certificate,
            organizational_unit_identifier: ou.organizational_unit_identifier,
        }))
    };
    Ok(Some(FabricNodeOUs {
        enable: ous.enable,
        client_ou_identifier: identifier(ous.client)?,
        peer_ou_identifier: identifier(ous.peer)?,
        admin_ou_identifier: identifier(ous.admin)?,
        orderer_ou_identifier: identifier(ous.orderer)?,
    }))
}
