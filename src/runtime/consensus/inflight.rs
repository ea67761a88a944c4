//! In-flight room: the envelopes and bytes a channel holds between Broadcast
//! and its ledger, bounded by `General.Backpressure.MaxInflightEnvelopes` and
//! `MaxInflightBytes`.
//!
//! Broadcast acquires room before it submits; the room travels with the
//! envelopes to the block that holds them, and is released when the ledger's
//! height passes that block ([`PermitsByBlock`]). Counting by block number
//! works however the block reaches the ledger: straight from a cutter (solo),
//! or back from a Raft log or a Kafka partition.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::{AcquireError, OwnedSemaphorePermit, Semaphore, TryAcquireError};

/// The two bounds of one channel. Clones share the same room.
#[derive(Clone)]
pub struct InflightRoom {
    envelopes: Arc<Semaphore>,
    bytes: Arc<Semaphore>,
    max_envelopes: usize,
    max_bytes: usize,
}

/// Room held for some envelopes: one envelope permit each, and their bytes.
#[derive(Debug, Default)]
pub struct InflightPermit {
    envelopes: Option<OwnedSemaphorePermit>,
    bytes: Option<OwnedSemaphorePermit>,
}

impl InflightRoom {
    pub fn new(max_envelopes: usize, max_bytes: usize) -> InflightRoom {
        InflightRoom {
            envelopes: Arc::new(Semaphore::new(max_envelopes)),
            bytes: Arc::new(Semaphore::new(max_bytes)),
            max_envelopes,
            max_bytes,
        }
    }

    pub fn max_envelopes(&self) -> usize {
        self.max_envelopes
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Envelopes held now.
    pub fn envelopes_held(&self) -> usize {
        self.max_envelopes
            .saturating_sub(self.envelopes.available_permits())
    }

    /// Bytes held now.
    pub fn bytes_held(&self) -> usize {
        self.max_bytes
            .saturating_sub(self.bytes.available_permits())
    }

    /// What one envelope of `size` bytes is charged: an envelope larger than
    /// the whole bound takes all of it, so it waits until it is alone.
    fn charge(&self, size: usize) -> u32 {
        size.min(self.max_bytes).min(u32::MAX as usize) as u32
    }

    /// Room for the longest prefix of `sizes` that fits what is free now, or
    /// `None` when not even the first fits.
    pub fn try_take(&self, sizes: &[usize]) -> Option<InflightPermit> {
        loop {
            let free_envelopes = self.envelopes.available_permits();
            let mut free_bytes = self.bytes.available_permits() as u64;
            let mut count = 0u32;
            let mut bytes = 0u32;
            for &size in sizes.iter().take(free_envelopes) {
                let charge = self.charge(size);
                if u64::from(charge) > free_bytes {
                    break;
                }
                free_bytes -= u64::from(charge);
                bytes += charge;
                count += 1;
            }
            if count == 0 {
                return None;
            }
            let envelopes = match self.envelopes.clone().try_acquire_many_owned(count) {
                Ok(p) => p,
                Err(TryAcquireError::NoPermits) => continue,
                Err(TryAcquireError::Closed) => return None,
            };
            match self.bytes.clone().try_acquire_many_owned(bytes) {
                Ok(b) => {
                    return Some(InflightPermit {
                        envelopes: Some(envelopes),
                        bytes: Some(b),
                    })
                }
                // Someone took bytes in between: give the envelopes back and look again.
                Err(TryAcquireError::NoPermits) => continue,
                Err(TryAcquireError::Closed) => return None,
            }
        }
    }

    /// Waits for room for one envelope of `size` bytes.
    pub async fn take_one(&self, size: usize) -> Result<InflightPermit, AcquireError> {
        let envelopes = self.envelopes.clone().acquire_many_owned(1).await?;
        let bytes = self
            .bytes
            .clone()
            .acquire_many_owned(self.charge(size))
            .await?;
        Ok(InflightPermit {
            envelopes: Some(envelopes),
            bytes: Some(bytes),
        })
    }

    /// Room for `count` envelopes of `bytes` in total, now or never (tests).
    pub fn try_take_exact(&self, count: u32, bytes: u32) -> Option<InflightPermit> {
        let envelopes = self.envelopes.clone().try_acquire_many_owned(count).ok()?;
        let bytes = self.bytes.clone().try_acquire_many_owned(bytes).ok()?;
        Some(InflightPermit {
            envelopes: Some(envelopes),
            bytes: Some(bytes),
        })
    }
}

impl InflightPermit {
    pub fn envelopes(&self) -> usize {
        self.envelopes.as_ref().map_or(0, |p| p.num_permits())
    }

    pub fn bytes(&self) -> usize {
        self.bytes.as_ref().map_or(0, |p| p.num_permits())
    }

    pub fn is_empty(&self) -> bool {
        self.envelopes() == 0 && self.bytes() == 0
    }

    /// Takes room for `envelopes` envelopes and `bytes` bytes out of this one
    /// (as much as it holds).
    pub fn split(&mut self, envelopes: usize, bytes: usize) -> InflightPermit {
        InflightPermit {
            envelopes: split_permit(&mut self.envelopes, envelopes),
            bytes: split_permit(&mut self.bytes, bytes),
        }
    }

    pub fn merge(&mut self, other: InflightPermit) {
        merge_permit(&mut self.envelopes, other.envelopes);
        merge_permit(&mut self.bytes, other.bytes);
    }
}

fn split_permit(
    held: &mut Option<OwnedSemaphorePermit>,
    count: usize,
) -> Option<OwnedSemaphorePermit> {
    let permit = held.as_mut()?;
    if count == 0 {
        return None;
    }
    if permit.num_permits() > count {
        permit.split(count)
    } else {
        held.take()
    }
}

fn merge_permit(held: &mut Option<OwnedSemaphorePermit>, other: Option<OwnedSemaphorePermit>) {
    match (held.as_mut(), other) {
        (Some(permit), Some(other)) => permit.merge(other),
        (None, other) => *held = other,
        (Some(_), None) => {}
    }
}

/// Room held by blocks made and not yet written, by block number. The owner
/// calls [`PermitsByBlock::release_below`] as the ledger height moves.
#[derive(Debug, Default)]
pub struct PermitsByBlock {
    held: BTreeMap<u64, InflightPermit>,
}

impl PermitsByBlock {
    /// Holds `permit` until block `number` is written.
    pub fn hold(&mut self, number: u64, permit: InflightPermit) {
        if permit.is_empty() {
            return;
        }
        self.held.entry(number).or_default().merge(permit);
    }

    /// Releases the room of every block below `height`.
    pub fn release_below(&mut self, height: u64) {
        let still_held = self.held.split_off(&height);
        self.held = still_held;
    }

    /// Blocks holding room.
    pub fn blocks(&self) -> usize {
        self.held.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_bounded_by_envelopes_and_by_bytes() {
        let room = InflightRoom::new(10, 1000);
        // Bytes bind first: 400 + 400 fit, the third does not.
        let first = room.try_take(&[400, 400, 400]).expect("room");
        assert_eq!((first.envelopes(), first.bytes()), (2, 800));
        assert!(room.try_take(&[400]).is_none());
        let small = room.try_take(&[100, 100, 100]).expect("room");
        assert_eq!((small.envelopes(), small.bytes()), (2, 200));
        assert_eq!((room.envelopes_held(), room.bytes_held()), (4, 1000));
        drop(first);
        assert_eq!((room.envelopes_held(), room.bytes_held()), (2, 200));
        // An envelope larger than the bound is charged the whole bound.
        drop(small);
        let huge = room.try_take(&[5000]).expect("alone, it fits");
        assert_eq!(huge.bytes(), 1000);
    }

    #[test]
    fn permits_split_per_block_and_are_released_as_the_height_passes() {
        let room = InflightRoom::new(10, 1000);
        let mut permit = room.try_take_exact(6, 600).expect("room");
        let mut blocks = PermitsByBlock::default();
        blocks.hold(4, permit.split(2, 200));
        blocks.hold(5, permit.split(3, 300));
        blocks.hold(6, permit);
        assert_eq!(room.envelopes_held(), 6);
        blocks.release_below(5);
        assert_eq!((room.envelopes_held(), room.bytes_held()), (4, 400));
        blocks.release_below(7);
        assert_eq!((room.envelopes_held(), room.bytes_held()), (0, 0));
        assert_eq!(blocks.blocks(), 0);
    }
}
