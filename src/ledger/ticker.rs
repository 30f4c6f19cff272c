//! A millisecond ticker for stamping decisions.
//!
//! Reading the system clock costs a `clock_gettime` call (about 30 ns on a virtual
//! machine), twice the cost of the rest of a decision. Decisions whose outcome does not
//! depend on the time (no expiring grant involved) are therefore stamped from an
//! atomic that a background thread refreshes every millisecond; decisions that check
//! an expiry always read the clock itself. The thread ends when the ledger is dropped.
//!
//! The same thread runs a duty every [`DUTY_TICKS`] ticks, once the ledger sets one:
//! recording in the head record a durable length that has moved on, so that a burst
//! of appends followed by quiet is recorded within a fraction of a second.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use crate::time::{Clock, Timestamp};

/// How often the ticker refreshes its reading.
const TICK: Duration = Duration::from_millis(1);
/// Ticks between two runs of the duty (about 100 ms).
const DUTY_TICKS: u32 = 100;

/// Something the ticker's thread runs now and then.
type Duty = Box<dyn Fn() + Send + Sync>;

pub(super) struct Ticker {
    now: Arc<AtomicU64>,
    duty: Arc<OnceLock<Duty>>,
    /// The thread, which ends within a tick of the ticker's drop (not joined: a drop
    /// does not wait for it). Kept so that tests can see it end.
    #[cfg_attr(not(test), allow(dead_code, reason = "read by tests"))]
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Ticker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ticker")
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl Ticker {
    /// Starts a ticker reading `clock`; `None` if no thread could be started (decisions
    /// then read the clock every time).
    pub(super) fn start(clock: Arc<dyn Clock>) -> Option<Ticker> {
        let now = Arc::new(AtomicU64::new(clock.now().as_millis()));
        let weak: Weak<AtomicU64> = Arc::downgrade(&now);
        let duty: Arc<OnceLock<Duty>> = Arc::new(OnceLock::new());
        let duty_here = Arc::clone(&duty);
        let thread = std::thread::Builder::new()
            .name("consent-ledger-ticker".into())
            .spawn(move || {
                let mut ticks = 0u32;
                loop {
                    std::thread::sleep(TICK);
                    match weak.upgrade() {
                        Some(now) => now.store(clock.now().as_millis(), Ordering::Relaxed),
                        None => return,
                    }
                    ticks = ticks.wrapping_add(1);
                    if ticks.is_multiple_of(DUTY_TICKS) {
                        if let Some(duty) = duty_here.get() {
                            duty();
                        }
                    }
                }
            })
            .ok()?;
        Some(Ticker {
            now,
            duty,
            thread: Some(thread),
        })
    }

    /// Sets the duty the thread runs every [`DUTY_TICKS`] ticks (the first one set
    /// stays). It must hold its ledger weakly: the thread ends with the ledger.
    pub(super) fn set_duty(&self, duty: impl Fn() + Send + Sync + 'static) {
        let _ = self.duty.set(Box::new(duty));
    }

    /// The last reading: at most about a millisecond old (more on an overloaded machine).
    pub(super) fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.now.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::time::ManualClock;

    #[test]
    fn follows_the_clock_and_stops_with_its_owner() {
        let clock = ManualClock::new(Timestamp::from_millis(5));
        let ticker = Ticker::start(Arc::new(clock.clone())).unwrap();
        assert_eq!(ticker.now(), Timestamp::from_millis(5));
        clock.set(Timestamp::from_millis(9));
        let mut waited = 0;
        while ticker.now() != Timestamp::from_millis(9) && waited < 5_000 {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        assert_eq!(ticker.now(), Timestamp::from_millis(9));
        let mut ticker = ticker;
        let thread = ticker.thread.take().unwrap();
        let weak = Arc::downgrade(&ticker.now);
        drop(ticker);
        // The thread holds the reading only while it stores a tick, and ends at the
        // first tick that finds it gone. (Checking only that the reading is freed could
        // not tell a thread that goes on forever: a review showed it.)
        let mut waited = 0;
        while !thread.is_finished() && waited < 5_000 {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        assert!(
            thread.is_finished(),
            "the ticker's thread still runs after its owner was dropped"
        );
        assert!(weak.upgrade().is_none());
    }
}
