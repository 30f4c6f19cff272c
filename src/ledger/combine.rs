//! Group commit by combining: concurrent grants and withdrawals are queued, and one
//! thread at a time (the leader) takes everything queued and appends it in two stages.
//! Under the writer lock it checks each change against the state and signs it; then it
//! takes the storing stage, releases the writer lock and hands the lead to a waiting
//! thread, which signs the next batch while this one is stored, applied to the state
//! and synced. Then the leader wakes each of its batch's callers with their result.
//!
//! Without combining, every append hands the writer lock from thread to thread and then
//! waits for the group's sync: two or three sleeps and wake-ups per append, which on a
//! small machine cost more than the signing itself. With it, a caller that is not
//! leading sleeps once. Without the two stages, the leader also stored its whole batch
//! before handing on, and signing (the chain makes it one entry at a time) stood still
//! meanwhile.
//!
//! The price of the stages: an entry signed after one that could not be stored chains
//! to it, so a storage failure while storing a batch fails the rest of the batch and the
//! batch signed after it, and the ledger takes no more writes (as after a failed sync).
//! A direct append holds both locks, so its storage failure leaves nothing chained to
//! the failed entry and the ledger usable.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{Ledger, Prepared, Recorded, Sealed, Stage, SALT_LEN};
use crate::entry::{Actor, Body};
use crate::error::WriteError;
use crate::state::State;

/// A queued change: checks it against the state and builds the entry's body (always a
/// new entry, with no lookup pseudonym: queued changes are grants and withdrawals).
pub(super) type Prepare = Box<dyn FnOnce(&State) -> Result<Body, WriteError> + Send>;

struct Job {
    actor: Actor,
    prepare: Prepare,
    ticket: Arc<Ticket>,
}

/// Where a queued caller waits: for its result, or to be told to lead.
#[derive(Default)]
struct Ticket {
    slot: Mutex<Slot>,
    ready: Condvar,
}

#[derive(Default)]
enum Slot {
    #[default]
    Waiting,
    Lead,
    Done(Result<Recorded, WriteError>),
}

/// The queue's and tickets' critical sections only move values in and out, so their
/// data is consistent even if a thread panicked while holding the lock: go on using it
/// rather than leave callers waiting forever.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Ticket {
    fn set(&self, value: Slot) {
        *lock(&self.slot) = value;
        self.ready.notify_one();
    }
}

/// The callers of a batch still owed a result. Dropped with some left (only by a
/// leader that unwinds), it tells each that its change failed, so that nobody waits
/// forever.
struct Owed(Vec<Arc<Ticket>>);

impl Owed {
    /// Delivers one result per caller, in order. (Were the counts to differ, failing
    /// them all is better than handing a caller another's result.) From the back: a
    /// ticket leaves `self` only as it gets its result.
    fn deliver(mut self, mut results: Vec<Result<Recorded, WriteError>>) {
        if results.len() != self.0.len() {
            results.clear();
        }
        while let Some(ticket) = self.0.pop() {
            ticket.set(Slot::Done(results.pop().unwrap_or(Err(WriteError::Failed))));
        }
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        for t in self.0.drain(..) {
            t.set(Slot::Done(Err(WriteError::Failed)));
        }
    }
}

/// The queue of changes waiting for a leader.
#[derive(Default)]
pub(super) struct Combiner {
    queue: Mutex<Queue>,
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    /// Some thread is leading (or has been told to).
    leading: bool,
}

/// Hands the lead on (or gives it up), at the latest when the leader unwinds, so that
/// queued changes never wait for a leader that is gone.
struct LeadGuard<'a> {
    combiner: &'a Combiner,
    handed_on: bool,
}

impl LeadGuard<'_> {
    fn hand_on(&mut self) {
        if std::mem::replace(&mut self.handed_on, true) {
            return;
        }
        let mut q = lock(&self.combiner.queue);
        match q.jobs.first() {
            // That caller's change is queued, so it is still waiting: it leads next.
            Some(next) => next.ticket.set(Slot::Lead),
            None => q.leading = false,
        }
    }
}

impl Drop for LeadGuard<'_> {
    fn drop(&mut self) {
        self.hand_on();
    }
}

impl Ledger {
    /// Appends a change through the combining queue (group commit only; the other
    /// settings append directly). Same results and guarantees as a direct append.
    pub(super) fn append_combined(&self, actor: Actor, prepare: Prepare) -> Result<Recorded, WriteError> {
        if self.inner.durability != super::Durability::GroupCommit {
            return self.append(actor, move |state, _| Ok(Prepared::Append(prepare(state)?, None)));
        }
        let combiner = &self.inner.combiner;
        let ticket = Arc::new(Ticket::default());
        let lead = {
            let mut q = lock(&combiner.queue);
            q.jobs.push(Job {
                actor,
                prepare,
                ticket: Arc::clone(&ticket),
            });
            !std::mem::replace(&mut q.leading, true)
        };
        if !lead {
            let mut slot = lock(&ticket.slot);
            loop {
                match std::mem::take(&mut *slot) {
                    Slot::Done(result) => return result,
                    Slot::Lead => break,
                    Slot::Waiting => {
                        slot = ticket.ready.wait(slot).unwrap_or_else(PoisonError::into_inner);
                    }
                }
            }
        }
        self.lead_one_batch();
        let result = match std::mem::take(&mut *lock(&ticket.slot)) {
            Slot::Done(result) => result,
            // Our change was in the batch we led, so it has its result.
            Slot::Waiting | Slot::Lead => Err(WriteError::Failed),
        };
        result
    }

    /// Appends everything queued (the leader's own change included) in two stages:
    /// signs the batch under the writer lock, then locks the storing stage, releases the
    /// writer and hands the lead on, so that the next batch is signed while this one is
    /// stored, applied and synced; then delivers the results.
    fn lead_one_batch(&self) {
        let inner = &*self.inner;
        let combiner = &inner.combiner;
        let jobs = std::mem::take(&mut lock(&combiner.queue).jobs);
        let mut guard = LeadGuard {
            combiner,
            handed_on: false,
        };
        let owed = Owed(jobs.iter().map(|j| Arc::clone(&j.ticket)).collect());
        let (signed, stage) = self.sign_batch(jobs);
        guard.hand_on();
        let Some(mut stage) = stage else {
            // Nothing signed (or nothing can be stored): every change failed.
            owed.deliver(
                signed
                    .into_iter()
                    .map(|r| r.and_then(|_| Err(WriteError::Failed)))
                    .collect(),
            );
            return;
        };
        let mut results: Vec<Result<Recorded, WriteError>> = Vec::with_capacity(signed.len());
        let mut stored = Vec::with_capacity(signed.len());
        let mut lost = false;
        for r in signed {
            // A sync that failed since the batch was signed (storing waited behind the
            // batch before), or while its earlier entries were stored: nothing more is
            // stored. The writer has moved past these entries, so nothing may be chained
            // to them either: the ledger takes no more writes.
            if r.is_ok() && !stage.failed && inner.group.state.lock().map_or(true, |s| s.failed) {
                stage.failed = true;
                lost = true;
            }
            results.push(match r {
                Ok(_) if stage.failed => Err(WriteError::Failed),
                Ok(sealed) => match inner.store.append_entry(sealed.entry.seq, &sealed.bytes) {
                    Ok(()) => {
                        let recorded = sealed.recorded();
                        stored.push(sealed);
                        Ok(recorded)
                    }
                    Err(e) => {
                        // Entries signed after this one chain to it.
                        stage.failed = true;
                        lost = true;
                        Err(WriteError::from(e))
                    }
                },
                Err(e) => Err(e),
            });
        }
        let last_new = stored.last().map(|s| s.entry.seq);
        let applied = self.apply_stored(stored);
        drop(stage);
        if lost {
            // Before any caller of the batch is answered (below).
            inner.mark_failed();
            // The writer lock is taken before the stage, never after: only now.
            if let Ok(mut w) = inner.writer.lock() {
                w.failed = true;
            }
        }
        let durable = match (applied, last_new) {
            (Err(e), _) => Err(e),
            (Ok(()), Some(seq)) => self.make_durable(seq),
            (Ok(()), None) => Ok(()),
        };
        if durable.is_err() {
            // Stored, but not applied, or no sync covering it succeeded: the entries are
            // in the store and may take effect after a reopen, so `NotDurable` (never
            // `Failed`, which says nothing was done).
            for r in &mut results {
                if r.is_ok() {
                    *r = Err(super::SyncError::Refused.not_durable());
                }
            }
        }
        owed.deliver(results);
    }

    /// Under the writer lock: checks each queued change against the current state (all
    /// under one hold of its read lock), signs it as the next entry and moves the writer
    /// on; then locks the storing stage before releasing the writer, so batches are
    /// stored in the order they were signed. Returns one result per job, and the stage
    /// (`None` if nothing was signed, or the stage's lock is poisoned: then every
    /// result is an error).
    ///
    /// The state may not yet include the batch signed before, which is being stored
    /// meanwhile: queued changes are grants and withdrawals. Their check that the subject
    /// is not erased no grant or withdrawal can change. A grant or withdrawal through a
    /// type whose purpose needs no consent is refused unless the subject has a consent
    /// record for its id (`consent_for`), which a grant in that earlier batch can create:
    /// the refusal is then answered as if it came before that grant, which is still
    /// unacknowledged, so no caller can see the order differ (review r147). Every other write locks the
    /// storing stage before it checks the state, so it sees everything signed before.
    fn sign_batch(&self, jobs: Vec<Job>) -> (Vec<Result<Sealed, WriteError>>, Option<MutexGuard<'_, Stage>>) {
        let inner = &*self.inner;
        let Ok(mut w) = inner.writer.lock() else {
            return (jobs.iter().map(|_| Err(inner.writer_poisoned())).collect(), None);
        };
        let checked: Vec<_> = match inner.state.read() {
            Ok(state) => {
                // A change for a new purpose id takes a place among the ids the state
                // can hold: counted here, with those of the batch's earlier changes and
                // of the batch still being stored, so that two changes cannot both
                // take the last place. (Ids the state has applied since leave first.)
                w.new_purposes.retain(|p| !state.knows_purpose(p));
                let pending = &mut w.new_purposes;
                jobs.into_iter()
                    .map(|job| {
                        let body = (job.prepare)(&state).and_then(|body| match body.purpose() {
                            Some(p) if !state.reserve_purpose(p, pending) => Err(super::too_many_purposes()),
                            _ => Ok(body),
                        });
                        (job.actor, body)
                    })
                    .collect()
            }
            Err(_) => jobs
                .into_iter()
                .map(|job| (job.actor, Err(WriteError::Failed)))
                .collect(),
        };
        // One read of the system's random source for the whole batch's salts (a system
        // call per entry cost about 2 % of signing one).
        let mut salts = vec![0u8; SALT_LEN.saturating_mul(checked.len())];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salts);
        let mut signed = Vec::with_capacity(checked.len());
        // After a failed sync nothing more is signed: it could never be acknowledged,
        // and would still take effect after a reopen.
        let sync_failed = inner.group.state.lock().map_or(true, |s| s.failed);
        for ((actor, body), salt) in checked.into_iter().zip(salts.chunks_exact(SALT_LEN)) {
            signed.push(body.and_then(|body| {
                if w.failed || sync_failed {
                    return Err(WriteError::Failed);
                }
                let salt = <[u8; SALT_LEN]>::try_from(salt).map_err(|_| WriteError::Failed)?;
                let sealed = self.seal(&w, actor, body, None, salt)?;
                w.next_seq = sealed.entry.seq.saturating_add(1);
                w.last_hash = sealed.hash;
                Ok(sealed)
            }));
        }
        if !signed.iter().any(Result::is_ok) {
            return (signed, None);
        }
        match inner.stage.lock() {
            Ok(stage) => (signed, Some(stage)),
            Err(_) => {
                // Entries were signed that can never be stored.
                w.failed = true;
                inner.mark_failed();
                (
                    signed.into_iter().map(|_| Err(WriteError::Failed)).collect(),
                    None,
                )
            }
        }
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;
    use crate::{Durability, PseudonymKey, RecipientScope, SigningKey, SubjectId};

    /// A queued grant of purpose `id`, checked as [`Ledger::grant`] checks one.
    fn grant(subject: &SubjectId, id: &str) -> (Job, Arc<Ticket>) {
        let (subject, id) = (subject.clone(), id.to_string());
        let ticket = Arc::new(Ticket::default());
        let prepare: Prepare = Box::new(move |state: &State| {
            if !state.can_hold_purpose(&id) {
                return Err(super::super::too_many_purposes());
            }
            Ok(Body::Granted {
                subject,
                purpose: id,
                scope: RecipientScope::first_party(),
                expires_at: None,
            })
        });
        let job = Job {
            actor: Actor::System,
            prepare,
            ticket: Arc::clone(&ticket),
        };
        (job, ticket)
    }

    fn result(ticket: &Ticket) -> Result<Recorded, WriteError> {
        match std::mem::take(&mut *lock(&ticket.slot)) {
            Slot::Done(r) => r,
            Slot::Waiting | Slot::Lead => panic!("no result delivered"),
        }
    }

    /// Two changes of one batch for two new purpose ids, with one place left among the
    /// ids the state can hold: the first takes it, the second is refused. (Both were
    /// checked against the same state and both passed: the second was signed and stored
    /// without effect.)
    #[test]
    fn two_queued_changes_cannot_both_take_the_last_purpose_place() {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .durability(Durability::GroupCommit)
            .open()
            .unwrap();
        let filler = SubjectId::new("filler").unwrap();
        let run = |jobs: Vec<(Job, Arc<Ticket>)>| {
            let tickets: Vec<_> = {
                let mut q = lock(&l.inner.combiner.queue);
                assert!(!std::mem::replace(&mut q.leading, true));
                jobs.into_iter()
                    .map(|(job, ticket)| {
                        q.jobs.push(job);
                        ticket
                    })
                    .collect()
            };
            l.lead_one_batch();
            tickets.iter().map(|t| result(t)).collect::<Vec<_>>()
        };
        for chunk in (0..crate::MAX_PURPOSE_IDS - 1).collect::<Vec<_>>().chunks(512) {
            let jobs = chunk.iter().map(|n| grant(&filler, &format!("p{n}"))).collect();
            assert!(run(jobs).iter().all(Result::is_ok));
        }
        assert!(l.inner.state.read().unwrap().can_hold_purpose("last"));
        let refused = |r: &Result<Recorded, WriteError>| matches!(r, Err(WriteError::Input(e)) if e.to_string().contains("purpose"));
        let results = run(vec![
            grant(&filler, "last"),
            grant(&filler, "one-too-many"),
            grant(&filler, "last"),
            grant(&filler, "p7"),
        ]);
        assert!(results[0].is_ok());
        assert!(refused(&results[1]), "{:?}", results[1]);
        assert!(
            results[2].is_ok() && results[3].is_ok(),
            "ids held or taken keep working"
        );
        let len = l.len();
        assert!(refused(&run(vec![grant(&filler, "later")])[0]));
        assert_eq!(l.len(), len, "nothing stored for a refused change");
    }
}
