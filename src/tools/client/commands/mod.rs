//! The bodies of `ordo`'s client subcommands: each sends one kind of request
//! to an orderer (or converts one kind of file) and prints what an operator
//! reads. The binary only parses the command line and calls them.

pub mod broadcast;
#[cfg(feature = "tools")]
pub mod channel;
pub mod config;
pub mod deliver;
pub mod fetch;
pub mod genesis;
pub mod submit;

use std::path::{Path, PathBuf};

use super::ClientError;
use crate::fabric::channelconfig::ChannelConfigError;
use crate::fabric::configtx::compute::ComputeError;
use crate::fabric::configtxgen::GenesisError;
use crate::fabric::protojson::ProtoJsonError;
use crate::fabric::protos::common::Status;

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot read {}", .path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write {}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is not JSON", .path.display())]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("{} is not {what}", .path.display())]
    Decode {
        path: PathBuf,
        what: &'static str,
        source: prost::DecodeError,
    },
    #[error("{} is not a config block", .path.display())]
    NotConfigBlock {
        path: PathBuf,
        source: ChannelConfigError,
    },
    #[error("the blocks are of different channels: {original} and {updated}")]
    DifferentChannels { original: String, updated: String },
    #[error("--block {given}: {reason}")]
    Position { given: String, reason: String },
    #[error("the newest block names no last config block")]
    NoLastConfig,
    #[error("cannot print JSON: {0}")]
    Print(serde_json::Error),
    #[error(transparent)]
    Client(#[from] ClientError),
    /// `call` is the AtomicBroadcast call: "broadcast" or "deliver".
    #[error("{call} request failed")]
    Request {
        call: &'static str,
        source: tonic::Status,
    },
    #[error("{call} stream failed")]
    Stream {
        call: &'static str,
        source: tonic::Status,
    },
    #[error("the orderer closed the stream without {0}")]
    Closed(&'static str),
    #[error("empty deliver response")]
    EmptyResponse,
    /// The orderer's answer was a status other than SUCCESS; `answer` says
    /// how it came ("deliver answered", "the orderer answered", ...).
    #[error("{answer} {status}")]
    Refused {
        answer: &'static str,
        status: String,
    },
    #[error("{refused} of {sent} envelopes were not accepted")]
    NotAccepted { refused: u64, sent: u64 },
    #[cfg(feature = "tools")]
    #[error("the admin listener answered {0}")]
    AdminStatus(u16),
    #[error("--blockID: {0}")]
    BlockId(String),
    #[error("{} is not a config update envelope: {reason}", .path.display())]
    NotConfigUpdate { path: PathBuf, reason: String },
    /// osnadmin's check that the file is for the channel named.
    #[error("specified --channelID {given} does not match channel ID {found} in {what}")]
    ChannelMismatch {
        given: String,
        found: String,
        what: &'static str,
    },
    #[cfg(feature = "tools")]
    #[error(transparent)]
    Admin(#[from] super::participation::AdminClientError),
    #[error(transparent)]
    ProtoJson(#[from] ProtoJsonError),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error(transparent)]
    Compute(#[from] ComputeError),
    #[error("cannot sign the channel creation transaction: {0}")]
    Sign(String),
}

pub fn read(path: &Path) -> Result<Vec<u8>, CommandError> {
    std::fs::read(path).map_err(|source| CommandError::Read {
        path: path.to_path_buf(),
        source,
    })
}

pub fn write(path: &Path, bytes: &[u8]) -> Result<(), CommandError> {
    std::fs::write(path, bytes).map_err(|source| CommandError::Write {
        path: path.to_path_buf(),
        source,
    })
}

fn read_json(path: &Path) -> Result<serde_json::Value, CommandError> {
    serde_json::from_slice(&read(path)?).map_err(|source| CommandError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn print_json(value: &serde_json::Value) -> Result<(), CommandError> {
    let text = serde_json::to_string_pretty(value).map_err(CommandError::Print)?;
    println!("{text}");
    Ok(())
}

/// How a client command reaches an orderer's Deliver: its address, TLS, and
/// the identity that signs its requests (a channel with organizations
/// serves only its Readers).
#[derive(Default)]
pub struct DeliverClient {
    pub address: String,
    pub tls: Option<crate::tools::client::TlsOptions>,
    pub identity: Option<crate::tools::client::identity::SigningIdentity>,
}

impl DeliverClient {
    /// A seek for `start..=stop`, signed by the identity, bound to the TLS
    /// client certificate if there is one.
    fn seek(
        &self,
        channel: &str,
        start: crate::tools::client::envelope::BlockPosition,
        stop: crate::tools::client::envelope::BlockPosition,
        behavior: crate::fabric::protos::orderer::seek_info::SeekBehavior,
    ) -> crate::fabric::protos::common::Envelope {
        use crate::tools::client::envelope::{signed_seek, tls_cert_hash, Requester};
        let hash = self
            .tls
            .as_ref()
            .and_then(|tls| tls.client_identity.as_ref())
            .and_then(|(certificate, _)| tls_cert_hash(certificate));
        let requester = Requester {
            identity: self.identity.as_ref(),
            tls_cert_hash: hash.as_deref(),
        };
        signed_seek(
            channel,
            start,
            stop,
            behavior,
            crate::fabric::protos::orderer::seek_info::SeekContentType::Block,
            &requester,
        )
    }
}

/// Sends one Deliver request; the answers stream back.
async fn open_deliver(
    client: &DeliverClient,
    request: crate::fabric::protos::common::Envelope,
) -> Result<tonic::Streaming<crate::fabric::protos::orderer::DeliverResponse>, CommandError> {
    let mut client =
        crate::tools::client::connect_with(&client.address, client.tls.as_ref()).await?;
    let responses = client
        .deliver(tokio_stream::once(request))
        .await
        .map_err(|source| CommandError::Request {
            call: "deliver",
            source,
        })?;
    Ok(responses.into_inner())
}

/// A status code by its Fabric name, or as a number if it has none.
fn status_name(code: i32) -> String {
    Status::try_from(code).map_or_else(|_| code.to_string(), |s| s.as_str_name().to_string())
}
