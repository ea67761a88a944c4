//! Raft's options for one channel, from its etcdraft `ConfigMetadata`
//! (Fabric's `Options`), with Fabric's defaults where a field is empty.

use std::time::Duration;

use crate::fabric::channelconfig::duration::parse_go_duration;
use crate::fabric::protos::etcdraft;

/// Fabric's defaults (`orderer/consensus/etcdraft`): 500 ms ticks, an
/// election after 10, a heartbeat every tick, 5 blocks in flight, 16 MB
/// between snapshots, 1 MB per append message.
pub const DEFAULT_TICK_INTERVAL: Duration = Duration::from_millis(500);
pub const DEFAULT_ELECTION_TICK: usize = 10;
pub const DEFAULT_HEARTBEAT_TICK: usize = 1;
pub const DEFAULT_MAX_INFLIGHT_BLOCKS: usize = 5;
pub const DEFAULT_SNAPSHOT_INTERVAL_SIZE: u64 = 16 * 1024 * 1024;
pub const DEFAULT_MAX_SIZE_PER_MSG: u64 = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RaftOptions {
    pub tick_interval: Duration,
    pub election_tick: usize,
    pub heartbeat_tick: usize,
    /// Blocks proposed and not yet written before the leader stops
    /// admitting submissions (Fabric 1.4's MaxInflightMsgs).
    pub max_inflight_blocks: usize,
    /// Bytes of blocks between snapshots (read and reported; snapshots come
    /// with catch-up from snapshots).
    pub snapshot_interval_size: u64,
    pub max_size_per_msg: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OptionsError {
    #[error("etcdraft Options.TickInterval {0:?} is not a duration: {1}")]
    TickInterval(String, String),
    #[error("etcdraft Options.TickInterval must be above zero")]
    ZeroTick,
    #[error("etcdraft Options.ElectionTick ({election}) must be greater than HeartbeatTick ({heartbeat})")]
    ElectionTick { election: usize, heartbeat: usize },
}

impl Default for RaftOptions {
    fn default() -> Self {
        RaftOptions {
            tick_interval: DEFAULT_TICK_INTERVAL,
            election_tick: DEFAULT_ELECTION_TICK,
            heartbeat_tick: DEFAULT_HEARTBEAT_TICK,
            max_inflight_blocks: DEFAULT_MAX_INFLIGHT_BLOCKS,
            snapshot_interval_size: DEFAULT_SNAPSHOT_INTERVAL_SIZE,
            max_size_per_msg: DEFAULT_MAX_SIZE_PER_MSG,
        }
    }
}

impl RaftOptions {
    /// The channel's options; a zero or empty field takes Fabric's default.
    /// `tick_override` is `Consensus.TickIntervalOverride`.
    pub fn from_config(
        options: Option<&etcdraft::Options>,
        tick_override: Option<Duration>,
    ) -> Result<RaftOptions, OptionsError> {
        let mut out = RaftOptions::default();
        if let Some(o) = options {
            if !o.tick_interval.is_empty() {
                out.tick_interval = parse_go_duration(&o.tick_interval)
                    .map_err(|e| OptionsError::TickInterval(o.tick_interval.clone(), e))?;
            }
            let or = |value: u32, default: usize| {
                if value == 0 {
                    default
                } else {
                    value as usize
                }
            };
            out.election_tick = or(o.election_tick, DEFAULT_ELECTION_TICK);
            out.heartbeat_tick = or(o.heartbeat_tick, DEFAULT_HEARTBEAT_TICK);
            out.max_inflight_blocks = or(o.max_inflight_blocks, DEFAULT_MAX_INFLIGHT_BLOCKS);
            if o.snapshot_interval_size != 0 {
                out.snapshot_interval_size = u64::from(o.snapshot_interval_size);
            }
        }
        if let Some(tick) = tick_override {
            out.tick_interval = tick;
        }
        if out.tick_interval.is_zero() {
            return Err(OptionsError::ZeroTick);
        }
        if out.election_tick <= out.heartbeat_tick {
            return Err(OptionsError::ElectionTick {
                election: out.election_tick,
                heartbeat: out.heartbeat_tick,
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_fields_take_fabrics_defaults() {
        assert_eq!(
            RaftOptions::from_config(None, None),
            Ok(RaftOptions::default())
        );
        let options = etcdraft::Options {
            tick_interval: "100ms".into(),
            election_tick: 20,
            heartbeat_tick: 2,
            max_inflight_blocks: 1,
            snapshot_interval_size: 1024,
        };
        let read = RaftOptions::from_config(Some(&options), None).expect("valid");
        assert_eq!(read.tick_interval, Duration::from_millis(100));
        assert_eq!((read.election_tick, read.heartbeat_tick), (20, 2));
        assert_eq!(read.max_inflight_blocks, 1);
        assert_eq!(read.snapshot_interval_size, 1024);
        let overridden =
            RaftOptions::from_config(Some(&options), Some(Duration::from_secs(1))).expect("valid");
        assert_eq!(overridden.tick_interval, Duration::from_secs(1));
    }

    #[test]
    fn bad_options_are_named() {
        let bad_tick = etcdraft::Options {
            tick_interval: "often".into(),
            ..Default::default()
        };
        assert!(matches!(
            RaftOptions::from_config(Some(&bad_tick), None),
            Err(OptionsError::TickInterval(..))
        ));
        let bad_election = etcdraft::Options {
            election_tick: 1,
            heartbeat_tick: 1,
            ..Default::default()
        };
        assert_eq!(
            RaftOptions::from_config(Some(&bad_election), None),
            Err(OptionsError::ElectionTick {
                election: 1,
                heartbeat: 1
            })
        );
    }
}
