//! The `ordo` binary: run the orderer, or talk to one.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use futures::StreamExt;

use ordo::blockutil;
use ordo::client::broadcast::{broadcast, BroadcastOptions};
use ordo::client::connect;
use ordo::client::envelope::{seek, BlockPosition};
use ordo::localconfig::NodeConfig;
use ordo::node::Node;
use ordo::protos::common::Status;
use ordo::protos::orderer::deliver_response::Type as DeliverItem;
use ordo::protos::orderer::seek_info::{SeekBehavior, SeekContentType};

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
}

fn main() -> ExitCode {
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
    }
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
