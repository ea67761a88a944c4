//! The ledger folder's layout: which folders are channels, finishing what a
//! stop interrupted, and moving the old layout to the current one.
//!
//! The old layout had one sled index for every channel (`index/` beside
//! `chains/`, a tree `chain/<channel>` each). Its channels are the folders
//! with a tree; a folder without one is what an interrupted creation or
//! removal left. Each channel's index is built again from its block files
//! (every block checked), then the old index is removed. An interrupted
//! migration starts over at the next open.

use std::collections::HashSet;
use std::path::Path;

use super::factory::{JOINING_PREFIX, REMOVING_PREFIX};
use super::files;
use super::index::{close_index, open_index};
use super::recovery::Opening;
use super::{BlockStore, INDEX_DIR, MAX_FILE_BYTES};
use crate::runtime::faults::points;
use crate::runtime::ledger::LedgerError;

/// Prefix of a channel's tree in the old shared index.
const OLD_TREE_PREFIX: &str = "chain/";

/// Whether `name` can be a channel's folder: Fabric's channel names never
/// start with a dot, which is what marks the store's own folders.
pub(super) fn is_channel_name(name: &str) -> bool {
    !name.is_empty() && !name.starts_with('.') && !name.contains('/') && !name.contains('\0')
}

/// The channels' folders in `chains`, in name order.
pub(super) fn channel_folders(chains: &Path) -> std::io::Result<Vec<String>> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(chains)? {
        let entry = entry?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        if is_channel_name(&name) && entry.file_type()?.is_dir() {
            ids.push(name);
        }
    }
    ids.sort();
    Ok(ids)
}

fn file_error(path: &Path, source: std::io::Error) -> LedgerError {
    LedgerError::File {
        path: path.display().to_string(),
        source,
    }
}

/// Undoes creations and finishes removals a stop interrupted: a
/// `.joining-` folder never became a channel, a `.removing-` folder no
/// longer is one. Both are deleted.
pub(super) fn finish_interrupted(chains: &Path) -> Result<(), LedgerError> {
    let entries = std::fs::read_dir(chains).map_err(|source| file_error(chains, source))?;
    let mut deleted = false;
    for entry in entries {
        let entry = entry.map_err(|source| file_error(chains, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = entry.path();
        if let Some(channel) = name.strip_prefix(JOINING_PREFIX) {
            tracing::warn!(channel, "undoing a channel creation a stop interrupted");
        } else if let Some(channel) = name.strip_prefix(REMOVING_PREFIX) {
            tracing::warn!(channel, "finishing a channel removal a stop interrupted");
        } else {
            continue;
        }
        files::remove_dir(points::LEDGER_REMOVE_DELETE, &path)
            .map_err(|source| file_error(&path, source))?;
        deleted = true;
    }
    if deleted {
        files::sync_dir(points::LEDGER_REMOVE_DELETE, chains)
            .map_err(|source| file_error(chains, source))?;
    }
    Ok(())
}

/// Moves a ledger of the old layout to an index per channel.
pub(super) fn migrate_shared_index(dir: &Path, chains: &Path) -> Result<(), LedgerError> {
    let old = dir.join(INDEX_DIR);
    if !old.is_dir() {
        return Ok(());
    }
    tracing::warn!(path = %old.display(), "the ledger has one index for every channel; building an index per channel from the block files");
    let db = open_index(&old).map_err(|source| LedgerError::Open {
        path: old.display().to_string(),
        source,
    })?;
    let with_tree: HashSet<String> = db
        .tree_names()
        .iter()
        .filter_map(|name| {
            std::str::from_utf8(name)
                .ok()?
                .strip_prefix(OLD_TREE_PREFIX)
                .map(str::to_string)
        })
        .collect();
    close_index(db, &old);
    for channel in channel_folders(chains).map_err(|source| file_error(chains, source))? {
        let folder = chains.join(&channel);
        if with_tree.contains(&channel) {
            // A migration interrupted earlier may have left part of one.
            let index = folder.join(INDEX_DIR);
            files::remove_dir(points::LEDGER_RECOVERY_INDEX, &index)
                .map_err(|source| file_error(&index, source))?;
            let store = BlockStore::open_dir(folder, &channel, MAX_FILE_BYTES, Opening::Existing)?;
            tracing::info!(
                channel,
                height = store.height(),
                "channel index built from its block files"
            );
        } else {
            tracing::warn!(channel, "removing a channel folder the old index does not know (a creation or removal a stop interrupted)");
            let removing = chains.join(format!("{REMOVING_PREFIX}{channel}"));
            files::rename(points::LEDGER_REMOVE_MARK, &folder, &removing)
                .map_err(|source| file_error(&folder, source))?;
            files::sync_dir_for(points::LEDGER_REMOVE_MARK, chains, &folder)
                .map_err(|source| file_error(chains, source))?;
            files::remove_dir(points::LEDGER_REMOVE_DELETE, &removing)
                .map_err(|source| file_error(&removing, source))?;
        }
    }
    files::remove_dir(points::LEDGER_REMOVE_DELETE, &old)
        .map_err(|source| file_error(&old, source))?;
    files::sync_dir(points::LEDGER_REMOVE_DELETE, dir).map_err(|source| file_error(dir, source))?;
    tracing::info!("the old shared index is removed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::testing::{append_acknowledged, genesis, next, record, valid_chain};
    use super::super::{LedgerFactory, CHAINS_DIR};
    use super::*;

    #[test]
    fn each_channel_has_its_own_index_and_the_channels_are_its_folders() {
        let dir = tempfile::tempdir().expect("tempdir");
        let factory = LedgerFactory::open(dir.path()).expect("open");
        factory.create_store("b", &genesis("b")).expect("create");
        factory.create_store("a", &genesis("a")).expect("create");
        let chains = dir.path().join(CHAINS_DIR);
        assert!(chains.join("a").join(INDEX_DIR).is_dir());
        assert!(chains.join("b").join(INDEX_DIR).is_dir());
        assert!(!dir.path().join(INDEX_DIR).exists(), "no shared index");
        std::fs::create_dir(chains.join(".elsewhere")).expect("mkdir");
        assert_eq!(
            factory.channel_ids(),
            vec!["a".to_string(), "b".to_string()]
        );
        assert!(matches!(
            factory.create_store(".a", &genesis("a")),
            Err(LedgerError::InvalidChannelName(_))
        ));
    }

    #[test]
    fn interrupted_creations_and_removals_are_undone_and_finished_at_open() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chains = dir.path().join(CHAINS_DIR);
        {
            let factory = LedgerFactory::open(dir.path()).expect("open");
            factory
                .create_store("kept", &genesis("kept"))
                .expect("create");
        }
        for leftover in [".joining-c1", ".removing-c2"] {
            std::fs::create_dir(chains.join(leftover)).expect("mkdir");
            std::fs::write(chains.join(leftover).join("blockfile_000000"), b"x").expect("write");
        }
        let factory = LedgerFactory::open(dir.path()).expect("open");
        assert!(!chains.join(".joining-c1").exists());
        assert!(!chains.join(".removing-c2").exists());
        assert_eq!(factory.channel_ids(), vec!["kept".to_string()]);
        factory.create_store("c1", &genesis("c1")).expect("create");
        factory.create_store("c2", &genesis("c2")).expect("create");

        // Left while running (a removal whose delete failed) they do not
        // block the next creation or removal either.
        std::fs::create_dir(chains.join(".joining-c3")).expect("mkdir");
        std::fs::create_dir(chains.join(".removing-c1")).expect("mkdir");
        factory.create_store("c3", &genesis("c3")).expect("create");
        factory.remove_store("c1").expect("remove");
        assert_eq!(
            factory.channel_ids(),
            vec!["c2".to_string(), "c3".to_string(), "kept".to_string()]
        );
    }

    #[test]
    fn a_ledger_with_one_shared_index_moves_to_an_index_per_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let chains = dir.path().join(CHAINS_DIR);
        let (tips, stored) = {
            let factory = LedgerFactory::open(dir.path())
                .expect("open")
                .with_max_file_bytes(600);
            let c1 = factory.create_store("c1", &genesis("c1")).expect("create");
            for payload in [&b"a"[..], b"b", b"c"] {
                append_acknowledged(&c1, &[next(&c1, payload)]);
            }
            let c2 = factory.create_store("c2", &genesis("c2")).expect("create");
            append_acknowledged(&c2, &[next(&c2, b"x")]);
            (
                vec![c1.tip(), c2.tip()],
                vec![valid_chain(&c1), valid_chain(&c2)],
            )
        };
        // The old layout: no index in the channels' folders, one beside
        // them with a tree per channel; c3's folder has no tree (a removal
        // interrupted after its tree was dropped).
        for channel in ["c1", "c2"] {
            std::fs::remove_dir_all(chains.join(channel).join(INDEX_DIR)).expect("remove");
        }
        std::fs::create_dir(chains.join("c3")).expect("mkdir");
        std::fs::write(
            chains.join("c3").join("blockfile_000000"),
            record(&genesis("c3")),
        )
        .expect("write");
        {
            let old = open_index(&dir.path().join(INDEX_DIR)).expect("old index");
            for channel in ["c1", "c2"] {
                let tree = old
                    .open_tree(format!("{OLD_TREE_PREFIX}{channel}"))
                    .expect("tree");
                tree.insert(0u64.to_be_bytes(), &[0u8; 16]).expect("insert");
            }
            old.flush().expect("flush");
        }

        let factory = LedgerFactory::open(dir.path()).expect("migrate");
        assert!(
            !dir.path().join(INDEX_DIR).exists(),
            "the old index is gone"
        );
        assert_eq!(
            factory.channel_ids(),
            vec!["c1".to_string(), "c2".to_string()]
        );
        for (i, channel) in ["c1", "c2"].into_iter().enumerate() {
            assert!(chains.join(channel).join(INDEX_DIR).is_dir());
            let store = factory.open_store(channel).expect("open");
            assert_eq!(store.tip(), tips[i]);
            assert_eq!(valid_chain(&store), stored[i]);
        }
        let c1 = factory.open_store("c1").expect("open");
        append_acknowledged(&c1, &[next(&c1, b"d")]);
        assert_eq!(valid_chain(&c1).len(), 5);
    }
}
