//! Fabric's formats and config: what is the same on every Fabric orderer,
//! with no actors and no I/O beyond reading files it is given.

pub mod blockutil;
pub mod channelconfig;
pub mod configtx;
pub mod configtxgen;
pub mod envelopeutil;
pub mod localconfig;
pub mod protojson;
pub mod protos;
