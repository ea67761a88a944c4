//! The node-wide Kafka client settings (orderer.yaml's `Kafka` section),
//! resolved with Fabric's defaults: the Kafka consenter turns them into
//! librdkafka settings. The brokers come from each channel's config
//! (`KafkaBrokers`), not from here.

use std::path::Path;
use std::time::Duration;

use super::sections::Kafka;
use super::ConfigError;
use crate::fabric::channelconfig::parse_go_duration;

fn invalid(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// How long a chain keeps trying to reach its partition: every
/// `short_interval` for `short_total`, then every `long_interval` for
/// `long_total` (Fabric's Kafka.Retry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub short_interval: Duration,
    pub short_total: Duration,
    pub long_interval: Duration,
    pub long_total: Duration,
}

impl RetrySchedule {
    /// The wait before attempt `elapsed` into the retries, or `None` once
    /// both phases are spent.
    pub fn next_wait(&self, elapsed: Duration) -> Option<Duration> {
        if elapsed < self.short_total {
            Some(self.short_interval)
        } else if elapsed < self.short_total + self.long_total {
            Some(self.long_interval)
        } else {
            None
        }
    }
}

/// TLS towards the brokers (Kafka.TLS): PEM contents, read at start-up.
#[derive(Debug, Clone, Default)]
pub struct KafkaTls {
    pub private_key: Option<String>,
    pub certificate: Option<String>,
    pub root_cas: Vec<String>,
}

/// The resolved `Kafka` section.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub retry: RetrySchedule,
    /// How long one produce may take before it is reported failed
    /// (Kafka.Retry.NetworkTimeouts: dial + write + read).
    pub produce_timeout: Duration,
    /// Kafka.Retry.NetworkTimeouts.DialTimeout.
    pub dial_timeout: Duration,
    /// Kafka.Version: the broker protocol version to assume ("" lets the
    /// client ask the broker).
    pub version: String,
    pub verbose: bool,
    pub tls: Option<KafkaTls>,
    /// Kafka.SASLPlain: user and password.
    pub sasl_plain: Option<(String, String)>,
    /// Kafka.Topic.ReplicationFactor, for the topics the chains create.
    pub replication_factor: i32,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        KafkaSettings::from_section(&Kafka::default(), Path::new("."))
            .unwrap_or_else(|_| unreachable!("Fabric's defaults are valid"))
    }
}

impl KafkaSettings {
    /// Reads the section; TLS files are relative to `base_dir` (the folder
    /// of the node's config file).
    pub fn from_section(section: &Kafka, base_dir: &Path) -> Result<Self, ConfigError> {
        let duration = |key: &'static str, text: &str| {
            parse_go_duration(text).map_err(|e| invalid(key, format!("{text:?}: {e}")))
        };
        let r = &section.retry;
        let retry = RetrySchedule {
            short_interval: duration("Kafka.Retry.ShortInterval", &r.short_interval)?,
            short_total: duration("Kafka.Retry.ShortTotal", &r.short_total)?,
            long_interval: duration("Kafka.Retry.LongInterval", &r.long_interval)?,
            long_total: duration("Kafka.Retry.LongTotal", &r.long_total)?,
        };
        if retry.short_interval.is_zero() || retry.long_interval.is_zero() {
            return Err(invalid(
                "Kafka.Retry.ShortInterval",
                "the retry intervals must be above zero",
            ));
        }
        let t = &r.network_timeouts;
        let dial_timeout = duration("Kafka.Retry.NetworkTimeouts.DialTimeout", &t.dial_timeout)?;
        let read = duration("Kafka.Retry.NetworkTimeouts.ReadTimeout", &t.read_timeout)?;
        let write = duration("Kafka.Retry.NetworkTimeouts.WriteTimeout", &t.write_timeout)?;
        let produce_timeout = (dial_timeout + read + write).max(Duration::from_secs(1));
        let version = section.version.trim().to_string();
        if !version.is_empty() && !is_version(&version) {
            return Err(invalid(
                "Kafka.Version",
                format!("{version:?} is not a Kafka version such as 2.8.0"),
            ));
        }
        if !version.is_empty() && !at_least_0_11(&version) {
            // Posting once, in order, through retries needs the idempotent
            // producer, which brokers have from 0.11 on.
            return Err(invalid(
                "Kafka.Version",
                format!(
                    "{version} is below 0.11.0, the first Kafka version with idempotent producers"
                ),
            ));
        }
        let tls = if section.tls.enabled {
            let read = |key: &'static str, path: &str| -> Result<String, ConfigError> {
                let full = base_dir.join(path);
                std::fs::read_to_string(&full)
                    .map_err(|e| invalid(key, format!("cannot read {}: {e}", full.display())))
            };
            let optional = |key: &'static str, path: &str| {
                (!path.trim().is_empty())
                    .then(|| read(key, path))
                    .transpose()
            };
            Some(KafkaTls {
                private_key: optional("Kafka.TLS.PrivateKey", &section.tls.private_key)?,
                certificate: optional("Kafka.TLS.Certificate", &section.tls.certificate)?,
                root_cas: section
                    .tls
                    .root_cas
                    .iter()
                    .map(|path| read("Kafka.TLS.RootCAs", path))
                    .collect::<Result<_, _>>()?,
            })
        } else {
            None
        };
        let sasl_plain = section
            .sasl_plain
            .enabled
            .then(|| {
                let s = &section.sasl_plain;
                if s.user.is_empty() {
                    Err(invalid(
                        "Kafka.SASLPlain.User",
                        "must be set when SASLPlain is enabled",
                    ))
                } else {
                    Ok((s.user.clone(), s.password.clone()))
                }
            })
            .transpose()?;
        if section.topic.replication_factor == 0 {
            return Err(invalid(
                "Kafka.Topic.ReplicationFactor",
                "must be at least 1",
            ));
        }
        Ok(KafkaSettings {
            retry,
            produce_timeout,
            dial_timeout,
            version,
            verbose: section.verbose,
            tls,
            sasl_plain,
            replication_factor: i32::from(section.topic.replication_factor),
        })
    }
}

fn at_least_0_11(version: &str) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    let major = parts.next().unwrap_or(0);
    let minor = parts.next().unwrap_or(0);
    major >= 1 || minor >= 11
}

fn is_version(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    (2..=4).contains(&parts.len())
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fabric_defaults() {
        let settings = KafkaSettings::default();
        assert_eq!(settings.retry.short_interval, Duration::from_secs(60));
        assert_eq!(settings.retry.short_total, Duration::from_secs(600));
        assert_eq!(settings.retry.long_interval, Duration::from_secs(600));
        assert_eq!(settings.retry.long_total, Duration::from_secs(12 * 3600));
        assert_eq!(settings.replication_factor, 3);
        assert!(settings.tls.is_none());
    }

    #[test]
    fn retries_short_then_long_then_stop() {
        let schedule = RetrySchedule {
            short_interval: Duration::from_secs(1),
            short_total: Duration::from_secs(10),
            long_interval: Duration::from_secs(5),
            long_total: Duration::from_secs(20),
        };
        assert_eq!(
            schedule.next_wait(Duration::ZERO),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            schedule.next_wait(Duration::from_secs(10)),
            Some(Duration::from_secs(5))
        );
        assert_eq!(schedule.next_wait(Duration::from_secs(30)), None);
    }

    #[test]
    fn refuses_bad_values() {
        let mut section = Kafka::default();
        section.retry.short_interval = "soon".into();
        let err = KafkaSettings::from_section(&section, Path::new(".")).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "Kafka.Retry.ShortInterval",
                    ..
                }
            ),
            "{err}"
        );
        let mut section = Kafka {
            version: "0.10.2.0".into(),
            ..Kafka::default()
        };
        let err = KafkaSettings::from_section(&section, Path::new(".")).unwrap_err();
        assert!(err.to_string().contains("below 0.11.0"), "{err}");
        section.version = "2.8.0".into();
        assert!(KafkaSettings::from_section(&section, Path::new(".")).is_ok());
        let section = Kafka {
            version: "two".into(),
            ..Kafka::default()
        };
        let err = KafkaSettings::from_section(&section, Path::new(".")).unwrap_err();
        assert!(
            matches!(
                err,
                ConfigError::Invalid {
                    key: "Kafka.Version",
                    ..
                }
            ),
            "{err}"
        );
        let mut section = Kafka::default();
        section.tls.enabled = true;
        section.tls.root_cas = vec!["missing-ca.pem".into()];
        let err = KafkaSettings::from_section(&section, Path::new("/nonexistent")).unwrap_err();
        assert!(err.to_string().contains("cannot read"), "{err}");
    }
}
