//! The signature filter (Fabric's `SigFilter`): the envelope's creator and
//! signature must satisfy the channel's `/Channel/Writers`, or
//! `/Channel/Orderer/Writers` while the channel is in maintenance mode (so
//! that only the ordering organizations can change anything then). Deliver
//! runs the same filter over `/Channel/Readers` (`/Channel/Orderer/Readers`).
//!
//! A refusal is FORBIDDEN with the policy's reason and ": permission
//! denied", as Fabric's Broadcast answers; an envelope whose signature header
//! cannot be read is BAD_REQUEST.

use super::{Rejection, Rule};
use crate::fabric::channelconfig::{ChannelConfig, ConsensusState};
use crate::fabric::protos::common::{Envelope, Status};
use crate::security::policies::{
    envelope_as_signed_data, PolicyError, CHANNEL_ORDERER_READERS, CHANNEL_ORDERER_WRITERS,
    CHANNEL_READERS, CHANNEL_WRITERS,
};

/// The policy an envelope must satisfy, in normal and in maintenance mode.
pub struct SigFilter {
    normal: &'static str,
    maintenance: &'static str,
}

impl SigFilter {
    /// Broadcast's: who may write.
    pub const WRITERS: SigFilter = SigFilter {
        normal: CHANNEL_WRITERS,
        maintenance: CHANNEL_ORDERER_WRITERS,
    };
    /// Deliver's: who may read.
    pub const READERS: SigFilter = SigFilter {
        normal: CHANNEL_READERS,
        maintenance: CHANNEL_ORDERER_READERS,
    };
}

impl Rule for SigFilter {
    fn apply(
        &self,
        envelope: &Envelope,
        _: usize,
        config: &ChannelConfig,
    ) -> Result<(), Rejection> {
        let signed = envelope_as_signed_data(envelope).map_err(|e| {
            Rejection::bad_request(format!("could not convert message to signedData: {e}"))
        })?;
        let policy = match config.orderer.consensus_state {
            ConsensusState::Normal => self.normal,
            ConsensusState::Maintenance => self.maintenance,
        };
        config
            .policy_manager
            .evaluate_signed_data(policy, &signed)
            .map_err(|e| {
                if let PolicyError::NoSuchPolicy(_) = e {
                    return Rejection::bad_request(format!("could not find policy {policy}"));
                }
                // Broadcast logs the refusal itself.
                tracing::debug!(channel = %config.channel_id, %policy, error = %e, "signature filter evaluation failed");
                Rejection {
                    status: Status::Forbidden,
                    info: format!("{e}: permission denied"),
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use prost::Message;

    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::channelconfig::keys;
    use crate::fabric::protos::orderer::ConsensusType;
    use crate::security::testing::TestOrg;

    fn channel(orderer: &TestOrg, application: &TestOrg, maintenance: bool) -> ChannelConfig {
        let mut profile = GenesisProfile::embedded("c1", vec![]);
        profile.orderer_organizations = vec![orderer.profile()];
        profile.application_organizations = Some(vec![application.profile()]);
        let mut config = profile.config();
        if maintenance {
            let value = config
                .channel_group
                .as_mut()
                .and_then(|r| r.groups.get_mut(keys::ORDERER_GROUP))
                .and_then(|o| o.values.get_mut(keys::CONSENSUS_TYPE))
                .expect("consensus type");
            let mut consensus = ConsensusType::decode(value.value.clone()).expect("decode");
            consensus.state = 1;
            value.value = consensus.encode_to_vec().into();
        }
        ChannelConfig::from_config("c1".into(), config).expect("config")
    }

    #[test]
    fn members_write_and_others_are_forbidden() {
        let orderer = TestOrg::new("OrdererMSP");
        let org1 = TestOrg::new("Org1MSP");
        let config = channel(&orderer, &org1, false);
        let tx = |who: &TestOrg| who.client.transaction("c1", Bytes::from_static(b"tx"));
        assert_eq!(SigFilter::WRITERS.apply(&tx(&org1), 0, &config), Ok(()));

        let stranger = TestOrg::new("Org1MSP");
        let refused = SigFilter::WRITERS
            .apply(&tx(&stranger), 0, &config)
            .expect_err("stranger");
        assert_eq!(refused.status, Status::Forbidden);
        assert_eq!(
            refused.info,
            "implicit policy evaluation failed - 0 sub-policies were satisfied, but this policy requires 1 of the 'Writers' sub-policies to be satisfied: permission denied"
        );

        let mut tampered = tx(&org1);
        let mut payload = tampered.payload.to_vec();
        let last = payload.len() - 1;
        payload[last] ^= 1;
        tampered.payload = payload.into();
        assert_eq!(
            SigFilter::WRITERS
                .apply(&tampered, 0, &config)
                .map_err(|r| r.status),
            Err(Status::Forbidden)
        );
        let mut unsigned = tx(&org1);
        unsigned.signature = Bytes::new();
        assert!(SigFilter::WRITERS.apply(&unsigned, 0, &config).is_err());

        let headless = Envelope {
            payload: crate::fabric::protos::common::Payload::default()
                .encode_to_vec()
                .into(),
            signature: Bytes::new(),
        };
        let err = SigFilter::WRITERS
            .apply(&headless, 0, &config)
            .expect_err("no header");
        assert_eq!(err.status, Status::BadRequest);
        assert!(err
            .info
            .starts_with("could not convert message to signedData"));
    }

    #[test]
    fn maintenance_mode_needs_the_orderer_writers() {
        let orderer = TestOrg::new("OrdererMSP");
        let org1 = TestOrg::new("Org1MSP");
        let config = channel(&orderer, &org1, true);
        let app = org1.client.transaction("c1", Bytes::from_static(b"tx"));
        assert_eq!(
            SigFilter::WRITERS
                .apply(&app, 0, &config)
                .map_err(|r| r.status),
            Err(Status::Forbidden)
        );
        let ordering = orderer.admin.transaction("c1", Bytes::from_static(b"tx"));
        assert_eq!(SigFilter::WRITERS.apply(&ordering, 0, &config), Ok(()));
    }

    #[test]
    fn a_channel_without_organizations_is_open() {
        let block = GenesisProfile::embedded("c1", vec![]).genesis_block();
        let config = ChannelConfig::from_config_block(&block).expect("config");
        let unsigned =
            crate::fabric::envelopeutil::testing::transaction("c1", Bytes::from_static(b"tx"));
        assert_eq!(SigFilter::WRITERS.apply(&unsigned, 0, &config), Ok(()));
    }
}
