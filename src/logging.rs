//! Logging set-up: `FABRIC_LOGGING_SPEC` (Fabric's syntax) or `RUST_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Turns a Fabric logging spec ("info", "ordo.server=debug:warning",
/// "ordo.ledger,ordo.consensus=debug:info") into an `EnvFilter` directive string.
///
/// Fabric's spec is `:`-separated terms; a bare level is the default, a term
/// `a,b=level` sets that level for the named loggers. Logger names are
/// dot-separated as in Fabric (`ordo.ledger` is the module `ordo::ledger`).
pub fn fabric_spec_to_directives(spec: &str) -> Result<String, String> {
    let mut default = "info".to_string();
    let mut directives = Vec::new();
    for term in spec.split(':').map(str::trim).filter(|t| !t.is_empty()) {
        match term.split_once('=') {
            Some((loggers, level)) => {
                let level = level_name(level)?;
                for logger in loggers.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                    directives.push(format!("{}={level}", logger.replace('.', "::")));
                }
            }
            None => default = level_name(term)?.to_string(),
        }
    }
    directives.insert(0, default);
    Ok(directives.join(","))
}

fn level_name(level: &str) -> Result<&'static str, String> {
    Ok(match level.to_ascii_lowercase().as_str() {
        "debug" => "debug",
        "info" => "info",
        "warn" | "warning" => "warn",
        "error" | "fatal" | "panic" | "critical" => "error",
        "trace" => "trace",
        other => return Err(format!("unknown log level {other:?}")),
    })
}

/// The filter to log with: `FABRIC_LOGGING_SPEC` first, then `RUST_LOG`, else info.
pub fn filter_from_env() -> Result<EnvFilter, String> {
    if let Ok(spec) = std::env::var("FABRIC_LOGGING_SPEC") {
        let directives =
            fabric_spec_to_directives(&spec).map_err(|e| format!("FABRIC_LOGGING_SPEC: {e}"))?;
        return EnvFilter::try_new(directives).map_err(|e| format!("FABRIC_LOGGING_SPEC: {e}"));
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        return EnvFilter::try_new(spec).map_err(|e| format!("RUST_LOG: {e}"));
    }
    Ok(EnvFilter::new("info"))
}

/// Installs the global subscriber (stderr). Safe to call more than once.
pub fn init() -> Result<(), String> {
    let filter = filter_from_env()?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_fabric_specs() {
        assert_eq!(fabric_spec_to_directives("info"), Ok("info".into()));
        assert_eq!(fabric_spec_to_directives("WARNING"), Ok("warn".into()));
        assert_eq!(
            fabric_spec_to_directives("ordo.ledger,ordo.server=debug:error"),
            Ok("error,ordo::ledger=debug,ordo::server=debug".into())
        );
        assert!(fabric_spec_to_directives("loud").is_err());
    }
}
