//! Fault injection for the fault and crash tests.
//!
//! Every step of the storage paths that can fail on a real disk (a write, an
//! fsync, an index flush, a directory sync, a rename) calls [`check`] with the
//! name of its failpoint and the file it works on. Without the `failpoints`
//! feature that call is empty and compiles away. With it, a failpoint is
//! configured with the `fail` crate's syntax, from the `FAILPOINTS`
//! environment variable at start-up, from a test with `fail::cfg`, or over
//! the operations endpoint of a node built with the feature:
//!
//! - `return(ENOSPC)`, `return(EIO)`, `return(EMFILE)`: the step fails with
//!   that error, as the kernel would report it;
//! - `return(abort)`: the process aborts at this step (a crash);
//! - `return(powerloss)`: what was written since the last sync is discarded
//!   (see [`journal`]), then the process aborts (a power cut); as on a real
//!   disk, a file may keep none, all or a part of its unsynced bytes (a
//!   torn write), chosen at random;
//! - any of them followed by `@text`: only for files whose path contains
//!   `text` (a channel's folder), so tests sharing a process do not meet
//!   each other's faults.
//!
//! The `fail` crate's counts and probabilities apply: `3*off->return(EIO)`
//! lets three steps through and fails the fourth.

pub mod journal;
pub mod points;

use std::io;
use std::path::Path;

/// Passes, or fails as the failpoint `point` is configured for `path`.
#[cfg(feature = "failpoints")]
pub fn check(point: &str, path: &Path) -> io::Result<()> {
    match fail::eval(point, |argument| argument) {
        Some(Some(argument)) => act(point, path, &argument),
        _ => Ok(()),
    }
}

/// Passes: failpoints are compiled in only with the `failpoints` feature.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn check(_point: &str, _path: &Path) -> io::Result<()> {
    Ok(())
}

/// Whether failpoints are compiled in.
pub const ENABLED: bool = cfg!(feature = "failpoints");

#[cfg(feature = "failpoints")]
fn act(point: &str, path: &Path, argument: &str) -> io::Result<()> {
    let (action, scope) = match argument.split_once('@') {
        Some((action, scope)) => (action, Some(scope)),
        None => (argument, None),
    };
    if let Some(scope) = scope {
        if !path.to_string_lossy().contains(scope) {
            return Ok(());
        }
    }
    let errno = match action {
        "ENOSPC" => libc::ENOSPC,
        "EIO" => libc::EIO,
        "EMFILE" => libc::EMFILE,
        "abort" => {
            eprintln!("failpoint {point}: abort at {}", path.display());
            std::process::abort();
        }
        "powerloss" => {
            eprintln!("failpoint {point}: power loss at {}", path.display());
            journal::lose_unsynced_tearing(Path::new("/"), &mut torn_part);
            std::process::abort();
        }
        other => {
            tracing::warn!(point, action = other, "unknown failpoint action; ignored");
            return Ok(());
        }
    };
    tracing::warn!(point, path = %path.display(), action, "failpoint: injected error");
    Err(io::Error::from_raw_os_error(errno))
}

/// How many of a file's `unsynced` bytes a power cut leaves: none, all, or
/// a part, a third of the time each.
#[cfg(feature = "failpoints")]
fn torn_part(unsynced: u64) -> u64 {
    match rand::random_range(0..3) {
        0 => 0,
        1 => unsynced,
        _ => rand::random_range(0..=unsynced),
    }
}

/// Configures a failpoint at run time (`actions` in the `fail` crate's
/// syntax; empty or `off` turns it off). Only with the `failpoints` feature.
#[cfg(feature = "failpoints")]
pub fn configure(point: &str, actions: &str) -> Result<(), String> {
    if actions.is_empty() || actions == "off" {
        fail::remove(point);
        return Ok(());
    }
    fail::cfg(point, actions)
}

/// Held by every in-process test that configures a failpoint: the `fail`
/// registry is global, so two such tests must not run at once. (Scope each
/// action with `@<your temp folder>` too, so other tests never meet it.)
#[cfg(feature = "failpoints")]
pub fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());
    EXCLUSIVE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads `FAILPOINTS` from the environment. Call once at start-up.
#[cfg(feature = "failpoints")]
pub fn configure_from_env() -> Result<(), String> {
    let Ok(spec) = std::env::var("FAILPOINTS") else {
        return Ok(());
    };
    for entry in spec.split(';').filter(|e| !e.trim().is_empty()) {
        let (point, actions) = entry
            .split_once('=')
            .ok_or_else(|| format!("FAILPOINTS entry {entry:?} is not point=actions"))?;
        configure(point.trim(), actions.trim())?;
    }
    Ok(())
}

#[cfg(all(test, feature = "failpoints"))]
mod tests {
    use super::*;

    #[test]
    fn an_injected_error_is_scoped_to_paths_that_contain_its_text() {
        let _only_me = exclusive();
        let point = "faults::test::scoped";
        configure(point, "return(ENOSPC@channel-a)").expect("configure");
        let hit = check(
            point,
            Path::new("/ledger/chains/channel-a/blockfile_000000"),
        );
        let miss = check(
            point,
            Path::new("/ledger/chains/channel-b/blockfile_000000"),
        );
        configure(point, "off").expect("off");
        assert_eq!(
            hit.expect_err("injected").raw_os_error(),
            Some(libc::ENOSPC)
        );
        assert!(miss.is_ok());
        assert!(check(point, Path::new("/channel-a")).is_ok(), "turned off");
    }

    #[test]
    fn counts_let_steps_through_before_failing() {
        let _only_me = exclusive();
        let point = "faults::test::counted";
        configure(point, "2*off->return(EIO)").expect("configure");
        let results: Vec<bool> = (0..3)
            .map(|_| check(point, Path::new("/x")).is_ok())
            .collect();
        configure(point, "off").expect("off");
        assert_eq!(results, vec![true, true, false]);
    }
}
