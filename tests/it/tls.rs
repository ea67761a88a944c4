//! TLS on the AtomicBroadcast listener (General.TLS), driven by the load tool:
//! server TLS, mutual TLS, and plaintext clients refused; the client CAs that
//! mutual TLS trusts follow the channels' organizations; gRPC health.

use std::path::{Path, PathBuf};

use ordo::fabric::configtxgen::ConfigTx;
use ordo::fabric::protos::common::Block;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::common::*;

/// A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files.
pub struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    pub fn new() -> Pki {
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

    pub fn path(&self, name: &str) -> PathBuf {
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

/// A CA of its own (a channel organization's TLS CA) and a client it signs.
struct OrgTls {
    ca_pem: String,
    client_cert: String,
    client_key: String,
}

impl OrgTls {
    fn new(name: &str) -> OrgTls {
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("tlsca.{name}"));
        let ca = rcgen::CertifiedIssuer::self_signed(
            ca_params,
            rcgen::KeyPair::generate().expect("key"),
        )
        .expect("ca");
        let key = rcgen::KeyPair::generate().expect("key");
        let client = rcgen::CertificateParams::new(vec![format!("peer0.{name}")])
            .expect("params")
            .signed_by(&key, &ca)
            .expect("signed");
        OrgTls {
            ca_pem: ca.pem(),
            client_cert: client.pem(),
            client_key: key.serialize_pem(),
        }
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Block 0 of `channel` from the sample SoloChannel profile (OrdererOrg and
/// Org1), with `org1_tls_ca` as Org1's TLS CA.
fn genesis_with_org1_tls_ca(dir: &Path, channel: &str, org1_tls_ca: &str) -> Block {
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
    std::fs::copy(sample.join("configtx.yaml"), dir.join("configtx.yaml")).expect("copy");
    copy_dir(&sample.join("crypto"), &dir.join("crypto"));
    let tlscacerts = dir.join("crypto/org1/msp/tlscacerts");
    std::fs::remove_dir_all(&tlscacerts).expect("clear");
    std::fs::create_dir_all(&tlscacerts).expect("mkdir");
    std::fs::write(tlscacerts.join("tlsca-cert.pem"), org1_tls_ca).expect("write");
    ConfigTx::load(dir)
        .expect("configtx")
        .genesis_block("SoloChannel", channel)
        .expect("genesis")
}

/// One gRPC health check over a new TLS connection.
async fn health(
    address: &str,
    server_ca: &Path,
    client: Option<(&str, &str)>,
) -> Result<ServingStatus, String> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(
            std::fs::read(server_ca).expect("server CA"),
        ))
        .domain_name("localhost");
    if let Some((cert, key)) = client {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Endpoint::from_shared(format!("https://{address}"))
        .expect("endpoint")
        .tls_config(tls)
        .expect("client TLS")
        .connect()
        .await
        .map_err(|e| format!("connect: {e:?}"))?;
    let answer = HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map_err(|e| format!("check: {e}"))?;
    ServingStatus::try_from(answer.into_inner().status).map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_organizations_tls_cas_are_trusted_while_the_channel_is_served() {
    let pki = Pki::new();
    let node = TestNode::with_env(pki.node_env(true)).await;
    let address = node.address();
    let server_ca = pki.path("ca.crt");
    let read = |name: &str| std::fs::read_to_string(pki.path(name)).expect("read");
    let (config_cert, config_key) = (read("client.crt"), read("client.key"));
    let config_client = Some((config_cert.as_str(), config_key.as_str()));
    let org1 = OrgTls::new("org1");
    let org1_client = Some((org1.client_cert.as_str(), org1.client_key.as_str()));

    assert_eq!(
        health(&address, &server_ca, config_client).await,
        Ok(ServingStatus::Serving),
        "a client of General.TLS.ClientRootCAs"
    );
    health(&address, &server_ca, org1_client)
        .await
        .expect_err("Org1's TLS CA is in no channel yet");

    let dir = tempfile::tempdir().expect("tempdir");
    let block = genesis_with_org1_tls_ca(dir.path(), "orgchannel", &org1.ca_pem);
    let joined = node
        .admin()
        .join(prost::Message::encode_to_vec(&block))
        .await
        .expect("join");
    assert_eq!(joined.status, 201, "{}", joined.body);
    assert_eq!(
        health(&address, &server_ca, org1_client).await,
        Ok(ServingStatus::Serving),
        "Org1 is an organization of a channel the node serves"
    );
    let stranger = OrgTls::new("stranger");
    let stranger_client = Some((stranger.client_cert.as_str(), stranger.client_key.as_str()));
    health(&address, &server_ca, stranger_client)
        .await
        .expect_err("a CA of no channel");

    let removed = node.admin().remove("orgchannel").await.expect("remove");
    assert_eq!(removed.status, 204, "{}", removed.body);
    health(&address, &server_ca, org1_client)
        .await
        .expect_err("the channel has gone, and its CAs with it");
    assert_eq!(
        health(&address, &server_ca, config_client).await,
        Ok(ServingStatus::Serving)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_answers_serving_on_the_main_listener() {
    let pki = Pki::new();
    let node = TestNode::with_env(pki.node_env(false)).await;
    assert_eq!(
        health(&node.address(), &pki.path("ca.crt"), None).await,
        Ok(ServingStatus::Serving)
    );

    // Plaintext too, where the overall status is the only one known.
    let plain = TestNode::embedded().await;
    let channel = Endpoint::from_shared(format!("http://{}", plain.address()))
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut client = HealthClient::new(channel);
    let answer = client
        .check(HealthCheckRequest::default())
        .await
        .expect("check");
    assert_eq!(answer.into_inner().status, ServingStatus::Serving as i32);
    let unknown = client
        .check(HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
}
