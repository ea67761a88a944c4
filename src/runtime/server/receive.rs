//! A node-wide bound on the bytes of large gRPC messages being received
//! (`General.Backpressure.MaxReceivingBytes`).
//!
//! tonic reserves a message's whole declared length as soon as its 5-byte
//! prefix arrives, and holds what came until the message is complete. Many
//! clients each starting a message of up to MaxRecvMsgSize (100 MiB) could
//! so make the node reserve far more than it has. Every request body of the
//! gRPC services passes through [`BudgetedBody`], which reads the messages'
//! prefixes: a message over [`LARGE_MESSAGE`] bytes goes on to tonic only
//! once its size is taken from the [`ReceiveBudget`], and gives it back once
//! its last byte has. While it waits, the body is not read, so HTTP/2 flow
//! control holds the sender (at most a stream window of it is buffered).
//! A message larger than the whole budget waits until it is alone; one over
//! MaxRecvMsgSize passes at once, for tonic to refuse (RESOURCE_EXHAUSTED).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore};
use tonic::body::Body;
use tonic::codegen::{http, Service};
use tonic::server::NamedService;
use tonic::Status;

/// Messages up to this size pass without taking from the budget: they are
/// bounded by the streams' HTTP/2 windows and the connection limits.
pub const LARGE_MESSAGE: usize = 64 * 1024;

/// gRPC's length prefix: a compression flag and a big-endian length.
const PREFIX_LEN: usize = 5;
/// How long a large message waits for room before it is refused
/// (RESOURCE_EXHAUSTED; the client may send again): a waiting stream's
/// unread data holds part of its connection's window, so waits must end.
pub const WAIT_FOR_ROOM: std::time::Duration = std::time::Duration::from_secs(10);
/// How long a large message may hold its room before all of it has arrived:
/// a sender that stalls after its prefix must not keep the room for good.
pub const HOLD_ROOM: std::time::Duration = std::time::Duration::from_secs(60);

/// The bytes of large messages the node receives at once.
#[derive(Clone, Debug)]
pub struct ReceiveBudget {
    bytes: Arc<Semaphore>,
    max: usize,
    /// Larger messages are refused by tonic: they need no room.
    max_message: usize,
}

impl ReceiveBudget {
    /// `max` bytes at once (at most 4 GB); messages over `max_message`
    /// (MaxRecvMsgSize) are left to tonic to refuse.
    pub fn new(max: usize, max_message: usize) -> ReceiveBudget {
        let max = max.clamp(1, u32::MAX as usize);
        ReceiveBudget {
            bytes: Arc::new(Semaphore::new(max)),
            max,
            max_message,
        }
    }

    /// Bytes taken by messages being received now.
    pub fn in_use(&self) -> usize {
        self.max - self.bytes.available_permits()
    }

    /// Room a message of `length` must take before it passes, if any.
    fn room_for(&self, length: usize) -> Option<u32> {
        (length > LARGE_MESSAGE && length <= self.max_message).then(|| length.min(self.max) as u32)
    }
}

/// A gRPC service whose request bodies pass through [`BudgetedBody`].
#[derive(Clone)]
pub struct Budgeted<S> {
    inner: S,
    budget: ReceiveBudget,
}

impl<S> Budgeted<S> {
    pub fn new(inner: S, budget: ReceiveBudget) -> Budgeted<S> {
        Budgeted { inner, budget }
    }
}

impl<S: NamedService> NamedService for Budgeted<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Budgeted<S>
where
    S: Service<http::Request<Body>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let budget = self.budget.clone();
        self.inner
            .call(request.map(|body| Body::new(BudgetedBody::new(body, budget))))
    }
}

type Acquire = Pin<
    Box<
        dyn Future<
                Output = Result<
                    Result<OwnedSemaphorePermit, AcquireError>,
                    tokio::time::error::Elapsed,
                >,
            > + Send,
    >,
>;

/// Where the body is in its messages.
#[derive(Debug, Default)]
struct Framing {
    prefix: [u8; PREFIX_LEN],
    prefix_len: usize,
    /// Bytes of the current message still to come.
    body_left: usize,
}

/// A request body that lets a large message through only with room.
pub struct BudgetedBody {
    inner: Body,
    budget: ReceiveBudget,
    framing: Framing,
    /// Data read and not yet passed on; `scanned` of it are already counted
    /// in `framing`.
    pending: Option<Bytes>,
    scanned: usize,
    /// Room for the message whose prefix is in `pending`, being taken.
    acquiring: Option<Acquire>,
    /// Room of the message passing now, given back after its last byte.
    held: Option<OwnedSemaphorePermit>,
    /// When the held room must be given back, complete or not.
    hold_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Room taken for the message whose prefix completes next.
    ready: Option<OwnedSemaphorePermit>,
}

impl BudgetedBody {
    pub fn new(inner: Body, budget: ReceiveBudget) -> BudgetedBody {
        BudgetedBody {
            inner,
            budget,
            framing: Framing::default(),
            pending: None,
            scanned: 0,
            acquiring: None,
            held: None,
            hold_deadline: None,
            ready: None,
        }
    }

    /// Scans `pending` from `scanned`: the length of the prefix of it that
    /// may pass now, and the room the next message needs first, if it must
    /// wait for it.
    fn scan(&mut self) -> (usize, Option<u32>) {
        let Some(data) = self.pending.as_ref() else {
            return (0, None);
        };
        let mut at = self.scanned;
        while at < data.len() {
            if self.framing.body_left > 0 {
                let n = self.framing.body_left.min(data.len() - at);
                self.framing.body_left -= n;
                at += n;
                if self.framing.body_left == 0 {
                    // The message is complete: tonic has what it reserved.
                    self.held = None;
                    self.hold_deadline = None;
                }
                continue;
            }
            let f = &mut self.framing;
            f.prefix[f.prefix_len] = data[at];
            f.prefix_len += 1;
            if f.prefix_len < PREFIX_LEN {
                at += 1;
                continue;
            }
            let length =
                u32::from_be_bytes([f.prefix[1], f.prefix[2], f.prefix[3], f.prefix[4]]) as usize;
            match self.budget.room_for(length) {
                Some(room) if self.ready.is_none() => {
                    // Stop before the prefix's last byte: tonic reserves
                    // the message's length when it sees it.
                    f.prefix_len -= 1;
                    self.scanned = at;
                    return (at, Some(room));
                }
                _ => {
                    f.prefix_len = 0;
                    f.body_left = length;
                    self.held = self.ready.take();
                    self.hold_deadline = self
                        .held
                        .as_ref()
                        .map(|_| Box::pin(tokio::time::sleep(HOLD_ROOM)));
                    at += 1;
                }
            }
        }
        self.scanned = at;
        (at, None)
    }
}

impl HttpBody for BudgetedBody {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        loop {
            if let Some(deadline) = this.hold_deadline.as_mut() {
                if deadline.as_mut().poll(cx).is_ready() {
                    this.held = None;
                    this.hold_deadline = None;
                    return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                        "a large message did not arrive within {HOLD_ROOM:?} of its prefix"
                    )))));
                }
            }
            if let Some(acquire) = this.acquiring.as_mut() {
                let permit = match std::task::ready!(acquire.as_mut().poll(cx)) {
                    Ok(Ok(permit)) => permit,
                    Ok(Err(_)) => {
                        return Poll::Ready(Some(Err(Status::unavailable("the node is stopping"))))
                    }
                    Err(_) => {
                        this.acquiring = None;
                        return Poll::Ready(Some(Err(Status::resource_exhausted(format!(
                            "the node is receiving too many large messages (none had room within {WAIT_FOR_ROOM:?}); send again"
                        )))));
                    }
                };
                this.acquiring = None;
                this.ready = Some(permit);
            }
            if this.pending.is_some() {
                let (passing, wait) = this.scan();
                if passing > 0 {
                    let Some(data) = this.pending.as_mut() else {
                        continue;
                    };
                    let out = data.split_to(passing);
                    this.scanned -= passing;
                    if data.is_empty() {
                        this.pending = None;
                        this.scanned = 0;
                    }
                    if let Some(room) = wait {
                        this.acquiring = Some(Box::pin(tokio::time::timeout(
                            WAIT_FOR_ROOM,
                            this.budget.bytes.clone().acquire_many_owned(room),
                        )));
                    }
                    return Poll::Ready(Some(Ok(Frame::data(out))));
                }
                if let Some(room) = wait {
                    this.acquiring = Some(Box::pin(tokio::time::timeout(
                        WAIT_FOR_ROOM,
                        this.budget.bytes.clone().acquire_many_owned(room),
                    )));
                    continue;
                }
                // Nothing left to pass: everything was scanned and sent.
                this.pending = None;
                this.scanned = 0;
            }
            match std::task::ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => {
                        if !data.is_empty() {
                            this.pending = Some(data);
                            this.scanned = 0;
                        }
                    }
                    Err(frame) => return Poll::Ready(Some(Ok(frame))),
                },
                other => return Poll::Ready(other),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn message(length: usize) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(length as u32).to_be_bytes());
        out.extend(std::iter::repeat_n(7u8, length));
        out
    }

    /// A body of these chunks, fed through a channel.
    fn body(chunks: Vec<Vec<u8>>) -> Body {
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, Status>(Frame::data(Bytes::from(c)))),
        );
        Body::new(http_body_util::StreamBody::new(stream))
    }

    async fn collect(body: BudgetedBody) -> Vec<u8> {
        body.collect().await.expect("body").to_bytes().to_vec()
    }

    #[tokio::test]
    async fn messages_pass_unchanged_however_they_are_cut() {
        let mut all = message(10);
        all.extend(message(LARGE_MESSAGE + 1));
        all.extend(message(3));
        all.extend(message(LARGE_MESSAGE * 2));
        for cut in [1, 2, 4, 5, 6, 100, 70_000, all.len()] {
            let budget = ReceiveBudget::new(LARGE_MESSAGE * 3, 1 << 30);
            let chunks = all.chunks(cut).map(<[u8]>::to_vec).collect();
            let got = collect(BudgetedBody::new(body(chunks), budget.clone())).await;
            assert_eq!(got, all, "cut {cut}");
            assert_eq!(budget.in_use(), 0, "every message gave its room back");
        }
    }

    #[tokio::test]
    async fn a_large_message_waits_for_room_before_its_prefix_passes() {
        let budget = ReceiveBudget::new(LARGE_MESSAGE * 2, 1 << 30);
        let taken = budget
            .bytes
            .clone()
            .acquire_many_owned((LARGE_MESSAGE * 2) as u32)
            .await
            .expect("all of it");
        let mut all = message(4);
        all.extend(message(LARGE_MESSAGE + 10));
        let mut passing = BudgetedBody::new(body(vec![all.clone()]), budget.clone());
        // The small message and the large one's first prefix bytes pass.
        let first = passing.frame().await.expect("frame").expect("data");
        let first = first.into_data().expect("data");
        assert_eq!(first.len(), 9 + 4);
        // The rest of the body is there: only the room is missing.
        let waiting = futures::FutureExt::now_or_never(passing.frame());
        assert!(waiting.is_none(), "no room: nothing more passes");
        drop(taken);
        let rest = collect(passing).await;
        assert_eq!([&first[..], &rest[..]].concat(), all);
        assert_eq!(budget.in_use(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_that_finds_no_room_in_time_is_refused() {
        let budget = ReceiveBudget::new(LARGE_MESSAGE * 2, 1 << 30);
        let _taken = budget
            .bytes
            .clone()
            .acquire_many_owned((LARGE_MESSAGE * 2) as u32)
            .await
            .expect("all of it");
        let mut waiting =
            BudgetedBody::new(body(vec![message(LARGE_MESSAGE + 10)]), budget.clone());
        let first = waiting.frame().await.expect("frame").expect("data");
        assert_eq!(
            first.into_data().expect("data").len(),
            4,
            "the prefix but its last byte"
        );
        // Paused time moves on once everything waits: WAIT_FOR_ROOM passes.
        let refused = waiting.frame().await.expect("an answer");
        let status = refused.expect_err("refused");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sender_that_stalls_after_its_prefix_gives_the_room_back() {
        let budget = ReceiveBudget::new(LARGE_MESSAGE * 4, 1 << 30);
        let mut part = message(LARGE_MESSAGE * 2);
        part.truncate(PREFIX_LEN + 100);
        // A stream that sends part of a message, then nothing, for ever.
        let stalled = futures::StreamExt::chain(
            futures::stream::iter(vec![Ok::<_, Status>(Frame::data(Bytes::from(part)))]),
            futures::stream::pending(),
        );
        let mut body = BudgetedBody::new(
            Body::new(http_body_util::StreamBody::new(stalled)),
            budget.clone(),
        );
        let mut refused = None;
        while let Some(frame) = body.frame().await {
            if let Err(status) = frame {
                refused = Some(status);
                break;
            }
        }
        let status = refused.expect("refused once HOLD_ROOM passed");
        assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status}");
        assert_eq!(budget.in_use(), 0, "the room is back");
    }

    #[tokio::test]
    async fn messages_over_the_size_limit_pass_for_tonic_to_refuse() {
        let budget = ReceiveBudget::new(LARGE_MESSAGE * 2, LARGE_MESSAGE * 4);
        // Declares 1 GB: passes at once, without waiting for room it cannot have.
        let mut prefix = vec![0];
        prefix.extend_from_slice(&(1u32 << 30).to_be_bytes());
        let got = collect(BudgetedBody::new(
            body(vec![prefix.clone()]),
            budget.clone(),
        ))
        .await;
        assert_eq!(got, prefix);
        // Larger than the whole budget but allowed: waits until alone, then passes.
        let all = message(LARGE_MESSAGE * 3);
        let got = collect(BudgetedBody::new(body(vec![all.clone()]), budget.clone())).await;
        assert_eq!(got, all);
    }
}
