//! Ordo: a Hyperledger Fabric ordering service node on an actor runtime.
//!
//! Layers, outside in: `server` (gRPC), `registrar` (channels by ID), `channel`
//! (a supervised actor tree per channel), `consensus` (chains), `blockcutter`,
//! `ledger`. See `actors.md` for the actors, their mailboxes and messages.

#[cfg(feature = "tools")]
pub mod bench;
pub mod blockcutter;
pub mod blockutil;
pub mod channel;
pub mod channelconfig;
pub mod client;
pub mod clock;
pub mod configtx;
pub mod configtxgen;
pub mod consensus;
pub mod envelopeutil;
pub mod ledger;
pub mod localconfig;
pub mod logging;
pub mod metrics;
pub mod msgprocessor;
pub mod node;
pub mod protojson;
pub mod protos;
pub mod registrar;
pub mod server;
