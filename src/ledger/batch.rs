//! Batch authorization: many identifiers decided under one read lock per chunk.

use super::Ledger;
use crate::audience::DEFAULT_CHUNK;
use crate::decision::{Denied, Use};
use crate::identifier::Identifier;
use crate::purpose::Purpose;
use crate::recipient::Recipient;
use crate::state::WARM;

impl Ledger {
    /// Decides, now, a use of each identifier for its purpose `P` by `recipient`: the
    /// same answers, in the same order, as calling [`Ledger::authorize`] on each one
    /// (so, once the ledger has failed, [`Denied::LedgerFailed`] for every identifier of
    /// each chunk started since, unless it was opened with
    /// [`AfterFailure::KeepDeciding`](crate::AfterFailure::KeepDeciding)).
    ///
    /// Decisions are made in chunks of [`DEFAULT_CHUNK`](crate::audience::DEFAULT_CHUNK)
    /// under one read lock each, so a change recorded before a chunk starts is seen by
    /// all of its decisions and writers wait for at most one chunk.
    ///
    /// Every answer is returned at the end, as decided: a withdrawal acknowledged while
    /// later chunks are decided does not take back a `Use` of an earlier chunk, as it
    /// does not take back one that [`Ledger::authorize`] returned before it. (Audience
    /// matching decides a match again before handing it out; see the
    /// [`audience` module](crate::audience).) Use each answer at once, or decide again.
    /// Since every answer is returned, memory grows with the number of identifiers
    /// given: for an upload of any length, stream it through
    /// [`Ledger::audience`](crate::Ledger::audience).
    ///
    /// ```
    /// # use consent_ledger::*;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = tempfile::tempdir()?;
    /// # let ledger = Ledger::builder(dir.path()).signing_key(SigningKey::generate())
    /// #     .pseudonym_key(PseudonymKey::generate()).open()?;
    /// let alice = SubjectId::new("user-1")?;
    /// let phone = Identifier::<Security>::phone("+15550100001")?;
    /// ledger.collect(&alice, &phone, RecipientScope::first_party())?;
    /// let stranger = Identifier::<Security>::phone("+15550100002")?;
    /// let ids = [phone, stranger];
    /// let decisions = ledger.authorize_batch(&ids, &Recipient::FirstParty);
    /// assert!(decisions[0].is_ok());
    /// assert_eq!(decisions[1].as_ref().unwrap_err(), &Denied::UnknownIdentifier);
    /// # Ok(())
    /// # }
    /// ```
    pub fn authorize_batch<'a, P: Purpose>(
        &self,
        identifiers: impl IntoIterator<Item = &'a Identifier<P>>,
        recipient: &'a Recipient,
    ) -> Vec<Result<Use<'a, P>, Denied>> {
        let key = &self.inner.pseudonym_key;
        let mut out = Vec::new();
        let mut chunk = Vec::with_capacity(DEFAULT_CHUNK);
        let mut ids = identifiers.into_iter();
        loop {
            chunk.clear();
            // Lookups (an HMAC the first time per identifier) outside the lock.
            chunk.extend(ids.by_ref().take(DEFAULT_CHUNK).map(|id| (id, id.lookup(key))));
            if chunk.is_empty() {
                return out;
            }
            // As `authorize`: once the ledger has failed, every decision of a chunk
            // started since is denied.
            if self.inner.denies_decisions() {
                out.extend(chunk.iter().map(|_| Err(Denied::LedgerFailed)));
                continue;
            }
            let Ok(state) = self.inner.state.read() else {
                out.extend(chunk.iter().map(|_| Err(Denied::Unavailable)));
                continue;
            };
            let query = state.query::<P>(recipient);
            let start = out.len();
            out.extend(chunk.iter().enumerate().map(|(i, (id, lookup))| {
                if i % WARM == 0 {
                    // The next group's memory, read ahead (see `State::warm`).
                    let ahead = chunk.get(i..).unwrap_or_default().iter().map(|(_, l)| l);
                    std::hint::black_box(state.warm(&query, ahead));
                }
                state
                    .decide_query(
                        &query,
                        lookup,
                        // Per decision, as `authorize` stamps: a decision that read the
                        // clock (an expiring grant) may have raised the high-water time,
                        // and no later decision is stamped earlier (with the ticker, a load).
                        || self.stamp(),
                        || self.now_deciding(),
                    )
                    .map(|(evidence, ..)| Use::new(id, recipient, evidence))
            }));
            drop(state);
            self.save_time_floor_if_due();
            if self.records_decisions() {
                for d in out.iter_mut().skip(start) {
                    if let Ok(u) = d {
                        if self.record(u.evidence(), recipient).is_err() {
                            *d = Err(Denied::Unavailable);
                        }
                    }
                }
            }
        }
    }
}
