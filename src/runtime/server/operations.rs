//! The operations listener, as Fabric operators know it: `/healthz`,
//! `/metrics` (Prometheus text), `/logspec` (GET and PUT the log levels) and
//! `/version`, with Fabric's answers to other methods and paths.
//!
//! With `Operations.TLS` on, `/metrics` and `/logspec` (every method) need a
//! verified client certificate, else 401, as Fabric's `RequireCert`
//! middleware does; `/healthz` and `/version` stay open.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError, RwLock};

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use serde::{Deserialize, Serialize};

use crate::runtime::consensus::ParticipationStatus;
use crate::runtime::logging;
use crate::runtime::registrar::Registrar;
use crate::runtime::server::tls::TlsPeer;

/// `/healthz`: 200 when every registered check passes, 503 with the failed ones.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct HealthStatus {
    pub status: String,
    pub time: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_checks: Vec<FailedCheck>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FailedCheck {
    pub component: String,
    pub reason: String,
}

/// `/logspec` body, both ways.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct LogSpec {
    #[serde(default)]
    pub spec: String,
}

/// `/version`, with Fabric's field names and order.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    #[serde(
        rename = "CommitSHA",
        default,
        skip_serializing_if = "String::is_empty"
    )]
    pub commit_sha: String,
    #[serde(rename = "Version", default, skip_serializing_if = "String::is_empty")]
    pub version: String,
}

/// A node-level component whose failure makes `/healthz` answer 503.
pub trait HealthChecker: Send + Sync {
    /// `Err(reason)` when the component is unhealthy.
    fn health_check(&self) -> Result<(), String>;
}

#[derive(Debug, thiserror::Error)]
#[error("'{0}' is already registered")]
pub struct AlreadyRegistered(pub String);

/// The checks `/healthz` runs, by component name (Fabric's health handler).
///
/// Channels are not among them: a channel whose chain failed stays failed
/// across a restart of the process, so a failing liveness probe would only
/// restart the node for nothing. A channel's state is reported by the
/// participation API (its `status`) and by the `ordo_chain_active` metric.
#[derive(Default)]
pub struct HealthChecks {
    checkers: RwLock<BTreeMap<String, Arc<dyn HealthChecker>>>,
}

impl HealthChecks {
    pub fn register(
        &self,
        component: &str,
        checker: Arc<dyn HealthChecker>,
    ) -> Result<(), AlreadyRegistered> {
        let mut checkers = self
            .checkers
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if checkers.contains_key(component) {
            return Err(AlreadyRegistered(component.to_string()));
        }
        checkers.insert(component.to_string(), checker);
        Ok(())
    }

    pub fn deregister(&self, component: &str) {
        self.checkers
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(component);
    }

    /// Runs every check; the failed ones.
    pub fn run(&self) -> Vec<FailedCheck> {
        let checkers: Vec<(String, Arc<dyn HealthChecker>)> = self
            .checkers
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(name, checker)| (name.clone(), checker.clone()))
            .collect();
        checkers
            .into_iter()
            .filter_map(|(component, checker)| {
                checker
                    .health_check()
                    .err()
                    .map(|reason| FailedCheck { component, reason })
            })
            .collect()
    }
}

#[derive(Clone)]
struct Operations {
    registrar: Arc<Registrar>,
    health: Arc<HealthChecks>,
}

/// The operations routes. `require_client_cert`: Operations.TLS is on, so
/// `/metrics` and `/logspec` need a verified client certificate (the server
/// must then be [`super::serve_https`]).
pub fn router(
    registrar: Arc<Registrar>,
    health: Arc<HealthChecks>,
    require_client_cert: bool,
) -> Router {
    let secured = Router::new()
        .route("/metrics", any(metrics))
        .route("/logspec", any(logspec));
    // Test builds only: set a failpoint of a running node.
    #[cfg(feature = "failpoints")]
    let secured = secured.route("/failpoints/{point}", axum::routing::put(failpoint));
    let secured = if require_client_cert {
        secured.route_layer(axum::middleware::from_fn(require_cert))
    } else {
        secured
    };
    Router::new()
        .route("/healthz", any(healthz))
        .route("/version", any(version))
        .merge(secured)
        .fallback(not_found)
        .with_state(Operations { registrar, health })
}

/// Fabric's `RequireCert`: 401 without a verified client certificate.
async fn require_cert(request: Request, next: Next) -> Response {
    let verified = request
        .extensions()
        .get::<ConnectInfo<TlsPeer>>()
        .is_some_and(|ConnectInfo(peer)| peer.client_certificate.is_some());
    if verified {
        next.run(request).await
    } else {
        StatusCode::UNAUTHORIZED.into_response()
    }
}

/// Go's `ServeMux` answer to a path it does not serve.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        "404 page not found\n",
    )
        .into_response()
}

/// Now, as Go writes a `time.Time` in JSON (RFC 3339 with nanoseconds,
/// trailing zeros dropped), in UTC.
fn now() -> String {
    rfc3339_nano(std::time::SystemTime::now())
}

fn rfc3339_nano(time: std::time::SystemTime) -> String {
    let text = humantime::format_rfc3339_nanos(time).to_string();
    // "2006-01-02T15:04:05.123456789Z": trim the fraction's trailing zeros.
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((seconds, fraction)) => {
            let fraction = fraction.trim_end_matches('0');
            if fraction.is_empty() {
                format!("{seconds}Z")
            } else {
                format!("{seconds}.{fraction}Z")
            }
        }
        None => text,
    }
}

fn json(code: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (code, [(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode an operations answer");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

/// Fabric's answer to a method a handler does not serve: 400 and the error
/// under `key` (`error` for /logspec, `Error` for /version).
fn invalid_method(key: &str, method: &Method) -> Response {
    let mut body = serde_json::Map::new();
    body.insert(
        key.to_string(),
        format!("invalid request method: {method}").into(),
    );
    json(StatusCode::BAD_REQUEST, &body)
}

async fn healthz(State(ops): State<Operations>, method: Method) -> Response {
    if method != Method::GET {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let failed_checks = ops.health.run();
    let (code, status) = if failed_checks.is_empty() {
        (StatusCode::OK, "OK")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
    };
    let body = HealthStatus {
        status: status.into(),
        time: now(),
        failed_checks,
    };
    json(code, &body)
}

async fn metrics(State(ops): State<Operations>) -> Response {
    let registrar = &ops.registrar;
    // Metrics.Provider other than prometheus: no such page, as in Fabric.
    if !registrar.metrics().exposed() {
        return (StatusCode::NOT_FOUND, "404 page not found\n").into_response();
    }
    // Gauges read from the channels' state at scrape time.
    for channel in registrar.channels() {
        let m = channel.metrics();
        m.height.set(channel.store().height() as i64);
        let room = channel.inflight();
        m.envelopes_inflight.set(room.envelopes_held() as i64);
        m.bytes_inflight.set(room.bytes_held() as i64);
        let status = channel.chain_status();
        m.is_leader.set(i64::from(
            status.role == crate::runtime::consensus::ChainRole::Leader,
        ));
        m.chain_active
            .set(i64::from(status.status == ParticipationStatus::Active));
    }
    let text = registrar.metrics().encode();
    (
        [(header::CONTENT_TYPE, crate::runtime::metrics::CONTENT_TYPE)],
        text,
    )
        .into_response()
}

async fn logspec(method: Method, body: Bytes) -> Response {
    match method {
        Method::GET => json(
            StatusCode::OK,
            &LogSpec {
                spec: logging::current_spec(),
            },
        ),
        // The body is JSON whatever its Content-Type says (curl -d sends a
        // form type), as Fabric decodes it.
        Method::PUT => {
            let spec = match serde_json::from_slice::<LogSpec>(&body) {
                Ok(LogSpec { spec }) => spec,
                Err(e) => return error(StatusCode::BAD_REQUEST, e.to_string()),
            };
            match logging::set_spec(&spec) {
                Ok(()) => {
                    tracing::info!(%spec, "log levels changed");
                    StatusCode::NO_CONTENT.into_response()
                }
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            }
        }
        other => invalid_method("error", &other),
    }
}

/// `PUT /failpoints/<point>` with the actions as body (`off` or empty turns
/// it off). Compiled in only with the `failpoints` feature.
#[cfg(feature = "failpoints")]
async fn failpoint(
    axum::extract::Path(point): axum::extract::Path<String>,
    body: Bytes,
) -> Response {
    let actions = String::from_utf8_lossy(&body);
    match crate::runtime::faults::configure(&point, actions.trim()) {
        Ok(()) => {
            tracing::warn!(%point, actions = %actions.trim(), "failpoint configured");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn version(method: Method) -> Response {
    if method != Method::GET {
        return invalid_method("Error", &method);
    }
    json(
        StatusCode::OK,
        &Version {
            commit_sha: option_env!("ORDO_COMMIT_SHA")
                .unwrap_or("development build")
                .to_string(),
            version: env!("CARGO_PKG_VERSION").to_string(),
        },
    )
}

fn error(code: StatusCode, message: String) -> Response {
    json(code, &serde_json::json!({ "error": message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_time_is_rfc3339_nano() {
        let at = |nanos: u64| {
            std::time::UNIX_EPOCH
                + std::time::Duration::from_nanos(1_700_000_000_000_000_000 + nanos)
        };
        assert_eq!(rfc3339_nano(at(0)), "2023-11-14T22:13:20Z");
        assert_eq!(rfc3339_nano(at(120_000_000)), "2023-11-14T22:13:20.12Z");
        assert_eq!(rfc3339_nano(at(1)), "2023-11-14T22:13:20.000000001Z");
    }

    struct Fixed(Result<(), String>);

    impl HealthChecker for Fixed {
        fn health_check(&self) -> Result<(), String> {
            self.0.clone()
        }
    }

    #[test]
    fn health_checks_report_failures_by_component() {
        let checks = HealthChecks::default();
        assert!(checks.run().is_empty());
        checks
            .register("ledger", Arc::new(Fixed(Ok(()))))
            .expect("registered");
        checks
            .register("disk", Arc::new(Fixed(Err("full".into()))))
            .expect("registered");
        assert!(checks.register("disk", Arc::new(Fixed(Ok(())))).is_err());
        assert_eq!(
            checks.run(),
            vec![FailedCheck {
                component: "disk".into(),
                reason: "full".into()
            }]
        );
        checks.deregister("disk");
        assert!(checks.run().is_empty());
    }

    #[test]
    fn version_has_fabric_field_order() {
        let text = serde_json::to_string(&Version {
            commit_sha: "abc".into(),
            version: "1.0".into(),
        })
        .expect("json");
        assert_eq!(text, r#"{"CommitSHA":"abc","Version":"1.0"}"#);
    }
}
