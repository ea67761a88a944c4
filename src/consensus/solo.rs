//! The solo consenter: one orderer, the order of arrival is the order.
//!
//! ChainActor (solo) mailbox:
//! - [`Submit`] (from Broadcast): re-validate if the config moved on, pass the
//!   messages to the CutterActor; answered at once (SUCCESS) unless halting.
//! - [`Configure`] (from Broadcast): a CONFIG envelope. Checked again if the
//!   config moved on since it was validated; the channel's config moves to the
//!   new one at once (every later message is ordered under it) and the
//!   CutterActor isolates it in a block of its own.
//! - [`BatchCut`] (from the CutterActor): make the next block (a config block
//!   for a config batch), send it to the LedgerActor with the batch's in-flight
//!   permits.
//! - [`BatchTimeoutExpired`] (from the CutterActor): cut the pending batch.
//! - [`Drained`] (from the CutterActor): after a halt, wait for the ledger to
//!   make everything durable, answer the halt, stop.
//! - [`Halt`] / [`Abort`] (from the ChannelSupervisor).

use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use prost::Message as _;
use tokio::sync::oneshot;

use super::{
    Abort, BlockCreator, ChainFailed, ChainHandle, ChainSupport, Configure, ConsensusError,
    Consenter, Halt, Submit, SubmitError,
};
use crate::blockcutter::{
    BatchCut, BatchTimeoutExpired, CutPending, CutterActor, CutterOwner, Drain, Drained, Ordered,
    OrderedConfig, OrderedMessage,
};
use crate::channelconfig::{ChannelConfig, SharedConfig};
use crate::configtx::{self, PolicyEvaluator};
use crate::ledger::{AppendBlock, LedgerActor, Sync};
use crate::metrics::ChannelMetrics;
use crate::msgprocessor::RuleSet;
use crate::protos::common::Envelope;

/// Consensus type name.
pub const SOLO: &str = crate::channelconfig::genesis::SOLO;

pub struct SoloConsenter;

impl Consenter for SoloConsenter {
    fn consensus_type(&self) -> &'static str {
        SOLO
    }

    fn start_chain(&self, support: ChainSupport) -> Result<ChainHandle, ConsensusError> {
        let addr = SoloChain::create(|ctx| SoloChain::new(support, ctx));
        Ok(ChainHandle::of(&addr))
    }
}

pub struct SoloChain {
    channel_id: String,
    /// The config the next message is ordered under.
    config: Arc<ChannelConfig>,
    shared_config: SharedConfig,
    filters: Arc<RuleSet>,
    policies: Arc<dyn PolicyEvaluator>,
    metrics: Arc<ChannelMetrics>,
    ledger: Addr<LedgerActor>,
    cutter: Addr<CutterActor>,
    creator: BlockCreator,
    on_failure: Recipient<ChainFailed>,
    /// Set once a halt began: who waits for it to complete.
    halt_waiters: Option<Vec<oneshot::Sender<()>>>,
}

impl SoloChain {
    fn new(support: ChainSupport, ctx: &mut Context<Self>) -> SoloChain {
        let config = support.config.current();
        let cutter = CutterActor::new(
            config.batch_size,
            config.batch_timeout,
            CutterOwner::of(&ctx.address()),
            support.metrics.clone(),
        )
        .start();
        SoloChain {
            channel_id: support.channel_id,
            creator: BlockCreator::new(&support.tip),
            config,
            shared_config: support.config,
            filters: support.filters,
            policies: support.policies,
            metrics: support.metrics,
            ledger: support.ledger,
            cutter,
            on_failure: support.on_failure,
            halt_waiters: None,
        }
    }

    /// Second filter pass for messages validated under an older config.
    fn revalidate(&self, messages: Vec<OrderedMessage>) -> (Vec<OrderedMessage>, usize) {
        let before = messages.len();
        let kept: Vec<OrderedMessage> = messages
            .into_iter()
            .filter(|m| {
                let verdict = Envelope::decode(m.envelope.clone())
                    .map_err(|e| e.to_string())
                    .and_then(|env| {
                        self.filters
                            .apply(&env, m.envelope.len(), &self.config)
                            .map_err(|r| r.info)
                    });
                match verdict {
                    Ok(()) => true,
                    Err(reason) => {
                        tracing::warn!(channel = %self.channel_id, %reason, "message no longer valid under the new config; dropped");
                        false
                    }
                }
            })
            .collect();
        let dropped = before - kept.len();
        (kept, dropped)
    }
}

impl Actor for SoloChain {
    type Context = Context<Self>;

    fn started(&mut self, _: &mut Context<Self>) {
        tracing::info!(channel = %self.channel_id, next_block = self.creator.next_number(), "solo chain started");
    }
}

impl Handler<Submit> for SoloChain {
    type Result = Result<(), SubmitError>;

    fn handle(&mut self, msg: Submit, _: &mut Context<Self>) -> Self::Result {
        self.metrics.chain.handled();
        if self.halt_waiters.is_some() {
            return Err(SubmitError::Unavailable(format!(
                "channel {} is halting",
                self.channel_id
            )));
        }
        let Submit {
            messages,
            config_seq,
            mut permit,
            received,
        } = msg;
        let messages = if config_seq < self.config.sequence {
            let (kept, dropped) = self.revalidate(messages);
            if dropped > 0 {
                if let Some(p) = permit.as_mut() {
                    drop(p.split(dropped.min(p.num_permits())));
                }
            }
            kept
        } else {
            messages
        };
        self.metrics.cutter.sent();
        self.cutter.do_send(Ordered {
            messages,
            permit,
            received,
        });
        Ok(())
    }
}

impl Handler<Configure> for SoloChain {
    type Result = Result<(), SubmitError>;

    fn handle(&mut self, msg: Configure, _: &mut Context<Self>) -> Self::Result {
        self.metrics.chain.handled();
        if self.halt_waiters.is_some() {
            return Err(SubmitError::Unavailable(format!(
                "channel {} is halting",
                self.channel_id
            )));
        }
        let (message, config) = if msg.config_seq == self.config.sequence {
            (msg.message, msg.config)
        } else {
            // Another config came first: the update must hold against it.
            let proposed = configtx::last_update(&msg.message.envelope)
                .and_then(|update| {
                    configtx::propose_config_update(&self.config, &update, self.policies.as_ref())
                })
                .map_err(|e| {
                    tracing::warn!(channel = %self.channel_id, reason = %e, "config update no longer valid under the current config");
                    SubmitError::Invalid(format!("config update no longer valid: {e}"))
                })?;
            let envelope = proposed.envelope.encode_to_vec();
            let message = OrderedMessage {
                size: envelope.len(),
                envelope: envelope.into(),
            };
            (message, Arc::new(proposed.config))
        };
        tracing::info!(channel = %self.channel_id, sequence = config.sequence, "ordering config update");
        self.config = config.clone();
        self.shared_config.replace(config.clone());
        self.metrics.cutter.sent();
        self.cutter.do_send(OrderedConfig {
            message,
            permit: msg.permit,
            limits: config.batch_size,
            timeout: config.batch_timeout,
            received: msg.received,
        });
        Ok(())
    }
}

impl Handler<BatchCut> for SoloChain {
    type Result = ();

    fn handle(&mut self, msg: BatchCut, _: &mut Context<Self>) {
        self.metrics.chain.handled();
        let block = self
            .creator
            .create_next_block(msg.batch, msg.is_config, Bytes::new());
        self.metrics.ledger.sent();
        self.metrics.blocks_inflight.inc();
        self.ledger.do_send(AppendBlock {
            block,
            permit: msg.permit,
            received: msg.received,
        });
    }
}

impl Handler<BatchTimeoutExpired> for SoloChain {
    type Result = ();

    fn handle(&mut self, msg: BatchTimeoutExpired, _: &mut Context<Self>) {
        self.metrics.chain.handled();
        self.metrics.cutter.sent();
        self.cutter.do_send(CutPending {
            timer: Some(msg.timer),
        });
    }
}

impl Handler<Halt> for SoloChain {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Halt, _: &mut Context<Self>) -> Self::Result {
        let (reply, done) = oneshot::channel();
        match self.halt_waiters.as_mut() {
            Some(waiters) => waiters.push(reply),
            None => {
                self.halt_waiters = Some(vec![reply]);
                self.metrics.cutter.sent();
                self.cutter.do_send(Drain);
            }
        }
        Box::pin(async move {
            let _ = done.await;
        })
    }
}

impl Handler<Drained> for SoloChain {
    type Result = ();

    fn handle(&mut self, _: Drained, ctx: &mut Context<Self>) {
        self.metrics.chain.handled();
        self.metrics.ledger.sent();
        let sync = self.ledger.send(Sync);
        ctx.spawn(sync.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(Ok(height)) => {
                    tracing::info!(channel = %act.channel_id, height, "solo chain halted; pending batch written")
                }
                Ok(Err(reason)) => {
                    tracing::error!(channel = %act.channel_id, %reason, "pending batch could not be written on halt")
                }
                Err(e) => {
                    tracing::error!(channel = %act.channel_id, error = %e, "ledger gone during halt");
                    act.on_failure.do_send(ChainFailed {
                        channel: act.channel_id.clone(),
                        reason: e.to_string(),
                    });
                }
            }
            for waiter in act.halt_waiters.take().unwrap_or_default() {
                let _ = waiter.send(());
            }
            // Keep refusing submissions until the actor is gone.
            act.halt_waiters = Some(Vec::new());
            ctx.stop();
        }));
    }
}

impl Handler<Abort> for SoloChain {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        self.halt_waiters.get_or_insert_with(Vec::new);
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::testing::{state_becomes, supervised};
    use crate::channel::ChannelState;
    use crate::channelconfig::genesis::GenesisProfile;
    use crate::channelconfig::keys;
    use crate::configtx::compute::{compute_update, config_update_envelope};
    use crate::configtx::{propose_config_update, PolicyMustExist};
    use crate::protos::orderer::BatchSize;

    fn batch_update(from: &ChannelConfig, count: u32, absolute: u32) -> Envelope {
        let mut updated = from.config.clone();
        let value = updated
            .channel_group
            .as_mut()
            .and_then(|r| r.groups.get_mut(keys::ORDERER_GROUP))
            .and_then(|o| o.values.get_mut(keys::BATCH_SIZE))
            .expect("batch size");
        value.value = BatchSize {
            max_message_count: count,
            absolute_max_bytes: absolute,
            preferred_max_bytes: absolute,
        }
        .encode_to_vec()
        .into();
        let update = compute_update(&from.channel_id, &from.config, &updated).expect("update");
        config_update_envelope(&update)
    }

    fn configure(from: &ChannelConfig, update: &Envelope) -> Configure {
        let proposed = propose_config_update(from, update, &PolicyMustExist).expect("valid");
        let envelope = proposed.envelope.encode_to_vec();
        Configure {
            message: OrderedMessage {
                size: envelope.len(),
                envelope: envelope.into(),
            },
            config_seq: from.sequence,
            config: Arc::new(proposed.config),
            permit: None,
            received: std::time::Instant::now(),
        }
    }

    #[actix_rt::test]
    async fn messages_and_updates_validated_under_an_older_config_are_checked_again() {
        let (_dir, handle, _supervisor) = supervised(GenesisProfile::embedded("c1", vec![]));
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        let chain = handle.chain().expect("running");
        let genesis = handle.config();

        // Two updates both validated at sequence 0, as two Broadcast streams
        // racing would make them. The first wins; the second is checked again
        // against sequence 1, where its read of BatchSize is stale.
        let first = configure(&genesis, &batch_update(&genesis, 10, 1000));
        let second = configure(&genesis, &batch_update(&genesis, 20, 1000));
        assert_eq!(chain.configure.send(first).await.expect("sent"), Ok(()));
        assert_eq!(handle.config().sequence, 1);
        let answer = chain.configure.send(second).await.expect("sent");
        assert!(
            matches!(&answer, Err(SubmitError::Invalid(reason)) if reason.contains("version")),
            "{answer:?}"
        );

        // A 2 KB message validated at sequence 0 no longer fits AbsoluteMaxBytes 1000.
        let big = OrderedMessage {
            envelope: crate::client::envelope::transaction("c1", Bytes::from(vec![7u8; 2048]))
                .encode_to_vec()
                .into(),
            size: 2100,
        };
        let small = OrderedMessage {
            envelope: crate::client::envelope::transaction("c1", Bytes::from_static(b"ok"))
                .encode_to_vec()
                .into(),
            size: 100,
        };
        let submit = Submit {
            messages: vec![big, small],
            config_seq: 0,
            permit: None,
            received: std::time::Instant::now(),
        };
        assert_eq!(chain.submit.send(submit).await.expect("sent"), Ok(()));
        chain.halt.send(Halt).await.expect("halted");
        let store = handle.store();
        assert_eq!(store.height(), 3, "the config block, then one block");
        let last = store.block(2).expect("read").expect("block 2");
        assert_eq!(
            crate::blockutil::entries(&last).len(),
            1,
            "only the small one"
        );
        assert_eq!(crate::blockutil::last_config_index(&last), Some(1));
    }
}
