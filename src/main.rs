//! The `ordo` binary: run the orderer, or talk to one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;

use prost::Message;

use std::sync::Arc;
use std::time::Duration;

use ordo::bench::backpressure::{run_sweep, SweepOptions};
use ordo::bench::load::{run_load, LoadOptions, LoadReport, Percentiles};
use ordo::blockutil;
use ordo::channelconfig::ChannelConfig;
use ordo::client::broadcast::{broadcast, BroadcastOptions};
use ordo::client::connect;
use ordo::client::envelope::{seek, BlockPosition};
use ordo::client::identity::SigningIdentity;
use ordo::client::participation::AdminClient;
use ordo::client::TlsOptions;
use ordo::configtx::compute::{compute_update, config_update_envelope};
use ordo::configtxgen::ConfigTx;
use ordo::localconfig::NodeConfig;
use ordo::node::Node;
use ordo::protojson::ProtoJson;
use ordo::protos::common::Status;
use ordo::protos::common::{Block, Envelope};
use ordo::protos::orderer::deliver_response::Type as DeliverItem;
use ordo::protos::orderer::seek_info::{SeekBehavior, SeekContentType};
use ordo::protos::orderer::BroadcastResponse;

#[derive(Parser)]
#[command(
    name = "ordo",
    version,
    about = "A Hyperledger Fabric ordering service node"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the orderer. Without --config: $FABRIC_CFG_PATH/orderer.yaml if set,
    /// else the built-in default (solo channel "mychannel" on 127.0.0.1:7050).
    Start {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Send transactions and report how they were answered.
    Broadcast {
        #[arg(long, default_value = "mychannel")]
        channel: String,
        #[arg(long, default_value_t = 1000)]
        count: u64,
        /// Bytes of transaction data per envelope.
        #[arg(long, default_value_t = 2048)]
        size: usize,
        /// Concurrent Broadcast streams.
        #[arg(long, default_value_t = 1)]
        streams: u32,
        #[arg(long, default_value = "127.0.0.1:7050")]
        address: String,
    },
    /// Print blocks: one line each (number, transactions, header hash).
    Deliver {
        #[arg(long, default_value = "mychannel")]
        channel: String,
        /// oldest, newest or a block number.
        #[arg(long, default_value = "oldest")]
        start: BlockPosition,
        /// oldest, newest, a block number, or forever (follow new blocks).
        #[arg(long, default_value = "newest")]
        stop: BlockPosition,
        /// Answer NOT_FOUND instead of waiting for blocks not yet written.
        #[arg(long)]
        fail_if_not_ready: bool,
        #[arg(long, default_value = "127.0.0.1:7050")]
        address: String,
    },
    /// Make a genesis config block from a profile of configtx.yaml (configtxgen).
    Genesis {
        /// configtx.yaml, or the folder that holds it. Default: $FABRIC_CFG_PATH, else ./config.
        #[arg(long)]
        config_path: Option<PathBuf>,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        channel_id: String,
        #[arg(long)]
        output_block: PathBuf,
    },
    /// Read and write config blocks and updates as JSON (configtxlator).
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Manage the channels of an orderer through its admin listener (osnadmin).
    Channel {
        #[command(subcommand)]
        command: ChannelCommand,
        /// The orderer's admin listener.
        #[arg(long, global = true, default_value = "127.0.0.1:9443")]
        admin_address: String,
    },
    /// Write one block of a channel to a file (what `peer channel fetch` does).
    Fetch {
        #[arg(long, default_value = "mychannel")]
        channel: String,
        /// config (the current config block), newest, oldest or a block number.
        #[arg(long, default_value = "config")]
        block: String,
        #[arg(long)]
        output: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7050")]
        address: String,
    },
    /// Load and stress tools.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Send one prepared envelope (e.g. a config update) and print the answer.
    Submit {
        /// A file holding a marshalled common.Envelope.
        envelope: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7050")]
        address: String,
    },
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive any Fabric-compatible orderer: Broadcast streams plus one Deliver
    /// stream that finds this run's transactions. Exits non-zero if anything
    /// sent was not acknowledged, or anything acknowledged never delivered.
    Load {
        #[arg(long, default_value = "127.0.0.1:7050")]
        address: String,
        #[arg(long, default_value = "mychannel")]
        channel: String,
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        /// Concurrent Broadcast streams.
        #[arg(long, default_value_t = 4)]
        streams: u32,
        /// Bytes of transaction data per envelope.
        #[arg(long, default_value_t = 2048)]
        size: usize,
        /// Sign envelopes with a generated identity of this MSP ID.
        #[arg(long, conflicts_with = "msp_dir")]
        sign_as: Option<String>,
        /// Write the generated identity as an MSP folder (for a channel's config).
        #[arg(long, requires = "sign_as")]
        save_msp: Option<PathBuf>,
        /// Sign envelopes with the identity of this MSP folder (signcerts/, keystore/).
        #[arg(long, requires = "msp_id")]
        msp_dir: Option<PathBuf>,
        #[arg(long)]
        msp_id: Option<String>,
        /// TLS: the CA certificate (PEM) of the orderer's TLS certificate.
        #[arg(long)]
        tls_ca_file: Option<PathBuf>,
        /// TLS: the server name to verify (default: the address's host).
        #[arg(long, requires = "tls_ca_file")]
        tls_server_name: Option<String>,
        /// Mutual TLS: client certificate and key (PEM).
        #[arg(long, requires_all = ["tls_ca_file", "tls_client_key"])]
        tls_client_cert: Option<PathBuf>,
        #[arg(long, requires = "tls_client_cert")]
        tls_client_key: Option<PathBuf>,
        /// Seconds to wait, after the last answer, for deliveries to come.
        #[arg(long, default_value_t = 30)]
        deliver_timeout: u64,
        /// Envelopes per second over all streams (default: as fast as answered).
        #[arg(long)]
        rate: Option<f64>,
    },
    /// Sweep a node's in-flight bound and the client's concurrency; write
    /// samples.csv, settings.csv and backpressure.svg.
    Backpressure {
        /// Values of General.Backpressure.MaxInflightEnvelopes.
        #[arg(long, value_delimiter = ',', default_value = "64,512,4096,32768")]
        inflight: Vec<u32>,
        /// Numbers of Broadcast streams.
        #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
        streams: Vec<u32>,
        /// Envelopes per setting.
        #[arg(long, default_value_t = 100_000)]
        count: u64,
        #[arg(long, default_value_t = 2048)]
        size: usize,
        /// Sampling interval in milliseconds.
        #[arg(long, default_value_t = 100)]
        sample_ms: u64,
        #[arg(long, default_value = "backpressure")]
        output_dir: PathBuf,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a block as JSON, with config values, policies and MSPs decoded.
    Inspect { block: PathBuf },
    /// Turn JSON from `inspect` back into a block.
    Encode {
        json: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
    /// The CONFIG_UPDATE envelope that turns one config block (as JSON from
    /// `inspect`) into an edited copy of it.
    Update {
        #[arg(long)]
        original: PathBuf,
        #[arg(long)]
        updated: PathBuf,
        #[arg(long)]
        output: PathBuf,
    },
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Join a channel with its config block.
    Join {
        #[arg(long)]
        config_block: PathBuf,
    },
    /// List the channels.
    List,
    /// Show one channel.
    Info {
        #[arg(long)]
        channel_id: String,
    },
    /// Remove a channel and its ledger.
    Remove {
        #[arg(long)]
        channel_id: String,
    },
}

/// glibc gives each thread that allocates under contention its own arena,
/// and an arena keeps the block-sized buffers (about 1 MB) that the ledger's
/// blocking threads and Deliver streams free. Two arenas keep the node's
/// resident size near what it really holds (docs/benchmarks.md has the
/// figures).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn limit_malloc_arenas() {
    // SAFETY: mallopt only sets an allocator parameter; it runs first thing in
    // main, before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn limit_malloc_arenas() {}

fn main() -> ExitCode {
    limit_malloc_arenas();
    let cli = Cli::parse();
    if let Err(e) = ordo::logging::init() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once: most of the
/// library's errors already name their source in their own message.
fn describe(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let message = cause.to_string();
        if !text.contains(&message) {
            if !text.is_empty() {
                text.push_str(": ");
            }
            text.push_str(&message);
        }
    }
    text
}

async fn run(command: Command) -> Result<()> {
    match command {
        Command::Start { config } => start(config).await,
        Command::Broadcast {
            channel,
            count,
            size,
            streams,
            address,
        } => {
            let options = BroadcastOptions {
                address,
                channel,
                count,
                size,
                streams,
            };
            let report = broadcast(&options).await?;
            println!(
                "sent {} envelopes of {} data bytes over {} stream(s) in {:.2}s: {} SUCCESS, {:.0} envelopes/s",
                report.sent,
                options.size,
                options.streams,
                report.elapsed.as_secs_f64(),
                report.succeeded,
                report.envelopes_per_second()
            );
            for (status, (count, info)) in &report.errors {
                println!("  {count} answered {status}: {info}");
            }
            if report.succeeded != report.sent {
                bail!(
                    "{} of {} envelopes were not accepted",
                    report.sent - report.succeeded,
                    report.sent
                );
            }
            Ok(())
        }
        Command::Deliver {
            channel,
            start,
            stop,
            fail_if_not_ready,
            address,
        } => deliver(&address, &channel, start, stop, fail_if_not_ready).await,
        Command::Genesis {
            config_path,
            profile,
            channel_id,
            output_block,
        } => {
            let path = config_path
                .or_else(|| std::env::var_os("FABRIC_CFG_PATH").map(PathBuf::from))
                .unwrap_or_else(|| PathBuf::from("config"));
            let configtx = ConfigTx::load(&path)?;
            let block = configtx.genesis_block(&profile, &channel_id)?;
            write(&output_block, &block.encode_to_vec())?;
            println!(
                "wrote the genesis block of channel {channel_id} (profile {profile}) to {}",
                output_block.display()
            );
            Ok(())
        }
        Command::Config { command } => config_command(command),
        Command::Bench { command } => bench_command(command).await,
        Command::Fetch {
            channel,
            block,
            output,
            address,
        } => {
            let fetched = if block == "config" {
                let newest = fetch_block(&address, &channel, BlockPosition::Newest).await?;
                let index = blockutil::last_config_index(&newest)
                    .context("the newest block names no last config block")?;
                fetch_block(&address, &channel, BlockPosition::Number(index)).await?
            } else {
                let position: BlockPosition = block
                    .parse()
                    .map_err(|e| anyhow::anyhow!("--block {block}: {e}"))?;
                fetch_block(&address, &channel, position).await?
            };
            write(&output, &fetched.encode_to_vec())?;
            println!(
                "wrote block {} of channel {channel} to {}",
                blockutil::number(&fetched),
                output.display()
            );
            Ok(())
        }
        Command::Channel {
            command,
            admin_address,
        } => channel_command(command, &admin_address).await,
        Command::Submit { envelope, address } => {
            let raw = read(&envelope)?;
            let envelope = Envelope::decode(raw.as_slice())
                .with_context(|| format!("{} is not an envelope", envelope.display()))?;
            let answer = submit_one(&address, envelope).await?;
            let status = Status::try_from(answer.status).map_or_else(
                |_| answer.status.to_string(),
                |s| s.as_str_name().to_string(),
            );
            println!("{status} {}", answer.info);
            if answer.status != Status::Success as i32 {
                bail!("the orderer answered {status}");
            }
            Ok(())
        }
    }
}

fn read(path: &std::path::Path) -> Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn write(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

fn read_json(path: &std::path::Path) -> Result<serde_json::Value> {
    serde_json::from_slice(&read(path)?).with_context(|| format!("{} is not JSON", path.display()))
}

fn config_command(command: ConfigCommand) -> Result<()> {
    let codec = ProtoJson::new()?;
    match command {
        ConfigCommand::Inspect { block } => {
            let json = codec.block_to_json(&read(&block)?)?;
            println!("{}", serde_json::to_string_pretty(&json)?);
        }
        ConfigCommand::Encode { json, output } => {
            let bytes = codec.json_to_block(&read_json(&json)?)?;
            let block = Block::decode(bytes.as_slice())?;
            let data_hash = blockutil::data_hash(blockutil::entries(&block));
            if block.header.as_ref().map(|h| &h.data_hash) != Some(&data_hash) {
                eprintln!("warning: the block's data_hash does not match its data (edited data, or map entries written in another order)");
            }
            write(&output, &bytes)?;
        }
        ConfigCommand::Update {
            original,
            updated,
            output,
        } => {
            let config_of = |path: &std::path::Path| -> Result<ChannelConfig> {
                let bytes = codec.json_to_block(&read_json(path)?)?;
                let block = Block::decode(bytes.as_slice())?;
                ChannelConfig::from_config_block(&block)
                    .with_context(|| format!("{} is not a config block", path.display()))
            };
            let before = config_of(&original)?;
            let after = config_of(&updated)?;
            if before.channel_id != after.channel_id {
                bail!(
                    "the blocks are of different channels: {} and {}",
                    before.channel_id,
                    after.channel_id
                );
            }
            let update = compute_update(&before.channel_id, &before.config, &after.config)?;
            write(&output, &config_update_envelope(&update).encode_to_vec())?;
            println!(
                "wrote the config update of channel {} to {}",
                before.channel_id,
                output.display()
            );
        }
    }
    Ok(())
}

async fn bench_command(command: BenchCommand) -> Result<()> {
    match command {
        BenchCommand::Load {
            address,
            channel,
            count,
            streams,
            size,
            sign_as,
            save_msp,
            msp_dir,
            msp_id,
            tls_ca_file,
            tls_server_name,
            tls_client_cert,
            tls_client_key,
            deliver_timeout,
            rate,
        } => {
            let identity = match (sign_as, msp_dir, msp_id) {
                (Some(msp_id), _, _) => {
                    let identity = SigningIdentity::generate(&msp_id)?;
                    if let Some(dir) = save_msp {
                        identity.write_msp(&dir)?;
                        eprintln!("wrote the signing identity's MSP to {}", dir.display());
                    }
                    Some(Arc::new(identity))
                }
                (None, Some(dir), Some(msp_id)) => {
                    Some(Arc::new(SigningIdentity::from_msp_dir(&dir, &msp_id)?))
                }
                _ => None,
            };
            let tls = match tls_ca_file {
                Some(ca) => Some(TlsOptions {
                    ca_pem: read(&ca)?,
                    domain: tls_server_name,
                    client_identity: match (tls_client_cert, tls_client_key) {
                        (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
                        _ => None,
                    },
                }),
                None => None,
            };
            let options = LoadOptions {
                address,
                channel,
                count,
                streams,
                size,
                tls,
                identity,
                deliver_timeout: Duration::from_secs(deliver_timeout),
                rate,
            };
            let report = run_load(&options).await?;
            print_load_report(&options, &report);
            if !report.passed() {
                bail!(
                    "load run failed: {} sent, {} acknowledged, {} of those never delivered",
                    report.sent,
                    report.acknowledged,
                    report.undelivered
                );
            }
            Ok(())
        }
        BenchCommand::Backpressure {
            inflight,
            streams,
            count,
            size,
            sample_ms,
            output_dir,
        } => {
            let options = SweepOptions {
                inflight,
                streams,
                count,
                size,
                sample_every: Duration::from_millis(sample_ms.max(10)),
                output_dir: output_dir.clone(),
                binary: std::env::current_exe().context("cannot find the ordo binary")?,
            };
            let results = run_sweep(&options).await?;
            println!(
                "{:>10} {:>8} {:>12} {:>10} {:>10} {:>12} {:>10} {:>7}",
                "inflight",
                "streams",
                "acked/s",
                "ack p99",
                "wait ms",
                "deliv p99",
                "peak MB",
                "passed"
            );
            for r in &results {
                println!(
                    "{:>10} {:>8} {:>12.0} {:>10.2} {:>10.3} {:>12.2} {:>10.1} {:>7}",
                    r.inflight,
                    r.streams,
                    r.report.acked_per_second(),
                    r.report.ack_latency_ms.map_or(0.0, |p| p.p99),
                    r.mean_wait_ms,
                    r.report.delivery_latency_ms.map_or(0.0, |p| p.p99),
                    r.peak_rss_mb,
                    r.report.passed()
                );
            }
            println!(
                "wrote {}/samples.csv, settings.csv and backpressure.svg",
                output_dir.display()
            );
            let failed = results.iter().filter(|r| !r.report.passed()).count();
            if failed > 0 {
                bail!("{failed} setting(s) lost or refused envelopes");
            }
            Ok(())
        }
    }
}

fn print_load_report(options: &LoadOptions, report: &LoadReport) {
    let signing = options.identity.as_ref().map_or_else(
        || "unsigned".to_string(),
        |i| format!("signed by {}", i.msp_id()),
    );
    let transport = if options.tls.is_some() {
        "TLS"
    } else {
        "plaintext"
    };
    println!(
        "load: {} envelopes of {} bytes over {} streams to {} at {} ({signing}, {transport})",
        report.sent, options.size, options.streams, options.channel, options.address
    );
    println!(
        "acknowledged {} in {:.2}s: {:.0} envelopes/s",
        report.acknowledged,
        report.ack_elapsed.as_secs_f64(),
        report.acked_per_second()
    );
    println!(
        "delivered {} in {} blocks ({:.1} envelopes/block), last after {:.2}s: {:.0} envelopes/s",
        report.delivered,
        report.blocks,
        report.envelopes_per_block(),
        report.delivery_elapsed.as_secs_f64(),
        report.delivered_per_second()
    );
    let show = |name: &str, p: Option<Percentiles>| match p {
        Some(p) => println!(
            "{name} latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  max {:.2}",
            p.p50, p.p90, p.p99, p.max
        ),
        None => println!("{name} latency: no samples"),
    };
    show("ack", report.ack_latency_ms);
    show("broadcast-to-delivery", report.delivery_latency_ms);
    for (status, (count, info)) in &report.errors {
        println!("errors: {count} answered {status}: {info}");
    }
    if report.undelivered > 0 {
        println!(
            "NOT DELIVERED: {} acknowledged envelopes",
            report.undelivered
        );
    }
    if let Some(e) = &report.deliver_error {
        println!("deliver: {e}");
    }
    println!("{}", report.json());
}

async fn channel_command(command: ChannelCommand, admin_address: &str) -> Result<()> {
    let admin = AdminClient::new(admin_address);
    let answer = match command {
        ChannelCommand::Join { config_block } => admin.join(read(&config_block)?).await?,
        ChannelCommand::List => admin.list().await?,
        ChannelCommand::Info { channel_id } => admin.info(&channel_id).await?,
        ChannelCommand::Remove { channel_id } => admin.remove(&channel_id).await?,
    };
    // As osnadmin prints it: the status, then the body.
    println!("Status: {}", answer.status);
    let body = answer.json();
    if !body.is_null() {
        println!("{}", serde_json::to_string_pretty(&body)?);
    }
    if !answer.is_success() {
        bail!("the admin listener answered {}", answer.status);
    }
    Ok(())
}

/// One block, fetched with a Deliver request that fails if it does not exist.
async fn fetch_block(address: &str, channel: &str, position: BlockPosition) -> Result<Block> {
    let mut client = connect(address).await?;
    let request = seek(
        channel,
        position,
        position,
        SeekBehavior::FailIfNotReady,
        SeekContentType::Block,
    );
    let mut responses = client
        .deliver(tokio_stream::once(request))
        .await
        .context("deliver request failed")?
        .into_inner();
    match responses.next().await {
        Some(Ok(response)) => match response.r#type {
            Some(DeliverItem::Block(block)) => Ok(block),
            Some(DeliverItem::Status(code)) => {
                let status = Status::try_from(code)
                    .map_or_else(|_| code.to_string(), |s| s.as_str_name().to_string());
                bail!("deliver answered {status}")
            }
            None => bail!("empty deliver response"),
        },
        Some(Err(e)) => Err(e).context("deliver stream failed"),
        None => bail!("the orderer closed the stream without a block"),
    }
}

async fn submit_one(address: &str, envelope: Envelope) -> Result<BroadcastResponse> {
    let mut client = connect(address).await?;
    let mut answers = client
        .broadcast(tokio_stream::once(envelope))
        .await
        .context("broadcast request failed")?
        .into_inner();
    answers
        .next()
        .await
        .context("the orderer closed the stream without an answer")?
        .context("broadcast stream failed")
}

async fn start(config: Option<PathBuf>) -> Result<()> {
    let path = config.or_else(|| {
        std::env::var_os("FABRIC_CFG_PATH").map(|dir| PathBuf::from(dir).join("orderer.yaml"))
    });
    let config = NodeConfig::load(path.as_deref())?;
    let node = Node::start(config)
        .await
        .context("cannot start the orderer")?;
    wait_for_stop_signal().await?;
    node.shutdown().await;
    Ok(())
}

async fn wait_for_stop_signal() -> Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("cannot listen for SIGINT")?,
        _ = terminate.recv() => {}
    }
    Ok(())
}

async fn deliver(
    address: &str,
    channel: &str,
    start: BlockPosition,
    stop: BlockPosition,
    fail_if_not_ready: bool,
) -> Result<()> {
    let mut client = connect(address).await?;
    let behavior = if fail_if_not_ready {
        SeekBehavior::FailIfNotReady
    } else {
        SeekBehavior::BlockUntilReady
    };
    let request = seek(channel, start, stop, behavior, SeekContentType::Block);
    let mut responses = client
        .deliver(tokio_stream::once(request))
        .await
        .context("deliver request failed")?
        .into_inner();
    while let Some(item) = responses.next().await {
        match item.context("deliver stream failed")?.r#type {
            Some(DeliverItem::Block(block)) => {
                let hash = block
                    .header
                    .as_ref()
                    .map(blockutil::header_hash)
                    .unwrap_or_default();
                println!(
                    "block {} txs {} hash {}",
                    blockutil::number(&block),
                    blockutil::entries(&block).len(),
                    hex::encode(hash)
                );
            }
            Some(DeliverItem::Status(code)) => {
                let status = Status::try_from(code)
                    .map_or_else(|_| code.to_string(), |s| s.as_str_name().to_string());
                if code == Status::Success as i32 {
                    return Ok(());
                }
                bail!("deliver ended with status {status}");
            }
            None => bail!("empty deliver response"),
        }
    }
    bail!("the orderer closed the stream without a status")
}
