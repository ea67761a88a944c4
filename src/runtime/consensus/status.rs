//! The chain status watch: what a channel's chain is doing, published by the
//! chain (and by its supervisor while no chain runs), read by the channel
//! participation API, the metrics and `/healthz`.

use std::sync::Arc;

use tokio::sync::watch;

/// The chain's part in consensus right now (etcdraft's roles; solo is
/// always the leader).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChainRole {
    None,
    Follower,
    Candidate,
    Leader,
}

/// Whether this node is one of the channel's consenters (Fabric's
/// `consensusRelation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsensusRelation {
    Consenter,
    Follower,
}

/// Fabric's channel participation status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParticipationStatus {
    Active,
    Onboarding,
    Inactive,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainStatus {
    pub role: ChainRole,
    /// The leader's consenter id, when one is known.
    pub leader: Option<u64>,
    pub relation: ConsensusRelation,
    pub status: ParticipationStatus,
    /// Set while the consenter has lost its backend (Kafka's brokers), as
    /// Fabric's `Errored()`: Broadcast and Deliver answer SERVICE_UNAVAILABLE
    /// (Deliver's BEST_EFFORT requests excepted) until it is back.
    pub errored: Option<String>,
}

impl ChainRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChainRole::None => "none",
            ChainRole::Follower => "follower",
            ChainRole::Candidate => "candidate",
            ChainRole::Leader => "leader",
        }
    }
}

impl ConsensusRelation {
    pub fn as_str(self) -> &'static str {
        match self {
            ConsensusRelation::Consenter => "consenter",
            ConsensusRelation::Follower => "follower",
        }
    }
}

impl ParticipationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ParticipationStatus::Active => "active",
            ParticipationStatus::Onboarding => "onboarding",
            ParticipationStatus::Inactive => "inactive",
            ParticipationStatus::Failed => "failed",
        }
    }
}

impl ChainStatus {
    /// No chain runs (starting, restarting, stopped).
    pub fn inactive() -> ChainStatus {
        ChainStatus {
            role: ChainRole::None,
            leader: None,
            relation: ConsensusRelation::Consenter,
            status: ParticipationStatus::Inactive,
            errored: None,
        }
    }

    /// The chain failed for good.
    pub fn failed() -> ChainStatus {
        ChainStatus {
            status: ParticipationStatus::Failed,
            ..ChainStatus::inactive()
        }
    }

    /// A consenter that orders by itself (solo).
    pub fn sole_leader() -> ChainStatus {
        ChainStatus {
            role: ChainRole::Leader,
            leader: None,
            relation: ConsensusRelation::Consenter,
            status: ParticipationStatus::Active,
            errored: None,
        }
    }

    /// A consenter whose every node orders the same stream (Kafka): no
    /// leader; `errored` while the stream cannot be reached.
    pub fn ordering(errored: Option<String>) -> ChainStatus {
        ChainStatus {
            role: ChainRole::None,
            leader: None,
            relation: ConsensusRelation::Consenter,
            status: ParticipationStatus::Active,
            errored,
        }
    }
}

/// Publishes a channel's chain status. Clones publish to the same watch.
#[derive(Clone)]
pub struct StatusPublisher(Arc<watch::Sender<ChainStatus>>);

impl StatusPublisher {
    pub fn new() -> StatusPublisher {
        StatusPublisher(Arc::new(watch::channel(ChainStatus::inactive()).0))
    }

    /// Publishes `status` (readers wake only if it changed).
    pub fn publish(&self, status: ChainStatus) {
        self.0.send_if_modified(|current| {
            let changed = *current != status;
            *current = status;
            changed
        });
    }

    pub fn current(&self) -> ChainStatus {
        self.0.borrow().clone()
    }

    pub fn subscribe(&self) -> watch::Receiver<ChainStatus> {
        self.0.subscribe()
    }
}

impl Default for StatusPublisher {
    fn default() -> Self {
        StatusPublisher::new()
    }
}
