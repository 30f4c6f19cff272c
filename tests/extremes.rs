//! Public functions and builder settings called with extreme or odd but type-valid
//! values (from a review): positions, sizes and times at 0 and at the largest values,
//! names at their byte limits, huge scopes, many rotations and revocations, odd
//! settings. Each answers with a clear typed error or the documented result.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use consent_ledger::*;

const T0: u64 = 1_750_000_000_000;

/// A builder for the ledger in `dir` under `key` and (a copy of) `pk`, on `clock`.
fn builder(
    dir: &std::path::Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    clock: &ManualClock,
) -> LedgerBuilder<SigningKey, PseudonymKey> {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(PseudonymKey::from_bytes(*pk.expose_bytes()))
        .clock(clock.clone())
}

/// Opens the ledger in `dir` under `key`, `pk` and `clock`, with relaxed durability.
fn open_with(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey, clock: &ManualClock) -> Ledger {
    builder(dir, key, pk, clock)
        .durability(Durability::Relaxed)
        .open()
        .unwrap()
}

fn fresh(start: u64) -> (tempfile::TempDir, SigningKey, PseudonymKey, ManualClock, Ledger) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(start));
    let l = open_with(dir.path(), &key, &pk, &clock);
    (dir, key, pk, clock, l)
}

fn s(id: &str) -> SubjectId {
    SubjectId::new(id).unwrap()
}

/// Reopens the ledger in `dir` under `key` (and `pk`, `clock`), trusting the signed
/// checkpoint `cp`.
fn open_trusting(
    dir: &std::path::Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    clock: &ManualClock,
    cp: &str,
) -> Ledger {
    builder(dir, key, pk, clock)
        .trusted_checkpoint(cp)
        .open()
        .unwrap()
}

/// Subject `acct-1`'s email collected for advertising (first party) and its consent to
/// every partner, in `l`: the subject, the email, partner `acme` and the grant.
fn ads_granted(l: &Ledger) -> (SubjectId, Identifier<Advertising>, Recipient, Recorded) {
    let alice = s("acct-1");
    let email = Identifier::<Advertising>::email("a@example.com").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    let g = l
        .grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    (alice, email, acme, g)
}

#[test]
fn probe_positions_out_of_range() {
    let (_d, key, _pk, _c, l) = fresh(T0);
    let alice = s("acct-1");
    let phone = Identifier::<Security>::phone("+15550100001").unwrap();
    l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
    l.grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    l.sync().unwrap();
    let n = l.len();
    for seq in [n, n + 1, u64::MAX] {
        assert!(
            matches!(l.entry_bytes(seq), Err(ReadError::OutOfRange)),
            "entry_bytes {seq}"
        );
        assert!(
            matches!(l.receipt(seq, "x"), Err(ReadError::OutOfRange)),
            "receipt {seq}"
        );
        assert!(matches!(l.inclusion_proof(seq, n), Err(ReadError::OutOfRange)));
        if seq > n {
            assert!(matches!(l.inclusion_proof(0, seq), Err(ReadError::OutOfRange)));
        }
        assert!(matches!(l.inclusion_proof(seq, seq), Err(ReadError::OutOfRange)));
    }
    assert!(matches!(l.inclusion_proof(0, 0), Err(ReadError::OutOfRange)));
    for (a, b) in [(0, 0), (n, n), (0, n), (1, 1)] {
        let p = l.consistency_proof(a, b);
        assert!(p.is_ok(), "consistency {a} {b}: {p:?}");
    }
    for (a, b) in [
        (n, n + 1),
        (n + 1, n),
        (0, u64::MAX),
        (u64::MAX, u64::MAX),
        (u64::MAX, 0),
        (2, 1),
    ] {
        assert!(
            matches!(l.consistency_proof(a, b), Err(ReadError::OutOfRange)),
            "consistency {a} {b}"
        );
    }
    // receipt for the genesis entry (not about a subject): said so, not "outside the
    // log" (review h34).
    let genesis = l.receipt(0, "x").map(|_| ());
    assert!(
        matches!(&genesis, Err(ReadError::Input(e)) if e.to_string().contains("about no subject")),
        "{genesis:?}"
    );
    let _ = key;
}

#[test]
fn probe_authorize_at_extremes() {
    let (_d, _key, _pk, _c, l) = fresh(T0);
    let (_, email, acme, _) = ads_granted(&l);
    for at in [
        At::Position(0),
        At::Position(1),
        At::Time(Timestamp::EPOCH),
        At::Time(Timestamp::from_millis(T0 - 1)),
    ] {
        assert!(l.authorize_at(&email, &acme, at).unwrap().is_err(), "{at:?}");
    }
    for at in [
        At::Position(l.len()),
        At::Position(u64::MAX),
        At::Time(Timestamp::from_millis(u64::MAX)),
    ] {
        assert!(l.authorize_at(&email, &acme, at).unwrap().is_ok(), "{at:?}");
    }
}

fn exercise_everything(l: &Ledger, tag: &str) {
    let alice = s(&format!("acct-{tag}"));
    let email = Identifier::<Advertising>::email(&format!("{tag}@example.com")).unwrap();
    let phone = Identifier::<Security>::phone("+15550100009").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
    let g = l
        .grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    let r = l.authorize(&email, &acme);
    assert!(r.is_ok(), "{tag}: {r:?}");
    assert!(l.authorize(&phone, &Recipient::FirstParty).is_ok());
    let _ = l.expiring(Duration::MAX).unwrap();
    let _ = l.expiring(Duration::ZERO).unwrap();
    let _ = l.record_expiries().unwrap();
    l.sync().unwrap();
    let rc = l.receipt(g.seq, "https://example.com/withdraw").unwrap();
    let v = verify_receipt(&rc, &l.verifying_key().unwrap());
    assert!(v.is_ok(), "{tag}: {v:?}");
    let back = Receipt::from_json(&rc.to_json());
    assert!(back.is_ok(), "{tag}: {back:?}");
    let _ = l.export_subject(&alice, "x").unwrap();
    let _ = l.history(&alice).unwrap();
    let _ = l.verify().unwrap();
    let _ = l.checkpoint().unwrap();
    let _ = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
    let _ = l
        .authorize_at(&email, &acme, At::Time(Timestamp::from_millis(u64::MAX)))
        .unwrap();
    let w = l.withdraw::<Advertising>(&alice).unwrap();
    assert!(matches!(l.authorize(&email, &acme), Err(Denied::Withdrawn { at, .. }) if at == w.seq));
    l.erase(&alice, Actor::System).unwrap();
}

#[test]
fn probe_clock_at_zero() {
    let (_d, _key, _pk, _c, l) = fresh(0);
    exercise_everything(&l, "zero");
}

#[test]
fn probe_clock_at_max() {
    let (d, key, pk, c, l) = fresh(u64::MAX);
    exercise_everything(&l, "max");
    drop(l);
    c.set(Timestamp::from_millis(T0));
    let l = open_with(d.path(), &key, &pk, &c);
    exercise_everything(&l, "after");
    l.grant::<Analytics>(
        &s("acct-z"),
        RecipientScope::first_party(),
        Some(Timestamp::MAX_RFC3339),
    )
    .unwrap();
}

#[test]
fn probe_clock_forward_then_back() {
    let (_d, _key, _pk, c, l) = fresh(T0);
    let alice = s("acct-1");
    let email = Identifier::<Analytics>::email("a@example.com").unwrap();
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    let exp = Timestamp::from_millis(T0 + 1000);
    l.grant::<Analytics>(&alice, RecipientScope::first_party(), Some(exp))
        .unwrap();
    assert!(l.authorize(&email, &Recipient::FirstParty).is_ok());
    c.set(exp);
    // expiry equal to now
    let at_exp = l.authorize(&email, &Recipient::FirstParty);
    c.set(Timestamp::from_millis(u64::MAX));
    assert!(matches!(
        l.authorize(&email, &Recipient::FirstParty),
        Err(Denied::Expired { .. })
    ));
    c.set(Timestamp::from_millis(T0));
    assert!(matches!(
        l.authorize(&email, &Recipient::FirstParty),
        Err(Denied::Expired { .. })
    ));
    let rec = l.record_expiries().unwrap();
    assert_eq!(rec.len(), 1);
    println!("at expiry: {at_exp:?}");
}

declare_purpose!(pub Long64, "a234567890123456789012345678901234567890123456789012345678901234", "long", LegalBasis::Consent);
declare_purpose!(pub LongLi, "b234567890123456789012345678901234567890123456789012345678901234", "long", LegalBasis::LegitimateInterest);

#[test]
fn probe_names_at_limits() {
    let (d, key, pk, c, l) = fresh(T0);
    let sid = "é".repeat(64);
    assert_eq!(sid.len(), MAX_SUBJECT_ID_LEN);
    let alice = s(&sid);
    assert!(SubjectId::new(&format!("{}é", "a".repeat(127))).is_err());
    let rname = "ü".repeat(64);
    let r = Recipient::partner(&rname).unwrap();
    let app = Recipient::developer_app(&"😀".repeat(32)).unwrap();
    let email = Identifier::<Long64>::email("a@example.com").unwrap();
    let phone = Identifier::<LongLi>::phone("+15550100001").unwrap();
    l.collect(&alice, &email, RecipientScope::only(r.clone()))
        .unwrap();
    l.collect(
        &alice,
        &phone,
        RecipientScope::any_of([r.clone(), app.clone()]).unwrap(),
    )
    .unwrap();
    l.grant::<Long64>(
        &alice,
        RecipientScope::any_of([r.clone(), app.clone()]).unwrap(),
        Some(Timestamp::MAX_RFC3339),
    )
    .unwrap();
    assert!(l.authorize(&email, &r).is_ok());
    assert!(l.authorize(&phone, &app).is_ok());
    l.sync().unwrap();
    let g = l.len() - 1;
    verify_receipt(&l.receipt(g, "x").unwrap(), &key.verifying_key()).unwrap();
    drop(l);
    let l = open_with(d.path(), &key, &pk, &c);
    assert!(l.authorize(&email, &r).is_ok());
    assert!(l.authorize(&phone, &app).is_ok());
    let _ = l.export_subject(&alice, "x").unwrap();
}

#[test]
fn probe_big_scopes() {
    let (d, key, pk, c, l) = fresh(T0);
    let alice = s("acct-1");
    let email = Identifier::<Advertising>::email("a@example.com").unwrap();
    let one = Recipient::partner("p").unwrap();
    // The same recipient 100,000 times.
    let dup = RecipientScope::any_of(std::iter::repeat_n(one.clone(), 100_000)).unwrap();
    assert_eq!(dup.recipients().unwrap().len(), 1);
    l.collect(&alice, &email, dup.clone()).unwrap();
    // 256 distinct recipients with 128-byte names (multi-byte): more than one entry
    // holds (7 KiB; see the next test), refused before anything is written.
    let long: Vec<Recipient> = (0..256)
        .map(|i| Recipient::partner(&format!("{:03}{}", i, "ü".repeat(62))).unwrap())
        .collect();
    assert!(long.iter().all(|r| match r {
        Recipient::Partner(n) => n.as_str().len() >= 127,
        _ => false,
    }));
    let before = l.len();
    let e = l.grant::<Advertising>(&alice, RecipientScope::any_of(long.clone()).unwrap(), None);
    assert!(matches!(e, Err(WriteError::TooLarge { .. })), "{e:?}");
    assert_eq!(l.len(), before);
    // 48 of them fit, as the docs say.
    l.grant::<Advertising>(&alice, RecipientScope::any_of(long[..48].to_vec()).unwrap(), None)
        .unwrap();
    // 256 distinct recipients, with 14-byte names as the docs say.
    let many: Vec<Recipient> = (0..256)
        .map(|i| Recipient::partner(&format!("{:03}{}", i, "x".repeat(11))).unwrap())
        .collect();
    let scope = RecipientScope::any_of(many.clone()).unwrap();
    l.grant::<Advertising>(&alice, scope.clone(), None).unwrap();
    for r in &many {
        assert!(l.authorize(&email, r).is_ok());
    }
    assert!(l.authorize(&email, &one).is_err());
    let too_many: Vec<Recipient> = (0..257)
        .map(|i| Recipient::partner(&format!("p{i}")).unwrap())
        .collect();
    let e = l.grant::<Advertising>(&alice, RecipientScope::any_of(too_many.clone()).unwrap(), None);
    assert!(matches!(e, Err(WriteError::Input(_))), "{e:?}");
    let e = l.collect(&alice, &email, RecipientScope::any_of(too_many).unwrap());
    assert!(matches!(e, Err(WriteError::Input(_))), "{e:?}");
    l.sync().unwrap();
    let g = l.len() - 1;
    let rc = l.receipt(g, "x").unwrap();
    verify_receipt(&Receipt::from_json(&rc.to_json()).unwrap(), &key.verifying_key()).unwrap();
    let _ = l.export_subject(&alice, "x").unwrap();
    drop(l);
    let l = open_with(d.path(), &key, &pk, &c);
    assert!(l.authorize(&email, &many[255]).is_ok());
    l.verify().unwrap();
}

/// sled 0.34.7 stores a page over about 128 KiB in a file under `blobs/` that it never
/// syncs, so a power loss could lose acknowledged entries with it (review r146): the
/// largest entries the ledger writes keep every page of the entries tree in sled's
/// synced log. The largest scope that fits is found by asking: a larger one is refused
/// as `TooLarge`.
#[test]
fn the_largest_entries_leave_no_unsynced_blob_files() {
    let (d, _key, _pk, _c, l) = fresh(T0);
    let alice = s("acct-1");
    let scope = |n: usize, len: usize| {
        RecipientScope::any_of(
            (0..256).map(|i| Recipient::partner(&format!("{n:04}{i:03}{}", "x".repeat(len - 7))).unwrap()),
        )
        .unwrap()
    };
    let len = (8..=128)
        .rev()
        .find(|&len| l.grant::<Advertising>(&alice, scope(0, len), None).is_ok())
        .unwrap();
    let largest = l.entry_bytes(l.len() - 1).unwrap().len();
    assert!((6 * 1024..=7 * 1024).contains(&largest), "{largest} bytes");
    let refused = l.grant::<Advertising>(&alice, scope(1, len + 1), None);
    assert!(matches!(refused, Err(WriteError::TooLarge { .. })), "{refused:?}");
    for n in 1..80 {
        l.grant::<Advertising>(&alice, scope(n, len), None).unwrap();
    }
    l.sync().unwrap();
    let blobs = std::fs::read_dir(d.path().join("blobs")).map_or(0, |r| r.count());
    assert_eq!(
        blobs, 0,
        "pages of {largest}-byte entries were written outside sled's log"
    );
}

#[test]
fn probe_audience_settings() {
    let (_d, _key, _pk, _c, l) = fresh(T0);
    let (_, _, acme, _) = ads_granted(&l);
    for chunk in [0usize, 1, usize::MAX] {
        for threads in [0usize, 1, 2, usize::MAX] {
            let m = l
                .audience::<Advertising>(&acme)
                .chunk_size(chunk)
                .threads(threads);
            let (v, c) = m.collect(Vec::<String>::new());
            assert!(v.is_empty() && c.uploaded == 0, "{c:?}");
            let (v, c) = m.collect(["", "", "a@example.com", " ", "a@example.com", "\0"]);
            assert_eq!(v.len(), 1, "{chunk} {threads}");
            assert_eq!(c.uploaded, 6, "{c:?}");
        }
    }
}

#[test]
fn probe_rotations_and_revocations() {
    let (d, key0, pk, c, l) = fresh(T0);
    let (alice, email, acme, g) = ads_granted(&l);
    // Revoking with a position beyond the end.
    let other = SigningKey::generate();
    for from in [l.len() + 1, u64::MAX] {
        let e = l.revoke_key(other.verifying_key(), from);
        assert!(matches!(e, Err(WriteError::Input(_))), "{e:?}");
    }
    // Current key refused.
    assert!(matches!(
        l.revoke_key(key0.verifying_key(), 0),
        Err(WriteError::Input(_))
    ));
    let mut keys = vec![key0.clone()];
    for _ in 0..200 {
        let k = SigningKey::generate();
        l.rotate_key(k.clone()).unwrap();
        keys.push(k);
    }
    // Rotating to a key used before (not revoked): allowed?
    let back = l.rotate_key(key0.clone());
    println!("rotate back to genesis key: {back:?}");
    let cur = if back.is_ok() {
        key0.clone()
    } else {
        keys.last().unwrap().clone()
    };
    // Revoke every old key from 0, and at len.
    for k in &keys[1..keys.len() - 1] {
        l.revoke_key(k.verifying_key(), 0).unwrap();
        l.revoke_key(k.verifying_key(), l.len()).unwrap();
    }
    l.sync().unwrap();
    let cp = l.checkpoint().unwrap();
    let v = SignedCheckpoint::verify(cp.text(), &cur.verifying_key());
    assert!(v.is_ok(), "{v:?}");
    assert!(l.authorize(&email, &acme).is_ok());
    let r = l.receipt(g.seq, "x");
    println!("receipt of grant after rotate back: {:?}", r.as_ref().map(|_| ()));
    let report = l.verify().unwrap();
    println!("untrusted {:?}", report);
    drop(l);
    let l = open_trusting(d.path(), &cur, &pk, &c, cp.text());
    assert!(l.authorize(&email, &acme).is_ok());
    l.grant::<Analytics>(&alice, RecipientScope::first_party(), None)
        .unwrap();
    l.sync().unwrap();
    let rc = l.receipt(l.len() - 1, "x").unwrap();
    verify_receipt(&rc, &cur.verifying_key()).unwrap();
}

#[test]
fn probe_max_revocations() {
    let (d, key0, pk, c, l) = fresh(T0);
    let alice = s("acct-1");
    l.grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    // Only a key of the ledger may be revoked: each signs one rotation back to key0.
    let mut revoked = Vec::new();
    for _ in 0..=MAX_REVOCATIONS {
        let k = SigningKey::generate();
        l.rotate_key(k.clone()).unwrap();
        l.rotate_key(key0.clone()).unwrap();
        revoked.push(k.verifying_key());
    }
    for (i, k) in revoked.iter().take(MAX_REVOCATIONS).enumerate() {
        l.revoke_key(*k, (i as u64) % 3).unwrap();
    }
    let e = l.revoke_key(revoked[MAX_REVOCATIONS], 0);
    assert!(matches!(e, Err(WriteError::Input(_))), "{e:?}");
    l.revoke_key(revoked[7], 1).unwrap();
    l.sync().unwrap();
    let cp = l.checkpoint().unwrap();
    assert_eq!(cp.revocations().len(), MAX_REVOCATIONS);
    SignedCheckpoint::verify(cp.text(), &key0.verifying_key()).unwrap();
    let rc = l.receipt(1, "x").unwrap();
    verify_receipt(&rc, &key0.verifying_key()).unwrap();
    drop(l);
    let l = open_trusting(d.path(), &key0, &pk, &c, cp.text());
    let e = l.revoke_key(revoked[MAX_REVOCATIONS], 0);
    assert!(matches!(e, Err(WriteError::Input(_))), "{e:?}");
    let k1 = SigningKey::generate();
    l.rotate_key(k1.clone()).unwrap();
    l.sync().unwrap();
    let cp = l.checkpoint().unwrap();
    SignedCheckpoint::verify(cp.text(), &k1.verifying_key()).unwrap();
}

#[test]
fn probe_erase_and_recollect_many_times() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let c = ManualClock::new(Timestamp::from_millis(T0));
    let open = || {
        builder(dir.path(), &key, &pk, &c)
            .durability(Durability::Relaxed)
            .snapshots(Snapshots::OnClose { min_new_entries: 0 })
            .record_decisions(Recording::Every)
            .open()
            .unwrap()
    };
    let l = open();
    let phone = Identifier::<Security>::phone("+15550100001").unwrap();
    let email = Identifier::<Advertising>::email("a@example.com").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let start = std::time::Instant::now();
    let n = 1500;
    for i in 0..n {
        let sub = s(&format!("acct-{i}"));
        l.collect(&sub, &phone, RecipientScope::first_party()).unwrap();
        l.collect(&sub, &email, RecipientScope::first_party()).unwrap();
        l.grant::<Advertising>(&sub, RecipientScope::all_partners(), None)
            .unwrap();
        let u = l.authorize(&email, &acme).unwrap();
        assert_eq!(u.evidence().subject(), &sub);
        assert_eq!(
            l.authorize(&phone, &Recipient::FirstParty)
                .unwrap()
                .evidence()
                .subject(),
            &sub
        );
        if i + 1 < n {
            l.erase(&sub, Actor::System).unwrap();
            assert!(l.authorize(&email, &acme).is_err());
            let e = l.collect(&sub, &phone, RecipientScope::first_party());
            assert!(matches!(e, Err(WriteError::SubjectErased { .. })), "{e:?}");
        }
        if i % 500 == 499 {
            println!("{i}: {:?}", start.elapsed());
        }
    }
    let last = s(&format!("acct-{}", n - 1));
    let rep = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
    assert_eq!(rep.uses, 2 * n as u64);
    drop(l);
    let l = open();
    assert_eq!(l.authorize(&email, &acme).unwrap().evidence().subject(), &last);
    assert_eq!(
        l.authorize_at(&email, &acme, At::Position(u64::MAX))
            .unwrap()
            .unwrap()
            .subject(),
        &last
    );
    let lp = l.len();
    // At a position before the last subject collected, the identifier was someone
    // else's (erased since): unknown.
    assert!(l
        .authorize_at(&email, &acme, At::Position(lp - 4))
        .unwrap()
        .is_err());
    drop(l);
    let l = open();
    assert_eq!(
        l.authorize(&phone, &Recipient::FirstParty)
            .unwrap()
            .evidence()
            .subject(),
        &last
    );
    println!("total {:?}", start.elapsed());
}

// ---- more purposes than the state's purpose index holds --------------------------------

/// Purpose `p<NNNNN>`: one type per number, ids made at compile time.
#[test]
fn probe_impact_extremes() {
    for rec in [
        Recording::Every,
        Recording::Aggregated {
            bucket: Duration::ZERO,
        },
        Recording::Aggregated {
            bucket: Duration::MAX,
        },
        Recording::Aggregated {
            bucket: Duration::from_nanos(1),
        },
    ] {
        let dir = tempfile::tempdir().unwrap();
        let c = ManualClock::new(Timestamp::from_millis(T0));
        let l = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .clock(c.clone())
            .durability(Durability::Relaxed)
            .record_decisions(rec)
            .open()
            .unwrap();
        let (_, email, acme, _) = ads_granted(&l);
        for _ in 0..3 {
            l.authorize(&email, &acme).unwrap();
            c.advance(Duration::from_millis(7));
        }
        c.set(Timestamp::from_millis(u64::MAX));
        l.authorize(&email, &acme).unwrap();
        let all = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
        assert_eq!(all.uses, 4, "{rec:?}");
        let rev = l
            .impact(&ImpactQuery::between(
                Timestamp::from_millis(u64::MAX),
                Timestamp::EPOCH,
            ))
            .unwrap();
        assert_eq!(rev.uses, 0, "{rec:?}");
        let none = l
            .impact(&ImpactQuery::since(Timestamp::from_millis(u64::MAX)))
            .unwrap();
        assert_eq!(none.uses, 1, "{rec:?} {none:?}");
        let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::GrantsVoidBetween {
            from: Timestamp::from_millis(u64::MAX),
            until: Some(Timestamp::EPOCH),
        });
        let r = l.impact(&q).unwrap();
        assert_eq!(r.unlawful_uses, 0, "{rec:?} reversed void window");
        let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::GrantsVoidBetween {
            from: Timestamp::EPOCH,
            until: None,
        });
        let r = l.impact(&q).unwrap();
        assert_eq!(r.unlawful_uses, 4, "{rec:?} all void");
        let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::GrantsVoidBetween {
            from: Timestamp::from_millis(T0),
            until: Some(Timestamp::from_millis(T0)),
        });
        assert_eq!(l.impact(&q).unwrap().unlawful_uses, 0, "{rec:?} empty window");
        let q = ImpactQuery::since(Timestamp::EPOCH)
            .purpose_id("")
            .assume(Hypothesis::NeverConsented {
                given_for: String::new(),
                used_for: "advertising".into(),
            })
            .assume(Hypothesis::WithdrawalsImmediate)
            .assume(Hypothesis::WithdrawalsImmediate);
        assert_eq!(l.impact(&q).unwrap().uses, 0);
        let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::NeverConsented {
            given_for: "advertising".into(),
            used_for: "advertising".into(),
        });
        println!(
            "{rec:?} never-consented same purpose: {}",
            l.impact(&q).unwrap().unlawful_uses
        );
        let recs = l.decision_records().unwrap();
        println!("{rec:?}: {} records", recs.len());
    }
}

/// The greatest counter of the head record's two slots (layout in src/ledger/head.rs:
/// magic 8 | counter u64 BE | ...), i.e. how many times the record was written.
fn head_writes(dir: &std::path::Path) -> u64 {
    let bytes = std::fs::read(dir.join("head")).unwrap();
    bytes
        .chunks_exact(64)
        .map(|slot| u64::from_be_bytes(slot[8..16].try_into().unwrap()))
        .max()
        .unwrap()
}

/// The head record is written "each second the clock moves on" (with a custom clock).
/// A time floor within a second of `u64::MAX` (a clock stepped far forward once, which
/// is "taken as it is" and saved for good) once made every decision rewrite it, with
/// the clock standing still: `saved + 1000` saturated.
#[test]
fn a_time_floor_near_the_largest_timestamp_is_not_saved_again_and_again() {
    let (d, key, pk, c, l) = fresh(u64::MAX);
    let alice = s("acct-1");
    let phone = Identifier::<Security>::phone("+15550100001").unwrap();
    l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
    drop(l);
    // The clock is put right; the floor saved stays (as documented).
    c.set(Timestamp::from_millis(T0));
    let l = open_with(d.path(), &key, &pk, &c);
    let before = head_writes(d.path());
    for _ in 0..1000 {
        l.authorize(&phone, &Recipient::FirstParty).unwrap();
    }
    let after = head_writes(d.path());
    assert!(
        after - before <= 1,
        "the clock did not move, yet 1000 decisions wrote the head record {} times",
        after - before
    );
}

/// Past the 4096th purpose id, a collection is stored but not applied to the state, so
/// erasing its subject does not find its index record: with state snapshots on, the
/// record stays in the vault (linking the identifier's lookup pseudonym to the erased
/// subject) across closes and opens, for anyone with the pseudonym key to test guesses
/// against.
#[test]
fn probe_odd_calls() {
    let (d, key, pk, c, l) = fresh(0);
    let ghost = s("acct-ghost");
    assert!(l.history(&ghost).unwrap().is_empty());
    let _ = l.export_subject(&ghost, "").unwrap();
    let w = l.withdraw::<Advertising>(&ghost);
    println!("withdraw never granted: {w:?}");
    let e1 = l.erase(&ghost, Actor::System).unwrap();
    let e2 = l.erase(&ghost, Actor::System).unwrap();
    assert_eq!(e1.seq, e2.seq);
    let alice = s("acct-1");
    let email = Identifier::<Analytics>::email("a@example.com").unwrap();
    l.collect(&alice, &email, RecipientScope::first_party()).unwrap();
    // Expiry equal to now (the epoch).
    l.grant::<Analytics>(&alice, RecipientScope::first_party(), Some(Timestamp::EPOCH))
        .unwrap();
    assert!(matches!(
        l.authorize(&email, &Recipient::FirstParty),
        Err(Denied::Expired { .. })
    ));
    assert_eq!(l.expiring(Duration::ZERO).unwrap().len(), 1);
    assert_eq!(l.record_expiries().unwrap().len(), 1);
    assert_eq!(l.record_expiries().unwrap().len(), 0);
    l.grant::<Analytics>(
        &alice,
        RecipientScope::first_party(),
        Some(Timestamp::from_millis(1)),
    )
    .unwrap();
    assert!(l.authorize(&email, &Recipient::FirstParty).is_ok());
    c.set(Timestamp::from_millis(1));
    assert!(matches!(
        l.authorize(&email, &Recipient::FirstParty),
        Err(Denied::Expired { .. })
    ));
    l.sync().unwrap();
    let n = l.len();
    drop(l);
    let ins = Inspector::open(d.path()).unwrap();
    assert!(ins.entries(0).unwrap().is_empty());
    let all = ins.entries(u64::MAX).unwrap();
    assert_eq!(all.len() as u64, n - 1);
    let mut calls = 0;
    ins.verify_with_progress(|_| calls += 1).unwrap();
    assert!(calls >= 1);
    drop(ins);
    let l = open_with(d.path(), &key, &pk, &c);
    assert!(matches!(
        l.authorize(&email, &Recipient::FirstParty),
        Err(Denied::Expired { .. })
    ));
}

#[test]
fn probe_identifier_limits() {
    let label = "a".repeat(63);
    // 64 + 1 + 189 = 254 bytes: the longest address; one more is refused.
    let domain = format!("{label}.{label}.{}.com", "b".repeat(57));
    let e = format!("{}@{}", "x".repeat(64), domain);
    assert_eq!(e.len(), 254);
    assert!(Identifier::<Advertising>::email(&e).is_ok());
    let domain2 = format!("{label}.{label}.{}.com", "b".repeat(58));
    let e2 = format!("{}@{}", "x".repeat(64), domain2);
    assert!(matches!(
        Identifier::<Advertising>::email(&e2),
        Err(IdentifierError::Invalid { problem, .. }) if problem == "is longer than 254 bytes"
    ));
    // An internationalized domain is checked in its ASCII form.
    let idn = format!("{}@{}.com", "x".repeat(10), vec!["ü".repeat(50); 4].join("."));
    assert!(Identifier::<Advertising>::email(&idn).is_ok());
    assert!(Identifier::<Security>::phone("+123456789012345").is_ok());
    assert!(Identifier::<Security>::phone("+1234567").is_ok());
    assert!(Identifier::<Security>::phone("+1234567890123456").is_err());
    assert!(Identifier::<Security>::phone("+123456").is_err());
    assert!(Identifier::<Security>::device_id(&"d".repeat(128)).is_ok());
    assert!(Identifier::<Security>::device_id(&"d".repeat(129)).is_err());
    assert!(Identifier::<Security>::device_id(&"é".repeat(10)).is_err());
    // 512 bytes in all, trimmed to one character.
    assert!(Identifier::<Security>::device_id(&format!("{}d{}", " ".repeat(255), " ".repeat(256))).is_ok());
}

#[test]
fn probe_snapshot_settings() {
    for snaps in [
        Snapshots::OnClose { min_new_entries: 0 },
        Snapshots::OnClose {
            min_new_entries: u64::MAX,
        },
        Snapshots::Off,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let pk = PseudonymKey::generate();
        let c = ManualClock::new(Timestamp::from_millis(T0));
        let open = || {
            builder(dir.path(), &key, &pk, &c)
                .snapshots(snaps)
                .open()
                .unwrap()
        };
        drop(open());
        drop(open());
        let l = open();
        let alice = s("acct-1");
        let phone = Identifier::<Security>::phone("+15550100001").unwrap();
        l.collect(&alice, &phone, RecipientScope::first_party()).unwrap();
        drop(l);
        let l = open();
        assert!(l.authorize(&phone, &Recipient::FirstParty).is_ok(), "{snaps:?}");
        l.erase(&alice, Actor::System).unwrap();
        drop(l);
        let l = open();
        assert!(l.authorize(&phone, &Recipient::FirstParty).is_err(), "{snaps:?}");
        println!("{snaps:?}: state file {}", dir.path().join("state").exists());
    }
}
