//! Block cutting: Fabric's BatchSize and BatchTimeout rules.
//!
//! [`BlockCutter`] is the pure rule set (the same on every orderer, so every
//! orderer that sees the same messages cuts the same batches); [`CutterActor`]
//! owns one per channel with its batch timer.

mod actor;
mod cutter;

pub use actor::{
    BatchCut, BatchTimeoutExpired, CutPending, CutterActor, CutterHandle, CutterOwner, Drain,
    Drained, Ordered, OrderedConfig, StopCutter,
};
pub use cutter::{Batch, BlockCutter, OrderedMessage, Outcome};
