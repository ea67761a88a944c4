//! `ordo bench backpressure`: how a node's in-flight bound holds under load.
//!
//! For each setting of a sweep — the node's bound on envelopes held between
//! Broadcast and the ledger (`General.Backpressure.MaxInflightEnvelopes`) and
//! the client's number of Broadcast streams — it starts a fresh node (this
//! same binary, `ordo start`, on a scratch ledger), runs the load tool against
//! it, and samples the node's metrics and memory as it goes. Out come a CSV of
//! the samples, a CSV of one row per setting, and an SVG chart. Every setting
//! must deliver every envelope: nothing may be lost or refused.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::load::{run_load, LoadOptions, LoadReport};
use crate::runtime::registrar::EMBEDDED_CHANNEL;

mod chart;

#[derive(Debug, thiserror::Error)]
pub enum BackpressureError {
    #[error("cannot start the node: {0}")]
    Start(String),
    #[error("the node did not become healthy within {0:?}")]
    NotReady(Duration),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot draw the chart: {0}")]
    Chart(String),
    #[error(transparent)]
    Load(#[from] super::load::LoadError),
}

/// The sweep.
#[derive(Debug, Clone)]
pub struct SweepOptions {
    /// Values of MaxInflightEnvelopes.
    pub inflight: Vec<u32>,
    /// Numbers of Broadcast streams.
    pub streams: Vec<u32>,
    /// Envelopes per setting.
    pub count: u64,
    pub size: usize,
    pub sample_every: Duration,
    pub output_dir: PathBuf,
    /// The `ordo` binary to start nodes with.
    pub binary: PathBuf,
}

/// One sample of a running setting.
#[derive(Debug, Clone, Copy, Default)]
pub struct Sample {
    pub seconds: f64,
    /// Envelopes answered SUCCESS per second over the last interval.
    pub envelopes_per_second: f64,
    pub blocks_inflight: f64,
    pub envelopes_inflight: f64,
    pub submissions_waiting: f64,
    /// Mean wait of the submissions that got room during the interval.
    pub mean_wait_ms: f64,
    pub rss_mb: f64,
}

/// One setting's result.
#[derive(Debug, Clone)]
pub struct SettingResult {
    pub inflight: u32,
    pub streams: u32,
    pub report: LoadReport,
    pub samples: Vec<Sample>,
    pub peak_rss_mb: f64,
    pub mean_wait_ms: f64,
}

impl SettingResult {
    pub fn label(&self) -> String {
        format!("inflight {} / {} streams", self.inflight, self.streams)
    }
}

/// Runs the sweep and writes `samples.csv`, `settings.csv` and
/// `backpressure.svg` into the output folder.
pub async fn run_sweep(options: &SweepOptions) -> Result<Vec<SettingResult>, BackpressureError> {
    std::fs::create_dir_all(&options.output_dir).map_err(|source| BackpressureError::Write {
        path: options.output_dir.clone(),
        source,
    })?;
    let settings: Vec<(u32, u32)> = options
        .inflight
        .iter()
        .flat_map(|&i| options.streams.iter().map(move |&s| (i, s)))
        .collect();
    let progress = ProgressBar::new(settings.len() as u64 * options.count);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} envelopes  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    for (index, &(inflight, streams)) in settings.iter().enumerate() {
        progress.set_message(format!("inflight {inflight}, {streams} streams"));
        let base = index as u64 * options.count;
        let result = run_setting(options, inflight, streams, &progress, base).await?;
        progress.set_position(base + options.count);
        results.push(result);
    }
    progress.finish_with_message("done");
    write_samples(&options.output_dir.join("samples.csv"), &results)?;
    write_settings(&options.output_dir.join("settings.csv"), &results)?;
    chart::draw(&options.output_dir.join("backpressure.svg"), &results)
        .map_err(BackpressureError::Chart)?;
    Ok(results)
}

/// A node started for one setting; stopped when dropped.
struct NodeProcess {
    child: Child,
    grpc: String,
    operations: String,
    _dir: tempfile::TempDir,
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, BackpressureError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| BackpressureError::Start(e.to_string()))
}

async fn start_node(binary: &Path, inflight: u32) -> Result<NodeProcess, BackpressureError> {
    let dir = tempfile::tempdir().map_err(|e| BackpressureError::Start(e.to_string()))?;
    let (grpc, operations) = (free_port()?, free_port()?);
    let child = Command::new(binary)
        .arg("start")
        .env("ORDERER_GENERAL_LISTENPORT", grpc.to_string())
        .env("ORDERER_GENERAL_BOOTSTRAPMETHOD", "embedded")
        .env(
            "ORDERER_GENERAL_BACKPRESSURE_MAXINFLIGHTENVELOPES",
            inflight.to_string(),
        )
        .env("ORDERER_ADMIN_LISTENADDRESS", "")
        .env(
            "ORDERER_OPERATIONS_LISTENADDRESS",
            format!("127.0.0.1:{operations}"),
        )
        .env("ORDERER_FILELEDGER_LOCATION", dir.path().join("ledger"))
        .env("FABRIC_LOGGING_SPEC", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| BackpressureError::Start(format!("{}: {e}", binary.display())))?;
    let node = NodeProcess {
        child,
        grpc: format!("127.0.0.1:{grpc}"),
        operations: format!("http://127.0.0.1:{operations}"),
        _dir: dir,
    };
    let patience = Duration::from_secs(30);
    let deadline = Instant::now() + patience;
    let health = format!("{}/healthz", node.operations);
    loop {
        if let Ok(response) = reqwest::get(&health).await {
            if response.status().is_success() {
                return Ok(node);
            }
        }
        if Instant::now() > deadline {
            return Err(BackpressureError::NotReady(patience));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_setting(
    options: &SweepOptions,
    inflight: u32,
    streams: u32,
    progress: &ProgressBar,
    progress_base: u64,
) -> Result<SettingResult, BackpressureError> {
    let node = start_node(&options.binary, inflight).await?;
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let url = format!("{}/metrics", node.operations);
        let pid = node.child.id();
        let samples = samples.clone();
        let stop = stop.clone();
        let every = options.sample_every;
        let progress = progress.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let mut previous: Option<(Instant, Scrape)> = None;
            loop {
                if let Some(scrape) = scrape(&url).await {
                    let now = Instant::now();
                    progress.set_position(progress_base + scrape.succeeded as u64);
                    if let Some((then, before)) = &previous {
                        let dt = now.duration_since(*then).as_secs_f64().max(1e-9);
                        let waits = scrape.wait_count - before.wait_count;
                        samples
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .push(Sample {
                                seconds: now.duration_since(started).as_secs_f64(),
                                envelopes_per_second: (scrape.succeeded - before.succeeded) / dt,
                                blocks_inflight: scrape.blocks_inflight,
                                envelopes_inflight: scrape.envelopes_inflight,
                                submissions_waiting: scrape.submissions_waiting,
                                mean_wait_ms: if waits > 0.0 {
                                    (scrape.wait_sum - before.wait_sum) / waits * 1000.0
                                } else {
                                    0.0
                                },
                                rss_mb: rss_mb(pid),
                            });
                    }
                    previous = Some((now, scrape));
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(every) => {}
                }
            }
        })
    };
    let load = LoadOptions {
        address: node.grpc.clone(),
        channel: EMBEDDED_CHANNEL.into(),
        count: options.count,
        streams,
        size: options.size,
        tls: None,
        identity: None,
        deliver_timeout: Duration::from_secs(30),
        rate: None,
    };
    let report = run_load(&load).await;
    // One more interval so the tail of the run is sampled.
    tokio::time::sleep(options.sample_every).await;
    let final_scrape = scrape(&format!("{}/metrics", node.operations)).await;
    stop.cancel();
    let _ = sampler.await;
    drop(node);
    let report = report?;
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    let peak_rss_mb = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    let mean_wait_ms = final_scrape
        .filter(|s| s.wait_count > 0.0)
        .map_or(0.0, |s| s.wait_sum / s.wait_count * 1000.0);
    Ok(SettingResult {
        inflight,
        streams,
        report,
        samples,
        peak_rss_mb,
        mean_wait_ms,
    })
}

/// The metrics a sample needs, summed over the node's channels.
#[derive(Debug, Clone, Copy, Default)]
struct Scrape {
    succeeded: f64,
    blocks_inflight: f64,
    envelopes_inflight: f64,
    submissions_waiting: f64,
    wait_sum: f64,
    wait_count: f64,
}

async fn scrape(url: &str) -> Option<Scrape> {
    let text = reqwest::get(url).await.ok()?.text().await.ok()?;
    Some(parse_scrape(&text))
}

fn parse_scrape(text: &str) -> Scrape {
    let mut scrape = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let name = series.split('{').next().unwrap_or(series);
        match name {
            "broadcast_processed_count" if series.contains("status=\"SUCCESS\"") => {
                scrape.succeeded += value
            }
            "ordo_blocks_inflight" => scrape.blocks_inflight += value,
            "ordo_envelopes_inflight" => scrape.envelopes_inflight += value,
            "ordo_submissions_waiting" => scrape.submissions_waiting += value,
            "ordo_submission_wait_seconds_sum" => scrape.wait_sum += value,
            "ordo_submission_wait_seconds_count" => scrape.wait_count += value,
            _ => {}
        }
    }
    scrape
}

/// Resident memory of a process, from /proc (0 where there is none).
fn rss_mb(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|line| {
                let kb = line.strip_prefix("VmRSS:")?.trim().strip_suffix("kB")?;
                kb.trim().parse::<f64>().ok()
            })
        })
        .map_or(0.0, |kb| kb / 1024.0)
}

fn create(path: &Path) -> Result<std::io::BufWriter<std::fs::File>, BackpressureError> {
    std::fs::File::create(path)
        .map(std::io::BufWriter::new)
        .map_err(|source| BackpressureError::Write {
            path: path.to_path_buf(),
            source,
        })
}

fn write_samples(path: &Path, results: &[SettingResult]) -> Result<(), BackpressureError> {
    let mut out = create(path)?;
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "max_inflight_envelopes,streams,seconds,envelopes_per_second,blocks_inflight,envelopes_inflight,submissions_waiting,mean_wait_ms,rss_mb")?;
        for r in results {
            for s in &r.samples {
                writeln!(
                    out,
                    "{},{},{:.3},{:.1},{},{},{},{:.3},{:.1}",
                    r.inflight,
                    r.streams,
                    s.seconds,
                    s.envelopes_per_second,
                    s.blocks_inflight,
                    s.envelopes_inflight,
                    s.submissions_waiting,
                    s.mean_wait_ms,
                    s.rss_mb
                )?;
            }
        }
        out.flush()
    };
    write().map_err(|source| BackpressureError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn write_settings(path: &Path, results: &[SettingResult]) -> Result<(), BackpressureError> {
    let mut out = create(path)?;
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "max_inflight_envelopes,streams,sent,acknowledged,delivered,undelivered,refused,acked_per_second,delivered_per_second,ack_p50_ms,ack_p99_ms,delivery_p50_ms,delivery_p99_ms,mean_wait_ms,peak_rss_mb,max_blocks_inflight,max_submissions_waiting,passed")?;
        for r in results {
            let rep = &r.report;
            let refused: u64 = rep.errors.values().map(|(n, _)| n).sum();
            let ack = rep.ack_latency_ms.unwrap_or_default();
            let delivery = rep.delivery_latency_ms.unwrap_or_default();
            let max = |f: fn(&Sample) -> f64| r.samples.iter().map(f).fold(0.0, f64::max);
            writeln!(
                out,
                "{},{},{},{},{},{},{},{:.0},{:.0},{:.2},{:.2},{:.2},{:.2},{:.3},{:.1},{},{},{}",
                r.inflight,
                r.streams,
                rep.sent,
                rep.acknowledged,
                rep.delivered,
                rep.undelivered,
                refused,
                rep.acked_per_second(),
                rep.delivered_per_second(),
                ack.p50,
                ack.p99,
                delivery.p50,
                delivery.p99,
                r.mean_wait_ms,
                r.peak_rss_mb,
                max(|s| s.blocks_inflight),
                max(|s| s.submissions_waiting),
                rep.passed()
            )?;
        }
        out.flush()
    };
    write().map_err(|source| BackpressureError::Write {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrapes_sum_the_series_a_sample_needs() {
        let text = "# TYPE x counter\n\
            broadcast_processed_count{channel=\"a\",status=\"SUCCESS\",type=\"MESSAGE\"} 10\n\
            broadcast_processed_count{channel=\"a\",status=\"BAD_REQUEST\",type=\"MESSAGE\"} 3\n\
            broadcast_processed_count{channel=\"b\",status=\"SUCCESS\",type=\"MESSAGE\"} 5\n\
            ordo_blocks_inflight{channel=\"a\"} 2\n\
            ordo_submission_wait_seconds_sum{channel=\"a\"} 0.5\n\
            ordo_submission_wait_seconds_count{channel=\"a\"} 4\n";
        let s = parse_scrape(text);
        assert_eq!(s.succeeded, 15.0);
        assert_eq!(s.blocks_inflight, 2.0);
        assert_eq!((s.wait_sum, s.wait_count), (0.5, 4.0));
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_mb(std::process::id()) > 0.0);
    }
}
