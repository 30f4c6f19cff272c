//! Key rotation and revocation, consent expiry and refresh, purpose changes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use std::time::Duration;

use consent_ledger::{
    Actor, Advertising, Analytics, Change, Clock, Denied, Durability, Identifier, Inspector,
    IntegrityProblem, Ledger, LegalBasis, ManualClock, OpenError, PseudonymKey, Recipient, RecipientScope,
    Security, SigningKey, SubjectId, Timestamp, UntrustedRange, WriteError,
};

fn open(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .open()
        .unwrap()
}

/// A new ledger with new keys, its clock at 1 ms.
fn new_ledger() -> (tempfile::TempDir, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let l = open(
        dir.path(),
        &SigningKey::generate(),
        &PseudonymKey::generate(),
        &clock,
    );
    (dir, l)
}

fn subject(s: &str) -> SubjectId {
    SubjectId::new(s).unwrap()
}

#[test]
fn entries_verify_across_many_rotations_and_reopen_needs_the_newest_key() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let keys: Vec<SigningKey> = (0..7).map(|_| SigningKey::generate()).collect();
    let l = open(dir.path(), &keys[0], &pk, &clock);
    let s = subject("s-1");
    for (i, k) in keys.iter().enumerate().skip(1) {
        l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
            .unwrap();
        let r = l.rotate_key(k.clone()).unwrap();
        assert_eq!(
            l.verifying_key().unwrap(),
            k.verifying_key(),
            "rotation {i} at entry {}",
            r.seq
        );
        l.withdraw::<Analytics>(&s).unwrap();
    }
    assert!(
        l.rotate_key(keys[6].clone()).is_err(),
        "rotating to the current key is refused"
    );
    let report = l.verify().unwrap();
    assert_eq!(report.keys, 7);
    assert!(report.untrusted.is_empty());
    drop(l);
    for old in &keys[..6] {
        let e = Ledger::builder(dir.path())
            .signing_key(old.clone())
            .pseudonym_key(pk.clone())
            .open()
            .unwrap_err();
        assert!(matches!(e, OpenError::WrongSigningKey), "{e:?}");
    }
    let l = open(dir.path(), &keys[6], &pk, &clock);
    assert_eq!(l.verify().unwrap(), report);
    drop(l);
    assert_eq!(Inspector::open(dir.path()).unwrap().verify().unwrap(), report);
}

#[test]
fn an_entry_signed_with_the_old_key_after_rotation_is_rejected() {
    // A thief of the old key appends a well-formed, properly chained entry after the
    // rotation and signs it with the old key: both open and verify catch it.
    use ed25519_dalek::Signer;
    use sha2::{Digest, Sha256};
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (old, new) = (SigningKey::generate(), SigningKey::generate());
    let l = open(dir.path(), &old, &pk, &clock);
    let rot = l.rotate_key(new.clone()).unwrap();
    drop(l);
    {
        let db = sled_util::open(dir.path());
        let t = db.open_tree("entries").unwrap();
        let last = t.get(rot.seq.to_be_bytes()).unwrap().unwrap().to_vec();
        // The rotation entry has actor System (no string), so the layout is fixed:
        // version 1 | seq 8 | timestamp 8 | actor tag 4 | prev_hash 32 | ...
        let mut forged = last[..last.len() - 64].to_vec();
        forged[1..9].copy_from_slice(&(rot.seq + 1).to_be_bytes());
        let prev: [u8; 32] = Sha256::digest(&last).into();
        forged[21..53].copy_from_slice(&prev);
        let mut msg = b"consent-ledger entry v1\n".to_vec();
        msg.extend_from_slice(&forged);
        let thief = ed25519_dalek::SigningKey::from_bytes(&old.expose_seed());
        forged.extend_from_slice(&thief.sign(&msg).to_bytes());
        t.insert((rot.seq + 1).to_be_bytes(), forged).unwrap();
        db.flush().unwrap();
    }
    let e = Inspector::open(dir.path()).unwrap().verify().unwrap_err();
    let consent_ledger::ReadError::Integrity(e) = e else {
        panic!("{e}")
    };
    assert_eq!(
        (e.position, e.problem),
        (rot.seq + 1, IntegrityProblem::BadSignature)
    );
    let e = Ledger::builder(dir.path())
        .signing_key(new)
        .pseudonym_key(pk.clone())
        .open()
        .unwrap_err();
    let OpenError::Integrity(e) = e else {
        panic!("{e:?}")
    };
    assert_eq!(
        (e.position, e.problem),
        (rot.seq + 1, IntegrityProblem::BadSignature)
    );
    // And the thief cannot open it with the old key as if it were still valid.
    let e = Ledger::builder(dir.path())
        .signing_key(old)
        .pseudonym_key(pk)
        .open()
        .unwrap_err();
    assert!(
        matches!(e, OpenError::Integrity(_) | OpenError::WrongSigningKey),
        "{e:?}"
    );
}

#[test]
fn revoked_key_entries_are_reported_not_hidden() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (k1, k2) = (SigningKey::generate(), SigningKey::generate());
    let l = open(dir.path(), &k1, &pk, &clock);
    let s = subject("s-1");
    for _ in 0..5 {
        l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
            .unwrap();
    }
    // k1 is believed exposed from entry 3 on.
    let e = l.revoke_key(k1.verifying_key(), 3).unwrap_err();
    assert!(
        matches!(e, WriteError::Input(_)),
        "the current key cannot be revoked: {e:?}"
    );
    let rot = l.rotate_key(k2.clone()).unwrap();
    assert!(
        l.revoke_key(k1.verifying_key(), 10_000).is_err(),
        "beyond the end"
    );
    let rev = l.revoke_key(k1.verifying_key(), 3).unwrap();
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    let report = l.verify().unwrap();
    // Entries 3..=rot.seq were signed by k1 (the rotation entry itself included).
    assert_eq!(
        report.untrusted,
        vec![UntrustedRange {
            from: 3,
            to: rot.seq,
            revoked_by: rev.seq,
            revoked_from: 3,
        }]
    );
    let err = report.require_trusted().unwrap_err();
    assert_eq!(err.position, 3);
    assert!(matches!(err.problem, IntegrityProblem::RevokedKey { .. }));
    drop(l);
    // The ledger still opens with the new key, and the report is stable.
    let l = open(dir.path(), &k2, &pk, &clock);
    assert_eq!(l.verify().unwrap(), report);
}

#[test]
fn expiry_denies_with_the_time_lists_what_lapses_and_records_it() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let key = SigningKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000));
    let l = open(dir.path(), &key, &pk, &clock);
    let day = Duration::from_secs(24 * 3600);
    let acme = Recipient::partner("acme").unwrap();
    let mut ids = Vec::new();
    for (i, days) in [10u64, 40, 400].iter().enumerate() {
        let s = subject(&format!("s-{i}"));
        let id = Identifier::<Advertising>::email(&format!("u{i}@example.com")).unwrap();
        l.collect(&s, &id, RecipientScope::only(acme.clone())).unwrap();
        let at = clock.now().saturating_add(day * (*days as u32));
        let g = l
            .grant::<Advertising>(&s, RecipientScope::only(acme.clone()), Some(at))
            .unwrap();
        ids.push((s, id, g.seq, at));
    }
    // No expiry: never listed.
    let forever = subject("s-forever");
    l.grant::<Advertising>(&forever, RecipientScope::all_partners(), None)
        .unwrap();

    let soon = l.expiring(day * 30).unwrap();
    assert_eq!(soon.iter().map(|c| c.grant).collect::<Vec<_>>(), vec![ids[0].2]);
    let within_year = l.expiring(day * 365).unwrap();
    assert_eq!(
        within_year.iter().map(|c| c.grant).collect::<Vec<_>>(),
        vec![ids[0].2, ids[1].2]
    );
    assert_eq!(within_year[0].purpose, "advertising");
    assert_eq!(within_year[0].subject, ids[0].0);

    clock.advance(day * 10);
    // Exactly at the expiry time the consent is over.
    assert_eq!(
        l.authorize(&ids[0].1, &acme).unwrap_err(),
        Denied::Expired {
            purpose: "advertising",
            grant: ids[0].2,
            at: ids[0].3
        }
    );
    assert!(l.authorize(&ids[1].1, &acme).is_ok());
    // Lapsed but not yet recorded: still listed, so the application asks again.
    assert_eq!(l.expiring(Duration::ZERO).unwrap().len(), 1);
    let recorded = l.record_expiries().unwrap();
    assert_eq!(recorded.len(), 1);
    assert!(l.record_expiries().unwrap().is_empty(), "idempotent");
    assert!(l.expiring(Duration::ZERO).unwrap().is_empty());
    assert_eq!(
        l.authorize(&ids[0].1, &acme).unwrap_err(),
        Denied::Expired {
            purpose: "advertising",
            grant: ids[0].2,
            at: ids[0].3
        }
    );
    let h = l.history(&ids[0].0).unwrap();
    assert_eq!(
        h.last().unwrap().change,
        Change::Expired {
            purpose: "advertising".into()
        }
    );
    assert_eq!(h.last().unwrap().actor, consent_ledger::Actor::System);
    // Refresh: the person agrees again; a new grant replaces the lapsed one.
    let again = l
        .grant::<Advertising>(
            &ids[0].0,
            RecipientScope::only(acme.clone()),
            Some(clock.now().saturating_add(day)),
        )
        .unwrap();
    assert_eq!(
        l.authorize(&ids[0].1, &acme).unwrap().evidence().allowed_by(),
        again.seq
    );
    let report = l.verify().unwrap();
    drop(l);
    let l = open(dir.path(), &key, &pk, &clock);
    assert_eq!(l.verify().unwrap(), report);
    assert_eq!(
        l.authorize(&ids[0].1, &acme).unwrap().evidence().allowed_by(),
        again.seq
    );
}

#[test]
fn a_new_purpose_needs_a_new_collection_and_consent() {
    let (_dir, l) = new_ledger();
    let alice = subject("alice");
    let acme = Recipient::partner("acme").unwrap();
    let for_2fa = Identifier::<Security>::phone("+447700900123").unwrap();
    l.collect(&alice, &for_2fa, RecipientScope::first_party())
        .unwrap();
    let for_ads = Identifier::<Advertising>::phone("+44 7700 900123").unwrap();
    // Consent alone is not enough: the number was never collected for advertising.
    l.grant::<Advertising>(&alice, RecipientScope::only(acme.clone()), None)
        .unwrap();
    assert_eq!(
        l.authorize(&for_ads, &acme).unwrap_err(),
        Denied::NotCollectedForPurpose {
            purpose: "advertising"
        }
    );
    // Collection alone is not enough either, once consent is withdrawn.
    l.withdraw::<Advertising>(&alice).unwrap();
    l.collect(&alice, &for_ads, RecipientScope::only(acme.clone()))
        .unwrap();
    assert!(matches!(
        l.authorize(&for_ads, &acme),
        Err(Denied::Withdrawn { .. })
    ));
    // Both, explicitly: allowed. The 2FA identifier still serves only 2FA.
    let g = l
        .grant::<Advertising>(&alice, RecipientScope::only(acme.clone()), None)
        .unwrap();
    assert_eq!(
        l.authorize(&for_ads, &acme).unwrap().evidence().allowed_by(),
        g.seq
    );
    assert!(l.authorize(&for_2fa, &acme).is_err());
    // And no API turns one into the other: see tests/ui/convert_from_into.rs.
}

#[test]
fn an_expired_consent_stays_expired_when_the_clock_steps_back() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let key = SigningKey::generate();
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let clock = ManualClock::new(t0);
    let l = open(dir.path(), &key, &pk, &clock);
    let acme = Recipient::partner("acme").unwrap();
    let s = subject("s-clock");
    let id = Identifier::<Advertising>::email("clock@example.com").unwrap();
    l.collect(&s, &id, RecipientScope::only(acme.clone())).unwrap();
    let until = t0.saturating_add(Duration::from_secs(60));
    let g = l
        .grant::<Advertising>(&s, RecipientScope::only(acme.clone()), Some(until))
        .unwrap();
    let expired = Denied::Expired {
        purpose: "advertising",
        grant: g.seq,
        at: until,
    };
    clock.set(until);
    assert_eq!(l.authorize(&id, &acme).unwrap_err(), expired);
    // An NTP step or a restored VM snapshot sets the clock back an hour: the ledger
    // has already seen the expiry time, so the consent does not come back.
    clock.set(t0.saturating_sub(Duration::from_secs(3600)));
    assert_eq!(l.authorize(&id, &acme).unwrap_err(), expired);
    assert_eq!(l.authorize_batch([&id], &acme)[0].as_ref().unwrap_err(), &expired);
    // An entry appended now carries the latest time seen, and after reopening the
    // ledger starts from the last entry's time.
    let w = l.withdraw::<Analytics>(&s).unwrap();
    assert_eq!(w.timestamp, until);
    drop(l);
    let l = open(dir.path(), &key, &pk, &clock);
    assert_eq!(l.authorize(&id, &acme).unwrap_err(), expired);
}

/// A purpose that is not consent-based has no consent to withdraw: the withdrawal is
/// refused, not recorded and acknowledged while the use goes on being allowed.
#[test]
fn a_withdrawal_for_a_purpose_without_consent_is_refused() {
    let (_dir, l) = new_ledger();
    let alice = subject("alice");
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
    let len = l.len();
    let e = l.withdraw::<Security>(&alice).unwrap_err();
    assert!(
        matches!(&e, WriteError::Input(i) if i.field() == "purpose"),
        "{e:?}"
    );
    assert_eq!(l.len(), len, "nothing was recorded");
    assert!(l.authorize(&phone, &Recipient::FirstParty).is_ok());
    // What stops it: erasure.
    l.erase(&alice, Actor::Subject).unwrap();
    assert!(l.authorize(&phone, &Recipient::FirstParty).is_err());
}

consent_ledger::declare_purpose!(
    NewsletterV1,
    "newsletter",
    "the monthly newsletter",
    LegalBasis::Consent
);
consent_ledger::declare_purpose!(
    NewsletterV2,
    "newsletter",
    "the monthly newsletter",
    LegalBasis::LegitimateInterest
);

/// A purpose whose basis changed from consent keeps its identifiers collected on
/// consent: decisions about them rest on the consent, so it can be withdrawn through
/// the new type, and the withdrawal takes effect.
#[test]
fn a_consent_that_decisions_rest_on_can_be_withdrawn_after_the_basis_changed() {
    let (_dir, l) = new_ledger();
    let alice = subject("alice");
    let v1 = Identifier::<NewsletterV1>::email("alice@example.org").unwrap();
    l.collect(&alice, &v1, RecipientScope::first_party()).unwrap();
    let grant = l
        .grant::<NewsletterV1>(&alice, RecipientScope::first_party(), None)
        .unwrap();
    let v2 = Identifier::<NewsletterV2>::email("alice@example.org").unwrap();
    let u = l.authorize(&v2, &Recipient::FirstParty).unwrap();
    assert_eq!(u.evidence().legal_basis(), LegalBasis::Consent);
    assert_eq!(u.evidence().allowed_by(), grant.seq);
    drop(u);
    let w = l.withdraw::<NewsletterV2>(&alice).unwrap();
    assert_eq!(
        l.authorize(&v2, &Recipient::FirstParty).unwrap_err(),
        Denied::Withdrawn {
            purpose: "newsletter",
            at: w.seq
        }
    );
    // Another subject with no such collection: refused, as for any purpose without consent.
    let bob = subject("bob");
    let b2 = Identifier::<NewsletterV2>::email("bob@example.org").unwrap();
    l.collect(&bob, &b2, RecipientScope::first_party()).unwrap();
    assert!(matches!(
        l.withdraw::<NewsletterV2>(&bob),
        Err(WriteError::Input(_))
    ));
}

consent_ledger::declare_purpose!(
    /// An application's own consent-based sharing purpose. (A built-in id is reserved
    /// for its own basis, so `SharingLegacy` could not reuse `partner-sharing`.)
    Sharing,
    "sharing",
    "sharing data with business partners",
    LegalBasis::Consent
);

consent_ledger::declare_purpose!(
    SharingLegacy,
    "sharing",
    "sharing data with business partners (declared before the purpose relied on consent)",
    LegalBasis::LegitimateInterest
);

/// An identifier collected through a type that does not rely on consent, for a purpose
/// id the subject has a consent record for: the consent decides, so an acknowledged
/// withdrawal takes effect on every path.
#[test]
fn a_consent_record_decides_also_for_a_collection_on_another_basis() {
    let (_dir, l) = new_ledger();
    let alice = subject("alice");
    let acme = Recipient::partner("acme").unwrap();
    let legacy = Identifier::<SharingLegacy>::email("alice@example.com").unwrap();
    l.collect(&alice, &legacy, RecipientScope::all_partners())
        .unwrap();
    let g = l
        .grant::<Sharing>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    let u = l.authorize(&legacy, &acme).unwrap();
    assert_eq!(
        (u.evidence().allowed_by(), u.evidence().legal_basis()),
        (g.seq, LegalBasis::Consent)
    );
    drop(u);
    let w = l.withdraw::<Sharing>(&alice).unwrap();
    assert_eq!(
        l.authorize(&legacy, &acme).unwrap_err(),
        Denied::Withdrawn {
            purpose: "sharing",
            at: w.seq
        }
    );
    let (matched, _) = l.audience::<SharingLegacy>(&acme).collect(["alice@example.com"]);
    assert!(matched.is_empty());
    assert!(l.authorize_batch([&legacy], &acme)[0].is_err());
}

/// Through the type that does not rely on consent, the consent record can be withdrawn
/// and given again: the refusal of such changes applies only when no decision would
/// read them.
#[test]
fn a_consent_record_can_be_changed_through_a_type_with_the_same_id() {
    let (_dir, l) = new_ledger();
    let bob = subject("bob");
    let acme = Recipient::partner("acme").unwrap();
    let legacy = Identifier::<SharingLegacy>::email("bob@example.com").unwrap();
    l.collect(&bob, &legacy, RecipientScope::all_partners()).unwrap();
    // No consent record yet: refused, as for any purpose without consent.
    assert!(matches!(
        l.withdraw::<SharingLegacy>(&bob),
        Err(WriteError::Input(_))
    ));
    l.grant::<Sharing>(&bob, RecipientScope::all_partners(), None)
        .unwrap();
    let w = l.withdraw::<SharingLegacy>(&bob).unwrap();
    assert_eq!(
        l.authorize(&legacy, &acme).unwrap_err(),
        Denied::Withdrawn {
            purpose: "sharing",
            at: w.seq
        }
    );
    let g = l
        .grant::<SharingLegacy>(&bob, RecipientScope::only(acme.clone()), None)
        .unwrap();
    assert_eq!(
        l.authorize(&legacy, &acme).unwrap().evidence().allowed_by(),
        g.seq
    );
}

/// A clock one millisecond later at every reading.
#[derive(Debug, Clone)]
struct Stepping(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl Clock for Stepping {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }
}

/// Batch authorization and audience matching stamp each decision as `authorize` does:
/// after a decision that read the clock (an expiring grant), a later one in the same
/// batch is not stamped with a time from before it.
#[test]
fn batch_and_audience_stamps_never_run_back() {
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_700_000_000_000;
    let l = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(Stepping(std::sync::Arc::new(t0.into())))
        .open()
        .unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let raw = ["a@example.org", "b@example.org", "c@example.org"];
    let ids: Vec<Identifier<Advertising>> = raw.iter().map(|r| Identifier::email(r).unwrap()).collect();
    for (i, id) in ids.iter().enumerate() {
        let s = SubjectId::new(&format!("s-{i}")).unwrap();
        l.collect(&s, id, RecipientScope::all_partners()).unwrap();
        // The second subject's grant expires (far ahead): deciding it reads the clock.
        let expiry = (i == 1).then(|| Timestamp::from_millis(t0 + 1_000_000_000));
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), expiry)
            .unwrap();
    }
    let batch: Vec<Timestamp> = l
        .authorize_batch([&ids[0], &ids[1], &ids[0]], &acme)
        .into_iter()
        .map(|d| d.unwrap().evidence().decided_at())
        .collect();
    assert!(batch[0] <= batch[1] && batch[1] <= batch[2], "batch: {batch:?}");
    let (matches, _) = l.audience::<Advertising>(&acme).collect(raw);
    let stamps: Vec<Timestamp> = matches.iter().map(|m| m.evidence().decided_at()).collect();
    assert_eq!(stamps.len(), 3);
    assert!(
        stamps[0] <= stamps[1] && stamps[1] <= stamps[2],
        "audience: {stamps:?}"
    );
    assert!(stamps[0] >= batch[2], "audience {stamps:?} after batch {batch:?}");
}
