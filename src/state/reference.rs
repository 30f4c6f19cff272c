//! The first, plain implementation of the decision state (hash maps keyed by pseudonym
//! and subject id), kept as the reference model that tests compare the compact state
//! against.
#![allow(dead_code, reason = "reference model for tests")]

use std::collections::HashMap;

use crate::decision::{Denied, Evidence};
use crate::entry::{Body, Entry};
use crate::identifier::Pseudonym;
use crate::purpose::{LegalBasis, Purpose};
use crate::recipient::{Recipient, RecipientScope};
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// Index of an interned purpose id.
type PurposeIdx = u16;

/// One identifier the ledger knows, by lookup pseudonym.
#[derive(Debug)]
pub(crate) struct Ident {
    pub(crate) subject: SubjectId,
    pub(crate) collections: Vec<Collection>,
}

/// The identifier was collected for a purpose at entry `seq`.
#[derive(Debug)]
pub(crate) struct Collection {
    pub(crate) purpose: PurposeIdx,
    pub(crate) seq: u64,
    pub(crate) basis: LegalBasis,
    pub(crate) scope: RecipientScope,
}

/// The latest consent event for a (subject, purpose).
#[derive(Debug, Clone)]
pub(crate) enum Consent {
    Granted {
        seq: u64,
        scope: RecipientScope,
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

#[derive(Debug, Default)]
pub(crate) struct SubjectState {
    pub(crate) erased_at: Option<u64>,
    pub(crate) consents: Vec<(PurposeIdx, Consent)>,
    /// Lookup pseudonyms of the subject's identifiers.
    pub(crate) lookups: Vec<Pseudonym>,
}

/// The whole decision state.
#[derive(Debug, Default)]
pub(crate) struct Reference {
    /// Number of entries applied (the ledger position).
    pub(crate) len: u64,
    purposes: Vec<String>,
    purpose_idx: HashMap<String, PurposeIdx>,
    idents: HashMap<Pseudonym, Ident>,
    subjects: HashMap<SubjectId, SubjectState>,
}

impl Reference {
    fn intern(&mut self, purpose: &str) -> PurposeIdx {
        if let Some(i) = self.purpose_idx.get(purpose) {
            return *i;
        }
        // Purpose ids are application constants: far fewer than 65,536. Saturating keeps
        // this total; two purposes sharing the last index would only over-deny.
        let i = PurposeIdx::try_from(self.purposes.len()).unwrap_or(PurposeIdx::MAX);
        self.purposes.push(purpose.to_owned());
        self.purpose_idx.insert(purpose.to_owned(), i);
        i
    }

    pub(crate) fn ident(&self, lookup: &Pseudonym) -> Option<&Ident> {
        self.idents.get(lookup)
    }

    pub(crate) fn subject(&self, subject: &SubjectId) -> Option<&SubjectState> {
        self.subjects.get(subject)
    }

    /// The erasure entry of a subject, if it was erased.
    pub(crate) fn erased_at(&self, subject: &SubjectId) -> Option<u64> {
        self.subjects.get(subject).and_then(|s| s.erased_at)
    }

    /// Subjects that were erased.
    pub(crate) fn erased_subjects(&self) -> impl Iterator<Item = &SubjectId> {
        self.subjects
            .iter()
            .filter(|(_, s)| s.erased_at.is_some())
            .map(|(id, _)| id)
    }

    /// Whether `lookup` is already collected by `subject` for `purpose` on `basis` with
    /// exactly `scope`.
    pub(crate) fn existing_collection(
        &self,
        lookup: &Pseudonym,
        purpose: &str,
        basis: LegalBasis,
        scope: &RecipientScope,
    ) -> Option<u64> {
        let p = *self.purpose_idx.get(purpose)?;
        self.idents
            .get(lookup)?
            .collections
            .iter()
            .find(|c| c.purpose == p && c.basis == basis && c.scope == *scope)
            .map(|c| c.seq)
    }

    /// Applies one entry. `lookup` is the lookup pseudonym for a collection entry, when
    /// known (it is not after erasure: then the collection stays unlinked).
    pub(crate) fn apply(&mut self, entry: &Entry, lookup: Option<Pseudonym>) {
        self.len = entry.seq.saturating_add(1);
        let Some(subject) = entry.body.subject() else {
            return;
        };
        if !self.subjects.contains_key(subject) {
            self.subjects.insert(subject.clone(), SubjectState::default());
        }
        let purpose = match &entry.body {
            Body::Collected { purpose, .. }
            | Body::Granted { purpose, .. }
            | Body::Withdrawn { purpose, .. }
            | Body::Expired { purpose, .. } => Some(self.intern(purpose)),
            _ => None,
        };
        let mut removed = Vec::new();
        if let Some(s) = self.subjects.get_mut(subject) {
            match (&entry.body, purpose) {
                (
                    Body::Granted {
                        scope, expires_at, ..
                    },
                    Some(p),
                ) => set_consent(
                    s,
                    p,
                    Consent::Granted {
                        seq: entry.seq,
                        scope: scope.clone(),
                        expires_at: *expires_at,
                    },
                ),
                (Body::Withdrawn { .. }, Some(p)) => set_consent(s, p, Consent::Withdrawn { seq: entry.seq }),
                (Body::Expired { .. }, Some(p)) => {
                    let (grant, at) = match s.consents.iter().find(|(q, _)| *q == p) {
                        Some((_, Consent::Granted { seq, expires_at, .. })) => {
                            (*seq, expires_at.unwrap_or(entry.timestamp))
                        }
                        _ => (entry.seq, entry.timestamp),
                    };
                    set_consent(s, p, Consent::Expired { grant, at });
                }
                (Body::Collected { .. }, _) => {
                    if let Some(l) = lookup {
                        if !s.lookups.contains(&l) {
                            s.lookups.push(l);
                        }
                    }
                }
                (Body::Erased { .. }, _) => {
                    s.erased_at = Some(entry.seq);
                    s.consents.clear();
                    removed = std::mem::take(&mut s.lookups);
                }
                _ => {}
            }
        }
        for l in removed {
            self.idents.remove(&l);
        }
        if let (Body::Collected { basis, scope, .. }, Some(p), Some(l)) = (&entry.body, purpose, lookup) {
            let ident = self.idents.entry(l).or_insert_with(|| Ident {
                subject: subject.clone(),
                collections: Vec::new(),
            });
            let c = Collection {
                purpose: p,
                seq: entry.seq,
                basis: *basis,
                scope: scope.clone(),
            };
            match ident.collections.iter_mut().find(|c| c.purpose == p) {
                Some(existing) => *existing = c,
                None => ident.collections.push(c),
            }
        }
    }

    /// Decides a use of the identifier with lookup pseudonym `lookup` for purpose `P`
    /// by `recipient` at time `now`.
    pub(crate) fn decide<P: Purpose>(
        &self,
        lookup: &Pseudonym,
        recipient: &Recipient,
        now: impl FnOnce() -> Timestamp,
    ) -> Result<Evidence, Denied> {
        let purpose = P::ID;
        let ident = self.idents.get(lookup).ok_or(Denied::UnknownIdentifier)?;
        let subject = self
            .subjects
            .get(&ident.subject)
            .ok_or(Denied::UnknownIdentifier)?;
        if let Some(at) = subject.erased_at {
            return Err(Denied::SubjectErased { at });
        }
        let p = *self
            .purpose_idx
            .get(purpose)
            .ok_or(Denied::NotCollectedForPurpose { purpose })?;
        let collection = ident
            .collections
            .iter()
            .find(|c| c.purpose == p)
            .ok_or(Denied::NotCollectedForPurpose { purpose })?;
        // A built-in id reserved for a basis that is not consent: that basis alone.
        let lone = crate::purpose::lone_basis(purpose);
        if lone.is_some_and(|b| b != collection.basis) {
            return Err(Denied::NotCollectedForPurpose { purpose });
        }
        let has_consent_record = lone.is_none() && subject.consents.iter().any(|(q, _)| *q == p);
        let needs_consent =
            P::LEGAL_BASIS.requires_consent() || collection.basis.requires_consent() || has_consent_record;
        let decided_at = now();
        let (allowed_by, basis) = if needs_consent {
            let consent = subject
                .consents
                .iter()
                .find(|(q, _)| *q == p)
                .map(|(_, c)| c)
                .ok_or(Denied::NoConsent { purpose })?;
            match consent {
                Consent::Withdrawn { seq } => return Err(Denied::Withdrawn { purpose, at: *seq }),
                Consent::Expired { grant, at, .. } => {
                    return Err(Denied::Expired {
                        purpose,
                        grant: *grant,
                        at: *at,
                    })
                }
                Consent::Granted {
                    seq,
                    scope,
                    expires_at,
                } => {
                    if let Some(at) = expires_at {
                        if decided_at >= *at {
                            return Err(Denied::Expired {
                                purpose,
                                grant: *seq,
                                at: *at,
                            });
                        }
                    }
                    if !scope.covers(recipient) {
                        return Err(Denied::RecipientNotCovered {
                            recipient: recipient.clone(),
                            entry: *seq,
                        });
                    }
                    (*seq, LegalBasis::Consent)
                }
            }
        } else {
            if !collection.scope.covers(recipient) {
                return Err(Denied::RecipientNotCovered {
                    recipient: recipient.clone(),
                    entry: collection.seq,
                });
            }
            (collection.seq, collection.basis)
        };
        Ok(Evidence {
            subject: ident.subject.clone(),
            purpose,
            basis,
            position: self.len,
            allowed_by,
            collected_at: collection.seq,
            decided_at,
        })
    }
}

fn set_consent(s: &mut SubjectState, p: PurposeIdx, c: Consent) {
    match s.consents.iter_mut().find(|(q, _)| *q == p) {
        Some((_, existing)) => *existing = c,
        None => s.consents.push((p, c)),
    }
}
