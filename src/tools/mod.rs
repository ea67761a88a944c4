//! Tools that talk to a node (client commands, load generation) and that
//! make what a network needs (keys and certificates).

#[cfg(feature = "tools")]
pub mod bench;
pub mod client;
#[cfg(feature = "tools")]
pub mod crypto;
