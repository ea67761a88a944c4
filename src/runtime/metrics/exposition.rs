//! Prometheus's text format, version 0.0.4, as Fabric's orderer serves it
//! (Go's client), from the OpenMetrics text prometheus-client writes.
//!
//! OpenMetrics requires a `_total` suffix on counter samples and
//! prometheus-client adds it; Fabric's counters have none
//! (`broadcast_processed_count`). In version 0.0.4 a counter's samples carry
//! its family's name exactly, so Fabric-named counters lose the suffix, and
//! Ordo's own (`ordo_*`) keep it in their family's name. `# UNIT` and
//! `# EOF` lines do not exist in 0.0.4 and are left out.

use std::collections::HashSet;

/// What `/metrics` answers with, as Go's promhttp does.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Ordo's own metrics: their counters keep Prometheus's `_total` convention.
const ORDO_PREFIX: &str = "ordo_";

pub fn prometheus_text(openmetrics: &str) -> String {
    let counters: HashSet<&str> = openmetrics
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("# TYPE ")?;
            let (name, kind) = rest.split_once(' ')?;
            (kind.trim() == "counter").then_some(name)
        })
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        }
        if let Some((keyword, rest)) = line
            .strip_prefix("# HELP ")
            .map(|rest| ("# HELP ", rest))
            .or_else(|| line.strip_prefix("# TYPE ").map(|rest| ("# TYPE ", rest)))
        {
            let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
            out.push_str(keyword);
            out.push_str(name);
            if counters.contains(name) && name.starts_with(ORDO_PREFIX) {
                out.push_str("_total");
            }
            out.push(' ');
            out.push_str(tail);
            out.push('\n');
            continue;
        }
        if !line.starts_with('#') {
            let name_end = line.find(['{', ' ']).unwrap_or(line.len());
            let (name, tail) = line.split_at(name_end);
            if name.ends_with("_bucket") {
                out.push_str(name);
                out.push_str(&go_bucket_bound(tail));
                out.push('\n');
                continue;
            }
            if let Some(family) = name.strip_suffix("_total") {
                if counters.contains(family) && !family.starts_with(ORDO_PREFIX) {
                    out.push_str(family);
                    out.push_str(tail);
                    out.push('\n');
                    continue;
                }
            }
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// A bucket's `le` as Go writes it: `le="1"`, not `le="1.0"`, so queries
/// that name a bucket of Fabric's match.
fn go_bucket_bound(tail: &str) -> String {
    const LE: &str = "le=\"";
    let Some(start) = tail.find(LE).map(|i| i + LE.len()) else {
        return tail.to_string();
    };
    let Some(end) = tail[start..].find('"').map(|i| start + i) else {
        return tail.to_string();
    };
    match tail[start..end].strip_suffix(".0") {
        Some(whole) => format!("{}{}{}", &tail[..start], whole, &tail[end..]),
        None => tail.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fabric_counters_lose_the_suffix_and_ordos_keep_it() {
        let openmetrics = "\
# HELP broadcast_processed_count The number of transactions processed.
# TYPE broadcast_processed_count counter
broadcast_processed_count_total{channel=\"a\",status=\"SUCCESS\",type=\"MESSAGE\"} 3
# HELP ordo_blocks_committed Blocks made durable.
# TYPE ordo_blocks_committed counter
ordo_blocks_committed_total{channel=\"a\"} 2
# HELP ordo_submission_wait_seconds How long.
# TYPE ordo_submission_wait_seconds histogram
# UNIT ordo_submission_wait_seconds seconds
ordo_submission_wait_seconds_sum{channel=\"a\"} 0.5
ordo_submission_wait_seconds_bucket{le=\"+Inf\",channel=\"a\"} 1
# HELP ledger_blockchain_height Height.
# TYPE ledger_blockchain_height gauge
ledger_blockchain_height{channel=\"a_total\"} 4
# EOF
";
        let text = prometheus_text(openmetrics);
        assert_eq!(
            text,
            "\
# HELP broadcast_processed_count The number of transactions processed.
# TYPE broadcast_processed_count counter
broadcast_processed_count{channel=\"a\",status=\"SUCCESS\",type=\"MESSAGE\"} 3
# HELP ordo_blocks_committed_total Blocks made durable.
# TYPE ordo_blocks_committed_total counter
ordo_blocks_committed_total{channel=\"a\"} 2
# HELP ordo_submission_wait_seconds How long.
# TYPE ordo_submission_wait_seconds histogram
ordo_submission_wait_seconds_sum{channel=\"a\"} 0.5
ordo_submission_wait_seconds_bucket{le=\"+Inf\",channel=\"a\"} 1
# HELP ledger_blockchain_height Height.
# TYPE ledger_blockchain_height gauge
ledger_blockchain_height{channel=\"a_total\"} 4
"
        );
    }

    #[test]
    fn bucket_bounds_are_written_as_go_writes_them() {
        let text = prometheus_text(
            "# TYPE h histogram\nh_bucket{le=\"1.0\",channel=\"a\"} 1\nh_bucket{le=\"0.005\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 1.0\n",
        );
        assert_eq!(
            text,
            "# TYPE h histogram\nh_bucket{le=\"1\",channel=\"a\"} 1\nh_bucket{le=\"0.005\"} 0\nh_bucket{le=\"+Inf\"} 1\nh_sum 1.0\n"
        );
    }

    #[test]
    fn a_counter_without_labels_loses_the_suffix_too() {
        let text = prometheus_text(
            "# HELP deliver_streams_opened Opened.\n# TYPE deliver_streams_opened counter\ndeliver_streams_opened_total 7\n# EOF\n",
        );
        assert!(text.contains("\ndeliver_streams_opened 7\n"), "{text}");
    }
}
