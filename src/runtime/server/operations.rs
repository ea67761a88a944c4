//! The operations listener, as Fabric operators know it: `/healthz`,
//! `/metrics` (Prometheus text), `/logspec` (GET and PUT the log levels) and
//! `/version`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use crate::runtime::consensus::ParticipationStatus;
use crate::runtime::logging;
use crate::runtime::registrar::Registrar;

/// `/healthz`: 200 when every check passes, 503 with the failed ones.
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
    pub spec: String,
}

/// `/version`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Version {
    #[serde(rename = "Version")]
    pub version: String,
    #[serde(rename = "CommitSHA")]
    pub commit_sha: String,
}

pub fn router(registrar: Arc<Registrar>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/logspec", get(get_logspec).put(put_logspec))
        .route("/version", get(version))
        .with_state(registrar)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

async fn healthz(State(registrar): State<Arc<Registrar>>) -> Response {
    let failed_checks: Vec<FailedCheck> = registrar
        .channels()
        .iter()
        .filter_map(|channel| {
            let state = channel.state();
            let status = channel.chain_status().status;
            let failing = !state.serves() || status == ParticipationStatus::Failed;
            failing.then(|| FailedCheck {
                component: format!("channel/{}", channel.id()),
                reason: format!("{state} (chain status {})", status.as_str()),
            })
        })
        .collect();
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
    (code, Json(body)).into_response()
}

async fn metrics(State(registrar): State<Arc<Registrar>>) -> Response {
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

async fn get_logspec() -> Json<LogSpec> {
    Json(LogSpec {
        spec: logging::current_spec(),
    })
}

async fn put_logspec(
    body: Result<Json<LogSpec>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let spec = match body {
        Ok(Json(LogSpec { spec })) => spec,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    match logging::set_spec(&spec) {
        Ok(()) => {
            tracing::info!(%spec, "log levels changed");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error(StatusCode::BAD_REQUEST, e),
    }
}

async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION").to_string(),
        commit_sha: option_env!("ORDO_COMMIT_SHA")
            .unwrap_or("development build")
            .to_string(),
    })
}

fn error(code: StatusCode, message: String) -> Response {
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}
