//! The channel participation API on the admin listener, as Fabric's `osnadmin`
//! speaks it: join a channel with its config block, list channels, show one,
//! remove one, fetch a block, submit a config update. Paths, JSON bodies,
//! status codes, headers and error texts are those of Fabric 3.1's
//! `orderer/common/channelparticipation` handler.

mod fetch;
mod form;
mod join;
mod update;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use prost::Message;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub use fetch::{parse_block_id, BlockId};
pub use join::{validate_join_block, JoinBlockError};
pub use update::validate_update_envelope;

use crate::fabric::protos::common::{Block, Envelope, Status};
use crate::runtime::channel::{ChannelHandle, ChannelState};
use crate::runtime::consensus::ConsensusRelation;
use crate::runtime::registrar::{FailedChannel, Registrar, RegistrarError};

/// The API's root; a GET there is redirected to the channel list.
pub const BASE_PATH: &str = "/participation/v1/";
pub const CHANNELS_PATH: &str = "/participation/v1/channels";
/// The multipart form field that carries the config block of a join.
pub const CONFIG_BLOCK_FIELD: &str = "config-block";
/// The multipart form field that carries the envelope of a config update.
pub const CONFIG_UPDATE_ENVELOPE_FIELD: &str = "config-update-envelope";
/// The content type of a fetched block.
pub const BLOCK_CONTENT_TYPE: &str = "application/octet-stream";

/// `GET /participation/v1/channels`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ChannelList {
    /// The system channel, when the node runs one (Fabric 1.x/2.x); it is
    /// not in `channels` then.
    #[serde(rename = "systemChannel")]
    pub system_channel: Option<ChannelInfoShort>,
    /// Null, not an empty list, when the node has no channel (as Fabric).
    pub channels: Option<Vec<ChannelInfoShort>>,
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
    /// `ChannelParticipation.MaxRequestBodySize`: the largest join or update body.
    max_body: usize,
    /// Ends config updates in flight when the node stops.
    shutdown: CancellationToken,
}

/// The routes of the API. `max_body`: the largest join or update request.
pub fn router(registrar: Arc<Registrar>, max_body: usize, shutdown: CancellationToken) -> Router {
    let state = Participation {
        registrar,
        max_body,
        shutdown,
    };
    Router::new()
        .route(
            "/participation/v1",
            any(|method: Method| async move {
                redirect(StatusCode::MOVED_PERMANENTLY, BASE_PATH, &method)
            }),
        )
        .route(
            BASE_PATH,
            get(
                |method: Method| async move { redirect(StatusCode::FOUND, CHANNELS_PATH, &method) },
            )
            .head(method_mismatch)
            .fallback(method_mismatch),
        )
        .route(
            CHANNELS_PATH,
            get(list)
                .post(join)
                .put(update)
                .head(not_allowed("GET, POST, PUT"))
                .fallback(not_allowed("GET, POST, PUT")),
        )
        .route(
            &format!("{CHANNELS_PATH}/{{name}}"),
            get(info)
                .delete(remove)
                .head(not_allowed("GET, DELETE"))
                .fallback(not_allowed("GET, DELETE")),
        )
        .route(
            &format!("{CHANNELS_PATH}/{{name}}/blocks/{{block}}"),
            get(fetch_block)
                .head(not_allowed("GET"))
                .fallback(not_allowed("GET")),
        )
        .fallback(|| async { not_found() })
        .with_state(state)
}

fn url(name: &str) -> String {
    format!("{CHANNELS_PATH}/{name}")
}

/// JSON as Go's encoder writes it: `<`, `>`, `&` and the two line
/// separators escaped, a newline at the end.
fn go_json(value: &impl Serialize) -> Vec<u8> {
    // Only this module's own types are encoded: plain structs of strings
    // and numbers, which always serialize.
    let text = serde_json::to_string(value).unwrap_or_else(|_| "null".into());
    let mut text = text
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029");
    text.push('\n');
    text.into_bytes()
}

fn json(status: StatusCode, value: &impl Serialize) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        go_json(value),
    )
        .into_response()
}

/// A JSON answer that must not be cached: the list and a channel's info.
fn fresh_json(value: &impl Serialize) -> Response {
    let mut response = json(StatusCode::OK, value);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    json(
        status,
        &ErrorResponse {
            error: message.into(),
        },
    )
}

/// A refusal: its status and Fabric's text, answered as an error body.
#[derive(Debug)]
struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    fn new(status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            status,
            message: message.into(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        error(self.status, self.message)
    }
}

fn with_allow(mut response: Response, allow: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    response
}

/// 405 with Fabric's body ("invalid request method: PUT") and `Allow`.
fn not_allowed(
    allow: &'static str,
) -> impl Fn(Method) -> std::future::Ready<Response> + Clone + Send + Sync + 'static {
    move |method: Method| {
        std::future::ready(with_allow(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("invalid request method: {method}"),
            ),
            allow,
        ))
    }
}

/// What Fabric's router answers for a known path without a handler for the
/// method: 405 and nothing else.
async fn method_mismatch() -> Response {
    StatusCode::METHOD_NOT_ALLOWED.into_response()
}

/// Go's `http.NotFound`.
fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
        ],
        "404 page not found\n",
    )
        .into_response()
}

/// Go's `http.Redirect`: a small HTML body for GET and HEAD only.
fn redirect(status: StatusCode, to: &'static str, method: &Method) -> Response {
    let mut response = if *method == Method::GET || *method == Method::HEAD {
        let text = status.canonical_reason().unwrap_or_default();
        (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            )],
            format!("<a href=\"{to}\">{text}</a>.\n\n"),
        )
            .into_response()
    } else {
        status.into_response()
    };
    response
        .headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    response
}

/// Fabric answers in JSON only; a client that accepts none of it gets 406.
fn negotiate(headers: &HeaderMap) -> Result<(), Refusal> {
    let Some(accept) = headers.get(header::ACCEPT) else {
        return Ok(());
    };
    let accept = String::from_utf8_lossy(accept.as_bytes());
    let acceptable = accept.is_empty()
        || accept.split(',').any(|option| {
            option.contains("application/json")
                || option.contains("application/*")
                || option.contains("*/*")
        });
    if acceptable {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::NOT_ACCEPTABLE,
            "response Content-Type is application/json only",
        ))
    }
}

/// Fabric's channel ID rule (`[a-z][a-z0-9.-]*`, at most 249 characters)
/// with its texts, as the API answers them.
fn check_channel_id(id: &str) -> Result<(), Refusal> {
    let reason = if id.is_empty() {
        Some("channel ID illegal, cannot be empty".to_string())
    } else if id.len() > 249 {
        Some("channel ID illegal, cannot be longer than 249".to_string())
    } else if !id.starts_with(|c: char| c.is_ascii_lowercase())
        || !id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-')
    {
        Some(format!("'{id}' contains illegal characters"))
    } else {
        None
    };
    match reason {
        Some(reason) => Err(Refusal::new(
            StatusCode::BAD_REQUEST,
            format!("invalid channel ID: {reason}"),
        )),
        None => Ok(()),
    }
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

/// A channel whose ledger or config could not be read at start-up: Fabric's
/// status "failed". Its relation is not known without its config; "other"
/// is Fabric's word for a relation that is neither consenter nor follower.
fn failed_channel_info(channel: &FailedChannel) -> ChannelInfo {
    ChannelInfo {
        name: channel.id.clone(),
        url: url(&channel.id),
        consensus_relation: "other".into(),
        status: crate::runtime::consensus::ParticipationStatus::Failed
            .as_str()
            .into(),
        height: channel.height.unwrap_or(0),
    }
}

/// 201 with the channel's info, its URL in `Location`.
fn created(info: &ChannelInfo) -> Response {
    let mut response = json(StatusCode::CREATED, info);
    if let Ok(location) = HeaderValue::from_str(&info.url) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

async fn list(State(api): State<Participation>, headers: HeaderMap) -> Response {
    if let Err(refusal) = negotiate(&headers) {
        return refusal.into_response();
    }
    let system = api.registrar.system_channel_id();
    let mut names = api.registrar.channel_ids();
    names.extend(api.registrar.failed_channels().into_iter().map(|c| c.id));
    names.retain(|name| Some(name) != system.as_ref());
    names.sort();
    let channels: Vec<ChannelInfoShort> = names
        .into_iter()
        .map(|name| ChannelInfoShort {
            url: url(&name),
            name,
        })
        .collect();
    fresh_json(&ChannelList {
        system_channel: system.map(|name| ChannelInfoShort {
            url: url(&name),
            name,
        }),
        channels: Some(channels).filter(|c| !c.is_empty()),
    })
}

async fn info(
    State(api): State<Participation>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = negotiate(&headers).and_then(|()| check_channel_id(&name)) {
        return refusal.into_response();
    }
    if let Some(channel) = api.registrar.channel(&name) {
        return fresh_json(&channel_info(&channel));
    }
    match api.registrar.failed_channel(&name) {
        Some(failed) => fresh_json(&failed_channel_info(&failed)),
        None => error(StatusCode::NOT_FOUND, "channel does not exist"),
    }
}

/// The one file part of a multipart request, decoded as `what`; a refusal
/// (with Fabric's status and text) otherwise.
async fn form_part<M: Message + Default>(
    api: &Participation,
    headers: &HeaderMap,
    body: Body,
    field: &str,
    what: &str,
) -> Result<M, Response> {
    if !form::is_form(headers) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            form::unsupported_content_type(headers),
        ));
    }
    negotiate(headers).map_err(IntoResponse::into_response)?;
    let bytes = form::read_file_part(headers, body, field, api.max_body)
        .await
        .map_err(|message| error(StatusCode::BAD_REQUEST, message))?;
    M::decode(bytes).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            format!("cannot unmarshal file part {field} into {what}: {e}"),
        )
    })
}

async fn join(State(api): State<Participation>, headers: HeaderMap, body: Body) -> Response {
    let block: Block = match form_part(&api, &headers, body, CONFIG_BLOCK_FIELD, "a block").await {
        Ok(block) => block,
        Err(refusal) => return refusal,
    };
    if let Err(e) = validate_join_block(&block, api.registrar.max_block_bytes()) {
        tracing::warn!(error = %e, "join refused: invalid join block");
        return error(StatusCode::BAD_REQUEST, format!("invalid join block: {e}"));
    }
    let registrar = api.registrar.clone();
    // Creating the ledger touches the disk: off the async threads.
    let joined = tokio::task::spawn_blocking(move || registrar.join_channel(&block)).await;
    match joined {
        Ok(Ok(channel)) => {
            if api.registrar.system_channel_id().as_deref() == Some(channel.id()) {
                api.registrar.follow_system_channel();
            }
            let mut state = channel.subscribe_state();
            let _ = state.wait_for(|s| *s != ChannelState::Starting).await;
            let info = channel_info(&channel);
            tracing::info!(channel = %info.name, "channel joined");
            created(&info)
        }
        Ok(Err(RegistrarError::ChannelExists(_))) => with_allow(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "cannot join: channel already exists",
            ),
            "GET, DELETE",
        ),
        // Fabric 2.x: while a system channel runs, channels are created
        // through it, not joined.
        Ok(Err(e @ RegistrarError::SystemChannelExists)) => with_allow(
            error(StatusCode::METHOD_NOT_ALLOWED, format!("cannot join: {e}")),
            "GET",
        ),
        Ok(Err(e @ RegistrarError::AppChannelsExist)) => {
            error(StatusCode::FORBIDDEN, format!("cannot join: {e}"))
        }
        Ok(Err(e)) => error(StatusCode::BAD_REQUEST, format!("cannot join: {e}")),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot join: {e}"),
        ),
    }
}

async fn remove(
    State(api): State<Participation>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = negotiate(&headers).and_then(|()| check_channel_id(&name)) {
        return refusal.into_response();
    }
    match api.registrar.remove_channel(&name).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(RegistrarError::NoSuchChannel(_)) => error(
            StatusCode::NOT_FOUND,
            "cannot remove: channel does not exist",
        ),
        Err(e @ RegistrarError::SystemChannelExists) => with_allow(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("cannot remove: {e}"),
            ),
            "GET",
        ),
        Err(e) => {
            tracing::error!(channel = %name, error = %e, "channel removal failed");
            error(StatusCode::BAD_REQUEST, format!("cannot remove: {e}"))
        }
    }
}

async fn fetch_block(
    State(api): State<Participation>,
    Path((name, block)): Path<(String, String)>,
) -> Response {
    if let Err(refusal) = check_channel_id(&name) {
        return refusal.into_response();
    }
    let id = match parse_block_id(&block) {
        Ok(id) => id,
        Err(reason) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid block ID: {reason}"),
            )
        }
    };
    let Some(channel) = api.registrar.channel(&name) else {
        return error(StatusCode::NOT_FOUND, "channel does not exist");
    };
    match fetch::block(&channel, id).await {
        Ok(bytes) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(BLOCK_CONTENT_TYPE),
            )],
            bytes,
        )
            .into_response(),
        Err(e @ fetch::FetchError::NoSuchBlock(_)) => error(StatusCode::NOT_FOUND, e.to_string()),
        Err(e) => {
            tracing::error!(channel = %name, error = %e, "admin fetch cannot read the ledger");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

async fn update(State(api): State<Participation>, headers: HeaderMap, body: Body) -> Response {
    let field = CONFIG_UPDATE_ENVELOPE_FIELD;
    let envelope: Envelope = match form_part(&api, &headers, body, field, "an envelope").await {
        Ok(envelope) => envelope,
        Err(refusal) => return refusal,
    };
    let channel_id = match validate_update_envelope(&envelope) {
        Ok(id) => id,
        Err(reason) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("invalid config update envelope: {reason}"),
            )
        }
    };
    let Some(channel) = api.registrar.channel(&channel_id) else {
        return with_allow(
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "cannot update: channel does not exist",
            ),
            "GET, POST",
        );
    };
    if channel.chain_status().relation == ConsensusRelation::Follower {
        return error(
            StatusCode::FORBIDDEN,
            "cannot update: channel is not ready, he is a follower",
        );
    }
    let answer = update::submit(api.registrar.clone(), &envelope, api.shutdown.clone()).await;
    if answer.status != Status::Success {
        tracing::warn!(channel = %channel_id, status = ?answer.status, info = %answer.info, "config update through the admin API refused");
        return error(
            StatusCode::BAD_REQUEST,
            format!("cannot update: {}", answer.info),
        );
    }
    tracing::info!(channel = %channel_id, "config update accepted through the admin API");
    created(&channel_info(&channel))
}
