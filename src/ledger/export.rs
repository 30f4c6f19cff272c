//! Exporting everything the ledger holds about one subject (GDPR Art. 15).

use std::collections::{BTreeMap, HashSet};

use serde_json::{json, Value};

use super::{Change, HistoryEntry, Ledger};
use crate::entry::Actor;
use crate::error::ReadError;
use crate::purpose::LegalBasis;
use crate::recipient::RecipientScope;
use crate::subject::SubjectId;

fn basis_term(b: LegalBasis) -> &'static str {
    match b {
        LegalBasis::Consent => "dpv:Consent",
        LegalBasis::Contract => "dpv:Contract",
        LegalBasis::LegitimateInterest => "dpv:LegitimateInterest",
        LegalBasis::LegalObligation => "dpv:LegalObligation",
    }
}

fn recipients(scope: &RecipientScope) -> Vec<String> {
    match scope.recipients() {
        Some(list) => list.iter().map(ToString::to_string).collect(),
        None => vec![scope.to_string()],
    }
}

fn entity(actor: &Actor, subject: &SubjectId) -> String {
    match actor {
        Actor::Subject => subject.as_str().to_owned(),
        Actor::Operator(n) => format!("operator {n}"),
        Actor::System => "system".to_owned(),
    }
}

impl Ledger {
    /// Everything the ledger holds about `subject`, for a data-access request (GDPR
    /// Art. 15), as JSON-LD consent records using the ISO/IEC TS 27560 information
    /// structure as mapped by the W3C Data Privacy Vocabulary (DPV): one
    /// `dpv:ConsentRecord` per consent-based purpose (one `dpv:PersonalDataHandling` per
    /// purpose relying on another legal basis) with its status, purpose, legal basis,
    /// recipients, the kinds of personal data collected, and every event (`dct:hasPart`)
    /// with its date, entity and ledger position; and every use of the subject's data
    /// recorded while decisions were recorded ([`Recording`](crate::Recording)),
    /// whatever this handle's own setting (`uses`: purpose, recipient, legal basis, the
    /// entry that allowed it, count, first and last time). No other subject's data is
    /// included. Identifiers appear by kind only: the ledger holds no values, only
    /// pseudonyms.
    ///
    /// Records follow decisions: when the subject has a consent record for a purpose id
    /// (a grant, withdrawal or expiry), every use rests on it, and the id has one
    /// consent record with the latest grant's recipients. Otherwise each identifier's
    /// own collection in force decides, and the id has one record per legal basis in
    /// force (a consent basis with no consent given: no recipients), each with its
    /// collections' recipients and events. Collections replaced since (or whose link a
    /// damaged vault lost) are in one more record, in force for nothing (`inForce:
    /// false`, no basis, no recipients), so every event of the history is in exactly one
    /// record; an erasure is the top-level `erasure` event. A record's id names its
    /// subject, purpose id and basis (`<ledger>#<subject>/<purpose>/<basis>`, or
    /// `/not-in-force`; the subject id percent-encoded), so it stays the same as the log
    /// grows; everything is read at one moment (the uses
    /// first, so that each names an entry the records hold). After an erasure the
    /// subject's history is its erasure entry alone, so the records hold none of its
    /// earlier entries, while the uses recorded before it remain (`docs/erasure.md`) and
    /// still name the entries that allowed them, by position.
    ///
    /// `how_to_withdraw` is stated in each consent record (`dpv:hasWithdrawalMethod`).
    ///
    /// Each event's `dct:date` is when it was recorded. A grant with an expiry carries
    /// `expires_at`; the `expired` event recorded after it (by
    /// [`Ledger::record_expiries`], which may run late) carries `lapsed_at`, that
    /// grant's expiry: when the consent stopped allowing use.
    ///
    /// An event signed by a key at or after the position from which the log revoked it
    /// ([`HistoryEntry::untrusted`]) carries `"untrusted": {"reason", "revoked_by",
    /// "from", "to"}` (the revocation entry and the run of entries that key signed from
    /// there, as ledger positions): the ledger does not vouch for it, and issues no
    /// receipt for it. The record's status is still the one decisions use.
    ///
    /// The events are the subject's [`history`](Ledger::history), which reads the whole
    /// log: an export takes time in proportion to the log's length.
    ///
    /// # Errors
    /// [`ReadError::Input`] when `how_to_withdraw` is longer than
    /// [`MAX_HOW_TO_WITHDRAW_LEN`](crate::MAX_HOW_TO_WITHDRAW_LEN) bytes, as for a
    /// receipt (checked first: it is copied into every consent record); storage and
    /// integrity failures while reading the log (any entry, see [`Ledger::history`]);
    /// [`ReadError::CorruptRecord`] when a stored decision record does not check (an
    /// export never leaves out uses silently).
    pub fn export_subject(&self, subject: &SubjectId, how_to_withdraw: &str) -> Result<String, ReadError> {
        if how_to_withdraw.len() > crate::receipt::MAX_HOW_TO_WITHDRAW_LEN {
            return Err(crate::error::InputError::new("how to withdraw", "is longer than 64 KiB").into());
        }
        // The uses recorded of the subject's data, read first: each was decided from a
        // state no longer than the one read next, so the entry that allowed it is in the
        // history below. (Read after, a use made meanwhile could rest on an entry the
        // records do not hold.)
        let recorded = self.decision_records_matching(|r| r.subject() == subject)?;
        // One moment for everything else: the state's collections in force, its length,
        // and the history up to that length (a change recorded meanwhile is in neither).
        let (len, known, erased_at, in_force) = {
            let state = self.inner.state.read().map_err(|_| super::poisoned())?;
            let in_force: Vec<(String, LegalBasis, RecipientScope, u64)> = state
                .collections_of(subject)
                .into_iter()
                .map(|(p, b, s, seq)| (p.to_owned(), b, s.clone(), seq))
                .collect();
            (
                state.len,
                state.knows_subject(subject),
                state.erased_at(subject),
                in_force,
            )
        };
        let history = self.history_at(subject, len, known, erased_at)?;
        let origin = crate::checkpoint::origin_of(&self.inner.ledger_id);
        let erased = history.iter().any(|h| h.change == Change::Erased);
        // The erasure itself, as an event: who erased, when, at which position.
        let erasure = history.iter().find(|h| h.change == Change::Erased).map(|h| {
            let mut event = json!({
                "@type": "dpv:Erase",
                "dct:identifier": format!("{origin}#{}", h.seq),
                "dct:date": h.timestamp.to_string(),
                "dpv:hasEntity": entity(&h.actor, subject),
                "event": "erased",
            });
            // Signed by a revoked key: marked as every other event is.
            if let (Some(mark), Some(obj)) = (untrusted_mark(&origin, h), event.as_object_mut()) {
                obj.insert("untrusted".into(), mark);
            }
            event
        });
        let mut by_purpose: BTreeMap<String, Vec<&HistoryEntry>> = BTreeMap::new();
        for h in &history {
            let purpose = match &h.change {
                Change::Collected { purpose, .. }
                | Change::Granted { purpose, .. }
                | Change::Withdrawn { purpose }
                | Change::Expired { purpose } => purpose.clone(),
                Change::Erased => continue,
            };
            by_purpose.entry(purpose).or_default().push(h);
        }
        // Purpose ids the state holds (once held, always held): the others are those of
        // a log from before the limit on purpose ids.
        let knows: HashSet<String> = {
            let state = self.inner.state.read().map_err(|_| super::poisoned())?;
            by_purpose
                .keys()
                .filter(|p| state.knows_purpose(p))
                .cloned()
                .collect()
        };
        let mut records = Vec::new();
        for (purpose, events) in by_purpose {
            // As decisions judge: a consent record for the id (a grant, withdrawal or
            // expiry) makes every identifier's use rest on consent, with the latest
            // grant's recipients. Without one, each identifier's own collection in force
            // decides: one record per legal basis in force, with its collections'
            // recipients, data kinds and events (a consent basis with no consent given:
            // no recipients). Events in no record (collections replaced since, or not in
            // force) go to one record of their own, in force for nothing.
            // Except for a built-in id reserved for a basis that is not consent
            // (`security`): that basis alone decides, whatever an old log holds, and
            // its consent events and collections on another basis are in force for
            // nothing.
            let lone = crate::purpose::lone_basis(&purpose);
            let consent_record = lone.is_none()
                && events.iter().any(|h| {
                    matches!(
                        h.change,
                        Change::Granted { .. } | Change::Withdrawn { .. } | Change::Expired { .. }
                    )
                });
            // In log order, so that the output depends on the log alone (the state's
            // table order differs after a reopen). A collection of an id reserved for
            // consent rests on consent, as decisions judge it, whatever basis an old log
            // recorded it on.
            let for_consent = crate::purpose::reserved_basis(&purpose).filter(|b| b.requires_consent());
            let mut mine: Vec<(&String, LegalBasis, &RecipientScope, u64)> = in_force
                .iter()
                .filter(|(p, basis, ..)| *p == purpose && lone.is_none_or(|b| b == *basis))
                .map(|(p, basis, scope, seq)| (p, for_consent.unwrap_or(*basis), scope, *seq))
                .collect();
            mine.sort_by_key(|c| c.3);
            let mut placed: HashSet<u64> = HashSet::new();
            if consent_record {
                // The consent's events and the collections in force: a collection
                // replaced since, or unlinked, is in force for nothing (below).
                let in_force_seqs: HashSet<u64> = mine.iter().map(|c| c.3).collect();
                let part: Vec<&HistoryEntry> = events
                    .iter()
                    .copied()
                    .filter(|h| {
                        !matches!(h.change, Change::Collected { .. }) || in_force_seqs.contains(&h.seq)
                    })
                    .collect();
                let granted = events.iter().rev().find_map(|h| match &h.change {
                    Change::Granted { scope, .. } => Some(recipients(scope)),
                    _ => None,
                });
                placed.extend(part.iter().map(|h| h.seq));
                records.push(self.export_record(
                    subject,
                    &origin,
                    &purpose,
                    Some(LegalBasis::Consent),
                    granted.unwrap_or_default(),
                    &part,
                    how_to_withdraw,
                ));
            }
            // Bases in force, in the order of their earliest collection in force.
            let mut bases: Vec<(LegalBasis, u64)> = Vec::new();
            for (_, basis, _, seq) in &mine {
                match bases.iter_mut().find(|(b, _)| b == basis) {
                    Some((_, first)) => *first = (*first).min(*seq),
                    None => bases.push((*basis, *seq)),
                }
            }
            bases.sort_by_key(|(_, first)| *first);
            if consent_record {
                bases.clear();
            }
            for (basis, _) in &bases {
                let seqs: HashSet<u64> = mine.iter().filter(|c| c.1 == *basis).map(|c| c.3).collect();
                let mut to: Vec<String> = Vec::new();
                let mut seen: HashSet<String> = HashSet::new();
                if !basis.requires_consent() {
                    for (.., scope, _) in mine.iter().filter(|c| c.1 == *basis) {
                        for r in recipients(scope) {
                            if seen.insert(r.clone()) {
                                to.push(r);
                            }
                        }
                    }
                }
                let part: Vec<&HistoryEntry> =
                    events.iter().copied().filter(|h| seqs.contains(&h.seq)).collect();
                placed.extend(part.iter().map(|h| h.seq));
                records.push(self.export_record(
                    subject,
                    &origin,
                    &purpose,
                    Some(*basis),
                    to,
                    &part,
                    how_to_withdraw,
                ));
            }
            let rest: Vec<&HistoryEntry> = events
                .iter()
                .copied()
                .filter(|h| !placed.contains(&h.seq))
                .collect();
            if !rest.is_empty() {
                if bases.is_empty() && !consent_record && !knows.contains(&purpose) {
                    // A purpose id the state does not hold (a log from before the limit
                    // on purpose ids): the latest collection's basis and recipients.
                    if let Some((basis, scope)) = rest.iter().rev().find_map(|h| match &h.change {
                        Change::Collected {
                            legal_basis, scope, ..
                        } => Some((*legal_basis, scope)),
                        _ => None,
                    }) {
                        let to = if basis.requires_consent() {
                            Vec::new()
                        } else {
                            recipients(scope)
                        };
                        records.push(self.export_record(
                            subject,
                            &origin,
                            &purpose,
                            Some(basis),
                            to,
                            &rest,
                            how_to_withdraw,
                        ));
                        continue;
                    }
                }
                records.push(self.export_record(
                    subject,
                    &origin,
                    &purpose,
                    None,
                    Vec::new(),
                    &rest,
                    how_to_withdraw,
                ));
            }
        }
        // The uses recorded of the subject's data (stored while decision recording was
        // on, whatever this handle's setting): to whom it was disclosed, for what, under
        // which entry, how often and when.
        let mut uses = Vec::new();
        for r in recorded {
            let (first, last) = r.times();
            uses.push(json!({
                "@type": "dpv:Disclose",
                "dpv:hasPurpose": r.purpose(),
                "dpv:hasRecipient": r.recipient().to_string(),
                "dpv:hasLegalBasis": basis_term(r.legal_basis()),
                "allowed_by": format!("{origin}#{}", r.allowed_by()),
                "count": r.count(),
                "first": first.to_string(),
                "last": last.to_string(),
            }));
        }
        let doc = json!({
            // The crate's own terms (uses, erased, note, event, expires_at, lapsed_at, untrusted,
            // inForce...) in a vocabulary of its own, so that JSON-LD processing keeps
            // them; DPV's concepts named by value are IRIs, not strings.
            "@context": {
                "dpv": "https://w3id.org/dpv#",
                "dct": "http://purl.org/dc/terms/",
                "@vocab": "urn:consent-ledger:export#",
                "dpv:hasConsentStatus": {"@type": "@vocab"},
                "dpv:hasLegalBasis": {"@type": "@vocab"},
            },
            "dct:conformsTo": "ISO/IEC TS 27560:2023 via W3C DPV",
            "dct:source": origin,
            "dpv:hasDataSubject": subject.as_str(),
            "erased": erased,
            "erasure": erasure,
            "note": "identifiers are held only as keyed pseudonyms; they appear here by kind",
            "@graph": records,
            "uses": uses,
        });
        Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
    }
}

impl Ledger {
    /// One record of the export: a purpose id under one legal basis, with its recipients
    /// and its events (`events`, in log order).
    #[allow(
        clippy::too_many_arguments,
        reason = "one call site, each argument named there"
    )]
    fn export_record(
        &self,
        subject: &SubjectId,
        origin: &str,
        purpose: &str,
        basis: Option<LegalBasis>,
        to: Vec<String>,
        events: &[&HistoryEntry],
        how_to_withdraw: &str,
    ) -> Value {
        // `None`: events of collections not in force (replaced since): no basis, no
        // recipients, no data kinds in use.
        let consent_based = basis.is_some_and(LegalBasis::requires_consent);
        let in_force = basis.is_some();
        let mut kinds: Vec<String> = Vec::new();
        let mut status = None;
        // When the consent last given lapses, if it does.
        let mut lapses = None;
        let mut parts = Vec::new();
        for h in events {
            let (kind, term) = match &h.change {
                Change::Collected { kind, .. } => {
                    if !kinds.contains(&kind.to_string()) {
                        kinds.push(kind.to_string());
                    }
                    ("collected", None)
                }
                Change::Granted { .. } => ("granted", Some("dpv:ConsentGiven")),
                Change::Withdrawn { .. } => ("withdrawn", Some("dpv:ConsentWithdrawn")),
                Change::Expired { .. } => ("expired", Some("dpv:ConsentExpired")),
                Change::Erased => continue,
            };
            // An expiry is recorded when `record_expiries` runs, which may be long
            // after the consent lapsed: the lapse is the grant's `expires_at`.
            let lapsed_at = match (&h.change, lapses) {
                (Change::Expired { .. }, Some(t)) if t <= h.timestamp => Some(t),
                _ => None,
            };
            if term.is_some() {
                status = term;
                // (A grant may be given an expiry already past: it lapsed as given.)
                lapses = match &h.change {
                    Change::Granted { expires_at, .. } => expires_at.map(|t| t.max(h.timestamp)),
                    _ => None,
                };
            }
            let mut part = json!({
                "@type": term.unwrap_or("dpv:Collect"),
                "dct:identifier": format!("{origin}#{}", h.seq),
                "dct:date": h.timestamp.to_string(),
                "dpv:hasEntity": entity(&h.actor, subject),
                "event": kind,
            });
            if let (
                Change::Granted {
                    expires_at: Some(t), ..
                },
                Some(obj),
            ) = (&h.change, part.as_object_mut())
            {
                obj.insert("expires_at".into(), Value::String(t.to_string()));
            }
            if let (Some(t), Some(obj)) = (lapsed_at, part.as_object_mut()) {
                obj.insert("lapsed_at".into(), Value::String(t.to_string()));
            }
            if let (Some(mark), Some(obj)) = (untrusted_mark(origin, h), part.as_object_mut()) {
                obj.insert("untrusted".into(), mark);
            }
            parts.push(part);
        }
        if !in_force {
            kinds.clear();
        }
        let mut record = json!({
            "@type": if consent_based { "dpv:ConsentRecord" } else { "dpv:PersonalDataHandling" },
            // What makes the record this record: the purpose id and the basis it is in
            // force on (or none: in force for nothing). Not an event's position.
            "dpv:hasIdentifier": format!(
                "{origin}#{}/{purpose}/{}",
                id_part(subject.as_str()),
                match basis {
                    Some(b) => basis_term(b).trim_start_matches("dpv:"),
                    None => "not-in-force",
                }
            ),
            "dpv:hasDataSubject": subject.as_str(),
            "dpv:hasPurpose": {
                "@type": "dpv:Purpose",
                "dct:identifier": purpose,
                "dpv:hasRecipient": to,
                "dpv:hasPersonalData": kinds,
            },
            "dct:hasPart": parts,
            "inForce": in_force,
        });
        if let (Some(basis), Some(p)) = (
            basis,
            record.get_mut("dpv:hasPurpose").and_then(Value::as_object_mut),
        ) {
            p.insert(
                "dpv:hasLegalBasis".into(),
                Value::String(basis_term(basis).to_owned()),
            );
        }
        if let (true, Some(obj)) = (consent_based, record.as_object_mut()) {
            // A consent that lapsed is expired, as decisions treat it, before its
            // expiry is written to the log.
            let lapsed = lapses.is_some_and(|t| t <= self.now());
            let status = match status {
                Some("dpv:ConsentGiven") if lapsed => "dpv:ConsentExpired",
                other => other.unwrap_or("dpv:ConsentUnknown"),
            };
            obj.insert("dpv:hasConsentStatus".into(), Value::String(status.to_owned()));
            obj.insert(
                "dpv:hasWithdrawalMethod".into(),
                Value::String(how_to_withdraw.to_owned()),
            );
        }
        record
    }
}

/// The `untrusted` mark of an event signed by a key at or after the position the log
/// revoked it from, if it was.
fn untrusted_mark(origin: &str, h: &HistoryEntry) -> Option<Value> {
    h.untrusted().map(|u| {
        json!({
            "reason": "signed by a key the ledger revoked as compromised from this position",
            "revoked_by": format!("{origin}#{}", u.revoked_by),
            "from": format!("{origin}#{}", u.from),
            "to": format!("{origin}#{}", u.to),
        })
    })
}

/// `text` as a part of a record id: letters, digits and `-_.~` as they are, every other
/// byte percent-encoded (a subject id may hold '/', '#' or spaces).
fn id_part(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
