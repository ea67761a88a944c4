//! Opening the node's ledger folder and the channels' stores in it.
//!
//! A channel's store is its folder `chains/<channel>/`: block files and the
//! channel's index. Creating one builds it in `chains/.joining-<channel>/`
//! and renames it into place once its genesis block is durable; removing one
//! renames it to `chains/.removing-<channel>/` before deleting it. Either
//! rename is the step that counts, and opening the ledger folder finishes or
//! undoes whichever was interrupted (see `layout`).

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};

use prost::Message;

use super::files::{self, file_path};
use super::index::close_index;
use super::recovery::Opening;
use super::writer::check_continues;
use super::{layout, lock, write_lock, BlockStore, ChainTip, Inner, CHAINS_DIR, MAX_FILE_BYTES};
use crate::fabric::blockutil;
use crate::fabric::protos::common::Block;
use crate::runtime::faults::{self, journal, points};
use crate::runtime::ledger::LedgerError;

/// Prefix of a channel folder being created.
pub(super) const JOINING_PREFIX: &str = ".joining-";
/// Prefix of a channel folder being removed.
pub(super) const REMOVING_PREFIX: &str = ".removing-";

/// The folder name of a channel being created or removed: the prefix and
/// the channel's name, or a hash of the name where that would pass the
/// 255-byte limit of a file name (channel names may have 249 characters).
/// Start-up deletes any folder with the prefix, whatever follows it.
fn temporary_name(prefix: &str, channel: &str) -> String {
    const NAME_MAX: usize = 255;
    if prefix.len() + channel.len() <= NAME_MAX {
        return format!("{prefix}{channel}");
    }
    use sha2::Digest;
    format!(
        "{prefix}{}",
        hex::encode(sha2::Sha256::digest(channel.as_bytes()))
    )
}

/// Opens the node's ledger folder and the channels' stores in it.
#[derive(Clone)]
pub struct LedgerFactory {
    dir: PathBuf,
    max_file_bytes: u64,
    /// The stores open in this process, so a channel's index is opened once.
    /// Held while a store is opened, created or removed.
    stores: Arc<Mutex<HashMap<String, Weak<Inner>>>>,
}

impl LedgerFactory {
    /// Opens the ledger folder: finishes creations and removals a stop
    /// interrupted, and moves a ledger of the old layout (one index shared
    /// by every channel) to an index per channel.
    pub fn open(dir: &Path) -> Result<LedgerFactory, LedgerError> {
        let chains = dir.join(CHAINS_DIR);
        if !chains.is_dir() {
            let io = |source| LedgerError::File {
                path: chains.display().to_string(),
                source,
            };
            std::fs::create_dir_all(&chains).map_err(io)?;
            // Once, on a new ledger: not a step the fault tests aim at.
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io)?;
            journal::dir_synced(dir);
        }
        layout::finish_interrupted(&chains)?;
        let factory = LedgerFactory {
            dir: dir.to_path_buf(),
            max_file_bytes: MAX_FILE_BYTES,
            stores: Arc::new(Mutex::new(HashMap::new())),
        };
        layout::migrate_shared_index(dir, &chains)?;
        Ok(factory)
    }

    /// Starts a new block file past `bytes` (tests use a small size).
    pub fn with_max_file_bytes(mut self, bytes: u64) -> LedgerFactory {
        self.max_file_bytes = bytes;
        self
    }

    fn chains_dir(&self) -> PathBuf {
        self.dir.join(CHAINS_DIR)
    }

    fn chain_dir(&self, channel: &str) -> PathBuf {
        self.chains_dir().join(channel)
    }

    /// The channels that have a store, in name order: the folders in
    /// `chains/`.
    pub fn channel_ids(&self) -> Vec<String> {
        match layout::channel_folders(&self.chains_dir()) {
            Ok(ids) => ids,
            Err(e) => {
                tracing::error!(path = %self.chains_dir().display(), error = %e, "cannot list the channels' folders");
                let mut ids: Vec<String> = lock(&self.stores).keys().cloned().collect();
                ids.sort();
                ids
            }
        }
    }

    /// Opens an existing store and checks its tail; a store already open in
    /// this process is shared.
    pub fn open_store(&self, channel: &str) -> Result<BlockStore, LedgerError> {
        if !layout::is_channel_name(channel) {
            return Err(LedgerError::NotFound(channel.into()));
        }
        let mut stores = lock(&self.stores);
        if let Some(inner) = stores.get(channel).and_then(Weak::upgrade) {
            return Ok(BlockStore { inner });
        }
        let dir = self.chain_dir(channel);
        if !dir.is_dir() {
            return Err(LedgerError::NotFound(channel.into()));
        }
        let store = BlockStore::open_dir(dir, channel, self.max_file_bytes, Opening::Existing)?;
        stores.insert(channel.into(), Arc::downgrade(&store.inner));
        Ok(store)
    }

    /// Creates the store of a new channel with its genesis block, durably:
    /// built in a folder of its own, renamed into place once the genesis
    /// block and the folder are synced.
    pub fn create_store(&self, channel: &str, genesis: &Block) -> Result<BlockStore, LedgerError> {
        if !layout::is_channel_name(channel) {
            return Err(LedgerError::InvalidChannelName(channel.into()));
        }
        let mut stores = lock(&self.stores);
        let dir = self.chain_dir(channel);
        if dir.symlink_metadata().is_ok() {
            return Err(LedgerError::AlreadyExists(channel.into()));
        }
        check_genesis(channel, genesis)?;
        let chains = self.chains_dir();
        let joining = chains.join(temporary_name(JOINING_PREFIX, channel));
        if joining.exists() {
            tracing::warn!(
                channel,
                "removing what an earlier creation of the channel left"
            );
            files::remove_dir(points::LEDGER_REMOVE_DELETE, &joining)
                .map_err(|source| file_error(&joining, source))?;
        }
        if let Err(error) = write_genesis(&joining, genesis) {
            if let Err(e) = std::fs::remove_dir_all(&joining) {
                tracing::warn!(channel, error = %e, "cannot remove a channel folder whose creation failed; the next start removes it");
            }
            return Err(error);
        }
        // The rename is the creation: before it the channel does not exist,
        // after it (once chains/ is synced) it does.
        let placed = files::rename(points::LEDGER_JOIN_CREATE, &joining, &dir)
            .map_err(|source| file_error(&joining, source));
        if let Err(error) = placed {
            if let Err(e) = std::fs::remove_dir_all(&joining) {
                tracing::warn!(channel, error = %e, "cannot remove a channel folder whose creation failed; the next start removes it");
            }
            return Err(error);
        }
        let opened = files::sync_dir_for(points::LEDGER_JOIN_SYNC_DIR, &chains, &dir)
            .map_err(|source| file_error(&chains, source))
            .and_then(|()| {
                BlockStore::open_dir(dir.clone(), channel, self.max_file_bytes, Opening::Created)
            });
        match opened {
            Ok(store) => {
                stores.insert(channel.into(), Arc::downgrade(&store.inner));
                tracing::debug!(channel, "block store created");
                Ok(store)
            }
            Err(error) => {
                if let Err(e) = self.delete_channel_dir(channel) {
                    tracing::warn!(channel, error = %e, "cannot undo the creation of a channel whose store failed to open");
                }
                Err(error)
            }
        }
    }

    /// Removes a channel's store: its index and its block files. The folder
    /// is renamed out of the channels first, so a removal a stop interrupts
    /// is finished at the next start, never half done.
    pub fn remove_store(&self, channel: &str) -> Result<(), LedgerError> {
        if !layout::is_channel_name(channel) {
            return Err(LedgerError::NotFound(channel.into()));
        }
        let mut stores = lock(&self.stores);
        if !self.chain_dir(channel).is_dir() {
            return Err(LedgerError::NotFound(channel.into()));
        }
        if let Some(inner) = stores.remove(channel).and_then(|weak| weak.upgrade()) {
            close_removed(&BlockStore { inner });
        }
        self.delete_channel_dir(channel)
    }

    /// Renames a channel's folder aside, syncs `chains/`, deletes it.
    fn delete_channel_dir(&self, channel: &str) -> Result<(), LedgerError> {
        let chains = self.chains_dir();
        let dir = self.chain_dir(channel);
        let removing = chains.join(temporary_name(REMOVING_PREFIX, channel));
        if removing.exists() {
            files::remove_dir(points::LEDGER_REMOVE_DELETE, &removing)
                .map_err(|source| file_error(&removing, source))?;
        }
        files::rename(points::LEDGER_REMOVE_MARK, &dir, &removing)
            .map_err(|source| file_error(&dir, source))?;
        files::sync_dir_for(points::LEDGER_REMOVE_MARK, &chains, &dir)
            .map_err(|source| file_error(&chains, source))?;
        files::remove_dir(points::LEDGER_REMOVE_DELETE, &removing)
            .map_err(|source| file_error(&removing, source))
    }

    /// Flushes every open index (used on a clean stop). A failure faults
    /// that channel's store; the first is returned.
    pub fn flush(&self) -> Result<(), LedgerError> {
        let open: Vec<BlockStore> = lock(&self.stores)
            .values()
            .filter_map(Weak::upgrade)
            .map(|inner| BlockStore { inner })
            .collect();
        let mut first_error = None;
        for store in open {
            if let Err(error) = store.flush_index() {
                store.set_fault(&error);
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl BlockStore {
    fn flush_index(&self) -> Result<(), LedgerError> {
        let index = super::read_lock(&self.inner.index);
        match index.as_ref() {
            Some(db) => db.flush().map(drop).map_err(|e| self.index_error(e)),
            None => Ok(()),
        }
    }
}

/// Marks a store removed and closes its index, so its folder can go:
/// readers still holding it find no channel.
fn close_removed(store: &BlockStore) {
    let _maintenance = lock(&store.inner.maintenance);
    store.inner.removed.store(true, Ordering::Release);
    *lock(&store.inner.writer) = None;
    lock(&store.inner.readers).clear();
    if let Some(db) = write_lock(&store.inner.index).take() {
        close_index(db, &store.index_path());
    }
}

fn file_error(path: &Path, source: std::io::Error) -> LedgerError {
    LedgerError::File {
        path: path.display().to_string(),
        source,
    }
}

/// A genesis block must be block 0 with its data hash right: a store is
/// never created around a block its next open would call damaged.
fn check_genesis(channel: &str, genesis: &Block) -> Result<(), LedgerError> {
    check_continues(channel, &ChainTip::empty(), genesis)?;
    let data_hash_matches = genesis
        .header
        .as_ref()
        .is_some_and(|h| h.data_hash == blockutil::data_hash(blockutil::entries(genesis)));
    if !data_hash_matches {
        return Err(LedgerError::OutOfOrder {
            channel: channel.into(),
            got: 0,
            reason: "the genesis block's data_hash does not match its data".into(),
        });
    }
    Ok(())
}

/// Creates `joining` with the first block file holding `genesis`, the file
/// and the folder synced.
fn write_genesis(joining: &Path, genesis: &Block) -> Result<(), LedgerError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| file_error(&path, source)
    };
    faults::check(points::LEDGER_JOIN_CREATE, joining).map_err(io(joining))?;
    std::fs::create_dir(joining).map_err(io(joining))?;
    let path = file_path(joining, 0);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
        .map_err(io(&path))?;
    journal::created(&path);
    let mut record = Vec::with_capacity(genesis.encoded_len() + 10);
    prost::encoding::encode_varint(genesis.encoded_len() as u64, &mut record);
    genesis
        .encode(&mut record)
        .map_err(|e| file_error(&path, std::io::Error::other(e)))?;
    faults::check(points::LEDGER_APPEND_WRITE, &path).map_err(io(&path))?;
    journal::before_write(&path);
    file.write_all(&record).map_err(io(&path))?;
    files::sync_file(points::LEDGER_APPEND_SYNC, &path, &file).map_err(io(&path))?;
    files::sync_dir(points::LEDGER_JOIN_SYNC_DIR, joining).map_err(io(joining))
}

#[cfg(test)]
mod temporary_name_tests {
    use super::*;

    #[test]
    fn temporary_names_stay_within_the_file_name_limit() {
        assert_eq!(temporary_name(JOINING_PREFIX, "c1"), ".joining-c1");
        let name = temporary_name(REMOVING_PREFIX, &"c".repeat(249));
        assert!(
            name.len() <= 255 && name.starts_with(REMOVING_PREFIX),
            "{name}"
        );
    }
}
