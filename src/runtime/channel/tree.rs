//! Membership of a channel's actor tree, one generation at a time.
//!
//! Every actor of a tree (ledger, chain, cutter, and whatever a consenter
//! adds) holds a [`ChildGuard`]; blocking work started by the tree (a ledger
//! write) holds a [`TreeToken`]. Both tell the supervisor when they are gone:
//!
//! - a child that stops while its supervisor did not stop it — a panic in a
//!   handler drops the actor with its guard — is a failure of the tree;
//! - the supervisor builds the next generation only once the last token of
//!   the old one is gone, so a restarted tree never runs beside the old one
//!   (no second writer of the ledger, no block written twice);
//! - every report names its generation, so news from an old tree is ignored.

use std::sync::Arc;

use actix::prelude::*;

/// A child of the tree stopped (by itself, by its supervisor, or by a panic).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ChildStopped {
    pub generation: u64,
    pub child: &'static str,
}

/// A child of the tree cannot go on.
#[derive(Message, Debug, Clone)]
#[rtype(result = "()")]
pub struct ChildFailed {
    pub generation: u64,
    pub child: &'static str,
    pub reason: String,
}

/// Every child and every piece of blocking work of a generation is gone.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct TreeStopped {
    pub generation: u64,
}

/// Where a tree's reports go.
#[derive(Clone)]
struct Reports {
    stopped: Recipient<ChildStopped>,
    failed: Recipient<ChildFailed>,
    tree_stopped: Recipient<TreeStopped>,
}

/// Alive while any part of one generation is.
struct Alive {
    generation: u64,
    reports: Reports,
}

impl Drop for Alive {
    fn drop(&mut self) {
        self.reports.tree_stopped.do_send(TreeStopped {
            generation: self.generation,
        });
    }
}

/// One generation of a channel's tree: what its members report through.
#[derive(Clone)]
pub struct TreeMembership {
    alive: Arc<Alive>,
}

impl TreeMembership {
    /// A new generation reporting to `supervisor`.
    pub fn new<A>(generation: u64, supervisor: &Addr<A>) -> TreeMembership
    where
        A: Actor<Context = Context<A>>
            + Handler<ChildStopped>
            + Handler<ChildFailed>
            + Handler<TreeStopped>,
    {
        TreeMembership {
            alive: Arc::new(Alive {
                generation,
                reports: Reports {
                    stopped: supervisor.clone().recipient(),
                    failed: supervisor.clone().recipient(),
                    tree_stopped: supervisor.clone().recipient(),
                },
            }),
        }
    }

    pub fn generation(&self) -> u64 {
        self.alive.generation
    }

    /// The guard an actor of the tree holds for its whole life.
    pub fn member(&self, child: &'static str) -> ChildGuard {
        ChildGuard {
            child,
            tree: self.clone(),
            retired: false,
        }
    }

    /// Keeps the generation alive while blocking work runs outside its actors.
    pub fn token(&self) -> TreeToken {
        TreeToken(self.alive.clone())
    }

    /// Tells the supervisor that `child` cannot go on.
    pub fn report_failure(&self, child: &'static str, reason: impl Into<String>) {
        self.reporter().report(child, reason);
    }

    /// A way to report failures of this generation that does not keep it alive.
    pub fn reporter(&self) -> FailureReporter {
        FailureReporter {
            generation: self.alive.generation,
            failed: self.alive.reports.failed.clone(),
        }
    }
}

/// Reports failures of one generation (held outside the tree, e.g. by the
/// chain handle Broadcast uses).
#[derive(Clone)]
pub struct FailureReporter {
    generation: u64,
    failed: Recipient<ChildFailed>,
}

impl FailureReporter {
    pub fn report(&self, child: &'static str, reason: impl Into<String>) {
        self.failed.do_send(ChildFailed {
            generation: self.generation,
            child,
            reason: reason.into(),
        });
    }
}

/// Held by an actor of the tree; its drop reports the actor stopped.
pub struct ChildGuard {
    child: &'static str,
    tree: TreeMembership,
    retired: bool,
}

impl ChildGuard {
    pub fn tree(&self) -> &TreeMembership {
        &self.tree
    }

    /// Reports that this child cannot go on.
    pub fn report_failure(&self, reason: impl Into<String>) {
        self.tree.report_failure(self.child, reason);
    }

    /// The child stops on purpose while the tree goes on (an etcdraft
    /// proposer when its node stops leading, the cutter its owner stopped):
    /// nothing is reported.
    pub fn retire(mut self) {
        self.retired = true;
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if self.retired {
            return;
        }
        self.tree.alive.reports.stopped.do_send(ChildStopped {
            generation: self.tree.alive.generation,
            child: self.child,
        });
    }
}

/// Keeps a generation alive (see [`TreeMembership::token`]).
pub struct TreeToken(#[allow(dead_code)] Arc<Alive>);
