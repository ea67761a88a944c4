//! The node's clock, injected wherever time decides something (batch
//! timeouts, restart back-off, later Raft ticks), so tests drive time by hand
//! instead of sleeping.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use futures::FutureExt;
use tokio::sync::oneshot;

/// Time as the node sees it. Cheap to clone.
#[derive(Clone)]
pub struct Clock(Arc<dyn TimeSource>);

trait TimeSource: Send + Sync + 'static {
    fn now(&self) -> Instant;
    /// Wall-clock time, for what is compared with other machines' clocks
    /// (request timestamps, certificate expiry).
    fn wall(&self) -> std::time::SystemTime;
    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()>;
}

impl Clock {
    /// Real time (tokio's timer).
    pub fn system() -> Clock {
        Clock(Arc::new(SystemTime))
    }

    /// A clock that moves only when [`ManualClock::advance`] is called.
    pub fn manual() -> (Clock, ManualClock) {
        let now = Instant::now();
        let manual = ManualClock(Arc::new(Mutex::new(ManualState {
            now,
            started: now,
            started_wall: std::time::SystemTime::now(),
            sleepers: Vec::new(),
        })));
        (Clock(Arc::new(manual.clone())), manual)
    }

    pub fn now(&self) -> Instant {
        self.0.now()
    }

    /// The wall-clock time; a manual clock starts at the real time and moves
    /// only when advanced.
    pub fn wall(&self) -> std::time::SystemTime {
        self.0.wall()
    }

    /// Resolves once `duration` has passed on this clock.
    pub fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        self.0.sleep(duration)
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

struct SystemTime;

impl TimeSource for SystemTime {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn wall(&self) -> std::time::SystemTime {
        std::time::SystemTime::now()
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        tokio::time::sleep(duration).boxed()
    }
}

/// The hand that moves a manual clock.
#[derive(Clone)]
pub struct ManualClock(Arc<Mutex<ManualState>>);

struct ManualState {
    now: Instant,
    started: Instant,
    started_wall: std::time::SystemTime,
    sleepers: Vec<(Instant, oneshot::Sender<()>)>,
}

impl ManualClock {
    /// Moves time on and wakes every sleeper whose deadline has come.
    pub fn advance(&self, by: Duration) {
        let due = {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            state.now += by;
            let now = state.now;
            let (due, waiting) = std::mem::take(&mut state.sleepers)
                .into_iter()
                .partition(|(deadline, _)| *deadline <= now);
            state.sleepers = waiting;
            due
        };
        let due: Vec<(Instant, oneshot::Sender<()>)> = due;
        for (_, wake) in due {
            let _ = wake.send(());
        }
    }

    /// How many sleeps are waiting (dropped ones included until the next advance).
    pub fn sleepers(&self) -> usize {
        let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.sleepers.retain(|(_, wake)| !wake.is_closed());
        state.sleepers.len()
    }
}

impl TimeSource for ManualClock {
    fn now(&self) -> Instant {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).now
    }

    fn wall(&self) -> std::time::SystemTime {
        let state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        state.started_wall + (state.now - state.started)
    }

    fn sleep(&self, duration: Duration) -> BoxFuture<'static, ()> {
        let (wake, woken) = oneshot::channel();
        {
            let mut state = self.0.lock().unwrap_or_else(PoisonError::into_inner);
            if duration.is_zero() {
                return futures::future::ready(()).boxed();
            }
            let deadline = state.now + duration;
            state.sleepers.push((deadline, wake));
        }
        async move {
            // A dropped clock never wakes its sleepers: they wait forever, as
            // time that no longer moves would make them.
            if woken.await.is_err() {
                futures::future::pending::<()>().await;
            }
        }
        .boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_clock_wakes_sleepers_only_when_advanced_past_their_deadline() {
        let (clock, hand) = Clock::manual();
        let start = clock.now();
        let mut short = clock.sleep(Duration::from_millis(10));
        let mut long = clock.sleep(Duration::from_secs(60));
        assert!(futures::poll!(&mut short).is_pending());
        hand.advance(Duration::from_millis(9));
        assert!(futures::poll!(&mut short).is_pending());
        hand.advance(Duration::from_millis(1));
        assert!(futures::poll!(&mut short).is_ready());
        assert!(futures::poll!(&mut long).is_pending());
        assert_eq!(hand.sleepers(), 1);
        assert_eq!(clock.now() - start, Duration::from_millis(10));
        let wall = clock.wall();
        hand.advance(Duration::from_secs(3600));
        assert_eq!(
            clock.wall().duration_since(wall).expect("later"),
            Duration::from_secs(3600)
        );
    }
}
