//! The in-memory consent state that decisions read.
//!
//! It is a pure function of the log: replaying the entries in order (with the lookup
//! pseudonyms from the index for collection entries) rebuilds it exactly. It never does
//! I/O, so a decision is a table probe and a few comparisons under a read lock.
//!
//! # Layout
//!
//! Built to hold millions of subjects in little memory (see `table.rs`):
//!
//! - subjects are interned to `u32` indices; a subject record is its id plus one inline
//!   consent (40 bytes), whose expiry time (or lapse time) is part of the consent
//!   record; further consents of the same subject live in a small side map that is
//!   empty for most subjects;
//! - identifier records (lookup pseudonym, purpose, legal basis, collection entry,
//!   scope, subject: 48 bytes) sit in chunks behind an 8-byte-slot index;
//! - recipient scopes and purpose ids are interned once and referred to by index;
//! - nothing records which log entries are about which subject: a subject's history is
//!   read from the log itself ([`Ledger::history`](crate::Ledger::history) scans it), as
//!   it is asked for rarely and only one person at a time.
//!
//! An erased subject's identifier records stay in the index but are treated as absent
//! (the subject's record says it is erased); a later collection of the same identifier
//! by another subject reuses them. So until the next open, which builds the state
//! without them, each identifier erased in this session keeps about 48 bytes and an
//! index slot (review r147: a session that erases many accounts grows by that much
//! per identifier; answers are not affected).

pub(crate) mod snapshot;
mod table;

#[cfg(test)]
mod reference;

use std::collections::HashMap;

use crate::decision::{Denied, Evidence};
use crate::entry::{Body, Entry};
use crate::identifier::Pseudonym;
use crate::purpose::{LegalBasis, Purpose};
use crate::recipient::{Recipient, RecipientScope};
use crate::subject::SubjectId;
use crate::time::Timestamp;

use table::{pack_collection, Chunked, IdentRec, IdentTable, SubjectIndex, MAX_PURPOSES};

/// Index of an interned purpose id.
type PurposeIdx = u16;

/// "No subject": never a subject index (there are fewer than `u32::MAX - 1`).
const NO_SUBJECT: u32 = u32::MAX;

/// Lookups read ahead together by [`State::warm`]. (At a million subjects, one thread:
/// 32 matched 1M uploaded rows 3-14 % faster than 16, and 64 or 8 slower, in
/// alternating runs; at 10k subjects, where the state fits the caches, 16, 32 and 64
/// were within 3 %.)
pub(crate) const WARM: usize = 32;

/// The lookup pseudonym an erased subject's identifier records are left with once its
/// erasure is done (see [`State::forget_lookups`]). No identifier has it: it would be
/// an HMAC-SHA256 output of all zeros.
const FORGOTTEN: Pseudonym = Pseudonym([0; 32]);

/// Consent record kinds.
const NONE: u8 = 0;
const GRANTED: u8 = 1;

/// The fewest interned scopes that make a new one compact the table first.
const SCOPE_COMPACTION_MIN: usize = 32;
const WITHDRAWN: u8 = 2;
const EXPIRED: u8 = 3;
/// The subject was erased at `seq`; no other consent state is kept.
const ERASED: u8 = 4;

/// Consent record flags.
/// `time` is the grant's expiry (granted) or the time it lapsed (expired). Without this
/// flag `time` is the epoch and means nothing: every time, the epoch included, is a
/// valid expiry, so the flag and not a sentinel value says whether there is one.
const HAS_TIME: u8 = 1;
/// (Inline record only.) `more` holds the subject's consents to other purposes.
const MORE: u8 = 2;

/// The latest consent event of a subject for one purpose: 24 bytes.
#[derive(Debug, Clone, Copy, Default)]
struct ConsentRec {
    /// The grant or withdrawal entry; for `EXPIRED`, the grant that lapsed; for `ERASED`,
    /// the erasure entry.
    seq: u64,
    /// With [`HAS_TIME`]: the grant's expiry, or the time it lapsed; else the epoch.
    time: Timestamp,
    /// Interned scope of a grant.
    scope: u32,
    purpose: PurposeIdx,
    kind: u8,
    flags: u8,
}

impl ConsentRec {
    /// The record's time, if it has one (see [`HAS_TIME`]).
    fn time(&self) -> Option<Timestamp> {
        (self.flags & HAS_TIME != 0).then_some(self.time)
    }
}

/// A subject: its id and its first consent record (40 bytes).
#[derive(Debug)]
struct SubjectRec {
    id: SubjectId,
    first: ConsentRec,
}

/// The latest consent event for a (subject, purpose), as read from the state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(dead_code, reason = "read by consent listings (expiry) and tests")]
pub(crate) enum Consent<'s> {
    Granted {
        seq: u64,
        scope: &'s RecipientScope,
        expires_at: Option<Timestamp>,
    },
    Withdrawn {
        seq: u64,
    },
    Expired {
        grant: u64,
        at: Timestamp,
    },
}

/// A decision question prepared once for many identifiers: purpose `P` (resolved to
/// its interned index) and one recipient.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Query<'r> {
    purpose_id: &'static str,
    purpose: Option<PurposeIdx>,
    needs_consent: bool,
    /// The basis a built-in id is reserved for, when it is not consent
    /// ([`crate::purpose::reserved_basis`]): then that basis alone decides (see
    /// [`crate::purpose::lone_basis`]).
    lone_basis: Option<LegalBasis>,
    recipient: &'r Recipient,
}

/// The whole decision state.
#[derive(Debug, Default)]
pub(crate) struct State {
    /// Number of entries applied (the ledger position).
    pub(crate) len: u64,
    purposes: Vec<Box<str>>,
    purpose_idx: HashMap<Box<str>, PurposeIdx>,
    scopes: Vec<RecipientScope>,
    scope_idx: HashMap<RecipientScope, u32>,
    /// How many interned scopes make the next new one compact the table first
    /// ([`State::compact_scopes`]); at least [`SCOPE_COMPACTION_MIN`].
    compact_scopes_at: usize,
    subjects: Chunked<SubjectRec>,
    subject_index: SubjectIndex,
    idents: IdentTable,
    /// Consents beyond each subject's first, by subject index.
    more: HashMap<u32, Vec<ConsentRec>>,
}

/// Leaves an erased subject's identifier record linked to nothing: no lookup, and no
/// subject. (Its slot keeps the first four bytes of the old lookup, as the index's home
/// order needs, until the next open builds the state without it: with the subject
/// kept, those four bytes would still tell, to whoever could read the process's memory
/// and held the pseudonym key, which erased subject an identifier tried against them
/// had belonged to; review of stop 32.) Such a record counts as erased's, so a later
/// collection of one of its identifiers may reuse it (see `collect`).
fn forget(r: &mut IdentRec) {
    r.lookup = FORGOTTEN;
    r.subject = NO_SUBJECT;
}

const fn basis_code(b: LegalBasis) -> u8 {
    match b {
        LegalBasis::Consent => 1,
        LegalBasis::Contract => 2,
        LegalBasis::LegitimateInterest => 3,
        LegalBasis::LegalObligation => 4,
    }
}

/// Unknown codes cannot be stored by [`basis_code`]; reading one as consent-based
/// fails closed (a use then needs a grant).
const fn basis_from(code: u8) -> LegalBasis {
    match code {
        2 => LegalBasis::Contract,
        3 => LegalBasis::LegitimateInterest,
        4 => LegalBasis::LegalObligation,
        _ => LegalBasis::Consent,
    }
}

impl State {
    /// The interned index of a purpose id, if it was ever recorded.
    fn purpose_index(&self, id: &str) -> Option<PurposeIdx> {
        // A handful of purposes is the norm: comparing lengths and bytes beats hashing.
        if self.purposes.len() <= 16 {
            self.purposes
                .iter()
                .position(|p| **p == *id)
                .and_then(|i| PurposeIdx::try_from(i).ok())
        } else {
            self.purpose_idx.get(id).copied()
        }
    }

    /// Whether an entry for purpose `id` would take effect: the id is known, or there
    /// is room for one more (see [`MAX_PURPOSES`]).
    pub(crate) fn can_hold_purpose(&self, id: &str) -> bool {
        self.purpose_idx.contains_key(id) || self.purposes.len() < MAX_PURPOSES
    }

    /// Takes a place for purpose `id` among the ids the state can hold, counting the ids
    /// in `pending` (new ids of changes signed that the state does not include yet: group
    /// commit checks a batch against a state that includes neither the batch before it,
    /// still being stored, nor the batch's own earlier changes). `pending` must hold only
    /// ids the state does not know. `true` if `id` is known, pending, or there is room
    /// (it then joins `pending`); `false` if there is none.
    pub(crate) fn reserve_purpose(&self, id: &str, pending: &mut Vec<Box<str>>) -> bool {
        if self.purpose_idx.contains_key(id) || pending.iter().any(|p| **p == *id) {
            return true;
        }
        if self.purposes.len().saturating_add(pending.len()) >= MAX_PURPOSES {
            return false;
        }
        pending.push(id.into());
        true
    }

    /// Whether purpose `id` is interned.
    pub(crate) fn knows_purpose(&self, id: &str) -> bool {
        self.purpose_idx.contains_key(id)
    }

    /// Interns a purpose id. `None` once [`MAX_PURPOSES`] distinct ids were seen: entries
    /// for further purposes are then not applied, so their uses are denied (fail closed;
    /// the ledger refuses to write such entries, see [`State::can_hold_purpose`]).
    fn intern_purpose(&mut self, id: &str) -> Option<PurposeIdx> {
        if let Some(i) = self.purpose_idx.get(id) {
            return Some(*i);
        }
        if self.purposes.len() >= MAX_PURPOSES {
            return None;
        }
        let i = PurposeIdx::try_from(self.purposes.len()).ok()?;
        self.purposes.push(id.into());
        self.purpose_idx.insert(id.into(), i);
        Some(i)
    }

    /// [`State::intern_scope`] for an entry being applied: a scope not interned yet
    /// first compacts the table when it has grown to [`State::compact_scopes_at`].
    fn intern_scope_applying(&mut self, scope: &RecipientScope) -> Option<u32> {
        if !self.scope_idx.contains_key(scope)
            && self.scopes.len() >= self.compact_scopes_at.max(SCOPE_COMPACTION_MIN)
        {
            self.compact_scopes();
        }
        self.intern_scope(scope)
    }

    /// Drops the interned scopes that no grant in force and no identifier record
    /// refers to, and renumbers the references: a scope replaced by another (a grant
    /// narrowed, a set of apps chosen again) stayed interned for good, and in every
    /// snapshot (review h35-h: about 15 KB for each replaced grant of 200 developer
    /// apps). Runs when the table has doubled since the last time (and has grown by at
    /// least one scope per 1,024 subjects and identifier records), so its cost, a pass
    /// over those, is spread over as many new scopes.
    fn compact_scopes(&mut self) {
        let mut used = vec![false; self.scopes.len()];
        let mut mark = |scope: u32| {
            if let Some(u) = used.get_mut(scope as usize) {
                *u = true;
            }
        };
        for s in self.subjects.iter() {
            if s.first.kind == GRANTED {
                mark(s.first.scope);
            }
        }
        for c in self.more.values().flatten() {
            if c.kind == GRANTED {
                mark(c.scope);
            }
        }
        // Every identifier record, an erased subject's too (a snapshot names its scope).
        for r in self.idents.recs.iter() {
            mark(r.scope);
        }
        let mut renumbered = vec![0u32; self.scopes.len()];
        let mut kept = Vec::new();
        for (i, scope) in std::mem::take(&mut self.scopes).into_iter().enumerate() {
            if used.get(i).copied().unwrap_or(false) {
                if let (Some(r), Ok(n)) = (renumbered.get_mut(i), u32::try_from(kept.len())) {
                    *r = n;
                }
                kept.push(scope);
            }
        }
        let new = |scope: u32| renumbered.get(scope as usize).copied().unwrap_or(0);
        for s in self.subjects.iter_mut() {
            if s.first.kind == GRANTED {
                s.first.scope = new(s.first.scope);
            }
        }
        for c in self.more.values_mut().flatten() {
            if c.kind == GRANTED {
                c.scope = new(c.scope);
            }
        }
        for r in self.idents.recs.iter_mut() {
            r.scope = new(r.scope);
        }
        self.scope_idx = kept.iter().cloned().zip(0u32..).collect();
        self.scopes = kept;
        // Twice the scopes kept, and no fewer than one per 1,024 subjects and identifier
        // records: a pass costs in proportion to those, so a new scope costs a
        // bounded share of one, and the scopes left dead meanwhile stay a small part
        // of the state.
        let size = self.subjects.len().saturating_add(self.idents.recs.len()) / 1024;
        self.compact_scopes_at = self
            .scopes
            .len()
            .saturating_mul(2)
            .max(size)
            .max(SCOPE_COMPACTION_MIN);
    }

    fn intern_scope(&mut self, scope: &RecipientScope) -> Option<u32> {
        if let Some(i) = self.scope_idx.get(scope) {
            return Some(*i);
        }
        let i = u32::try_from(self.scopes.len()).ok().filter(|i| *i < u32::MAX)?;
        self.scopes.push(scope.clone());
        self.scope_idx.insert(scope.clone(), i);
        Some(i)
    }

    fn scope_covers(&self, scope: u32, recipient: &Recipient) -> bool {
        self.scopes
            .get(scope as usize)
            .is_some_and(|s| s.covers(recipient))
    }

    fn subject_rec(&self, index: u32) -> Option<&SubjectRec> {
        self.subjects.get(index as usize)
    }

    fn find_subject(&self, subject: &SubjectId) -> Option<u32> {
        let subjects = &self.subjects;
        self.subject_index
            .find(subject.as_str(), |i| subjects.get(i).map(|s| &s.id))
    }

    /// Makes room for about `subjects` subjects and `identifiers` identifier records, so
    /// that rebuilding a large state does not grow its indexes step by step.
    pub(crate) fn reserve(&mut self, subjects: usize, identifiers: usize) {
        let recs = &self.subjects;
        self.subject_index
            .reserve(subjects, |i| recs.get(i).map(|s| &s.id));
        self.idents.reserve(identifiers);
    }

    fn subject_or_insert(&mut self, subject: &SubjectId) -> Option<u32> {
        // Consecutive entries are often about the same subject.
        if let Some(last) = self.subjects.len().checked_sub(1) {
            if self.subjects.get(last).is_some_and(|s| s.id == *subject) {
                return u32::try_from(last).ok();
            }
        }
        if let Some(i) = self.find_subject(subject) {
            return Some(i);
        }
        let index = u32::try_from(self.subjects.len())
            .ok()
            .filter(|i| *i < NO_SUBJECT - 1)?;
        self.subjects.push(SubjectRec {
            id: subject.clone(),
            first: ConsentRec::default(),
        });
        let subjects = &self.subjects;
        self.subject_index
            .insert(subject.as_str(), index, |i| subjects.get(i).map(|s| &s.id));
        Some(index)
    }

    fn is_erased(&self, index: u32) -> bool {
        self.subject_rec(index).is_none_or(|s| s.first.kind == ERASED)
    }

    /// The subject currently holding the identifier with lookup pseudonym `lookup`.
    pub(crate) fn ident_subject(&self, lookup: &Pseudonym) -> Option<&SubjectId> {
        self.idents
            .find(lookup)
            .filter_map(|(_, r)| self.subject_rec(r.subject))
            .find(|s| s.first.kind != ERASED)
            .map(|s| &s.id)
    }

    /// The position of a collection by `subject` (not erased) of the identifier with
    /// lookup `lookup`, if it holds it: the entry that recorded its subject pseudonym.
    pub(crate) fn held_collection(&self, lookup: &Pseudonym, subject: &SubjectId) -> Option<u64> {
        let index = self.find_subject(subject)?;
        if self.is_erased(index) {
            return None;
        }
        self.idents
            .find(lookup)
            .find(|(_, r)| r.subject == index)
            .map(|(_, r)| r.seq())
    }

    /// Whether applying `body` can only turn allowed decisions into denied ones: a
    /// change that only takes away ([`Body::only_takes_away`]: a withdrawal, say), or a
    /// grant or a collection that narrows what is in force. A grant narrows when the
    /// subject's consent for the purpose is granted now with a scope that holds the new
    /// one and an expiry no earlier; a collection (with its lookup pseudonym), when the
    /// identifier's collection for the purpose in force is the same subject's, on the
    /// same basis, with a scope that holds the new one. After a failed sync such a
    /// change is applied all the same, as a withdrawal is (review h35-g).
    pub(crate) fn only_narrows(&self, body: &Body, lookup: Option<&Pseudonym>) -> bool {
        match body {
            Body::Granted {
                subject,
                purpose,
                scope,
                expires_at,
            } => match self.consent_for(subject, purpose) {
                Some(Consent::Granted {
                    scope: now,
                    expires_at: until,
                    ..
                }) => {
                    now.holds(scope)
                        && match (until, expires_at) {
                            (None, _) => true,
                            (Some(old), Some(new)) => *new <= old,
                            (Some(_), None) => false,
                        }
                }
                _ => false,
            },
            Body::Collected {
                subject,
                purpose,
                basis,
                scope,
                ..
            } => {
                let (Some(lookup), Some(index), Some(p)) =
                    (lookup, self.find_subject(subject), self.purpose_index(purpose))
                else {
                    return false;
                };
                // The record decisions read for the purpose: its holder's, not erased.
                self.idents
                    .find(lookup)
                    .find(|(_, r)| r.purpose() == p && !self.is_erased(r.subject))
                    .is_some_and(|(_, r)| {
                        r.subject == index
                            && basis_from(r.basis()) == *basis
                            && usize::try_from(r.scope)
                                .ok()
                                .and_then(|i| self.scopes.get(i))
                                .is_some_and(|now| now.holds(scope))
                    })
            }
            other => other.only_takes_away(),
        }
    }

    /// Lookup pseudonyms of the identifiers `subject` holds (for erasure).
    pub(crate) fn lookups_of(&self, subject: &SubjectId) -> Vec<Pseudonym> {
        match self.find_subject(subject) {
            Some(index) if !self.is_erased(index) => self.lookups_of_index(index),
            _ => Vec::new(),
        }
    }

    /// Lookup pseudonyms of the identifiers `subject` held when it was erased and that
    /// no other subject has collected since: what a repeated erasure removes again (the
    /// first may have failed, or still be running).
    pub(crate) fn lookups_left_by(&self, subject: &SubjectId) -> Vec<Pseudonym> {
        self.find_subject(subject)
            .map_or_else(Vec::new, |index| self.lookups_of_index(index))
    }

    fn lookups_of_index(&self, index: u32) -> Vec<Pseudonym> {
        let mut out: Vec<Pseudonym> = self
            .idents
            .recs
            .iter()
            .filter(|r| r.subject == index && r.lookup != FORGOTTEN)
            .map(|r| r.lookup)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Forgets the lookup pseudonyms of an erased subject's identifiers (its removals
    /// from the store done): its records in memory no longer link those identifiers to
    /// it. They stay in the table, never found by a lookup (nothing looks up
    /// [`FORGOTTEN`]); a later collection of one of the identifiers reuses such a record
    /// from its probe run (see `collect`). Records of another subject under the same
    /// lookups are kept.
    pub(crate) fn forget_lookups(&mut self, subject: &SubjectId, lookups: &[Pseudonym]) {
        let Some(index) = self.find_subject(subject) else {
            return;
        };
        if !self.is_erased(index) {
            return;
        }
        for lookup in lookups {
            let found: Vec<usize> = self
                .idents
                .find(lookup)
                .filter(|(_, r)| r.subject == index)
                .map(|(i, _)| i)
                .collect();
            for i in found {
                if let Some(r) = self.idents.get_mut(i) {
                    forget(r);
                }
            }
        }
    }

    /// Whether any identifier record in memory, of any subject, erased or not, holds
    /// `lookup`.
    #[cfg(test)]
    pub(crate) fn holds_lookup(&self, lookup: &Pseudonym) -> bool {
        self.idents.recs.iter().any(|r| r.lookup == *lookup)
    }

    /// Whether a search of the identifier index finds every record under its lookup
    /// (for checks of a decoded snapshot, whose index is built in bulk): records of an
    /// erased subject whose lookup was forgotten are never searched for.
    #[cfg(any(test, feature = "fuzzing"))]
    pub(crate) fn index_finds_every_record(&self) -> bool {
        self.idents
            .recs
            .iter()
            .enumerate()
            .all(|(i, r)| r.lookup == FORGOTTEN || self.idents.find(&r.lookup).any(|(j, _)| j == i))
    }

    /// [`State::forget_lookups`] for every erased subject (their erasures finished at
    /// open).
    pub(crate) fn forget_erased(&mut self) {
        let erased: Vec<bool> = self.subjects.iter().map(|s| s.first.kind == ERASED).collect();
        for i in 0..self.idents.recs.len() {
            if let Some(r) = self.idents.get_mut(i) {
                if erased.get(r.subject as usize).copied().unwrap_or(false) {
                    forget(r);
                }
            }
        }
    }

    /// Whether any entry applied is about `subject` (erased or not).
    pub(crate) fn knows_subject(&self, subject: &SubjectId) -> bool {
        self.find_subject(subject).is_some()
    }

    fn erased_at_index(&self, index: u32) -> Option<u64> {
        self.subject_rec(index)
            .filter(|s| s.first.kind == ERASED)
            .map(|s| s.first.seq)
    }

    /// The erasure entry of a subject, if it was erased.
    pub(crate) fn erased_at(&self, subject: &SubjectId) -> Option<u64> {
        self.find_subject(subject).and_then(|i| self.erased_at_index(i))
    }

    /// Every current grant that has an expiry: (subject, purpose id, grant entry, expiry).
    /// Not those for an id whose reserved basis alone decides (`security`: a log from
    /// before the reservation may hold them), which decide nothing and cannot be renewed.
    pub(crate) fn grants_with_expiry(&self) -> Vec<(SubjectId, String, u64, Timestamp)> {
        self.consents()
            .filter(|(_, purpose, _)| crate::purpose::lone_basis(purpose).is_none())
            .filter_map(|(id, purpose, c)| match c {
                Consent::Granted {
                    seq,
                    expires_at: Some(at),
                    ..
                } => Some((id.clone(), purpose.to_owned(), seq, at)),
                _ => None,
            })
            .collect()
    }

    /// Subjects that were erased.
    pub(crate) fn erased_subjects(&self) -> impl Iterator<Item = &SubjectId> {
        self.subjects
            .iter()
            .filter(|s| s.first.kind == ERASED)
            .map(|s| &s.id)
    }

    /// Number of subjects ever seen (subject indices are below this).
    #[cfg(test)]
    pub(crate) fn subject_count(&self) -> usize {
        self.subjects.len()
    }

    /// Every subject's latest consent event per purpose: (subject, purpose id, event).
    pub(crate) fn consents(&self) -> impl Iterator<Item = (&SubjectId, &str, Consent<'_>)> + '_ {
        (0u32..).zip(self.subjects.iter()).flat_map(move |(index, s)| {
            let more = if s.first.flags & MORE != 0 {
                self.more.get(&index).map(Vec::as_slice).unwrap_or(&[])
            } else {
                &[]
            };
            std::iter::once(&s.first)
                .chain(more)
                .filter_map(move |c| Some((&s.id, self.purposes.get(c.purpose as usize)?, self.view(c)?)))
                .map(|(id, p, c)| (id, &**p, c))
        })
    }

    fn view(&self, c: &ConsentRec) -> Option<Consent<'_>> {
        match c.kind {
            GRANTED => Some(Consent::Granted {
                seq: c.seq,
                scope: self.scopes.get(c.scope as usize)?,
                expires_at: c.time(),
            }),
            WITHDRAWN => Some(Consent::Withdrawn { seq: c.seq }),
            EXPIRED => Some(Consent::Expired {
                grant: c.seq,
                // Always recorded with the lapse; the epoch only if the state is inconsistent.
                at: c.time().unwrap_or_default(),
            }),
            _ => None,
        }
    }

    fn consent(&self, index: u32, s: &SubjectRec, p: PurposeIdx) -> Option<ConsentRec> {
        if s.first.kind != NONE && s.first.purpose == p {
            return Some(s.first);
        }
        if s.first.flags & MORE == 0 {
            return None;
        }
        self.more.get(&index)?.iter().find(|c| c.purpose == p).copied()
    }

    /// The subject's latest consent event for purpose id `purpose`.
    pub(crate) fn consent_for(&self, subject: &SubjectId, purpose: &str) -> Option<Consent<'_>> {
        let index = self.find_subject(subject)?;
        let s = self.subject_rec(index)?;
        let c = self.consent(index, s, self.purpose_index(purpose)?)?;
        self.view(&c)
    }

    /// Whether `subject` (not erased) holds an identifier collected for `purpose` on a
    /// basis that needs consent. A scan of every collection: for the rare grant or
    /// withdrawal through a purpose type that is not consent-based.
    pub(crate) fn collected_on_consent(&self, subject: &SubjectId, purpose: &str) -> bool {
        let (Some(index), Some(p)) = (self.find_subject(subject), self.purpose_index(purpose)) else {
            return false;
        };
        !self.is_erased(index)
            && self
                .idents
                .recs
                .iter()
                .any(|r| r.subject == index && r.purpose() == p && basis_from(r.basis()).requires_consent())
    }

    /// The collections of `subject` in force, one per identifier and purpose id: the
    /// purpose id, the legal basis and the recipient scope decisions read, and the
    /// collection's log position (none for an erased or unknown subject). A scan of
    /// every identifier record.
    pub(crate) fn collections_of(
        &self,
        subject: &SubjectId,
    ) -> Vec<(&str, LegalBasis, &RecipientScope, u64)> {
        let Some(index) = self.find_subject(subject).filter(|i| !self.is_erased(*i)) else {
            return Vec::new();
        };
        self.idents
            .recs
            .iter()
            .filter(|r| r.subject == index)
            .filter_map(|r| {
                let purpose = self.purposes.get(usize::from(r.purpose()))?;
                let scope = self.scopes.get(usize::try_from(r.scope).ok()?)?;
                Some((&**purpose, basis_from(r.basis()), scope, r.seq()))
            })
            .collect()
    }

    /// Whether `lookup` is already collected by its holder for `purpose` on `basis` with
    /// exactly `scope`. (A collection on another basis is a change: the use then rests
    /// on the new basis, so it is recorded.)
    pub(crate) fn existing_collection(
        &self,
        lookup: &Pseudonym,
        purpose: &str,
        basis: LegalBasis,
        scope: &RecipientScope,
    ) -> Option<u64> {
        let p = self.purpose_index(purpose)?;
        let sc = *self.scope_idx.get(scope)?;
        self.idents
            .find(lookup)
            .find(|(_, r)| r.purpose() == p && !self.is_erased(r.subject))
            .filter(|(_, r)| r.scope == sc && basis_from(r.basis()) == basis)
            .map(|(_, r)| r.seq())
    }

    /// Applies one entry. `lookup` is the lookup pseudonym for a collection entry, when
    /// known (it is not after erasure: then the collection stays unlinked).
    pub(crate) fn apply(&mut self, entry: &Entry, lookup: Option<Pseudonym>) {
        self.len = entry.seq.saturating_add(1);
        let subject = entry.body.subject();
        let index = subject.and_then(|s| self.subject_or_insert(s));
        let Some(index) = index else {
            return;
        };
        // An erased subject has no state left to change (a valid log has no such entries).
        if self.is_erased(index) {
            return;
        }
        match &entry.body {
            Body::Collected {
                purpose,
                basis,
                scope,
                ..
            } => {
                if let (Some(l), Some(p), Some(sc)) = (
                    lookup,
                    self.intern_purpose(purpose),
                    self.intern_scope_applying(scope),
                ) {
                    self.collect(l, index, p, *basis, sc, entry.seq);
                }
            }
            Body::Granted {
                purpose,
                scope,
                expires_at,
                ..
            } => {
                if let (Some(p), Some(sc)) = (self.intern_purpose(purpose), self.intern_scope_applying(scope))
                {
                    let c = ConsentRec {
                        seq: entry.seq,
                        scope: sc,
                        purpose: p,
                        kind: GRANTED,
                        flags: 0,
                        time: Timestamp::EPOCH,
                    };
                    self.set_consent(index, c, *expires_at);
                }
            }
            Body::Withdrawn { purpose, .. } => {
                if let Some(p) = self.intern_purpose(purpose) {
                    let c = ConsentRec {
                        seq: entry.seq,
                        scope: 0,
                        purpose: p,
                        kind: WITHDRAWN,
                        flags: 0,
                        time: Timestamp::EPOCH,
                    };
                    self.set_consent(index, c, None);
                }
            }
            Body::Expired { purpose, .. } => {
                if let Some(p) = self.intern_purpose(purpose) {
                    let current = self.subject_rec(index).and_then(|s| self.consent(index, s, p));
                    let (grant, at) = match current {
                        Some(c) if c.kind == GRANTED => (c.seq, c.time().unwrap_or(entry.timestamp)),
                        _ => (entry.seq, entry.timestamp),
                    };
                    let c = ConsentRec {
                        seq: grant,
                        scope: 0,
                        purpose: p,
                        kind: EXPIRED,
                        flags: 0,
                        time: Timestamp::EPOCH,
                    };
                    self.set_consent(index, c, Some(at));
                }
            }
            Body::Erased { .. } => self.erase(index, entry.seq),
            Body::Genesis { .. } | Body::KeyRotated { .. } | Body::KeyRevoked { .. } => {}
        }
    }

    fn collect(
        &mut self,
        lookup: Pseudonym,
        subject: u32,
        p: PurposeIdx,
        basis: LegalBasis,
        scope: u32,
        seq: u64,
    ) {
        // Replace this subject's record for the purpose, else reuse a record left by an
        // erased subject (still holding this lookup, or forgotten: a forgotten record in
        // this lookup's probe run has its hash in its slot), else add one. Reusing a
        // forgotten record keeps erasing and collecting one identifier again and again
        // from piling dead records into its probe run.
        let mut same = None;
        let mut stale = None;
        for (i, r) in self.idents.same_hash(&lookup) {
            if r.lookup == lookup && r.subject == subject && r.purpose() == p {
                same = Some(i);
                break;
            }
            let reusable = (r.lookup == lookup || r.lookup == FORGOTTEN) && self.is_erased(r.subject);
            if stale.is_none() && reusable {
                stale = Some(i);
            }
        }
        let rec = IdentRec {
            lookup,
            meta: pack_collection(seq, basis_code(basis), p),
            scope,
            subject,
        };
        match same.or(stale).and_then(|i| self.idents.get_mut(i)) {
            Some(existing) => *existing = rec,
            None => {
                // `None` only when 4 billion records exist: the collection is then not
                // applied and its uses are denied.
                let _ = self.idents.insert(rec);
            }
        }
    }

    fn set_consent(&mut self, index: u32, mut c: ConsentRec, time: Option<Timestamp>) {
        if let Some(t) = time {
            c.flags |= HAS_TIME;
            c.time = t;
        }
        let p = c.purpose;
        let Some(s) = self.subjects.get_mut(index as usize) else {
            return;
        };
        if s.first.kind == NONE || s.first.purpose == p {
            c.flags |= s.first.flags & MORE;
            s.first = c;
        } else {
            s.first.flags |= MORE;
            let more = self.more.entry(index).or_default();
            match more.iter_mut().find(|x| x.purpose == p) {
                Some(existing) => *existing = c,
                None => more.push(c),
            }
        }
    }

    fn erase(&mut self, index: u32, seq: u64) {
        let Some(s) = self.subjects.get_mut(index as usize) else {
            return;
        };
        self.more.remove(&index);
        s.first = ConsentRec {
            seq,
            scope: 0,
            purpose: 0,
            kind: ERASED,
            flags: 0,
            time: Timestamp::EPOCH,
        };
    }

    /// Reads, for each of `lookups` (at most [`WARM`] are read), the memory a decision
    /// about it will read, in stages that do not depend on each other's loads: the
    /// home slots of all of them, then their first matching records, then their
    /// subjects, then the ids of those an allowed decision may clone (for its
    /// evidence). Returns a value made of what was read, for the caller to pass to
    /// [`std::hint::black_box`].
    ///
    /// Deciding many lookups one after another against a large state waits for one
    /// cache miss after another (about four per known identifier with a million
    /// subjects); issued together, the misses of a group overlap. Only reads: the
    /// decisions are made afterwards, by [`State::decide_query`], exactly as without.
    pub(crate) fn warm<'p>(
        &self,
        q: &Query<'_>,
        lookups: impl Iterator<Item = &'p Pseudonym> + Clone,
    ) -> u64 {
        let mut acc = 0u64;
        for lookup in lookups.clone().take(WARM) {
            acc ^= self.idents.home_slot(lookup);
        }
        let mut recs = [None; WARM];
        for (lookup, slot) in lookups.take(WARM).zip(recs.iter_mut()) {
            *slot = self.idents.find(lookup).next().map(|(_, rec)| rec);
        }
        let mut ids = [None; WARM];
        for (rec, id) in recs.iter().flatten().zip(ids.iter_mut()) {
            let Some(s) = self.subject_rec(rec.subject) else {
                continue;
            };
            acc ^= u64::from(s.first.kind);
            // The id is read only by an allowed decision (for its evidence).
            let may_allow = Some(rec.purpose()) == q.purpose
                && s.first.kind != ERASED
                && (s.first.kind == GRANTED
                    || s.first.flags & MORE != 0
                    || !(q.needs_consent || basis_from(rec.basis()).requires_consent()));
            if may_allow {
                *id = Some(&s.id);
            }
        }
        for id in ids.iter().flatten() {
            acc ^= u64::from(id.as_str().as_bytes().first().copied().unwrap_or(0));
        }
        acc
    }

    /// Prepares the question "may identifiers be used for `P` by `recipient`".
    pub(crate) fn query<'r, P: Purpose>(&self, recipient: &'r Recipient) -> Query<'r> {
        crate::purpose::keeps_reserved_ids::<P>();
        Query {
            purpose_id: P::ID,
            purpose: self.purpose_index(P::ID),
            needs_consent: P::LEGAL_BASIS.requires_consent(),
            lone_basis: const { crate::purpose::lone_basis(P::ID) },
            recipient,
        }
    }

    /// Decides a use of the identifier with lookup pseudonym `lookup` for purpose `P`
    /// by `recipient` at time `now`.
    pub(crate) fn decide<P: Purpose>(
        &self,
        lookup: &Pseudonym,
        recipient: &Recipient,
        now: impl Fn() -> Timestamp,
    ) -> Result<Evidence, Denied> {
        self.decide_query(&self.query::<P>(recipient), lookup, &now, &now)
            .map(|(e, ..)| e)
    }

    /// Decides one identifier of a prepared query; on success also returns the
    /// subject's index (to tell repeated matches of one subject apart).
    ///
    /// `exact` is read when the outcome depends on the time (an expiring grant), and
    /// then also stamps the evidence; otherwise `stamp` gives the evidence's time.
    pub(crate) fn decide_query(
        &self,
        q: &Query<'_>,
        lookup: &Pseudonym,
        stamp: impl FnOnce() -> Timestamp,
        exact: impl FnOnce() -> Timestamp,
    ) -> Result<(Evidence, u32, Option<Timestamp>), Denied> {
        let purpose = q.purpose_id;
        let mut known = false;
        let mut found = None;
        for (_, rec) in self.idents.find(lookup) {
            let Some(s) = self.subject_rec(rec.subject) else {
                continue;
            };
            if s.first.kind == ERASED {
                continue;
            }
            known = true;
            if Some(rec.purpose()) == q.purpose {
                found = Some((rec, s));
                break;
            }
        }
        let Some((rec, s)) = found else {
            return Err(if known {
                Denied::NotCollectedForPurpose { purpose }
            } else {
                Denied::UnknownIdentifier
            });
        };
        let collection_basis = basis_from(rec.basis());
        // Consent decides when the purpose type or the collection relies on it, and
        // also whenever the subject has a consent record for the purpose (given through
        // another type with the same id): an acknowledged withdrawal always takes effect.
        // Except for a built-in id reserved for another basis: that basis alone decides.
        let consent = match q.lone_basis {
            Some(only) if collection_basis != only => return Err(Denied::NotCollectedForPurpose { purpose }),
            Some(_) => None,
            None => self.consent(rec.subject, s, rec.purpose()),
        };
        let needs_consent = q.needs_consent || collection_basis.requires_consent() || consent.is_some();
        let mut decided_at = None;
        let mut lapses = None;
        let (allowed_by, basis) = if needs_consent {
            let c = consent.ok_or(Denied::NoConsent { purpose })?;
            match c.kind {
                GRANTED => {
                    if let Some(at) = c.time() {
                        lapses = Some(at);
                        let now = exact();
                        decided_at = Some(now);
                        if now >= at {
                            return Err(Denied::Expired {
                                purpose,
                                grant: c.seq,
                                at,
                            });
                        }
                    }
                    if !self.scope_covers(c.scope, q.recipient) {
                        return Err(Denied::RecipientNotCovered {
                            recipient: q.recipient.clone(),
                            entry: c.seq,
                        });
                    }
                    (c.seq, LegalBasis::Consent)
                }
                WITHDRAWN => return Err(Denied::Withdrawn { purpose, at: c.seq }),
                EXPIRED => {
                    return Err(Denied::Expired {
                        purpose,
                        grant: c.seq,
                        at: c.time().unwrap_or_default(),
                    })
                }
                _ => return Err(Denied::NoConsent { purpose }),
            }
        } else {
            if !self.scope_covers(rec.scope, q.recipient) {
                return Err(Denied::RecipientNotCovered {
                    recipient: q.recipient.clone(),
                    entry: rec.seq(),
                });
            }
            (rec.seq(), collection_basis)
        };
        Ok((
            Evidence {
                subject: s.id.clone(),
                purpose,
                basis,
                position: self.len,
                allowed_by,
                collected_at: rec.seq(),
                decided_at: decided_at.unwrap_or_else(stamp),
            },
            rec.subject,
            lapses,
        ))
    }
}

#[cfg(test)]
mod tests;
