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

fn run_python(args: &[&std::ffi::OsStr]) {
    let output = Command::new(python())
        .args(args)
        .output()
        .expect("python runs (install it with scripts/setup-test-env.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "conformance script failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
}

#[test]
fn our_protos_match_the_official_descriptors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let descriptors = dir.path().join("ordo.desc");
    std::fs::write(&descriptors, ordo::protos::FILE_DESCRIPTOR_SET).expect("write");
    run_python(&[
        script("check_protos.py").as_os_str(),
        descriptors.as_os_str(),
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_broadcasts_and_delivers() {
    let node = TestNode::from_profile(&profile(CHANNEL), vec![]).await;
    let address = node.address();
    let script = script("client_test.py");
    let output = tokio::task::spawn_blocking(move || {
        Command::new(python())
            .arg(script)
            .arg(address)
            .arg(CHANNEL)
            .output()
    })
    .await
    .expect("join")
    .expect("python runs (install it with scripts/setup-test-env.sh)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "python client failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("conformance: all checks passed"),
        "{stdout}"
    );
}
