//! Clusters of etcdraft chains in one process, on an in-memory network and
//! one manual clock: elections, forwarding, partitions, catching up, and
//! MaxInflightBlocks.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use prost::Message as _;

use super::testing::MemoryNetwork;
use crate::fabric::blockutil;
use crate::fabric::channelconfig::genesis::GenesisProfile;
use crate::fabric::channelconfig::ETCDRAFT;
use crate::fabric::protos::etcdraft::{ConfigMetadata, Consenter, Options};
use crate::runtime::blockcutter::OrderedMessage;
use crate::runtime::channel::testing::{supervised_on, SupervisedNode};
use crate::runtime::channel::ChannelState;
use crate::runtime::clock::{Clock, ManualClock};
use crate::runtime::consensus::{
    ChainRole, Consenters, InflightPermit, InflightRoom, Submit, SubmitError,
};

const CHANNEL: &str = "raftchannel";
const TICK: Duration = Duration::from_millis(100);
/// Clock steps a test may take before giving up (elections take ~10-20 ticks).
const MAX_STEPS: usize = 3000;

struct Cluster {
    network: MemoryNetwork,
    hand: ManualClock,
    nodes: Vec<SupervisedNode>,
}

fn profile(nodes: u64, max_message_count: u32, max_inflight_blocks: u32) -> GenesisProfile {
    let metadata = ConfigMetadata {
        consenters: (1..=nodes)
            .map(|i| Consenter {
                host: "127.0.0.1".into(),
                port: 7000 + i as u32,
                ..Default::default()
            })
            .collect(),
        options: Some(Options {
            tick_interval: "100ms".into(),
            election_tick: 10,
            heartbeat_tick: 1,
            max_inflight_blocks,
            snapshot_interval_size: 0,
        }),
    };
    let mut profile = GenesisProfile::embedded(CHANNEL, vec![]);
    profile.consensus_type = ETCDRAFT.into();
    profile.consensus_metadata = metadata.encode_to_vec().into();
    profile.batch_size.max_message_count = max_message_count;
    profile.batch_timeout = "1s".into();
    profile
}

impl Cluster {
    fn start(nodes: u64, max_message_count: u32, max_inflight_blocks: u32) -> Cluster {
        let _ = tracing_subscriber::fmt()
            .with_test_writer()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .try_init();
        let network = MemoryNetwork::new();
        let (clock, hand) = Clock::manual();
        let genesis = profile(nodes, max_message_count, max_inflight_blocks).genesis_block();
        let nodes = (1..=nodes)
            .map(|i| {
                let network = network.clone();
                supervised_on(
                    &genesis,
                    Consenters::standard(),
                    InflightRoom::new(10_000, 64 << 20),
                    clock.clone(),
                    move |node| {
                        node.cluster = Arc::new(network);
                        node.identity.endpoint = format!("127.0.0.1:{}", 7000 + i);
                    },
                )
            })
            .collect();
        Cluster {
            network,
            hand,
            nodes,
        }
    }

    fn node(&self, id: u64) -> &SupervisedNode {
        &self.nodes[(id - 1) as usize]
    }

    fn role(&self, id: u64) -> ChainRole {
        self.node(id).handle.chain_status().role
    }

    fn leader_seen_by(&self, id: u64) -> Option<u64> {
        self.node(id).handle.chain_status().leader
    }

    /// Moves the clock a tick at a time until `condition` holds.
    async fn run_until(&self, what: &str, condition: impl Fn(&Cluster) -> bool) {
        for _ in 0..MAX_STEPS {
            if condition(self) {
                return;
            }
            self.hand.advance(TICK);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        panic!("{what}: not within {MAX_STEPS} ticks");
    }

    /// Waits for one leader among `among` that every one of them follows.
    async fn leader_among(&self, among: &[u64]) -> u64 {
        self.run_until("a leader is elected", |c| {
            let leaders: Vec<u64> = among
                .iter()
                .copied()
                .filter(|&id| c.role(id) == ChainRole::Leader)
                .collect();
            let [leader] = leaders.as_slice() else {
                return false;
            };
            among
                .iter()
                .all(|&id| c.leader_seen_by(id) == Some(*leader))
        })
        .await;
        among
            .iter()
            .copied()
            .find(|&id| self.role(id) == ChainRole::Leader)
            .expect("a leader")
    }

    async fn leader(&self) -> u64 {
        let all: Vec<u64> = (1..=self.nodes.len() as u64).collect();
        self.leader_among(&all).await
    }

    async fn submit(&self, id: u64, data: &str) -> Result<(), SubmitError> {
        let handle = &self.node(id).handle;
        let chain = handle.chain().map_err(SubmitError::Unavailable)?;
        let envelope = crate::fabric::envelopeutil::testing::transaction(
            CHANNEL,
            Bytes::from(data.to_string()),
        );
        let message = OrderedMessage {
            size: envelope.payload.len() + envelope.signature.len(),
            envelope: envelope.encode_to_vec().into(),
        };
        let submit = Submit {
            messages: vec![message],
            config_seq: handle.config().sequence,
            permit: InflightPermit::default(),
            received: Instant::now(),
        };
        chain
            .submit
            .send(submit)
            .await
            .unwrap_or_else(|e| Err(SubmitError::Unavailable(e.to_string())))
    }

    fn height(&self, id: u64) -> u64 {
        self.node(id).handle.store().height()
    }

    async fn heights_reach(&self, ids: &[u64], height: u64) {
        self.run_until(&format!("nodes {ids:?} reach height {height}"), |c| {
            ids.iter().all(|&id| c.height(id) >= height)
        })
        .await;
    }

    /// Header hashes of node `id`'s chain, and the payloads of its envelopes.
    fn chain_of(&self, id: u64) -> (Vec<Bytes>, Vec<Bytes>) {
        let store = self.node(id).handle.store();
        let mut hashes = Vec::new();
        let mut envelopes = Vec::new();
        for number in 0..store.height() {
            let block = store.block(number).expect("read").expect("block");
            hashes.push(blockutil::header_hash(
                block.header.as_ref().expect("header"),
            ));
            if number > 0 {
                envelopes.extend(blockutil::entries(&block).iter().cloned());
            }
        }
        (hashes, envelopes)
    }

    /// Every node holds the same chain; returns its envelopes.
    fn same_chain_everywhere(&self) -> Vec<Bytes> {
        let (first, envelopes) = self.chain_of(1);
        for id in 2..=self.nodes.len() as u64 {
            assert_eq!(self.chain_of(id).0, first, "node {id} has another chain");
        }
        envelopes
    }
}

fn payload_counts(envelopes: &[Bytes]) -> HashMap<Bytes, usize> {
    let mut counts = HashMap::new();
    for envelope in envelopes {
        *counts.entry(envelope.clone()).or_insert(0) += 1;
    }
    counts
}

#[actix_rt::test]
async fn three_nodes_elect_a_leader_and_a_follower_forwards_to_it() {
    let cluster = Cluster::start(3, 1, 5);
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|&id| id != leader).expect("follower");
    assert_eq!(cluster.role(follower), ChainRole::Follower);

    cluster
        .submit(follower, "via follower")
        .await
        .expect("forwarded");
    cluster.submit(leader, "via leader").await.expect("ordered");
    cluster.heights_reach(&[1, 2, 3], 3).await;
    let envelopes = cluster.same_chain_everywhere();
    assert_eq!(envelopes.len(), 2);

    // Every written block carries the etcdraft block metadata and the
    // writer's signature.
    let store = cluster.node(follower).handle.store();
    let block = store.block(2).expect("read").expect("block 2");
    let raw = blockutil::consenter_metadata(&block).expect("consenter metadata");
    let metadata = crate::fabric::protos::etcdraft::BlockMetadata::decode(raw).expect("decode");
    assert_eq!(metadata.consenter_ids, vec![1, 2, 3]);
    assert_eq!(metadata.next_consenter_id, 4);
    assert!(metadata.raft_index > 1);
}

#[actix_rt::test]
async fn with_no_leader_a_submission_is_refused() {
    let cluster = Cluster::start(3, 1, 5);
    let leader = cluster.leader().await;
    // A node cut off from the others cannot keep or win leadership.
    cluster.network.isolate(leader);
    cluster
        .run_until("the old leader steps down", |c| {
            c.role(leader) != ChainRole::Leader
        })
        .await;
    cluster
        .run_until("the isolated node knows no leader", |c| {
            c.leader_seen_by(leader).is_none()
        })
        .await;
    let refused = cluster.submit(leader, "nobody to order").await;
    assert!(
        matches!(&refused, Err(SubmitError::Unavailable(reason)) if reason.contains("no Raft leader")),
        "{refused:?}"
    );
}

#[actix_rt::test]
async fn a_partitioned_leader_steps_down_and_the_majority_goes_on() {
    let cluster = Cluster::start(3, 1, 5);
    let old = cluster.leader().await;
    cluster.submit(old, "before").await.expect("ordered");
    cluster.heights_reach(&[1, 2, 3], 2).await;

    cluster.network.isolate(old);
    let rest: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = cluster.leader_among(&rest).await;
    assert_ne!(new, old);
    cluster
        .run_until("the partitioned leader steps down", |c| {
            c.role(old) != ChainRole::Leader
        })
        .await;
    cluster.submit(new, "after").await.expect("ordered");
    cluster.heights_reach(&rest, 3).await;
    assert_eq!(cluster.height(old), 2, "the cut-off node wrote nothing");

    // Back in the cluster, the old leader catches up from the log.
    cluster.network.heal();
    cluster.heights_reach(&[1, 2, 3], 3).await;
    assert_eq!(cluster.same_chain_everywhere().len(), 2);
}

#[actix_rt::test]
async fn a_lagging_follower_catches_up_from_the_log() {
    let cluster = Cluster::start(3, 1, 5);
    let leader = cluster.leader().await;
    let lagging = (1..=3).find(|&id| id != leader).expect("follower");
    cluster.network.isolate(lagging);
    for i in 0..5 {
        cluster
            .submit(leader, &format!("while away {i}"))
            .await
            .expect("ordered by the majority");
    }
    let others: Vec<u64> = (1..=3).filter(|&id| id != lagging).collect();
    cluster.heights_reach(&others, 6).await;
    assert_eq!(cluster.height(lagging), 1);
    cluster.network.heal();
    cluster.heights_reach(&[1, 2, 3], 6).await;
    assert_eq!(cluster.same_chain_everywhere().len(), 5);
}

#[actix_rt::test]
async fn a_pending_batch_reaches_the_new_leader_when_the_old_one_steps_down() {
    // Batches of up to 100 wait for the 1 s timeout: what the leader
    // answered SUCCESS sits in its cutter.
    let cluster = Cluster::start(3, 100, 5);
    let old = cluster.leader().await;
    for i in 0..3 {
        cluster
            .submit(old, &format!("pending {i}"))
            .await
            .expect("accepted");
    }
    assert_eq!(cluster.height(old), 1, "nothing cut yet");
    cluster.network.isolate(old);
    let rest: Vec<u64> = (1..=3).filter(|&id| id != old).collect();
    let new = cluster.leader_among(&rest).await;
    cluster
        .run_until("the old leader steps down", |c| {
            c.role(old) != ChainRole::Leader
        })
        .await;
    cluster.network.heal();
    cluster.heights_reach(&[1, 2, 3], 2).await;
    let envelopes = cluster.same_chain_everywhere();
    let counts = payload_counts(&envelopes);
    assert_eq!(envelopes.len(), 3, "each accepted envelope once");
    assert!(counts.values().all(|&n| n == 1));
    let _ = new;
}

#[actix_rt::test]
async fn max_inflight_blocks_holds_submissions_until_blocks_commit() {
    let cluster = Cluster::start(3, 1, 1);
    let leader = cluster.leader().await;
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    // Nothing the leader proposes can commit while it reaches no one.
    for &f in &followers {
        cluster.network.cut(leader, f);
    }
    let handle = cluster.node(leader).handle.clone();
    // Five at once, each a block of its own: one block may be in flight.
    let submissions: Vec<_> = (0..5)
        .map(|i| {
            let chain = handle.chain().expect("chain");
            let envelope = crate::fabric::envelopeutil::testing::transaction(
                CHANNEL,
                Bytes::from(format!("envelope {i}")),
            );
            let submit = Submit {
                messages: vec![OrderedMessage {
                    size: envelope.payload.len() + envelope.signature.len(),
                    envelope: envelope.encode_to_vec().into(),
                }],
                config_seq: handle.config().sequence,
                permit: InflightPermit::default(),
                received: Instant::now(),
            };
            tokio::spawn(async move { chain.submit.send(submit).await })
        })
        .collect();
    let waiting = handle.clone();
    crate::runtime::channel::testing::eventually("four submissions wait", move || {
        waiting.metrics().submissions_waiting.get() == 4
    })
    .await;
    cluster
        .run_until("the first block is in flight", |_| {
            handle.metrics().blocks_inflight.get() == 1
        })
        .await;
    assert_eq!(
        submissions.iter().filter(|s| s.is_finished()).count(),
        1,
        "only the first was admitted"
    );
    // Commits resume: each block written lets the next submission in.
    cluster.network.heal();
    cluster.heights_reach(&[1, 2, 3], 6).await;
    for submission in submissions {
        let answered = submission.await.expect("task").expect("mailbox");
        answered.expect("admitted");
    }
    assert_eq!(cluster.same_chain_everywhere().len(), 5);
}

#[actix_rt::test]
async fn a_restarted_tree_rejoins_from_its_wal_and_ledger() {
    let cluster = Cluster::start(3, 1, 5);
    let leader = cluster.leader().await;
    cluster.submit(leader, "one").await.expect("ordered");
    cluster.heights_reach(&[1, 2, 3], 2).await;
    // Any member of a tree failing restarts the whole tree from disk.
    let restarted = (1..=3).find(|&id| id != leader).expect("follower");
    let node = cluster.node(restarted);
    let generation = node.handle.restarts();
    node.supervisor
        .do_send(crate::runtime::channel::tree::ChildFailed {
            generation: u64::from(generation) + 1,
            child: "chain",
            reason: "injected".into(),
        });
    cluster
        .run_until("the tree restarts and serves", |c| {
            let h = &c.node(restarted).handle;
            h.restarts() > generation && matches!(h.state(), ChannelState::Active)
        })
        .await;
    let leader = cluster.leader().await;
    cluster.submit(leader, "two").await.expect("ordered");
    cluster.heights_reach(&[1, 2, 3], 3).await;
    let envelopes = cluster.same_chain_everywhere();
    assert_eq!(envelopes.len(), 2);
}

// The guard keeps other failpoint tests out for the whole test: a plain
// mutex held across awaits on purpose.
#[cfg(feature = "failpoints")]
#[allow(clippy::await_holding_lock)]
#[actix_rt::test]
async fn a_wal_write_fault_takes_one_node_down_until_its_disk_takes_writes() {
    use crate::runtime::faults::{self, points};
    let _only_this_test = faults::exclusive();
    let cluster = Cluster::start(3, 1, 5);
    let leader = cluster.leader().await;
    let follower = (1..=3).find(|&id| id != leader).expect("follower");
    cluster.submit(leader, "before").await.expect("ordered");
    cluster.heights_reach(&[1, 2, 3], 2).await;

    let scope = cluster.node(follower)._dir.path().display().to_string();
    faults::configure(points::RAFT_WAL_SYNC, &format!("return(EIO@{scope})")).expect("failpoint");
    cluster.submit(leader, "during").await.expect("ordered");
    cluster
        .run_until("the follower's WAL fault takes it down", |c| {
            matches!(
                c.node(follower).handle.state(),
                ChannelState::StorageFault(_)
            )
        })
        .await;
    let fault = cluster
        .node(follower)
        .handle
        .write_fault()
        .expect("a write fault");
    assert!(fault.contains("WAL"), "{fault}");
    // The two others are a majority: they go on.
    let others: Vec<u64> = (1..=3).filter(|&id| id != follower).collect();
    cluster
        .submit(leader, "still ordered")
        .await
        .expect("ordered");
    cluster.heights_reach(&others, 4).await;
    assert!(
        matches!(
            cluster.node(follower).handle.state(),
            ChannelState::StorageFault(_)
        ),
        "it stays down while its disk fails"
    );

    faults::configure(points::RAFT_WAL_SYNC, "off").expect("failpoint off");
    cluster
        .run_until("the follower resumes", |c| {
            c.node(follower).handle.state() == ChannelState::Active
        })
        .await;
    cluster.heights_reach(&[1, 2, 3], 4).await;
    let envelopes = cluster.same_chain_everywhere();
    assert_eq!(envelopes.len(), 3);
}
