//! Durations as Fabric's orderer.yaml writes them: Go's `time.ParseDuration`
//! syntax (`15m`, `7200s`, `2h0m0s`, `1.5s`, `250ms`), and a bare integer as
//! nanoseconds, which is what a YAML number becomes in Fabric's loader.

use std::time::Duration;

/// Parses `text`; `None` when it is not a duration. Empty text is zero (a key
/// given without a value), as in Fabric.
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    if text.is_empty() || text == "0" {
        return Some(Duration::ZERO);
    }
    if text.starts_with('-') {
        return None;
    }
    let text = text.strip_prefix('+').unwrap_or(text);
    if text.bytes().all(|b| b.is_ascii_digit()) {
        return text.parse::<u64>().ok().map(Duration::from_nanos);
    }
    let mut rest = text;
    let mut total: f64 = 0.0;
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, tail) = rest.split_at(number_end);
        if number.is_empty() || number == "." {
            return None;
        }
        let value: f64 = number.parse().ok()?;
        let unit_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_end);
        let nanos_per_unit = match unit {
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return None,
        };
        total += value * nanos_per_unit;
        rest = tail;
    }
    // Go's durations are int64 nanoseconds.
    (total <= i64::MAX as f64).then(|| Duration::from_nanos(total.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_durations_parse() {
        let s = Duration::from_secs;
        assert_eq!(parse_go_duration("15m"), Some(s(900)));
        assert_eq!(parse_go_duration("7200s"), Some(s(7200)));
        assert_eq!(parse_go_duration("2h0m0s"), Some(s(7200)));
        assert_eq!(parse_go_duration("1m30s"), Some(s(90)));
        assert_eq!(parse_go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_go_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_go_duration("10us"), Some(Duration::from_micros(10)));
        assert_eq!(parse_go_duration("0"), Some(Duration::ZERO));
        assert_eq!(parse_go_duration(""), Some(Duration::ZERO));
        assert_eq!(parse_go_duration("5000000000"), Some(s(5)));
    }

    #[test]
    fn other_text_is_refused() {
        for bad in ["m", "5 minutes", "-1s", "1d", "1.2.3s", "s5", "1e3s", "."] {
            assert_eq!(parse_go_duration(bad), None, "{bad}");
        }
    }
}
