//! Ordo: a Hyperledger Fabric ordering service node on an actor runtime.
//!
//! Three layers, each a folder; a layer uses only those below it:
//!
//! - [`tools`]: the client commands and the load tools (`ordo broadcast`,
//!   `ordo bench ...`), built with the `tools` feature.
//! - [`runtime`]: the node itself — gRPC and HTTP services, the registrar,
//!   each channel's supervised actor tree, the consenters, the block cutter
//!   and the ledger. See `actors.md` for the actors, their mailboxes and
//!   messages.
//! - [`fabric`]: Fabric's formats and config — the protos, blocks and
//!   envelopes, channel config, config updates, genesis blocks, JSON, and
//!   the node's orderer.yaml.
//!
//! Beside them, [`security`]: the channel's MSPs and policies (built with
//! each channel config) and the node's signing identity.

pub mod fabric;
/// Fuzz targets for the decoders of network input (feature `fuzzing`).
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod runtime;
pub mod security;
pub mod tools;
