//! `ordo bench backpressure`: how a node's in-flight bounds hold under load.
//!
//! For each setting of a sweep it starts fresh nodes of this same binary
//! (`ordo start`, scratch folders; see [`network`]), runs the load tool
//! against the one that orders, and samples that node's metrics and every
//! node's memory as it goes. Out come a CSV of the samples, a CSV of one row
//! per setting, and an SVG chart. Every setting must deliver every envelope:
//! nothing may be lost or refused.
//!
//! The axes of the sweep: the client's number of Broadcast streams, the
//! nodes' bound on envelopes held between Broadcast and the ledger
//! (`General.Backpressure.MaxInflightEnvelopes`), and, for an etcdraft
//! channel on N nodes, the channel's bound on blocks proposed and not yet
//! written (`Options.MaxInflightBlocks`), under which the Raft leader stops
//! admitting submissions.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::load::{run_load, LoadOptions, LoadReport};

mod chart;
mod network;

pub use network::SweepConsenter;
use network::{metrics_text, NetworkSetting, CHANNEL};

#[derive(Debug, thiserror::Error)]
pub enum BackpressureError {
    #[error("invalid sweep: {0}")]
    Options(String),
    #[error("cannot start the node: {0}")]
    Start(String),
    #[error("the node did not become healthy within {0:?}")]
    NotReady(Duration),
    #[error("node {node} exited while starting ({status}); its last log lines:\n{log}")]
    NodeExited {
        node: usize,
        status: String,
        log: String,
    },
    #[error("no Raft leader within {patience:?}; the nodes' last log lines:\n{logs}")]
    NoLeader { patience: Duration, logs: String },
    #[error(transparent)]
    Crypto(#[from] crate::tools::crypto::CryptoError),
    #[error("cannot make the genesis block: {0}")]
    Genesis(String),
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
    pub consenter: SweepConsenter,
    /// Values of MaxInflightEnvelopes.
    pub inflight: Vec<u32>,
    /// Values of the etcdraft channel's MaxInflightBlocks (etcdraft only).
    pub max_inflight_blocks: Vec<u32>,
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

impl SweepOptions {
    /// Every setting, in the order they run.
    fn settings(&self) -> Result<Vec<Setting>, BackpressureError> {
        let invalid = |reason: &str| Err(BackpressureError::Options(reason.into()));
        let blocks: Vec<Option<u32>> = match self.consenter {
            SweepConsenter::Solo if !self.max_inflight_blocks.is_empty() => {
                return invalid("MaxInflightBlocks is an etcdraft option: sweep it with etcdraft")
            }
            SweepConsenter::Solo => vec![None],
            SweepConsenter::EtcdRaft { nodes: 0 } => {
                return invalid("an etcdraft channel needs at least one node")
            }
            SweepConsenter::EtcdRaft { .. } if self.max_inflight_blocks.is_empty() => {
                return invalid("etcdraft needs at least one MaxInflightBlocks value")
            }
            SweepConsenter::EtcdRaft { .. } => {
                self.max_inflight_blocks.iter().copied().map(Some).collect()
            }
        };
        if self.inflight.is_empty() || self.streams.is_empty() {
            return invalid("needs at least one MaxInflightEnvelopes value and one stream count");
        }
        if self.max_inflight_blocks.contains(&0) {
            return invalid("MaxInflightBlocks must be at least 1");
        }
        Ok(blocks
            .iter()
            .flat_map(|&max_inflight_blocks| {
                self.inflight.iter().flat_map(move |&inflight| {
                    self.streams.iter().map(move |&streams| Setting {
                        inflight,
                        max_inflight_blocks,
                        streams,
                    })
                })
            })
            .collect())
    }
}

/// One point of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Setting {
    inflight: u32,
    max_inflight_blocks: Option<u32>,
    streams: u32,
}

/// One sample of a running setting, from the node under load.
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
    /// Resident memory of the node under load (the Raft leader).
    pub rss_mb: f64,
    /// The largest resident memory among the other nodes (0 with none).
    pub max_follower_rss_mb: f64,
}

/// One setting's result.
#[derive(Debug, Clone)]
pub struct SettingResult {
    pub inflight: u32,
    /// The etcdraft channel's MaxInflightBlocks (`None`: solo).
    pub max_inflight_blocks: Option<u32>,
    pub nodes: usize,
    pub streams: u32,
    pub report: LoadReport,
    pub samples: Vec<Sample>,
    /// The highest resident memory sampled on any node.
    pub peak_rss_mb: f64,
    /// The highest resident memory sampled on the node under load.
    pub leader_rss_mb: f64,
    /// The highest resident memory sampled on any other node (`None`: no
    /// other node).
    pub max_follower_rss_mb: Option<f64>,
    pub mean_wait_ms: f64,
    /// Nodes that were no longer running at the end of the run, with how
    /// they ended.
    pub lost_nodes: Vec<(usize, String)>,
    /// Whether the node under load still led the channel at the end (always
    /// true for solo).
    pub leader_kept: bool,
}

impl SettingResult {
    pub fn label(&self) -> String {
        match self.max_inflight_blocks {
            Some(blocks) => format!(
                "blocks {blocks} / inflight {} / {} streams",
                self.inflight, self.streams
            ),
            None => format!("inflight {} / {} streams", self.inflight, self.streams),
        }
    }

    /// Everything was delivered and no node was lost.
    pub fn passed(&self) -> bool {
        self.report.passed() && self.lost_nodes.is_empty()
    }
}

/// Runs the sweep and writes `samples.csv`, `settings.csv` and
/// `backpressure.svg` into the output folder.
pub async fn run_sweep(options: &SweepOptions) -> Result<Vec<SettingResult>, BackpressureError> {
    let settings = options.settings()?;
    std::fs::create_dir_all(&options.output_dir).map_err(|source| BackpressureError::Write {
        path: options.output_dir.clone(),
        source,
    })?;
    let progress = ProgressBar::new(settings.len() as u64 * options.count);
    progress.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} envelopes  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let mut results = Vec::new();
    for (index, &setting) in settings.iter().enumerate() {
        let base = index as u64 * options.count;
        let result = run_setting(options, setting, &progress, base).await?;
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

async fn run_setting(
    options: &SweepOptions,
    setting: Setting,
    progress: &ProgressBar,
    progress_base: u64,
) -> Result<SettingResult, BackpressureError> {
    let nodes = options.consenter.nodes();
    let describe = match setting.max_inflight_blocks {
        Some(blocks) => format!(
            "{nodes} etcdraft nodes, MaxInflightBlocks {blocks}, inflight {}, {} streams",
            setting.inflight, setting.streams
        ),
        None => format!("inflight {}, {} streams", setting.inflight, setting.streams),
    };
    progress.set_message(if setting.max_inflight_blocks.is_some() {
        format!("{describe}: waiting for a Raft leader")
    } else {
        describe.clone()
    });
    let mut network = network::start(
        &options.binary,
        NetworkSetting {
            consenter: options.consenter,
            max_inflight_envelopes: setting.inflight,
            max_inflight_blocks: setting.max_inflight_blocks,
        },
    )
    .await?;
    if setting.max_inflight_blocks.is_some() {
        progress.set_message(format!("{describe}: load on node {}", network.leader));
    }
    let leader = network.leader();
    let metrics_url = leader.metrics_url();
    let samples = Arc::new(Mutex::new(Vec::<Sample>::new()));
    let stop = tokio_util::sync::CancellationToken::new();
    let sampler = {
        let url = metrics_url.clone();
        let pid = leader.pid();
        let followers = network.follower_pids();
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
                                max_follower_rss_mb: followers
                                    .iter()
                                    .map(|&p| rss_mb(p))
                                    .fold(0.0, f64::max),
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
        address: leader.grpc.clone(),
        channel: CHANNEL.into(),
        count: options.count,
        streams: setting.streams,
        size: options.size,
        tls: network.tls.clone(),
        identity: network.identity.clone(),
        deliver_timeout: Duration::from_secs(30),
        rate: None,
    };
    let report = run_load(&load).await;
    // One more interval so the tail of the run is sampled.
    tokio::time::sleep(options.sample_every).await;
    let final_metrics = metrics_text(&metrics_url).await;
    stop.cancel();
    let _ = sampler.await;
    let lost_nodes = network.exited();
    let leader_kept = setting.max_inflight_blocks.is_none()
        || final_metrics
            .as_deref()
            .is_some_and(|text| network::leads(text, CHANNEL));
    drop(network);
    let report = report?;
    for (node, status) in &lost_nodes {
        tracing::warn!(node, %status, "a node ended during the run");
    }
    if !leader_kept {
        tracing::warn!(
            "the node under load no longer leads the channel: the leader changed during the run, and its samples cover only part of it"
        );
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap_or_else(PoisonError::into_inner));
    let leader_rss_mb = samples.iter().map(|s| s.rss_mb).fold(0.0, f64::max);
    let max_follower_rss_mb = (nodes > 1).then(|| {
        samples
            .iter()
            .map(|s| s.max_follower_rss_mb)
            .fold(0.0, f64::max)
    });
    let mean_wait_ms = final_metrics
        .map(|text| parse_scrape(&text))
        .filter(|s| s.wait_count > 0.0)
        .map_or(0.0, |s| s.wait_sum / s.wait_count * 1000.0);
    Ok(SettingResult {
        inflight: setting.inflight,
        max_inflight_blocks: setting.max_inflight_blocks,
        nodes,
        streams: setting.streams,
        report,
        samples,
        peak_rss_mb: leader_rss_mb.max(max_follower_rss_mb.unwrap_or(0.0)),
        leader_rss_mb,
        max_follower_rss_mb,
        mean_wait_ms,
        lost_nodes,
        leader_kept,
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

/// An optional number as a CSV cell: empty when there is none.
fn cell<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(String::new, |v| v.to_string())
}

fn write_samples(path: &Path, results: &[SettingResult]) -> Result<(), BackpressureError> {
    let mut out = create(path)?;
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "max_inflight_envelopes,streams,seconds,envelopes_per_second,blocks_inflight,envelopes_inflight,submissions_waiting,mean_wait_ms,rss_mb,nodes,max_inflight_blocks,max_follower_rss_mb")?;
        for r in results {
            for s in &r.samples {
                writeln!(
                    out,
                    "{},{},{:.3},{:.1},{},{},{},{:.3},{:.1},{},{},{}",
                    r.inflight,
                    r.streams,
                    s.seconds,
                    s.envelopes_per_second,
                    s.blocks_inflight,
                    s.envelopes_inflight,
                    s.submissions_waiting,
                    s.mean_wait_ms,
                    s.rss_mb,
                    r.nodes,
                    cell(r.max_inflight_blocks),
                    cell((r.nodes > 1).then(|| format!("{:.1}", s.max_follower_rss_mb))),
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

/// One row per setting. The columns added for etcdraft come after the
/// solo sweep's, before `passed`, which stays last.
fn write_settings(path: &Path, results: &[SettingResult]) -> Result<(), BackpressureError> {
    let mut out = create(path)?;
    let mut write = || -> std::io::Result<()> {
        writeln!(out, "max_inflight_envelopes,streams,sent,acknowledged,delivered,undelivered,refused,acked_per_second,delivered_per_second,ack_p50_ms,ack_p99_ms,delivery_p50_ms,delivery_p99_ms,mean_wait_ms,peak_rss_mb,max_blocks_inflight,max_submissions_waiting,nodes,max_inflight_blocks,leader_rss_mb,max_follower_rss_mb,passed")?;
        for r in results {
            let rep = &r.report;
            let refused: u64 = rep.errors.values().map(|(n, _)| n).sum();
            let ack = rep.ack_latency_ms.unwrap_or_default();
            let delivery = rep.delivery_latency_ms.unwrap_or_default();
            let max = |f: fn(&Sample) -> f64| r.samples.iter().map(f).fold(0.0, f64::max);
            writeln!(
                out,
                "{},{},{},{},{},{},{},{:.0},{:.0},{:.2},{:.2},{:.2},{:.2},{:.3},{:.1},{},{},{},{},{:.1},{},{}",
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
                r.nodes,
                cell(r.max_inflight_blocks),
                r.leader_rss_mb,
                cell(r.max_follower_rss_mb.map(|mb| format!("{mb:.1}"))),
                r.passed()
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

    fn sweep(consenter: SweepConsenter, max_inflight_blocks: Vec<u32>) -> SweepOptions {
        SweepOptions {
            consenter,
            inflight: vec![2048],
            max_inflight_blocks,
            streams: vec![1, 4],
            count: 10,
            size: 10,
            sample_every: Duration::from_millis(10),
            output_dir: PathBuf::new(),
            binary: PathBuf::new(),
        }
    }

    #[test]
    fn an_etcdraft_sweep_runs_each_max_inflight_blocks_with_each_stream_count() {
        let settings = sweep(SweepConsenter::EtcdRaft { nodes: 3 }, vec![1, 5])
            .settings()
            .expect("valid");
        let points: Vec<_> = settings
            .iter()
            .map(|s| (s.max_inflight_blocks, s.streams))
            .collect();
        assert_eq!(
            points,
            [(Some(1), 1), (Some(1), 4), (Some(5), 1), (Some(5), 4)]
        );
        assert!(settings.iter().all(|s| s.inflight == 2048));
        let solo = sweep(SweepConsenter::Solo, vec![])
            .settings()
            .expect("valid");
        assert!(solo.iter().all(|s| s.max_inflight_blocks.is_none()));
    }

    #[test]
    fn sweeps_that_cannot_run_are_refused() {
        for (consenter, blocks) in [
            (SweepConsenter::Solo, vec![5]),
            (SweepConsenter::EtcdRaft { nodes: 3 }, vec![]),
            (SweepConsenter::EtcdRaft { nodes: 3 }, vec![0]),
            (SweepConsenter::EtcdRaft { nodes: 0 }, vec![5]),
        ] {
            let err = sweep(consenter, blocks).settings().expect_err("refused");
            assert!(matches!(err, BackpressureError::Options(_)), "{err}");
        }
    }

    #[test]
    fn this_process_has_a_resident_size() {
        assert!(rss_mb(std::process::id()) > 0.0);
    }
}
