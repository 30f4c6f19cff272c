//! The head record against damage (from review r73): a cut is reported as a cut with
//! whichever key opens, and one flipped byte in the head file is refused, never taken
//! as a reason to fall back to the older slot (a lower time floor, a shorter length).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use consent_ledger::{
    Advertising, Denied, Durability, Identifier, IntegrityProblem, Ledger, ManualClock, OpenError,
    PseudonymKey, Recipient, RecipientScope, SigningKey, SubjectId, Timestamp,
};

const T0: u64 = 1_700_000_000_000;

fn open_manual(
    dir: &Path,
    k: &SigningKey,
    pk: &PseudonymKey,
    clock: &ManualClock,
) -> Result<Ledger, OpenError> {
    Ledger::builder(dir)
        .signing_key(k.clone())
        .pseudonym_key(pk.clone())
        .durability(Durability::Immediate)
        .clock(clock.clone())
        .open()
}

fn email(i: u32) -> Identifier<Advertising> {
    Identifier::<Advertising>::email(&format!("p{i}@example.org")).unwrap()
}

/// Offset of the slot with the greater counter (layout: docs/format.md, `head`).
fn newest_slot(head: &[u8]) -> usize {
    let counter = |s: usize| u64::from_be_bytes(head[s * 64 + 8..s * 64 + 16].try_into().unwrap());
    if counter(0) > counter(1) {
        0
    } else {
        64
    }
}

/// R73-1. A log cut back across a key rotation (sled drops everything after one flipped
/// bit in its data file) is reported as `WrongSigningKey` to the operator who opens
/// with the correct, current key: the signing-key check runs before the head-record
/// check, so `ShorterThanRecorded` is never reported. After a rotation made because
/// the old key leaked (the case the docs describe), the operator may have destroyed
/// the old key and cannot learn that the log was cut at all.
#[test]
fn a_cut_across_a_key_rotation_is_reported_as_a_cut_not_as_a_wrong_key() {
    let dir = tempfile::tempdir().unwrap();
    let (old, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let current = SigningKey::generate();
    let builder = |key: &SigningKey| {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
    };
    let len = {
        let l = builder(&old).open().unwrap();
        for i in 0..10u32 {
            let s = SubjectId::new(&format!("subject-{i:02}")).unwrap();
            l.collect(&s, &email(i), RecipientScope::all_partners()).unwrap();
            l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        l.rotate_key(current.clone()).unwrap();
        l.withdraw::<Advertising>(&SubjectId::new("subject-03").unwrap())
            .unwrap();
        l.len()
    };
    let db = dir.path().join("db");
    let original = std::fs::read(&db).unwrap();
    let at = original
        .windows(10)
        .position(|w| w == b"subject-05")
        .expect("the subject id in the data file");
    let mut wrong = Vec::new();
    for i in at..at + 10 {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&db, &bytes).unwrap();
        match builder(&current).open() {
            Ok(l) => assert_eq!(l.len(), len, "byte {}: a cut log opened", i - at),
            Err(OpenError::Integrity(e))
                if matches!(e.problem, IntegrityProblem::ShorterThanRecorded { .. }) => {}
            Err(e) => wrong.push((i - at, format!("{e:?}"))),
        }
    }
    std::fs::write(&db, &original).unwrap();
    assert!(
        wrong.is_empty(),
        "a log of {len} entries cut before its key rotation, opened with the current key: \
         (byte flipped, error) = {wrong:?}"
    );
}

/// R73-2a. One flipped byte in the head record's newest slot is not detected: opening
/// silently takes the older slot, whose time floor is lower, and a consent the ledger
/// had already judged lapsed is allowed again after a clock step back.
#[test]
fn one_flipped_byte_in_the_head_record_does_not_lower_the_time_floor() {
    let dir = tempfile::tempdir().unwrap();
    let (k, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let alice = SubjectId::new("acct-1").unwrap();
    let id = email(1);
    let r = Recipient::FirstParty;
    {
        let l = open_manual(dir.path(), &k, &pk, &clock).unwrap();
        l.collect(&alice, &id, RecipientScope::first_party()).unwrap();
        l.grant::<Advertising>(
            &alice,
            RecipientScope::first_party(),
            Some(Timestamp::from_millis(T0 + 10_500)),
        )
        .unwrap();
        clock.set(Timestamp::from_millis(T0 + 10_000));
        assert!(l.authorize(&id, &r).is_ok());
        clock.set(Timestamp::from_millis(T0 + 10_600));
        assert!(matches!(l.authorize(&id, &r), Err(Denied::Expired { .. })));
    } // closed cleanly: the floor T0 + 10.6 s is saved, synced
    let head = dir.path().join("head");
    let original = std::fs::read(&head).unwrap();
    let newest = newest_slot(&original);
    let mut revived = Vec::new();
    for i in newest..newest + 64 {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&head, &bytes).unwrap();
        // The clock is stepped back, still after the last entry.
        clock.set(Timestamp::from_millis(T0 + 10_100));
        match open_manual(dir.path(), &k, &pk, &clock) {
            Err(OpenError::CorruptMetadata("head record")) => {}
            Err(e) => panic!("byte {i}: {e:?}"),
            Ok(l) => {
                if l.authorize(&id, &r).is_ok() {
                    revived.push(i);
                }
            }
        }
        std::fs::write(&head, &original).unwrap();
    }
    assert!(
        revived.is_empty(),
        "one flipped byte in the head file (at these offsets) opened without an error and \
         allowed a consent the ledger had judged expired: {revived:?}"
    );
}

/// R73-2b. The same fallback loses the durable length: with a custom clock the older slot
/// can be a whole session old, so one flipped byte in `head` plus one in sled's `db`
/// opens a log cut back before an acknowledged (fsynced, recorded and synced at close)
/// withdrawal, and the withdrawn use is allowed again.
#[test]
fn one_flipped_byte_in_the_head_record_does_not_hide_a_cut_log() {
    let dir = tempfile::tempdir().unwrap();
    let (k, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let acme = Recipient::partner("acme-ads").unwrap();
    drop(open_manual(dir.path(), &k, &pk, &clock).unwrap());
    clock.set(Timestamp::from_millis(T0 + 3_600_000));
    let len = {
        let l = open_manual(dir.path(), &k, &pk, &clock).unwrap();
        for i in 0..10u32 {
            let s = SubjectId::new(&format!("subject-{i:02}")).unwrap();
            l.collect(&s, &email(i), RecipientScope::all_partners()).unwrap();
            l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        l.withdraw::<Advertising>(&SubjectId::new("subject-03").unwrap())
            .unwrap();
        assert!(l.authorize(&email(3), &acme).is_err());
        l.len()
    }; // closed cleanly: the record holds all `len` entries, synced
    let head = dir.path().join("head");
    let original_head = std::fs::read(&head).unwrap();
    let mut bytes = original_head.clone();
    bytes[newest_slot(&original_head) + 40] ^= 0x01; // one bit of its tag
    std::fs::write(&head, &bytes).unwrap();

    let db = dir.path().join("db");
    let original = std::fs::read(&db).unwrap();
    let at = original.windows(10).position(|w| w == b"subject-05").unwrap();
    let mut opened_cut = Vec::new();
    for i in at..at + 10 {
        let mut b = original.clone();
        b[i] ^= 0x01;
        std::fs::write(&db, &b).unwrap();
        if let Ok(l) = open_manual(dir.path(), &k, &pk, &clock) {
            if l.len() < len {
                opened_cut.push((i - at, l.len(), l.authorize(&email(3), &acme).is_ok()));
            }
        }
    }
    std::fs::write(&db, &original).unwrap();
    std::fs::write(&head, &original_head).unwrap();
    assert!(
        opened_cut.is_empty(),
        "{len} entries were durable and recorded at close; one flipped byte in `head` and one \
         in `db` opened a cut log: (byte, length opened, withdrawn use allowed) = {opened_cut:?}"
    );
}
