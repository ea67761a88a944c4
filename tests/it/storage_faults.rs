//! Write faults under load: after the first failed write, fsync or index
//! flush the channel acknowledges nothing more, Deliver keeps serving what is
//! durable, and once the disk takes writes again the channel resumes by
//! itself with an intact chain that a restart opens.
//!
//! The faults are injected with the node's failpoints, scoped to this test's
//! ledger folder (other tests of this process never meet them).

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::common::*;
use ordo::fabric::protos::common::Status;
use ordo::runtime::channel::ChannelState;
use ordo::runtime::faults::{self, points};
use tokio::sync::watch;

/// Acknowledged-but-unwritten envelopes are bounded by this: Broadcast's
/// in-flight room is released only when a block is durable.
const MAX_INFLIGHT: usize = 1000;
/// How long the ledger's report of a failed write is held back, so the
/// chain keeps taking envelopes after the fault: none may be acknowledged.
const REPORT_DELAY_MS: u32 = 300;

/// What the load saw.
#[derive(Default)]
struct Seen {
    /// Envelopes answered SUCCESS, and whether their stream was opened
    /// after the test saw the channel fault.
    acknowledged: Vec<(String, bool)>,
}

/// Counters the test waits on.
#[derive(Default)]
struct Progress {
    fault_seen: AtomicBool,
    refused_after_fault: AtomicUsize,
    acknowledged_after_fault: AtomicUsize,
}

/// Broadcasts runs of envelopes on fresh streams until told to stop.
async fn load(
    node: String,
    tag: usize,
    progress: Arc<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Seen {
    let mut seen = Seen::default();
    let mut client = ordo::tools::client::connect(&node).await.expect("connect");
    let mut sequence = 0usize;
    while !*stop.borrow() {
        let after_fault = progress.fault_seen.load(Ordering::SeqCst);
        let mut stream = BroadcastStream::open(&mut client).await;
        let mut sent = Vec::new();
        for _ in 0..25 {
            let envelope = tx(format!("load {tag} {sequence}").as_bytes());
            sequence += 1;
            sent.push(tx_id_of(&envelope));
            stream.offer(envelope).await;
        }
        let mut refused = false;
        for id in sent {
            match stream.next().await {
                Some(answer) if answer.status == Status::Success as i32 => {
                    if after_fault {
                        progress
                            .acknowledged_after_fault
                            .fetch_add(1, Ordering::SeqCst);
                    }
                    seen.acknowledged.push((id, after_fault));
                }
                Some(answer) => {
                    assert_eq!(
                        answer.status,
                        Status::ServiceUnavailable as i32,
                        "a fault answers SERVICE_UNAVAILABLE: {}",
                        answer.info
                    );
                    if after_fault {
                        progress.refused_after_fault.fetch_add(1, Ordering::SeqCst);
                    }
                    refused = true;
                    break;
                }
                None => {
                    refused = true;
                    break;
                }
            }
        }
        if refused {
            // Pacing while the channel is down, so the load does not spin.
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(5)) => {}
                _ = stop.changed() => {}
            }
        }
    }
    seen
}

fn channel_of(node: &TestNode) -> std::sync::Arc<ordo::runtime::channel::ChannelHandle> {
    node.node
        .as_ref()
        .expect("running")
        .registrar()
        .channel(CHANNEL)
        .expect("channel")
}

async fn state_becomes(node: &TestNode, what: &str, predicate: impl Fn(&ChannelState) -> bool) {
    let channel = channel_of(node);
    let mut states = channel.subscribe_state();
    let reached = tokio::time::timeout(PATIENCE, states.wait_for(|s| predicate(s))).await;
    assert!(
        matches!(reached, Ok(Ok(_))),
        "{what}: the channel is {}",
        channel.state()
    );
}

async fn counter_reaches(counter: &AtomicUsize, at_least: usize, what: &str) {
    let reached = tokio::time::timeout(PATIENCE, async {
        while counter.load(Ordering::SeqCst) < at_least {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        reached.is_ok(),
        "{what}: {}",
        counter.load(Ordering::SeqCst)
    );
}

// The guard keeps other failpoint tests of this process out for the whole
// test; it is a plain mutex held across awaits on purpose.
#[allow(clippy::await_holding_lock)]
async fn a_fault_at(point: &str, error: &str) {
    let _only_this_test = faults::exclusive();
    let mut profile = profile(CHANNEL);
    profile.batch_timeout = "20ms".into();
    profile.batch_size.max_message_count = 10;
    let mut node = TestNode::from_profile(
        &profile,
        vec![(
            "ORDERER_GENERAL_BACKPRESSURE_MAXINFLIGHTENVELOPES".into(),
            MAX_INFLIGHT.to_string(),
        )],
    )
    .await;
    let scope = node.dir.path().display().to_string();
    let progress = Arc::new(Progress::default());
    let (stop, stopped) = watch::channel(false);
    let loads: Vec<_> = (0..4)
        .map(|tag| tokio::spawn(load(node.address(), tag, progress.clone(), stopped.clone())))
        .collect();
    wait_for_height(&node, CHANNEL, 5).await;

    let channel = channel_of(&node);
    faults::configure(
        points::LEDGER_FAILURE_REPORT,
        &format!("sleep({REPORT_DELAY_MS})"),
    )
    .expect("failpoint");
    faults::configure(point, &format!("return({error}@{scope})")).expect("failpoint");
    // The fault, as soon as the store has it: the supervisor hears of it
    // only after the report delay, and the chain runs until then.
    let seen = tokio::time::timeout(PATIENCE, async {
        while channel.write_fault().is_none() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
    assert!(seen.is_ok(), "the write fault is raised");
    progress.fault_seen.store(true, Ordering::SeqCst);
    state_becomes(&node, "the channel goes down", |s| {
        matches!(s, ChannelState::StorageFault(_))
    })
    .await;
    faults::configure(points::LEDGER_FAILURE_REPORT, "off").expect("failpoint off");
    // The handle holds the channel's store (and its index's lock) open.
    drop(channel);
    counter_reaches(
        &progress.refused_after_fault,
        20,
        "broadcasts refused during the fault",
    )
    .await;
    assert_eq!(
        progress.acknowledged_after_fault.load(Ordering::SeqCst),
        0,
        "nothing is acknowledged while the disk fails"
    );
    // Deliver serves what is durable while the channel is down.
    let durable = all_blocks(&node, CHANNEL).await;
    verify_chain(&durable);
    assert_eq!(durable.len() as u64, node.height(CHANNEL));

    faults::configure(point, "off").expect("failpoint off");
    state_becomes(&node, "the channel resumes by itself", |s| {
        *s == ChannelState::Active
    })
    .await;
    counter_reaches(
        &progress.acknowledged_after_fault,
        50,
        "acknowledged after the recovery",
    )
    .await;
    stop.send_replace(true);
    let mut seen = Seen::default();
    for load in loads {
        seen.acknowledged
            .extend(load.await.expect("load").acknowledged);
    }
    let acknowledged = seen.acknowledged.len();
    let blocks = wait_until_settled(&node).await;
    verify_chain(&blocks);
    let ordered: HashSet<String> = tx_ids(&blocks).into_iter().collect();
    let lost_after_fault: Vec<&String> = seen
        .acknowledged
        .iter()
        .filter(|(id, after)| *after && !ordered.contains(id))
        .map(|(id, _)| id)
        .collect();
    assert!(
        lost_after_fault.is_empty(),
        "{} envelopes acknowledged after the fault was seen are missing",
        lost_after_fault.len()
    );
    let lost = seen
        .acknowledged
        .iter()
        .filter(|(id, _)| !ordered.contains(id))
        .count();
    eprintln!(
        "{point} {error}: {acknowledged} acknowledged, {lost} lost (acknowledged before the fault, never written)"
    );
    assert!(
        lost <= MAX_INFLIGHT,
        "{lost} of {acknowledged} acknowledged envelopes lost: more than the in-flight bound"
    );

    node.restart().await;
    let reopened = all_blocks(&node, CHANNEL).await;
    verify_chain(&reopened);
    assert_eq!(reopened, blocks, "a restart opens the same chain");
}

/// Every block once what was acknowledged is written: Broadcast's in-flight
/// room is released only when an envelope's block is durable.
async fn wait_until_settled(node: &TestNode) -> Vec<ordo::fabric::protos::common::Block> {
    let channel = channel_of(node);
    let settled = tokio::time::timeout(PATIENCE, async {
        while channel.inflight().envelopes_held() > 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await;
    assert!(
        settled.is_ok(),
        "{} envelopes still in flight",
        channel.inflight().envelopes_held()
    );
    all_blocks(node, CHANNEL).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_on_block_writes_stops_acknowledgements_until_it_clears() {
    a_fault_at(points::LEDGER_APPEND_WRITE, "ENOSPC").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_fsync_error_stops_acknowledgements_until_it_clears() {
    a_fault_at(points::LEDGER_APPEND_SYNC, "EIO").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_flush_error_stops_acknowledgements_until_it_clears() {
    a_fault_at(points::LEDGER_APPEND_INDEX_FLUSH, "EMFILE").await;
}
