//! Group commit by combining: concurrent grants and withdrawals are queued, and one
//! thread at a time (the leader) appends everything queued under a single hold of the
//! writer lock, hands the lead to a waiting thread, waits for one sync covering its
//! batch, and then wakes each of its batch's callers with their result.
//!
//! Without it, every append hands the writer lock from thread to thread and then waits
//! for the group's sync: two or three sleeps and wake-ups per append, which on a small
//! machine cost more than the signing itself. With it, a caller that is not leading
//! sleeps once.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};

use super::{Ledger, Prepared, Recorded};
use crate::entry::Actor;
use crate::error::WriteError;
use crate::state::State;

/// A queued change: what to append, and where to put the result.
pub(super) type Prepare = Box<dyn FnOnce(&State) -> Result<Prepared, WriteError> + Send>;

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

/// Hands the lead on (or gives it up) and fails the batch's callers if the leader
/// unwinds before delivering their results, so that nobody waits forever.
struct LeadGuard<'a> {
    combiner: &'a Combiner,
    undelivered: Vec<Arc<Ticket>>,
    handed_on: bool,
}

impl LeadGuard<'_> {
    fn hand_on(&mut self) {
        if self.handed_on {
            return;
        }
        self.handed_on = true;
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
        for t in self.undelivered.drain(..) {
            t.set(Slot::Done(Err(WriteError::Failed)));
        }
        self.hand_on();
    }
}

impl Ledger {
    /// Appends a change through the combining queue (group commit only; the other
    /// settings append directly). Same results and guarantees as a direct append.
    pub(super) fn append_combined(&self, actor: Actor, prepare: Prepare) -> Result<Recorded, WriteError> {
        if self.inner.durability != super::Durability::GroupCommit {
            return self.append(actor, move |state, _| prepare(state));
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
        let mut slot = lock(&ticket.slot);
        match std::mem::take(&mut *slot) {
            Slot::Done(result) => result,
            // Our change was in the batch we led, so it has its result.
            Slot::Waiting | Slot::Lead => Err(WriteError::Failed),
        }
    }

    /// Appends everything queued (the leader's own change included), hands the lead on
    /// before syncing so the next batch is appended during this one's sync, then
    /// delivers the results.
    fn lead_one_batch(&self) {
        let combiner = &self.inner.combiner;
        let jobs = std::mem::take(&mut lock(&combiner.queue).jobs);
        let mut guard = LeadGuard {
            combiner,
            undelivered: jobs.iter().map(|j| Arc::clone(&j.ticket)).collect(),
            handed_on: false,
        };
        let mut results = Vec::with_capacity(jobs.len());
        let mut last_new = None;
        match self.inner.writer.lock() {
            Ok(mut w) => {
                for job in jobs {
                    let prepare = job.prepare;
                    let r = self.append_locked(&mut w, job.actor, |state, _, _| prepare(state), |_| {});
                    if let Ok((rec, true)) = &r {
                        last_new = Some(rec.seq);
                    }
                    results.push((job.ticket, r));
                }
            }
            Err(_) => {
                for job in jobs {
                    results.push((job.ticket, Err(WriteError::Failed)));
                }
            }
        }
        guard.hand_on();
        let durable = match last_new {
            Some(seq) => self.make_durable(seq),
            None => Ok(()),
        };
        for (ticket, r) in results {
            let r = match r {
                // Appended, but the sync covering it failed: it may not survive a crash.
                Ok((_, true)) if durable.is_err() => Err(WriteError::Failed),
                Ok((rec, _)) => Ok(rec),
                Err(e) => Err(e),
            };
            ticket.set(Slot::Done(r));
        }
        guard.undelivered.clear();
    }
}
