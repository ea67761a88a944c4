//! The bodies of `ordo bench load` and `ordo bench backpressure`: build the
//! run's options from what was typed, run it, print the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backpressure::{run_sweep, BackpressureError, SweepConsenter, SweepOptions};
use super::load::{run_load_with_fan_out, LoadError, LoadOptions, LoadReport, Percentiles};
use crate::tools::client::commands::{read, CommandError};
use crate::tools::client::identity::{IdentityError, SigningIdentity};
use crate::tools::client::TlsOptions;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error(transparent)]
    File(#[from] CommandError),
    #[error(transparent)]
    Identity(#[from] IdentityError),
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error(transparent)]
    Sweep(#[from] BackpressureError),
    #[error("cannot find the ordo binary")]
    Binary(#[source] std::io::Error),
    #[error("load run failed: {sent} sent, {acknowledged} acknowledged, {undelivered} of those never delivered")]
    LoadFailed {
        sent: u64,
        acknowledged: u64,
        undelivered: u64,
    },
    #[error("{0} setting(s) lost or refused envelopes, or lost a node")]
    SettingsFailed(usize),
    #[error("{0}")]
    Usage(String),
}

/// `ordo bench load` as typed: where to send, how much, and who signs over
/// which transport.
#[derive(Debug, Clone, clap::Args)]
pub struct LoadCommand {
    #[arg(long, default_value = "127.0.0.1:7050")]
    pub address: String,
    #[arg(long, default_value = "mychannel")]
    pub channel: String,
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Concurrent Broadcast streams.
    #[arg(long, default_value_t = 4)]
    pub streams: u32,
    /// Bytes of transaction data per envelope.
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Sign envelopes with a generated identity of this MSP ID.
    #[arg(long, conflicts_with = "msp_dir")]
    pub sign_as: Option<String>,
    /// Write the generated identity as an MSP folder (for a channel's config).
    #[arg(long, requires = "sign_as")]
    pub save_msp: Option<PathBuf>,
    /// Sign envelopes with the identity of this MSP folder (signcerts/, keystore/).
    #[arg(long, requires = "msp_id")]
    pub msp_dir: Option<PathBuf>,
    #[arg(long)]
    pub msp_id: Option<String>,
    /// TLS: the CA certificate (PEM) of the orderer's TLS certificate.
    #[arg(long)]
    pub tls_ca_file: Option<PathBuf>,
    /// TLS: the server name to verify (default: the address's host).
    #[arg(long, requires = "tls_ca_file")]
    pub tls_server_name: Option<String>,
    /// Mutual TLS: client certificate and key (PEM).
    #[arg(long, requires_all = ["tls_ca_file", "tls_client_key"])]
    pub tls_client_cert: Option<PathBuf>,
    #[arg(long, requires = "tls_client_cert")]
    pub tls_client_key: Option<PathBuf>,
    /// Seconds to wait, after the last answer, for deliveries to come.
    #[arg(long, default_value_t = 30)]
    pub deliver_timeout: u64,
    /// Envelopes per second over all streams (default: as fast as answered).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Extra Deliver streams that follow the head during the run, each on
    /// its own connection, like a channel's peers; each must receive
    /// every block of the run.
    #[arg(long, default_value_t = 0)]
    pub deliver_streams: u32,
}

/// Runs a load and prints its report; fails if anything sent was not
/// acknowledged, or anything acknowledged never delivered.
pub async fn load(command: LoadCommand) -> Result<(), BenchError> {
    let identity = match (command.sign_as, command.msp_dir, command.msp_id) {
        (Some(msp_id), _, _) => {
            let identity = SigningIdentity::generate(&msp_id)?;
            if let Some(dir) = command.save_msp {
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
    let tls = match command.tls_ca_file {
        Some(ca) => Some(TlsOptions {
            ca_pem: read(&ca)?,
            domain: command.tls_server_name,
            client_identity: match (command.tls_client_cert, command.tls_client_key) {
                (Some(cert), Some(key)) => Some((read(&cert)?, read(&key)?)),
                _ => None,
            },
        }),
        None => None,
    };
    let options = LoadOptions {
        address: command.address,
        channel: command.channel,
        count: command.count,
        streams: command.streams,
        size: command.size,
        tls,
        identity,
        deliver_timeout: Duration::from_secs(command.deliver_timeout),
        rate: command.rate,
    };
    let report = run_load_with_fan_out(&options, command.deliver_streams).await?;
    print_load_report(&options, &report);
    if !report.passed() {
        return Err(BenchError::LoadFailed {
            sent: report.sent,
            acknowledged: report.acknowledged,
            undelivered: report.undelivered,
        });
    }
    Ok(())
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
    if let Some(f) = &report.fan_out {
        println!(
            "deliver fan-out: {} of {} streams received all {} blocks (fewest {}){}",
            f.complete,
            f.streams,
            f.expected_blocks,
            f.fewest_blocks,
            f.error
                .as_ref()
                .map_or_else(String::new, |e| format!("; first error: {e}"))
        );
    }
    println!("{}", report.json());
}

/// The consenter of the swept channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsenterKind {
    /// One node, the embedded solo channel, plaintext.
    Solo,
    /// `--nodes` orderers over TLS, one etcdraft channel; the load goes to
    /// the Raft leader.
    Etcdraft,
}

/// The MaxInflightEnvelopes values a solo sweep runs when none are given.
const SOLO_INFLIGHT: [u32; 4] = [64, 512, 4096, 32768];
/// The MaxInflightBlocks values an etcdraft sweep runs when none are given.
const ETCDRAFT_MAX_INFLIGHT_BLOCKS: [u32; 4] = [1, 5, 20, 100];

/// `ordo bench backpressure` as typed.
#[derive(Debug, Clone, clap::Args)]
pub struct BackpressureCommand {
    /// The consenter of the channel under load.
    #[arg(long, value_enum, default_value_t = ConsenterKind::Solo)]
    pub consenter: ConsenterKind,
    /// Orderers of the channel (etcdraft; solo runs one).
    #[arg(long, default_value_t = 1)]
    pub nodes: usize,
    /// Values of General.Backpressure.MaxInflightEnvelopes [default: solo
    /// 64,512,4096,32768; etcdraft the node's default].
    #[arg(long, value_delimiter = ',')]
    pub inflight: Option<Vec<u32>>,
    /// Values of the etcdraft channel's Options.MaxInflightBlocks: the
    /// Raft leader's bound on blocks proposed and not yet written
    /// [default: 1,5,20,100].
    #[arg(long, value_delimiter = ',')]
    pub max_inflight_blocks: Option<Vec<u32>>,
    /// Numbers of Broadcast streams.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub streams: Vec<u32>,
    /// Envelopes per setting.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    #[arg(long, default_value_t = 2048)]
    pub size: usize,
    /// Sampling interval in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub sample_ms: u64,
    #[arg(long, default_value = "backpressure")]
    pub output_dir: PathBuf,
}

/// Runs the sweep with nodes of this very binary, prints one line per
/// setting, and fails if any setting lost or refused envelopes.
pub async fn backpressure(command: BackpressureCommand) -> Result<(), BenchError> {
    let usage = |reason: &str| Err(BenchError::Usage(reason.into()));
    let consenter = match command.consenter {
        ConsenterKind::Solo if command.nodes != 1 => {
            return usage("solo runs one node: use --consenter etcdraft for --nodes")
        }
        ConsenterKind::Solo if command.max_inflight_blocks.is_some() => {
            return usage("--max-inflight-blocks applies to etcdraft: add --consenter etcdraft")
        }
        ConsenterKind::Solo => SweepConsenter::Solo,
        ConsenterKind::Etcdraft => SweepConsenter::EtcdRaft {
            nodes: command.nodes,
        },
    };
    let inflight = command.inflight.unwrap_or_else(|| match consenter {
        SweepConsenter::Solo => SOLO_INFLIGHT.to_vec(),
        SweepConsenter::EtcdRaft { .. } => {
            vec![crate::fabric::localconfig::Backpressure::default().max_inflight_envelopes]
        }
    });
    let max_inflight_blocks = match consenter {
        SweepConsenter::Solo => Vec::new(),
        SweepConsenter::EtcdRaft { .. } => command
            .max_inflight_blocks
            .unwrap_or_else(|| ETCDRAFT_MAX_INFLIGHT_BLOCKS.to_vec()),
    };
    let options = SweepOptions {
        consenter,
        inflight,
        max_inflight_blocks,
        streams: command.streams,
        count: command.count,
        size: command.size,
        sample_every: Duration::from_millis(command.sample_ms.max(10)),
        output_dir: command.output_dir,
        binary: std::env::current_exe().map_err(BenchError::Binary)?,
    };
    let results = run_sweep(&options).await?;
    let etcdraft = matches!(consenter, SweepConsenter::EtcdRaft { .. });
    if etcdraft {
        print!("{:>7} ", "blocks");
    }
    print!(
        "{:>10} {:>8} {:>12} {:>10} {:>10} {:>12} {:>10}",
        "inflight", "streams", "acked/s", "ack p99", "wait ms", "deliv p99", "peak MB"
    );
    if etcdraft {
        print!(" {:>11}", "follower MB");
    }
    println!(" {:>7}", "passed");
    for r in &results {
        if etcdraft {
            print!("{:>7} ", r.max_inflight_blocks.unwrap_or(0));
        }
        print!(
            "{:>10} {:>8} {:>12.0} {:>10.2} {:>10.3} {:>12.2} {:>10.1}",
            r.inflight,
            r.streams,
            r.report.acked_per_second(),
            r.report.ack_latency_ms.map_or(0.0, |p| p.p99),
            r.mean_wait_ms,
            r.report.delivery_latency_ms.map_or(0.0, |p| p.p99),
            r.leader_rss_mb,
        );
        if etcdraft {
            print!(" {:>11.1}", r.max_follower_rss_mb.unwrap_or(0.0));
        }
        println!(" {:>7}", r.passed());
        for (node, status) in &r.lost_nodes {
            println!("  node {node} ended during the run: {status}");
        }
        if !r.leader_kept {
            println!("  the Raft leader changed during the run: the samples cover part of it");
        }
    }
    println!(
        "wrote {}/samples.csv, settings.csv and backpressure.svg",
        options.output_dir.display()
    );
    let failed = results.iter().filter(|r| !r.passed()).count();
    if failed > 0 {
        return Err(BenchError::SettingsFailed(failed));
    }
    Ok(())
}
