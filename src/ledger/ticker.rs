//! A millisecond ticker for stamping decisions.
//!
//! Reading the system clock costs a `clock_gettime` call (about 30 ns on a virtual
//! machine), twice the cost of the rest of a decision. Decisions whose outcome does not
//! depend on the time (no expiring grant involved) are therefore stamped from an
//! atomic that a background thread refreshes every millisecond; decisions that check
//! an expiry always read the clock itself. The thread ends when the ledger is dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::time::{Clock, Timestamp};

/// How often the ticker refreshes its reading.
const TICK: Duration = Duration::from_millis(1);

#[derive(Debug)]
pub(super) struct Ticker {
    now: Arc<AtomicU64>,
}

impl Ticker {
    /// Starts a ticker reading `clock`; `None` if no thread could be started (decisions
    /// then read the clock every time).
    pub(super) fn start(clock: Arc<dyn Clock>) -> Option<Ticker> {
        let now = Arc::new(AtomicU64::new(clock.now().as_millis()));
        let weak: Weak<AtomicU64> = Arc::downgrade(&now);
        std::thread::Builder::new()
            .name("consent-ledger-ticker".into())
            .spawn(move || loop {
                std::thread::sleep(TICK);
                match weak.upgrade() {
                    Some(now) => now.store(clock.now().as_millis(), Ordering::Relaxed),
                    None => return,
                }
            })
            .ok()?;
        Some(Ticker { now })
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
        let weak = Arc::downgrade(&ticker.now);
        drop(ticker);
        // The thread holds the reading only while it stores a tick: gone within one.
        let mut waited = 0;
        while weak.upgrade().is_some() && waited < 1_000 {
            std::thread::sleep(Duration::from_millis(1));
            waited += 1;
        }
        assert!(weak.upgrade().is_none());
    }
}
