//! Load and stress tools: `ordo bench load` drives any Fabric-compatible
//! orderer; `ordo bench backpressure` sweeps a node's in-flight bound and
//! client concurrency and charts what happens.

pub mod backpressure;
pub mod load;
