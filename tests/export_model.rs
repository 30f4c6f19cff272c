//! The subject export against the decisions (from review r87): on random histories every
//! allowed use appears under its basis, recipient and data kind, and no record lists a
//! recipient no use is allowed to; replaced collections, ids, JSON-LD terms, a
//! consistent moment, and linear cost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod export_util;
mod random_history;

use consent_ledger::*;
use export_util::{
    damage_index_slot, export, exported_events, open, open_without_snapshots, origin, record_with_basis,
    records_for,
};
use random_history::{
    ident, random_ops, recipients_pool, with_type, ContractSharing, LiSharing, Mix, Sharing, T, TYPES, VALUES,
};
use serde_json::Value;

/// An identifier moved from legitimate interest to consent (collected again through the
/// consent-based type with the same id), while another identifier stays under
/// legitimate interest. Decisions: the email now needs consent (none given); only the
/// phone is disclosed under legitimate interest. The export's legitimate-interest record
/// still lists the email address as data handled under legitimate interest, shared with
/// acme, and carries its superseded collection as an event.
#[test]
fn an_identifier_moved_to_consent_is_no_longer_exported_under_legitimate_interest() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let alice = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let scope = RecipientScope::only(acme.clone());
    let email_li = Identifier::<LiSharing>::email("alice@example.com").unwrap();
    let email_consent = Identifier::<Sharing>::email("alice@example.com").unwrap();
    let phone_li = Identifier::<LiSharing>::phone("+15550109999").unwrap();
    let moved = l.collect(&alice, &email_li, scope.clone()).unwrap(); // under LI
    l.collect(&alice, &email_consent, scope.clone()).unwrap(); // now on consent
    l.collect(&alice, &phone_li, scope).unwrap(); // stays under LI

    // Decisions: the email is not usable under legitimate interest any more.
    assert!(matches!(
        l.authorize(&email_li, &acme),
        Err(Denied::NoConsent { .. })
    ));
    assert!(matches!(
        l.authorize(&email_consent, &acme),
        Err(Denied::NoConsent { .. })
    ));
    let used = l.authorize(&phone_li, &acme).unwrap();
    assert_eq!(used.evidence().legal_basis(), LegalBasis::LegitimateInterest);
    drop(used);

    let doc = export(&l, &alice);
    let li = record_with_basis(&doc, "sharing", "dpv:LegitimateInterest");
    let kinds = li["dpv:hasPurpose"]["dpv:hasPersonalData"].clone();
    let origin = l.checkpoint().unwrap().origin().to_owned();
    let stale = format!("{origin}#{}", moved.seq);
    let carries_stale = li["dct:hasPart"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["dct:identifier"] == stale);
    assert_eq!(
        (kinds, carries_stale),
        (serde_json::json!(["phone number"]), false),
        "the legitimate-interest record (recipients {}) names the email address, which \
         decisions only allow with consent:\n{li:#}",
        li["dpv:hasPurpose"]["dpv:hasRecipient"]
    );
}

/// Every event of the subject is in the export (`dct:hasPart`). An identifier collected
/// on consent and then again under legitimate interest, with a second identifier under a
/// contract: the records in force are legitimate interest and contract, and the first
/// (consent) collection is in neither: it is left out of the export altogether.
#[test]
fn a_superseded_collection_on_a_basis_no_longer_in_force_is_in_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let bob = SubjectId::new("user-2").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let scope = RecipientScope::only(acme.clone());
    let first = l
        .collect(
            &bob,
            &Identifier::<Sharing>::email("bob@example.com").unwrap(),
            scope.clone(),
        )
        .unwrap();
    l.collect(
        &bob,
        &Identifier::<LiSharing>::email("bob@example.com").unwrap(),
        scope.clone(),
    )
    .unwrap();
    l.collect(
        &bob,
        &Identifier::<ContractSharing>::phone("+15550108888").unwrap(),
        scope,
    )
    .unwrap();

    let history: Vec<u64> = l.history(&bob).unwrap().iter().map(|h| h.seq).collect();
    assert_eq!(history.len(), 3);
    let doc = export(&l, &bob);
    let origin = l.checkpoint().unwrap().origin().to_owned();
    let exported = exported_events(&doc);
    let mut expected: Vec<String> = history.iter().map(|s| format!("{origin}#{s}")).collect();
    expected.sort();
    assert_eq!(
        exported, expected,
        "the collection at {} is missing from the export:\n{doc:#}",
        first.seq
    );
}

/// Whether JSON-LD expansion keeps `key` under `context` (no `@vocab`): a keyword, a
/// term of the context, a compact IRI whose prefix the context defines, or an absolute
/// IRI. Any other key is dropped by every JSON-LD processor (JSON-LD 1.1 API, expansion
/// algorithm step 13.3: "If expanded property is null or it neither contains a colon
/// nor it is a keyword, drop key by continuing to the next key").
fn kept_by_expansion(key: &str, context: &serde_json::Map<String, Value>) -> bool {
    // A default vocabulary keeps every plain key (expanded in it).
    if key.starts_with('@') || context.contains_key(key) || context.contains_key("@vocab") {
        return true;
    }
    match key.split_once(':') {
        Some((prefix, _)) => context.contains_key(prefix) || prefix.contains('/'),
        None => false,
    }
}

fn dropped_keys(v: &Value, path: &str, context: &serde_json::Map<String, Value>, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, child) in map {
                if k == "@context" {
                    continue;
                }
                if !kept_by_expansion(k, context) {
                    out.push(format!("{path}/{k}"));
                    continue;
                }
                dropped_keys(child, &format!("{path}/{k}"), context, out);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                dropped_keys(child, &format!("{path}[{i}]"), context, out);
            }
        }
        _ => {}
    }
}

/// The export is documented as JSON-LD: what it says must survive JSON-LD processing.
/// The recorded uses (to whom the data was disclosed: Art. 15(1)(c)), the erasure
/// flag, the grant's expiry and the `untrusted` warning on an event signed by a revoked
/// key are keys the `@context` does not define: a JSON-LD consumer drops them all, and
/// reads a record whose grant was signed by a stolen key as plainly given.
#[test]
fn the_export_keeps_its_uses_and_untrusted_marks_under_json_ld_processing() {
    let dir = tempfile::tempdir().unwrap();
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let l = Ledger::builder(dir.path())
        .signing_key(k0.clone())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .record_decisions(Recording::Every)
        .open()
        .unwrap();
    let s = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let id = Identifier::<Analytics>::email("alice@example.com").unwrap();
    l.collect(&s, &id, RecipientScope::only(acme.clone())).unwrap();
    let until = Timestamp::from_millis(u64::from(u32::MAX) * 1000);
    let g = l
        .grant::<Analytics>(&s, RecipientScope::only(acme.clone()), Some(until))
        .unwrap();
    l.rotate_key(k1).unwrap();
    l.revoke_key(k0.verifying_key(), g.seq).unwrap();
    drop(l.authorize(&id, &acme).unwrap());

    let json = l.export_subject(&s, "https://example.com/settings").unwrap();
    if let Some(path) = std::env::var_os("R87_DUMP") {
        std::fs::write(path, &json).unwrap();
    }
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert!(json.contains("\"untrusted\"") && !doc["uses"].as_array().unwrap().is_empty());
    let context = doc["@context"].as_object().unwrap().clone();
    let mut dropped = Vec::new();
    dropped_keys(&doc, "", &context, &mut dropped);
    assert!(
        dropped.is_empty(),
        "keys a JSON-LD processor drops (context {}):\n{}",
        Value::Object(context.clone()),
        dropped.join("\n")
    );
}

fn type_id(t: T) -> &'static str {
    match t {
        T::Ps | T::Li | T::Ct => "sharing",
        T::Sec | T::SecC => "login",
        T::An => "analytics",
    }
}

fn kind_name(v: usize) -> String {
    ident::<Security>(v).kind().to_string()
}

fn basis_term(b: LegalBasis) -> &'static str {
    match b {
        LegalBasis::Consent => "dpv:Consent",
        LegalBasis::Contract => "dpv:Contract",
        LegalBasis::LegitimateInterest => "dpv:LegitimateInterest",
        LegalBasis::LegalObligation => "dpv:LegalObligation",
        _ => "?",
    }
}

fn lists(rec: &Value, r: &Recipient) -> bool {
    rec["dpv:hasPurpose"]["dpv:hasRecipient"]
        .as_array()
        .unwrap()
        .iter()
        .any(|x| *x == r.to_string() || (*x == "all business partners" && matches!(r, Recipient::Partner(_))))
}

/// Runs one random history; returns the first disagreement between the export and
/// the decisions, with the operations that led to it.
fn model_run(seed: u64, ops: usize) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let l = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .open()
        .unwrap();
    let subjects = [SubjectId::new("s-1").unwrap(), SubjectId::new("s-2").unwrap()];
    let mix = Mix {
        draws: 12,
        erase_one_in: 3,
        rest_authorizes: false,
    };
    let log = random_ops(&l, &clock, &subjects, seed, ops, &mix);
    let docs: Vec<Value> = subjects.iter().map(|s| export(&l, s)).collect();
    // Every allowed use is described by the export of its subject: a record for the
    // purpose id on the basis the use rests on, listing the recipient and the kind, and
    // (consent) given.
    let mut allowed: Vec<(usize, &str, LegalBasis, Recipient, usize)> = Vec::new();
    for v in 0..VALUES.len() {
        for t in TYPES {
            for r in recipients_pool() {
                let d = with_type!(t, P => l.authorize(&ident::<P>(v), &r).map(|u| u.evidence().clone()));
                let Ok(e) = d else { continue };
                let si = subjects.iter().position(|s| s == e.subject()).unwrap();
                allowed.push((si, type_id(t), e.legal_basis(), r.clone(), v));
                let doc = &docs[si];
                let ok = records_for(doc, type_id(t)).into_iter().any(|rec| {
                    rec["dpv:hasPurpose"]["dpv:hasLegalBasis"] == basis_term(e.legal_basis())
                        && lists(rec, &r)
                        && rec["dpv:hasPurpose"]["dpv:hasPersonalData"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|k| *k == kind_name(v))
                        && (e.legal_basis() != LegalBasis::Consent
                            || rec["dpv:hasConsentStatus"] == "dpv:ConsentGiven")
                });
                if !ok {
                    return Some(format!(
                        "seed {seed}: v{v} via {t:?} to {r} allowed ({:?}, by #{}) but the export of {} does not say so:\n{}\n{doc:#}",
                        e.legal_basis(),
                        e.allowed_by(),
                        e.subject(),
                        log.join("\n")
                    ));
                }
            }
        }
    }
    if std::env::var_os("R87_VERBOSE").is_some() {
        eprintln!(
            "seed {seed}: {} allowed, {} records",
            allowed.len(),
            docs.iter()
                .map(|d| d["@graph"].as_array().unwrap().len())
                .sum::<usize>()
        );
    }
    // Every recipient a record lists under a basis other than consent, and every
    // consent record said to be given, is one some use is allowed to.
    for (si, doc) in docs.iter().enumerate() {
        for rec in doc["@graph"].as_array().unwrap() {
            let purpose = rec["dpv:hasPurpose"]["dct:identifier"].as_str().unwrap();
            // A record of collections not in force has no basis and lists no one.
            let Some(basis) = rec["dpv:hasPurpose"]["dpv:hasLegalBasis"].as_str() else {
                assert_eq!(rec["inForce"], false, "{rec:#}");
                assert!(rec["dpv:hasPurpose"]["dpv:hasRecipient"]
                    .as_array()
                    .unwrap()
                    .is_empty());
                continue;
            };
            let given = rec["dpv:hasConsentStatus"] == "dpv:ConsentGiven";
            if basis == "dpv:Consent" && !given {
                continue;
            }
            for r in recipients_pool() {
                if !lists(rec, &r) {
                    continue;
                }
                let any = allowed
                    .iter()
                    .any(|(s, p, b, rr, _)| *s == si && *p == purpose && basis_term(*b) == basis && *rr == r);
                let holds = rec["dpv:hasPurpose"]["dpv:hasPersonalData"]
                    .as_array()
                    .is_some_and(|k| !k.is_empty());
                if !any && holds {
                    return Some(format!(
                        "seed {seed}: the export of {} lists {r} for {purpose} under {basis}, no use is allowed:\n{}\n{rec:#}",
                        subjects[si],
                        log.join("\n")
                    ));
                }
            }
        }
    }
    None
}

#[test]
fn the_export_agrees_with_the_decisions_on_random_histories() {
    let runs: u64 = std::env::var("R87_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for seed in 0..runs {
        if let Some(problem) = model_run(seed, 30) {
            panic!("{problem}");
        }
    }
}

/// An index record lost to a damaged vault slot (dropped at open): after a full replay
/// the collection is unlinked and decisions deny every use of the identifier
/// (documented). The export falls back to "the latest collection's basis and
/// recipients", meant for logs from before the purpose-id limit, and tells the person
/// their data is handled under legitimate interest and disclosed to acme.
#[test]
fn an_unlinked_collection_is_not_exported_as_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let open = || open_without_snapshots(dir.path(), &key, &pk);
    let s = SubjectId::new("acct-0").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let phone = Identifier::<Security>::phone("+14155550100").unwrap();
    let l = open();
    l.collect(&s, &phone, RecipientScope::only(acme.clone())).unwrap();
    drop(l);
    // One bit of the index record's slot flipped: its checksum fails, open drops it.
    damage_index_slot(dir.path());
    let l = open();
    assert!(matches!(
        l.authorize(&phone, &acme),
        Err(Denied::UnknownIdentifier)
    ));
    let doc = export(&l, &s);
    let listed: Vec<&Value> = records_for(&doc, "security")
        .into_iter()
        .filter(|r| lists(r, &acme))
        .collect();
    assert!(
        listed.is_empty(),
        "no use is allowed, the export says the phone number is disclosed to acme:\n{:#}",
        listed[0]
    );
}

/// A record's id (`dpv:hasIdentifier`, once the position of its first event) moved when an
/// unrelated identifier is collected: the email's record under legitimate interest is
/// `#1` (the position of its superseded consent collection) until a phone is collected
/// under a contract, then `#2`. A consumer matching records across two exports by id
/// sees one record go and another come.
#[test]
fn a_records_id_stays_when_another_identifier_is_collected() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let bob = SubjectId::new("user-2").unwrap();
    let scope = RecipientScope::only(Recipient::partner("acme").unwrap());
    l.collect(
        &bob,
        &Identifier::<Sharing>::email("bob@example.com").unwrap(),
        scope.clone(),
    )
    .unwrap();
    l.collect(
        &bob,
        &Identifier::<LiSharing>::email("bob@example.com").unwrap(),
        scope.clone(),
    )
    .unwrap();
    let id_of_li = |doc: &Value| {
        record_with_basis(doc, "sharing", "dpv:LegitimateInterest")["dpv:hasIdentifier"].clone()
    };
    let before = id_of_li(&export(&l, &bob));
    l.collect(
        &bob,
        &Identifier::<ContractSharing>::phone("+15550108888").unwrap(),
        scope,
    )
    .unwrap();
    let after = id_of_li(&export(&l, &bob));
    assert_eq!(
        before, after,
        "the same record (the email under legitimate interest) changed its id"
    );
}

/// A ledger of 20,000 other subjects' grants, and how long one export of it takes: the
/// window the racing tests below aim a change at.
fn busy_ledger(dir: &std::path::Path) -> (std::sync::Arc<Ledger>, std::time::Duration) {
    let l = std::sync::Arc::new(open(dir));
    for i in 0..20_000 {
        let other = SubjectId::new(&format!("other-{i}")).unwrap();
        l.grant::<Analytics>(&other, RecipientScope::first_party(), None)
            .unwrap();
    }
    let start = std::time::Instant::now();
    let _ = l
        .export_subject(&SubjectId::new("other-0").unwrap(), "-")
        .unwrap();
    (l, start.elapsed())
}

/// The export read the subject's history (the whole log, slow) and then, separately,
/// the collections in force: a collection recorded in between was in the second and not
/// the first. The record made for it had no event, no data kind, and as its id the
/// position of the genesis entry (`#0`), while naming the recipient (review r87).
#[test]
fn a_collection_recorded_during_an_export_gives_no_record_without_events() {
    let dir = tempfile::tempdir().unwrap();
    let (l, took) = busy_ledger(dir.path());
    let acme = Recipient::partner("acme").unwrap();
    for attempt in 0..20u32 {
        let s = SubjectId::new(&format!("user-{attempt}")).unwrap();
        l.collect(
            &s,
            &Identifier::<LiSharing>::email(&format!("u{attempt}@example.com")).unwrap(),
            RecipientScope::only(acme.clone()),
        )
        .unwrap();
        let writer = {
            let (l, s, acme) = (l.clone(), s.clone(), acme.clone());
            std::thread::spawn(move || {
                std::thread::sleep(took / 2);
                let phone = Identifier::<ContractSharing>::phone(&format!("+1555010{attempt:04}")).unwrap();
                l.collect(&s, &phone, RecipientScope::only(acme)).unwrap();
            })
        };
        let doc = export(&l, &s);
        writer.join().unwrap();
        for rec in doc["@graph"].as_array().unwrap() {
            let parts = rec["dct:hasPart"].as_array().unwrap();
            // Every record holds an event (its id names its purpose and basis).
            assert!(
                !parts.is_empty(),
                "attempt {attempt}: a record with no event:\n{rec:#}"
            );
        }
    }
}

/// Export time for one subject holding `n` device ids collected for `security`, each
/// shared with its own 256 partners.
fn export_time_with_scopes(n: usize) -> std::time::Duration {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("user-1").unwrap();
    for i in 0..n {
        let scope =
            RecipientScope::any_of((0..256).map(|j| Recipient::partner(&format!("p{i}-{j}")).unwrap()))
                .unwrap();
        let dev = Identifier::<Security>::device_id(&format!("device-{i:06}")).unwrap();
        l.collect(&s, &dev, scope).unwrap();
    }
    let start = std::time::Instant::now();
    let json = l.export_subject(&s, "-").unwrap();
    let took = start.elapsed();
    assert!(json.len() > n * 256 * 10);
    took
}

/// The recipients of a purpose's collections are merged with a linear `contains` per
/// recipient: quadratic in the number of distinct recipients. Four times the
/// identifiers (and log entries) take far more than four times as long.
#[test]
#[ignore = "timed; run by hand"]
fn merging_recipients_in_the_export_is_linear() {
    let small = export_time_with_scopes(50);
    let large = export_time_with_scopes(200);
    eprintln!("50 identifiers: {small:?}, 200 identifiers: {large:?}");
    assert!(
        large < small * 8,
        "4x the identifiers: {small:?} -> {large:?} ({:.1}x)",
        large.as_secs_f64() / small.as_secs_f64()
    );
}

declare_purpose!(
    /// A consent-based purpose of the application's own.
    Newsletter,
    "newsletter",
    "newsletter sent by partners",
    LegalBasis::Consent
);

/// Every history event is promised to be in exactly one record. After an erasure the
/// subject's history is its erasure entry (who erased, when, at which position), and
/// the export leaves it out: `@graph` is empty and only `"erased": true` remains.
#[test]
fn the_erasure_event_is_in_the_export() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("user-1").unwrap();
    let email = Identifier::<Security>::email("alice@example.com").unwrap();
    l.collect(&s, &email, RecipientScope::first_party()).unwrap();
    let erased = l.erase(&s, Actor::Operator(Name::new("dpo").unwrap())).unwrap();
    let history: Vec<String> = l
        .history(&s)
        .unwrap()
        .iter()
        .map(|h| format!("{}#{}", origin(&l), h.seq))
        .collect();
    assert_eq!(history, vec![format!("{}#{}", origin(&l), erased.seq)]);
    let json = l.export_subject(&s, "-").unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    // The erasure is the top-level `erasure` event.
    let mut events = exported_events(&doc);
    events.extend(doc["erasure"]["dct:identifier"].as_str().map(str::to_owned));
    assert_eq!(
        events, history,
        "the subject's history (its erasure entry, by operator dpo) is not in the export:\n{json}"
    );
    assert_eq!(doc["erasure"]["dpv:hasEntity"], "operator dpo");
}

/// Record ids are promised stable. A subject's `security` record under legitimate
/// interest holds two identifiers; the email is collected again with another scope
/// (same basis). The legitimate-interest record, still in force and still holding the
/// phone, changes its id from the email's first collection to the phone's, and its old
/// id now names a different record: the replaced collection, in force for nothing.
#[test]
fn a_records_id_stays_when_one_of_its_collections_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let beta = Recipient::partner("beta").unwrap();
    let email = Identifier::<Security>::email("alice@example.com").unwrap();
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    l.collect(&s, &email, RecipientScope::only(acme.clone())).unwrap();
    l.collect(&s, &phone, RecipientScope::only(acme.clone())).unwrap();
    let before = export(&l, &s);
    let li_before =
        record_with_basis(&before, "security", "dpv:LegitimateInterest")["dpv:hasIdentifier"].clone();
    l.collect(&s, &email, RecipientScope::only(beta)).unwrap();
    let after = export(&l, &s);
    let li_after =
        record_with_basis(&after, "security", "dpv:LegitimateInterest")["dpv:hasIdentifier"].clone();
    let now_named: Vec<&Value> = records_for(&after, "security")
        .into_iter()
        .filter(|r| r["dpv:hasIdentifier"] == li_before)
        .collect();
    assert_eq!(
        li_before, li_after,
        "the legitimate-interest record of `security` changed its id; its old id {li_before} now names:\n{:#}",
        now_named.first().copied().unwrap_or(&Value::Null)
    );
}

/// The rest record (collections in force for nothing) takes the id of its earliest
/// event: it changes each time an earlier collection is replaced.
#[test]
fn the_replaced_collections_record_keeps_its_id() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let beta = Recipient::partner("beta").unwrap();
    let email = Identifier::<Security>::email("alice@example.com").unwrap();
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    l.collect(&s, &email, RecipientScope::only(acme.clone())).unwrap(); // #1
    l.collect(&s, &phone, RecipientScope::only(acme.clone())).unwrap(); // #2
    l.collect(&s, &phone, RecipientScope::only(beta.clone())).unwrap(); // #3 replaces #2
    let not_in_force = |doc: &Value| {
        records_for(doc, "security")
            .into_iter()
            .find(|r| r["inForce"] == false)
            .map(|r| r["dpv:hasIdentifier"].clone())
            .unwrap()
    };
    let before = not_in_force(&export(&l, &s));
    l.collect(&s, &email, RecipientScope::only(beta)).unwrap(); // #4 replaces #1
    let after = not_in_force(&export(&l, &s));
    assert_eq!(before, after, "the record of replaced collections changed its id");
}

/// An index record lost to a damaged vault slot (dropped at open, full replay): the
/// collection is unlinked and decisions deny every use of the identifier
/// (`UnknownIdentifier`, documented). The rewrite handles this for purposes without a
/// consent record (`an_unlinked_collection_is_exported_as_in_force`), not for one with
/// a consent record: the export still says the phone number is handled with consent
/// given, disclosed to acme.
#[test]
fn an_unlinked_collection_under_a_consent_record_is_not_exported_as_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let open = || open_without_snapshots(dir.path(), &key, &pk);
    let s = SubjectId::new("acct-0").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let phone = Identifier::<Newsletter>::phone("+14155550100").unwrap();
    let l = open();
    l.collect(&s, &phone, RecipientScope::only(acme.clone())).unwrap();
    l.grant::<Newsletter>(&s, RecipientScope::only(acme.clone()), None)
        .unwrap();
    assert!(l.authorize(&phone, &acme).is_ok());
    drop(l);
    damage_index_slot(dir.path());
    let l = open();
    assert!(matches!(
        l.authorize(&phone, &acme),
        Err(Denied::UnknownIdentifier)
    ));
    let doc = export(&l, &s);
    let rec = records_for(&doc, "newsletter")[0];
    let says_used = rec["dpv:hasConsentStatus"] == "dpv:ConsentGiven"
        && rec["inForce"] == true
        && !rec["dpv:hasPurpose"]["dpv:hasPersonalData"]
            .as_array()
            .unwrap()
            .is_empty()
        && !rec["dpv:hasPurpose"]["dpv:hasRecipient"]
            .as_array()
            .unwrap()
            .is_empty();
    assert!(
        !says_used,
        "no use of the phone is allowed; the export says it is handled, consent given, for acme:\n{rec:#}"
    );
}

/// Replaced collections are promised to be in a record with `inForce: false`. With a
/// consent record for the id they stay in the consent record, which is in force: a
/// legitimate-interest collection (shared with acme) replaced by a consent-based one is
/// shown as part of the consent in force; without the grant the same event is in a
/// record in force for nothing.
#[test]
fn a_replaced_collection_stays_out_of_the_consent_record_in_force() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let li = Identifier::<LiSharing>::email("alice@example.com").unwrap();
    let consent = Identifier::<Sharing>::email("alice@example.com").unwrap();
    let replaced = l.collect(&s, &li, RecipientScope::only(acme.clone())).unwrap();
    l.collect(&s, &consent, RecipientScope::first_party()).unwrap();
    let stale = format!("{}#{}", origin(&l), replaced.seq);
    let holder = |doc: &Value| -> Value {
        records_for(doc, "sharing")
            .into_iter()
            .find(|r| {
                r["dct:hasPart"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|p| p["dct:identifier"] == stale)
            })
            .unwrap()
            .clone()
    };
    let before = holder(&export(&l, &s));
    assert_eq!(before["inForce"], false, "{before:#}");
    l.grant::<Sharing>(&s, RecipientScope::first_party(), None)
        .unwrap();
    let after = holder(&export(&l, &s));
    assert_eq!(
        after["inForce"], false,
        "the replaced legitimate-interest collection {stale} is now an event of a record in force:\n{after:#}"
    );
}

/// The export promises one consistent moment, but read the recorded uses only after
/// the (slow) history: a grant and a use made meanwhile appeared in `uses` ("disclosed to
/// acme under consent, allowed by #N") while the records, taken at the moment, showed no
/// consent at all and no entry #N (review r90).
#[test]
fn uses_recorded_during_an_export_name_entries_the_records_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (l, took) = busy_ledger(dir.path());
    let acme = Recipient::partner("acme").unwrap();
    for attempt in 0..20u32 {
        let s = SubjectId::new(&format!("user-{attempt}")).unwrap();
        let phone = Identifier::<Newsletter>::phone(&format!("+1555010{attempt:04}")).unwrap();
        l.collect(&s, &phone, RecipientScope::only(acme.clone())).unwrap();
        let writer = {
            let (l, s, acme) = (l.clone(), s.clone(), acme.clone());
            std::thread::spawn(move || {
                let phone = Identifier::<Newsletter>::phone(&format!("+1555010{attempt:04}")).unwrap();
                std::thread::sleep(took / 2);
                l.grant::<Newsletter>(&s, RecipientScope::only(acme.clone()), None)
                    .unwrap();
                drop(l.authorize(&phone, &acme).unwrap());
            })
        };
        let doc = export(&l, &s);
        writer.join().unwrap();
        let events = exported_events(&doc);
        for u in doc["uses"].as_array().unwrap() {
            let by = u["allowed_by"].as_str().unwrap().to_owned();
            assert!(
                events.contains(&by),
                "attempt {attempt}: a use allowed by {by}, an entry the export's records do not hold \
                 (events {events:?}):\n{:#}\n{:#}",
                doc["uses"],
                doc["@graph"]
            );
        }
    }
}

/// The recipients of a record are listed in the order of the state's identifier table,
/// which depends on how the state was built: a record reused from an erased subject
/// (live) or a fresh one (replay at open). The same ledger, exported before and after a
/// reopen with no change in between, gives a different document.
#[test]
fn the_same_ledger_exports_the_same_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let open = || open_without_snapshots(dir.path(), &key, &pk);
    let (s1, s2) = (
        SubjectId::new("user-1").unwrap(),
        SubjectId::new("user-2").unwrap(),
    );
    let acme = Recipient::partner("acme").unwrap();
    let beta = Recipient::partner("beta").unwrap();
    let l = open();
    l.collect(
        &s1,
        &Identifier::<Analytics>::email("a@example.com").unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    l.collect(
        &s2,
        &Identifier::<LiSharing>::email("b@example.com").unwrap(),
        RecipientScope::only(acme),
    )
    .unwrap();
    l.erase(&s1, Actor::Subject).unwrap();
    l.collect(
        &s2,
        &Identifier::<LiSharing>::email("a@example.com").unwrap(),
        RecipientScope::only(beta),
    )
    .unwrap();
    let before = l.export_subject(&s2, "-").unwrap();
    drop(l);
    let l = open();
    let after = l.export_subject(&s2, "-").unwrap();
    let recipients = |json: &str| {
        let doc: Value = serde_json::from_str(json).unwrap();
        records_for(&doc, "sharing")[0]["dpv:hasPurpose"]["dpv:hasRecipient"].clone()
    };
    assert_eq!(
        before,
        after,
        "nothing changed but a reopen; recipients before {} after {}",
        recipients(&before),
        recipients(&after)
    );
}
