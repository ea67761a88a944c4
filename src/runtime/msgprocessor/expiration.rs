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
        // A known creator's expiry comes from the identity cache; any other
        // is read from its certificate, as Fabric reads it.
        let expiry =
            signed
                .first()
                .and_then(|s| match config.msp_manager.cached_identity(&s.identity) {
                    Some(identity) => Some(identity.not_after()),
                    None => expires_at(&s.identity),
                });
        match expiry {
            Some(expiry) if (self.now)() >= expiry => {
                Err(Rejection::bad_request("broadcast client identity expired"))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::protos::common::Status;
    use crate::runtime::msgprocessor::RuleSet;
    use crate::security::testing::{TestOrg, Validity, CLIENT_OU};

    fn config(org: &TestOrg) -> ChannelConfig {
        let mut profile = GenesisProfile::embedded("c1", vec![]);
        profile.application_organizations = Some(vec![org.profile()]);
        ChannelConfig::from_config_block(&profile.genesis_block()).expect("config")
    }

    #[test]
    fn expired_creators_are_bad_requests_unless_checks_are_off() {
        let org = TestOrg::new("Org1MSP");
        let config = config(&org);
        let old = org
            .ca
            .issue_with("Org1MSP", "old", &[CLIENT_OU], Validity::Expired);
        let expired = old.transaction("c1", Bytes::from_static(b"tx"));
        let current = org.client.transaction("c1", Bytes::from_static(b"tx"));
        let rule = ExpirationRejectRule::default();
        let refused = rule.apply(&expired, 0, &config).expect_err("expired");
        assert_eq!(refused.status, Status::BadRequest);
        assert_eq!(refused.info, "broadcast client identity expired");
        assert_eq!(rule.apply(&current, 0, &config), Ok(()));
        // Once the MSP has validated (and cached) it, it is still expired.
        config
            .msp_manager
            .deserialize_identity(&old.creator())
            .expect("valid as of its NotBefore");
        assert!(config.msp_manager.cached_identity(&old.creator()).is_some());
        assert!(rule.apply(&expired, 0, &config).is_err());

        // As of 2001 the old certificate is current.
        fn in_2001() -> SystemTime {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000)
        }
        let then = ExpirationRejectRule::with_clock(in_2001);
        assert_eq!(then.apply(&expired, 0, &config), Ok(()));

        // The whole rule set: expiration comes before the signature filter;
        // with NoExpirationChecks the expired member passes (the MSP
        // validates certificates as of their NotBefore).
        let len = expired.payload.len();
        assert_eq!(
            RuleSet::for_node(true)
                .apply(&expired, len, &config)
                .map_err(|r| r.info),
            Err("broadcast client identity expired".to_string())
        );
        assert_eq!(
            RuleSet::for_node(false).apply(&expired, len, &config),
            Ok(())
        );
    }

    #[test]
    fn only_orderer_capabilities_from_v1_1_check_expiration() {
        let org = TestOrg::new("Org1MSP");
        let mut config = config(&org);
        let expired = org
            .ca
            .issue_with("Org1MSP", "old", &[CLIENT_OU], Validity::Expired)
            .transaction("c1", Bytes::from_static(b"tx"));
        config.orderer.capabilities.clear();
        assert_eq!(
            ExpirationRejectRule::default().apply(&expired, 0, &config),
            Ok(())
        );
        // A creator whose expiry cannot be read is not decided on here.
        let config = self::config(&org);
        let unreadable =
            crate::fabric::envelopeutil::testing::transaction("c1", Bytes::from_static(b"tx"));
        assert_eq!(
            ExpirationRejectRule::default().apply(&unreadable, 0, &config),
            Ok(())
        );
    }
}
