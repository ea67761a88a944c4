//! One node under hostile load, with the memory and file limits a small
//! deployment gives it, while a well-behaved client keeps ordering.
//!
//! The node runs as a process of its own, started with a 2 GB address-space
//! limit (RLIMIT_AS) and 1,024 files (RLIMIT_NOFILE). At the same time:
//! Deliver streams that never read (2,000 by default, `ORDO_HOSTILE_STREAMS`
//! for more), 100 MB messages (over and under MaxRecvMsgSize), half-sent
//! HTTP requests on the admin and operations listeners, a ping flood, and a
//! flood of connections past the gRPC cap — configured at 2,000, more than
//! the file limit allows, so the node must lower it. The test checks every
//! refusal's code, that the node stays within its limits and keeps ordering
//! every envelope of the well-behaved client, and that its memory falls back
//! once the hostile clients are gone.

use std::collections::HashSet;
use std::io::ErrorKind;
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

use ordo::fabric::blockutil;
use ordo::fabric::protos::common::{Envelope, Status};
use ordo::fabric::protos::orderer::atomic_broadcast_client::AtomicBroadcastClient;
use ordo::fabric::protos::orderer::deliver_response::Type as DeliverItem;
use ordo::fabric::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::fabric::protos::orderer::DeliverResponse;
use ordo::runtime::server::connections::RESERVED_FILE_DESCRIPTORS;
use ordo::tools::client::envelope::{seek, transaction, BlockPosition};
use ordo::tools::client::participation::AdminClient;
use prost::Message;

use crate::common::{free_port, identity_env, ledger_dir, tx_id_of, CHANNEL, PATIENCE};

/// The node's address space.
const MEMORY_LIMIT: u64 = 2 << 30;
/// Files the node may open.
const FILE_LIMIT: u64 = 1024;
/// More than the file limit allows: the node lowers it.
const CONFIGURED_MAX_CONNECTIONS: usize = 2000;
const STREAMS_PER_CONNECTION: usize = 100;
/// Fabric's default MaxRecvMsgSize.
const MAX_RECV: usize = 100 * 1024 * 1024;
/// gRPC connections that never send anything.
const SILENT_CONNECTIONS: usize = 50;
/// Half-sent requests per HTTP listener.
const SLOW_HTTP_CLIENTS: usize = 200;
/// Envelopes the well-behaved client orders at a time (a block's worth).
const WELL_BEHAVED_ROUND: usize = 500;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

fn hostile_streams() -> usize {
    std::env::var("ORDO_HOSTILE_STREAMS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

/// What /proc says about the node.
#[derive(Debug, Clone, Copy, Default)]
struct Usage {
    rss_mb: u64,
    peak_rss_mb: u64,
    virtual_mb: u64,
    fds: usize,
}

fn usage(pid: u32) -> Usage {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("node status");
    let field = |name: &str| -> u64 {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .expect("field")
    };
    Usage {
        rss_mb: field("VmRSS:") / 1024,
        peak_rss_mb: field("VmHWM:") / 1024,
        virtual_mb: field("VmPeak:") / 1024,
        fds: std::fs::read_dir(format!("/proc/{pid}/fd"))
            .expect("fds")
            .count(),
    }
}

struct LimitedNode {
    child: Child,
    grpc: SocketAddr,
    admin: SocketAddr,
    operations: SocketAddr,
}

impl LimitedNode {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn assert_alive(&mut self) {
        assert!(
            self.child.try_wait().expect("wait").is_none(),
            "the node died under load"
        );
    }
}

impl Drop for LimitedNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `ordo start` with the memory and file limits set on the process.
async fn start_limited(dir: &Path) -> LimitedNode {
    let grpc: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let operations: SocketAddr = format!("127.0.0.1:{}", free_port())
        .parse()
        .expect("address");
    let log = std::fs::File::create(dir.join("node.log")).expect("log file");
    let mut command = Command::new(env!("CARGO_BIN_EXE_ordo"));
    command
        .arg("start")
        .env("ORDERER_GENERAL_LISTENPORT", grpc.port().to_string())
        .env("ORDERER_ADMIN_LISTENADDRESS", admin.to_string())
        .env("ORDERER_OPERATIONS_LISTENADDRESS", operations.to_string())
        .env("ORDERER_FILELEDGER_LOCATION", ledger_dir(dir))
        .env(
            "ORDERER_GENERAL_MAXCONNECTIONS",
            CONFIGURED_MAX_CONNECTIONS.to_string(),
        )
        .env(
            "ORDERER_GENERAL_MAXCONCURRENTSTREAMS",
            STREAMS_PER_CONNECTION.to_string(),
        )
        .env("ORDERER_GENERAL_CONNECTIONTIMEOUT", "2s")
        .env("ORDERER_ADMIN_READHEADERTIMEOUT", "2s")
        .env("ORDERER_OPERATIONS_READHEADERTIMEOUT", "2s")
        .env("FABRIC_LOGGING_SPEC", "warn")
        .envs(identity_env(dir))
        .stdout(Stdio::null())
        .stderr(log);
    set_limits(&mut command);
    let child = command.spawn().expect("spawn ordo");
    let node = LimitedNode {
        child,
        grpc,
        admin,
        operations,
    };
    let deadline = Instant::now() + PATIENCE;
    while TcpStream::connect(node.grpc).await.is_err() {
        assert!(Instant::now() < deadline, "ordo did not start listening");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    node
}

fn set_limits(command: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only setrlimit runs between fork and exec, which is
    // async-signal-safe.
    unsafe {
        command.pre_exec(|| {
            for (resource, value) in [
                (libc::RLIMIT_AS, MEMORY_LIMIT),
                (libc::RLIMIT_NOFILE, FILE_LIMIT),
            ] {
                let limit = libc::rlimit {
                    rlim_cur: value,
                    rlim_max: value,
                };
                if libc::setrlimit(resource, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
}

async fn grpc_client(address: SocketAddr) -> AtomicBroadcastClient<Channel> {
    let channel = Endpoint::from_shared(format!("http://{address}"))
        .expect("endpoint")
        // Small windows: what the node sends a client that does not read
        // stays small in this process too.
        .initial_stream_window_size(Some(64 * 1024))
        .initial_connection_window_size(Some(1024 * 1024))
        .connect()
        .await
        .expect("connect");
    AtomicBroadcastClient::new(channel)
        .max_encoding_message_size(usize::MAX)
        .max_decoding_message_size(usize::MAX)
}

/// Orders `envelopes` on one stream, waiting for each answer.
async fn order(client: &mut AtomicBroadcastClient<Channel>, envelopes: Vec<Envelope>) {
    let (tx, rx) = mpsc::channel(64);
    let mut answers = client
        .broadcast(ReceiverStream::new(rx))
        .await
        .expect("broadcast")
        .into_inner();
    let count = envelopes.len();
    let sender = tokio::spawn(async move {
        for envelope in envelopes {
            if tx.send(envelope).await.is_err() {
                return;
            }
        }
    });
    for _ in 0..count {
        let answer = tokio::time::timeout(PATIENCE, answers.next())
            .await
            .expect("an answer in time")
            .expect("an answer")
            .expect("no gRPC error");
        assert_eq!(answer.status, Status::Success as i32, "{}", answer.info);
    }
    sender.await.expect("sender");
}

/// The well-behaved client: orders envelopes, a round at a time, until
/// `stop`, and follows the chain until it has seen every one of them in a
/// block. Returns how many it ordered and how many per second.
async fn well_behaved(address: SocketAddr, stop: CancellationToken) -> (usize, f64) {
    let mut broadcaster = grpc_client(address).await;
    let mut reader = grpc_client(address).await;
    let request = seek(
        CHANNEL,
        BlockPosition::Newest,
        BlockPosition::Number(u64::MAX),
        SeekBehavior::BlockUntilReady,
        SeekContentType::Block,
    );
    let mut blocks = reader
        .deliver(tokio_stream::once(request))
        .await
        .expect("deliver")
        .into_inner();
    let (ordered_tx, mut ordered) = mpsc::unbounded_channel::<String>();
    let started = Instant::now();
    let ordering = tokio::spawn(async move {
        let mut count = 0;
        while !stop.is_cancelled() || count == 0 {
            let round: Vec<Envelope> = (0..WELL_BEHAVED_ROUND)
                .map(|i| {
                    transaction(
                        CHANNEL,
                        Bytes::from(format!("{count} {i} {}", "x".repeat(1000))),
                    )
                })
                .collect();
            for envelope in &round {
                let _ = ordered_tx.send(tx_id_of(envelope));
            }
            order(&mut broadcaster, round).await;
            count += WELL_BEHAVED_ROUND;
        }
        count
    });
    let mut expected = HashSet::new();
    let mut delivered = HashSet::new();
    loop {
        while let Ok(id) = ordered.try_recv() {
            if !delivered.remove(&id) {
                expected.insert(id);
            }
        }
        if ordering.is_finished() && ordered.is_empty() && expected.is_empty() {
            break;
        }
        let item = tokio::time::timeout(PATIENCE, blocks.next())
            .await
            .expect("blocks keep coming")
            .expect("the stream goes on")
            .expect("no gRPC error");
        let Some(DeliverItem::Block(block)) = item.r#type else {
            panic!("unexpected deliver answer {item:?}");
        };
        for raw in blockutil::entries(&block) {
            let id = tx_id_of(&Envelope::decode(raw.clone()).expect("an envelope"));
            if !expected.remove(&id) {
                delivered.insert(id);
            }
        }
    }
    let count = ordering.await.expect("ordering");
    (count, count as f64 / started.elapsed().as_secs_f64())
}

/// Connections and the Deliver streams opened on them.
type Readers = Vec<(
    AtomicBroadcastClient<Channel>,
    Vec<tonic::Streaming<DeliverResponse>>,
)>;

/// One connection with `streams` Deliver streams that never read; `None`
/// when the node closed the connection before they were all open.
async fn open_readers(
    address: SocketAddr,
    streams: usize,
) -> Option<(
    AtomicBroadcastClient<Channel>,
    Vec<tonic::Streaming<DeliverResponse>>,
)> {
    let client = grpc_client(address).await;
    let mut held = Vec::with_capacity(streams);
    for _ in 0..streams {
        let request = seek(
            CHANNEL,
            BlockPosition::Oldest,
            BlockPosition::Number(u64::MAX),
            SeekBehavior::BlockUntilReady,
            SeekContentType::Block,
        );
        match client.clone().deliver(tokio_stream::once(request)).await {
            Ok(stream) => held.push(stream.into_inner()),
            Err(status) if status.code() == tonic::Code::Cancelled => return None,
            Err(status) => panic!("a Deliver stream: {status}"),
        }
    }
    Some((client, held))
}

/// Opens `count` Deliver streams from the oldest block that never read,
/// `STREAMS_PER_CONNECTION` per connection.
async fn idle_readers(address: SocketAddr, count: usize) -> Readers {
    let connections = count.div_ceil(STREAMS_PER_CONNECTION);
    let opened = futures::future::join_all((0..connections).map(|c| async move {
        let streams = STREAMS_PER_CONNECTION.min(count - c * STREAMS_PER_CONNECTION);
        // A connection whose preface the starved client sent later than
        // General.ConnectionTimeout is closed by the node, as it should be:
        // such a reader connects again.
        for _ in 0..3 {
            if let Some(opened) = open_readers(address, streams).await {
                return opened;
            }
        }
        panic!("a reader's connection was closed three times while opening its streams");
    }))
    .await;
    opened
}

/// Sends one message of `size` bytes of data; the gRPC code or Fabric
/// status it is answered with.
async fn big_message(address: SocketAddr, size: usize) -> Result<Status, tonic::Code> {
    let mut client = grpc_client(address).await;
    let envelope = transaction(CHANNEL, Bytes::from(vec![7u8; size]));
    let answer = async {
        let mut answers = client
            .broadcast(tokio_stream::once(envelope))
            .await?
            .into_inner();
        match answers.next().await {
            Some(Ok(answer)) => Ok(Status::try_from(answer.status).expect("a status")),
            Some(Err(status)) => Err(status),
            None => Err(tonic::Status::unknown("no answer")),
        }
    };
    answer.await.map_err(|status| status.code())
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = (payload.len() as u32).to_be_bytes()[1..].to_vec();
    out.extend_from_slice(&[kind, flags, 0, 0, 0, 0]);
    out.extend_from_slice(payload);
    out
}

/// The next HTTP/2 frame: kind, flags, payload.
async fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, u8, Vec<u8>)> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await?;
    let length = u32::from_be_bytes([0, header[0], header[1], header[2]]) as usize;
    let mut payload = vec![0u8; length];
    stream.read_exact(&mut payload).await?;
    Ok((header[3], header[4], payload))
}

/// Reads frames until a GOAWAY: its error code and debug data.
async fn goaway(stream: &mut TcpStream) -> (u32, Vec<u8>) {
    loop {
        let (kind, _, payload) = read_frame(stream).await.expect("a GOAWAY first");
        if kind == 7 {
            let code = u32::from_be_bytes(payload[4..8].try_into().expect("code"));
            return (code, payload[8..].to_vec());
        }
    }
}

/// A client that pings far more often than Keepalive.ServerMinInterval.
async fn ping_flood(address: SocketAddr) -> (u32, Vec<u8>) {
    // The node answers the ping that is one too many with its ACK and its
    // GOAWAY, in either order, then closes. When the ACK comes first, the
    // next ping can meet the closed connection, and the reset it causes can
    // destroy the GOAWAY before it is read: that attempt proves nothing
    // either way, and a new connection floods again.
    for _ in 0..5 {
        if let Some(goaway) = ping_flood_once(address).await {
            return goaway;
        }
    }
    panic!("five ping floods, and the node's GOAWAY was never read");
}

/// One flood; `None` when the connection was reset before a GOAWAY could
/// be read (see [`ping_flood`]).
async fn ping_flood_once(address: SocketAddr) -> Option<(u32, Vec<u8>)> {
    let mut stream = TcpStream::connect(address).await.expect("connect");
    let mut start = PREFACE.to_vec();
    start.extend(frame(4, 0, &[]));
    stream.write_all(&start).await.expect("write");
    // One ping at a time, each sent once the last is answered: the node
    // closes after its GOAWAY, and a ping it never read would make that
    // close a reset that can overtake the GOAWAY.
    for _ in 0..10 {
        if let Err(e) = stream.write_all(&frame(6, 0, &[0; 8])).await {
            assert!(
                matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset),
                "a ping: {e}"
            );
        }
        loop {
            let (kind, flags, payload) = match read_frame(&mut stream).await {
                Ok(frame) => frame,
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::ConnectionReset
                            | ErrorKind::UnexpectedEof
                            | ErrorKind::BrokenPipe
                    ) =>
                {
                    return None;
                }
                Err(e) => panic!("an answer: {e}"),
            };
            if kind == 7 {
                let code = u32::from_be_bytes(payload[4..8].try_into().expect("code"));
                return Some((code, payload[8..].to_vec()));
            }
            if kind == 6 && flags & 1 == 1 {
                break;
            }
        }
    }
    panic!("ten early pings and no GOAWAY");
}

/// Opens connections until the node has refused `refusals` of them; the
/// admitted ones are held (they sent HTTP/2's preface, so only the idle
/// timeout would end them). Returns them and every refusal's code and text.
async fn connection_flood(
    address: SocketAddr,
    refusals: usize,
) -> (Vec<TcpStream>, Vec<(u32, Vec<u8>)>) {
    let mut held = Vec::new();
    let mut refused = Vec::new();
    while refused.len() < refusals {
        assert!(held.len() <= CONFIGURED_MAX_CONNECTIONS, "never refused");
        let mut stream = TcpStream::connect(address).await.expect("connect");
        // Nothing is sent before the node's first frame: a refusal closing
        // a socket with unread data would reset it.
        let (kind, _, payload) = read_frame(&mut stream).await.expect("the node's SETTINGS");
        assert_eq!(kind, 4, "SETTINGS first");
        if payload.is_empty() {
            // The refusal's own empty SETTINGS, then its GOAWAY.
            refused.push(goaway(&mut stream).await);
        } else {
            let mut start = PREFACE.to_vec();
            start.extend(frame(4, 0, &[]));
            stream.write_all(&start).await.expect("preface");
            held.push(stream);
        }
    }
    (held, refused)
}

/// Connections that never send HTTP/2's preface: how many the node closed
/// (after General.ConnectionTimeout).
async fn silent_connections(address: SocketAddr, count: usize) -> usize {
    let closed = futures::future::join_all((0..count).map(|_| async move {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let mut seen = Vec::new();
        stream.read_to_end(&mut seen).await.is_ok()
    }))
    .await;
    closed.into_iter().filter(|closed| *closed).count()
}

/// Half-sent requests: how many were refused (503 or reset at once) and how
/// many were cut off (closed with no answer) by ReadHeaderTimeout.
async fn slow_http(address: SocketAddr, path: &str, count: usize) -> (usize, usize) {
    let results = futures::future::join_all((0..count).map(|_| async move {
        let mut stream = TcpStream::connect(address).await.expect("connect");
        let _ = stream
            .write_all(format!("GET {path} HTTP/1.1\r\nHost: node\r\nAcc").as_bytes())
            .await;
        let mut answer = Vec::new();
        match stream.read_to_end(&mut answer).await {
            Ok(_) if answer.is_empty() => (0, 1),
            Ok(_) => {
                assert!(answer.starts_with(b"HTTP/1.1 503"), "{answer:?}");
                (1, 0)
            }
            // The refusal closed the socket with the request unread.
            Err(_) => (1, 0),
        }
    }))
    .await;
    results
        .into_iter()
        .fold((0, 0), |(r, c), (r2, c2)| (r + r2, c + c2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_keeps_ordering_within_its_limits_under_hostile_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let streams = hostile_streams();
    let mut node = start_limited(dir.path()).await;
    let pid = node.pid();

    // Blocks worth sending: twenty envelopes of 500 KB.
    let mut client = grpc_client(node.grpc).await;
    let fill: Vec<Envelope> = (0..20)
        .map(|i| transaction(CHANNEL, Bytes::from(vec![i as u8; 500_000])))
        .collect();
    order(&mut client, fill).await;
    let before = usage(pid);
    println!("before the attack: {before:?}");

    // Peak figures, sampled while the attack runs.
    let sampling = CancellationToken::new();
    let sampler = {
        let stop = sampling.clone();
        tokio::spawn(async move {
            let mut peak_fds = 0;
            while !stop.is_cancelled() {
                peak_fds = peak_fds.max(usage(pid).fds);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak_fds
        })
    };

    let grpc = node.grpc;
    let attack_over = CancellationToken::new();
    let well_behaved = tokio::spawn(well_behaved(grpc, attack_over.clone()));
    let big_messages = futures::future::join_all([
        big_message(grpc, MAX_RECV + 1),
        big_message(grpc, MAX_RECV + 1),
        big_message(grpc, 100_000_000),
        big_message(grpc, 100_000_000),
    ]);
    let slow_admin = slow_http(node.admin, "/participation/v1/channels", SLOW_HTTP_CLIENTS);
    let slow_operations = slow_http(node.operations, "/healthz", SLOW_HTTP_CLIENTS);
    let (readers, big, admin, operations, pings, silent) = tokio::join!(
        idle_readers(grpc, streams),
        big_messages,
        slow_admin,
        slow_operations,
        ping_flood(grpc),
        silent_connections(grpc, SILENT_CONNECTIONS),
    );
    // With the Deliver streams in place, the rest of the gRPC cap is
    // flooded; beyond it, every connection is refused.
    let (holders, refused) = connection_flood(grpc, 200).await;
    let beyond = Endpoint::from_shared(format!("http://{grpc}"))
        .expect("endpoint")
        .connect()
        .await;
    let beyond = match beyond {
        Ok(channel) => AtomicBroadcastClient::new(channel)
            .deliver(tokio_stream::once(seek(
                CHANNEL,
                BlockPosition::Oldest,
                BlockPosition::Oldest,
                SeekBehavior::FailIfNotReady,
                SeekContentType::Block,
            )))
            .await
            .map(|_| ())
            .map_err(|s| s.code()),
        Err(_) => Err(tonic::Code::Unavailable),
    };
    let during = usage(pid);
    attack_over.cancel();
    let (ordered, throughput) = tokio::time::timeout(PATIENCE * 4, well_behaved)
        .await
        .expect("the well-behaved client finishes")
        .expect("well-behaved client");
    node.assert_alive();
    sampling.cancel();
    let peak_fds = sampler.await.expect("sampler");

    println!(
        "{streams} idle Deliver streams; {} connections held, {} refused; \
         admin: {admin:?}, operations: {operations:?} (refused, cut off)",
        holders.len(),
        refused.len()
    );
    println!(
        "during: {during:?}; peak fds {peak_fds}; well-behaved: {ordered} envelopes ordered \
         and delivered, {throughput:.0} per second"
    );

    // Every refusal says why, as gRPC-Go and Fabric would.
    assert_eq!(
        big,
        vec![
            Err(tonic::Code::ResourceExhausted),
            Err(tonic::Code::ResourceExhausted),
            Ok(Status::BadRequest),
            Ok(Status::BadRequest),
        ]
    );
    assert_eq!(pings, (0xb, b"too_many_pings".to_vec()));
    assert_eq!(silent, SILENT_CONNECTIONS, "closed by ConnectionTimeout");
    assert!(refused
        .iter()
        .all(|r| *r == (0x7, b"too many connections".to_vec())));
    // A gRPC client is refused, not queued: tonic reports the GOAWAY
    // (REFUSED_STREAM: UNAVAILABLE) or, when the connection closed before
    // its request went out, CANCELLED.
    assert!(
        matches!(
            beyond,
            Err(tonic::Code::Unavailable) | Err(tonic::Code::Cancelled)
        ),
        "{beyond:?}"
    );
    assert_eq!(admin.0 + admin.1, SLOW_HTTP_CLIENTS);
    assert!(admin.0 > 0 && admin.1 > 0, "{admin:?}");
    assert!(operations.0 > 0 && operations.1 > 0, "{operations:?}");
    // The cap was lowered to leave the ledger its files.
    let connections = holders.len() + readers.len();
    assert!(
        connections < FILE_LIMIT as usize - RESERVED_FILE_DESCRIPTORS,
        "{connections} gRPC connections"
    );
    assert!(peak_fds < FILE_LIMIT as usize, "{peak_fds} files open");
    assert!(during.peak_rss_mb < MEMORY_LIMIT >> 20);
    assert!(during.virtual_mb < MEMORY_LIMIT >> 20);

    // The hostile clients go: the node gives its memory back, at least
    // half of what they cost.
    drop((readers, holders));
    let deadline = Instant::now() + PATIENCE;
    // (16 MB of slack for what the well-behaved client's blocks left.)
    let settled = before.rss_mb + 16 + during.rss_mb.saturating_sub(before.rss_mb) / 2;
    loop {
        let now = usage(pid);
        if now.rss_mb <= settled && now.fds <= before.fds + 8 {
            println!("after: {now:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "memory or files not given back: {now:?}, before the attack {before:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    node.assert_alive();
    // And it still serves every listener.
    let listed = AdminClient::new(&node.admin.to_string())
        .list()
        .await
        .expect("admin answers");
    assert_eq!(listed.status, 200);
    order(
        &mut client,
        vec![transaction(CHANNEL, Bytes::from_static(b"after"))],
    )
    .await;
}
