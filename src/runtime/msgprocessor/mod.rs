//! Broadcast's message processing: find the channel an envelope is for, classify
//! it, and run the channel's filter rules (Fabric's `msgprocessor`).
//!
//! Rules run in Fabric's order and the first failure answers the client:
//! empty payload, size, the creator's expiration, then the signature filter
//! (`/Channel/Writers`). The chain re-runs the same rules when the config
//! changed between validation and ordering.

mod expiration;
mod sigfilter;

use prost::Message;

pub use expiration::ExpirationRejectRule;
pub use sigfilter::SigFilter;

use crate::fabric::channelconfig::ChannelConfig;
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
}

/// How an envelope is processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Classification {
    /// Ordered as-is.
    Normal,
    /// A CONFIG_UPDATE, to be turned into a CONFIG envelope.
    ConfigUpdate,
    /// A CONFIG envelope: processed again from the update it carries.
    Config,
    /// An ORDERER_TRANSACTION (system channel era): refused.
    OrdererTransaction,
}

/// Reads the channel header of an envelope: the first thing Broadcast needs.
pub fn channel_header(envelope: &Envelope) -> Result<ChannelHeader, Rejection> {
    let cannot = |reason: String| {
        Rejection::bad_request(format!("could not determine channel ID: {reason}"))
    };
    let payload = Payload::decode(envelope.payload.clone())
        .map_err(|e| cannot(format!("error unmarshalling payload: {e}")))?;
    let header = payload
        .header
        .ok_or_else(|| cannot("header not set".into()))?;
    if header.channel_header.is_empty() {
        return Err(cannot("channel header not set".into()));
    }
    let channel_header = ChannelHeader::decode(header.channel_header)
        .map_err(|e| cannot(format!("error unmarshalling channel header: {e}")))?;
    if channel_header.channel_id.is_empty() {
        return Err(cannot("channel ID is empty".into()));
    }
    Ok(channel_header)
}

pub fn classify(header: &ChannelHeader) -> Classification {
    match HeaderType::try_from(header.r#type) {
        Ok(HeaderType::ConfigUpdate) => Classification::ConfigUpdate,
        Ok(HeaderType::Config) => Classification::Config,
        Ok(HeaderType::OrdererTransaction) => Classification::OrdererTransaction,
        _ => Classification::Normal,
    }
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
            return Err(Rejection::bad_request("message was empty"));
        }
        Ok(())
    }
}

/// Refuses an envelope larger than the channel's AbsoluteMaxBytes.
pub struct SizeFilter;

impl Rule for SizeFilter {
    fn apply(
        &self,
        _: &Envelope,
        encoded_len: usize,
        config: &ChannelConfig,
    ) -> Result<(), Rejection> {
        let max = config.batch_size.absolute_max_bytes as usize;
        if encoded_len > max {
            return Err(Rejection::bad_request(format!(
                "message payload is {encoded_len} bytes and exceeds maximum allowed {max} bytes"
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
        rules.push(Box::new(SigFilter));
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
        let no_channel = channel_header(&envelope_for("", HeaderType::EndorserTransaction))
            .expect_err("no channel");
        assert!(no_channel.info.contains("channel ID is empty"));
    }

    #[test]
    fn size_filter_enforces_absolute_max_bytes() {
        let rules = RuleSet::standard();
        let env = envelope_for("c1", HeaderType::Message);
        assert!(rules.apply(&env, 100, &config(100)).is_ok());
        let err = rules.apply(&env, 101, &config(100)).expect_err("too big");
        assert_eq!(
            err.info,
            "message payload is 101 bytes and exceeds maximum allowed 100 bytes"
        );
        let err = rules
            .apply(&Envelope::default(), 0, &config(100))
            .expect_err("empty");
        assert_eq!(err.info, "message was empty");
    }
}
