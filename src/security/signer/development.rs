//! The node's signing identity at start-up, and the development identity
//! that stands in for it when Ordo runs on its built-in config alone.

use std::path::Path;

use super::{CertificateAuthority, SignerError, SigningIdentity};

/// The development identity's MSP folder, under the ledger folder.
pub const DEVELOPMENT_MSP_DIR: &str = "development-msp";

/// The node's signing identity: the MSP folder `msp_dir`, named `msp_id`.
///
/// With `development_ledger` (only for the built-in config), a missing
/// `msp_dir` is not an error: the node signs with a development identity
/// (a self-signed CA and a node certificate it issued) kept under that ledger
/// folder, made on the first start and reused after, with a warning each
/// time, since no real network trusts it.
pub fn local_signer(
    msp_dir: &Path,
    msp_id: &str,
    development_ledger: Option<&Path>,
) -> Result<SigningIdentity, SignerError> {
    let Some(ledger) = development_ledger.filter(|_| !msp_dir.exists()) else {
        return SigningIdentity::from_msp_dir(msp_dir, msp_id);
    };
    let dir = ledger.join(DEVELOPMENT_MSP_DIR);
    if !dir.exists() {
        create(&dir, msp_id)?;
    }
    let identity = SigningIdentity::from_msp_dir(&dir, msp_id)?;
    tracing::warn!(
        missing = %msp_dir.display(),
        identity = %dir.display(),
        msp_id,
        "no local MSP folder: blocks are signed with a development identity made for this node alone, which no Fabric network trusts; set General.LocalMSPDir for a real one"
    );
    Ok(identity)
}

/// Writes a new development MSP folder at `dir`, whole or not at all.
fn create(dir: &Path, msp_id: &str) -> Result<(), SignerError> {
    let partial = dir.with_extension("partial");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SignerError::Write { path, source }
    };
    if partial.exists() {
        std::fs::remove_dir_all(&partial).map_err(io(&partial))?;
    }
    let ca = CertificateAuthority::generate(msp_id)?;
    let node = ca.issue(&format!("orderer.development.{msp_id}"), "orderer")?;
    node.write_msp(&partial)?;
    std::fs::rename(&partial, dir).map_err(io(dir))?;
    tracing::info!(path = %dir.display(), "made a development signing identity");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_development_identity_is_made_once_and_kept() {
        let ledger = tempfile::tempdir().expect("tempdir");
        let missing = ledger.path().join("no-such-msp");
        let first = local_signer(&missing, "SampleOrg", Some(ledger.path())).expect("made");
        let dir = ledger.path().join(DEVELOPMENT_MSP_DIR);
        assert!(dir.join("signcerts/cert.pem").is_file());
        assert!(dir.join("keystore/priv_sk").is_file());
        assert_eq!(first.msp_id(), "SampleOrg");
        let second = local_signer(&missing, "SampleOrg", Some(ledger.path())).expect("reused");
        assert_eq!(second.serialized(), first.serialized());
    }

    #[test]
    fn without_the_fallback_a_missing_folder_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("msp");
        let err = local_signer(&missing, "OrdererMSP", None).expect_err("missing");
        assert!(err.to_string().contains(&missing.display().to_string()));
        assert!(!dir.path().join(DEVELOPMENT_MSP_DIR).exists());
    }

    #[test]
    fn an_existing_folder_wins_over_the_fallback() {
        let ledger = tempfile::tempdir().expect("tempdir");
        let msp = ledger.path().join("msp");
        let identity = CertificateAuthority::generate("OrdererMSP")
            .expect("ca")
            .issue("orderer1", "orderer")
            .expect("identity");
        identity.write_msp(&msp).expect("write");
        let loaded = local_signer(&msp, "OrdererMSP", Some(ledger.path())).expect("loaded");
        assert_eq!(loaded.serialized(), identity.serialized());
        assert!(!ledger.path().join(DEVELOPMENT_MSP_DIR).exists());
    }
}
