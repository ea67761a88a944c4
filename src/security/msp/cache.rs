//! Validated identities by their serialized bytes, so that the hot path pays
//! a lookup under a read lock instead of a chain validation. Only successes
//! are kept: a stranger cannot push out the channel's members with entries
//! that never validate. Bounded; when full, an arbitrary entry makes room.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;

use super::Identity;

/// Identities a channel remembers.
pub const CAPACITY: usize = 4096;

pub struct IdentityCache {
    entries: RwLock<HashMap<Bytes, Arc<Identity>>>,
    capacity: usize,
}

impl IdentityCache {
    pub fn new(capacity: usize) -> IdentityCache {
        IdentityCache {
            entries: RwLock::new(HashMap::new()),
            capacity: capacity.max(1),
        }
    }

    pub fn get(&self, serialized: &[u8]) -> Option<Arc<Identity>> {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(serialized)
            .cloned()
    }

    pub fn insert(&self, serialized: &[u8], identity: Arc<Identity>) {
        let mut entries = self.entries.write().unwrap_or_else(PoisonError::into_inner);
        if entries.len() >= self.capacity && !entries.contains_key(serialized) {
            if let Some(victim) = entries.keys().next().cloned() {
                entries.remove(&victim);
            }
        }
        entries.insert(Bytes::copy_from_slice(serialized), identity);
    }

    pub fn len(&self) -> usize {
        self.entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}
