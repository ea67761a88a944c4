//! raft-rs logs through slog; Ordo logs through tracing. This drain hands
//! raft-rs's records to tracing (target `raft`), at the same levels.

use slog::{Drain, Level, OwnedKVList, Record, KV};

pub struct TracingDrain;

/// The logger a channel's RawNode gets.
pub fn raft_logger(channel: &str) -> slog::Logger {
    slog::Logger::root(
        TracingDrain.fuse(),
        slog::o!("channel" => channel.to_string()),
    )
}

struct Fields(String);

impl slog::Serializer for Fields {
    fn emit_arguments(&mut self, key: slog::Key, value: &std::fmt::Arguments) -> slog::Result {
        use std::fmt::Write as _;
        let _ = write!(self.0, " {key}={value}");
        Ok(())
    }
}

impl Drain for TracingDrain {
    type Ok = ();
    type Err = std::convert::Infallible;

    fn log(&self, record: &Record, values: &OwnedKVList) -> Result<(), Self::Err> {
        let mut fields = Fields(String::new());
        let _ = record.kv().serialize(record, &mut fields);
        let _ = values.serialize(record, &mut fields);
        let message = record.msg();
        let fields = fields.0;
        match record.level() {
            Level::Critical | Level::Error => tracing::error!(target: "raft", "{message}{fields}"),
            Level::Warning => tracing::warn!(target: "raft", "{message}{fields}"),
            Level::Info => tracing::info!(target: "raft", "{message}{fields}"),
            Level::Debug => tracing::debug!(target: "raft", "{message}{fields}"),
            Level::Trace => tracing::trace!(target: "raft", "{message}{fields}"),
        }
        Ok(())
    }
}
