//! Logging set-up: `FABRIC_LOGGING_SPEC` (Fabric's syntax) or `RUST_LOG`.

use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock, PoisonError};

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

/// The running filter, changeable at run time (the operations `/logspec`).
struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    spec: Mutex<String>,
}

static CONTROL: OnceLock<LogControl> = OnceLock::new();

/// Turns a Fabric logging spec ("info", "ordo.server=debug:warning",
/// "ordo.ledger,ordo.consensus=debug:info") into an `EnvFilter` directive string.
///
/// Fabric's spec is `:`-separated terms; a bare level is the default, a term
/// `a,b=level` sets that level for the named loggers. Logger names are
/// dot-separated as in Fabric and name Ordo's modules without their layer
/// (`ordo.ledger` is the module `ordo::runtime::ledger`); the full path works too.
pub fn fabric_spec_to_directives(spec: &str) -> Result<String, String> {
    let mut default = "info".to_string();
    let mut directives = Vec::new();
    for term in spec.split(':').map(str::trim).filter(|t| !t.is_empty()) {
        match term.split_once('=') {
            Some((loggers, level)) => {
                let level = level_name(level)?;
                for logger in loggers.split(',').map(str::trim).filter(|l| !l.is_empty()) {
                    directives.push(format!("{}={level}", module_path(logger)));
                }
            }
            None => default = level_name(term)?.to_string(),
        }
    }
    directives.insert(0, default);
    Ok(directives.join(","))
}

/// The layer each of Ordo's modules lives in, for loggers named without it.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "runtime",
        &[
            "blockcutter",
            "channel",
            "clock",
            "consensus",
            "ledger",
            "logging",
            "metrics",
            "msgprocessor",
            "node",
            "registrar",
            "server",
        ],
    ),
    (
        "fabric",
        &[
            "blockutil",
            "channelconfig",
            "configtx",
            "configtxgen",
            "envelopeutil",
            "localconfig",
            "protojson",
            "protos",
        ],
    ),
    ("tools", &["bench", "client"]),
];

/// A Fabric-style logger name as a module path: `ordo.ledger.store` is
/// `ordo::runtime::ledger::store`.
fn module_path(logger: &str) -> String {
    let mut parts: Vec<&str> = logger.split('.').collect();
    if parts.first() == Some(&"ordo") {
        if let Some(module) = parts.get(1).copied() {
            if let Some((layer, _)) = LAYERS.iter().find(|(_, m)| m.contains(&module)) {
                parts.insert(1, layer);
            }
        }
    }
    parts.join("::")
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

/// The filter to log with and the spec it came from: `FABRIC_LOGGING_SPEC`
/// first, then `RUST_LOG`, else info.
pub fn filter_from_env() -> Result<(EnvFilter, String), String> {
    if let Ok(spec) = std::env::var("FABRIC_LOGGING_SPEC") {
        let filter = filter_for_spec(&spec).map_err(|e| format!("FABRIC_LOGGING_SPEC: {e}"))?;
        return Ok((filter, spec));
    }
    if let Ok(spec) = std::env::var("RUST_LOG") {
        let filter = EnvFilter::try_new(&spec).map_err(|e| format!("RUST_LOG: {e}"))?;
        return Ok((filter, spec));
    }
    Ok((EnvFilter::new("info"), "info".into()))
}

/// The filter of a Fabric logging spec.
pub fn filter_for_spec(spec: &str) -> Result<EnvFilter, String> {
    let directives = fabric_spec_to_directives(spec)?;
    EnvFilter::try_new(directives).map_err(|e| e.to_string())
}

/// Installs the global subscriber (stderr). Safe to call more than once.
pub fn init() -> Result<(), String> {
    let (filter, spec) = filter_from_env()?;
    let (layer, handle) = reload::Layer::new(filter);
    let installed = tracing_subscriber::registry()
        .with(layer)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr),
        )
        .try_init();
    if installed.is_ok() {
        let _ = CONTROL.set(LogControl {
            handle,
            spec: Mutex::new(spec),
        });
    }
    Ok(())
}

/// The spec logging runs with now ("info" if logging was never set up here).
pub fn current_spec() -> String {
    CONTROL.get().map_or_else(
        || "info".to_string(),
        |c| {
            c.spec
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone()
        },
    )
}

/// Changes the log levels at run time to a Fabric logging spec.
pub fn set_spec(spec: &str) -> Result<(), String> {
    let filter = filter_for_spec(spec)?;
    let control = CONTROL
        .get()
        .ok_or_else(|| "logging is not set up by this process".to_string())?;
    control
        .handle
        .reload(filter)
        .map_err(|e| format!("cannot change the log levels: {e}"))?;
    *control.spec.lock().unwrap_or_else(PoisonError::into_inner) = spec.to_string();
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
            Ok("error,ordo::runtime::ledger=debug,ordo::runtime::server=debug".into())
        );
        assert_eq!(
            fabric_spec_to_directives("ordo.runtime.ledger=debug"),
            Ok("info,ordo::runtime::ledger=debug".into())
        );
        assert_eq!(
            fabric_spec_to_directives("h2=warn"),
            Ok("info,h2=warn".into())
        );
        assert!(fabric_spec_to_directives("loud").is_err());
    }
}
