//! The crypto-config YAML of Fabric's cryptogen, read and expanded into the
//! list of certificates to issue.
//!
//! ```yaml
//! OrdererOrgs:
//!   - Name: Orderer
//!     Domain: example.com
//!     EnableNodeOUs: true
//!     Specs:
//!       - Hostname: orderer
//!         SANS: [localhost, 127.0.0.1]
//! PeerOrgs:
//!   - Name: Org1
//!     Domain: org1.example.com
//!     CA: { Country: US }          # subject of the CA and what it issues
//!     Template: { Count: 2 }       # peer0, peer1 ({{.Prefix}}{{.Index}})
//!     Users: { Count: 1 }          # User1, in addition to Admin
//! ```
//!
//! Names expand as cryptogen expands them: a node's common name defaults to
//! `{{.Hostname}}.{{.Domain}}`, its TLS names are the common name, the host
//! name and its `SANS` (templates over Hostname, Domain, CommonName). Unlike
//! cryptogen, a key it does not know, a node named twice or a name that cannot
//! be a folder is refused, naming where it is.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::template::{self, TemplateError};

const DEFAULT_HOSTNAME_TEMPLATE: &str = "{{.Prefix}}{{.Index}}";
const DEFAULT_CN_TEMPLATE: &str = "{{.Hostname}}.{{.Domain}}";

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a crypto-config YAML: {0}")]
    Yaml(String),
    #[error("no organizations: the YAML needs OrdererOrgs or PeerOrgs")]
    NoOrganizations,
    /// `at` says where: `PeerOrgs[1] (org2.example.com) Specs[0]`.
    #[error("{at}: {reason}")]
    Invalid { at: String, reason: String },
}

/// Whether an organization runs orderers or peers: it decides the folders and
/// the OU of its nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgKind {
    Orderer,
    Peer,
}

impl OrgKind {
    /// The key of the YAML that lists organizations of this kind.
    pub fn yaml_key(self) -> &'static str {
        match self {
            OrgKind::Orderer => "OrdererOrgs",
            OrgKind::Peer => "PeerOrgs",
        }
    }

    /// The output folder that holds organizations of this kind.
    pub fn folder(self) -> &'static str {
        match self {
            OrgKind::Orderer => "ordererOrganizations",
            OrgKind::Peer => "peerOrganizations",
        }
    }

    /// The folder of an organization that holds its nodes.
    pub fn nodes_folder(self) -> &'static str {
        match self {
            OrgKind::Orderer => "orderers",
            OrgKind::Peer => "peers",
        }
    }

    /// `{{.Prefix}}` of the host name template.
    fn prefix(self) -> &'static str {
        match self {
            OrgKind::Orderer => "orderer",
            OrgKind::Peer => "peer",
        }
    }
}

/// Subject fields a CA puts in its own certificate and in every one it issues;
/// empty means cryptogen's default (C=US, ST=California, L=San Francisco) or
/// none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    pub country: String,
    pub province: String,
    pub locality: String,
    pub organizational_unit: String,
    pub street_address: String,
    pub postal_code: String,
}

/// A node (orderer or peer): one signing certificate and one TLS server
/// certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub common_name: String,
    /// DNS names and IP addresses of its TLS certificate.
    pub sans: Vec<String>,
}

/// A user: one signing certificate and one TLS client certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub common_name: String,
    pub admin: bool,
}

/// One organization of the YAML, with its names expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organization {
    pub kind: OrgKind,
    pub name: String,
    pub domain: String,
    pub node_ous: bool,
    /// Common name of the signing CA; the TLS CA's is `tls` + this.
    pub ca_common_name: String,
    pub subject: Subject,
    pub nodes: Vec<Node>,
    /// `User1@domain`, ..., then `Admin@domain`.
    pub users: Vec<User>,
}

/// Reads and expands the crypto-config YAML at `path`.
pub fn load(path: &Path) -> Result<Vec<Organization>, SpecError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpecError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&text)
}

/// Parses and expands crypto-config YAML text.
pub fn parse(text: &str) -> Result<Vec<Organization>, SpecError> {
    let mut tree: serde_json::Value = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Yaml))
        .build()
        .and_then(|c| c.try_deserialize())
        .map_err(|e| SpecError::Yaml(e.to_string()))?;
    // A key with no value is the same as no key, as in Go's YAML.
    drop_nulls(&mut tree);
    let top: ConfigYaml =
        serde_json::from_value(tree).map_err(|e| SpecError::Yaml(e.to_string()))?;
    if top.orderer_orgs.is_empty() && top.peer_orgs.is_empty() {
        return Err(SpecError::NoOrganizations);
    }
    let mut orgs = Vec::new();
    for (kind, list) in [
        (OrgKind::Orderer, top.orderer_orgs),
        (OrgKind::Peer, top.peer_orgs),
    ] {
        let mut domains = HashSet::new();
        for (index, value) in list.into_iter().enumerate() {
            let at = format!("{}[{index}]", kind.yaml_key());
            let yaml: OrgYaml = serde_json::from_value(value).map_err(|e| SpecError::Invalid {
                at: at.clone(),
                reason: e.to_string(),
            })?;
            let org = expand(kind, &at, yaml)?;
            if !domains.insert(org.domain.clone()) {
                return Err(SpecError::Invalid {
                    at,
                    reason: format!("Domain {} is used by an earlier organization", org.domain),
                });
            }
            orgs.push(org);
        }
    }
    Ok(orgs)
}

fn drop_nulls(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(drop_nulls);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(drop_nulls),
        _ => {}
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct ConfigYaml {
    #[serde(default)]
    orderer_orgs: Vec<serde_json::Value>,
    #[serde(default)]
    peer_orgs: Vec<serde_json::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct OrgYaml {
    #[serde(default)]
    name: String,
    #[serde(default)]
    domain: String,
    #[serde(rename = "EnableNodeOUs", default)]
    enable_node_ous: bool,
    #[serde(rename = "CA", default)]
    ca: NodeYaml,
    #[serde(default)]
    template: TemplateYaml,
    #[serde(default)]
    specs: Vec<NodeYaml>,
    #[serde(default)]
    users: UsersYaml,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct NodeYaml {
    #[serde(default)]
    hostname: String,
    #[serde(default)]
    common_name: String,
    #[serde(default)]
    country: String,
    #[serde(default)]
    province: String,
    #[serde(default)]
    locality: String,
    #[serde(default)]
    organizational_unit: String,
    #[serde(default)]
    street_address: String,
    #[serde(default)]
    postal_code: String,
    #[serde(rename = "SANS", default)]
    sans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct TemplateYaml {
    #[serde(default)]
    count: u32,
    #[serde(default)]
    start: u32,
    #[serde(default)]
    hostname: String,
    #[serde(rename = "SANS", default)]
    sans: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
struct UsersYaml {
    #[serde(default)]
    count: u32,
}

fn expand(kind: OrgKind, at: &str, yaml: OrgYaml) -> Result<Organization, SpecError> {
    let invalid = |at: &str, reason: String| SpecError::Invalid {
        at: at.to_string(),
        reason,
    };
    let domain = yaml.domain.trim().to_string();
    if domain.is_empty() {
        return Err(invalid(at, "Domain is required".into()));
    }
    check_folder_name(&domain).map_err(|reason| invalid(at, format!("Domain: {reason}")))?;
    let at = format!("{at} ({domain})");
    let template_err = |at: &str, e: TemplateError| invalid(at, e.to_string());

    // Named nodes first, then the templated ones, as cryptogen lists them.
    let mut hosts: Vec<(String, NodeYaml)> = yaml
        .specs
        .into_iter()
        .enumerate()
        .map(|(i, spec)| (format!("{at} Specs[{i}]"), spec))
        .collect();
    if yaml
        .template
        .start
        .checked_add(yaml.template.count)
        .is_none()
    {
        return Err(invalid(
            &at,
            "Template.Start + Template.Count is too large".into(),
        ));
    }
    for i in 0..yaml.template.count {
        let index = (yaml.template.start + i).to_string();
        let hostname_template = non_empty_or(&yaml.template.hostname, DEFAULT_HOSTNAME_TEMPLATE);
        let hostname = template::render(
            hostname_template,
            &[
                ("Prefix", kind.prefix()),
                ("Index", &index),
                ("Domain", &domain),
            ],
        )
        .map_err(|e| template_err(&format!("{at} Template.Hostname"), e))?;
        hosts.push((
            format!("{at} Template[{index}]"),
            NodeYaml {
                hostname,
                sans: yaml.template.sans.clone(),
                ..NodeYaml::default()
            },
        ));
    }

    let mut nodes = Vec::with_capacity(hosts.len());
    let mut names = HashSet::new();
    for (node_at, spec) in hosts {
        let node = expand_node(&node_at, &domain, &spec)?;
        if !names.insert(node.common_name.clone()) {
            return Err(invalid(
                &node_at,
                format!("node {} is defined twice", node.common_name),
            ));
        }
        nodes.push(node);
    }

    let ca = yaml.ca;
    let ca_hostname = non_empty_or(&ca.hostname, "ca").to_string();
    let ca_common_name = template::render(
        non_empty_or(&ca.common_name, DEFAULT_CN_TEMPLATE),
        &[("Hostname", &ca_hostname), ("Domain", &domain)],
    )
    .map_err(|e| template_err(&format!("{at} CA.CommonName"), e))?;
    if ca_common_name.trim().is_empty() {
        return Err(invalid(&at, "CA.CommonName is empty".into()));
    }
    if yaml.enable_node_ous && !ca.organizational_unit.is_empty() {
        // A certificate here carries one OU; with NodeOUs that is the role.
        return Err(invalid(
            &at,
            "CA.OrganizationalUnit cannot be combined with EnableNodeOUs: the OU of each \
             certificate is its role (client, peer, admin, orderer)"
                .into(),
        ));
    }
    let subject = Subject {
        country: ca.country,
        province: ca.province,
        locality: ca.locality,
        organizational_unit: ca.organizational_unit,
        street_address: ca.street_address,
        postal_code: ca.postal_code,
    };

    let mut users: Vec<User> = (1..=yaml.users.count)
        .map(|j| User {
            common_name: format!("User{j}@{domain}"),
            admin: false,
        })
        .collect();
    users.push(User {
        common_name: format!("Admin@{domain}"),
        admin: true,
    });

    Ok(Organization {
        kind,
        name: yaml.name,
        domain,
        node_ous: yaml.enable_node_ous,
        ca_common_name,
        subject,
        nodes,
        users,
    })
}

fn expand_node(at: &str, domain: &str, spec: &NodeYaml) -> Result<Node, SpecError> {
    let invalid = |reason: String| SpecError::Invalid {
        at: at.to_string(),
        reason,
    };
    let hostname = spec.hostname.trim();
    if hostname.is_empty() {
        return Err(invalid("Hostname is required".into()));
    }
    let unset = [
        ("Country", &spec.country),
        ("Province", &spec.province),
        ("Locality", &spec.locality),
        ("OrganizationalUnit", &spec.organizational_unit),
        ("StreetAddress", &spec.street_address),
        ("PostalCode", &spec.postal_code),
    ];
    if let Some((key, _)) = unset.iter().find(|(_, value)| !value.is_empty()) {
        // cryptogen reads these only from CA: a node's subject follows its CA.
        return Err(invalid(format!(
            "{key} applies to the organization's CA only; set it under CA"
        )));
    }
    let common_name = template::render(
        non_empty_or(&spec.common_name, DEFAULT_CN_TEMPLATE),
        &[("Hostname", hostname), ("Domain", domain)],
    )
    .map_err(|e| invalid(format!("CommonName: {e}")))?;
    check_folder_name(&common_name).map_err(|reason| invalid(format!("CommonName: {reason}")))?;

    let fields = [
        ("Hostname", hostname),
        ("Domain", domain),
        ("CommonName", common_name.as_str()),
    ];
    let mut sans = vec![common_name.clone(), hostname.to_string()];
    for (i, san) in spec.sans.iter().enumerate() {
        let san = template::render(san, &fields).map_err(|e| invalid(format!("SANS[{i}]: {e}")))?;
        check_san(&san).map_err(|reason| invalid(format!("SANS[{i}] {san:?}: {reason}")))?;
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    for name in &sans[..2] {
        check_san(name).map_err(|reason| invalid(format!("{name:?}: {reason}")))?;
    }
    Ok(Node { common_name, sans })
}

fn non_empty_or<'a>(value: &'a str, default: &'a str) -> &'a str {
    if value.is_empty() {
        default
    } else {
        value
    }
}

/// Node and organization names become folders of the output.
fn check_folder_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." {
        return Err(format!("{name:?} cannot be a folder name"));
    }
    if name
        .chars()
        .any(|c| c == '/' || c == '\\' || c.is_control() || c.is_whitespace())
    {
        return Err(format!(
            "{name:?} cannot be a folder name (no slashes or spaces)"
        ));
    }
    Ok(())
}

/// A DNS name or an IP address, as the certificate will carry it.
fn check_san(san: &str) -> Result<(), String> {
    if san.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    if san.is_empty() {
        return Err("empty name".into());
    }
    if !san.is_ascii()
        || san
            .chars()
            .any(|c| c.is_ascii_whitespace() || c.is_control())
    {
        return Err("not a DNS name or an IP address".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        parse(text).expect_err("must be refused").to_string()
    }

    #[test]
    fn templates_and_specs_expand_as_cryptogen_does() {
        let orgs = parse(
            r#"
OrdererOrgs:
  - Name: Orderer
    Domain: example.com
    EnableNodeOUs: true
    Specs:
      - Hostname: orderer
        SANS:
          - localhost
          - 127.0.0.1
          - "{{.Hostname}}.alt.{{.Domain}}"
PeerOrgs:
  - Name: Org1
    Domain: org1.example.com
    Specs:
      - Hostname: foo
        CommonName: foo27.org5.example.com
    Template:
      Count: 2
      Start: 5
      SANS:
        - "{{.CommonName}}.lb"
    Users:
      Count: 2
"#,
        )
        .expect("parse");
        assert_eq!(orgs.len(), 2);

        let orderer = &orgs[0];
        assert_eq!(orderer.kind, OrgKind::Orderer);
        assert_eq!(orderer.name, "Orderer");
        assert!(orderer.node_ous);
        assert_eq!(orderer.ca_common_name, "ca.example.com");
        assert_eq!(
            orderer.nodes,
            vec![Node {
                common_name: "orderer.example.com".into(),
                sans: vec![
                    "orderer.example.com".into(),
                    "orderer".into(),
                    "localhost".into(),
                    "127.0.0.1".into(),
                    "orderer.alt.example.com".into(),
                ],
            }]
        );
        let users: Vec<_> = orderer
            .users
            .iter()
            .map(|u| (u.common_name.as_str(), u.admin))
            .collect();
        assert_eq!(users, vec![("Admin@example.com", true)]);

        let org1 = &orgs[1];
        assert_eq!(org1.kind, OrgKind::Peer);
        assert!(!org1.node_ous);
        let names: Vec<_> = org1.nodes.iter().map(|n| n.common_name.as_str()).collect();
        assert_eq!(
            names,
            vec![
                "foo27.org5.example.com",
                "peer5.org1.example.com",
                "peer6.org1.example.com"
            ]
        );
        assert_eq!(
            org1.nodes[1].sans,
            vec![
                "peer5.org1.example.com".to_string(),
                "peer5".into(),
                "peer5.org1.example.com.lb".into()
            ]
        );
        let users: Vec<_> = org1.users.iter().map(|u| u.common_name.as_str()).collect();
        assert_eq!(
            users,
            vec![
                "User1@org1.example.com",
                "User2@org1.example.com",
                "Admin@org1.example.com"
            ]
        );
    }

    #[test]
    fn defaults_fill_what_is_left_out() {
        let orgs = parse(
            "PeerOrgs:\n  - Domain: org1.example.com\n    Template:\n      Count: 1\n    Specs:\n    Users:\n",
        )
        .expect("parse");
        let org = &orgs[0];
        assert_eq!(org.nodes[0].common_name, "peer0.org1.example.com");
        assert_eq!(org.ca_common_name, "ca.org1.example.com");
        assert_eq!(org.subject, Subject::default());
        assert_eq!(org.users.len(), 1, "only Admin");
        assert!(!org.node_ous);
    }

    #[test]
    fn the_ca_spec_names_the_ca_and_its_subject() {
        let orgs = parse(
            "PeerOrgs:\n  - Domain: org1.example.com\n    CA:\n      Hostname: rootca\n      Country: DE\n      OrganizationalUnit: Fabric\n",
        )
        .expect("parse");
        assert_eq!(orgs[0].ca_common_name, "rootca.org1.example.com");
        assert_eq!(orgs[0].subject.country, "DE");
        assert_eq!(orgs[0].subject.organizational_unit, "Fabric");
    }

    #[test]
    fn mistakes_are_refused_naming_where_they_are() {
        let err = parse_err("PeerOrgs:\n  - Domain: a.com\n    Specs:\n      - Hostnam: x\n");
        assert!(
            err.contains("PeerOrgs[0]") && err.contains("Hostnam"),
            "{err}"
        );

        let err = parse_err("PeerOrgs:\n  - Name: Org1\n    Template:\n      Count: 1\n");
        assert!(
            err.contains("PeerOrgs[0]") && err.contains("Domain is required"),
            "{err}"
        );

        let err = parse_err("OrdererOrgs:\n  - Domain: a.com\n    Specs:\n      - CommonName: x\n");
        assert!(
            err.contains("OrdererOrgs[0] (a.com) Specs[0]") && err.contains("Hostname is required"),
            "{err}"
        );

        let err = parse_err(
            "PeerOrgs:\n  - Domain: a.com\n    Specs:\n      - Hostname: peer0\n    Template:\n      Count: 1\n",
        );
        assert!(err.contains("peer0.a.com is defined twice"), "{err}");

        let err = parse_err("PeerOrgs:\n  - Domain: a.com\n  - Domain: a.com\n");
        assert!(
            err.contains("PeerOrgs[1]") && err.contains("earlier"),
            "{err}"
        );

        let err = parse_err("PeerOrgs:\n  - Domain: a.com\n    Template:\n      Count: 1\n      Hostname: \"{{.Name}}\"\n");
        assert!(
            err.contains("Template.Hostname") && err.contains(".Name"),
            "{err}"
        );

        let err = parse_err("PeerOrgs:\n  - Domain: a.com\n    Specs:\n      - Hostname: p\n        SANS: [\"bad name\"]\n");
        assert!(err.contains("SANS[0]"), "{err}");

        let err = parse_err("PeerOrgs:\n  - Domain: ../x\n");
        assert!(err.contains("folder"), "{err}");

        let err = parse_err("PeerOrgs:\n  - Domain: a.com\n    Template:\n      Count: -1\n");
        assert!(err.contains("PeerOrgs[0]"), "{err}");

        let err = parse_err(
            "PeerOrgs:\n  - Domain: a.com\n    Template:\n      Count: 2\n      Start: 4294967295\n",
        );
        assert!(err.contains("too large"), "{err}");

        let err = parse_err(
            "PeerOrgs:\n  - Domain: a.com\n    Specs:\n      - Hostname: p\n        Country: DE\n",
        );
        assert!(err.contains("Country") && err.contains("under CA"), "{err}");

        let err = parse_err(
            "PeerOrgs:\n  - Domain: a.com\n    EnableNodeOUs: true\n    CA:\n      OrganizationalUnit: X\n",
        );
        assert!(err.contains("EnableNodeOUs"), "{err}");

        assert!(parse_err("Orgs: []\n").contains("Orgs"));
        assert!(matches!(parse("{}"), Err(SpecError::NoOrganizations)));
    }
}
