//! `ordo crypto generate`: the keys and certificates of a Fabric network, in
//! the folders Fabric's cryptogen writes, from the same crypto-config YAML
//! ([`spec`] reads it, [`ca`] issues, [`layout`] writes).
//!
//! Each organization is written to a hidden folder next to its place and
//! moved there once complete, so a failure leaves no half-made organization.
//! An organization that is already in the output is refused unless `force`
//! replaces it: cryptogen's `generate` would make a new CA and keep the old
//! nodes, which then chain to nothing.

pub mod ca;
pub mod layout;
pub mod spec;
pub mod template;

use std::path::{Path, PathBuf};

use ca::Validity;
use spec::{OrgKind, Organization, SpecError};

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    Layout(#[from] layout::LayoutError),
    #[error("{} already exists; pass --force to replace it", .0.display())]
    Exists(PathBuf),
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// An organization written to the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub kind: OrgKind,
    pub domain: String,
    pub path: PathBuf,
    pub nodes: usize,
    pub users: usize,
}

impl std::fmt::Display for Written {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize| if n == 1 { "" } else { "s" };
        let node = match self.kind {
            OrgKind::Orderer => "orderer",
            OrgKind::Peer => "peer",
        };
        write!(
            f,
            "{}: {} {node}{}, {} user{} (Admin included) in {}",
            self.domain,
            self.nodes,
            plural(self.nodes),
            self.users,
            plural(self.users),
            self.path.display()
        )
    }
}

/// Reads the crypto-config YAML at `config` and writes every organization
/// it defines under `output`.
pub fn generate(config: &Path, output: &Path, force: bool) -> Result<Vec<Written>, CryptoError> {
    let orgs = spec::load(config)?;
    write_all(&orgs, output, force, Validity::now())
}

/// Writes `orgs` under `output`. None is moved into place before all are
/// written.
pub fn write_all(
    orgs: &[Organization],
    output: &Path,
    force: bool,
    validity: Validity,
) -> Result<Vec<Written>, CryptoError> {
    let target = |org: &Organization| output.join(org.kind.folder()).join(&org.domain);
    if !force {
        if let Some(existing) = orgs
            .iter()
            .map(target)
            .find(|path| path.symlink_metadata().is_ok())
        {
            return Err(CryptoError::Exists(existing));
        }
    }

    let mut staged = Vec::with_capacity(orgs.len());
    for org in orgs {
        let parent = output.join(org.kind.folder());
        let write_err = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CryptoError::Write { path, source }
        };
        std::fs::create_dir_all(&parent).map_err(write_err(&parent))?;
        let staging = tempfile::Builder::new()
            .prefix(&format!(".{}.", org.domain))
            .tempdir_in(&parent)
            .map_err(write_err(&parent))?;
        open_up(staging.path()).map_err(write_err(staging.path()))?;
        layout::write_organization(staging.path(), org, validity)?;
        tracing::debug!(domain = %org.domain, "organization written to a staging folder");
        staged.push((org, staging));
    }

    let mut written = Vec::with_capacity(staged.len());
    for (org, staging) in staged {
        let path = target(org);
        let write_err = |source| CryptoError::Write {
            path: path.clone(),
            source,
        };
        if path.symlink_metadata().is_ok() {
            remove(&path).map_err(write_err)?;
        }
        std::fs::rename(staging.path(), &path).map_err(write_err)?;
        // Moved away: nothing left for the guard to clean up.
        let _ = staging.keep();
        written.push(Written {
            kind: org.kind,
            domain: org.domain.clone(),
            path,
            nodes: org.nodes.len(),
            users: org.users.len(),
        });
    }
    Ok(written)
}

/// A staging folder is private; the organization's folder is not (0755, as
/// cryptogen makes its folders).
fn open_up(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn remove(path: &Path) -> std::io::Result<()> {
    if path.symlink_metadata()?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = "PeerOrgs:\n  - Domain: org1.example.com\n    Template:\n      Count: 1\n";

    #[test]
    fn an_existing_organization_is_kept_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let orgs = spec::parse(SPEC).expect("spec");
        let written = write_all(&orgs, dir.path(), false, Validity::now()).expect("first");
        let org_dir = &written[0].path;
        assert_eq!(
            org_dir,
            &dir.path().join("peerOrganizations/org1.example.com")
        );
        let ca = org_dir.join("ca/ca.org1.example.com-cert.pem");
        let before = std::fs::read(&ca).expect("ca");

        let err = write_all(&orgs, dir.path(), false, Validity::now()).expect_err("refused");
        assert!(
            matches!(&err, CryptoError::Exists(path) if path == org_dir),
            "{err}"
        );
        assert_eq!(std::fs::read(&ca).expect("ca"), before, "left alone");

        std::fs::write(org_dir.join("stale"), b"x").expect("write");
        write_all(&orgs, dir.path(), true, Validity::now()).expect("forced");
        assert_ne!(std::fs::read(&ca).expect("ca"), before, "a new CA");
        assert!(!org_dir.join("stale").exists(), "replaced, not merged");
        // No staging folders left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path().join("peerOrganizations"))
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("org1.example.com")]);
    }
}
