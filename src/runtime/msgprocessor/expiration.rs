//! The expiration rule (Fabric's `expirationRejectRule`): an envelope whose
//! creator's certificate has expired is refused with BAD_REQUEST "broadcast
//! client identity expired". Active when the orderer capabilities ask for
//! it (V1_1 and later, as every current channel has), and unless
//! `General.Authentication.NoExpirationChecks`. Creators whose expiry cannot
//! be read pass: deciding on them is the signature filter's job.

use std::time::SystemTime;

use super::{Rejection, Rule};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::protos::common::Envelope;
use crate::security::msp::expires_at;
use crate::security::policies::envelope_as_signed_data;

/// Orderer capabilities under which Fabric checks expiration.
const EXPIRATION_CAPABILITIES: [&str; 3] = ["V1_1", "V1_4_2", "V2_0"];

pub struct ExpirationRejectRule {
    now: fn() -> SystemTime,
}

impl Default for ExpirationRejectRule {
    fn default() -> Self {
        ExpirationRejectRule {
            now: SystemTime::now,
        }
    }
}

impl ExpirationRejectRule {
    /// A rule that reads the time from `now` (for tests).
    pub fn with_clock(now: fn() -> SystemTime) -> Self {
        ExpirationRejectRule { now }
    }
}

impl Rule for ExpirationRejectRule {
    fn apply(
        &self,
        envelope: &Envelope,
        _: usize,
        config: &ChannelConfig,
    ) -> Result<(), Rejection> {
        let checked = config
            .orderer
            .capabilities
            .iter()
            .any(|c| EXPIRATION_CAPABILITIES.contains(&c.as_str()));
        if !checked {
            return Ok(());
        }
        let signed = envelope_as_signed_data(envelope).map_err(|e| {
            Rejection::bad_request(format!("could not convert message to signedData: {e}"))
        })?;
        match signed.first().and_then(|s| expires_at(&s.identity)) {
            Some(expiry) if (self.now)() >= expiry => {
                Err(Rejection::bad_request("broadcast client identity expired"))
            }
            _ => Ok(()),
        }
    }
}
