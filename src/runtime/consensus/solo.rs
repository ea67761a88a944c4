//! The solo consenter: one orderer, the order of arrival is the order.
//!
//! ChainActor (solo) mailbox:
//! - [`Submit`] (from Broadcast): re-validate if the config moved on (off the
//!   actor thread), pass the messages to the CutterActor; answered once they
//!   are in its mailbox (SUCCESS), Unavailable when halting.
//! - [`Configure`] (from Broadcast): a CONFIG envelope, checked again if the
//!   config moved on since it was validated; the CutterActor isolates it in a
//!   block of its own. Until the LedgerActor has written that block and
//!   published its config, the chain admits nothing more: later submissions
//!   wait (their answers are held, which is backpressure), then are judged
//!   under the new config. This is what an etcdraft leader does with a config
//!   block in flight.
//! - [`BatchCut`] (from the CutterActor): make the next block (a config block
//!   for a config batch) and send it to the LedgerActor; the batch's in-flight
//!   room is held under the block's number and released when the ledger
//!   height passes it.
//! - [`BatchTimeoutExpired`] (from the CutterActor): cut the pending batch.
//! - [`Drained`] (from the CutterActor): after a halt, wait for the ledger to
//!   make everything durable, answer the halt, stop.
//! - [`Halt`] / [`Abort`] (from the ChannelSupervisor).
//! - Streams: the ledger height (releases in-flight room) and the config
//!   watch (ends a config in flight).

use std::collections::VecDeque;
use std::sync::Arc;

use actix::prelude::*;
use bytes::Bytes;
use tokio::sync::{oneshot, watch};
use tokio_stream::wrappers::WatchStream;

use super::revalidation::{recheck_config, revalidate};
use super::{
    answer_later, Abort, BlockCreator, ChainHandle, ChainStatus, ChainSupport, Configure,
    Consenter, Halt, InflightPermit, NodeResources, PermitsByBlock, StartChain, Submit,
    SubmitError,
};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::PolicyEvaluator;
use crate::runtime::blockcutter::{
    BatchCut, BatchTimeoutExpired, CutPending, CutterActor, CutterHandle, CutterOwner, Drain,
    Drained, Ordered, OrderedConfig, OrderedMessage,
};
use crate::runtime::channel::mailbox::Gone;
use crate::runtime::channel::tree::ChildGuard;
use crate::runtime::ledger::LedgerHandle;
use crate::runtime::metrics::ChannelMetrics;
use crate::runtime::msgprocessor::RuleSet;
use crate::security::signer::SigningIdentity;

/// Consensus type name.
pub const SOLO: &str = crate::fabric::channelconfig::genesis::SOLO;

pub struct SoloConsenter;

impl Consenter for SoloConsenter {
    fn consensus_type(&self) -> &'static str {
        SOLO
    }

    fn start_chain(&self, support: ChainSupport, node: Arc<NodeResources>) -> StartChain {
        let addr = SoloChain::create(|ctx| SoloChain::new(support, &node, ctx));
        Box::pin(async move { Ok(ChainHandle::of(&addr)) })
    }
}

type Answer = oneshot::Sender<Result<(), SubmitError>>;

/// A submission waiting to be admitted, with whom to answer.
enum Admission {
    Submit(Submit, Answer),
    Configure(Configure, Answer),
}

pub struct SoloChain {
    channel_id: String,
    /// The config of the last config block written.
    config: watch::Receiver<Arc<ChannelConfig>>,
    filters: Arc<RuleSet>,
    policies: Arc<dyn PolicyEvaluator>,
    metrics: Arc<ChannelMetrics>,
    ledger: LedgerHandle,
    cutter: CutterHandle,
    creator: BlockCreator,
    /// Signs the CONFIG envelopes the chain makes again.
    signer: Arc<SigningIdentity>,
    /// In-flight room of blocks made and not yet written.
    permits: PermitsByBlock,
    height: watch::Receiver<u64>,
    /// The sequence of a config ordered and not yet written.
    config_in_flight: Option<u64>,
    /// Re-validation runs off the actor thread; admission waits for it.
    revalidating: bool,
    /// Submissions not yet admitted, in arrival order.
    waiting: VecDeque<Admission>,
    /// Set once a halt began: who waits for it to complete.
    halt_waiters: Option<Vec<oneshot::Sender<()>>>,
    guard: ChildGuard,
}

impl SoloChain {
    fn new(support: ChainSupport, node: &NodeResources, ctx: &mut Context<Self>) -> SoloChain {
        let config = support.config.borrow().clone();
        let cutter = CutterActor::new(
            config.batch_size,
            config.batch_timeout,
            CutterOwner::of(&ctx.address(), &support.metrics.chain),
            node.clock.clone(),
        )
        .in_tree(support.tree.member("cutter"));
        let cutter = CutterHandle::start(cutter, &support.metrics.cutter);
        // Published before the chain is handed back, so the channel is never
        // active while its status says otherwise.
        support.status.publish(ChainStatus::sole_leader());
        SoloChain {
            channel_id: support.channel_id,
            creator: BlockCreator::new(&support.tip, node.signer.clone()),
            signer: node.signer.clone(),
            config: support.config,
            filters: support.filters,
            policies: support.policies,
            metrics: support.metrics,
            ledger: support.ledger,
            cutter,
            permits: PermitsByBlock::default(),
            height: support.store.subscribe(),
            config_in_flight: None,
            revalidating: false,
            waiting: VecDeque::new(),
            halt_waiters: None,
            guard: support.tree.member("chain"),
        }
    }

    fn halting(&self) -> bool {
        self.halt_waiters.is_some()
    }

    fn unavailable(&self) -> SubmitError {
        SubmitError::Unavailable(format!("channel {} is halting", self.channel_id))
    }

    /// Admits waiting submissions in order, until one must wait again.
    fn admit(&mut self, ctx: &mut Context<Self>) {
        if self.halting() {
            for waiting in std::mem::take(&mut self.waiting) {
                let (Admission::Submit(_, answer) | Admission::Configure(_, answer)) = waiting;
                let _ = answer.send(Err(self.unavailable()));
            }
            return;
        }
        while !self.revalidating && self.config_in_flight.is_none() {
            let Some(next) = self.waiting.pop_front() else {
                return;
            };
            match next {
                Admission::Submit(submit, answer) => self.admit_submit(submit, answer, ctx),
                Admission::Configure(configure, answer) => {
                    self.admit_configure(configure, answer, ctx)
                }
            }
        }
    }

    fn admit_submit(&mut self, msg: Submit, answer: Answer, ctx: &mut Context<Self>) {
        let config = self.config.borrow().clone();
        if msg.config_seq >= config.sequence {
            let outcome = self.order(msg.messages, msg.permit, msg.received, ctx);
            let _ = answer.send(outcome);
            return;
        }
        // Validated under an older config: the second filter pass, off the
        // actor thread (signature checks are CPU work).
        self.revalidating = true;
        let filters = self.filters.clone();
        let channel = self.channel_id.clone();
        let Submit {
            messages,
            mut permit,
            received,
            ..
        } = msg;
        let check =
            tokio::task::spawn_blocking(move || revalidate(&channel, &filters, &config, messages));
        ctx.spawn(check.into_actor(self).map(move |checked, act, ctx| {
            act.revalidating = false;
            let outcome = match checked {
                // A halt began meanwhile: the cutter is draining; nothing more goes in.
                _ if act.halting() => Err(act.unavailable()),
                Ok((kept, dropped, dropped_bytes)) => {
                    drop(permit.split(dropped, dropped_bytes));
                    act.order(kept, permit, received, ctx)
                }
                Err(e) => Err(SubmitError::Unavailable(format!(
                    "re-validation failed: {e}"
                ))),
            };
            let _ = answer.send(outcome);
            act.admit(ctx);
        }));
    }

    fn admit_configure(&mut self, msg: Configure, answer: Answer, ctx: &mut Context<Self>) {
        let current = self.config.borrow().clone();
        if msg.config_seq == current.sequence {
            let outcome = self.order_config(msg.message, msg.config, msg.permit, msg.received, ctx);
            let _ = answer.send(outcome);
            return;
        }
        // Another config came first: the update must hold against it.
        self.revalidating = true;
        let policies = self.policies.clone();
        let signer = self.signer.clone();
        let filters = self.filters.clone();
        let channel = self.channel_id.clone();
        let Configure {
            message,
            permit,
            received,
            ..
        } = msg;
        let check = tokio::task::spawn_blocking(move || {
            recheck_config(
                &channel,
                &current,
                policies.as_ref(),
                &signer,
                &filters,
                &message,
            )
        });
        ctx.spawn(check.into_actor(self).map(move |proposed, act, ctx| {
            act.revalidating = false;
            let outcome = match proposed {
                _ if act.halting() => Err(act.unavailable()),
                Ok(Ok((message, config))) => {
                    act.order_config(message, Arc::new(config), permit, received, ctx)
                }
                Ok(Err(refused)) => Err(refused),
                Err(e) => Err(SubmitError::Unavailable(format!(
                    "re-validation failed: {e}"
                ))),
            };
            let _ = answer.send(outcome);
            act.admit(ctx);
        }));
    }

    /// Hands messages to the cutter. SUCCESS only once they are in its mailbox.
    fn order(
        &mut self,
        messages: Vec<OrderedMessage>,
        permit: InflightPermit,
        received: std::time::Instant,
        ctx: &mut Context<Self>,
    ) -> Result<(), SubmitError> {
        if messages.is_empty() {
            return Ok(());
        }
        let ordered = Ordered {
            messages,
            permit,
            received,
        };
        let posted = self.cutter.ordered.post(ordered);
        posted.map_err(|gone| self.lost("cutter", gone, ctx))
    }

    fn order_config(
        &mut self,
        message: OrderedMessage,
        config: Arc<ChannelConfig>,
        permit: InflightPermit,
        received: std::time::Instant,
        ctx: &mut Context<Self>,
    ) -> Result<(), SubmitError> {
        tracing::info!(channel = %self.channel_id, sequence = config.sequence, "ordering config update");
        let ordered = OrderedConfig {
            message,
            permit,
            limits: config.batch_size,
            timeout: config.batch_timeout,
            received,
        };
        let moves_config = crate::fabric::blockutil::is_config_envelope(&ordered.message.envelope);
        let posted = self.cutter.config.post(ordered);
        posted.map_err(|gone| self.lost("cutter", gone, ctx))?;
        // Nothing more is admitted until the config block is written. A
        // system channel's channel creation (ORDERER_TRANSACTION) gets a
        // block of its own too, but leaves the config where it is: nothing
        // to wait for.
        if moves_config {
            self.config_in_flight = Some(config.sequence);
        }
        Ok(())
    }

    /// A child of the chain is gone: the tree must restart.
    fn lost(&mut self, child: &str, gone: Gone, ctx: &mut Context<Self>) -> SubmitError {
        self.lost_work(format!("the {child} is gone: {gone}"), ctx)
    }

    /// The chain cannot go on: its supervisor restarts the tree.
    fn lost_work(&mut self, reason: String, ctx: &mut Context<Self>) -> SubmitError {
        tracing::error!(channel = %self.channel_id, %reason, "solo chain cannot go on");
        self.guard.report_failure(reason.clone());
        self.halt_waiters.get_or_insert_with(Vec::new);
        ctx.stop();
        SubmitError::Unavailable(format!("channel {}: {reason}", self.channel_id))
    }

    fn wait_for_admission(&mut self, admission: Admission, ctx: &mut Context<Self>) {
        self.waiting.push_back(admission);
        self.admit(ctx);
    }
}

impl Actor for SoloChain {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.add_stream(WatchStream::new(self.height.clone()));
        ctx.add_stream(WatchStream::new(self.config.clone()));
        tracing::info!(channel = %self.channel_id, next_block = self.creator.next_number(), "solo chain started");
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        self.cutter.stop();
        for admission in self.waiting.drain(..) {
            let (Admission::Submit(_, answer) | Admission::Configure(_, answer)) = admission;
            drop(answer);
        }
    }
}

/// The ledger height moved: release the room of the blocks written.
impl StreamHandler<u64> for SoloChain {
    fn handle(&mut self, height: u64, _: &mut Context<Self>) {
        self.permits.release_below(height);
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

/// A config block was written: admission goes on under its config.
impl StreamHandler<Arc<ChannelConfig>> for SoloChain {
    fn handle(&mut self, config: Arc<ChannelConfig>, ctx: &mut Context<Self>) {
        if self
            .config_in_flight
            .is_some_and(|sequence| config.sequence >= sequence)
        {
            self.config_in_flight = None;
            self.admit(ctx);
        }
    }

    fn finished(&mut self, _: &mut Context<Self>) {}
}

crate::counted_handlers!(SoloChain: Submit, Configure, BatchCut, BatchTimeoutExpired, Drained);

impl Handler<Submit> for SoloChain {
    type Result = Response<Result<(), SubmitError>>;

    fn handle(&mut self, msg: Submit, ctx: &mut Context<Self>) -> Self::Result {
        if self.halting() {
            return Response::reply(Err(self.unavailable()));
        }
        if self.waiting.is_empty() && !self.revalidating && self.config_in_flight.is_none() {
            let config_seq = self.config.borrow().sequence;
            if msg.config_seq >= config_seq {
                // The common case, answered at once.
                return Response::reply(self.order(msg.messages, msg.permit, msg.received, ctx));
            }
        }
        let (answer, answered) = oneshot::channel();
        self.wait_for_admission(Admission::Submit(msg, answer), ctx);
        answer_later(answered)
    }
}

impl Handler<Configure> for SoloChain {
    type Result = Response<Result<(), SubmitError>>;

    fn handle(&mut self, msg: Configure, ctx: &mut Context<Self>) -> Self::Result {
        if self.halting() {
            return Response::reply(Err(self.unavailable()));
        }
        let (answer, answered) = oneshot::channel();
        self.wait_for_admission(Admission::Configure(msg, answer), ctx);
        answer_later(answered)
    }
}

impl Handler<BatchCut> for SoloChain {
    type Result = ();

    fn handle(&mut self, msg: BatchCut, ctx: &mut Context<Self>) {
        // Making the block reads every byte of the batch (the data hash) and
        // signs it: off the actor thread. The chain waits for it (its mailbox
        // pauses, the thread does not), so blocks keep their order.
        // Only a CONFIG envelope makes a config block (LAST_CONFIG names it).
        let is_config = msg.is_config
            && msg
                .batch
                .iter()
                .all(|e| crate::fabric::blockutil::is_config_envelope(e));
        let next = self.creator.next_block(is_config);
        let number = next.number();
        let batch = msg.batch;
        let making = tokio::task::spawn_blocking(move || next.make(batch, Bytes::new()));
        let (permit, received) = (msg.permit, msg.received);
        ctx.wait(making.into_actor(self).map(move |made, act, ctx| {
            let block = match made {
                Ok(Ok(block)) => block,
                Ok(Err(e)) => {
                    let _ = act.lost_work(format!("signing block {number} failed: {e}"), ctx);
                    return;
                }
                Err(e) => {
                    let _ = act.lost_work(format!("making block {number} failed: {e}"), ctx);
                    return;
                }
            };
            act.creator.made(&block);
            act.permits.hold(number, permit);
            act.metrics.blocks_inflight.inc();
            if let Err(gone) = act.ledger.append(block, received) {
                act.metrics.blocks_inflight.dec();
                let _ = act.lost("ledger", gone, ctx);
            }
        }));
    }
}

impl Handler<BatchTimeoutExpired> for SoloChain {
    type Result = ();

    fn handle(&mut self, msg: BatchTimeoutExpired, ctx: &mut Context<Self>) {
        let cut = CutPending {
            timer: Some(msg.timer),
        };
        if let Err(gone) = self.cutter.cut.post(cut) {
            let _ = self.lost("cutter", gone, ctx);
        }
    }
}

impl Handler<Halt> for SoloChain {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) -> Self::Result {
        let (reply, done) = oneshot::channel();
        match self.halt_waiters.as_mut() {
            Some(waiters) => waiters.push(reply),
            None => {
                self.halt_waiters = Some(vec![reply]);
                // Whatever waits for admission is refused; what was admitted is written.
                self.admit(ctx);
                if self.cutter.drain.post(Drain).is_err() {
                    ctx.stop();
                }
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
        let ledger = self.ledger.clone();
        let durable = async move { ledger.wait_durable().await };
        ctx.spawn(durable.into_actor(self).map(|result, act, ctx| {
            match result {
                Ok(height) => {
                    tracing::info!(channel = %act.channel_id, height, "solo chain halted; pending batch written")
                }
                Err(reason) => {
                    tracing::error!(channel = %act.channel_id, %reason, "pending batch could not be written on halt");
                    act.guard.report_failure(format!("halt: {reason}"));
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

/// Fault injection for tests: the chain panics in a handler, as a bug would.
#[cfg(test)]
#[derive(Message)]
#[rtype(result = "()")]
pub struct InjectPanic;

#[cfg(test)]
impl Handler<InjectPanic> for SoloChain {
    type Result = ();

    fn handle(&mut self, _: InjectPanic, _: &mut Context<Self>) {
        panic!("fault injected into the solo chain of {}", self.channel_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::channelconfig::keys;
    use crate::fabric::configtx::compute::{compute_update, config_update_envelope};
    use crate::fabric::configtx::{propose_config_update, ChannelPolicies};
    use crate::fabric::protos::common::Envelope;
    use crate::fabric::protos::orderer::BatchSize;
    use crate::runtime::channel::testing::{state_becomes, supervised};
    use crate::runtime::channel::ChannelState;
    use prost::Message as _;

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
        let proposed = propose_config_update(from, update, &ChannelPolicies).expect("valid");
        let envelope = proposed.envelope.encode_to_vec();
        Configure {
            message: OrderedMessage {
                size: envelope.len(),
                envelope: envelope.into(),
            },
            config_seq: from.sequence,
            config: Arc::new(proposed.config),
            permit: InflightPermit::default(),
            received: std::time::Instant::now(),
        }
    }

    #[test]
    fn the_second_pass_drops_normal_messages_once_in_maintenance_mode() {
        let block = GenesisProfile::embedded("c1", vec![]).genesis_block();
        let mut config = ChannelConfig::from_config_block(&block).expect("config");
        let envelope = crate::fabric::envelopeutil::testing::transaction(
            "c1",
            bytes::Bytes::from_static(b"tx"),
        )
        .encode_to_vec();
        let message = || OrderedMessage {
            size: envelope.len(),
            envelope: envelope.clone().into(),
        };
        let filters = RuleSet::standard();
        let (kept, dropped, _) = revalidate("c1", &filters, &config, vec![message()]);
        assert_eq!((kept.len(), dropped), (1, 0));
        config.orderer.consensus_state = crate::fabric::channelconfig::ConsensusState::Maintenance;
        let (kept, dropped, bytes) =
            revalidate("c1", &filters, &config, vec![message(), message()]);
        assert_eq!((kept.len(), dropped, bytes), (0, 2, 2 * envelope.len()));
    }

    #[actix_rt::test]
    async fn messages_and_updates_validated_under_an_older_config_are_checked_again() {
        let channel = supervised(GenesisProfile::embedded("c1", vec![]));
        let handle = channel.handle.clone();
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        let chain = handle.chain().expect("running");
        let genesis = handle.config();

        // Two updates both validated at sequence 0, as two Broadcast streams
        // racing would make them. The first wins; the second is checked again
        // against sequence 1, where its read of BatchSize is stale.
        let first = configure(&genesis, &batch_update(&genesis, 10, 1000));
        let second = configure(&genesis, &batch_update(&genesis, 20, 1000));
        assert_eq!(chain.configure.send(first).await.expect("sent"), Ok(()));
        // The config moves when its block is written, not before.
        let mut configs = handle.subscribe_config();
        tokio::time::timeout(
            std::time::Duration::from_secs(10),
            configs.wait_for(|c| c.sequence == 1),
        )
        .await
        .expect("the config block is written")
        .expect("config watch");
        crate::runtime::channel::testing::height_reaches(&handle, 2).await;
        let answer = chain.configure.send(second).await.expect("sent");
        assert!(
            matches!(&answer, Err(SubmitError::Invalid(reason)) if reason.contains("version")),
            "{answer:?}"
        );

        // A 2 KB message validated at sequence 0 no longer fits AbsoluteMaxBytes 1000.
        let big = OrderedMessage {
            envelope: crate::fabric::envelopeutil::testing::transaction(
                "c1",
                Bytes::from(vec![7u8; 2048]),
            )
            .encode_to_vec()
            .into(),
            size: 2100,
        };
        let small = OrderedMessage {
            envelope: crate::fabric::envelopeutil::testing::transaction(
                "c1",
                Bytes::from_static(b"ok"),
            )
            .encode_to_vec()
            .into(),
            size: 100,
        };
        let submit = Submit {
            messages: vec![big, small],
            config_seq: 0,
            permit: InflightPermit::default(),
            received: std::time::Instant::now(),
        };
        assert_eq!(chain.submit.send(submit).await.expect("sent"), Ok(()));
        chain.halt.send(Halt).await.expect("halted");
        let store = handle.store();
        assert_eq!(store.height(), 3, "the config block, then one block");
        let last = store.block(2).expect("read").expect("block 2");
        assert_eq!(
            crate::fabric::blockutil::entries(&last).len(),
            1,
            "only the small one"
        );
        assert_eq!(crate::fabric::blockutil::last_config_index(&last), Some(1));
    }
}

#[cfg(test)]
mod orderer_transactions {
    use super::*;
    use crate::fabric::blockutil;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::protos::common::HeaderType;
    use crate::runtime::channel::testing::{state_becomes, supervised};
    use crate::runtime::channel::ChannelState;
    use prost::Message as _;

    fn message(kind: HeaderType, data: &'static [u8]) -> OrderedMessage {
        let envelope =
            crate::tools::client::envelope::envelope("c1", kind, Bytes::from_static(data))
                .encode_to_vec();
        OrderedMessage {
            size: envelope.len(),
            envelope: envelope.into(),
        }
    }

    /// A channel creation on a system channel is alone in its block, leaves
    /// LAST_CONFIG where it was, and the chain goes on admitting at once:
    /// the config it carries does not move the channel's.
    #[actix_rt::test]
    async fn a_channel_creation_is_isolated_and_does_not_hold_admission() {
        let channel = supervised(GenesisProfile::embedded("c1", vec![]));
        let handle = channel.handle.clone();
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        let chain = handle.chain().expect("running");
        let current = handle.config();
        let submit = |data| Submit {
            messages: vec![message(HeaderType::EndorserTransaction, data)],
            config_seq: current.sequence,
            permit: InflightPermit::default(),
            received: std::time::Instant::now(),
        };
        assert_eq!(
            chain.submit.send(submit(b"before")).await.expect("sent"),
            Ok(())
        );
        let configure = Configure {
            message: message(HeaderType::OrdererTransaction, b"creation"),
            config_seq: current.sequence,
            config: current.clone(),
            permit: InflightPermit::default(),
            received: std::time::Instant::now(),
        };
        assert_eq!(chain.configure.send(configure).await.expect("sent"), Ok(()));
        // Answered without waiting for a config block that never comes.
        assert_eq!(
            chain.submit.send(submit(b"after")).await.expect("sent"),
            Ok(())
        );
        chain.halt.send(Halt).await.expect("halted");
        let store = handle.store();
        assert_eq!(store.height(), 4, "genesis, before, the creation, after");
        let creation = store.block(2).expect("read").expect("block 2");
        assert_eq!(blockutil::entries(&creation).len(), 1);
        assert!(!blockutil::holds_channel_config(&creation));
        for number in 1..4 {
            let block = store.block(number).expect("read").expect("block");
            assert_eq!(
                blockutil::last_config_index(&block),
                Some(0),
                "block {number}"
            );
        }
        assert_eq!(handle.config().sequence, current.sequence);
    }
}

#[cfg(test)]
mod admission {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::runtime::channel::testing::{eventually, height_reaches, state_becomes, supervised};
    use crate::runtime::channel::ChannelState;
    use prost::Message as _;

    fn message(data: &'static [u8]) -> OrderedMessage {
        let envelope =
            crate::fabric::envelopeutil::testing::transaction("c1", Bytes::from_static(data))
                .encode_to_vec();
        OrderedMessage {
            size: envelope.len(),
            envelope: envelope.into(),
        }
    }

    #[actix_rt::test]
    async fn in_flight_room_is_released_when_the_height_passes_its_block() {
        let channel = supervised(GenesisProfile::embedded("c1", vec![]));
        let handle = channel.handle.clone();
        state_becomes(&handle, |s| *s == ChannelState::Active).await;
        let chain = handle.chain().expect("running");
        let messages = vec![message(b"a"), message(b"b")];
        let bytes: usize = messages.iter().map(|m| m.envelope.len()).sum();
        let permit = handle
            .inflight()
            .try_take_exact(2, bytes as u32)
            .expect("room");
        let submit = Submit {
            messages,
            config_seq: 0,
            permit,
            received: std::time::Instant::now(),
        };
        assert_eq!(chain.submit.send(submit).await.expect("sent"), Ok(()));
        // Pending in the cutter: the room is held until the batch timeout
        // cuts the block and the block is written.
        assert_eq!(handle.inflight().envelopes_held(), 2);
        eventually("the batch timer runs", || channel.clock.sleepers() > 0).await;
        channel.clock.advance(handle.config().batch_timeout);
        height_reaches(&handle, 2).await;
        let room = handle.inflight();
        eventually("room released once block 1 is written", || {
            room.envelopes_held() == 0 && room.bytes_held() == 0
        })
        .await;
    }
}
