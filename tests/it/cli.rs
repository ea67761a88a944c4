//! The `ordo broadcast` and `ordo deliver` subcommands against a running node.

use prost::Message;

use crate::common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_then_deliver_print_what_the_node_holds() {
    let mut p = profile(CHANNEL);
    p.batch_size.max_message_count = 100;
    p.batch_timeout = "1h".into();
    let node = TestNode::from_profile(&p, vec![]).await;
    let address = node.address();
    let (ok, out, err) = run_ordo(&[
        "broadcast",
        "--address",
        &address,
        "--count",
        "300",
        "--size",
        "100",
        "--streams",
        "3",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("300 SUCCESS"), "{out}");
    wait_for_height(&node, CHANNEL, 4).await;

    let (ok, out, err) = run_ordo(&[
        "deliver",
        "--address",
        &address,
        "--start",
        "oldest",
        "--stop",
        "newest",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let blocks = all_blocks(&node, CHANNEL).await;
    let expected: Vec<String> = blocks
        .iter()
        .map(|b| {
            format!(
                "block {} txs {} hash {}",
                ordo::fabric::blockutil::number(b),
                ordo::fabric::blockutil::entries(b).len(),
                hex::encode(ordo::fabric::blockutil::header_hash(
                    b.header.as_ref().expect("header")
                ))
            )
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    let (ok, _, err) = run_ordo(&[
        "deliver",
        "--address",
        &address,
        "--channel",
        "nosuchchannel",
    ])
    .await;
    assert!(!ok);
    assert!(err.contains("NOT_FOUND"), "{err}");
}

/// The operator's path to a channel and a config change, all through the CLI:
/// genesis from configtx.yaml, join, inspect, edit, compute the update, submit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn genesis_join_inspect_and_update_a_channel_through_the_cli() {
    let node = TestNode::with_env(vec![(
        "ORDERER_GENERAL_BOOTSTRAPMETHOD".into(),
        "none".into(),
    )])
    .await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    // A channel without organizations: its policies admit anyone, so the
    // CLI's unsigned envelopes are ordered (the sample profiles' channels
    // take only their members' signatures).
    let config_dir = path("configtx");
    std::fs::create_dir_all(&config_dir).expect("mkdir");
    std::fs::write(
        dir.path().join("configtx/configtx.yaml"),
        "Profiles:\n  SoloChannel:\n    Capabilities:\n      V3_0: true\n    Orderer:\n      OrdererType: solo\n      BatchTimeout: 2s\n      BatchSize:\n        MaxMessageCount: 500\n        AbsoluteMaxBytes: 10 MB\n        PreferredMaxBytes: 2 MB\n      Capabilities:\n        V2_0: true\n    Application:\n      Capabilities:\n        V2_0: true\n",
    )
    .expect("write configtx.yaml");
    let admin = node
        .node
        .as_ref()
        .expect("running")
        .admin_addr()
        .expect("admin")
        .to_string();
    let address = node.address();

    let (ok, out, err) = run_ordo(&[
        "genesis",
        "--config-path",
        &config_dir,
        "--profile",
        "SoloChannel",
        "--channel-id",
        "clichannel",
        "--output-block",
        &path("genesis.block"),
    ])
    .await;
    assert!(ok, "{out}\n{err}");

    let (ok, out, err) = run_ordo(&[
        "channel",
        "join",
        "--config-block",
        &path("genesis.block"),
        "--admin-address",
        &admin,
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("Status: 201"), "{out}");
    assert!(out.contains("\"status\": \"active\""), "{out}");

    let (ok, out, err) = run_ordo(&[
        "fetch",
        "--channel",
        "clichannel",
        "--block",
        "config",
        "--output",
        &path("config.block"),
        "--address",
        &address,
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(
        std::fs::read(path("config.block")).expect("fetched"),
        std::fs::read(path("genesis.block")).expect("genesis")
    );
    let (ok, out, err) = run_ordo(&["config", "inspect", &path("config.block")]).await;
    assert!(ok, "{err}");
    let mut json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    std::fs::write(path("original.json"), &out).expect("write");
    json["data"]["data"][0]["payload"]["data"]["config"]["channel_group"]["groups"]["Orderer"]
        ["values"]["BatchSize"]["value"]["max_message_count"] = 4.into();
    std::fs::write(path("updated.json"), json.to_string()).expect("write");

    let (ok, out, err) = run_ordo(&[
        "config",
        "update",
        "--original",
        &path("original.json"),
        "--updated",
        &path("updated.json"),
        "--output",
        &path("update.envelope"),
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) =
        run_ordo(&["submit", &path("update.envelope"), "--address", &address]).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("SUCCESS"), "{out}");
    // The same update again is stale: BAD_REQUEST, and the command fails.
    let (ok, out, _) = run_ordo(&["submit", &path("update.envelope"), "--address", &address]).await;
    assert!(!ok);
    assert!(out.starts_with("BAD_REQUEST"), "{out}");

    let (ok, out, err) = run_ordo(&[
        "broadcast",
        "--address",
        &address,
        "--channel",
        "clichannel",
        "--count",
        "8",
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    wait_for_height(&node, "clichannel", 4).await;
    let blocks = all_blocks(&node, "clichannel").await;
    let counts: Vec<usize> = blocks
        .iter()
        .map(|b| ordo::fabric::blockutil::entries(b).len())
        .collect();
    assert_eq!(counts, vec![1, 1, 4, 4]);

    let (ok, out, _) = run_ordo(&[
        "channel",
        "info",
        "--channel-id",
        "nosuch",
        "--admin-address",
        &admin,
    ])
    .await;
    assert!(!ok);
    assert!(out.starts_with("Status: 404"), "{out}");
}

/// osnadmin's commands against an admin listener with mutual TLS: join,
/// list, fetch (the bytes Deliver sends), update, remove; refused without a
/// trusted client certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_commands_over_mutual_tls() {
    let pki = crate::participation::AdminPki::new();
    let mut env = pki.node_env();
    env.push(("ORDERER_GENERAL_BOOTSTRAPMETHOD".into(), "none".into()));
    let node = TestNode::with_env(env).await;
    let admin = node
        .node
        .as_ref()
        .expect("running")
        .admin_addr()
        .expect("admin")
        .to_string();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = |name: &str| dir.path().join(name).display().to_string();
    std::fs::write(
        path("genesis.block"),
        profile("tlschannel").genesis_block().encode_to_vec(),
    )
    .expect("write");
    let (ca, cert, key) = (
        pki.path("ca.crt"),
        pki.path("client.crt"),
        pki.path("client.key"),
    );
    let channel = |args: &[&str]| {
        let mut all: Vec<String> = vec!["channel".into()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(
            [
                "-o",
                &admin,
                "--ca-file",
                &ca,
                "--client-cert",
                &cert,
                "--client-key",
                &key,
            ]
            .map(String::from),
        );
        all
    };

    // The block's channel is checked against --channelID first.
    let (ok, _, err) = run_ordo(&channel(&[
        "join",
        "--channelID",
        "other",
        "--config-block",
        &path("genesis.block"),
    ]))
    .await;
    assert!(!ok);
    assert!(
        err.contains(
            "specified --channelID other does not match channel ID tlschannel in config block"
        ),
        "{err}"
    );
    let (ok, out, err) = run_ordo(&channel(&[
        "join",
        "-c",
        "tlschannel",
        "-b",
        &path("genesis.block"),
    ]))
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("Status: 201"), "{out}");

    let (ok, out, err) = run_ordo(&channel(&["list"])).await;
    assert!(ok, "{out}\n{err}");
    assert!(out.contains("\"name\": \"tlschannel\""), "{out}");
    let (ok, out, err) = run_ordo(&channel(&[
        "list",
        "--channelID",
        "tlschannel",
        "--no-status",
    ]))
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(!out.contains("Status:"), "{out}");
    assert!(out.contains("\"height\": 1"), "{out}");

    // Without a client certificate, or with one from another CA: refused.
    for (who, identity) in [("none", None), ("stranger", Some("stranger"))] {
        let mut args = vec![
            "channel".to_string(),
            "list".into(),
            "-o".into(),
            admin.clone(),
            "--ca-file".into(),
            ca.clone(),
        ];
        if let Some(identity) = identity {
            args.extend([
                "--client-cert".into(),
                pki.path(&format!("{identity}.crt")),
                "--client-key".into(),
                pki.path(&format!("{identity}.key")),
            ]);
        }
        let (ok, out, err) = run_ordo(&args).await;
        assert!(!ok, "{who}: {out}");
        assert!(!out.contains("Status:"), "{who}: {out}");
        assert!(err.contains("admin request to https://"), "{who}: {err}");
        // Refused in the handshake: the server's TLS alert is what the client reads.
        assert!(err.contains("received fatal alert"), "{who}: {err}");
    }

    // Update MaxMessageCount, then fetch the config block it made.
    let (ok, out, err) = run_ordo(&channel(&[
        "fetch",
        "-c",
        "tlschannel",
        "--blockID",
        "config",
        "--outputfile",
        &path("config.block"),
    ]))
    .await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(out, "Status: 200\n");
    assert_eq!(
        std::fs::read(path("config.block")).expect("fetched"),
        std::fs::read(path("genesis.block")).expect("genesis")
    );
    let (ok, out, err) = run_ordo(&["config", "inspect", &path("config.block")]).await;
    assert!(ok, "{err}");
    std::fs::write(path("original.json"), &out).expect("write");
    let mut json: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    json["data"]["data"][0]["payload"]["data"]["config"]["channel_group"]["groups"]["Orderer"]
        ["values"]["BatchSize"]["value"]["max_message_count"] = 2.into();
    std::fs::write(path("updated.json"), json.to_string()).expect("write");
    let (ok, out, err) = run_ordo(&[
        "config",
        "update",
        "--original",
        &path("original.json"),
        "--updated",
        &path("updated.json"),
        "--output",
        &path("update.envelope"),
    ])
    .await;
    assert!(ok, "{out}\n{err}");
    let (ok, out, err) = run_ordo(&channel(&[
        "update",
        "-c",
        "tlschannel",
        "--config-update-envelope",
        &path("update.envelope"),
    ]))
    .await;
    assert!(ok, "{out}\n{err}");
    assert!(out.starts_with("Status: 201"), "{out}");
    wait_for_height(&node, "tlschannel", 2).await;
    // The same update again is stale: refused, and the command fails.
    let (ok, out, _) = run_ordo(&channel(&[
        "update",
        "--config-block",
        &path("update.envelope"),
    ]))
    .await;
    assert!(!ok);
    assert!(out.starts_with("Status: 400"), "{out}");
    assert!(out.contains("cannot update: "), "{out}");

    let (ok, out, err) = run_ordo(&channel(&[
        "fetch",
        "-c",
        "tlschannel",
        "--blockID",
        "config",
        "--outputfile",
        &path("new.block"),
    ]))
    .await;
    assert!(ok, "{out}\n{err}");
    let blocks = all_blocks(&node, "tlschannel").await;
    assert_eq!(blocks.len(), 2);
    assert_eq!(
        std::fs::read(path("new.block")).expect("fetched"),
        blocks[1].encode_to_vec()
    );
    let (ok, _, err) = run_ordo(&channel(&[
        "fetch",
        "-c",
        "tlschannel",
        "--blockID",
        "+1",
        "--outputfile",
        &path("x.block"),
    ]))
    .await;
    assert!(!ok);
    assert!(
        err.contains("'+1' not equal <newest|oldest|config|(number)>"),
        "{err}"
    );
    let (ok, out, _) = run_ordo(&channel(&[
        "fetch",
        "-c",
        "tlschannel",
        "--blockID",
        "9",
        "--outputfile",
        &path("x.block"),
    ]))
    .await;
    assert!(!ok);
    assert!(out.starts_with("Status: 404"), "{out}");
    assert!(!dir.path().join("x.block").exists());

    let (ok, out, err) = run_ordo(&channel(&["remove", "-c", "tlschannel"])).await;
    assert!(ok, "{out}\n{err}");
    assert_eq!(out, "Status: 204\n");
    let (ok, out, _) = run_ordo(&channel(&["info", "-c", "tlschannel"])).await;
    assert!(!ok);
    assert!(out.starts_with("Status: 404"), "{out}");
}
