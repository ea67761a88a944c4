//! The signature filter (Fabric's `SigFilter`): the envelope's creator and
//! signature must satisfy the channel's `/Channel/Writers`, or
//! `/Channel/Orderer/Writers` while the channel is in maintenance mode (so
//! that only the ordering organizations can change anything then).
//!
//! A refusal is FORBIDDEN with the policy's reason and ": permission
//! denied", as Fabric's Broadcast answers; an envelope whose signature header
//! cannot be read is BAD_REQUEST.

use super::{Rejection, Rule};
use crate::fabric::channelconfig::{ChannelConfig, ConsensusState};
use crate::fabric::protos::common::{Envelope, Status};
use crate::security::policies::{
    envelope_as_signed_data, CHANNEL_ORDERER_WRITERS, CHANNEL_WRITERS,
};

pub struct SigFilter;

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
            ConsensusState::Normal => CHANNEL_WRITERS,
            ConsensusState::Maintenance => CHANNEL_ORDERER_WRITERS,
        };
        if !config.policy_manager.exists(policy) {
            return Err(Rejection::bad_request(format!(
                "could not find policy {policy}"
            )));
        }
        config
            .policy_manager
            .evaluate_signed_data(policy, &signed)
            .map_err(|e| {
                tracing::warn!(channel = %config.channel_id, %policy, error = %e, "signature filter evaluation failed");
                Rejection {
                    status: Status::Forbidden,
                    info: format!("{e}: permission denied"),
                }
            })
    }
}
