//! Broadcast's message processing: find the channel an envelope is for, classify
//! it, and run the channel's filter rules (Fabric's `msgprocessor`).
//!
//! Rules run in Fabric's order and the first failure answers the client:
//! empty payload, size, the creator's expiration, then the signature filter
//! (`/Channel/Writers`). The chain re-runs the same rules when the config
//! changed between validation and ordering.

mod expiration;
mod sigfilter;
pub mod systemchannel;

use prost::Message;

pub use expiration::ExpirationRejectRule;
pub use sigfilter::SigFilter;

use crate::fabric::channelconfig::{ChannelConfig, ConsensusState};
use crate::fabric::protos::common::{ChannelHeader, Envelope, HeaderType, Payload, Status};

/// A refusal: the status and info string Broadcast answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: Status,
    pub info: String,
}

impl Rejection {
    pub fn bad_request(info: impl Into<String>) -> Rejection {
        Rejection {
            status: Status::BadRequest,
            info: info.into(),
        }
    }

    pub fn service_unavailable(info: impl Into<String>) -> Rejection {
        Rejection {
            status: Status::ServiceUnavailable,
            info: info.into(),
        }
    }

    /// The same status with `context` before the info, as Fabric wraps an
    /// error with a message (the cause, and so the status, stays).
    pub fn within(self, context: &str) -> Rejection {
        Rejection {
            status: self.status,
            info: format!("{context}: {}", self.info),
        }
    }
}

/// Fabric's answer to a channel ID no channel has (an empty one included).
pub const CHANNEL_DOES_NOT_EXIST: &str = "channel does not exist";

/// How an envelope is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Ordered as-is.
    Normal,
    /// A CONFIG_UPDATE, to be turned into a CONFIG envelope.
    ConfigUpdate,
    /// A CONFIG envelope: only the orderer makes these; refused on Broadcast.
    Config,
    /// An ORDERER_TRANSACTION (system channel era): refused.
    OrdererTransaction,
}

impl Classification {
    /// Why Broadcast refuses this kind of envelope outright, as Fabric's
    /// registrar words it.
    pub fn refusal(self) -> Option<Rejection> {
        match self {
            Classification::Config => Some(Rejection::bad_request(
                "message is of type that cannot be processed directly",
            )),
            Classification::OrdererTransaction => Some(Rejection::bad_request(
                "message is of type that is no longer supported",
            )),
            Classification::Normal | Classification::ConfigUpdate => None,
        }
    }

    /// The refusal on a node that runs a system channel, as Fabric 2.x's
    /// registrar words it: CONFIG and ORDERER_TRANSACTION envelopes are
    /// made by orderers, never taken from clients.
    pub fn refusal_with_system_channel(self) -> Option<Rejection> {
        match self {
            Classification::Config | Classification::OrdererTransaction => Some(
                Rejection::bad_request("message is of type that cannot be processed directly"),
            ),
            Classification::Normal | Classification::ConfigUpdate => None,
        }
    }
}

/// Reads the channel header of an envelope: the first thing Broadcast needs.
/// An empty channel ID is not an error here: no channel has it, so the
/// lookup answers (as in Fabric).
pub fn channel_header(envelope: &Envelope) -> Result<ChannelHeader, Rejection> {
    let cannot = |reason: String| {
        Rejection::bad_request(format!("could not determine channel ID: {reason}"))
    };
    let payload = Payload::decode(envelope.payload.clone())
        .map_err(|e| cannot(format!("error unmarshalling Payload: {e}")))?;
    let header = payload
        .header
        .ok_or_else(|| cannot("header not set".into()))?;
    if header.channel_header.is_empty() {
        return Err(cannot("channel header not set".into()));
    }
    ChannelHeader::decode(header.channel_header)
        .map_err(|e| cannot(format!("error unmarshalling channel header: {e}")))
}

pub fn classify(header: &ChannelHeader) -> Classification {
    match HeaderType::try_from(header.r#type) {
        Ok(HeaderType::ConfigUpdate) => Classification::ConfigUpdate,
        Ok(HeaderType::Config) => Classification::Config,
        Ok(HeaderType::OrdererTransaction) => Classification::OrdererTransaction,
        _ => Classification::Normal,
    }
}

/// Fabric's check before the filters of a normal message: a channel in
/// maintenance mode (ConsensusType.state MAINTENANCE, with the orderer
/// capability that makes consensus-type migration possible) takes config
/// updates only.
pub fn check_normal_allowed(config: &ChannelConfig) -> Result<(), Rejection> {
    if config.orderer.consensus_state == ConsensusState::Maintenance
        && crate::fabric::configtx::validate::consensus_type_migration(config)
    {
        return Err(Rejection::service_unavailable(
            "normal transactions are rejected: maintenance mode",
        ));
    }
    Ok(())
}

/// One filter of the Broadcast path.
pub trait Rule: Send + Sync {
    /// `encoded_len`: the marshalled size of the envelope.
    fn apply(
        &self,
        envelope: &Envelope,
        encoded_len: usize,
        config: &ChannelConfig,
    ) -> Result<(), Rejection>;
}

/// Refuses an envelope without payload.
pub struct EmptyRejectRule;

impl Rule for EmptyRejectRule {
    fn apply(&self, envelope: &Envelope, _: usize, _: &ChannelConfig) -> Result<(), Rejection> {
        if envelope.payload.is_empty() {
            return Err(Rejection::bad_request("Message was empty"));
        }
        Ok(())
    }
}

/// Refuses an envelope larger than the channel's AbsoluteMaxBytes. The size
/// is Fabric's: payload plus signature, without the few bytes of protobuf
/// framing, so an envelope at the limit is judged alike by both.
pub struct SizeFilter;

impl Rule for SizeFilter {
    fn apply(
        &self,
        envelope: &Envelope,
        _: usize,
        config: &ChannelConfig,
    ) -> Result<(), Rejection> {
        let size = envelope.payload.len() + envelope.signature.len();
        let max = config.batch_size.absolute_max_bytes as usize;
        if size > max {
            return Err(Rejection::bad_request(format!(
                "message payload is {size} bytes and exceeds maximum allowed {max} bytes"
            )));
        }
        Ok(())
    }
}

/// The ordered rules of a channel.
pub struct RuleSet {
    rules: Vec<Box<dyn Rule>>,
}

impl RuleSet {
    /// Fabric's standard channel rules: empty payload, size, expiration, signature filter.
    pub fn standard() -> RuleSet {
        RuleSet::for_node(true)
    }

    /// The standard rules; the expiration rule only if `expiration_checks`
    /// (`General.Authentication.NoExpirationChecks` turns it off).
    pub fn for_node(expiration_checks: bool) -> RuleSet {
        let mut rules: Vec<Box<dyn Rule>> = vec![Box::new(EmptyRejectRule), Box::new(SizeFilter)];
        if expiration_checks {
            rules.push(Box::new(ExpirationRejectRule::default()));
        }
        rules.push(Box::new(SigFilter::WRITERS));
        RuleSet { rules }
    }

    /// Rules of one's choosing, in this order.
    pub fn from_rules(rules: Vec<Box<dyn Rule>>) -> RuleSet {
        RuleSet { rules }
    }

    pub fn apply(
        &self,
        envelope: &Envelope,
        encoded_len: usize,
        config: &ChannelConfig,
    ) -> Result<(), Rejection> {
        self.rules
            .iter()
            .try_for_each(|rule| rule.apply(envelope, encoded_len, config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fabric::channelconfig::genesis::GenesisProfile;
    use crate::fabric::protos::common::Header;
    use bytes::Bytes;

    fn config(absolute: u32) -> ChannelConfig {
        let mut profile = GenesisProfile::embedded("c1", vec![]);
        profile.batch_size.absolute_max_bytes = absolute;
        profile.batch_size.preferred_max_bytes = absolute;
        ChannelConfig::from_config_block(&profile.genesis_block()).expect("config")
    }

    fn envelope_for(channel: &str, kind: HeaderType) -> Envelope {
        let channel_header = ChannelHeader {
            r#type: kind as i32,
            channel_id: channel.into(),
            ..Default::default()
        };
        let payload = Payload {
            header: Some(Header {
                channel_header: channel_header.encode_to_vec().into(),
                signature_header: Bytes::new(),
            }),
            data: Bytes::from_static(b"data"),
        };
        Envelope {
            payload: payload.encode_to_vec().into(),
            signature: Bytes::new(),
        }
    }

    #[test]
    fn reads_channel_and_classifies() {
        let header =
            channel_header(&envelope_for("c1", HeaderType::EndorserTransaction)).expect("header");
        assert_eq!(header.channel_id, "c1");
        assert_eq!(classify(&header), Classification::Normal);
        let update = channel_header(&envelope_for("c1", HeaderType::ConfigUpdate)).expect("header");
        assert_eq!(classify(&update), Classification::ConfigUpdate);
    }

    #[test]
    fn malformed_envelopes_are_bad_requests() {
        let empty = channel_header(&Envelope::default()).expect_err("empty");
        assert_eq!(empty.status, Status::BadRequest);
        assert!(empty.info.contains("header not set"), "{}", empty.info);
        let garbage = Envelope {
            payload: Bytes::from_static(&[0xff, 0xff, 0xff]),
            signature: Bytes::new(),
        };
        let err = channel_header(&garbage).expect_err("garbage");
        assert!(
            err.info.contains("could not determine channel ID"),
            "{}",
            err.info
        );
        // An empty channel ID is read; the lookup then finds no channel.
        let no_channel =
            channel_header(&envelope_for("", HeaderType::EndorserTransaction)).expect("a header");
        assert_eq!(no_channel.channel_id, "");
    }

    #[test]
    fn config_and_orderer_transactions_are_refused_as_fabric_words_it() {
        let config = channel_header(&envelope_for("c1", HeaderType::Config)).expect("header");
        assert_eq!(
            classify(&config).refusal(),
            Some(Rejection::bad_request(
                "message is of type that cannot be processed directly"
            ))
        );
        let orderer =
            channel_header(&envelope_for("c1", HeaderType::OrdererTransaction)).expect("header");
        assert_eq!(
            classify(&orderer).refusal().map(|r| r.info),
            Some("message is of type that is no longer supported".to_string())
        );
        assert_eq!(
            classify(&channel_header(&envelope_for("c1", HeaderType::ConfigUpdate)).expect("h"))
                .refusal(),
            None
        );
    }

    #[test]
    fn maintenance_mode_refuses_normal_transactions_with_the_capability() {
        let mut maintenance = config(100);
        maintenance.orderer.consensus_state = ConsensusState::Maintenance;
        let err = check_normal_allowed(&maintenance).expect_err("maintenance");
        assert_eq!(err.status, Status::ServiceUnavailable);
        assert_eq!(
            err.info,
            "normal transactions are rejected: maintenance mode"
        );
        assert_eq!(check_normal_allowed(&config(100)), Ok(()));
        // Without V1_4_2 or V2_0 the state is not enforced, as in Fabric.
        let mut old = maintenance.clone();
        old.orderer.capabilities = vec!["V1_1".into()];
        assert_eq!(check_normal_allowed(&old), Ok(()));
    }

    #[test]
    fn size_filter_measures_payload_and_signature_as_fabric() {
        let rules = RuleSet::standard();
        let mut env = envelope_for("c1", HeaderType::Message);
        env.signature = Bytes::from(vec![1u8; 10]);
        let size = env.payload.len() + 10;
        // The framing bytes of the marshalled envelope do not count.
        assert!(env.encoded_len() > size);
        let exact = size as u32;
        assert!(rules.apply(&env, env.encoded_len(), &config(exact)).is_ok());
        let err = rules
            .apply(&env, env.encoded_len(), &config(exact - 1))
            .expect_err("too big");
        assert_eq!(
            err.info,
            format!(
                "message payload is {size} bytes and exceeds maximum allowed {} bytes",
                exact - 1
            )
        );
        let err = rules
            .apply(&Envelope::default(), 0, &config(100))
            .expect_err("empty");
        assert_eq!(err.info, "Message was empty");
    }
}
