//! The second look at a submission the config moved past: Fabric's
//! re-validation of messages validated under an older config sequence, and
//! of a config update another config overtook. Shared by the consenters;
//! both run on the blocking pool (signature checks are CPU work).

use prost::Message as _;

use super::SubmitError;
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::{self, PolicyEvaluator};
use crate::fabric::protos::common::Envelope;
use crate::runtime::blockcutter::OrderedMessage;
use crate::runtime::msgprocessor::{systemchannel, RuleSet};
use crate::security::signer::SigningIdentity;

/// The second filter pass: the messages still valid under `config`, how many
/// were dropped, and their bytes.
pub fn revalidate(
    channel: &str,
    filters: &RuleSet,
    config: &ChannelConfig,
    messages: Vec<OrderedMessage>,
) -> (Vec<OrderedMessage>, usize, usize) {
    let mut kept = Vec::with_capacity(messages.len());
    let (mut dropped, mut dropped_bytes) = (0, 0);
    for message in messages {
        // Fabric's second pass is ProcessNormalMsg again: maintenance mode first.
        let verdict = crate::runtime::msgprocessor::check_normal_allowed(config)
            .map_err(|r| r.info)
            .and_then(|()| Envelope::decode(message.envelope.clone()).map_err(|e| e.to_string()))
            .and_then(|env| {
                filters
                    .apply(&env, message.envelope.len(), config)
                    .map_err(|r| r.info)
            });
        match verdict {
            Ok(()) => kept.push(message),
            Err(reason) => {
                tracing::warn!(%channel, %reason, "message no longer valid under the new config; dropped");
                dropped += 1;
                dropped_bytes += message.envelope.len();
            }
        }
    }
    (kept, dropped, dropped_bytes)
}

/// A config update checked again against `current`: the CONFIG envelope
/// it makes now (signed by this node) and the config it makes, or why it no
/// longer holds (`Invalid`: BAD_REQUEST).
pub fn recheck_config(
    channel: &str,
    current: &ChannelConfig,
    policies: &dyn PolicyEvaluator,
    signer: &SigningIdentity,
    filters: &RuleSet,
    message: &OrderedMessage,
) -> Result<(OrderedMessage, ChannelConfig), SubmitError> {
    if systemchannel::is_orderer_transaction(&message.envelope) {
        return recheck_creation(channel, current, policies, signer, filters, message);
    }
    let proposed = configtx::last_update(&message.envelope)
        .and_then(|update| configtx::propose_config_update(current, &update, policies))
        .map_err(|e| {
            tracing::warn!(%channel, reason = %e, "config update no longer valid under the current config");
            SubmitError::Invalid(format!("config update no longer valid: {e}"))
        })?;
    let envelope = signer
        .sign_envelope(&proposed.envelope)
        .map_err(|e| SubmitError::Unavailable(format!("cannot sign the config envelope: {e}")))?;
    filters
        .apply(&envelope, envelope.encoded_len(), current)
        .map_err(|r| {
            SubmitError::Invalid(format!(
                "config update no longer valid: config update for existing channel did not pass final checks: {}",
                r.info
            ))
        })?;
    let message = OrderedMessage {
        size: envelope.payload.len() + envelope.signature.len(),
        envelope: envelope.encode_to_vec().into(),
    };
    Ok((message, proposed.config))
}

/// A channel creation (an ORDERER_TRANSACTION on the system channel) checked
/// again against the system channel's `current` config: the creation update
/// it carries must still hold, as Fabric's system channel processor checks
/// it again. The config it "makes" is `current`: ordering it does not move
/// the system channel's config. (The limit on the number of channels is
/// checked when Broadcast takes the request, not here.)
fn recheck_creation(
    channel: &str,
    current: &ChannelConfig,
    policies: &dyn PolicyEvaluator,
    signer: &SigningIdentity,
    filters: &RuleSet,
    message: &OrderedMessage,
) -> Result<(OrderedMessage, ChannelConfig), SubmitError> {
    let refused = |reason: String| {
        tracing::warn!(%channel, %reason, "channel creation no longer valid under the current config");
        SubmitError::Invalid(format!("channel creation no longer valid: {reason}"))
    };
    let update = systemchannel::creation_update(&message.envelope).map_err(refused)?;
    let creation =
        systemchannel::process_channel_creation(current, policies, signer, filters, &update)
            .map_err(|r| refused(r.info))?;
    let envelope = creation.envelope;
    let message = OrderedMessage {
        size: envelope.payload.len() + envelope.signature.len(),
        envelope: envelope.encode_to_vec().into(),
    };
    Ok((message, current.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::keys;
    use crate::fabric::configtx::creation::testing::{creation, system};
    use crate::fabric::configtx::ChannelPolicies;

    /// A channel creation ordered after the system channel's config moved
    /// is checked again against it: still valid, it is wrapped anew and
    /// leaves the config as it is; with its consortium gone, it is refused.
    #[test]
    fn a_channel_creation_is_checked_again_against_the_current_system_config() {
        let system = system();
        let dir = tempfile::tempdir().expect("tempdir");
        system.orderer.write_orderer_msp(dir.path());
        let signer =
            SigningIdentity::from_msp_dir(dir.path(), "OrdererMSP").expect("orderer identity");
        let filters = RuleSet::standard();
        let update = creation(
            "appchannel",
            "SampleConsortium",
            &["Org1MSP"],
            1,
            &system.org1.admin,
        );
        let created = systemchannel::process_channel_creation(
            &system.config,
            &ChannelPolicies,
            &signer,
            &filters,
            &update,
        )
        .expect("created");
        let message = OrderedMessage {
            size: created.envelope.payload.len() + created.envelope.signature.len(),
            envelope: created.envelope.encode_to_vec().into(),
        };

        // The system channel moved on (a later sequence, same consortiums).
        let mut moved = system.config.clone();
        moved.sequence += 1;
        let (again, config) = recheck_config(
            "syschannel",
            &moved,
            &ChannelPolicies,
            &signer,
            &filters,
            &message,
        )
        .expect("still valid");
        assert_eq!(config.sequence, moved.sequence, "the config does not move");
        assert!(systemchannel::is_orderer_transaction(&again.envelope));
        assert_eq!(
            systemchannel::creation_update(&again.envelope).expect("update"),
            update
        );

        // The consortium was removed meanwhile.
        let mut config = system.config.config.clone();
        if let Some(root) = config.channel_group.as_mut() {
            if let Some(consortiums) = root.groups.get_mut(keys::CONSORTIUMS_GROUP) {
                consortiums.groups.clear();
            }
        }
        let without = ChannelConfig::from_config("syschannel".into(), config).expect("config");
        let refused = recheck_config(
            "syschannel",
            &without,
            &ChannelPolicies,
            &signer,
            &filters,
            &message,
        )
        .expect_err("no consortium");
        assert_eq!(
            refused,
            SubmitError::Invalid(
                "channel creation no longer valid: Unknown consortium name: SampleConsortium"
                    .into()
            )
        );
    }
}
