//! Mailboxes of a channel's actors: counted, and never losing a message
//! silently.
//!
//! actix's `do_send` drops a message whose actor is gone and says nothing:
//! envelopes answered SUCCESS would vanish. [`Mailbox::post`] says so
//! instead, and the sender reports the tree failed.
//!
//! Every message sent through a [`Mailbox`] travels as [`Counted`] with a
//! ticket: counted as sent when posted, as handled when the actor takes it
//! (or as dropped if the actor is gone first), so the mailbox-depth metric
//! needs no bookkeeping in the actors. An actor takes counted messages with
//! one line: `counted_handlers!(MyActor: MessageA, MessageB);`.

use actix::dev::ToEnvelope;
use actix::prelude::*;

use crate::runtime::metrics::ActorMetrics;

/// The receiving actor is gone: the message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the actor's mailbox is closed")]
pub struct Gone;

/// A message on its way through a counted mailbox.
pub struct Counted<M> {
    message: M,
    ticket: Ticket,
}

impl<M: Message> Message for Counted<M> {
    type Result = M::Result;
}

impl<M> Counted<M> {
    /// The message, counted as handled.
    pub fn take(self) -> M {
        self.ticket.handled();
        self.message
    }
}

/// Counts one message: sent when made, handled or dropped when it ends.
struct Ticket {
    metrics: ActorMetrics,
    done: bool,
}

impl Ticket {
    fn new(metrics: &ActorMetrics) -> Ticket {
        metrics.sent();
        Ticket {
            metrics: metrics.clone(),
            done: false,
        }
    }

    fn handled(mut self) {
        self.done = true;
        self.metrics.handled();
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if !self.done {
            self.metrics.dropped();
        }
    }
}

/// Implements `Handler<Counted<M>>` for an actor that handles `M`: the
/// message is counted as handled, then handled as usual.
#[macro_export]
macro_rules! counted_handlers {
    ($actor:ty: $($message:ty),+ $(,)?) => {$(
        impl ::actix::Handler<$crate::runtime::channel::mailbox::Counted<$message>> for $actor {
            type Result = <$actor as ::actix::Handler<$message>>::Result;

            fn handle(
                &mut self,
                counted: $crate::runtime::channel::mailbox::Counted<$message>,
                ctx: &mut <$actor as ::actix::Actor>::Context,
            ) -> Self::Result {
                <$actor as ::actix::Handler<$message>>::handle(self, counted.take(), ctx)
            }
        }
    )+};
}

/// One kind of message to one actor, counted in that actor's metrics.
pub struct Mailbox<M>
where
    M: Message + Send,
    M::Result: Send,
{
    recipient: Recipient<Counted<M>>,
    metrics: ActorMetrics,
}

impl<M> Clone for Mailbox<M>
where
    M: Message + Send,
    M::Result: Send,
{
    fn clone(&self) -> Self {
        Mailbox {
            recipient: self.recipient.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

impl<M> Mailbox<M>
where
    M: Message + Send + 'static,
    M::Result: Send,
{
    /// The mailbox of `addr` for `M`, counted in `metrics`.
    pub fn of<A>(addr: &Addr<A>, metrics: &ActorMetrics) -> Mailbox<M>
    where
        A: Actor + Handler<Counted<M>>,
        A::Context: ToEnvelope<A, Counted<M>>,
    {
        Mailbox {
            recipient: addr.clone().recipient(),
            metrics: metrics.clone(),
        }
    }

    /// The same mailbox, counted in other metrics.
    pub fn counted_in(mut self, metrics: &ActorMetrics) -> Mailbox<M> {
        self.metrics = metrics.clone();
        self
    }

    /// Puts `message` in the mailbox, or says the actor is gone.
    pub fn post(&self, message: M) -> Result<(), Gone> {
        post(
            &self.recipient,
            Counted {
                message,
                ticket: Ticket::new(&self.metrics),
            },
        )
    }

    /// Puts `message` in the mailbox and waits for the answer.
    pub async fn send(&self, message: M) -> Result<M::Result, MailboxError> {
        let counted = Counted {
            message,
            ticket: Ticket::new(&self.metrics),
        };
        self.recipient.send(counted).await
    }

    /// Whether the actor still runs.
    pub fn connected(&self) -> bool {
        self.recipient.connected()
    }
}

/// Puts `message` in the mailbox behind `recipient`, or says the actor is
/// gone. For messages that are not counted (supervision).
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

#[cfg(test)]
mod tests {
    use super::*;

    struct Echo;

    impl Actor for Echo {
        type Context = Context<Self>;
    }

    #[derive(Message)]
    #[rtype(result = "u32")]
    struct Double(u32);

    impl Handler<Double> for Echo {
        type Result = u32;

        fn handle(&mut self, msg: Double, _: &mut Context<Self>) -> u32 {
            msg.0 * 2
        }
    }

    #[derive(Message)]
    #[rtype(result = "()")]
    struct Quit;

    impl Handler<Quit> for Echo {
        type Result = ();

        fn handle(&mut self, _: Quit, ctx: &mut Context<Self>) {
            ctx.stop();
        }
    }

    counted_handlers!(Echo: Double);

    #[actix_rt::test]
    async fn messages_are_counted_when_sent_and_when_handled() {
        let metrics = ActorMetrics::default();
        let addr = Echo.start();
        let mailbox: Mailbox<Double> = Mailbox::of(&addr, &metrics);
        mailbox.post(Double(1)).expect("posted");
        assert_eq!(metrics.depth(), 1);
        assert_eq!(mailbox.send(Double(21)).await.expect("answer"), 42);
        assert_eq!((metrics.depth(), metrics.handled_count()), (0, 2));
    }

    #[actix_rt::test]
    async fn a_message_to_a_gone_actor_is_refused_and_not_counted() {
        let metrics = ActorMetrics::default();
        let addr = Echo.start();
        let mailbox: Mailbox<Double> = Mailbox::of(&addr, &metrics);
        addr.send(Quit).await.expect("quit");
        crate::runtime::channel::testing::eventually("the actor stops", || !mailbox.connected())
            .await;
        assert_eq!(mailbox.post(Double(1)), Err(Gone));
        assert_eq!((metrics.depth(), metrics.handled_count()), (0, 0));
    }
}
