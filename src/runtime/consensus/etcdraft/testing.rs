//! An in-memory network for etcdraft chains in one process: every node's
//! chain connects to the same [`MemoryNetwork`], which delivers Raft
//! messages and forwarded submissions straight to the other chains'
//! mailboxes, and can cut nodes off (partitions) and drop messages.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

use futures::future::BoxFuture;
use futures::FutureExt;

use super::transport::{
    ChainInbox, ForwardedSubmit, RaftPeer, RaftTransport, Step, TransportError, TransportEvent,
    TransportFactory,
};
use crate::fabric::protos::orderer::SubmitRequest;
use crate::runtime::consensus::SubmitError;

#[derive(Default)]
struct State {
    inboxes: HashMap<(String, u64), ChainInbox>,
    /// Nodes cut off from every other node.
    isolated: HashSet<u64>,
    /// Links cut in one direction: (from, to).
    cut: HashSet<(u64, u64)>,
    delivered: u64,
    dropped: u64,
}

/// Shared by every node of a test cluster. Clones are the same network.
#[derive(Clone, Default)]
pub struct MemoryNetwork(Arc<Mutex<State>>);

impl MemoryNetwork {
    pub fn new() -> MemoryNetwork {
        MemoryNetwork::default()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Cuts `node` off from every other node, both ways.
    pub fn isolate(&self, node: u64) {
        self.state().isolated.insert(node);
    }

    /// Cuts the link from `from` to `to` only.
    pub fn cut(&self, from: u64, to: u64) {
        self.state().cut.insert((from, to));
    }

    /// Every node reaches every other again.
    pub fn heal(&self) {
        let mut state = self.state();
        state.isolated.clear();
        state.cut.clear();
    }

    pub fn dropped(&self) -> u64 {
        self.state().dropped
    }

    pub fn delivered(&self) -> u64 {
        self.state().delivered
    }

    /// Where a message from `from` to `to` arrives, if the link is up.
    fn route(&self, channel: &str, from: u64, to: u64) -> Option<ChainInbox> {
        let mut state = self.state();
        let up = !state.isolated.contains(&from)
            && !state.isolated.contains(&to)
            && !state.cut.contains(&(from, to));
        let inbox = up
            .then(|| state.inboxes.get(&(channel.to_string(), to)).cloned())
            .flatten();
        match inbox {
            Some(_) => state.delivered += 1,
            None => state.dropped += 1,
        }
        inbox
    }
}

impl TransportFactory for MemoryNetwork {
    fn connect(
        &self,
        channel: &str,
        self_id: u64,
        _: &[RaftPeer],
        inbox: ChainInbox,
    ) -> Result<Box<dyn RaftTransport>, TransportError> {
        self.state()
            .inboxes
            .insert((channel.to_string(), self_id), inbox.clone());
        Ok(Box::new(MemoryTransport {
            network: self.clone(),
            channel: channel.to_string(),
            self_id,
            own: inbox,
        }))
    }
}

struct MemoryTransport {
    network: MemoryNetwork,
    channel: String,
    self_id: u64,
    own: ChainInbox,
}

impl RaftTransport for MemoryTransport {
    fn send(&self, message: raft::eraftpb::Message) {
        let to = message.to;
        match self.network.route(&self.channel, self.self_id, to) {
            Some(inbox) => inbox.step.do_send(Step {
                from: self.self_id,
                message,
            }),
            None => self.own.events.do_send(TransportEvent::Unreachable(to)),
        }
    }

    fn forward(
        &self,
        leader: u64,
        request: SubmitRequest,
    ) -> BoxFuture<'static, Result<(), SubmitError>> {
        let Some(inbox) = self.network.route(&self.channel, self.self_id, leader) else {
            return futures::future::ready(Err(SubmitError::Unavailable(format!(
                "forwarding to the leader failed: node {leader} is unreachable"
            ))))
            .boxed();
        };
        let from = self.self_id;
        async move {
            inbox
                .submit
                .send(ForwardedSubmit { from, request })
                .await
                .unwrap_or_else(|e| {
                    Err(SubmitError::Unavailable(format!(
                        "forwarding to the leader failed: {e}"
                    )))
                })
        }
        .boxed()
    }
}

impl Drop for MemoryTransport {
    fn drop(&mut self) {
        let mut state = self.network.state();
        let key = (self.channel.clone(), self.self_id);
        // A restarted chain may have connected again already: only remove our own.
        if state
            .inboxes
            .get(&key)
            .is_some_and(|inbox| inbox.step == self.own.step)
        {
            state.inboxes.remove(&key);
        }
    }
}
