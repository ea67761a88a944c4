//! Sending to actors of a channel's tree without losing anything silently.
//!
//! actix's `do_send` drops a message whose actor is gone and says nothing:
//! envelopes answered SUCCESS would vanish. [`post`] says so instead, and the
//! sender reports the tree failed.

use actix::prelude::*;

/// The receiving actor is gone: the message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the actor's mailbox is closed")]
pub struct Gone;

/// Puts `message` in the mailbox behind `recipient`, or says the actor is gone.
pub fn post<M>(recipient: &Recipient<M>, message: M) -> Result<(), Gone>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    match recipient.try_send(message) {
        Ok(()) => Ok(()),
        // Past the mailbox's nominal capacity: actix queues it all the same,
        // and every bound that matters is explicit (in-flight room).
        Err(SendError::Full(message)) => {
            recipient.do_send(message);
            Ok(())
        }
        Err(SendError::Closed(_)) => Err(Gone),
    }
}

/// As [`post`], to an actor's address.
pub fn post_to<A, M>(addr: &Addr<A>, message: M) -> Result<(), Gone>
where
    A: Actor<Context = Context<A>> + Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match addr.try_send(message) {
        Ok(()) => Ok(()),
        Err(SendError::Full(message)) => {
            addr.do_send(message);
            Ok(())
        }
        Err(SendError::Closed(_)) => Err(Gone),
    }
}
