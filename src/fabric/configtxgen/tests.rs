use super::*;
use crate::fabric::channelconfig::{ChannelConfig, PolicyRule};

fn sample() -> ConfigTx {
    ConfigTx::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config")).expect("sample loads")
}

#[test]
fn the_sample_solo_profile_makes_a_valid_genesis_block() {
    let block = sample()
        .genesis_block("SoloChannel", "mychannel")
        .expect("genesis");
    assert_eq!(crate::fabric::blockutil::number(&block), 0);
    let config = ChannelConfig::from_config_block(&block).expect("valid config");
    assert_eq!(config.consensus_type, "solo");
    assert_eq!(config.batch_size.max_message_count, 500);
    assert_eq!(config.batch_size.absolute_max_bytes, 10 * 1024 * 1024);
    assert_eq!(config.batch_size.preferred_max_bytes, 2 * 1024 * 1024);
    assert_eq!(config.batch_timeout, std::time::Duration::from_secs(2));
    assert_eq!(config.channel.capabilities, vec!["V3_0"]);
    assert_eq!(config.orderer.capabilities, vec!["V2_0"]);

    let orderer_org = &config.orderer.organizations["OrdererOrg"];
    assert_eq!(orderer_org.msp_id, "OrdererMSP");
    assert_eq!(orderer_org.root_certs.len(), 1);
    assert_eq!(orderer_org.tls_root_certs.len(), 1);
    assert!(orderer_org.node_ous_enabled);
    assert_eq!(orderer_org.orderer_endpoints, vec!["127.0.0.1:7050"]);

    let application = config.application.as_ref().expect("application group");
    assert_eq!(application.organizations["Org1MSP"].msp_id, "Org1MSP");
    assert_eq!(application.capabilities, vec!["V2_5"]);

    assert!(matches!(
        &config.policies["/Channel/Orderer/BlockValidation"].rule,
        PolicyRule::ImplicitMeta { rule, sub_policy } if rule == "ANY" && sub_policy == "Writers"
    ));
    assert!(matches!(
        config.policies["/Channel/Application/Org1MSP/Endorsement"].rule,
        PolicyRule::Signature(_)
    ));
}

#[test]
fn the_sample_raft_profile_carries_consenters_and_options() {
    let block = sample()
        .genesis_block("RaftChannel", "raftchannel")
        .expect("genesis");
    let config = ChannelConfig::from_config_block(&block).expect("valid config");
    assert_eq!(config.consensus_type, "etcdraft");
    let raft = config.orderer.etcdraft.as_ref().expect("etcdraft metadata");
    let ports: Vec<u32> = raft.consenters.iter().map(|c| c.port).collect();
    assert_eq!(ports, vec![7051, 7052, 7053]);
    assert!(raft.consenters[0]
        .server_tls_cert
        .starts_with(b"-----BEGIN CERTIFICATE-----"));
    let options = raft.options.as_ref().expect("options");
    assert_eq!(options.tick_interval, "500ms");
    assert_eq!(options.max_inflight_blocks, 5);
    assert_eq!(options.snapshot_interval_size, 16 * 1024 * 1024);
}

#[test]
fn mistakes_are_named() {
    let config = sample();
    let err = config.genesis_block("Nope", "c").expect_err("no profile");
    assert!(err.to_string().contains("SoloChannel"), "{err}");
    let err = config
        .genesis_block("SoloChannel", "Bad_Name")
        .expect_err("bad id");
    assert!(err.to_string().contains("Bad_Name"), "{err}");

    let dir = tempfile::tempdir().expect("tempdir");
    let yaml = "Profiles:\n  P:\n    Orderer:\n      OrdererType: solo\n      BatchTimeout: 1s\n      BatchSize: {MaxMessageCount: 10, AbsoluteMaxBytes: 1 MB, PreferredMaxBytes: 512 KB}\n      Organizations: [Missing]\n";
    std::fs::write(dir.path().join(CONFIGTX_FILE), yaml).expect("write");
    let err = ConfigTx::load(dir.path())
        .expect("loads")
        .genesis_block("P", "c")
        .expect_err("unknown org");
    assert!(
        err.to_string().contains("\"Missing\" is not defined"),
        "{err}"
    );

    let yaml = "Organizations:\n  - Name: A\n    ID: AMSP\n    MSPDir: nowhere\nProfiles:\n  P:\n    Orderer:\n      OrdererType: solo\n      BatchTimeout: 1s\n      BatchSize: {MaxMessageCount: 10, AbsoluteMaxBytes: 1 MB, PreferredMaxBytes: 512 KB}\n      Organizations: [A]\n";
    std::fs::write(dir.path().join(CONFIGTX_FILE), yaml).expect("write");
    let err = ConfigTx::load(dir.path())
        .expect("loads")
        .genesis_block("P", "c")
        .expect_err("no MSP");
    assert!(err.to_string().contains("no CA certificate"), "{err}");
}

#[test]
fn merge_keys_fill_in_what_a_map_does_not_set() {
    let mut tree = serde_json::json!({
        "A": {"<<": {"x": 1, "y": 2}, "y": 3},
        "B": [{"<<": [{"z": 1}, {"z": 2, "w": 4}]}],
    });
    apply_merge_keys(&mut tree);
    assert_eq!(
        tree,
        serde_json::json!({"A": {"x": 1, "y": 3}, "B": [{"z": 1, "w": 4}]})
    );
}
