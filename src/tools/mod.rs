//! Tools that talk to a node: client commands and load generation.

#[cfg(feature = "tools")]
pub mod bench;
pub mod client;
