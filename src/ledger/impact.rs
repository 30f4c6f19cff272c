//! Impact queries: after an incident, who was affected, by which uses, and which of
//! those uses had no valid consent under a stated hypothesis.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use super::Ledger;
use crate::entry::Body;
use crate::error::ReadError;
use crate::identifier::{IdentifierKind, Pseudonym};
use crate::purpose::{LegalBasis, Purpose};
use crate::recipient::Recipient;
use crate::records::DecisionRecord;
use crate::state::{Consent, State};
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// A counterfactual rule under which recorded uses are judged again, to measure the
/// blast radius of a bug or a misconfiguration.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Hypothesis {
    /// Identifiers their subject gave for `given_for` count as never consented for
    /// `used_for`, whatever the ledger says (for example: every number given for
    /// two-factor authentication was never consented for advertising).
    NeverConsented {
        /// Purpose id the identifier was given for.
        given_for: String,
        /// Purpose id of the uses judged.
        used_for: String,
    },
    /// Every change takes effect at the moment it was recorded: a use decided at time T
    /// is judged against all changes recorded up to T, even if it was decided on an
    /// older state (a cached decision, a lagging replica, a ticker-stamped time). Uses
    /// are judged at their decision time: a `Use` kept and delivered later is recorded,
    /// and judged, when it was decided (delivery itself is not recorded). A change
    /// recorded in the same millisecond as the use counts: times are milliseconds, and
    /// which came first within one cannot be told from them (a use decided on the current
    /// state a moment before a withdrawal in the same millisecond is named), so the report
    /// errs on the side of naming the use. While the system clock is behind the latest
    /// time the ledger has seen (after it was stepped back), that one millisecond lasts
    /// until the clock catches up ([`Clock`](crate::Clock)): every use made then is
    /// judged against every change made then, and may be named wrongly.
    WithdrawalsImmediate,
    /// Consents granted in `[from, until)` count as never given (a consent switch that
    /// was on by default, a form that pre-ticked a box).
    ///
    /// A use that rested on a voided grant is reported as [`Unlawful::NoConsent`]
    /// when no other consent was in force, even in the one case where the decision
    /// would not have needed consent: a purpose id declared on two legal bases, the
    /// identifier collected through the type that needs no consent, and the use decided
    /// through that type. A decision record does not say which purpose type made the
    /// decision, so that case cannot be told from a use through the consent-based type;
    /// the report errs on the side of naming the use.
    GrantsVoidBetween {
        /// Start of the period (inclusive).
        from: Timestamp,
        /// End of the period (exclusive); `None`: no end, so a grant recorded at the
        /// largest [`Timestamp`] is void too.
        until: Option<Timestamp>,
    },
}

impl Hypothesis {
    /// [`Hypothesis::NeverConsented`] for identifiers given for `G`, used for `U`.
    pub fn never_consented<G: Purpose, U: Purpose>() -> Self {
        Hypothesis::NeverConsented {
            given_for: G::ID.to_owned(),
            used_for: U::ID.to_owned(),
        }
    }
}

/// What an impact query asks: uses in a time window, for a purpose (or all), by a
/// recipient (or all), judged under some hypotheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpactQuery {
    from: Timestamp,
    /// `None`: no end (uses stamped at the largest time included).
    until: Option<Timestamp>,
    purpose: Option<String>,
    recipient: Option<Recipient>,
    hypotheses: Vec<Hypothesis>,
}

impl ImpactQuery {
    /// Uses made in `[from, until)`, any purpose, any recipient, no hypothesis. With
    /// [`Recording::Aggregated`](crate::Recording::Aggregated), an aggregate whose
    /// first-to-last span overlaps the window counts with all its uses: the answer may
    /// include uses up to a bucket outside the window, never fewer.
    ///
    /// The end is exclusive, so no window of this kind holds a use stamped at the
    /// largest [`Timestamp`]: for every use from a time on, ask [`ImpactQuery::since`].
    pub fn between(from: Timestamp, until: Timestamp) -> Self {
        ImpactQuery {
            from,
            until: Some(until),
            purpose: None,
            recipient: None,
            hypotheses: Vec::new(),
        }
    }

    /// Uses made at `from` or later, with no end; otherwise as
    /// [`ImpactQuery::between`]. `since(Timestamp::EPOCH)` asks for every recorded use.
    pub fn since(from: Timestamp) -> Self {
        ImpactQuery {
            from,
            until: None,
            purpose: None,
            recipient: None,
            hypotheses: Vec::new(),
        }
    }

    /// Only uses for purpose `P`.
    pub fn purpose<P: Purpose>(self) -> Self {
        self.purpose_id(P::ID)
    }

    /// Only uses for the purpose with this id (for tools that read it as text).
    pub fn purpose_id(mut self, id: &str) -> Self {
        self.purpose = Some(id.to_owned());
        self
    }

    /// Only uses by this recipient.
    pub fn recipient(mut self, recipient: Recipient) -> Self {
        self.recipient = Some(recipient);
        self
    }

    /// Judges the uses under `hypothesis` as well (hypotheses combine; one given twice
    /// counts once).
    pub fn assume(mut self, hypothesis: Hypothesis) -> Self {
        if !self.hypotheses.contains(&hypothesis) {
            self.hypotheses.push(hypothesis);
        }
        self
    }

    fn selects(&self, r: &DecisionRecord) -> bool {
        let (first, last) = r.times();
        self.until.is_none_or(|until| first < until)
            && last >= self.from
            && self.purpose.as_deref().is_none_or(|p| p == r.purpose())
            && self.recipient.as_ref().is_none_or(|x| x == r.recipient())
    }

    fn withdrawals_immediate(&self) -> bool {
        self.hypotheses.contains(&Hypothesis::WithdrawalsImmediate)
    }

    fn grant_void(&self, at: Timestamp) -> bool {
        self.hypotheses.iter().any(|h| match h {
            Hypothesis::GrantsVoidBetween { from, until } => {
                *from <= at && until.is_none_or(|until| at < until)
            }
            _ => false,
        })
    }
}

/// Why a recorded use had no valid basis under the query's hypotheses.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Unlawful {
    /// The identifier was given for another purpose (a [`Hypothesis::NeverConsented`]).
    GivenFor {
        /// The purpose the identifier was given for.
        purpose: String,
    },
    /// No consent was in force.
    NoConsent,
    /// Consent had been withdrawn at this entry.
    Withdrawn {
        /// The withdrawal entry.
        at: u64,
    },
    /// The grant had expired.
    Expired {
        /// The grant.
        grant: u64,
    },
    /// The consent in force did not cover the recipient.
    RecipientNotCovered {
        /// The grant.
        grant: u64,
    },
    /// The use did not rest on consent, and the identifier's collection for the purpose
    /// in force did not cover the recipient (it had been collected again with a
    /// narrower scope).
    CollectionNotCovering {
        /// The collection in force.
        collection: u64,
    },
    /// The identifier's collection for the purpose in force was on another legal basis
    /// than the one the purpose id is reserved for (`security`, collected through a type
    /// of a version of this crate before the reservation): a decision would have found
    /// it not collected for the purpose.
    NotCollectedOnBasis {
        /// The collection in force.
        collection: u64,
    },
    /// The subject had been erased at this entry.
    Erased {
        /// The erasure entry.
        at: u64,
    },
}

impl std::fmt::Display for Unlawful {
    /// The reason in words, with the entries it names (no personal data: purpose ids
    /// and ledger positions only).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unlawful::GivenFor { purpose } => write!(f, "the identifier was given for {purpose:?}"),
            Unlawful::NoConsent => f.write_str("no consent was in force"),
            Unlawful::Withdrawn { at } => write!(f, "consent had been withdrawn at entry {at}"),
            Unlawful::Expired { grant } => write!(f, "the consent granted at entry {grant} had expired"),
            Unlawful::RecipientNotCovered { grant } => {
                write!(
                    f,
                    "the consent granted at entry {grant} did not cover the recipient"
                )
            }
            Unlawful::CollectionNotCovering { collection } => write!(
                f,
                "the collection in force (entry {collection}) did not cover the recipient"
            ),
            Unlawful::NotCollectedOnBasis { collection } => write!(
                f,
                "the collection in force (entry {collection}) was on another legal basis than the purpose's"
            ),
            Unlawful::Erased { at } => write!(f, "the subject had been erased at entry {at}"),
        }
    }
}

/// A recorded use (or aggregate of uses) that had no valid basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnlawfulUse {
    /// The record.
    pub record: DecisionRecord,
    /// Its uses known to have had no valid basis: all of them, or, for an aggregate
    /// whose first and last uses were judged differently, the one of the two that had
    /// none (its uses in between are counted in
    /// [`ImpactReport::uses_of_unknown_verdict`]).
    pub uses: u64,
    /// Kind of the identifier used, from its collection entry.
    pub kind: Option<IdentifierKind>,
    /// Why.
    pub reason: Unlawful,
}

/// The answer to an [`ImpactQuery`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImpactReport {
    /// Decision records selected.
    pub records: u64,
    /// Uses they count.
    pub uses: u64,
    /// Subjects whose data was used, sorted.
    pub subjects: Vec<SubjectId>,
    /// Identifiers used, each once however often it was collected again (with
    /// another scope, say): (subject, the earliest of its collection entries the
    /// uses name, kind), sorted.
    pub identifiers: Vec<(SubjectId, u64, Option<IdentifierKind>)>,
    /// Uses per recipient.
    pub by_recipient: Vec<(Recipient, u64)>,
    /// Records without a valid basis under the hypotheses, in record order.
    pub unlawful: Vec<UnlawfulUse>,
    /// Uses known to have had no valid basis (the sum of [`UnlawfulUse::uses`]).
    pub unlawful_uses: u64,
    /// Uses of aggregates ([`Recording::Aggregated`](crate::Recording::Aggregated))
    /// whose first and last uses were judged differently, other than those two: each
    /// may or may not have had a valid basis (only [`Recording::Every`](crate::Recording::Every)
    /// keeps the position of every use). At most `unlawful_uses + uses_of_unknown_verdict`
    /// uses had none.
    pub uses_of_unknown_verdict: u64,
    /// Subjects affected by them, sorted.
    pub unlawful_subjects: Vec<SubjectId>,
    /// Records whose use rested on an entry the ledger no longer vouches for: one
    /// signed by a key at or after the position the log revoked it from
    /// ([`VerifyReport::untrusted`](crate::VerifyReport::untrusted)), in record order.
    /// Decisions, and the verdicts above, take such entries as recorded (a revocation
    /// rewrites nothing); after a key was stolen, these are the uses a forged consent
    /// or collection may have allowed, to check with the people concerned.
    pub untrusted: Vec<UntrustedUse>,
}

/// A recorded use (or aggregate of uses) that rested on an untrusted entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UntrustedUse {
    /// The record.
    pub record: DecisionRecord,
    /// The untrusted entry it rested on: the one that allowed it, or else its
    /// collection.
    pub entry: u64,
    /// The run of untrusted entries `entry` is in, and the revocation that made it so.
    pub range: super::UntrustedRange,
}

/// An identifier used: the earliest collection entry the uses name, and its kind.
type IdentifierUsed = (u64, Option<IdentifierKind>);

/// The collection in force of an identifier (its subject and subject pseudonym) for a
/// purpose id: its scope, entry and legal basis, as of the position being replayed. A
/// later collection for the same purpose replaces it, as it does in the decision state.
type InForce = HashMap<(SubjectId, Pseudonym, String), (crate::recipient::RecipientScope, u64, LegalBasis)>;

/// What pass one learns about collections.
struct Collection {
    subject: SubjectId,
    pseudonym: Pseudonym,
    kind: IdentifierKind,
}

impl Ledger {
    /// Answers an impact query from the decision records (see
    /// [`LedgerBuilder::record_decisions`](crate::LedgerBuilder::record_decisions)) and
    /// the log: which subjects' data was used in the window, by whom, through which
    /// identifiers, and which uses had no valid consent when judged again under the
    /// query's hypotheses. Each use is judged at the ledger position it was decided at.
    /// An aggregate keeps the positions of its first and last uses only: both are
    /// judged; judged alike, all its uses are counted so (a verdict that changed and
    /// changed back inside one time bucket is not seen); judged differently, one use
    /// counts as without a valid basis and the uses in between as of unknown verdict
    /// ([`ImpactReport::uses_of_unknown_verdict`]).
    ///
    /// # Errors
    /// Storage failures, a corrupt decision record, an entry that does not decode.
    pub fn impact(&self, q: &ImpactQuery) -> Result<ImpactReport, ReadError> {
        let records: Vec<DecisionRecord> = self.decision_records_matching(|r| q.selects(r))?;
        let store = &*self.inner.store;
        // Only the entries the live state applied (see `authorize_at`).
        let applied = usize::try_from(self.applied_len()?).unwrap_or(usize::MAX);

        // Pass one: timestamps (to place a time on the log) and collections.
        let mut times: Vec<Timestamp> = Vec::new();
        let mut collections: HashMap<u64, Collection> = HashMap::new();
        // Where each identifier was first given for each purpose: a use is judged by
        // the collections made before it only.
        let mut given: HashMap<(SubjectId, Pseudonym, String), u64> = HashMap::new();
        // Who signed each entry, for the uses that rested on an untrusted one.
        let mut signers = super::replay::Signers::default();
        for e in super::decoded_entries(store).take(applied) {
            let e = e?;
            signers.observe(&e);
            if let Body::Collected {
                subject,
                kind,
                pseudonym,
                purpose,
                ..
            } = &e.body
            {
                given
                    .entry((subject.clone(), *pseudonym, purpose.clone()))
                    .or_insert(e.seq);
                collections.insert(
                    e.seq,
                    Collection {
                        subject: subject.clone(),
                        pseudonym: *pseudonym,
                        kind: *kind,
                    },
                );
            }
            times.push(e.timestamp);
        }

        // Each record is judged at its first and last use: (position, time, record, end:
        // 0 first, 1 last). A record of one use (or of uses judged at one point) is
        // judged once, for both ends.
        let mut points: Vec<(u64, Timestamp, usize, usize)> = Vec::new();
        for (i, r) in records.iter().enumerate() {
            let (p1, p2) = r.positions();
            let (t1, t2) = r.times();
            let at = |p: u64, t: Timestamp| {
                if q.withdrawals_immediate() {
                    p.max(times.partition_point(|x| *x <= t) as u64)
                } else {
                    p
                }
            };
            let (first, last) = ((at(p1, t1), t1), (at(p2, t2), t2));
            points.push((first.0, first.1, i, 0));
            if last != first {
                points.push((last.0, last.1, i, 1));
            }
        }
        points.sort_unstable_by_key(|(p, ..)| *p);

        // Pass two: replay (with voided grants left out) and judge at each point.
        // Verdicts at the first and the last use (`None` at the last: judged once).
        let mut verdicts: Vec<[Option<Option<Unlawful>>; 2]> = vec![[None, None]; records.len()];
        let mut state = State::default();
        let mut in_force: InForce = HashMap::new();
        // (subject, purpose) whose latest grant replayed here was voided: the log's next
        // `Expired` for them is that grant's lapse, not the lapse of the grant the replay
        // has in force (an earlier one, whose own expiry `judge` checks).
        let mut voided_latest: HashSet<(SubjectId, String)> = HashSet::new();
        let mut entries = super::decoded_entries(store).take(applied);
        let mut next = 0u64;
        for (p, t, i, end) in points {
            while next < p {
                match entries.next() {
                    Some(e) => {
                        let e = e?;
                        let void = matches!(e.body, Body::Granted { .. }) && q.grant_void(e.timestamp);
                        if let Body::Collected {
                            subject,
                            pseudonym,
                            purpose,
                            scope,
                            basis,
                            ..
                        } = &e.body
                        {
                            let key = (subject.clone(), *pseudonym, purpose.clone());
                            in_force.insert(key, (scope.clone(), e.seq, *basis));
                        }
                        let lapse_of_voided = match &e.body {
                            Body::Granted { subject, purpose, .. } => {
                                let key = (subject.clone(), purpose.clone());
                                if void {
                                    voided_latest.insert(key);
                                } else {
                                    voided_latest.remove(&key);
                                }
                                false
                            }
                            Body::Withdrawn { subject, purpose } => {
                                voided_latest.remove(&(subject.clone(), purpose.clone()));
                                false
                            }
                            Body::Expired { subject, purpose } => {
                                voided_latest.remove(&(subject.clone(), purpose.clone()))
                            }
                            _ => false,
                        };
                        if void || lapse_of_voided {
                            state.len = e.seq.saturating_add(1);
                        } else {
                            state.apply(&e, None);
                        }
                        next = e.seq.saturating_add(1);
                    }
                    None => break,
                }
            }
            let (Some(r), Some(slot)) = (records.get(i), verdicts.get_mut(i).and_then(|v| v.get_mut(end)))
            else {
                continue;
            };
            *slot = Some(judge(q, &state, r, (p, t), &collections, &given, &in_force));
        }

        let mut report = ImpactReport {
            records: records.len() as u64,
            ..ImpactReport::default()
        };
        let mut subjects = BTreeSet::new();
        // One per identifier: keyed by its pseudonym where the log names it, else by
        // the collection entry the record names.
        let mut identifiers: HashMap<(SubjectId, Result<Pseudonym, u64>), IdentifierUsed> = HashMap::new();
        let mut by_recipient: BTreeMap<Recipient, u64> = BTreeMap::new();
        let mut unlawful_subjects = BTreeSet::new();
        let untrusted = signers.untrusted();
        let untrusted_at = |seq: u64| untrusted.iter().find(|u| u.from <= seq && seq <= u.to).copied();
        for (r, [at_first, at_last]) in records.into_iter().zip(verdicts) {
            if let Some((entry, range)) = [r.allowed_by(), r.collected_at()]
                .into_iter()
                .find_map(|seq| untrusted_at(seq).map(|range| (seq, range)))
            {
                report.untrusted.push(UntrustedUse {
                    record: r.clone(),
                    entry,
                    range,
                });
            }
            report.uses = report.uses.saturating_add(r.count());
            subjects.insert(r.subject().clone());
            let collection = collections.get(&r.collected_at());
            let kind = collection.map(|c| c.kind);
            let which = collection.map(|c| c.pseudonym).ok_or(r.collected_at());
            let first = identifiers
                .entry((r.subject().clone(), which))
                .or_insert((r.collected_at(), kind));
            if r.collected_at() < first.0 {
                *first = (r.collected_at(), kind);
            }
            let total = by_recipient.entry(r.recipient().clone()).or_default();
            *total = total.saturating_add(r.count());
            let at_first = at_first.flatten();
            // Judged once: the last use is judged as the first.
            let at_last = at_last.unwrap_or_else(|| at_first.clone());
            // Both ends alike: every use of the record is counted so. Ends judged
            // differently: one use is known to have had no valid basis, the uses in
            // between are of unknown verdict.
            let (reason, uses) = match (at_first, at_last) {
                (None, None) => continue,
                (Some(reason), Some(_)) => (reason, r.count()),
                (Some(reason), None) | (None, Some(reason)) => {
                    report.uses_of_unknown_verdict = report
                        .uses_of_unknown_verdict
                        .saturating_add(r.count().saturating_sub(2));
                    (reason, 1)
                }
            };
            report.unlawful_uses = report.unlawful_uses.saturating_add(uses);
            unlawful_subjects.insert(r.subject().clone());
            report.unlawful.push(UnlawfulUse {
                record: r,
                uses,
                kind,
                reason,
            });
        }
        report.subjects = subjects.into_iter().collect();
        let identifiers: BTreeSet<_> = identifiers
            .into_iter()
            .map(|((subject, _), (at, kind))| (subject, at, kind))
            .collect();
        report.identifiers = identifiers.into_iter().collect();
        report.by_recipient = by_recipient.into_iter().collect();
        report.unlawful_subjects = unlawful_subjects.into_iter().collect();
        Ok(report)
    }
}

/// The reason a use had no valid basis at this state and time, if any.
fn judge(
    q: &ImpactQuery,
    state: &State,
    r: &DecisionRecord,
    (position, at): (u64, Timestamp),
    collections: &HashMap<u64, Collection>,
    given: &HashMap<(SubjectId, Pseudonym, String), u64>,
    in_force: &InForce,
) -> Option<Unlawful> {
    if let Some(at) = state.erased_at(r.subject()) {
        return Some(Unlawful::Erased { at });
    }
    // Only the hypotheses about this use's purpose are looked up, with one key whose
    // purpose is rewritten in place: many hypotheses cost a comparison each, not an
    // allocation and a lookup each.
    let mut key: Option<(SubjectId, Pseudonym, String)> = None;
    for h in &q.hypotheses {
        let Hypothesis::NeverConsented { given_for, used_for } = h else {
            continue;
        };
        if used_for != r.purpose() {
            continue;
        }
        if key.is_none() {
            match collections.get(&r.collected_at()) {
                Some(c) => key = Some((c.subject.clone(), c.pseudonym, String::new())),
                None => break,
            }
        }
        if let Some(k) = key.as_mut() {
            k.2.clear();
            k.2.push_str(given_for);
            if given.get(&*k).is_some_and(|first| *first < position) {
                return Some(Unlawful::GivenFor {
                    purpose: given_for.clone(),
                });
            }
        }
    }
    // The identifier's collection for the purpose in force at this point (collected
    // again since the use, it may have another scope or basis).
    let collection = collections
        .get(&r.collected_at())
        .and_then(|c| in_force.get(&(c.subject.clone(), c.pseudonym, r.purpose().to_owned())));
    // As decisions do, whatever an old log holds (entries from before built-in ids were
    // reserved for their bases): for an id whose reserved basis alone decides
    // (`security`), the collection must be on that basis and cover the recipient, and
    // consent records count for nothing.
    if let Some(basis) = crate::purpose::lone_basis(r.purpose()) {
        return match collection {
            Some((_, seq, on)) if *on != basis => Some(Unlawful::NotCollectedOnBasis { collection: *seq }),
            Some((scope, seq, _)) if !scope.covers(r.recipient()) => {
                Some(Unlawful::CollectionNotCovering { collection: *seq })
            }
            _ => None,
        };
    }
    // Otherwise consent decides a use that relied on it, any use of a purpose the
    // subject has a consent record for, and every use of an id reserved for consent.
    let consent = state.consent_for(r.subject(), r.purpose());
    let collection_needs_consent = collection.is_some_and(|(_, _, basis)| basis.requires_consent());
    let reserved_for_consent =
        crate::purpose::reserved_basis(r.purpose()).is_some_and(LegalBasis::requires_consent);
    if r.legal_basis() != LegalBasis::Consent
        && !reserved_for_consent
        && consent.is_none()
        && !collection_needs_consent
    {
        // The collection decides, as in a decision: it must cover the recipient.
        return match collection {
            Some((scope, seq, _)) if !scope.covers(r.recipient()) => {
                Some(Unlawful::CollectionNotCovering { collection: *seq })
            }
            _ => None,
        };
    }
    match consent {
        None => Some(Unlawful::NoConsent),
        Some(Consent::Withdrawn { seq }) => Some(Unlawful::Withdrawn { at: seq }),
        Some(Consent::Expired { grant, .. }) => Some(Unlawful::Expired { grant }),
        Some(Consent::Granted {
            seq,
            scope,
            expires_at,
        }) => {
            if expires_at.is_some_and(|e| at >= e) {
                Some(Unlawful::Expired { grant: seq })
            } else if !scope.covers(r.recipient()) {
                Some(Unlawful::RecipientNotCovered { grant: seq })
            } else {
                None
            }
        }
    }
}
