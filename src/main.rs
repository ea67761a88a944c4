//! The `ordo` binary: run the orderer, or talk to one. It parses the command
//! line and calls the library: `ordo::tools::client::commands` and
//! `ordo::tools::bench::commands` hold the client and bench commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use ordo::fabric::localconfig::NodeConfig;
use ordo::runtime::node::Node;
use ordo::tools::bench::commands::{self as bench, BackpressureCommand, LoadCommand};
use ordo::tools::client::broadcast::BroadcastOptions;
use ordo::tools::client::commands;
use ordo::tools::client::envelope::BlockPosition;
use ordo::tools::client::identity::SigningIdentity;
use ordo::tools::client::TlsOptions;

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
        #[command(flatten)]
        reader: ReaderFlags,
    },
    /// Make a genesis config block from a profile of configtx.yaml
    /// (configtxgen), or a system channel's channel creation transaction.
    Genesis {
        /// configtx.yaml, or the folder that holds it. Default: $FABRIC_CFG_PATH, else ./config.
        #[arg(long)]
        config_path: Option<PathBuf>,
        #[arg(long)]
        profile: String,
        #[arg(long)]
        channel_id: String,
        #[arg(long, required_unless_present = "output_create_channel_tx")]
        output_block: Option<PathBuf>,
        /// Write the channel creation transaction of a profile with
        /// Consortium and Application (configtxgen -outputCreateChannelTx).
        #[arg(long, conflicts_with = "output_block")]
        output_create_channel_tx: Option<PathBuf>,
        /// Sign the creation transaction with this MSP folder, as
        /// `peer channel create` does (needs --msp-id).
        #[arg(long, requires = "msp_id", requires = "output_create_channel_tx")]
        sign_msp_dir: Option<PathBuf>,
        #[arg(long)]
        msp_id: Option<String>,
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
        #[command(flatten)]
        admin: AdminFlags,
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
        #[command(flatten)]
        reader: ReaderFlags,
    },
    /// Load and stress tools.
    Bench {
        #[command(subcommand)]
        command: BenchCommand,
    },
    /// Make the keys and certificates of organizations (cryptogen).
    Crypto {
        #[command(subcommand)]
        command: CryptoCommand,
    },
    /// Send one prepared envelope (e.g. a config update) and print the answer.
    Submit {
        /// A file holding a marshalled common.Envelope.
        envelope: PathBuf,
        #[arg(long, default_value = "127.0.0.1:7050")]
        address: String,
    },
}

/// Who reads: the MSP identity that signs Deliver requests (a channel with
/// organizations serves only its Readers) and TLS to the orderer.
#[derive(clap::Args)]
struct ReaderFlags {
    /// Sign requests with the identity of this MSP folder (signcerts/, keystore/).
    #[arg(long, requires = "msp_id")]
    msp_dir: Option<PathBuf>,
    #[arg(long, requires = "msp_dir")]
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
}

impl ReaderFlags {
    fn client(self, address: String) -> Result<commands::DeliverClient> {
        let read = |path: &PathBuf| {
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
        };
        let identity = match (self.msp_dir, self.msp_id) {
            (Some(dir), Some(id)) => Some(SigningIdentity::from_msp_dir(&dir, &id)?),
            _ => None,
        };
        let tls = match self.tls_ca_file {
            Some(ca) => Some(TlsOptions {
                ca_pem: read(&ca)?,
                domain: self.tls_server_name,
                client_identity: match (self.tls_client_cert, self.tls_client_key) {
                    (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
                    _ => None,
                },
            }),
            None => None,
        };
        Ok(commands::DeliverClient {
            address,
            tls,
            identity,
        })
    }
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Drive any Fabric-compatible orderer: Broadcast streams plus one Deliver
    /// stream that finds this run's transactions. Exits non-zero if anything
    /// sent was not acknowledged, or anything acknowledged never delivered.
    Load(LoadCommand),
    /// Sweep a node's in-flight bound (or an etcdraft leader's
    /// MaxInflightBlocks) and the client's concurrency; write samples.csv,
    /// settings.csv and backpressure.svg.
    Backpressure(BackpressureCommand),
}

#[derive(Subcommand)]
enum CryptoCommand {
    /// Write CAs, MSP folders and TLS certificates for every organization of
    /// a crypto-config YAML, in cryptogen's layout.
    Generate {
        /// The crypto-config YAML (OrdererOrgs, PeerOrgs).
        #[arg(long)]
        config: PathBuf,
        /// The folder to write ordererOrganizations/ and peerOrganizations/ to.
        #[arg(long, default_value = "crypto-config")]
        output: PathBuf,
        /// Replace organizations that are already in the output.
        #[arg(long)]
        force: bool,
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

/// osnadmin's flags for reaching the admin listener.
#[derive(clap::Args)]
struct AdminFlags {
    /// The orderer's admin listener.
    #[arg(
        short = 'o',
        long = "orderer-address",
        visible_alias = "admin-address",
        global = true,
        default_value = "127.0.0.1:9443"
    )]
    address: String,
    /// PEM TLS CA certificate(s) of the orderer: reach it over TLS.
    #[arg(long, global = true)]
    ca_file: Option<PathBuf>,
    /// PEM certificate for mutual TLS.
    #[arg(long, global = true)]
    client_cert: Option<PathBuf>,
    /// PEM private key for mutual TLS.
    #[arg(long, global = true)]
    client_key: Option<PathBuf>,
    /// Leave the HTTP status line out of the output.
    #[arg(long, global = true)]
    no_status: bool,
}

#[derive(Subcommand)]
enum ChannelCommand {
    /// Join a channel with its config block.
    Join {
        /// Checked against the channel of the block.
        #[arg(short = 'c', long = "channelID", visible_alias = "channel-id")]
        channel_id: Option<String>,
        #[arg(short = 'b', long)]
        config_block: PathBuf,
    },
    /// List the channels, or with --channelID show one.
    List {
        #[arg(short = 'c', long = "channelID", visible_alias = "channel-id")]
        channel_id: Option<String>,
    },
    /// Show one channel.
    Info {
        #[arg(short = 'c', long = "channelID", visible_alias = "channel-id")]
        channel_id: String,
    },
    /// Remove a channel and its ledger.
    Remove {
        #[arg(short = 'c', long = "channelID", visible_alias = "channel-id")]
        channel_id: String,
    },
    /// Write one block of a channel to a file.
    Fetch {
        #[arg(short = 'c', long = "channelID", visible_alias = "channel-id")]
        channel_id: String,
        /// newest, oldest, config or a block number.
        #[arg(long = "blockID")]
        block_id: String,
        #[arg(long = "outputfile")]
        output: PathBuf,
    },
    /// Submit a config update envelope (a marshalled CONFIG_UPDATE).
    Update {
        /// Checked against the channel the update is for.
        #[arg(short = 'c', long = "channelID", visible_alias = "channel-id")]
        channel_id: Option<String>,
        #[arg(
            short = 'b',
            long = "config-update-envelope",
            visible_alias = "config-block"
        )]
        envelope: PathBuf,
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
    if let Err(e) = ordo::runtime::logging::init() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    #[cfg(feature = "failpoints")]
    if let Err(e) = ordo::runtime::faults::configure_from_env() {
        eprintln!("error: FAILPOINTS: {e}");
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
        Command::Start { config } => start(config).await?,
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
            commands::broadcast::run(&options).await?
        }
        Command::Deliver {
            channel,
            start,
            stop,
            fail_if_not_ready,
            address,
            reader,
        } => {
            let client = reader.client(address)?;
            commands::deliver::run(&client, &channel, start, stop, fail_if_not_ready).await?
        }
        Command::Genesis {
            config_path,
            profile,
            channel_id,
            output_block,
            output_create_channel_tx,
            sign_msp_dir,
            msp_id,
        } => match (output_block, output_create_channel_tx) {
            (Some(output_block), _) => {
                commands::genesis::run(config_path, &profile, &channel_id, &output_block)?
            }
            (None, Some(output)) => {
                let signer = sign_msp_dir.zip(msp_id);
                commands::genesis::create_channel_tx(
                    config_path,
                    &profile,
                    &channel_id,
                    &output,
                    signer,
                )?
            }
            (None, None) => {
                anyhow::bail!("--output-block or --output-create-channel-tx is required")
            }
        },
        Command::Config { command } => match command {
            ConfigCommand::Inspect { block } => commands::config::inspect(&block)?,
            ConfigCommand::Encode { json, output } => commands::config::encode(&json, &output)?,
            ConfigCommand::Update {
                original,
                updated,
                output,
            } => commands::config::update(&original, &updated, &output)?,
        },
        Command::Fetch {
            channel,
            block,
            output,
            address,
            reader,
        } => {
            let client = reader.client(address)?;
            commands::fetch::run(&client, &channel, &block, &output).await?
        }
        Command::Channel { command, admin } => {
            let target = commands::channel::AdminTarget {
                address: &admin.address,
                ca_file: admin.ca_file.as_deref(),
                client_cert: admin.client_cert.as_deref(),
                client_key: admin.client_key.as_deref(),
                no_status: admin.no_status,
            };
            let target = &target;
            match command {
                ChannelCommand::Join {
                    channel_id,
                    config_block,
                } => commands::channel::join(target, channel_id.as_deref(), &config_block).await?,
                ChannelCommand::List { channel_id } => {
                    commands::channel::list(target, channel_id.as_deref()).await?
                }
                ChannelCommand::Info { channel_id } => {
                    commands::channel::info(target, &channel_id).await?
                }
                ChannelCommand::Remove { channel_id } => {
                    commands::channel::remove(target, &channel_id).await?
                }
                ChannelCommand::Fetch {
                    channel_id,
                    block_id,
                    output,
                } => commands::channel::fetch(target, &channel_id, &block_id, &output).await?,
                ChannelCommand::Update {
                    channel_id,
                    envelope,
                } => commands::channel::update(target, channel_id.as_deref(), &envelope).await?,
            }
        }
        Command::Crypto {
            command:
                CryptoCommand::Generate {
                    config,
                    output,
                    force,
                },
        } => {
            for org in ordo::tools::crypto::generate(&config, &output, force)? {
                println!("{org}");
            }
        }
        Command::Submit { envelope, address } => commands::submit::run(&address, &envelope).await?,
        Command::Bench {
            command: BenchCommand::Load(command),
        } => bench::load(command).await?,
        Command::Bench {
            command: BenchCommand::Backpressure(command),
        } => bench::backpressure(command).await?,
    }
    Ok(())
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
