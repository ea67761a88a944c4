//! Who may do what: the channel's MSPs (identities validated against the
//! organizations' CAs), the policies evaluated over signed data, and the
//! node's own signing identity.
//!
//! A channel's [`msp::MspManager`] and [`policies::PolicyManager`] are built
//! with its [`crate::fabric::channelconfig::ChannelConfig`], so a new config
//! block brings new MSPs and an empty identity cache.

pub mod msp;
pub mod policies;
pub mod signer;
#[cfg(any(test, feature = "tools"))]
pub mod testing;
