//! The sweep's chart: four panels over time (throughput, blocks in flight,
//! submissions waiting, resident memory), one line per setting; four panels
//! per setting (throughput, mean wait, peak memory, delivery p99) against the
//! swept bound (MaxInflightEnvelopes; MaxInflightBlocks for etcdraft), one
//! line per number of streams. For etcdraft the panels show the Raft leader,
//! the node under load; the followers' memory is in the CSV files.
//!
//! Time is shown as the share of each setting's run, so that a setting that
//! takes seconds and one that takes minutes (a bound below a full block) can
//! be read side by side.

use std::path::Path;

use plotters::prelude::*;

use super::{Sample, SettingResult};

type DrawResult = Result<(), String>;
/// A panel's title and the value it plots.
type Panel<T> = (&'static str, fn(&T) -> f64);

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// What the per-setting panels plot against.
struct Axis {
    name: &'static str,
    of: fn(&SettingResult) -> f64,
}

fn is_etcdraft(results: &[SettingResult]) -> bool {
    results.iter().any(|r| r.max_inflight_blocks.is_some())
}

/// The swept bound: MaxInflightBlocks when the sweep is over an etcdraft
/// channel, else MaxInflightEnvelopes.
fn axis(results: &[SettingResult]) -> Axis {
    if is_etcdraft(results) {
        Axis {
            name: "MaxInflightBlocks",
            of: |r| f64::from(r.max_inflight_blocks.unwrap_or(0)),
        }
    } else {
        Axis {
            name: "MaxInflightEnvelopes",
            of: |r| f64::from(r.inflight),
        }
    }
}

pub fn draw(path: &Path, results: &[SettingResult]) -> DrawResult {
    let axis = axis(results);
    let nodes = results.iter().map(|r| r.nodes).max().unwrap_or(1);
    let (title, memory_over_time, peak_memory) = if is_etcdraft(results) {
        (
            format!(
                "Ordo backpressure sweep, etcdraft on {nodes} nodes (MaxInflightBlocks x Broadcast streams)"
            ),
            "Leader resident memory (MB)",
            "Peak leader memory (MB)",
        )
    } else {
        (
            "Ordo backpressure sweep (MaxInflightEnvelopes x Broadcast streams)".to_string(),
            "Node resident memory (MB)",
            "Peak node memory (MB)",
        )
    };
    let root = SVGBackend::new(path, (1400, 1700)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&title, ("sans-serif", 24)).map_err(err)?;
    let panels = root.split_evenly((4, 2));
    let over_time: [Panel<Sample>; 4] = [
        ("Throughput (envelopes/s)", |s| s.envelopes_per_second),
        ("Blocks in flight", |s| s.blocks_inflight),
        ("Submissions waiting", |s| s.submissions_waiting),
        (memory_over_time, |s| s.rss_mb),
    ];
    for (i, (title, value)) in over_time.iter().enumerate() {
        time_panel(&panels[i * 2], title, results, *value)?;
    }
    let per_setting: [Panel<SettingResult>; 4] = [
        ("Acknowledged envelopes/s per setting", |r| {
            r.report.acked_per_second()
        }),
        ("Mean wait for in-flight room (ms)", |r| r.mean_wait_ms),
        (peak_memory, |r| r.leader_rss_mb),
        ("Broadcast-to-delivery p99 (ms)", |r| {
            r.report.delivery_latency_ms.map_or(0.0, |p| p.p99)
        }),
    ];
    for (i, (title, value)) in per_setting.iter().enumerate() {
        setting_panel(&panels[i * 2 + 1], title, results, &axis, *value)?;
    }
    root.present().map_err(err)
}

/// Axis labels: whole numbers, or one decimal on a small scale.
fn label(value: f64, max: f64) -> String {
    if max < 10.0 {
        format!("{value:.1}")
    } else {
        format!("{value:.0}")
    }
}

fn upper(values: impl Iterator<Item = f64>) -> f64 {
    let max = values.fold(0.0, f64::max);
    if max > 0.0 {
        max * 1.1
    } else {
        1.0
    }
}

fn time_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    results: &[SettingResult],
    value: fn(&Sample) -> f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let y_max = upper(results.iter().flat_map(|r| r.samples.iter().map(value)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..100f64, 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_desc("share of the setting's run (%)")
        .y_label_formatter(&|v| label(*v, y_max))
        .draw()
        .map_err(err)?;
    for (i, result) in results.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let length = result
            .samples
            .last()
            .map_or(1.0, |s| s.seconds)
            .max(f64::EPSILON);
        chart
            .draw_series(LineSeries::new(
                result
                    .samples
                    .iter()
                    .map(|s| (s.seconds / length * 100.0, value(s))),
                color.stroke_width(2),
            ))
            .map_err(err)?
            .label(result.label())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}

fn setting_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    title: &str,
    results: &[SettingResult],
    axis: &Axis,
    value: fn(&SettingResult) -> f64,
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    let bounds: Vec<f64> = results.iter().map(axis.of).collect();
    let x_min = bounds.iter().copied().fold(f64::MAX, f64::min).max(1.0) / 1.5;
    let x_max = bounds.iter().copied().fold(1.0, f64::max) * 1.5;
    let y_max = upper(results.iter().map(value));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(70)
        .build_cartesian_2d((x_min..x_max).log_scale(), 0f64..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .light_line_style(TRANSPARENT)
        .x_labels(6)
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| label(*v, y_max))
        .x_desc(format!("{} (log scale)", axis.name))
        .draw()
        .map_err(err)?;
    let mut streams: Vec<u32> = results.iter().map(|r| r.streams).collect();
    streams.sort_unstable();
    streams.dedup();
    for (i, count) in streams.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        let mut points: Vec<(f64, f64)> = results
            .iter()
            .filter(|r| r.streams == *count)
            .map(|r| ((axis.of)(r), value(r)))
            .collect();
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{count} streams"))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], color.stroke_width(2)));
        chart
            .draw_series(
                points
                    .into_iter()
                    .map(|p| Circle::new(p, 4, color.filled())),
            )
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .draw()
        .map_err(err)
}
