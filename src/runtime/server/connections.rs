//! How many connections a listener serves, and what a connection refused
//! for lack of room gets: it is closed at once, never queued.
//!
//! Every listener (gRPC, cluster, admin, operations) takes a slot from its
//! [`ConnectionLimit`] when it accepts a TCP connection, before any TLS
//! handshake, and the connection carries the slot ([`Admitted`]) until it
//! closes. The limits together must leave file descriptors for the ledger:
//! [`fit_to_open_file_limit`] lowers them when the process may not open
//! that many files.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::transport::server::Connected;

use super::memory;

/// Pause after a failed accept (out of file descriptors, say) before the next.
const ACCEPT_RETRY: Duration = Duration::from_millis(100);

/// Connections accepted and waiting for the server to take them.
const ACCEPTED_BACKLOG: usize = 64;

/// File descriptors kept for everything but client connections: block
/// files, the index, Raft's WAL, the runtime's own.
pub const RESERVED_FILE_DESCRIPTORS: usize = 256;

/// What a connection refused for lack of room is sent before it is closed,
/// when the listener speaks plain text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing (TLS listeners: there is no session to say it in).
    Close,
    /// HTTP/2: the server's SETTINGS, then GOAWAY REFUSED_STREAM (nothing
    /// was processed: retry, here later or elsewhere); gRPC clients see
    /// UNAVAILABLE.
    Http2,
    /// HTTP/1.1: `503 Service Unavailable`.
    Http1,
}

impl Refusal {
    fn bytes(self) -> &'static [u8] {
        match self {
            Refusal::Close => b"",
            Refusal::Http2 => REFUSAL_HTTP2,
            Refusal::Http1 => {
                b"HTTP/1.1 503 Service Unavailable\r\nconnection: close\r\ncontent-length: 0\r\n\r\n"
            }
        }
    }
}

/// An empty SETTINGS frame, then GOAWAY (last stream 0, REFUSED_STREAM)
/// with "too many connections" as its debug data.
const REFUSAL_HTTP2: &[u8] = &[
    0, 0, 0, 4, 0, 0, 0, 0, 0, // SETTINGS, empty
    0, 0, 28, 7, 0, 0, 0, 0, 0, // GOAWAY, 8 + 20 bytes, stream 0
    0, 0, 0, 0, // last stream id
    0, 0, 0, 0x07, // REFUSED_STREAM
    b't', b'o', b'o', b' ', b'm', b'a', b'n', b'y', b' ', b'c', b'o', b'n', b'n', b'e', b'c', b't',
    b'i', b'o', b'n', b's',
];

/// The connections a listener serves at once.
#[derive(Clone)]
pub struct ConnectionLimit {
    listener: &'static str,
    max: usize,
    slots: Arc<Semaphore>,
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for ConnectionLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionLimit")
            .field("listener", &self.listener)
            .field("max", &self.max)
            .field("open", &self.open())
            .finish()
    }
}

impl ConnectionLimit {
    /// `max` connections at once (at least one) on the listener named
    /// `listener` (for logs).
    pub fn new(listener: &'static str, max: usize) -> ConnectionLimit {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnectionLimit {
            listener,
            max,
            slots: Arc::new(Semaphore::new(max)),
            refused: Arc::new(AtomicU64::new(0)),
        }
    }

    /// A slot for a new connection, if one is free.
    pub fn try_admit(&self) -> Option<ConnectionSlot> {
        match self.slots.clone().try_acquire_owned() {
            Ok(permit) => Some(ConnectionSlot { _permit: permit }),
            Err(_) => {
                let refused = self.refused.fetch_add(1, Ordering::Relaxed);
                // One line per thousand: a flood must not flood the log too.
                if refused % 1000 == 0 {
                    tracing::warn!(
                        listener = self.listener,
                        max = self.max,
                        refused = refused + 1,
                        "connection refused: the listener serves its maximum of connections"
                    );
                }
                None
            }
        }
    }

    pub fn max(&self) -> usize {
        self.max
    }

    /// Connections holding a slot now.
    pub fn open(&self) -> usize {
        self.max - self.slots.available_permits()
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// A connection's place among its listener's; freed when it is dropped.
pub struct ConnectionSlot {
    _permit: OwnedSemaphorePermit,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        // Connections take their buffers with them: give freed memory back
        // to the system once a burst of them has gone.
        memory::release_soon();
    }
}

/// A connection that holds a slot of its listener's [`ConnectionLimit`].
pub struct Admitted<IO> {
    io: IO,
    _slot: ConnectionSlot,
}

impl<IO> Admitted<IO> {
    pub fn new(io: IO, slot: ConnectionSlot) -> Admitted<IO> {
        Admitted { io, _slot: slot }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Admitted<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Admitted<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Admitted<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

/// Accepts the next connection that finds a slot free; others are sent
/// `refusal` (as far as the socket takes it without waiting) and closed.
/// Stops at `shutdown`.
pub async fn accept(
    listener: &TcpListener,
    limit: &ConnectionLimit,
    refusal: Refusal,
    shutdown: &CancellationToken,
) -> Option<(TcpStream, SocketAddr, ConnectionSlot)> {
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return None,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let Some(slot) = limit.try_admit() else {
            let bytes = refusal.bytes();
            if !bytes.is_empty() {
                let _ = tcp.try_write(bytes);
            }
            continue;
        };
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(%peer, error = %e, "cannot set TCP_NODELAY");
        }
        return Some((tcp, peer, slot));
    }
}

/// A plain listener's admitted connections: a stream for tonic's
/// `serve_with_incoming`.
pub struct TcpIncoming {
    accepted: mpsc::Receiver<Admitted<TcpStream>>,
}

impl TcpIncoming {
    /// Accepts on `listener` until `shutdown` or until this is dropped.
    pub fn new(
        listener: TcpListener,
        limit: ConnectionLimit,
        refusal: Refusal,
        shutdown: CancellationToken,
    ) -> TcpIncoming {
        let (tx, accepted) = mpsc::channel(ACCEPTED_BACKLOG);
        tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => return,
                    next = accept(&listener, &limit, refusal, &shutdown) => next,
                };
                let Some((tcp, _, slot)) = next else { return };
                if tx.send(Admitted::new(tcp, slot)).await.is_err() {
                    return;
                }
            }
        });
        TcpIncoming { accepted }
    }
}

impl futures::Stream for TcpIncoming {
    type Item = Result<Admitted<TcpStream>, io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.accepted.poll_recv(cx).map(|next| next.map(Ok))
    }
}

/// The number of files the process may open, after raising its soft limit
/// to the hard one (as Go's runtime does for Fabric's orderer); `None` where
/// it cannot be read.
pub fn open_file_limit() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit and setrlimit only read and write the struct given.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        if limit.rlim_cur == libc::RLIM_INFINITY {
            return Some(usize::MAX);
        }
        Some(usize::try_from(limit.rlim_cur).unwrap_or(usize::MAX))
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// The listeners' connection limits lowered, in proportion, so that together
/// they leave [`RESERVED_FILE_DESCRIPTORS`] of `open_files` free; unchanged
/// when they fit. Every listener keeps at least one connection.
pub fn fit_to_open_file_limit(requested: &[usize], open_files: usize) -> Vec<usize> {
    let available = open_files
        .saturating_sub(RESERVED_FILE_DESCRIPTORS)
        .max(requested.len());
    let total: usize = requested.iter().fold(0, |sum, r| sum.saturating_add(*r));
    if total <= available {
        return requested.to_vec();
    }
    requested
        .iter()
        .map(|&r| {
            let share = (r as u128 * available as u128 / total.max(1) as u128) as usize;
            share.max(1)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[test]
    fn limits_that_fit_are_kept_and_others_lowered_in_proportion() {
        assert_eq!(
            fit_to_open_file_limit(&[1024, 64, 64], 1 << 20),
            vec![1024, 64, 64]
        );
        let fitted = fit_to_open_file_limit(&[1024, 64, 64], 1024);
        assert!(fitted.iter().sum::<usize>() <= 1024 - RESERVED_FILE_DESCRIPTORS);
        assert!(fitted[0] > fitted[1] && fitted[1] == fitted[2] && fitted[2] >= 1);
        assert_eq!(fit_to_open_file_limit(&[10, 10], 5), vec![1, 1]);
    }

    #[test]
    fn the_http2_refusal_is_a_settings_and_a_goaway_frame() {
        let frame = |at: usize| {
            let length = u32::from_be_bytes([
                0,
                REFUSAL_HTTP2[at],
                REFUSAL_HTTP2[at + 1],
                REFUSAL_HTTP2[at + 2],
            ]);
            (length as usize, REFUSAL_HTTP2[at + 3])
        };
        assert_eq!(frame(0), (0, 4));
        let (length, kind) = frame(9);
        assert_eq!(kind, 7);
        assert_eq!(18 + length, REFUSAL_HTTP2.len());
    }

    #[tokio::test]
    async fn connections_beyond_the_limit_are_refused_at_once() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let limit = ConnectionLimit::new("test", 1);
        let shutdown = CancellationToken::new();
        let first = TcpStream::connect(address).await.expect("connect");
        let (_served, _, slot) = accept(&listener, &limit, Refusal::Http1, &shutdown)
            .await
            .expect("admitted");
        assert_eq!(limit.open(), 1);

        let mut second = TcpStream::connect(address).await.expect("connect");
        let accepting = {
            let limit = limit.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                accept(&listener, &limit, Refusal::Http1, &shutdown)
                    .await
                    .map(|(_, peer, slot)| (peer, slot))
            })
        };
        let mut answer = Vec::new();
        second.read_to_end(&mut answer).await.expect("closed");
        assert!(answer.starts_with(b"HTTP/1.1 503"), "{answer:?}");
        assert!(limit.refused() >= 1);

        // A freed slot admits the next one.
        drop(slot);
        let third = TcpStream::connect(address).await.expect("connect");
        let (peer, _slot) = accepting.await.expect("task").expect("admitted");
        assert_eq!(peer, third.local_addr().expect("address"));
        drop(first);
    }
}
