use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use prost::Message;

use super::*;
use crate::fabric::protos::common::{
    msp_identity_anonymity::MspIdentityAnonymityType, msp_principal::Classification,
    msp_role::MspRoleType, CombinedPrincipal, MspIdentityAnonymity, MspPrincipal, MspRole,
    OrganizationUnit,
};
use crate::fabric::protos::msp::{FabricMspConfig, FabricNodeOUs, FabricOuIdentifier};
use crate::security::testing::{wrap, TestCa, TestIdentity, TestOrg, Validity, CLIENT_OU, PEER_OU};

fn manager(configs: &[FabricMspConfig]) -> MspManager {
    MspManager::new(&configs.iter().map(wrap).collect::<Vec<_>>()).expect("MSPs set up")
}

fn setup_error(config: FabricMspConfig) -> String {
    match MspManager::new(&[wrap(&config)]) {
        Ok(_) => panic!("MSP {} should not set up", config.name),
        Err(e) => e.to_string(),
    }
}

fn identity(manager: &MspManager, id: &TestIdentity) -> Result<Arc<Identity>, MspError> {
    manager.deserialize_identity(&id.creator())
}

fn role(msp_id: &str, role: MspRoleType) -> MspPrincipal {
    MspPrincipal {
        principal_classification: Classification::Role as i32,
        principal: MspRole {
            msp_identifier: msp_id.into(),
            role: role as i32,
        }
        .encode_to_vec()
        .into(),
    }
}

/// An MSP without NodeOUs whose admins are listed in admincerts.
fn admincerts_msp(msp_id: &str, ca: &TestCa, admins: &[&TestIdentity]) -> FabricMspConfig {
    FabricMspConfig {
        name: msp_id.into(),
        root_certs: vec![ca.pem()],
        admins: admins.iter().map(|a| a.certificate_pem()).collect(),
        ..FabricMspConfig::default()
    }
}

#[test]
fn an_identity_issued_through_an_intermediate_validates() {
    let root = TestCa::root("ca.Org1MSP");
    let intermediate = root.intermediate("ica.Org1MSP");
    let member = intermediate.issue("Org1MSP", "user", &[CLIENT_OU]);
    let admin = intermediate.issue("Org1MSP", "admin", &[]);
    let mut config = admincerts_msp("Org1MSP", &root, &[&admin]);
    config.intermediate_certs = vec![intermediate.pem()];
    let msps = manager(&[config]);

    let validated = identity(&msps, &member).expect("chains through the intermediate");
    assert_eq!(validated.msp_id(), "Org1MSP");
    assert_eq!(
        validated.organizational_units()[0].organizational_unit,
        CLIENT_OU
    );
    validated
        .satisfies_principal(&role("Org1MSP", MspRoleType::Member))
        .expect("a member");

    // The root has an intermediate below it: it may not issue identities itself.
    let direct = root.issue("Org1MSP", "direct", &[]);
    let err = identity(&msps, &direct).expect_err("issued by an internal node");
    assert!(
        err.to_string()
            .contains("Parent certificate should be a leaf of the certification tree"),
        "{err}"
    );
}

#[test]
fn certificates_from_another_ca_and_other_msps_are_refused() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let stranger = TestCa::root("ca.Org1MSP").issue("Org1MSP", "User1@Org1MSP", &[CLIENT_OU]);
    let err = identity(&msps, &stranger).expect_err("another CA");
    assert!(matches!(err, MspError::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("unknown authority"), "{err}");

    // A member of Org1 that names another MSP of the channel is not its member.
    let other = TestOrg::new("Org2MSP");
    let msps = manager(&[org.fabric_msp_config(), other.fabric_msp_config()]);
    let err = identity(&msps, &org.client.claiming("Org2MSP")).expect_err("wrong MSP");
    assert!(err.to_string().contains("unknown authority"), "{err}");

    let err = identity(&msps, &org.client.claiming("Org9MSP")).expect_err("unknown MSP");
    assert_eq!(err, MspError::UnknownMsp("Org9MSP".into()));
    assert!(msps
        .deserialize_identity(b"\xff\xff not an identity")
        .is_err());
}

#[test]
fn an_expired_certificate_is_still_an_identity_and_expires_at_reports_it() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let expired = org
        .ca
        .issue_with("Org1MSP", "old", &[CLIENT_OU], Validity::Expired);
    let validated = identity(&msps, &expired).expect("valid as of its NotBefore");
    let end = expires_at(&expired.creator()).expect("expiry readable");
    assert_eq!(validated.not_after(), end);
    let year_2002 = UNIX_EPOCH + Duration::from_secs(1_009_843_200);
    assert_eq!(end, year_2002);
    assert!(end < SystemTime::now());
    assert!(expires_at(&org.client.creator()).expect("readable") > SystemTime::now());
    assert_eq!(expires_at(b"\xff garbage"), None);
    let no_certificate = SerializedIdentity {
        mspid: "Org1MSP".into(),
        id_bytes: Bytes::new(),
    };
    assert_eq!(expires_at(&no_certificate.encode_to_vec()), None);
}

#[test]
fn a_revoked_certificate_is_refused_when_its_ca_signed_the_crl() {
    let org = TestOrg::new("Org1MSP");
    let revoked = org.ca.issue("Org1MSP", "revoked", &[CLIENT_OU]);
    let mut config = org.fabric_msp_config();
    config.revocation_list = vec![org.ca.crl(&[&revoked])];
    let msps = manager(&[config.clone()]);
    let err = identity(&msps, &revoked).expect_err("revoked");
    assert!(
        err.to_string().contains("The certificate has been revoked"),
        "{err}"
    );
    identity(&msps, &org.client).expect("not revoked");

    // A CRL from another CA names another issuer: it revokes nothing here.
    let mut config = org.fabric_msp_config();
    config.revocation_list = vec![TestCa::root("other").crl(&[&revoked])];
    identity(&manager(&[config]), &revoked).expect("that CRL is not its CA's");
}

#[test]
fn node_ous_give_each_identity_one_role() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let cases = [
        (&org.client, MspRoleType::Client),
        (&org.peer, MspRoleType::Peer),
        (&org.admin, MspRoleType::Admin),
        (&org.orderer, MspRoleType::Orderer),
    ];
    for (who, own) in cases {
        let validated = identity(&msps, who).expect("valid");
        validated
            .satisfies_principal(&role("Org1MSP", MspRoleType::Member))
            .expect("every role is a member");
        for (_, other) in cases {
            let result = validated.satisfies_principal(&role("Org1MSP", other));
            assert_eq!(
                result.is_ok(),
                other == own,
                "{own:?} as {other:?}: {result:?}"
            );
        }
        let err = validated
            .satisfies_principal(&role("Org2MSP", MspRoleType::Member))
            .expect_err("another MSP");
        assert!(err.to_string().contains("different MSP"), "{err}");
    }

    // Two role OUs, or none: not an identity of this MSP.
    for (name, ous) in [
        ("both", &[CLIENT_OU, PEER_OU][..]),
        ("none", &["sales"][..]),
    ] {
        let odd = org.ca.issue("Org1MSP", name, ous);
        let err = identity(&msps, &odd).expect_err(name);
        assert!(
            err.to_string().contains("not a combination of them"),
            "{err}"
        );
    }
}

#[test]
fn admins_listed_in_admincerts_are_admins() {
    let ca = TestCa::root("ca.Org1MSP");
    let admin = ca.issue("Org1MSP", "Admin@Org1MSP", &[CLIENT_OU]);
    let user = ca.issue("Org1MSP", "User1@Org1MSP", &[CLIENT_OU]);

    // Without NodeOUs: admins only by admincerts; client and peer cannot be told apart.
    let msps = manager(&[admincerts_msp("Org1MSP", &ca, &[&admin])]);
    let admin_id = identity(&msps, &admin).expect("valid");
    let user_id = identity(&msps, &user).expect("valid");
    admin_id
        .satisfies_principal(&role("Org1MSP", MspRoleType::Admin))
        .expect("listed");
    let err = user_id
        .satisfies_principal(&role("Org1MSP", MspRoleType::Admin))
        .expect_err("not listed");
    assert!(err.to_string().contains("not an admin"), "{err}");
    let err = user_id
        .satisfies_principal(&role("Org1MSP", MspRoleType::Client))
        .expect_err("no NodeOUs");
    assert!(err.to_string().contains("NodeOUs not activated"), "{err}");

    // With NodeOUs but no admin OU: a client listed in admincerts is an admin.
    let mut config = admincerts_msp("Org1MSP", &ca, &[&admin]);
    config.fabric_node_ous = Some(FabricNodeOUs {
        enable: true,
        client_ou_identifier: Some(FabricOuIdentifier {
            certificate: ca.pem(),
            organizational_unit_identifier: CLIENT_OU.into(),
        }),
        peer_ou_identifier: Some(FabricOuIdentifier {
            certificate: ca.pem(),
            organizational_unit_identifier: PEER_OU.into(),
        }),
        ..FabricNodeOUs::default()
    });
    let msps = manager(&[config]);
    identity(&msps, &admin)
        .expect("valid")
        .satisfies_principal(&role("Org1MSP", MspRoleType::Admin))
        .expect("listed");
    let err = identity(&msps, &user)
        .expect("valid")
        .satisfies_principal(&role("Org1MSP", MspRoleType::Admin))
        .expect_err("no admin OU defined");
    assert!(
        err.to_string().contains("node ou for type [ADMIN]"),
        "{err}"
    );
}

#[test]
fn msp_configs_that_fabric_refuses_are_refused() {
    let org = TestOrg::new("Org1MSP");
    let mut no_roots = org.fabric_msp_config();
    no_roots.root_certs.clear();
    assert!(setup_error(no_roots).contains("expected at least one CA certificate"));

    let mut leaf_as_root = org.fabric_msp_config();
    leaf_as_root.root_certs = vec![org.client.certificate_pem()];
    assert!(setup_error(leaf_as_root).contains("did not have the CA attribute"));

    let mut garbage = org.fabric_msp_config();
    garbage.root_certs = vec![Bytes::from_static(b"not a certificate")];
    assert!(setup_error(garbage).contains("root certificate 0"));

    let mut no_admins = org.fabric_msp_config();
    no_admins.fabric_node_ous = None;
    assert!(setup_error(no_admins)
        .contains("administrators must be declared when no admin ou classification is set"));

    // With NodeOUs, an admincert must carry the client or admin OU.
    let mut peer_admin = org.fabric_msp_config();
    peer_admin.admins = vec![org.peer.certificate_pem()];
    assert!(setup_error(peer_admin).contains("admin 0 is invalid"));

    // A NodeOU certificate must be one of the MSP's CAs.
    let mut foreign_ou = org.fabric_msp_config();
    if let Some(ous) = foreign_ou.fabric_node_ous.as_mut() {
        ous.client_ou_identifier = Some(FabricOuIdentifier {
            certificate: TestCa::root("other").pem(),
            organizational_unit_identifier: CLIENT_OU.into(),
        });
    }
    assert!(setup_error(foreign_ou).contains("not among the MSP's root or intermediate"));

    let mut crl = org.fabric_msp_config();
    crl.revocation_list = vec![Bytes::from_static(b"junk")];
    assert!(setup_error(crl).contains("RevocationList"));

    // One MSP ID, two different configs.
    let twice = MspManager::new(&[
        org.msp_config(),
        wrap(&TestOrg::new("Org1MSP").fabric_msp_config()),
    ]);
    assert!(twice
        .expect_err("two versions")
        .to_string()
        .contains("two different versions of MSP: Org1MSP"));
    // The same config twice (an org in the Orderer and Application groups) is one MSP.
    let same = MspManager::new(&[org.msp_config(), org.msp_config()]).expect("same config");
    assert_eq!(same.msp_ids(), vec!["Org1MSP".to_string()]);
}

#[test]
fn only_ecdsa_p256_identities_and_no_cas_are_accepted() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let p384 = org.ca.issue_p384("Org1MSP", "p384", &[CLIENT_OU]);
    let err = identity(&msps, &p384).expect_err("P-384");
    assert!(
        err.to_string()
            .contains("only ECDSA P-256 identities are supported"),
        "{err}"
    );

    // A CA's certificate is not an identity.
    let intermediate = org.ca.intermediate("ica");
    let creator = SerializedIdentity {
        mspid: "Org1MSP".into(),
        id_bytes: intermediate.pem(),
    }
    .encode_to_vec();
    let err = msps.deserialize_identity(&creator).expect_err("a CA");
    assert!(err.to_string().contains("Certificate Authority"), "{err}");
}

#[test]
fn signatures_verify_low_s_only() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let client = identity(&msps, &org.client).expect("valid");
    let message = b"payload";
    client
        .verify(message, &org.client.sign(message))
        .expect("verifies");
    let err = client
        .verify(b"payloaD", &org.client.sign(message))
        .expect_err("another message");
    assert!(matches!(err, MspError::Signature(_)), "{err}");
    let err = client
        .verify(message, &org.client.sign_high_s(message))
        .expect_err("high S");
    assert!(err.to_string().contains("invalid S"), "{err}");
    assert!(client.verify(message, b"\x30\x02junk").is_err());
    // Another identity's signature does not verify with this one's key.
    assert!(client.verify(message, &org.peer.sign(message)).is_err());
}

#[test]
fn identity_ou_anonymity_and_combined_principals() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let client = identity(&msps, &org.client).expect("valid");
    let peer = identity(&msps, &org.peer).expect("valid");

    let exact = MspPrincipal {
        principal_classification: Classification::Identity as i32,
        principal: org.client.creator(),
    };
    client
        .satisfies_principal(&exact)
        .expect("same certificate");
    assert!(peer.satisfies_principal(&exact).is_err());

    let certifiers = client.organizational_units()[0]
        .certifiers_identifier
        .clone();
    let ou = |name: &str, certifiers: Vec<u8>| MspPrincipal {
        principal_classification: Classification::OrganizationUnit as i32,
        principal: OrganizationUnit {
            msp_identifier: "Org1MSP".into(),
            organizational_unit_identifier: name.into(),
            certifiers_identifier: certifiers.into(),
        }
        .encode_to_vec()
        .into(),
    };
    client
        .satisfies_principal(&ou(CLIENT_OU, certifiers.clone()))
        .expect("its OU, certified by its CA");
    assert!(client
        .satisfies_principal(&ou(PEER_OU, certifiers.clone()))
        .is_err());
    assert!(client
        .satisfies_principal(&ou(CLIENT_OU, vec![1, 2, 3]))
        .is_err());
    // The certifiers identifier is the hash of the issuing CA's certificate.
    use sha2::Digest;
    assert_eq!(certifiers, sha2::Sha256::digest(org.ca.der()).to_vec());

    let anonymity = |kind: MspIdentityAnonymityType| MspPrincipal {
        principal_classification: Classification::Anonymity as i32,
        principal: MspIdentityAnonymity {
            anonymity_type: kind as i32,
        }
        .encode_to_vec()
        .into(),
    };
    client
        .satisfies_principal(&anonymity(MspIdentityAnonymityType::Nominal))
        .expect("X.509 identities are nominal");
    assert!(client
        .satisfies_principal(&anonymity(MspIdentityAnonymityType::Anonymous))
        .is_err());

    let combined = |principals: Vec<MspPrincipal>| MspPrincipal {
        principal_classification: Classification::Combined as i32,
        principal: CombinedPrincipal { principals }.encode_to_vec().into(),
    };
    let client_and_member = combined(vec![
        role("Org1MSP", MspRoleType::Client),
        combined(vec![role("Org1MSP", MspRoleType::Member)]),
    ]);
    client
        .satisfies_principal(&client_and_member)
        .expect("both");
    assert!(peer.satisfies_principal(&client_and_member).is_err());
    assert!(client.satisfies_principal(&combined(vec![])).is_err());
    let unknown = MspPrincipal {
        principal_classification: 9,
        principal: Bytes::new(),
    };
    assert!(client.satisfies_principal(&unknown).is_err());
}

#[test]
fn validated_identities_are_cached_until_the_manager_is_replaced() {
    let org = TestOrg::new("Org1MSP");
    let configs = [org.fabric_msp_config()];
    let msps = manager(&configs);
    assert_eq!(msps.cached_identities(), 0);
    let first = identity(&msps, &org.client).expect("valid");
    let again = identity(&msps, &org.client).expect("cached");
    assert!(
        Arc::ptr_eq(&first, &again),
        "the second lookup is a cache hit"
    );
    assert_eq!(msps.cached_identities(), 1);
    // Refusals are not cached.
    let stranger = TestCa::root("x").issue("Org1MSP", "x", &[CLIENT_OU]);
    assert!(identity(&msps, &stranger).is_err());
    assert_eq!(msps.cached_identities(), 1);

    // A new config means a new manager: nothing of the old one is reused.
    let next = manager(&configs);
    assert_eq!(next.cached_identities(), 0);
    let fresh = identity(&next, &org.client).expect("valid");
    assert!(!Arc::ptr_eq(&first, &fresh));

    // The cache is bounded.
    let cache = cache::IdentityCache::new(2);
    for i in 0..5u8 {
        cache.insert(&[i], first.clone());
    }
    assert_eq!(cache.len(), 2);
    assert!(cache.get(&[4]).is_some(), "the newest entry is kept");
}

#[test]
fn tls_cas_of_every_organization_are_listed() {
    let org1 = TestOrg::new("Org1MSP");
    let org2 = TestOrg::new("Org2MSP");
    let mut with_intermediate = org2.fabric_msp_config();
    let tls_intermediate = org2.tls_ca.intermediate("tls-ica");
    with_intermediate.tls_intermediate_certs = vec![tls_intermediate.pem()];
    let msps = manager(&[org1.fabric_msp_config(), with_intermediate]);
    assert_eq!(
        msps.tls_root_certs(),
        vec![org1.tls_ca.der(), org2.tls_ca.der(), tls_intermediate.der()]
    );

    let mut bad = org1.fabric_msp_config();
    bad.tls_root_certs = vec![org1.client.certificate_pem()];
    assert!(setup_error(bad).contains("did not have the CA attribute"));
}

#[test]
fn organizational_unit_identifiers_restrict_members_without_node_ous() {
    let ca = TestCa::root("ca.Org1MSP");
    let admin = ca.issue("Org1MSP", "admin", &["sales"]);
    let sales = ca.issue("Org1MSP", "seller", &["sales"]);
    let hr = ca.issue("Org1MSP", "recruiter", &["hr"]);
    let mut config = admincerts_msp("Org1MSP", &ca, &[&admin]);
    config.organizational_unit_identifiers = vec![FabricOuIdentifier {
        certificate: ca.pem(),
        organizational_unit_identifier: "sales".into(),
    }];
    let msps = manager(&[config]);
    identity(&msps, &sales).expect("in sales");
    let err = identity(&msps, &hr).expect_err("not in sales");
    assert!(
        err.to_string()
            .contains("none of the identity's organizational units [hr] are in MSP Org1MSP"),
        "{err}"
    );
}

/// The certificate of `who` with its CA signature replaced by the signature's
/// other S (n - S): the same signed part, bytes that differ, and a CA
/// signature that still verifies.
fn with_twin_signature(who: &TestIdentity) -> Vec<u8> {
    let der = super::cert::pem_to_der(&who.certificate_pem()).expect("PEM");
    let (body, algorithm, signature) = yasna::parse_der(&der, |r| {
        r.read_sequence(|r| {
            let body = r.next().read_der()?;
            let algorithm = r.next().read_der()?;
            let (signature, _) = r.next().read_bitvec_bytes()?;
            Ok((body, algorithm, signature))
        })
    })
    .expect("a certificate");
    let signature = p256::ecdsa::Signature::from_der(&signature).expect("ECDSA");
    let (r, s) = signature.split_scalars();
    let twin = p256::ecdsa::Signature::from_scalars(r, -*s).expect("the other S");
    let twin = twin.to_der().as_bytes().to_vec();
    yasna::construct_der(|w| {
        w.write_sequence(|w| {
            w.next().write_der(&body);
            w.next().write_der(&algorithm);
            w.next().write_bitvec_bytes(&twin, twin.len() * 8);
        })
    })
}

fn serialized(msp_id: &str, der: &[u8]) -> Vec<u8> {
    let pem = pem::encode(&pem::Pem::new("CERTIFICATE", der.to_vec()));
    crate::fabric::protos::msp::SerializedIdentity {
        mspid: msp_id.into(),
        id_bytes: pem.into_bytes().into(),
    }
    .encode_to_vec()
}

#[test]
fn one_certificate_encoded_two_ways_is_one_identity_and_trailing_bytes_are_refused() {
    let org = TestOrg::new("Org1MSP");
    let msps = manager(&[org.fabric_msp_config()]);
    let original = identity(&msps, &org.client).expect("valid");
    let twin_der = with_twin_signature(&org.client);
    assert_ne!(twin_der, original.certificate_der(), "other bytes");
    let twin = msps
        .deserialize_identity(&serialized("Org1MSP", &twin_der))
        .expect("the twin validates too");
    assert!(original.same_as(&twin), "one signer, however encoded");

    let mut trailing = original.certificate_der().to_vec();
    trailing.extend_from_slice(&[0, 0, 0, 0]);
    let err = msps
        .deserialize_identity(&serialized("Org1MSP", &trailing))
        .expect_err("trailing bytes");
    assert!(err.to_string().contains("trailing data"), "{err}");
}

#[test]
fn ou_identifiers_apply_with_node_ous_too() {
    let org = TestOrg::new("Org1MSP");
    let mut config = org.fabric_msp_config();
    config.organizational_unit_identifiers = vec![FabricOuIdentifier {
        certificate: org.ca.pem(),
        organizational_unit_identifier: "sales".into(),
    }];
    let msps = manager(&[config]);
    let err = identity(&msps, &org.client).expect_err("not in sales");
    assert!(
        err.to_string()
            .contains("none of the identity's organizational units"),
        "{err}"
    );
    let seller = org
        .ca
        .issue("Org1MSP", "Seller@Org1MSP", &[CLIENT_OU, "sales"]);
    identity(&msps, &seller).expect("a client in sales");
}
