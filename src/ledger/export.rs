//! Exporting everything the ledger holds about one subject (GDPR Art. 15).

use std::collections::BTreeMap;

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
    /// A purpose id's record is consent-based, as decisions judge it, when its latest
    /// collection relies on consent or the subject has a consent record for it (a grant,
    /// withdrawal or expiry); its recipients are then those of the latest grant, else
    /// those of the latest collection, with that collection's legal basis.
    ///
    /// `how_to_withdraw` is stated in each consent record (`dpv:hasWithdrawalMethod`).
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
    /// Storage and integrity failures while reading the log (any entry, see
    /// [`Ledger::history`]);
    /// [`ReadError::CorruptRecord`] when a stored decision record does not check (an
    /// export never leaves out uses silently).
    pub fn export_subject(&self, subject: &SubjectId, how_to_withdraw: &str) -> Result<String, ReadError> {
        let history = self.history(subject)?;
        let origin = crate::checkpoint::origin_of(&self.inner.ledger_id);
        let erased = history.iter().any(|h| h.change == Change::Erased);
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
        let mut records = Vec::new();
        for (purpose, events) in by_purpose {
            // As decisions judge: the latest collection's basis, and consent whenever the
            // subject has a consent record for the id (a grant, withdrawal or expiry);
            // the recipients then are the consent's, else the latest collection's.
            let mut collected_on: Option<LegalBasis> = None;
            let mut collected_for: Option<&RecipientScope> = None;
            let mut consent_record = false;
            let mut consented_for: Option<&RecipientScope> = None;
            let mut kinds: Vec<String> = Vec::new();
            let mut status = None;
            // When the consent last given lapses, if it does.
            let mut lapses = None;
            let mut parts = Vec::new();
            for h in &events {
                let (kind, term) = match &h.change {
                    Change::Collected {
                        kind,
                        legal_basis,
                        scope: s,
                        ..
                    } => {
                        collected_on = Some(*legal_basis);
                        collected_for = Some(s);
                        if !kinds.contains(&kind.to_string()) {
                            kinds.push(kind.to_string());
                        }
                        ("collected", None)
                    }
                    Change::Granted { scope: s, .. } => {
                        consent_record = true;
                        consented_for = Some(s);
                        ("granted", Some("dpv:ConsentGiven"))
                    }
                    Change::Withdrawn { .. } => {
                        consent_record = true;
                        ("withdrawn", Some("dpv:ConsentWithdrawn"))
                    }
                    Change::Expired { .. } => {
                        consent_record = true;
                        ("expired", Some("dpv:ConsentExpired"))
                    }
                    Change::Erased => continue,
                };
                if term.is_some() {
                    status = term;
                    lapses = match &h.change {
                        Change::Granted { expires_at, .. } => *expires_at,
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
                if let (Some(u), Some(obj)) = (h.untrusted(), part.as_object_mut()) {
                    obj.insert(
                        "untrusted".into(),
                        json!({
                            "reason": "signed by a key the ledger revoked as compromised from this position",
                            "revoked_by": format!("{origin}#{}", u.revoked_by),
                            "from": format!("{origin}#{}", u.from),
                            "to": format!("{origin}#{}", u.to),
                        }),
                    );
                }
                parts.push(part);
            }
            let consent_based = consent_record || collected_on.is_none_or(LegalBasis::requires_consent);
            let (basis, scope) = match collected_on {
                Some(basis) if !consent_based => (basis, collected_for),
                _ => (LegalBasis::Consent, consented_for),
            };
            let mut record = json!({
                "@type": if consent_based { "dpv:ConsentRecord" } else { "dpv:PersonalDataHandling" },
                "dpv:hasIdentifier": format!("{origin}#{}", events.first().map_or(0, |h| h.seq)),
                "dpv:hasDataSubject": subject.as_str(),
                "dpv:hasPurpose": {
                    "@type": "dpv:Purpose",
                    "dct:identifier": purpose,
                    "dpv:hasLegalBasis": basis_term(basis),
                    "dpv:hasRecipient": scope.map(recipients).unwrap_or_default(),
                    "dpv:hasPersonalData": kinds,
                },
                "dct:hasPart": parts,
            });
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
            records.push(record);
        }
        // The uses recorded of the subject's data (stored while decision recording was
        // on, whatever this handle's setting): to whom it was disclosed, for what, under
        // which entry, how often and when.
        let mut uses = Vec::new();
        for r in self.decision_records_matching(|r| r.subject() == subject)? {
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
            "@context": {
                "dpv": "https://w3id.org/dpv#",
                "dct": "http://purl.org/dc/terms/",
            },
            "dct:conformsTo": "ISO/IEC TS 27560:2023 via W3C DPV",
            "dct:source": origin,
            "dpv:hasDataSubject": subject.as_str(),
            "erased": erased,
            "note": "identifiers are held only as keyed pseudonyms; they appear here by kind",
            "@graph": records,
            "uses": uses,
        });
        Ok(serde_json::to_string_pretty(&doc).unwrap_or_default())
    }
}
