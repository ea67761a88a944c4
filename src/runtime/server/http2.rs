//! HTTP/2 rules for gRPC connections that hyper does not enforce, applied by
//! watching the frames go by in both directions (their 9-byte headers only;
//! the bytes themselves pass untouched):
//!
//! - **Keepalive enforcement**, as gRPC-Go's server (and so Fabric's
//!   orderer, `General.Keepalive.ServerMinInterval`, pings allowed without
//!   streams) enforces it: a PING that comes sooner than the minimum interval
//!   after the previous one, with no HEADERS or DATA sent by the node in
//!   between, is a strike; the third strike gets GOAWAY `ENHANCE_YOUR_CALM`
//!   with "too_many_pings", and the connection is closed.
//! - **Connection timeout** (`General.ConnectionTimeout`): a client that has
//!   not sent HTTP/2's preface and first frame in time is disconnected.
//! - **Idle connections** (`General.ConnectionIdleTimeout`, gRPC-Go's
//!   MaxConnectionIdle): a connection without an open stream for that long
//!   gets GOAWAY `NO_ERROR` with "max_idle" and is closed.
//!
//! A GOAWAY of the node's own is written between two of hyper's frames;
//! then reads end and writes fail, and hyper drops the connection.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

const PREFACE_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const PING: u8 = 6;
const GOAWAY: u8 = 7;

/// END_STREAM on DATA and HEADERS; ACK on PING.
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

const NO_ERROR: u32 = 0;
const ENHANCE_YOUR_CALM: u32 = 0xb;

/// gRPC-Go's `maxPingStrikes`: the third ping too soon closes the connection.
const MAX_PING_STRIKES: u32 = 2;

/// The rules a gRPC connection is held to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Rules {
    /// `General.Keepalive.ServerMinInterval`.
    pub min_ping_interval: Duration,
    /// `General.ConnectionTimeout`: until the client's first frame.
    pub preface_timeout: Duration,
    /// `General.ConnectionIdleTimeout`.
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FrameHeader {
    length: usize,
    kind: u8,
    flags: u8,
    stream: u32,
}

impl FrameHeader {
    fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> FrameHeader {
        FrameHeader {
            length: u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize,
            kind: bytes[3],
            flags: bytes[4],
            stream: u32::from_be_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]) & 0x7fff_ffff,
        }
    }

    fn ends_stream(&self) -> bool {
        matches!(self.kind, DATA | HEADERS) && self.flags & END_STREAM != 0
    }
}

/// Finds the frame headers in one direction of a connection.
#[derive(Debug, Default)]
struct FrameScanner {
    preface_left: usize,
    header: [u8; FRAME_HEADER_LEN],
    header_len: usize,
    payload_left: usize,
}

impl FrameScanner {
    /// What a client sends: the preface, then frames.
    fn client() -> FrameScanner {
        FrameScanner {
            preface_left: PREFACE_LEN,
            ..FrameScanner::default()
        }
    }

    /// Calls `on_header` for each frame header completed by `data`.
    fn scan(&mut self, mut data: &[u8], mut on_header: impl FnMut(FrameHeader)) {
        while !data.is_empty() {
            let skip = if self.preface_left > 0 {
                let n = self.preface_left.min(data.len());
                self.preface_left -= n;
                n
            } else if self.payload_left > 0 {
                let n = self.payload_left.min(data.len());
                self.payload_left -= n;
                n
            } else {
                let n = (FRAME_HEADER_LEN - self.header_len).min(data.len());
                self.header[self.header_len..self.header_len + n].copy_from_slice(&data[..n]);
                self.header_len += n;
                if self.header_len == FRAME_HEADER_LEN {
                    self.header_len = 0;
                    let header = FrameHeader::parse(&self.header);
                    self.payload_left = header.length;
                    on_header(header);
                }
                n
            };
            data = &data[skip..];
        }
    }

    /// Bytes left of the frame under way, if one is unfinished (its header
    /// first, then its payload).
    fn to_boundary(&self) -> Option<usize> {
        if self.header_len > 0 {
            Some(FRAME_HEADER_LEN - self.header_len)
        } else if self.payload_left > 0 {
            Some(self.payload_left)
        } else {
            None
        }
    }
}

/// The client's streams still open, for idleness.
#[derive(Debug, Default)]
struct Streams {
    /// By id: which sides have ended it.
    open: HashMap<u32, u8>,
    last_client_stream: u32,
}

const CLIENT_ENDED: u8 = 1;
const SERVER_ENDED: u8 = 2;

impl Streams {
    fn inbound(&mut self, frame: FrameHeader) {
        if frame.kind == HEADERS && frame.stream % 2 == 1 && frame.stream > self.last_client_stream
        {
            self.last_client_stream = frame.stream;
            self.open.insert(frame.stream, 0);
        }
        self.common(frame, CLIENT_ENDED);
    }

    fn outbound(&mut self, frame: FrameHeader) {
        self.common(frame, SERVER_ENDED);
    }

    fn common(&mut self, frame: FrameHeader, side: u8) {
        if frame.kind == RST_STREAM {
            self.open.remove(&frame.stream);
        } else if frame.ends_stream() {
            if let Some(ended) = self.open.get_mut(&frame.stream) {
                *ended |= side;
                if *ended == CLIENT_ENDED | SERVER_ENDED {
                    self.open.remove(&frame.stream);
                }
            }
        }
    }
}

/// gRPC-Go's ping strikes.
#[derive(Debug)]
struct PingPolicy {
    min_interval: Duration,
    last: Option<Instant>,
    strikes: u32,
    /// The node sent HEADERS or DATA since the last ping: the next one is
    /// not judged.
    reset: bool,
}

impl PingPolicy {
    /// A ping from the client; true when it is one too many.
    fn ping(&mut self, now: Instant) -> bool {
        let last = self.last.replace(now);
        if std::mem::take(&mut self.reset) {
            self.strikes = 0;
            return false;
        }
        if last.is_some_and(|last| now < last + self.min_interval) {
            self.strikes += 1;
        }
        self.strikes > MAX_PING_STRIKES
    }
}

/// A GOAWAY frame.
fn goaway(last_stream: u32, code: u32, debug: &[u8]) -> Vec<u8> {
    let length = 8 + debug.len();
    let mut frame = Vec::with_capacity(FRAME_HEADER_LEN + length);
    frame.extend_from_slice(&(length as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(&[GOAWAY, 0, 0, 0, 0, 0]);
    frame.extend_from_slice(&(last_stream & 0x7fff_ffff).to_be_bytes());
    frame.extend_from_slice(&code.to_be_bytes());
    frame.extend_from_slice(debug);
    frame
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deadline {
    Preface,
    Idle,
}

/// A gRPC connection held to [`Http2Rules`].
pub struct GrpcConnection<IO> {
    io: IO,
    rules: Http2Rules,
    inbound: FrameScanner,
    outbound: FrameScanner,
    /// The client's first frame has come.
    started: bool,
    streams: Streams,
    pings: PingPolicy,
    timer: Pin<Box<Sleep>>,
    armed: Option<Deadline>,
    /// A GOAWAY of the node's own, and how much of it is written.
    goaway: Option<(Vec<u8>, usize)>,
    /// The node is done with the connection.
    closed: bool,
}

impl<IO> GrpcConnection<IO> {
    pub fn new(io: IO, rules: Http2Rules) -> GrpcConnection<IO> {
        GrpcConnection {
            io,
            rules,
            inbound: FrameScanner::client(),
            outbound: FrameScanner::default(),
            started: false,
            streams: Streams::default(),
            pings: PingPolicy {
                min_interval: rules.min_ping_interval,
                last: None,
                strikes: 0,
                reset: false,
            },
            timer: Box::pin(tokio::time::sleep(rules.preface_timeout)),
            armed: Some(Deadline::Preface),
            goaway: None,
            closed: false,
        }
    }

    pub fn get_ref(&self) -> &IO {
        &self.io
    }

    /// Streams the client has open now.
    fn open_streams(&self) -> usize {
        self.streams.open.len()
    }

    fn send_goaway(&mut self, code: u32, debug: &'static [u8]) {
        if self.goaway.is_none() && !self.closed {
            let frame = goaway(self.streams.last_client_stream, code, debug);
            self.goaway = Some((frame, 0));
        }
    }

    /// Arms the idle deadline when the last stream ends, disarms it while
    /// any is open.
    fn rearm(&mut self) {
        if !self.started {
            return;
        }
        if self.open_streams() > 0 {
            self.armed = None;
        } else if self.armed != Some(Deadline::Idle) {
            self.armed = Some(Deadline::Idle);
            let at = Instant::now() + self.rules.idle_timeout;
            self.timer.as_mut().reset(at);
        }
    }

    fn on_inbound(&mut self, data: &[u8]) {
        let Self {
            inbound,
            streams,
            pings,
            started,
            ..
        } = self;
        let mut too_many_pings = false;
        inbound.scan(data, |frame| {
            *started = true;
            if frame.kind == PING && frame.flags & ACK == 0 {
                too_many_pings |= pings.ping(Instant::now());
            }
            streams.inbound(frame);
        });
        if too_many_pings {
            tracing::warn!(
                min_interval = ?self.rules.min_ping_interval,
                "client pings too often: GOAWAY too_many_pings"
            );
            self.send_goaway(ENHANCE_YOUR_CALM, b"too_many_pings");
        }
        self.rearm();
    }

    fn on_outbound(&mut self, data: &[u8]) {
        let Self {
            outbound,
            streams,
            pings,
            ..
        } = self;
        outbound.scan(data, |frame| {
            if matches!(frame.kind, HEADERS | DATA) {
                pings.reset = true;
            }
            streams.outbound(frame);
        });
        self.rearm();
    }
}

fn closed_error() -> io::Error {
    io::Error::new(
        io::ErrorKind::BrokenPipe,
        "the connection was closed by the node",
    )
}

impl<IO: AsyncWrite + Unpin> GrpcConnection<IO> {
    /// Writes the GOAWAY between two frames; the connection is closed after.
    fn poll_goaway(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.outbound.to_boundary().is_some() {
            // hyper is in the middle of a frame: poll_write finishes it and
            // sends the GOAWAY.
            return Poll::Pending;
        }
        while let Some((frame, written)) = self.goaway.as_mut() {
            if *written == frame.len() {
                break;
            }
            let n = std::task::ready!(Pin::new(&mut self.io).poll_write(cx, &frame[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        std::task::ready!(Pin::new(&mut self.io).poll_flush(cx))?;
        self.goaway = None;
        self.closed = true;
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncRead for GrpcConnection<IO> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.closed {
                return Poll::Ready(Ok(()));
            }
            if this.goaway.is_some() {
                // Ends with the connection closed: the read sees its end.
                std::task::ready!(this.poll_goaway(cx))?;
                continue;
            }
            if let Some(deadline) = this.armed {
                if this.timer.as_mut().poll(cx).is_ready() {
                    this.armed = None;
                    match deadline {
                        Deadline::Preface => {
                            this.closed = true;
                            return Poll::Ready(Err(io::Error::new(
                                io::ErrorKind::TimedOut,
                                "no HTTP/2 preface within General.ConnectionTimeout",
                            )));
                        }
                        Deadline::Idle => {
                            tracing::debug!("closing an idle gRPC connection");
                            this.send_goaway(NO_ERROR, b"max_idle");
                            continue;
                        }
                    }
                }
            }
            let before = buf.filled().len();
            std::task::ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            this.on_inbound(&buf.filled()[before..]);
            if this.goaway.is_some() {
                // Come back to write it once hyper has taken these bytes.
                cx.waker().wake_by_ref();
            }
            return Poll::Ready(Ok(()));
        }
    }
}

impl<IO: AsyncRead + AsyncWrite + Unpin> AsyncWrite for GrpcConnection<IO> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed {
            return Poll::Ready(Err(closed_error()));
        }
        let mut buf = buf;
        if this.goaway.is_some() {
            match this.outbound.to_boundary() {
                None => {
                    std::task::ready!(this.poll_goaway(cx))?;
                    // The read side ends now.
                    cx.waker().wake_by_ref();
                    return Poll::Ready(Err(closed_error()));
                }
                // Finish the frame under way first.
                Some(left) => buf = &buf[..left.min(buf.len())],
            }
        }
        let n = std::task::ready!(Pin::new(&mut this.io).poll_write(cx, buf))?;
        this.on_outbound(&buf[..n]);
        if this.goaway.is_some() && this.outbound.to_boundary().is_none() {
            cx.waker().wake_by_ref();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.closed || this.goaway.is_some() {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        let n = std::task::ready!(Pin::new(&mut this.io).poll_write_vectored(cx, bufs))?;
        let mut left = n;
        for slice in bufs {
            if left == 0 {
                break;
            }
            let take = left.min(slice.len());
            this.on_outbound(&slice[..take]);
            left -= take;
        }
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for GrpcConnection<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
        out.extend_from_slice(&[kind, flags]);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn settings() -> Vec<u8> {
        frame(4, 0, 0, &[])
    }

    fn ping() -> Vec<u8> {
        frame(PING, 0, 0, &[0; 8])
    }

    fn rules() -> Http2Rules {
        Http2Rules {
            min_ping_interval: Duration::from_secs(60),
            preface_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
        }
    }

    /// The node's end, wrapped, and the client's end.
    fn pair(rules: Http2Rules) -> (GrpcConnection<DuplexStream>, DuplexStream) {
        let (server, client) = tokio::io::duplex(1 << 16);
        (GrpcConnection::new(server, rules), client)
    }

    /// Reads on the node's end until it reports the connection's end.
    async fn read_until_end(server: &mut GrpcConnection<DuplexStream>) -> io::Result<Vec<u8>> {
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = server.read(&mut buf).await?;
            if n == 0 {
                return Ok(seen);
            }
            seen.extend_from_slice(&buf[..n]);
        }
    }

    /// The GOAWAY frame the client finds among what the node wrote.
    async fn goaway_received(client: &mut DuplexStream) -> (u32, u32, Vec<u8>) {
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("read");
        let mut at = 0;
        while at + FRAME_HEADER_LEN <= bytes.len() {
            let mut header = [0u8; FRAME_HEADER_LEN];
            header.copy_from_slice(&bytes[at..at + FRAME_HEADER_LEN]);
            let header = FrameHeader::parse(&header);
            let payload = &bytes[at + FRAME_HEADER_LEN..at + FRAME_HEADER_LEN + header.length];
            if header.kind == GOAWAY {
                let last = u32::from_be_bytes(payload[..4].try_into().expect("4"));
                let code = u32::from_be_bytes(payload[4..8].try_into().expect("4"));
                return (last, code, payload[8..].to_vec());
            }
            at += FRAME_HEADER_LEN + header.length;
        }
        panic!("no GOAWAY in {bytes:?}");
    }

    #[test]
    fn frames_are_found_however_the_bytes_are_cut() {
        let mut stream = PREFACE.to_vec();
        stream.extend(settings());
        stream.extend(frame(HEADERS, END_STREAM, 1, &[1, 2, 3]));
        stream.extend(ping());
        for cut in 1..stream.len() {
            let mut scanner = FrameScanner::client();
            let mut kinds = Vec::new();
            for piece in stream.chunks(cut) {
                scanner.scan(piece, |f| kinds.push((f.kind, f.stream, f.length)));
            }
            assert_eq!(kinds, vec![(4, 0, 0), (HEADERS, 1, 3), (PING, 0, 8)]);
            assert_eq!(scanner.to_boundary(), None);
        }
        let mut scanner = FrameScanner::default();
        scanner.scan(&frame(DATA, 0, 1, &[0; 10])[..12], |_| {});
        assert_eq!(scanner.to_boundary(), Some(7));
    }

    #[test]
    fn pings_too_often_strike_as_grpc_go_counts_them() {
        let start = Instant::now();
        let mut policy = PingPolicy {
            min_interval: Duration::from_secs(60),
            last: None,
            strikes: 0,
            reset: false,
        };
        // The first ping is free; two strikes are allowed; the third is not.
        assert!(!policy.ping(start));
        assert!(!policy.ping(start + Duration::from_secs(1)));
        assert!(!policy.ping(start + Duration::from_secs(2)));
        // Data sent by the node forgives.
        policy.reset = true;
        assert!(!policy.ping(start + Duration::from_secs(3)));
        assert_eq!(policy.strikes, 0);
        // Pings at the interval never strike.
        for minute in 1..10 {
            assert!(!policy.ping(start + Duration::from_secs(3 + 60 * minute)));
        }
        assert!(!policy.ping(start + Duration::from_secs(600)));
        assert!(!policy.ping(start + Duration::from_secs(601)));
        assert!(policy.ping(start + Duration::from_secs(602)));
    }

    #[test]
    fn streams_are_open_until_both_sides_end_them() {
        let mut streams = Streams::default();
        let header = |kind, flags, stream| FrameHeader {
            length: 0,
            kind,
            flags,
            stream,
        };
        streams.inbound(header(HEADERS, 0, 1));
        streams.inbound(header(HEADERS, END_STREAM, 3));
        streams.inbound(header(DATA, END_STREAM, 1));
        assert_eq!(streams.open.len(), 2);
        streams.outbound(header(HEADERS, END_STREAM, 1));
        streams.outbound(header(RST_STREAM, 0, 3));
        assert!(streams.open.is_empty());
        // A stream id not above the last one opens nothing.
        streams.inbound(header(HEADERS, 0, 3));
        assert!(streams.open.is_empty());
    }

    #[tokio::test]
    async fn a_ping_flood_gets_goaway_too_many_pings() {
        let (mut server, mut client) = pair(rules());
        let mut flood = PREFACE.to_vec();
        flood.extend(settings());
        flood.extend(frame(HEADERS, 0, 1, &[]));
        for _ in 0..4 {
            flood.extend(ping());
        }
        client.write_all(&flood).await.expect("write");
        let seen = read_until_end(&mut server).await.expect("read");
        assert_eq!(seen, flood, "every byte reaches the server first");
        drop(server);
        let (last, code, debug) = goaway_received(&mut client).await;
        assert_eq!((last, code), (1, ENHANCE_YOUR_CALM));
        assert_eq!(debug, b"too_many_pings");
    }

    #[tokio::test]
    async fn a_connection_without_preface_is_dropped() {
        let (mut server, mut client) = pair(Http2Rules {
            preface_timeout: Duration::from_millis(100),
            ..rules()
        });
        client.write_all(&PREFACE[..10]).await.expect("write");
        let error = read_until_end(&mut server).await.expect_err("timed out");
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn an_idle_connection_gets_goaway_max_idle_but_not_while_streams_are_open() {
        let (mut server, mut client) = pair(Http2Rules {
            idle_timeout: Duration::from_millis(100),
            ..rules()
        });
        let mut start = PREFACE.to_vec();
        start.extend(settings());
        start.extend(frame(HEADERS, END_STREAM, 1, &[]));
        client.write_all(&start).await.expect("write");
        let mut buf = [0u8; 4096];
        let mut seen = 0;
        while seen < start.len() {
            seen += server.read(&mut buf).await.expect("read");
        }
        // An open stream: no idle deadline.
        assert_eq!(server.open_streams(), 1);
        assert_eq!(server.armed, None);
        // The node answers and ends the stream: idle from now on.
        server
            .write_all(&frame(HEADERS, END_STREAM, 1, &[0; 3]))
            .await
            .expect("write");
        assert_eq!(server.open_streams(), 0);
        assert_eq!(server.armed, Some(Deadline::Idle));
        let rest = read_until_end(&mut server).await.expect("ends");
        assert!(rest.is_empty());
        drop(server);
        let (last, code, debug) = goaway_received(&mut client).await;
        assert_eq!(
            (last, code, debug.as_slice()),
            (1, NO_ERROR, &b"max_idle"[..])
        );
    }

    #[tokio::test]
    async fn the_goaway_waits_for_the_frame_under_way() {
        let (mut server, mut client) = pair(rules());
        let mut start = PREFACE.to_vec();
        start.extend(settings());
        client.write_all(&start).await.expect("write");
        let mut buf = [0u8; 64];
        let mut seen = 0;
        while seen < start.len() {
            seen += server.read(&mut buf).await.expect("read");
        }
        // Half a DATA frame written, then the GOAWAY is decided.
        let data = frame(DATA, 0, 1, &[7; 20]);
        server.write_all(&data[..15]).await.expect("write");
        server.send_goaway(ENHANCE_YOUR_CALM, b"too_many_pings");
        // Only the rest of the frame goes out before it.
        let n = server.write(&data[15..]).await.expect("the frame's end");
        assert_eq!(n, data.len() - 15);
        assert!(server.write(&settings()).await.is_err());
        drop(server);
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.expect("read");
        assert_eq!(&bytes[..data.len()], &data[..]);
        assert_eq!(bytes[data.len() + 3], GOAWAY);
    }
}
