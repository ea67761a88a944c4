//! The bodies of `ordo bench load` and `ordo bench backpressure`: build the
//! run's options from what was typed, run it, print the report.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::backpressure::{run_sweep, BackpressureError, SweepOptions};
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
    #[error("{0} setting(s) lost or refused envelopes")]
    SettingsFailed(usize),
}

/// `ordo bench load` as typed: where to send, how much, and who signs over
/// which transport.
#[derive(Debug, Clone)]
pub struct LoadCommand {
    pub address: String,
    pub channel: String,
    pub count: u64,
    pub streams: u32,
    pub size: usize,
    /// Sign with a generated identity of this MSP ID...
    pub sign_as: Option<String>,
    /// ...and write it out as an MSP folder here.
    pub save_msp: Option<PathBuf>,
    /// Or sign with the identity of this MSP folder, of MSP `msp_id`.
    pub msp_dir: Option<PathBuf>,
    pub msp_id: Option<String>,
    pub tls_ca_file: Option<PathBuf>,
    pub tls_server_name: Option<String>,
    pub tls_client_cert: Option<PathBuf>,
    pub tls_client_key: Option<PathBuf>,
    pub deliver_timeout: Duration,
    pub rate: Option<f64>,
    /// Extra Deliver streams following the head during the run.
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
        deliver_timeout: command.deliver_timeout,
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

/// `ordo bench backpressure` as typed.
#[derive(Debug, Clone)]
pub struct BackpressureCommand {
    pub inflight: Vec<u32>,
    pub streams: Vec<u32>,
    pub count: u64,
    pub size: usize,
    /// Sampling interval in milliseconds (10 at least).
    pub sample_ms: u64,
    pub output_dir: PathBuf,
}

/// Runs the sweep with nodes of this very binary, prints one line per
/// setting, and fails if any setting lost or refused envelopes.
pub async fn backpressure(command: BackpressureCommand) -> Result<(), BenchError> {
    let options = SweepOptions {
        inflight: command.inflight,
        streams: command.streams,
        count: command.count,
        size: command.size,
        sample_every: Duration::from_millis(command.sample_ms.max(10)),
        output_dir: command.output_dir,
        binary: std::env::current_exe().map_err(BenchError::Binary)?,
    };
    let results = run_sweep(&options).await?;
    println!(
        "{:>10} {:>8} {:>12} {:>10} {:>10} {:>12} {:>10} {:>7}",
        "inflight", "streams", "acked/s", "ack p99", "wait ms", "deliv p99", "peak MB", "passed"
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
        options.output_dir.display()
    );
    let failed = results.iter().filter(|r| !r.report.passed()).count();
    if failed > 0 {
        return Err(BenchError::SettingsFailed(failed));
    }
    Ok(())
}
