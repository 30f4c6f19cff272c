//! Point-in-time decisions and the Art. 15 export.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use consent_ledger::{
    Actor, Advertising, At, Clock, Denied, Durability, Identifier, Ledger, ManualClock, PartnerSharing,
    PseudonymKey, Recipient, RecipientScope, Security, SigningKey, SubjectId, Timestamp,
};

fn ledger(dir: &std::path::Path, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .open()
        .unwrap()
}

#[test]
fn past_decisions_are_answered_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let l = ledger(dir.path(), &clock);
    let alice = SubjectId::new("alice-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let email = Identifier::<PartnerSharing>::email("alice@example.com").unwrap();
    let t0 = clock.now();
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    clock.advance(Duration::from_secs(60));
    let t1 = clock.now();
    let g = l
        .grant::<PartnerSharing>(
            &alice,
            RecipientScope::all_partners(),
            Some(t1.saturating_add(Duration::from_secs(3600))),
        )
        .unwrap();
    clock.advance(Duration::from_secs(60));
    let t2 = clock.now();
    clock.advance(Duration::from_secs(60));
    let w = l.withdraw::<PartnerSharing>(&alice).unwrap();
    clock.advance(Duration::from_secs(7200));

    // Now: withdrawn. Then: no consent, then allowed, then withdrawn.
    assert!(matches!(
        l.authorize(&email, &acme),
        Err(Denied::Withdrawn { .. })
    ));
    let at = |a| l.authorize_at(&email, &acme, a).unwrap();
    assert_eq!(
        at(At::Time(t0)).unwrap_err(),
        Denied::NoConsent {
            purpose: "partner-sharing"
        }
    );
    let ev = at(At::Time(t2)).unwrap();
    assert_eq!((ev.allowed_by(), ev.decided_at()), (g.seq, t2));
    assert_eq!(at(At::Position(g.seq + 1)).unwrap().allowed_by(), g.seq);
    assert_eq!(
        at(At::Position(g.seq)).unwrap_err(),
        Denied::NoConsent {
            purpose: "partner-sharing"
        }
    );
    assert_eq!(
        at(At::Position(w.seq + 1)).unwrap_err(),
        Denied::Withdrawn {
            purpose: "partner-sharing",
            at: w.seq
        }
    );
    // Before anything was collected the identifier was unknown.
    assert_eq!(at(At::Position(1)).unwrap_err(), Denied::UnknownIdentifier);
    // Between the grant and the withdrawal, judged at that moment: allowed.
    assert!(l
        .authorize_at(
            &email,
            &acme,
            At::Time(t1.saturating_add(Duration::from_secs(60)))
        )
        .unwrap()
        .is_ok());
    // The same rules as authorize: a Security identifier never served advertising.
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
    let as_ads = Identifier::<Advertising>::phone("+15550109999").unwrap();
    assert_eq!(
        l.authorize_at(&as_ads, &acme, At::Time(clock.now()))
            .unwrap()
            .unwrap_err(),
        Denied::NotCollectedForPurpose {
            purpose: "advertising"
        }
    );
}

#[test]
fn export_holds_the_subjects_records_and_nobody_elses() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let l = ledger(dir.path(), &clock);
    let alice = SubjectId::new("alice-1").unwrap();
    let bob = SubjectId::new("bob-2").unwrap();
    l.collect(
        &alice,
        &Identifier::<Security>::phone("+15550109999").unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    l.collect(
        &alice,
        &Identifier::<PartnerSharing>::email("alice@example.com").unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    l.grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    l.withdraw::<PartnerSharing>(&alice).unwrap();
    l.collect(
        &bob,
        &Identifier::<Advertising>::email("bob@example.com").unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    l.grant::<Advertising>(
        &bob,
        RecipientScope::only(Recipient::partner("bobs-partner").unwrap()),
        None,
    )
    .unwrap();

    let json = l.export_subject(&alice, "https://example.com/settings").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["dpv:hasDataSubject"], "alice-1");
    let records = doc["@graph"].as_array().unwrap();
    assert_eq!(records.len(), 2, "{json}");
    let sharing = records
        .iter()
        .find(|r| r["dpv:hasPurpose"]["dct:identifier"] == "partner-sharing")
        .unwrap();
    assert_eq!(sharing["@type"], "dpv:ConsentRecord");
    assert_eq!(sharing["dpv:hasConsentStatus"], "dpv:ConsentWithdrawn");
    assert_eq!(sharing["dpv:hasPurpose"]["dpv:hasLegalBasis"], "dpv:Consent");
    assert_eq!(sharing["dpv:hasWithdrawalMethod"], "https://example.com/settings");
    assert_eq!(sharing["dct:hasPart"].as_array().unwrap().len(), 3);
    let security = records
        .iter()
        .find(|r| r["dpv:hasPurpose"]["dct:identifier"] == "security")
        .unwrap();
    assert_eq!(security["@type"], "dpv:PersonalDataHandling");
    assert_eq!(
        security["dpv:hasPurpose"]["dpv:hasLegalBasis"],
        "dpv:LegitimateInterest"
    );
    assert_eq!(
        security["dpv:hasPurpose"]["dpv:hasPersonalData"][0],
        "phone number"
    );
    // Nothing of bob's, and no raw identifier.
    for absent in [
        "bob",
        "advertising",
        "bobs-partner",
        "alice@example.com",
        "5550109999",
    ] {
        assert!(!json.contains(absent), "export contains {absent:?}");
    }
    // After erasure, the export says so and holds no purpose records.
    l.erase(&alice, Actor::Subject).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&l.export_subject(&alice, "-").unwrap()).unwrap();
    assert_eq!(doc["erased"], true);
    assert!(doc["@graph"].as_array().unwrap().is_empty());
}

/// Review h35-c: a past decision at a ledger position is judged at the time of the
/// last entry before it, so it does not see a grant that lapsed since (`At::Position`
/// says so); a decision replayed from its evidence (`At::Decided`: position and time)
/// is the one that was made, before and after the lapse.
#[test]
fn a_decision_replayed_from_its_evidence_sees_an_expiry_since_the_last_entry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let l = ledger(dir.path(), &clock);
    let alice = SubjectId::new("alice-1").unwrap();
    let email = Identifier::<Advertising>::email("alice@example.com").unwrap();
    let r = Recipient::FirstParty;
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    l.grant::<Advertising>(
        &alice,
        RecipientScope::first_party(),
        Some(clock.now().saturating_add(Duration::from_secs(60))),
    )
    .unwrap();
    clock.advance(Duration::from_secs(59));
    let allowed = l.authorize(&email, &r).unwrap().evidence().clone();
    clock.advance(Duration::from_secs(3600));
    assert!(matches!(l.authorize(&email, &r), Err(Denied::Expired { .. })));
    // No entry since the grant: the position alone is judged at the grant's time.
    assert!(l.authorize_at(&email, &r, At::Position(l.len())).unwrap().is_ok());
    assert_eq!(
        l.authorize_at(&email, &r, At::from(&allowed)).unwrap(),
        Ok(allowed.clone())
    );
    let now = At::Decided {
        position: l.len(),
        time: clock.now(),
    };
    assert!(matches!(
        l.authorize_at(&email, &r, now).unwrap(),
        Err(Denied::Expired { .. })
    ));
}

/// Review h35-c: an `expired` event's `dct:date` is when `record_expiries` ran, which
/// may be long after the consent lapsed; the export gives the lapse itself too.
#[test]
fn an_expiry_recorded_late_is_exported_with_the_time_the_consent_lapsed() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let l = ledger(dir.path(), &clock);
    let alice = SubjectId::new("alice-1").unwrap();
    let email = Identifier::<Advertising>::email("alice@example.com").unwrap();
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    let lapse = clock.now().saturating_add(Duration::from_secs(60));
    l.grant::<Advertising>(&alice, RecipientScope::first_party(), Some(lapse))
        .unwrap();
    clock.advance(Duration::from_secs(86_400));
    assert_eq!(l.record_expiries().unwrap().len(), 1);
    let doc: serde_json::Value = serde_json::from_str(&l.export_subject(&alice, "-").unwrap()).unwrap();
    let events: Vec<&serde_json::Value> = doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["dct:hasPart"].as_array().unwrap())
        .collect();
    let expired = events.iter().find(|e| e["event"] == "expired").unwrap();
    assert_eq!(expired["lapsed_at"], lapse.to_string());
    assert_eq!(expired["dct:date"], clock.now().to_string());
    let granted = events.iter().find(|e| e["event"] == "granted").unwrap();
    assert_eq!(granted["expires_at"], lapse.to_string());
    assert!(granted.get("lapsed_at").is_none());

    // A grant given an expiry already past lapsed as it was given, not before.
    let bob = SubjectId::new("bob-1").unwrap();
    let bobs = Identifier::<Advertising>::email("bob@example.com").unwrap();
    l.collect(&bob, &bobs, RecipientScope::first_party()).unwrap();
    let given = l
        .grant::<Advertising>(&bob, RecipientScope::first_party(), Some(lapse))
        .unwrap();
    clock.advance(Duration::from_secs(60));
    assert_eq!(l.record_expiries().unwrap().len(), 1);
    let doc: serde_json::Value = serde_json::from_str(&l.export_subject(&bob, "-").unwrap()).unwrap();
    let expired = doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["dct:hasPart"].as_array().unwrap())
        .find(|e| e["event"] == "expired")
        .cloned()
        .unwrap();
    assert_eq!(expired["lapsed_at"], given.timestamp.to_string());
}
