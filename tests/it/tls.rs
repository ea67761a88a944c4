//! TLS on the AtomicBroadcast listener (General.TLS), driven by the load tool:
//! server TLS, mutual TLS, and plaintext clients refused.

use std::path::{Path, PathBuf};

use crate::common::*;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "tlsca.test");
        let ca_key = rcgen::KeyPair::generate().expect("key");
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("ca");
        let leaf = |names: Vec<String>, file: &str| {
            let params = rcgen::CertificateParams::new(names).expect("params");
            let key = rcgen::KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("signed");
            std::fs::write(dir.path().join(format!("{file}.crt")), cert.pem()).expect("write");
            std::fs::write(dir.path().join(format!("{file}.key")), key.serialize_pem())
                .expect("write");
        };
        leaf(vec!["127.0.0.1".into(), "localhost".into()], "server");
        leaf(vec!["client.test".into()], "client");
        std::fs::write(dir.path().join("ca.crt"), ca.pem()).expect("write");
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn node_env(&self, mutual: bool) -> Vec<(String, String)> {
        let p = |name: &str| self.path(name).display().to_string();
        let mut env = vec![
            (
                "ORDERER_GENERAL_TLS_ENABLED".to_string(),
                "true".to_string(),
            ),
            (
                "ORDERER_GENERAL_TLS_CERTIFICATE".to_string(),
                p("server.crt"),
            ),
            (
                "ORDERER_GENERAL_TLS_PRIVATEKEY".to_string(),
                p("server.key"),
            ),
        ];
        if mutual {
            env.push((
                "ORDERER_GENERAL_TLS_CLIENTAUTHREQUIRED".to_string(),
                "true".to_string(),
            ));
            env.push((
                "ORDERER_GENERAL_TLS_CLIENTROOTCAS".to_string(),
                format!("[{}]", p("ca.crt")),
            ));
        }
        env
    }
}

async fn load(address: &str, extra: &[&Path], flags: &[&str]) -> (bool, String, String) {
    let mut args: Vec<String> = [
        "bench",
        "load",
        "--address",
        address,
        "--count",
        "300",
        "--streams",
        "2",
        "--deliver-timeout",
        "5",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    for (flag, path) in flags.iter().zip(extra) {
        args.push(flag.to_string());
        args.push(path.display().to_string());
    }
    run_ordo(&args).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_and_deliver_over_tls() {
    let pki = Pki::new();
    let node = TestNode::with_env(pki.node_env(false)).await;
    let address = node.address();
    let ca = pki.path("ca.crt");
    let (ok, out, err) = load(&address, &[&ca], &["--tls-ca-file"]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("TLS)"), "{out}");
    assert!(out.contains("\"delivered\":300"), "{out}");

    // A plaintext client gets nowhere.
    let (ok, out, err) = load(&address, &[], &[]).await;
    assert!(!ok, "plaintext must fail:\n{out}\n{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls_requires_a_client_certificate() {
    let pki = Pki::new();
    let node = TestNode::with_env(pki.node_env(true)).await;
    let address = node.address();
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let (ok, out, err) = load(
        &address,
        &[&ca, &cert, &key],
        &["--tls-ca-file", "--tls-client-cert", "--tls-client-key"],
    )
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"delivered\":300"), "{out}");

    let (ok, out, err) = load(&address, &[&ca], &["--tls-ca-file"]).await;
    assert!(!ok, "no client certificate must fail:\n{out}\n{err}");
}
