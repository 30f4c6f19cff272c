//! Decisions, scopes, time, history and reopening, through the public API.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::sync::mpsc;
use std::time::Duration;

use consent_ledger::{
    declare_purpose, Actor, Advertising, Change, Clock, Denied, Durability, Identifier, Ledger, LegalBasis,
    ManualClock, Name, PartnerSharing, PseudonymKey, Recipient, RecipientScope, Security, SigningKey,
    SubjectId, Timestamp,
};

declare_purpose!(pub Newsletter, "newsletter", "the monthly newsletter", LegalBasis::Consent);

struct Keys {
    key: SigningKey,
    pk: PseudonymKey,
}

fn keys() -> Keys {
    Keys {
        key: SigningKey::generate(),
        pk: PseudonymKey::generate(),
    }
}

fn open(dir: &std::path::Path, k: &Keys, d: Durability, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(k.key.clone())
        .pseudonym_key(k.pk.clone())
        .durability(d)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn subject(s: &str) -> SubjectId {
    SubjectId::new(s).unwrap()
}

#[test]
fn every_denial_reason_and_its_evidence() {
    let dir = tempfile::tempdir().unwrap();
    let k = keys();
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let l = open(dir.path(), &k, Durability::Relaxed, &clock);
    let alice = subject("alice-1");
    let acme = Recipient::partner("acme").unwrap();
    let other = Recipient::partner("other").unwrap();
    let app = Recipient::developer_app("app-7").unwrap();

    let unknown = Identifier::<Advertising>::phone("+4930123456").unwrap();
    assert_eq!(
        l.authorize(&unknown, &acme).unwrap_err(),
        Denied::UnknownIdentifier
    );

    let phone = Identifier::<Security>::phone("+4930999999").unwrap();
    let c = l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
    // Not consent-based: allowed by the collection, for the recipients named there only.
    let u = l.authorize(&phone, &Recipient::FirstParty).unwrap();
    assert_eq!(u.evidence().allowed_by(), c.seq);
    assert_eq!(u.evidence().collected_at(), c.seq);
    assert_eq!(u.evidence().legal_basis(), LegalBasis::LegitimateInterest);
    assert_eq!(u.evidence().subject(), &alice);
    assert_eq!(u.evidence().purpose(), "security");
    assert_eq!(u.evidence().position(), l.len());
    assert_eq!(u.evidence().decided_at(), clock.now());
    assert_eq!(
        l.authorize(&phone, &acme).unwrap_err(),
        Denied::RecipientNotCovered {
            recipient: acme.clone(),
            entry: c.seq
        }
    );
    // Grant for a non-consent purpose is refused.
    assert!(l
        .grant::<Security>(&alice, RecipientScope::first_party(), None)
        .is_err());

    let ads = Identifier::<Advertising>::phone("+4930999999").unwrap();
    assert_eq!(
        l.authorize(&ads, &acme).unwrap_err(),
        Denied::NotCollectedForPurpose {
            purpose: "advertising"
        }
    );
    l.collect(&alice, &ads, RecipientScope::only(acme.clone()))
        .unwrap();
    assert_eq!(
        l.authorize(&ads, &acme).unwrap_err(),
        Denied::NoConsent {
            purpose: "advertising"
        }
    );
    let expiry = clock.now().saturating_add(Duration::from_secs(60));
    let g = l
        .grant::<Advertising>(
            &alice,
            RecipientScope::any_of([acme.clone(), app.clone()]).unwrap(),
            Some(expiry),
        )
        .unwrap();
    assert_eq!(l.authorize(&ads, &acme).unwrap().evidence().allowed_by(), g.seq);
    assert!(l.authorize(&ads, &app).is_ok());
    assert_eq!(
        l.authorize(&ads, &other).unwrap_err(),
        Denied::RecipientNotCovered {
            recipient: other.clone(),
            entry: g.seq
        }
    );
    clock.advance(Duration::from_secs(60));
    assert_eq!(
        l.authorize(&ads, &acme).unwrap_err(),
        Denied::Expired {
            purpose: "advertising",
            grant: g.seq,
            at: expiry
        }
    );
    let g2 = l
        .grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    assert_eq!(l.authorize(&ads, &other).unwrap().evidence().allowed_by(), g2.seq);
    assert!(
        l.authorize(&ads, &app).is_err(),
        "all partners does not cover developer apps"
    );
    let w = l.withdraw::<Advertising>(&alice).unwrap();
    assert_eq!(
        l.authorize(&ads, &acme).unwrap_err(),
        Denied::Withdrawn {
            purpose: "advertising",
            at: w.seq
        }
    );

    // A purpose the application declares itself.
    let mail = Identifier::<Newsletter>::email("alice@example.com").unwrap();
    l.collect(&alice, &mail, RecipientScope::first_party()).unwrap();
    l.grant::<Newsletter>(&alice, RecipientScope::first_party(), None)
        .unwrap();
    assert!(l.authorize(&mail, &Recipient::FirstParty).is_ok());

    let e = l
        .erase(&alice, Actor::Operator(Name::new("dpo").unwrap()))
        .unwrap();
    assert_eq!(
        l.authorize(&phone, &Recipient::FirstParty).unwrap_err(),
        Denied::UnknownIdentifier
    );
    assert!(matches!(
        l.grant::<Advertising>(&alice, RecipientScope::all_partners(), None),
        Err(consent_ledger::WriteError::SubjectErased { erased_at }) if erased_at == e.seq
    ));
    assert_eq!(
        l.erase(&alice, Actor::Subject).unwrap().seq,
        e.seq,
        "erasing twice is idempotent"
    );
    l.verify().unwrap();
}

#[test]
fn history_in_order_for_the_person() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(5_000));
    let l = open(dir.path(), &keys(), Durability::Relaxed, &clock);
    let bob = subject("bob-1");
    let eve = subject("eve-1");
    let email = Identifier::<PartnerSharing>::email("bob@example.com").unwrap();
    l.collect(&bob, &email, RecipientScope::first_party()).unwrap();
    l.collect(
        &eve,
        &Identifier::<PartnerSharing>::email("eve@example.com").unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    clock.advance(Duration::from_secs(1));
    l.grant::<PartnerSharing>(&bob, RecipientScope::all_partners(), None)
        .unwrap();
    clock.advance(Duration::from_secs(1));
    l.withdraw::<PartnerSharing>(&bob).unwrap();
    let h = l.history(&bob).unwrap();
    let changes: Vec<String> = h.iter().map(|e| e.change.to_string()).collect();
    assert_eq!(
        changes,
        [
            "email address collected for \"partner-sharing\" (consent), for first party",
            "consent to \"partner-sharing\" for all business partners",
            "consent to \"partner-sharing\" withdrawn",
        ]
    );
    assert!(h
        .windows(2)
        .all(|w| w[0].seq < w[1].seq && w[0].timestamp <= w[1].timestamp));
    assert_eq!(h[1].timestamp, Timestamp::from_millis(6_000));
    assert!(h.iter().all(|e| e.actor == Actor::Subject));
    assert!(matches!(h[2].change, Change::Withdrawn { .. }));
    assert!(l.history(&subject("nobody")).unwrap().is_empty());
    // Erasure leaves only the erasure in the history.
    l.erase(&bob, Actor::Subject).unwrap();
    let h = l.history(&bob).unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].change, Change::Erased);
}

#[test]
fn clock_going_backwards_keeps_the_log_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(10_000));
    let k = keys();
    let l = open(dir.path(), &k, Durability::Relaxed, &clock);
    let s = subject("s-1");
    let a = l
        .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    clock.set(Timestamp::from_millis(1_000));
    let b = l.withdraw::<Advertising>(&s).unwrap();
    assert_eq!(
        b.timestamp, a.timestamp,
        "clamped to the previous entry's time, not refused"
    );
    l.verify().unwrap();
}

#[test]
fn reopen_keeps_everything_for_every_durability() {
    for d in [
        Durability::Immediate,
        Durability::GroupCommit,
        Durability::Relaxed,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let k = keys();
        let clock = ManualClock::new(Timestamp::from_millis(1));
        let l = open(dir.path(), &k, d, &clock);
        let acme = Recipient::partner("acme").unwrap();
        let ids: Vec<(SubjectId, Identifier<Advertising>)> = (0..20)
            .map(|i| {
                (
                    subject(&format!("u-{i}")),
                    Identifier::<Advertising>::phone(&format!("+4915100000{i:02}")).unwrap(),
                )
            })
            .collect();
        for (i, (s, id)) in ids.iter().enumerate() {
            l.collect(s, id, RecipientScope::only(acme.clone())).unwrap();
            match i % 4 {
                0 => {}
                1 => {
                    l.grant::<Advertising>(s, RecipientScope::all_partners(), None)
                        .unwrap();
                }
                2 => {
                    l.grant::<Advertising>(s, RecipientScope::all_partners(), None)
                        .unwrap();
                    l.withdraw::<Advertising>(s).unwrap();
                }
                _ => {
                    l.erase(s, Actor::Subject).unwrap();
                }
            }
        }
        let decide = |l: &Ledger| -> Vec<String> {
            ids.iter()
                .map(|(_, id)| format!("{:?}", l.authorize(id, &acme).map(|u| u.evidence().clone())))
                .collect()
        };
        let before = decide(&l);
        let report = l.verify().unwrap();
        let histories: Vec<_> = ids.iter().map(|(s, _)| l.history(s).unwrap()).collect();
        drop(l);
        let l = open(dir.path(), &k, d, &clock);
        assert_eq!(l.verify().unwrap(), report, "{d:?}");
        assert_eq!(l.len(), report.entries);
        assert_eq!(decide(&l), before, "{d:?}");
        let again: Vec<_> = ids.iter().map(|(s, _)| l.history(s).unwrap()).collect();
        assert_eq!(again, histories);
    }
}

#[test]
fn ledger_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Ledger>();
}

#[test]
fn withdrawal_in_one_thread_is_seen_by_the_next_decision_in_another() {
    for d in [
        Durability::Immediate,
        Durability::GroupCommit,
        Durability::Relaxed,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let l = open(
            dir.path(),
            &keys(),
            d,
            &ManualClock::new(Timestamp::from_millis(1)),
        );
        let acme = Recipient::partner("acme").unwrap();
        let subjects: Vec<SubjectId> = (0..50).map(|i| subject(&format!("t-{i}"))).collect();
        for (i, s) in subjects.iter().enumerate() {
            let id = Identifier::<PartnerSharing>::email(&format!("t{i}@example.com")).unwrap();
            l.collect(s, &id, RecipientScope::first_party()).unwrap();
            l.grant::<PartnerSharing>(s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        // The writer withdraws one subject at a time and tells the reader after each
        // acknowledgement; the reader must be denied on its very next decision.
        let (tx, rx) = mpsc::channel::<(usize, u64)>();
        let writer = {
            let l = l.clone();
            let subjects = subjects.clone();
            std::thread::spawn(move || {
                for (i, s) in subjects.iter().enumerate() {
                    let w = l.withdraw::<PartnerSharing>(s).unwrap();
                    tx.send((i, w.seq)).unwrap();
                }
            })
        };
        for (i, seq) in rx {
            let id = Identifier::<PartnerSharing>::email(&format!("t{i}@example.com")).unwrap();
            assert_eq!(
                l.authorize(&id, &acme).unwrap_err(),
                Denied::Withdrawn {
                    purpose: "partner-sharing",
                    at: seq
                },
                "{d:?}"
            );
        }
        writer.join().unwrap();
    }
}
