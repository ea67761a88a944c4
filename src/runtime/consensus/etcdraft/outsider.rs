//! The chain of an etcdraft channel this node is not a consenter of. Fabric
//! would follow the channel by pulling blocks from its consenters
//! (`consensusRelation` "follower"); until block pulling arrives, the node
//! keeps the channel, reports it as a follower that is onboarding, and
//! refuses to order.

use actix::prelude::*;

use crate::runtime::channel::tree::ChildGuard;
use crate::runtime::consensus::{
    Abort, ChainHandle, ChainRole, ChainStatus, ChainSupport, Configure, ConsensusRelation, Halt,
    ParticipationStatus, Submit, SubmitError,
};

pub struct Outsider {
    channel_id: String,
    _guard: ChildGuard,
}

pub fn start(support: ChainSupport) -> ChainHandle {
    support.status.publish(ChainStatus {
        role: ChainRole::None,
        leader: None,
        relation: ConsensusRelation::Follower,
        status: ParticipationStatus::Onboarding,
        errored: None,
    });
    let addr = Outsider {
        channel_id: support.channel_id,
        _guard: support.tree.member("chain"),
    }
    .start();
    ChainHandle::of(&addr)
}

impl Outsider {
    fn refusal(&self) -> SubmitError {
        SubmitError::Unavailable(format!(
            "this node is not a consenter of channel {}: it does not order it",
            self.channel_id
        ))
    }
}

impl Actor for Outsider {
    type Context = Context<Self>;
}

crate::counted_handlers!(Outsider: Submit, Configure);

impl Handler<Submit> for Outsider {
    type Result = Result<(), SubmitError>;

    fn handle(&mut self, _: Submit, _: &mut Context<Self>) -> Self::Result {
        Err(self.refusal())
    }
}

impl Handler<Configure> for Outsider {
    type Result = Result<(), SubmitError>;

    fn handle(&mut self, _: Configure, _: &mut Context<Self>) -> Self::Result {
        Err(self.refusal())
    }
}

impl Handler<Halt> for Outsider {
    type Result = ();

    fn handle(&mut self, _: Halt, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}

impl Handler<Abort> for Outsider {
    type Result = ();

    fn handle(&mut self, _: Abort, ctx: &mut Context<Self>) {
        ctx.stop();
    }
}
