//! Point-in-time decisions: was a use allowed at a past moment or ledger position?

use super::open::{entry_lookup, load_index};
use super::Ledger;
use crate::decision::{Denied, Evidence};
use crate::error::{OpenError, ReadError};
use crate::identifier::Identifier;
use crate::purpose::Purpose;
use crate::recipient::Recipient;
use crate::state::State;
use crate::time::Timestamp;

/// A moment in the ledger's past.
///
/// To replay a decision that was made, use [`At::Decided`] (`At::from(&evidence)`):
/// it is the only one of the three that fixes both what the ledger held and the time
/// expiries are judged at, as they were. A position alone does not say how long the
/// ledger stood there (a grant may have lapsed since its last entry), and a time
/// alone does not order a decision and an entry stamped in the same millisecond,
/// which while the system clock is behind the latest time the ledger has seen (after
/// it was stepped back) is every entry and decision until the clock catches up (see
/// [`Clock`](crate::Clock)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// After the first `n` entries (positions `0..n`), at the time of the last of them:
    /// an expiry after that time is not seen.
    Position(u64),
    /// At this time: every entry recorded at or before it counts.
    Time(Timestamp),
    /// After the first `position` entries, judged at `time`: a decision replayed as it
    /// was made, from its [`Evidence::position`] and [`Evidence::decided_at`].
    Decided {
        /// Entries `0..position` count.
        position: u64,
        /// The time expiries are judged at.
        time: Timestamp,
    },
}

impl From<&Evidence> for At {
    /// The moment the decision with this evidence was made.
    fn from(evidence: &Evidence) -> Self {
        At::Decided {
            position: evidence.position(),
            time: evidence.decided_at(),
        }
    }
}

impl Ledger {
    /// Decides, from the log, whether `identifier` could be used for `P` by `recipient`
    /// at a past moment: the same rules as [`Ledger::authorize`], applied to the state
    /// as it was then, so past processing can be judged lawful or not after later
    /// changes. The evidence's `decided_at` is the moment asked about.
    ///
    /// Identifiers of subjects erased since are unknown: after an erasure nothing links
    /// them to anyone, in the past either.
    ///
    /// # Errors
    /// Storage and integrity failures while replaying the log; the inner result is the
    /// decision.
    pub fn authorize_at<P: Purpose>(
        &self,
        identifier: &Identifier<P>,
        recipient: &Recipient,
        at: At,
    ) -> Result<Result<Evidence, Denied>, ReadError> {
        let mut index = load_index(&*self.inner.store, &self.inner.pseudonym_key).map_err(|e| match e {
            OpenError::Storage(s) => ReadError::Storage(s),
            OpenError::Integrity(i) => ReadError::Integrity(i),
            // A tampered index record, or one under another key: not "out of range".
            _ => ReadError::Storage(crate::error::StorageError::new(
                "reading the identifier index",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "an index record is corrupt or was not written with this pseudonym key",
                ),
            )),
        })?;
        // An erasure whose removals failed (`WriteError::Unfinished`, or a group sync that
        // failed after its entry was applied) leaves the subject's index records in the
        // vault until a retry or the next open: the subject is erased all the same, and
        // nothing links it, in the past either.
        {
            let live = self.inner.state.read().map_err(|_| super::poisoned())?;
            index.retain(|_, (_, subject)| live.erased_at(subject).is_none());
        }
        // Only the entries the live state applied: after a failed `Immediate` sync an
        // entry may be stored that decisions never saw (and that `len` does not count).
        let applied = self.applied_len()?;
        let mut state = State::default();
        let mut moment = Timestamp::EPOCH;
        for item in self
            .inner
            .store
            .entries_from(0)
            .take(usize::try_from(applied).unwrap_or(usize::MAX))
        {
            let (_, bytes) = item?;
            let stored = crate::entry::decode(&bytes).map_err(|problem| crate::error::IntegrityError {
                position: state.len,
                problem,
            })?;
            let e = stored.entry;
            let include = match at {
                At::Position(n) | At::Decided { position: n, .. } => e.seq < n,
                At::Time(t) => e.timestamp <= t,
            };
            if !include {
                break;
            }
            moment = e.timestamp;
            state.apply(&e, entry_lookup(&index, &e));
        }
        let now = match at {
            At::Position(_) => moment,
            At::Time(t) | At::Decided { time: t, .. } => t,
        };
        let lookup = identifier.lookup(&self.inner.pseudonym_key);
        Ok(state.decide::<P>(&lookup, recipient, || now))
    }
}
