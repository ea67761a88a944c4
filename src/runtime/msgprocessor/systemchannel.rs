//! The system channel's message processing (Fabric 1.x/2.x): a CONFIG_UPDATE
//! for a channel that does not exist creates it.
//!
//! The creation is checked against the system channel's current config
//! ([`crate::fabric::configtx::creation`]); the new channel's CONFIG envelope,
//! signed by this node, is wrapped in an ORDERER_TRANSACTION envelope for the
//! system channel, also signed by this node, which the system channel's
//! filters judge before it is ordered. When the system channel writes it, the
//! registrar creates the channel from it.

use bytes::Bytes;
use prost::Message;

use super::{Rejection, RuleSet};
use crate::fabric::channelconfig::ChannelConfig;
use crate::fabric::configtx::creation::propose_channel_creation;
use crate::fabric::configtx::PolicyEvaluator;
use crate::fabric::protos::common::{
    ChannelHeader, ConfigEnvelope, Envelope, Header, HeaderType, Payload, SignatureHeader,
};
use crate::security::signer::SigningIdentity;

/// A channel creation ready to order on the system channel.
#[derive(Debug, Clone)]
pub struct Creation {
    /// The ORDERER_TRANSACTION envelope for the system channel.
    pub envelope: Envelope,
    /// The channel it creates.
    pub channel_id: String,
}

/// Turns a channel-creation CONFIG_UPDATE into the ORDERER_TRANSACTION to
/// order on the system channel whose config is `system` (Fabric's
/// `SystemChannel.ProcessConfigUpdateMsg` for another channel ID).
pub fn process_channel_creation(
    system: &ChannelConfig,
    policies: &dyn PolicyEvaluator,
    signer: &SigningIdentity,
    filters: &RuleSet,
    update: &Envelope,
) -> Result<Creation, Rejection> {
    // Fabric's system channel filter: no creation while the ordering
    // service migrates (the template would copy a half-migrated Orderer
    // group).
    if system.orderer.consensus_state == crate::fabric::channelconfig::ConsensusState::Maintenance {
        return Err(Rejection::bad_request(
            "channel creation is not permitted: maintenance mode",
        ));
    }
    let proposed = propose_channel_creation(system, update, policies)
        .map_err(|e| Rejection::bad_request(e.to_string()))?;
    let channel_id = proposed.config.channel_id.clone();
    let config = signer
        .sign_envelope(&proposed.envelope)
        .map_err(|e| Rejection::bad_request(format!("cannot sign the config envelope: {e}")))?;
    let envelope = orderer_transaction(&system.channel_id, &config, signer)
        .map_err(|e| Rejection::bad_request(format!("cannot sign the orderer transaction: {e}")))?;
    // As Fabric: the wrapped transaction passes the system channel's filters
    // (its size above all), so a node that may not write the system channel
    // creates nothing.
    filters.apply(&envelope, envelope.encoded_len(), system)?;
    Ok(Creation {
        envelope,
        channel_id,
    })
}

/// Fabric's system channel filter on the number of channels: with
/// `ChannelRestrictions.MaxCount` set, a creation is refused once the node
/// has more channels than that (the system channel is one of `channels`).
pub fn check_channel_count(system: &ChannelConfig, channels: usize) -> Result<(), Rejection> {
    let max = system.orderer.max_channels;
    if max > 0 && channels as u64 > max {
        return Err(Rejection::bad_request(format!(
            "channel creation would exceed maximimum number of channels: {max}"
        )));
    }
    Ok(())
}

/// An ORDERER_TRANSACTION envelope for `system_channel` carrying `config`
/// (Fabric's `CreateSignedEnvelope` of type ORDERER_TRANSACTION).
fn orderer_transaction(
    system_channel: &str,
    config: &Envelope,
    signer: &SigningIdentity,
) -> Result<Envelope, crate::security::signer::SignerError> {
    let channel_header = ChannelHeader {
        r#type: HeaderType::OrdererTransaction as i32,
        version: 0,
        timestamp: Some(crate::fabric::envelopeutil::now()),
        channel_id: system_channel.to_string(),
        epoch: 0,
        ..ChannelHeader::default()
    };
    let payload = Payload {
        header: Some(Header {
            channel_header: channel_header.encode_to_vec().into(),
            signature_header: SignatureHeader::default().encode_to_vec().into(),
        }),
        data: config.encode_to_vec().into(),
    };
    signer.sign_envelope(&Envelope {
        payload: payload.encode_to_vec().into(),
        signature: Bytes::new(),
    })
}

/// The header type of a marshalled envelope, if it reads as one.
pub fn header_type(envelope: &[u8]) -> Option<i32> {
    let envelope = Envelope::decode(envelope).ok()?;
    let header = Payload::decode(envelope.payload).ok()?.header?;
    Some(ChannelHeader::decode(header.channel_header).ok()?.r#type)
}

/// Whether a marshalled envelope is an ORDERER_TRANSACTION.
pub fn is_orderer_transaction(envelope: &[u8]) -> bool {
    header_type(envelope) == Some(HeaderType::OrdererTransaction as i32)
}

/// The new channel's CONFIG envelope an ORDERER_TRANSACTION carries.
pub fn created_config(orderer_transaction: &[u8]) -> Result<Envelope, String> {
    let envelope =
        Envelope::decode(orderer_transaction).map_err(|e| format!("not an envelope: {e}"))?;
    let payload = Payload::decode(envelope.payload).map_err(|e| format!("not a payload: {e}"))?;
    let header = payload.header.ok_or("the payload has no header")?;
    let channel_header = ChannelHeader::decode(header.channel_header)
        .map_err(|e| format!("bad channel header: {e}"))?;
    if channel_header.r#type != HeaderType::OrdererTransaction as i32 {
        return Err(format!(
            "header type {} is not ORDERER_TRANSACTION",
            channel_header.r#type
        ));
    }
    Envelope::decode(payload.data).map_err(|e| format!("payload data is not an envelope: {e}"))
}

/// The CONFIG_UPDATE a channel creation was made from: the last update of
/// the CONFIG envelope an ORDERER_TRANSACTION carries.
pub fn creation_update(orderer_transaction: &[u8]) -> Result<Envelope, String> {
    let config = created_config(orderer_transaction)?;
    let payload = Payload::decode(config.payload).map_err(|e| format!("not a payload: {e}"))?;
    ConfigEnvelope::decode(payload.data)
        .map_err(|e| format!("not a config envelope: {e}"))?
        .last_update
        .ok_or_else(|| "updated config does not include a config update".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::ConsensusState;
    use crate::fabric::configtx::creation::testing::{creation, system};
    use crate::fabric::configtx::ChannelPolicies;
    use crate::security::signer::SigningIdentity;

    /// As Fabric's system channel filter: no channel is created while the
    /// ordering service is in maintenance mode (a consensus migration).
    #[test]
    fn no_creation_in_maintenance_mode() {
        let system = system();
        let dir = tempfile::tempdir().expect("tempdir");
        system.orderer.write_orderer_msp(dir.path());
        let signer =
            SigningIdentity::from_msp_dir(dir.path(), "OrdererMSP").expect("orderer identity");
        let update = creation(
            "appchannel",
            "SampleConsortium",
            &["Org1MSP"],
            1,
            &system.org1.admin,
        );
        let filters = RuleSet::standard();
        let mut config = system.config.clone();
        assert!(
            process_channel_creation(&config, &ChannelPolicies, &signer, &filters, &update).is_ok(),
            "created while not in maintenance"
        );
        config.orderer.consensus_state = ConsensusState::Maintenance;
        let Err(refused) =
            process_channel_creation(&config, &ChannelPolicies, &signer, &filters, &update)
        else {
            panic!("a channel was created in maintenance mode");
        };
        assert_eq!(
            refused.info,
            "channel creation is not permitted: maintenance mode"
        );
    }
}
