//! Loading a signing identity from an MSP folder, as Fabric's local MSP
//! does: the certificate in `signcerts/`, and its private key anywhere in
//! `keystore/` (cryptogen writes `priv_sk`, older tools `<SKI>_sk`), PEM,
//! PKCS#8 ("PRIVATE KEY") or SEC1 ("EC PRIVATE KEY"). As in Fabric, the
//! folder must hold a CA certificate in `cacerts/`, and an expired
//! certificate is refused.

use std::path::{Path, PathBuf};

use p256::ecdsa::SigningKey;

use super::{certificate_key, SignerError, SigningIdentity};

impl SigningIdentity {
    /// Reads the identity of the MSP folder `dir`, named `msp_id`. The key
    /// is the one in `keystore/` that belongs to the certificate.
    pub fn from_msp_dir(dir: &Path, msp_id: &str) -> Result<SigningIdentity, SignerError> {
        if !dir.is_dir() {
            return Err(SignerError::NoFolder(dir.to_path_buf()));
        }
        certificate(&dir.join("cacerts"))
            .map_err(|_| SignerError::NoCaCertificate(dir.join("cacerts")))?;
        let (certificate_path, certificate_der) = certificate(&dir.join("signcerts"))?;
        let invalid = |reason| SignerError::Invalid {
            path: certificate_path.clone(),
            reason,
        };
        let public = certificate_key(&certificate_der).map_err(invalid)?;
        check_validity(&certificate_der).map_err(invalid)?;

        let keystore = dir.join("keystore");
        let mut unreadable = None;
        let mut found_key = false;
        for path in files(&keystore)? {
            match private_key(&path) {
                Ok(Some(key)) if *key.verifying_key() == public => {
                    return SigningIdentity::new(msp_id, &certificate_der, key, &certificate_path);
                }
                Ok(Some(_)) => found_key = true,
                Ok(None) => {}
                Err(e) => {
                    unreadable.get_or_insert(e);
                }
            }
        }
        Err(match unreadable {
            // A key of another certificate says more than a file that is not
            // a key at all.
            _ if found_key => SignerError::KeyMismatch {
                keystore,
                certificate: certificate_path,
            },
            Some(e) => e,
            None => SignerError::NoKey(keystore),
        })
    }
}

/// The files of a folder, sorted by name.
fn files(dir: &Path) -> Result<Vec<PathBuf>, SignerError> {
    let read_err = |source| SignerError::Read {
        path: dir.to_path_buf(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read_err)? {
        let path = entry.map_err(read_err)?.path();
        if path.is_file() {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths)
}

fn read(path: &Path) -> Result<Vec<u8>, SignerError> {
    std::fs::read(path).map_err(|source| SignerError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// The first certificate of the first file of `signcerts` that holds one.
fn certificate(signcerts: &Path) -> Result<(PathBuf, Vec<u8>), SignerError> {
    for path in files(signcerts)? {
        let bytes = read(&path)?;
        let Ok(blocks) = pem::parse_many(&bytes) else {
            continue;
        };
        if let Some(block) = blocks.into_iter().find(|b| b.tag() == "CERTIFICATE") {
            return Ok((path, block.into_contents()));
        }
    }
    Err(SignerError::NoCertificate(signcerts.to_path_buf()))
}

/// The P-256 key a keystore file holds; `None` for a file that holds no
/// private key (a public key, a certificate, a note).
fn private_key(path: &Path) -> Result<Option<SigningKey>, SignerError> {
    let bytes = read(path)?;
    let invalid = |reason: String| SignerError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::str::from_utf8(&bytes).map_err(|_| invalid("not a PEM file".into()))?;
    let holds_key = pem::parse_many(text)
        .map_err(|e| invalid(format!("not a PEM file: {e}")))?
        .iter()
        .any(|b| b.tag() == "PRIVATE KEY" || b.tag() == "EC PRIVATE KEY");
    if !holds_key {
        return Ok(None);
    }
    let key = p256::SecretKey::from_pem(text).map_err(|e| {
        invalid(format!(
            "not a P-256 private key (PKCS#8 \"PRIVATE KEY\" or SEC1 \"EC PRIVATE KEY\"): {e}"
        ))
    })?;
    Ok(Some(SigningKey::from(key)))
}

/// Fabric's local MSP refuses an expired signing certificate; one not yet
/// valid only gets a warning, since peers will refuse what it signs until then.
fn check_validity(der: &[u8]) -> Result<(), String> {
    let (_, certificate) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let validity = certificate.validity();
    let now = x509_parser::time::ASN1Time::now();
    if validity.not_after < now {
        return Err(format!(
            "the signing certificate expired on {}",
            validity.not_after
        ));
    }
    if validity.not_before > now {
        tracing::warn!(
            not_before = %validity.not_before,
            "the signing certificate is not valid yet: peers refuse what it signs until then"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::signer::CertificateAuthority;
    use p256::pkcs8::LineEnding;

    /// An MSP folder of a fresh identity; returns the folder and the key.
    fn msp() -> (tempfile::TempDir, SigningIdentity) {
        let ca = CertificateAuthority::generate("Org1MSP").expect("ca");
        let identity = ca.issue("orderer1", "orderer").expect("identity");
        let dir = tempfile::tempdir().expect("tempdir");
        identity.write_msp(dir.path()).expect("write");
        (dir, identity)
    }

    #[test]
    fn a_pkcs8_key_under_any_name_is_found() {
        let (dir, identity) = msp();
        let keystore = dir.path().join("keystore");
        std::fs::rename(keystore.join("priv_sk"), keystore.join("3f2a_sk")).expect("rename");
        std::fs::write(keystore.join("0-readme"), "not a key").expect("note");
        let loaded = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect("loads");
        assert_eq!(loaded.serialized(), identity.serialized());
    }

    #[test]
    fn a_sec1_key_is_accepted() {
        let (dir, identity) = msp();
        let sec1 = p256::SecretKey::from(&identity.key)
            .to_sec1_pem(LineEnding::LF)
            .expect("sec1");
        assert!(sec1.starts_with("-----BEGIN EC PRIVATE KEY-----"));
        std::fs::write(dir.path().join("keystore/priv_sk"), sec1.as_bytes()).expect("write");
        let loaded = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect("loads");
        assert_eq!(loaded.verifying_key(), identity.verifying_key());
    }

    #[test]
    fn missing_pieces_are_named() {
        let missing = tempfile::tempdir().expect("tempdir");
        let nowhere = missing.path().join("msp");
        let err = SigningIdentity::from_msp_dir(&nowhere, "Org1MSP").expect_err("no folder");
        assert!(matches!(err, SignerError::NoFolder(_)), "{err}");
        assert!(err.to_string().contains(&nowhere.display().to_string()));

        let (dir, _) = msp();
        std::fs::remove_file(dir.path().join("signcerts/cert.pem")).expect("rm");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("no cert");
        let signcerts = dir.path().join("signcerts");
        assert_eq!(
            err.to_string(),
            format!("no certificate in {}", signcerts.display())
        );

        let (dir, _) = msp();
        std::fs::remove_file(dir.path().join("keystore/priv_sk")).expect("rm");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("no key");
        let keystore = dir.path().join("keystore");
        assert_eq!(
            err.to_string(),
            format!("no private key in {}", keystore.display())
        );

        let (dir, _) = msp();
        std::fs::remove_dir_all(dir.path().join("keystore")).expect("rm");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("no keystore");
        assert!(err.to_string().starts_with("cannot read "), "{err}");
        assert!(err.to_string().contains("keystore"), "{err}");
    }

    #[test]
    fn a_folder_without_a_ca_certificate_is_refused() {
        let (dir, _) = msp();
        std::fs::remove_file(dir.path().join("cacerts/ca-cert.pem")).expect("rm");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("no CA");
        assert_eq!(
            err.to_string(),
            format!(
                "no CA certificate in {}",
                dir.path().join("cacerts").display()
            )
        );
    }

    #[test]
    fn an_expired_certificate_is_refused() {
        let (dir, _) = msp();
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["old".to_string()]).expect("params");
        params.not_before = rcgen::date_time_ymd(2001, 1, 1);
        params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        let certificate = params.self_signed(&key).expect("certificate");
        let cert_path = dir.path().join("signcerts/cert.pem");
        std::fs::write(&cert_path, certificate.pem()).expect("write");
        std::fs::write(dir.path().join("keystore/priv_sk"), key.serialize_pem()).expect("write");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("expired");
        let text = err.to_string();
        assert!(text.starts_with(&cert_path.display().to_string()), "{text}");
        assert!(text.contains("expired on"), "{text}");
    }

    #[test]
    fn a_key_of_another_certificate_is_refused() {
        let (dir, _) = msp();
        let other = rcgen::KeyPair::generate().expect("key").serialize_pem();
        std::fs::write(dir.path().join("keystore/priv_sk"), other).expect("write");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("mismatch");
        assert_eq!(
            err.to_string(),
            format!(
                "no private key in {} belongs to the certificate {}",
                dir.path().join("keystore").display(),
                dir.path().join("signcerts/cert.pem").display()
            )
        );
    }

    #[test]
    fn a_broken_key_file_is_named() {
        let (dir, _) = msp();
        let path = dir.path().join("keystore/priv_sk");
        std::fs::write(
            &path,
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
        )
        .expect("write");
        let err = SigningIdentity::from_msp_dir(dir.path(), "Org1MSP").expect_err("broken");
        let text = err.to_string();
        assert!(text.starts_with(&path.display().to_string()), "{text}");
        assert!(text.contains("not a P-256 private key"), "{text}");
    }
}
