//! The blockcutter rules of Fabric's orderer.
//!
//! - A message larger than PreferredMaxBytes is isolated: the pending batch is cut
//!   first, then the message forms a batch of its own.
//! - A message that would push the pending batch over PreferredMaxBytes cuts the
//!   pending batch first and starts a new one.
//! - A batch that reaches MaxMessageCount is cut.
//! - A message larger than AbsoluteMaxBytes is never batched (Broadcast already
//!   refuses it; a config change can lower the limit while it is in flight).
//!
//! Sizes are Fabric's `messageSizeBytes`: payload length plus signature length.

use bytes::Bytes;

use crate::fabric::channelconfig::BatchLimits;

/// A validated envelope on its way into a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderedMessage {
    /// The marshalled `common.Envelope`, stored as-is in the block's data.
    pub envelope: Bytes,
    /// Payload length plus signature length.
    pub size: usize,
}

/// The envelopes of one future block.
pub type Batch = Vec<Bytes>;

/// What one call to [`BlockCutter::ordered`] produced.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Zero, one or two batches, in order.
    pub batches: Vec<Batch>,
    /// Whether messages are still pending (the batch timer must run).
    pub pending: bool,
    /// Set when the message was refused (over AbsoluteMaxBytes).
    pub rejected: Option<String>,
}

#[derive(Debug)]
pub struct BlockCutter {
    limits: BatchLimits,
    pending: Batch,
    pending_bytes: usize,
}

impl BlockCutter {
    pub fn new(limits: BatchLimits) -> BlockCutter {
        BlockCutter {
            limits,
            pending: Vec::new(),
            pending_bytes: 0,
        }
    }

    /// New limits apply to the next message (after a config block).
    pub fn set_limits(&mut self, limits: BatchLimits) {
        self.limits = limits;
    }

    pub fn pending_count(&self) -> usize {
        self.pending.len()
    }

    /// Adds one message and returns the batches it completes.
    pub fn ordered(&mut self, message: OrderedMessage) -> Outcome {
        let mut outcome = Outcome::default();
        let preferred = self.limits.preferred_max_bytes as usize;
        if message.size > self.limits.absolute_max_bytes as usize {
            outcome.rejected = Some(format!(
                "message of {} bytes exceeds AbsoluteMaxBytes {}",
                message.size, self.limits.absolute_max_bytes
            ));
            outcome.pending = !self.pending.is_empty();
            return outcome;
        }
        if message.size > preferred {
            if !self.pending.is_empty() {
                outcome.batches.push(self.cut());
            }
            outcome.batches.push(vec![message.envelope]);
            outcome.pending = false;
            return outcome;
        }
        if self.pending_bytes + message.size > preferred && !self.pending.is_empty() {
            outcome.batches.push(self.cut());
        }
        self.pending.push(message.envelope);
        self.pending_bytes += message.size;
        if self.pending.len() >= self.limits.max_message_count as usize {
            outcome.batches.push(self.cut());
        }
        outcome.pending = !self.pending.is_empty();
        outcome
    }

    /// Cuts the pending batch (empty if nothing is pending).
    pub fn cut(&mut self) -> Batch {
        self.pending_bytes = 0;
        std::mem::take(&mut self.pending)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max_count: u32, absolute: u32, preferred: u32) -> BatchLimits {
        BatchLimits {
            max_message_count: max_count,
            absolute_max_bytes: absolute,
            preferred_max_bytes: preferred,
        }
    }

    fn msg(tag: u8, size: usize) -> OrderedMessage {
        OrderedMessage {
            envelope: Bytes::from(vec![tag; size]),
            size,
        }
    }

    fn tags(batch: &Batch) -> Vec<u8> {
        batch.iter().map(|b| b[0]).collect()
    }

    #[test]
    fn cuts_at_max_message_count() {
        let mut cutter = BlockCutter::new(limits(3, 1000, 500));
        assert_eq!(cutter.ordered(msg(1, 10)).batches.len(), 0);
        let second = cutter.ordered(msg(2, 10));
        assert!(second.batches.is_empty() && second.pending);
        let third = cutter.ordered(msg(3, 10));
        assert_eq!(
            third.batches.iter().map(tags).collect::<Vec<_>>(),
            vec![vec![1, 2, 3]]
        );
        assert!(!third.pending);
        assert_eq!(cutter.pending_count(), 0);
    }

    #[test]
    fn isolates_a_message_larger_than_preferred_max_bytes() {
        let mut cutter = BlockCutter::new(limits(10, 1000, 100));
        cutter.ordered(msg(1, 30));
        let big = cutter.ordered(msg(2, 150));
        assert_eq!(
            big.batches.iter().map(tags).collect::<Vec<_>>(),
            vec![vec![1], vec![2]]
        );
        assert!(!big.pending);
        // With nothing pending, the big message alone forms one batch.
        let alone = cutter.ordered(msg(3, 101));
        assert_eq!(
            alone.batches.iter().map(tags).collect::<Vec<_>>(),
            vec![vec![3]]
        );
    }

    #[test]
    fn cuts_before_a_message_would_overflow_preferred_max_bytes() {
        let mut cutter = BlockCutter::new(limits(10, 1000, 100));
        cutter.ordered(msg(1, 40));
        cutter.ordered(msg(2, 40));
        let overflow = cutter.ordered(msg(3, 40));
        assert_eq!(
            overflow.batches.iter().map(tags).collect::<Vec<_>>(),
            vec![vec![1, 2]]
        );
        assert!(overflow.pending);
        assert_eq!(tags(&cutter.cut()), vec![3]);
        // Exactly reaching PreferredMaxBytes does not cut.
        cutter.ordered(msg(4, 50));
        assert!(cutter.ordered(msg(5, 50)).batches.is_empty());
    }

    #[test]
    fn refuses_a_message_over_absolute_max_bytes() {
        let mut cutter = BlockCutter::new(limits(10, 100, 50));
        cutter.ordered(msg(1, 10));
        let refused = cutter.ordered(msg(2, 101));
        assert!(refused.rejected.is_some());
        assert!(refused.batches.is_empty());
        assert!(refused.pending);
        assert_eq!(tags(&cutter.cut()), vec![1]);
        // At the limit it is accepted (and isolated, being over PreferredMaxBytes).
        assert_eq!(cutter.ordered(msg(3, 100)).batches.len(), 1);
    }

    #[test]
    fn new_limits_apply_to_the_next_message() {
        let mut cutter = BlockCutter::new(limits(500, 1000, 1000));
        cutter.ordered(msg(1, 1));
        cutter.set_limits(limits(2, 1000, 1000));
        assert_eq!(
            cutter
                .ordered(msg(2, 1))
                .batches
                .iter()
                .map(tags)
                .collect::<Vec<_>>(),
            vec![vec![1, 2]]
        );
    }

    #[test]
    fn cutting_an_empty_cutter_yields_an_empty_batch() {
        let mut cutter = BlockCutter::new(limits(3, 100, 50));
        assert!(cutter.cut().is_empty());
    }
}
