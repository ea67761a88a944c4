//! The `ordo broadcast` and `ordo deliver` subcommands against a running node.

use std::process::Command;

use crate::common::*;

/// Runs the `ordo` binary off the async runtime; returns (success, stdout, stderr).
async fn ordo(args: &[&str]) -> (bool, String, String) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_ordo"))
            .args(&args)
            .env("FABRIC_LOGGING_SPEC", "error")
            .output()
    })
    .await
    .expect("join")
    .expect("run ordo");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_then_deliver_print_what_the_node_holds() {
    let mut p = profile(CHANNEL);
    p.batch_size.max_message_count = 100;
    p.batch_timeout = "1h".into();
    let node = TestNode::from_profile(&p, vec![]).await;
    let address = node.address();
    let (ok, out, err) = ordo(&[
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

    let (ok, out, err) = ordo(&[
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
                ordo::blockutil::number(b),
                ordo::blockutil::entries(b).len(),
                hex::encode(ordo::blockutil::header_hash(
                    b.header.as_ref().expect("header")
                ))
            )
        })
        .collect();
    assert_eq!(out.lines().collect::<Vec<_>>(), expected);

    let (ok, _, err) = ordo(&[
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
