//! Serving the HTTP listeners (admin and operations) with bounds on what a
//! client may hold, as Go's `http.Server` timeouts bound Fabric's:
//!
//! - at most `MaxConnections` connections; more are answered 503 (plain
//!   HTTP) or closed (TLS) at once;
//! - a request's headers must arrive within `ReadHeaderTimeout` (which also
//!   ends a kept-alive connection idle that long, and bounds the TLS
//!   handshake);
//! - its body within `ReadTimeout` of its headers;
//! - a write the client does not take within `WriteTimeout` closes the
//!   connection.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tonic::codegen::{http, Service};

use super::connections::{self, Admitted, ConnectionLimit, Refusal};
use super::tls::{ListenerTls, TlsIncoming, TlsPeer};
use crate::fabric::localconfig::HttpServerSettings;

/// Serves an HTTP router on `address` until `shutdown`; returns the bound
/// address (useful with port 0) and the server task.
pub async fn serve_http(
    router: axum::Router,
    address: &str,
    settings: &HttpServerSettings,
    limit: ConnectionLimit,
    shutdown: CancellationToken,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<io::Result<()>>)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let settings = *settings;
    let server = async move {
        let mut connections = JoinSet::new();
        while let Some((tcp, _, slot)) =
            connections::accept(&listener, &limit, Refusal::Http1, &shutdown).await
        {
            while connections.try_join_next().is_some() {}
            let io = Admitted::new(tcp, slot);
            connections.spawn(serve_connection(
                io,
                router.clone(),
                None,
                settings,
                shutdown.clone(),
            ));
        }
        // Connections end their requests, then close (graceful shutdown).
        while connections.join_next().await.is_some() {}
        Ok(())
    };
    Ok((local, tokio::spawn(server)))
}

/// As [`serve_http`], over TLS: handlers can extract
/// `axum::extract::ConnectInfo<TlsPeer>` to see the client's verified
/// certificate.
pub async fn serve_https(
    router: axum::Router,
    address: &str,
    tls: Arc<ListenerTls>,
    settings: &HttpServerSettings,
    limit: ConnectionLimit,
    shutdown: CancellationToken,
) -> io::Result<(SocketAddr, tokio::task::JoinHandle<io::Result<()>>)> {
    let listener = TcpListener::bind(address).await?;
    let local = listener.local_addr()?;
    let settings = *settings;
    let mut incoming = TlsIncoming::limited(
        listener,
        tls,
        limit,
        settings.read_header_timeout,
        shutdown.clone(),
    );
    let server = async move {
        let mut connections = JoinSet::new();
        while let Some(stream) = futures::StreamExt::next(&mut incoming).await {
            while connections.try_join_next().is_some() {}
            let Ok(stream) = stream else { continue };
            let peer = TlsPeer::of(stream.get_ref());
            connections.spawn(serve_connection(
                stream,
                router.clone(),
                Some(peer),
                settings,
                shutdown.clone(),
            ));
        }
        // Connections end their requests, then close (graceful shutdown).
        while connections.join_next().await.is_some() {}
        Ok(())
    };
    Ok((local, tokio::spawn(server)))
}

/// One connection, until it closes or the node stops.
async fn serve_connection<IO>(
    io: IO,
    router: axum::Router,
    peer: Option<TlsPeer>,
    settings: HttpServerSettings,
    shutdown: CancellationToken,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(WriteDeadline::new(io, settings.write_timeout));
    let service = RequestService {
        router,
        peer,
        read_timeout: settings.read_timeout,
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(settings.read_header_timeout)
        .serve_connection(io, service);
    tokio::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        _ = shutdown.cancelled() => {
            connection.as_mut().graceful_shutdown();
            connection.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(error = %e, "HTTP connection ended");
    }
}

/// Hands each request to the router, its body bounded by `read_timeout`.
#[derive(Clone)]
struct RequestService {
    router: axum::Router,
    peer: Option<TlsPeer>,
    read_timeout: Duration,
}

impl hyper::service::Service<http::Request<Incoming>> for RequestService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let deadline = Instant::now() + self.read_timeout;
        let mut request =
            request.map(|body| axum::body::Body::new(ReadDeadlineBody::new(body, deadline)));
        if let Some(peer) = &self.peer {
            request.extensions_mut().insert(ConnectInfo(peer.clone()));
        }
        let mut router = self.router.clone();
        Box::pin(async move { router.call(request).await })
    }
}

/// A request body that fails once its deadline passes (Go's ReadTimeout).
struct ReadDeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<Sleep>>,
}

impl ReadDeadlineBody {
    fn new(inner: Incoming, deadline: Instant) -> ReadDeadlineBody {
        ReadDeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl HttpBody for ReadDeadlineBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => Poll::Ready(frame.map(|f| f.map_err(io::Error::other))),
            Poll::Pending => match this.deadline.as_mut().poll(cx) {
                Poll::Ready(()) => Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the request body did not arrive within the read timeout",
                )))),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail once one has waited `timeout` for the
/// client to take it.
struct WriteDeadline<IO> {
    io: IO,
    timeout: Duration,
    /// Armed while a write waits.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<IO> WriteDeadline<IO> {
    fn new(io: IO, timeout: Duration) -> WriteDeadline<IO> {
        WriteDeadline {
            io,
            timeout,
            stalled: None,
        }
    }

    /// After a write was not ready: an error once it has waited too long.
    fn check_stall(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let timeout = self.timeout;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        let polled = stalled.as_mut().poll(cx);
        match polled {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client did not take the answer within the write timeout",
            )),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for WriteDeadline<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for WriteDeadline<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Pending => this.check_stall(cx).map(Err),
            ready => {
                this.stalled = None;
                ready
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_flush(cx) {
            Poll::Pending => this.check_stall(cx).map(Err),
            ready => {
                this.stalled = None;
                ready
            }
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    fn settings() -> HttpServerSettings {
        HttpServerSettings {
            read_header_timeout: Duration::from_secs(30),
            read_timeout: Duration::from_secs(30),
            write_timeout: Duration::from_secs(30),
            max_connections: 2,
        }
    }

    async fn serve(
        settings: HttpServerSettings,
    ) -> (SocketAddr, CancellationToken, ConnectionLimit) {
        let router = axum::Router::new()
            .route("/", get(|| async { "hello" }))
            .route(
                "/endless",
                get(|| async {
                    let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
                    let chunks =
                        futures::stream::repeat_with(move || Ok::<_, Infallible>(chunk.clone()));
                    axum::body::Body::from_stream(chunks)
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }));
        let shutdown = CancellationToken::new();
        let limit = ConnectionLimit::new("test", settings.max_connections);
        let (address, _task) = serve_http(
            router,
            "127.0.0.1:0",
            &settings,
            limit.clone(),
            shutdown.clone(),
        )
        .await
        .expect("serve");
        (address, shutdown, limit)
    }

    /// Everything the server sends until it closes the connection.
    async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out).await;
        out
    }

    #[tokio::test]
    async fn requests_are_served_and_a_connection_beyond_the_limit_gets_503() {
        let (address, shutdown, limit) = serve(settings()).await;
        let mut first = TcpStream::connect(address).await.expect("connect");
        first
            .write_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
            .await
            .expect("write");
        assert!(read_all(&mut first).await.ends_with(b"hello"));

        // Two half-sent requests hold both slots; a third is refused.
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(address).await.expect("connect");
            s.write_all(b"GET / HTTP/1.1\r\nhos").await.expect("write");
            slow.push(s);
        }
        // It sends nothing: a refusal closing a socket with unread data
        // would reset it, and the answer could be lost.
        let mut third = TcpStream::connect(address).await.expect("connect");
        let refused = read_all(&mut third).await;
        assert!(refused.starts_with(b"HTTP/1.1 503"), "{refused:?}");
        assert_eq!(limit.open(), 2);
        shutdown.cancel();
    }

    #[tokio::test]
    async fn half_sent_headers_are_cut_off() {
        let (address, shutdown, _) = serve(HttpServerSettings {
            read_header_timeout: Duration::from_millis(300),
            ..settings()
        })
        .await;
        let mut headers = TcpStream::connect(address).await.expect("connect");
        headers
            .write_all(b"GET / HTTP/1.1\r\nhos")
            .await
            .expect("write");
        assert_eq!(read_all(&mut headers).await, b"");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_body_that_does_not_come_in_time_fails_the_request() {
        let (address, shutdown, _) = serve(HttpServerSettings {
            read_timeout: Duration::from_millis(300),
            ..settings()
        })
        .await;
        let mut body = TcpStream::connect(address).await.expect("connect");
        body.write_all(b"POST /echo HTTP/1.1\r\nhost: x\r\ncontent-length: 10\r\n\r\n12345")
            .await
            .expect("write");
        let answer = String::from_utf8_lossy(&read_all(&mut body).await).into_owned();
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        shutdown.cancel();
    }

    #[tokio::test]
    async fn an_answer_the_client_does_not_take_closes_the_connection() {
        let (address, shutdown, limit) = serve(HttpServerSettings {
            write_timeout: Duration::from_millis(300),
            ..settings()
        })
        .await;
        // An endless answer: whatever the kernel buffers, the server's
        // writes stop being taken.
        let mut client = TcpStream::connect(address).await.expect("connect");
        client
            .write_all(b"GET /endless HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .expect("write");
        // Take nothing until the server has taken the connection, then
        // given up on it.
        while limit.open() == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        while limit.open() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let got = read_all(&mut client).await;
        assert!(!got.is_empty(), "the answer had started");
        shutdown.cancel();
    }
}
