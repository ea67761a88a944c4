//! Load and stress tools: `ordo bench load` drives any Fabric-compatible
//! orderer; `ordo bench backpressure` sweeps a node's in-flight bound (or an
//! etcdraft channel's MaxInflightBlocks on N nodes) and client concurrency
//! and charts what happens. A load run signs, if asked, with the client's
//! identity (`crate::tools::client::identity`).

pub mod backpressure;
pub mod commands;
pub mod load;
