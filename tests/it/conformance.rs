//! Conformance with Fabric's official protos (PyPI `hyperledger-fabric-protos`):
//! our `.proto` files against the official descriptors, and the official Python
//! client (grpcio) against a running node. `scripts/setup-test-env.sh` installs
//! the Python side into `.venv`.

use std::path::PathBuf;
use std::process::Command;

use crate::common::*;

fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("ORDO_PYTHON") {
        return PathBuf::from(p);
    }
    let venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python");
    if venv.exists() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

fn script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/conformance")
        .join(name)
}

/// Runs a conformance script; returns its output, failing the test on a non-zero exit.
fn run_python(args: &[&std::ffi::OsStr]) -> String {
    let output = Command::new(python())
        .args(args)
        .output()
        .expect("python runs (install it with scripts/setup-test-env.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance script failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn our_protos_match_the_official_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let descriptors = dir.path().join("ordo.desc");
    std::fs::write(&descriptors, ordo::protos::FILE_DESCRIPTOR_SET).expect("write");
    let out = run_python(&[
        script("check_protos.py").as_os_str(),
        descriptors.as_os_str(),
    ]);
    assert!(out.contains("match the official definitions"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_broadcasts_and_delivers() {
    let node = TestNode::from_profile(&profile(CHANNEL), vec![]).await;
    let address = node.address();
    let out = tokio::task::spawn_blocking(move || {
        run_python(&[
            script("client_test.py").as_os_str(),
            address.as_ref(),
            CHANNEL.as_ref(),
        ])
    })
    .await
    .expect("join");
    assert!(out.contains("conformance: all checks passed"), "{out}");
}
