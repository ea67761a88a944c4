//! Giving memory back to the system after a burst of clients has gone.
//!
//! glibc keeps freed memory in its arenas: after hundreds of streams and
//! connections close, the node's resident size would stay at its peak
//! (block-sized buffers below the mmap threshold are carved out of the
//! arenas). `malloc_trim` returns the free pages; it runs once the burst
//! is over, at most once per [`RELEASE_DELAY`], on the blocking pool.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// How long after a client goes the freed memory is given back: clients
/// leaving together cost one trim.
pub const RELEASE_DELAY: Duration = Duration::from_secs(1);

static PENDING: AtomicBool = AtomicBool::new(false);

/// Schedules a trim of the allocator's free memory, unless one is pending.
/// Does nothing outside a tokio runtime or off glibc.
pub fn release_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        PENDING.store(false, Ordering::Release);
        return;
    };
    runtime.spawn(async {
        tokio::time::sleep(RELEASE_DELAY).await;
        PENDING.store(false, Ordering::Release);
        let _ = tokio::task::spawn_blocking(trim).await;
    });
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}
