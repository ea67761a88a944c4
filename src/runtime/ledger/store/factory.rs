//! Opening the node's ledger folder and the channels' stores in it.

use std::path::{Path, PathBuf};

use super::{
    BlockStore, ChainTip, CACHE_BYTES, CHAINS_DIR, INDEX_DIR, MAX_FILE_BYTES, TREE_PREFIX,
};
use crate::fabric::protos::common::Block;
use crate::runtime::ledger::LedgerError;

/// Opens the node's ledger folder and the channels' stores in it.
#[derive(Clone)]
pub struct LedgerFactory {
    dir: PathBuf,
    db: sled::Db,
    max_file_bytes: u64,
}

impl LedgerFactory {
    pub fn open(dir: &Path) -> Result<LedgerFactory, LedgerError> {
        let io = |source: std::io::Error| LedgerError::File {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir.join(CHAINS_DIR)).map_err(io)?;
        let index = dir.join(INDEX_DIR);
        let db = open_index(&index).map_err(|source| LedgerError::Open {
            path: index.display().to_string(),
            source,
        })?;
        Ok(LedgerFactory {
            dir: dir.to_path_buf(),
            db,
            max_file_bytes: MAX_FILE_BYTES,
        })
    }

    /// Starts a new block file past `bytes` (tests use a small size).
    pub fn with_max_file_bytes(mut self, bytes: u64) -> LedgerFactory {
        self.max_file_bytes = bytes;
        self
    }

    /// The channels that have a store, in name order.
    pub fn channel_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .db
            .tree_names()
            .into_iter()
            .filter_map(|name| {
                std::str::from_utf8(&name)
                    .ok()?
                    .strip_prefix(TREE_PREFIX)
                    .map(str::to_string)
            })
            .collect();
        ids.sort();
        ids
    }

    fn chain_dir(&self, channel: &str) -> PathBuf {
        self.dir.join(CHAINS_DIR).join(channel)
    }

    /// Opens an existing store and checks its tail.
    pub fn open_store(&self, channel: &str) -> Result<BlockStore, LedgerError> {
        if !self.channel_ids().iter().any(|c| c == channel) {
            return Err(LedgerError::NotFound(channel.into()));
        }
        let tree = self.db.open_tree(tree_name(channel))?;
        BlockStore::recover(
            self.db.clone(),
            tree,
            self.chain_dir(channel),
            channel,
            self.max_file_bytes,
        )
    }

    /// Creates the store of a new channel with its genesis block, durably.
    pub fn create_store(&self, channel: &str, genesis: &Block) -> Result<BlockStore, LedgerError> {
        if self.channel_ids().iter().any(|c| c == channel) {
            return Err(LedgerError::AlreadyExists(channel.into()));
        }
        let dir = self.chain_dir(channel);
        let leftover = std::fs::read_dir(&dir)
            .map(|mut d| d.next().is_some())
            .unwrap_or(false);
        if leftover {
            return Err(LedgerError::Damaged {
                channel: channel.into(),
                block: 0,
                reason: format!(
                    "block files already exist at {} without an index",
                    dir.display()
                ),
            });
        }
        let io = |source: std::io::Error| LedgerError::File {
            path: dir.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let tree = self.db.open_tree(tree_name(channel))?;
        let store = BlockStore::new(
            self.db.clone(),
            tree,
            dir,
            channel,
            ChainTip::empty(),
            None,
            self.max_file_bytes,
        );
        let mut writer = store.writer()?;
        writer.append(std::slice::from_ref(genesis))?;
        writer.publish();
        Ok(store)
    }

    /// Removes a channel's store: its index and its block files.
    pub fn remove_store(&self, channel: &str) -> Result<(), LedgerError> {
        if !self.db.drop_tree(tree_name(channel))? {
            return Err(LedgerError::NotFound(channel.into()));
        }
        self.db.flush()?;
        let dir = self.chain_dir(channel);
        std::fs::remove_dir_all(&dir).map_err(|source| LedgerError::File {
            path: dir.display().to_string(),
            source,
        })
    }

    /// Flushes the index (used on a clean stop).
    pub fn flush(&self) -> Result<(), LedgerError> {
        self.db.flush()?;
        Ok(())
    }
}

fn tree_name(channel: &str) -> String {
    format!("{TREE_PREFIX}{channel}")
}

/// How long opening the index waits for a previous opener's lock.
const INDEX_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// Opens the sled index. A store closed in this process a moment ago may
/// still be locked: sled's background threads drop their handles on the
/// database shortly after the last `Db` is dropped, and they cannot be
/// joined. So a lock held by someone is waited for, briefly, before it is
/// reported.
fn open_index(index: &Path) -> Result<sled::Db, sled::Error> {
    let started = std::time::Instant::now();
    let mut pause = std::time::Duration::from_millis(5);
    loop {
        let opened = sled::Config::new()
            .path(index)
            .cache_capacity(CACHE_BYTES)
            // The index is flushed explicitly after every append.
            .flush_every_ms(None)
            .open();
        match opened {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && started.elapsed() < INDEX_LOCK_PATIENCE =>
            {
                tracing::debug!(path = %index.display(), "index still locked; waiting");
                std::thread::sleep(pause);
                pause = (pause * 2).min(std::time::Duration::from_millis(200));
            }
            other => return other,
        }
    }
}
