//! `ordo crypto generate` through the binary: cryptogen's folders, every
//! certificate checked against its CA, and the material used as a network
//! uses it: `ordo genesis` reads the MSPs, a node serves TLS with the
//! orderer's certificate and a user of the application organization sends
//! and receives over mutual TLS.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use prost::Message;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::*;
use ordo::fabric::channelconfig::ChannelConfig;
use ordo::fabric::protos::common::Block;

const SPEC: &str = r#"
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS:
          - localhost
          - 127.0.0.1
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    EnableNodeOUs: false
    Template:
      Count: 2
      SANS:
        - "{{.Hostname}}.alt.{{.Domain}}"
    Users:
      Count: 1
"#;

const ORDERER_ORG: &str = "ordererOrganizations/example.com";
const PEER_ORG: &str = "peerOrganizations/org1.example.com";

/// Every file and folder under `dir`, relative, folders ending in `/`.
fn tree(dir: &Path) -> BTreeSet<String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            let relative = path
                .strip_prefix(root)
                .expect("under root")
                .display()
                .to_string();
            if path.is_dir() {
                out.insert(format!("{relative}/"));
                walk(root, &path, out);
            } else {
                out.insert(relative);
            }
        }
    }
    let mut out = BTreeSet::new();
    walk(dir, dir, &mut out);
    out
}

/// What cryptogen writes for one node or user: `msp/` and `tls/`.
fn local_msp(
    base: &str,
    name: &str,
    domain: &str,
    node_ous: bool,
    admin: Option<&str>,
    tls: &str,
) -> Vec<String> {
    let mut entries = vec![
        format!("{base}/{name}/"),
        format!("{base}/{name}/msp/"),
        format!("{base}/{name}/msp/admincerts/"),
        format!("{base}/{name}/msp/cacerts/"),
        format!("{base}/{name}/msp/cacerts/ca.{domain}-cert.pem"),
        format!("{base}/{name}/msp/keystore/"),
        format!("{base}/{name}/msp/keystore/priv_sk"),
        format!("{base}/{name}/msp/signcerts/"),
        format!("{base}/{name}/msp/signcerts/{name}-cert.pem"),
        format!("{base}/{name}/msp/tlscacerts/"),
        format!("{base}/{name}/msp/tlscacerts/tlsca.{domain}-cert.pem"),
        format!("{base}/{name}/tls/"),
        format!("{base}/{name}/tls/ca.crt"),
        format!("{base}/{name}/tls/{tls}.crt"),
        format!("{base}/{name}/tls/{tls}.key"),
    ];
    if node_ous {
        entries.push(format!("{base}/{name}/msp/config.yaml"));
    }
    if let Some(admin) = admin {
        entries.push(format!("{base}/{name}/msp/admincerts/{admin}-cert.pem"));
    }
    entries
}

/// The organization's own folders: CAs and its MSP.
fn org_folders(org: &str, domain: &str, node_ous: bool, nodes: &str) -> Vec<String> {
    let mut entries: Vec<String> = [
        "/",
        "/ca/",
        "/tlsca/",
        "/msp/",
        "/msp/admincerts/",
        "/msp/cacerts/",
        "/msp/tlscacerts/",
        "/users/",
    ]
    .iter()
    .map(|suffix| format!("{org}{suffix}"))
    .collect();
    entries.push(format!("{org}/{nodes}/"));
    entries.push(format!("{org}/ca/ca.{domain}-cert.pem"));
    entries.push(format!("{org}/ca/priv_sk"));
    entries.push(format!("{org}/tlsca/tlsca.{domain}-cert.pem"));
    entries.push(format!("{org}/tlsca/priv_sk"));
    entries.push(format!("{org}/msp/cacerts/ca.{domain}-cert.pem"));
    entries.push(format!("{org}/msp/tlscacerts/tlsca.{domain}-cert.pem"));
    if node_ous {
        entries.push(format!("{org}/msp/config.yaml"));
    } else {
        entries.push(format!("{org}/msp/admincerts/Admin@{domain}-cert.pem"));
    }
    entries
}

fn expected_tree() -> BTreeSet<String> {
    let mut expected: BTreeSet<String> = ["ordererOrganizations/", "peerOrganizations/"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    // The orderer organization, with NodeOUs: no admincerts anywhere.
    expected.extend(org_folders(ORDERER_ORG, "example.com", true, "orderers"));
    expected.extend(local_msp(
        &format!("{ORDERER_ORG}/orderers"),
        "orderer.example.com",
        "example.com",
        true,
        None,
        "server",
    ));
    expected.extend(local_msp(
        &format!("{ORDERER_ORG}/users"),
        "Admin@example.com",
        "example.com",
        true,
        None,
        "client",
    ));
    // The peer organization, without: the Admin is named in admincerts.
    let domain = "org1.example.com";
    expected.extend(org_folders(PEER_ORG, domain, false, "peers"));
    for peer in ["peer0.org1.example.com", "peer1.org1.example.com"] {
        expected.extend(local_msp(
            &format!("{PEER_ORG}/peers"),
            peer,
            domain,
            false,
            Some("Admin@org1.example.com"),
            "server",
        ));
    }
    for user in ["Admin@org1.example.com", "User1@org1.example.com"] {
        expected.extend(local_msp(
            &format!("{PEER_ORG}/users"),
            user,
            domain,
            false,
            Some(user),
            "client",
        ));
    }
    expected
}

fn pem_der(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).expect("read");
    let (_, pem) = x509_parser::pem::parse_x509_pem(&bytes)
        .unwrap_or_else(|e| panic!("{} is not PEM: {e}", path.display()));
    pem.contents
}

struct Cert {
    der: Vec<u8>,
}

impl Cert {
    fn read(path: &Path) -> Cert {
        Cert { der: pem_der(path) }
    }

    fn parsed(&self) -> X509Certificate<'_> {
        X509Certificate::from_der(&self.der).expect("x509").1
    }

    fn public_key(&self) -> Vec<u8> {
        self.parsed().public_key().subject_public_key.data.to_vec()
    }

    fn ous(&self) -> Vec<String> {
        self.parsed()
            .subject()
            .iter_organizational_unit()
            .map(|ou| ou.as_str().expect("utf8").to_string())
            .collect()
    }

    fn sans(&self) -> Vec<String> {
        let cert = self.parsed();
        let Some(sans) = cert.subject_alternative_name().expect("san") else {
            return Vec::new();
        };
        sans.value
            .general_names
            .iter()
            .map(|name| match name {
                GeneralName::DNSName(dns) => dns.to_string(),
                GeneralName::IPAddress(ip) if ip.len() == 4 => {
                    std::net::Ipv4Addr::new(ip[0], ip[1], ip[2], ip[3]).to_string()
                }
                other => format!("{other:?}"),
            })
            .collect()
    }

    /// Issued by `ca`: names it as issuer and carries its signature, low S.
    fn assert_issued_by(&self, ca: &Cert, what: &Path) {
        let cert = self.parsed();
        let issuer = ca.parsed();
        assert_eq!(
            cert.issuer().to_string(),
            issuer.subject().to_string(),
            "{}",
            what.display()
        );
        let signature = cert.signature_value.data.as_ref();
        let parsed = p256::ecdsa::Signature::from_der(signature).expect("ECDSA signature");
        assert!(parsed.normalize_s() == parsed, "{}: high S", what.display());
        ring::signature::UnparsedPublicKey::new(
            &ring::signature::ECDSA_P256_SHA256_ASN1,
            ca.public_key(),
        )
        .verify(cert.tbs_certificate.as_ref(), signature)
        .unwrap_or_else(|_| panic!("{} is not signed by its CA", what.display()));
        let validity = cert.validity();
        assert!(validity.is_valid(), "{} is not valid now", what.display());
    }

    fn assert_tls_both_ways(&self, what: &Path) {
        let cert = self.parsed();
        let eku = cert
            .extended_key_usage()
            .expect("eku")
            .unwrap_or_else(|| panic!("{} has no extended key usage", what.display()))
            .value;
        assert!(
            eku.server_auth && eku.client_auth,
            "{}: serverAuth and clientAuth",
            what.display()
        );
    }
}

/// The public key of a PKCS#8 PEM private key.
fn key_public_point(path: &Path) -> Vec<u8> {
    let der = pem_der(path);
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
        &der,
        &ring::rand::SystemRandom::new(),
    )
    .unwrap_or_else(|e| panic!("{} is not a PKCS#8 P-256 key: {e}", path.display()));
    ring::signature::KeyPair::public_key(&pair)
        .as_ref()
        .to_vec()
}

/// The certificate a private key belongs to, as cryptogen places them.
fn certificate_of_key(key: &Path) -> PathBuf {
    let dir = key.parent().expect("parent");
    match key.file_name().and_then(|n| n.to_str()) {
        Some("server.key") => dir.join("server.crt"),
        Some("client.key") => dir.join("client.crt"),
        Some("priv_sk") if dir.ends_with("keystore") => {
            let signcerts = dir.parent().expect("msp").join("signcerts");
            let mut certs = tree(&signcerts).into_iter();
            let only = certs.next().expect("a signing certificate");
            assert!(certs.next().is_none(), "one signing certificate");
            signcerts.join(only)
        }
        Some("priv_sk") => {
            let mut certs = tree(dir)
                .into_iter()
                .filter(|name| name.ends_with("-cert.pem"));
            dir.join(certs.next().expect("the CA certificate"))
        }
        _ => panic!("unexpected key file {}", key.display()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_folders_are_cryptogens_and_every_certificate_chains_to_its_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("crypto-config.yaml");
    std::fs::write(&spec, SPEC).expect("write");
    let out = dir.path().join("out");
    let path = |p: &Path| p.display().to_string();
    let (ok, stdout, stderr) = run_ordo(&[
        "crypto",
        "generate",
        "--config",
        &path(&spec),
        "--output",
        &path(&out),
    ])
    .await;
    assert!(ok, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("example.com") && stdout.contains("org1.example.com"),
        "{stdout}"
    );

    // Exactly cryptogen's layout.
    let found = tree(&out);
    let expected = expected_tree();
    let missing: Vec<_> = expected.difference(&found).collect();
    let extra: Vec<_> = found.difference(&expected).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing: {missing:#?}\nextra: {extra:#?}"
    );

    // Every certificate chains to its organization's CA (the TLS CA for TLS
    // material) and every private key matches its certificate, owner-only.
    let mut certificates = 0;
    let mut keys = 0;
    for org in [ORDERER_ORG, PEER_ORG] {
        let root = out.join(org);
        let domain = org.rsplit('/').next().expect("domain");
        let ca = Cert::read(&root.join(format!("ca/ca.{domain}-cert.pem")));
        let tlsca = Cert::read(&root.join(format!("tlsca/tlsca.{domain}-cert.pem")));
        assert!(ca.parsed().is_ca() && tlsca.parsed().is_ca());
        for entry in tree(&root) {
            let file = root.join(&entry);
            let tls_material = ["tls/", "tlsca/", "tlscacerts/"]
                .iter()
                .any(|part| entry.contains(part));
            if entry.ends_with(".pem") || entry.ends_with(".crt") {
                let cert = Cert::read(&file);
                cert.assert_issued_by(if tls_material { &tlsca } else { &ca }, &file);
                if entry.contains("/tls/") && !entry.ends_with("ca.crt") {
                    cert.assert_tls_both_ways(&file);
                }
                certificates += 1;
            } else if entry.ends_with(".key") || entry.ends_with("priv_sk") {
                let mode = std::os::unix::fs::PermissionsExt::mode(
                    &std::fs::metadata(&file).expect("metadata").permissions(),
                );
                assert_eq!(mode & 0o777, 0o600, "{}", file.display());
                let cert = Cert::read(&certificate_of_key(&file));
                assert_eq!(
                    key_public_point(&file),
                    cert.public_key(),
                    "{} does not match its certificate",
                    file.display()
                );
                keys += 1;
            }
        }
    }
    assert_eq!(
        keys,
        2 * 2 + 2 * 2 + 4 * 2,
        "CA keys, and two per node and user"
    );
    assert!(certificates > 30, "{certificates}");

    // Roles: with NodeOUs the OU says who; without, no OU at all.
    let signcert = |org: &str, kind: &str, name: &str| {
        Cert::read(&out.join(format!("{org}/{kind}/{name}/msp/signcerts/{name}-cert.pem")))
    };
    assert_eq!(
        signcert(ORDERER_ORG, "orderers", "orderer.example.com").ous(),
        vec!["orderer"]
    );
    assert_eq!(
        signcert(ORDERER_ORG, "users", "Admin@example.com").ous(),
        vec!["admin"]
    );
    for (kind, name) in [
        ("peers", "peer0.org1.example.com"),
        ("users", "User1@org1.example.com"),
        ("users", "Admin@org1.example.com"),
    ] {
        assert!(signcert(PEER_ORG, kind, name).ous().is_empty(), "{name}");
    }
    let config = std::fs::read_to_string(out.join(ORDERER_ORG).join("msp/config.yaml"))
        .expect("config.yaml");
    for ou in ["client", "peer", "admin", "orderer"] {
        assert!(
            config.contains(&format!("OrganizationalUnitIdentifier: {ou}")),
            "{config}"
        );
    }
    assert!(
        config.contains("Certificate: cacerts/ca.example.com-cert.pem"),
        "{config}"
    );

    // Without NodeOUs the Admin's certificate is the admin of the
    // organization and of its nodes; a user names itself.
    let admin = std::fs::read(
        out.join(PEER_ORG)
            .join("users/Admin@org1.example.com/msp/signcerts/Admin@org1.example.com-cert.pem"),
    )
    .expect("admin cert");
    for listed in [
        "msp/admincerts/Admin@org1.example.com-cert.pem",
        "peers/peer1.org1.example.com/msp/admincerts/Admin@org1.example.com-cert.pem",
    ] {
        assert_eq!(
            std::fs::read(out.join(PEER_ORG).join(listed)).expect("admincert"),
            admin,
            "{listed}"
        );
    }

    // TLS names: the common name, the host name, then the YAML's SANS.
    let tls = |org: &str, node: &str| Cert::read(&out.join(org).join(node));
    assert_eq!(
        tls(ORDERER_ORG, "orderers/orderer.example.com/tls/server.crt").sans(),
        vec!["orderer.example.com", "orderer", "localhost", "127.0.0.1"]
    );
    assert_eq!(
        tls(PEER_ORG, "peers/peer1.org1.example.com/tls/server.crt").sans(),
        vec![
            "peer1.org1.example.com",
            "peer1",
            "peer1.alt.org1.example.com"
        ]
    );
    assert!(tls(PEER_ORG, "users/User1@org1.example.com/tls/client.crt")
        .sans()
        .is_empty());

    // Generating again would mix two CAs: refused, naming the folder, and
    // nothing changes; --force replaces it.
    let ca_file = out.join(ORDERER_ORG).join("ca/ca.example.com-cert.pem");
    let before = std::fs::read(&ca_file).expect("ca");
    let args = [
        "crypto",
        "generate",
        "--config",
        &path(&spec),
        "--output",
        &path(&out),
    ];
    let (ok, _, stderr) = run_ordo(&args).await;
    assert!(!ok);
    assert!(
        stderr.contains("example.com") && stderr.contains("--force"),
        "{stderr}"
    );
    assert_eq!(std::fs::read(&ca_file).expect("ca"), before);
    let mut forced = args.to_vec();
    forced.push("--force");
    let (ok, stdout, stderr) = run_ordo(&forced).await;
    assert!(ok, "{stdout}\n{stderr}");
    assert_ne!(std::fs::read(&ca_file).expect("ca"), before, "a new CA");
    assert_eq!(tree(&out), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistake_in_the_yaml_is_named_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let spec = dir.path().join("crypto-config.yaml");
    std::fs::write(
        &spec,
        "PeerOrgs:\n  - Domain: org1.example.com\n    Specs:\n      - Hostname: peer0\n    Template:\n      Count: 1\n",
    )
    .expect("write");
    let out = dir.path().join("out");
    let (ok, _, stderr) = run_ordo(&[
        "crypto",
        "generate",
        "--config",
        &spec.display().to_string(),
        "--output",
        &out.display().to_string(),
    ])
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("PeerOrgs[0]")
            && stderr.contains("peer0.org1.example.com is defined twice"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing written");
}

/// The sample files of the repository, laid out as the README uses them.
fn repo_samples(root: &Path) -> (PathBuf, PathBuf) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let config = root.join("config");
    std::fs::create_dir_all(config.join("secure")).expect("mkdir");
    let spec = config.join("crypto-config.yaml");
    std::fs::copy(repo.join("config/crypto-config.yaml"), &spec).expect("copy spec");
    std::fs::copy(
        repo.join("config/secure/configtx.yaml"),
        config.join("secure/configtx.yaml"),
    )
    .expect("copy configtx");
    (spec, config.join("secure"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generated_msps_make_a_genesis_block_and_a_tls_node_serves_their_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let (spec, configtx) = repo_samples(root);
    let crypto = root.join("crypto-config");
    let block_path = root.join("mychannel.block");
    let p = |path: &Path| path.display().to_string();

    let (ok, out, err) = run_ordo(&[
        "crypto",
        "generate",
        "--config",
        &p(&spec),
        "--output",
        &p(&crypto),
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = run_ordo(&[
        "genesis",
        "--config-path",
        &p(&configtx),
        "--profile",
        "SecureSoloChannel",
        "--channel-id",
        CHANNEL,
        "--output-block",
        &p(&block_path),
    ])
    .await;
    assert!(ok, "{out}\n{err}");

    // The channel's organizations are the generated MSPs.
    let block =
        Block::decode(std::fs::read(&block_path).expect("block").as_slice()).expect("block");
    let config = ChannelConfig::from_config_block(&block).expect("config block");
    let orderer_org = crypto.join("ordererOrganizations/example.com");
    let org1 = crypto.join("peerOrganizations/org1.example.com");
    let application = config.application.as_ref().expect("application");
    let orgs: BTreeMap<&str, (&ordo::fabric::channelconfig::Organization, &Path)> = [
        (
            "OrdererMSP",
            (
                &config.orderer.organizations["OrdererOrg"],
                orderer_org.as_path(),
            ),
        ),
        (
            "Org1MSP",
            (&application.organizations["Org1MSP"], org1.as_path()),
        ),
    ]
    .into_iter()
    .collect();
    for (msp_id, (org, folder)) in orgs {
        assert_eq!(org.msp_id, msp_id);
        let domain = folder.file_name().and_then(|n| n.to_str()).expect("domain");
        let ca =
            std::fs::read(folder.join(format!("msp/cacerts/ca.{domain}-cert.pem"))).expect("ca");
        let tlsca = std::fs::read(folder.join(format!("msp/tlscacerts/tlsca.{domain}-cert.pem")))
            .expect("tlsca");
        assert_eq!(org.root_certs, vec![bytes::Bytes::from(ca)], "{msp_id}");
        assert_eq!(
            org.tls_root_certs,
            vec![bytes::Bytes::from(tlsca)],
            "{msp_id}"
        );
        assert!(org.node_ous_enabled, "{msp_id}");
        assert!(org.admins.is_empty(), "{msp_id}: roles come from OUs");
    }

    // The orderer on that block, with its own TLS certificate and MSP,
    // trusting Org1's TLS CA for client certificates.
    let orderer = orderer_org.join("orderers/orderer.example.com");
    let env: Vec<(String, String)> = [
        ("ORDERER_GENERAL_BOOTSTRAPMETHOD", "file".to_string()),
        ("ORDERER_GENERAL_BOOTSTRAPFILE", p(&block_path)),
        ("ORDERER_GENERAL_LOCALMSPDIR", p(&orderer.join("msp"))),
        ("ORDERER_GENERAL_LOCALMSPID", "OrdererMSP".to_string()),
        ("ORDERER_GENERAL_TLS_ENABLED", "true".to_string()),
        (
            "ORDERER_GENERAL_TLS_CERTIFICATE",
            p(&orderer.join("tls/server.crt")),
        ),
        (
            "ORDERER_GENERAL_TLS_PRIVATEKEY",
            p(&orderer.join("tls/server.key")),
        ),
        ("ORDERER_GENERAL_TLS_CLIENTAUTHREQUIRED", "true".to_string()),
        (
            "ORDERER_GENERAL_TLS_CLIENTROOTCAS",
            format!(
                "[{}]",
                p(&org1.join("tlsca/tlsca.org1.example.com-cert.pem"))
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let node = TestNode::with_env(env).await;

    // User1 of Org1 signs with its MSP and connects with its TLS client
    // certificate, trusting the orderer organization's TLS CA.
    let user = org1.join("users/User1@org1.example.com");
    let (ok, out, err) = run_ordo(&[
        "bench",
        "load",
        "--address",
        &node.address(),
        "--channel",
        CHANNEL,
        "--count",
        "50",
        "--streams",
        "1",
        "--msp-dir",
        &p(&user.join("msp")),
        "--msp-id",
        "Org1MSP",
        "--tls-ca-file",
        &p(&orderer_org.join("tlsca/tlsca.example.com-cert.pem")),
        "--tls-client-cert",
        &p(&user.join("tls/client.crt")),
        "--tls-client-key",
        &p(&user.join("tls/client.key")),
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"delivered\":50"), "{out}");
}
