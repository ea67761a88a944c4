//! ChannelSupervisor: starts a channel's actor tree, restarts it when a child
//! fails, and stops it cleanly.
//!
//! Mailbox:
//! - [`LedgerFailed`] (from the LedgerActor) and [`ChainFailed`] (from the
//!   ChainActor): stop the tree, then restart it after a back-off, rebuilt from
//!   the ledger. More than [`MAX_RESTARTS`] failures within [`RESTART_WINDOW`]
//!   mark the channel errored instead.
//! - [`Shutdown`] (from the registrar): halt the chain (pending batch written),
//!   then stop. Answered when durable.
//!
//! While the tree is down the channel handle has no chain: Broadcast answers
//! SERVICE_UNAVAILABLE and Deliver streams end with SERVICE_UNAVAILABLE.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use super::{ChannelHandle, ChannelState};
use crate::channelconfig::ChannelConfig;
use crate::consensus::{Abort, ChainFailed, ChainHandle, ChainSupport, Consenters, Halt};
use crate::ledger::{LedgerActor, LedgerFailed};

pub const MAX_RESTARTS: usize = 5;
pub const RESTART_WINDOW: Duration = Duration::from_secs(60);
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Halt the channel cleanly and stop the supervisor.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Shutdown;

pub struct ChannelSupervisor {
    handle: Arc<ChannelHandle>,
    consenters: Consenters,
    chain: Option<ChainHandle>,
    ledger: Option<Addr<LedgerActor>>,
    failures: VecDeque<Instant>,
    /// The one pending restart, if any: a new failure replaces it.
    pending_restart: Option<SpawnHandle>,
    shutting_down: bool,
}

impl ChannelSupervisor {
    pub fn new(handle: Arc<ChannelHandle>, consenters: Consenters) -> ChannelSupervisor {
        ChannelSupervisor {
            handle,
            consenters,
            chain: None,
            ledger: None,
            failures: VecDeque::new(),
            pending_restart: None,
            shutting_down: false,
        }
    }

    /// Starts ledger and chain from what is on disk.
    fn start_tree(&mut self, ctx: &mut Context<Self>) {
        self.pending_restart = None;
        let errored = matches!(self.handle.state(), ChannelState::Errored(_));
        if self.shutting_down || errored || self.chain.is_some() {
            return;
        }
        match self.try_start_tree(ctx) {
            Ok(()) => {
                tracing::info!(channel = %self.handle.id(), height = self.handle.store().height(), restarts = self.handle.restarts(), "channel started");
            }
            Err(reason) => {
                tracing::error!(channel = %self.handle.id(), %reason, "channel cannot start");
                self.handle.set_chain(None, ChannelState::Errored(reason));
            }
        }
    }

    fn try_start_tree(&mut self, ctx: &mut Context<Self>) -> Result<(), String> {
        let store = self.handle.store().clone();
        let tip = store.tip();
        let config_block = store
            .block(tip.last_config)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("last config block {} is missing", tip.last_config))?;
        let config = ChannelConfig::from_config_block(&config_block)
            .map_err(|e| format!("config block {}: {e}", tip.last_config))?;
        let consenter = self
            .consenters
            .get(&config.consensus_type)
            .map_err(|e| e.to_string())?;
        self.handle.warn_if_bound_below_batch(&config);
        self.handle.set_config(config);

        let ledger = LedgerActor::new(
            store,
            ctx.address().recipient(),
            self.handle.metrics().clone(),
        )
        .start();
        let support = ChainSupport {
            channel_id: self.handle.id().to_string(),
            config: self.handle.shared_config().clone(),
            tip,
            ledger: ledger.clone(),
            filters: self.handle.filters().clone(),
            policies: self.handle.policies().clone(),
            metrics: self.handle.metrics().clone(),
            on_failure: ctx.address().recipient(),
        };
        let chain = consenter.start_chain(support).map_err(|e| e.to_string())?;
        self.ledger = Some(ledger);
        self.chain = Some(chain.clone());
        self.handle.set_chain(Some(chain), ChannelState::Active);
        Ok(())
    }

    fn child_failed(&mut self, reason: String, ctx: &mut Context<Self>) {
        if let Some(chain) = self.chain.take() {
            chain.abort.do_send(Abort);
        }
        self.ledger = None;
        if let Some(pending) = self.pending_restart.take() {
            ctx.cancel_future(pending);
        }
        let errored = matches!(self.handle.state(), ChannelState::Errored(_));
        if self.shutting_down || errored {
            return;
        }
        let now = Instant::now();
        self.failures.push_back(now);
        while self
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > RESTART_WINDOW)
        {
            self.failures.pop_front();
        }
        if self.failures.len() > MAX_RESTARTS {
            tracing::error!(channel = %self.handle.id(), %reason, failures = self.failures.len(), "channel keeps failing; marked errored");
            self.handle.set_chain(None, ChannelState::Errored(reason));
            return;
        }
        let attempt = self.handle.count_restart();
        let exponent = (self.failures.len() as u32).saturating_sub(1).min(6);
        let backoff = (FIRST_BACKOFF * 2u32.pow(exponent)).min(MAX_BACKOFF);
        tracing::warn!(channel = %self.handle.id(), %reason, attempt, ?backoff, "channel failed; restarting");
        self.handle
            .set_chain(None, ChannelState::Restarting { attempt, reason });
        self.pending_restart = Some(ctx.run_later(backoff, |act, ctx| act.start_tree(ctx)));
    }
}

impl Actor for ChannelSupervisor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.start_tree(ctx);
    }
}

impl Handler<LedgerFailed> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: LedgerFailed, ctx: &mut Context<Self>) {
        self.child_failed(format!("ledger: {}", msg.reason), ctx);
    }
}

impl Handler<ChainFailed> for ChannelSupervisor {
    type Result = ();

    fn handle(&mut self, msg: ChainFailed, ctx: &mut Context<Self>) {
        self.child_failed(format!("chain: {}", msg.reason), ctx);
    }
}

impl Handler<Shutdown> for ChannelSupervisor {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Shutdown, _: &mut Context<Self>) -> Self::Result {
        self.shutting_down = true;
        let chain = self.chain.take();
        let halt = async move {
            if let Some(chain) = chain {
                let _ = chain.halt.send(Halt).await;
            }
        };
        Box::pin(halt.into_actor(self).map(|_, act, ctx| {
            act.ledger = None;
            act.handle.set_chain(None, ChannelState::Stopped);
            ctx.stop();
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channelconfig::genesis::GenesisProfile;

    use crate::channel::testing::{state_becomes, supervised};

    #[actix_rt::test]
    async fn a_failed_chain_is_restarted_from_the_ledger() {
        let (_dir, handle, supervisor) = supervised(GenesisProfile::embedded("c1", vec![]));
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        assert_eq!(handle.restarts(), 0);

        supervisor.do_send(LedgerFailed {
            channel: "c1".into(),
            reason: "disk on fire".into(),
        });
        state_becomes(&handle, |s| *s != ChannelState::Active).await;
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        assert_eq!(handle.restarts(), 1);
        assert!(handle.chain().is_ok());
    }

    #[actix_rt::test]
    async fn a_channel_that_keeps_failing_is_marked_errored() {
        let (_dir, handle, supervisor) = supervised(GenesisProfile::embedded("c1", vec![]));
        for _ in 0..=MAX_RESTARTS {
            supervisor.do_send(ChainFailed {
                channel: "c1".into(),
                reason: "boom".into(),
            });
        }
        state_becomes(&handle, |s| matches!(s, ChannelState::Errored(_))).await;
        // No restart that was already scheduled may bring it back.
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(
            matches!(handle.state(), ChannelState::Errored(_)),
            "{:?}",
            handle.state()
        );
        let err = handle.chain().err().expect("no chain");
        assert!(err.contains("errored"), "{err}");
        assert_eq!(handle.restarts(), MAX_RESTARTS as u32);
    }

    #[actix_rt::test]
    async fn an_unsupported_consensus_type_errors_the_channel() {
        let mut profile = GenesisProfile::embedded("c1", vec![]);
        profile.consensus_type = "bft-of-the-future".into();
        let (_dir, handle, _supervisor) = supervised(profile);
        match state_becomes(&handle, |s| matches!(s, ChannelState::Errored(_))).await {
            ChannelState::Errored(reason) => assert!(reason.contains("not supported"), "{reason}"),
            other => panic!("unexpected state {other:?}"),
        }
    }
}
