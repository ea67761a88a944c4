//! Who may read a channel, checked as Fabric's Deliver handler checks it.
//!
//! Before the channel is looked up, the seek's channel header must carry a
//! timestamp within `General.Authentication.TimeWindow` of the node's clock
//! and, when the main listener requires client certificates, the SHA-256 of
//! the client's TLS certificate (Fabric's binding of a request to its TLS
//! session): BAD_REQUEST otherwise. Then the seek's signature must satisfy
//! `/Channel/Readers` (`/Channel/Orderer/Readers` in maintenance mode):
//! FORBIDDEN otherwise. The decision holds for the request's stream until the
//! channel's config changes (it is evaluated again before the next block) or
//! the requester's certificate expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use crate::fabric::protos::common::{ChannelHeader, Envelope};
use crate::runtime::channel::ChannelHandle;
use crate::runtime::clock::Clock;
use crate::runtime::msgprocessor::{Rule, SigFilter};
use crate::security::msp::expires_at;
use crate::security::policies::envelope_as_signed_data;

/// Fabric's default `General.Authentication.TimeWindow`.
pub const DEFAULT_TIME_WINDOW: Duration = Duration::from_secs(15 * 60);

/// The node-wide rules of Deliver's access control.
#[derive(Clone, Debug)]
pub struct DeliverAccess {
    pub time_window: Duration,
    /// Whether the main listener requires client certificates (then every
    /// request must name its connection's certificate).
    pub mutual_tls: bool,
    /// `General.Authentication.NoExpirationChecks` off: a session ends when
    /// its requester's certificate expires.
    pub expiration_checks: bool,
    pub clock: Clock,
}

impl Default for DeliverAccess {
    fn default() -> Self {
        DeliverAccess {
            time_window: DEFAULT_TIME_WINDOW,
            mutual_tls: false,
            expiration_checks: true,
            clock: Clock::system(),
        }
    }
}

/// SHA-256 of a client's TLS certificate (DER), as the binding compares it.
pub fn certificate_hash(certificate_der: &[u8]) -> Vec<u8> {
    Sha256::digest(certificate_der).to_vec()
}

impl DeliverAccess {
    /// The checks of the channel header that come before the channel is
    /// looked up; an error is a BAD_REQUEST reason. `connection_certificate`:
    /// the hash of the certificate the client's TLS session presented.
    pub fn check_header(
        &self,
        header: &ChannelHeader,
        connection_certificate: Option<&[u8]>,
    ) -> Result<(), String> {
        let timestamp = header
            .timestamp
            .as_ref()
            .ok_or("channel header in envelope must contain timestamp")?;
        let sent = u64::try_from(timestamp.seconds).ok().map(|s| {
            SystemTime::UNIX_EPOCH + Duration::new(s, timestamp.nanos.clamp(0, 999_999_999) as u32)
        });
        let now = self.clock.wall();
        let apart = sent.map(|sent| match now.duration_since(sent) {
            Ok(behind) => behind,
            Err(ahead) => ahead.duration(),
        });
        if apart.is_none_or(|apart| apart > self.time_window) {
            return Err(format!(
                "envelope timestamp {}.{:09}s (Unix) is more than {:?} apart from current server time",
                timestamp.seconds, timestamp.nanos, self.time_window
            ));
        }
        if self.mutual_tls {
            if header.tls_cert_hash.is_empty() {
                return Err("client didn't include its TLS cert hash".into());
            }
            let actual = connection_certificate.ok_or("client didn't send a TLS certificate")?;
            if header.tls_cert_hash.as_ref() != actual {
                return Err(format!(
                    "claimed TLS cert hash is {} but actual TLS cert hash is {}",
                    hex::encode(&header.tls_cert_hash),
                    hex::encode(actual)
                ));
            }
        }
        Ok(())
    }
}

/// One request's access decision, kept while its blocks are sent.
pub struct SessionAccess {
    envelope: Envelope,
    channel: Arc<ChannelHandle>,
    clock: Clock,
    /// When the requester's certificate expires, if it can be read.
    ends: Option<SystemTime>,
    /// The config sequence the policy was last evaluated under.
    evaluated_at: Option<u64>,
}

impl SessionAccess {
    /// An error is a BAD_REQUEST reason: the seek's signature header cannot
    /// be read.
    pub fn new(
        envelope: &Envelope,
        channel: Arc<ChannelHandle>,
        access: &DeliverAccess,
    ) -> Result<SessionAccess, String> {
        let signed = envelope_as_signed_data(envelope).map_err(|e| e.to_string())?;
        let ends = signed
            .first()
            .filter(|_| access.expiration_checks)
            .and_then(|s| expires_at(&s.identity));
        Ok(SessionAccess {
            envelope: envelope.clone(),
            channel,
            clock: access.clock.clone(),
            ends,
            evaluated_at: None,
        })
    }

    /// Whether the requester may still read; an error is a FORBIDDEN reason.
    /// The policy is evaluated the first time and again after every config
    /// change; expiry is checked every time.
    pub fn evaluate(&mut self) -> Result<(), String> {
        if let Some(ends) = self.ends {
            if let Ok(since) = self.clock.wall().duration_since(ends) {
                return Err(format!("client identity expired {since:?} before"));
            }
        }
        let config = self.channel.config();
        if self.evaluated_at == Some(config.sequence) {
            return Ok(());
        }
        SigFilter::READERS
            .apply(&self.envelope, 0, &config)
            .map_err(|refusal| refusal.info)?;
        self.evaluated_at = Some(config.sequence);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost_types::Timestamp;

    fn header_at(seconds: i64, tls_cert_hash: &[u8]) -> ChannelHeader {
        ChannelHeader {
            timestamp: Some(Timestamp { seconds, nanos: 0 }),
            tls_cert_hash: tls_cert_hash.to_vec().into(),
            ..ChannelHeader::default()
        }
    }

    fn unix_now(clock: &Clock) -> i64 {
        clock
            .wall()
            .duration_since(SystemTime::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs() as i64
    }

    #[test]
    fn the_timestamp_must_be_within_the_time_window_either_way() {
        let (clock, _) = Clock::manual();
        let access = DeliverAccess {
            time_window: Duration::from_secs(60),
            mutual_tls: false,
            expiration_checks: true,
            clock: clock.clone(),
        };
        let now = unix_now(&clock);
        assert_eq!(access.check_header(&header_at(now - 59, b""), None), Ok(()));
        assert_eq!(access.check_header(&header_at(now + 59, b""), None), Ok(()));
        for outside in [now - 61, now + 61, 0, -5] {
            let err = access
                .check_header(&header_at(outside, b""), None)
                .expect_err("outside the window");
            assert!(err.contains("apart from current server time"), "{err}");
        }
        let err = access
            .check_header(&ChannelHeader::default(), None)
            .expect_err("no timestamp");
        assert_eq!(err, "channel header in envelope must contain timestamp");
    }

    #[test]
    fn with_mutual_tls_the_request_names_its_connections_certificate() {
        let (clock, _) = Clock::manual();
        let access = DeliverAccess {
            time_window: Duration::from_secs(60),
            mutual_tls: true,
            expiration_checks: true,
            clock: clock.clone(),
        };
        let now = unix_now(&clock);
        let mine = certificate_hash(b"my certificate");
        let other = certificate_hash(b"another certificate");
        assert_eq!(
            access.check_header(&header_at(now, &mine), Some(&mine)),
            Ok(())
        );
        assert_eq!(
            access.check_header(&header_at(now, b""), Some(&mine)),
            Err("client didn't include its TLS cert hash".into())
        );
        assert_eq!(
            access.check_header(&header_at(now, &mine), None),
            Err("client didn't send a TLS certificate".into())
        );
        let err = access
            .check_header(&header_at(now, &other), Some(&mine))
            .expect_err("another certificate's hash");
        assert!(err.starts_with("claimed TLS cert hash is"), "{err}");

        // Without mutual TLS nothing is bound, as in Fabric.
        let plain = DeliverAccess {
            mutual_tls: false,
            ..access
        };
        assert_eq!(plain.check_header(&header_at(now, &other), None), Ok(()));
    }
}
