//! Time: timestamps in the ledger and the injectable clock decisions read.
//!
//! This is the only module that reads the system clock, so tests can move time with
//! [`ManualClock`].

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, UTC.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Timestamp(u64);

impl Timestamp {
    /// The Unix epoch.
    pub const EPOCH: Timestamp = Timestamp(0);

    /// The latest time RFC 3339 can write (its years have four digits):
    /// `9999-12-31T23:59:59.999Z`. Grants refuse an expiry after it.
    pub const MAX_RFC3339: Timestamp = Timestamp(253_402_300_799_999);

    /// From milliseconds since the Unix epoch.
    pub const fn from_millis(millis: u64) -> Self {
        Timestamp(millis)
    }

    /// Milliseconds since the Unix epoch.
    pub const fn as_millis(self) -> u64 {
        self.0
    }

    /// This time plus `d`, saturating at the largest timestamp.
    pub fn saturating_add(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ms))
    }

    /// This time minus `d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_sub(ms))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-25T09:30:00.000Z`. A time after
    /// [`Timestamp::MAX_RFC3339`] (only a clock set past the year 9999 gives one) is
    /// written the same way with a longer year, which is not RFC 3339.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let millis = self.0 % 1000;
        let secs = self.0 / 1000;
        let days = secs / 86_400;
        let rem = secs % 86_400;
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }
}

/// Days since 1970-01-01 to a proleptic Gregorian (year, month, day), after Howard
/// Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// A source of the current time. The ledger reads it for every entry and decision.
///
/// The ledger never lets time run backwards: an entry's timestamp is never earlier than
/// the previous entry's, and a decision that depends on the time (an expiry) uses the
/// latest time the ledger has seen, so a consent that has expired stays expired when
/// the clock is stepped back. A clock stepped *forward* by mistake is taken as it is.
///
/// So after a step back, until the clock catches up with the latest time seen, every
/// entry and every decision is stamped with that one time, and time no longer orders
/// them: a use and a withdrawal made ten minutes apart carry the same millisecond.
/// Their positions still order them ([`Evidence::position`](crate::Evidence::position),
/// [`At::Decided`](crate::At::Decided)); what reads the log by time alone (
/// [`At::Time`](crate::At::Time), an impact query's time window or its
/// [`WithdrawalsImmediate`](crate::Hypothesis::WithdrawalsImmediate) hypothesis) counts
/// every change stamped then as made before every use stamped then.
/// Across a reopen, the latest time seen is what was saved of it (see the README): a
/// crash may take up to about a second of it, a power loss what was not synced.
pub trait Clock: Send + Sync + fmt::Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        // A clock set before 1970 reads as the epoch rather than failing.
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            // Seconds and milliseconds separately: no 128-bit arithmetic on the decision path.
            .map(|d| {
                d.as_secs()
                    .saturating_mul(1000)
                    .saturating_add(u64::from(d.subsec_millis()))
            })
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that moves only when told to; clones share the same time.
///
/// ```
/// use consent_ledger::{Clock, ManualClock, Timestamp};
/// use std::time::Duration;
///
/// let clock = ManualClock::new(Timestamp::from_millis(1_000));
/// let shared = clock.clone();
/// clock.advance(Duration::from_secs(1));
/// assert_eq!(shared.now(), Timestamp::from_millis(2_000));
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A clock showing `start`.
    pub fn new(start: Timestamp) -> Self {
        ManualClock(Arc::new(AtomicU64::new(start.0)))
    }

    /// Sets the time; it may go backwards.
    pub fn set(&self, t: Timestamp) {
        self.0.store(t.0, Ordering::SeqCst);
    }

    /// Moves the time forward by `d`.
    pub fn advance(&self, d: Duration) {
        let ms = u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        // fetch_update with a saturating add: never wraps.
        let _ = self
            .0
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |t| Some(t.saturating_add(ms)));
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(Timestamp::EPOCH.to_string(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Timestamp::from_millis(951_782_400_000).to_string(),
            "2000-02-29T00:00:00.000Z"
        );
        assert_eq!(
            Timestamp::from_millis(1_795_599_000_123).to_string(),
            "2026-11-25T09:30:00.123Z"
        );
        // The largest value formats without overflow.
        assert!(!Timestamp::from_millis(u64::MAX).to_string().is_empty());
    }

    #[test]
    fn manual_clock_moves() {
        let c = ManualClock::new(Timestamp::from_millis(5));
        c.advance(Duration::from_millis(10));
        assert_eq!(c.now().as_millis(), 15);
        c.set(Timestamp::from_millis(1));
        assert_eq!(c.now().as_millis(), 1);
        c.advance(Duration::MAX);
        assert_eq!(c.now().as_millis(), u64::MAX);
        assert!(SystemClock.now() > Timestamp::from_millis(1_700_000_000_000));
    }
}
