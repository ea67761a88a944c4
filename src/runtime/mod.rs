//! The node runtime: services, registrar, channel trees, consenters, block
//! cutting and the ledger.

pub mod blockcutter;
pub mod channel;
pub mod clock;
pub mod cluster;
pub mod consensus;
pub mod faults;
pub mod ledger;
pub mod logging;
pub mod metrics;
pub mod msgprocessor;
pub mod node;
pub mod registrar;
pub mod server;
