//! The channel participation API on the admin listener, as Fabric's `osnadmin`
//! speaks it: join a channel with its config block, list channels, show one,
//! remove one. JSON bodies and HTTP status codes are Fabric's.

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Multipart, Path, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prost::Message;
use serde::{Deserialize, Serialize};

use crate::fabric::protos::common::Block;
use crate::runtime::channel::{ChannelHandle, ChannelState};
use crate::runtime::registrar::{validate_channel_id, Registrar, RegistrarError};

pub const CHANNELS_PATH: &str = "/participation/v1/channels";
/// The multipart form field that carries the config block.
pub const CONFIG_BLOCK_FIELD: &str = "config-block";

/// `GET /participation/v1/channels`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelList {
    /// Always null: there is no system channel.
    #[serde(rename = "systemChannel")]
    pub system_channel: Option<ChannelInfoShort>,
    pub channels: Vec<ChannelInfoShort>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelInfoShort {
    pub name: String,
    pub url: String,
}

/// `GET /participation/v1/channels/{name}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelInfo {
    pub name: String,
    pub url: String,
    /// "consenter", "follower", "config-tracker" or "other".
    #[serde(rename = "consensusRelation")]
    pub consensus_relation: String,
    /// "active", "onboarding", "inactive" or "failed".
    pub status: String,
    pub height: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorResponse {
    pub error: String,
}

#[derive(Clone)]
struct Participation {
    registrar: Arc<Registrar>,
    enabled: bool,
}

/// The routes of the API. `max_body`: the largest join request accepted.
pub fn router(registrar: Arc<Registrar>, enabled: bool, max_body: usize) -> Router {
    let state = Participation { registrar, enabled };
    Router::new()
        .route(
            CHANNELS_PATH,
            get(list)
                .post(join)
                .fallback(|| async { not_allowed("GET, POST") }),
        )
        .route(
            &format!("{CHANNELS_PATH}/{{name}}"),
            get(info)
                .delete(remove)
                .fallback(|| async { not_allowed("GET, DELETE") }),
        )
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

fn url(name: &str) -> String {
    format!("{CHANNELS_PATH}/{name}")
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        Json(ErrorResponse {
            error: message.into(),
        }),
    )
        .into_response()
}

fn not_allowed(allow: &'static str) -> Response {
    let mut response = error(StatusCode::METHOD_NOT_ALLOWED, "invalid request method");
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

fn disabled() -> Response {
    error(
        StatusCode::SERVICE_UNAVAILABLE,
        "channel participation API is disabled",
    )
}

fn channel_info(channel: &ChannelHandle) -> ChannelInfo {
    // What the chain publishes: its relation to the channel, and whether it
    // runs (the supervisor publishes inactive or failed while none does).
    let status = channel.chain_status();
    ChannelInfo {
        name: channel.id().to_string(),
        url: url(channel.id()),
        consensus_relation: status.relation.as_str().into(),
        status: status.status.as_str().into(),
        height: channel.store().height(),
    }
}

async fn list(State(api): State<Participation>) -> Response {
    if !api.enabled {
        return disabled();
    }
    let channels = api
        .registrar
        .channel_ids()
        .into_iter()
        .map(|name| ChannelInfoShort {
            url: url(&name),
            name,
        })
        .collect();
    Json(ChannelList {
        system_channel: None,
        channels,
    })
    .into_response()
}

async fn info(State(api): State<Participation>, Path(name): Path<String>) -> Response {
    if !api.enabled {
        return disabled();
    }
    if let Err(e) = validate_channel_id(&name) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match api.registrar.channel(&name) {
        Some(channel) => Json(channel_info(&channel)).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            format!("channel {name} does not exist"),
        ),
    }
}

async fn join(
    State(api): State<Participation>,
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Response {
    if !api.enabled {
        return disabled();
    }
    let block = match config_block(multipart).await {
        Ok(block) => block,
        Err(response) => return response,
    };
    let registrar = api.registrar.clone();
    // Creating the ledger touches the disk: off the async threads.
    let joined = tokio::task::spawn_blocking(move || registrar.join_channel(&block)).await;
    match joined {
        Ok(Ok(channel)) => {
            let mut state = channel.subscribe_state();
            let _ = state.wait_for(|s| *s != ChannelState::Starting).await;
            let info = channel_info(&channel);
            tracing::info!(channel = %info.name, "channel joined");
            let mut response = (StatusCode::CREATED, Json(info.clone())).into_response();
            if let Ok(location) = HeaderValue::from_str(&info.url) {
                response.headers_mut().insert(header::LOCATION, location);
            }
            response
        }
        Ok(Err(RegistrarError::ChannelExists(name))) => {
            let mut response = error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("cannot join: channel {name} already exists"),
            );
            response
                .headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, DELETE"));
            response
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, format!("cannot join: {e}")),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    }
}

/// Reads the one `config-block` part of a join request and decodes it.
async fn config_block(
    multipart: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Block, Response> {
    let bad = |message: String| error(StatusCode::BAD_REQUEST, message);
    let mut multipart =
        multipart.map_err(|e| bad(format!("cannot read form from request body: {e}")))?;
    let mut block = None;
    while let Some(field) = multipart.next_field().await.map_err(|e| {
        let status = e.status();
        error(status, format!("cannot read form from request body: {e}"))
    })? {
        if field.name() != Some(CONFIG_BLOCK_FIELD) || block.is_some() {
            return Err(bad("form contains too many parts".into()));
        }
        let bytes = field.bytes().await.map_err(|e| {
            let status = e.status();
            error(
                status,
                format!("cannot read file part {CONFIG_BLOCK_FIELD}: {e}"),
            )
        })?;
        block = Some(Block::decode(bytes).map_err(|e| {
            bad(format!(
                "cannot unmarshal file part {CONFIG_BLOCK_FIELD} into a block: {e}"
            ))
        })?);
    }
    block.ok_or_else(|| {
        bad(format!(
            "form does not contain part key: {CONFIG_BLOCK_FIELD}"
        ))
    })
}

async fn remove(State(api): State<Participation>, Path(name): Path<String>) -> Response {
    if !api.enabled {
        return disabled();
    }
    if let Err(e) = validate_channel_id(&name) {
        return error(StatusCode::BAD_REQUEST, e.to_string());
    }
    match api.registrar.remove_channel(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(RegistrarError::NoSuchChannel(_)) => error(
            StatusCode::NOT_FOUND,
            format!("cannot remove: channel {name} does not exist"),
        ),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot remove channel {name}: {e}"),
        ),
    }
}
