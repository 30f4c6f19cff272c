//! What an uploader is shown of a match (from review r74): for a one-number upload, the
//! operator's counts tell an unknown number from a 2FA-only one, a withdrawn holder
//! from one who never consented; the uploader's view must not.
#![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]

use consent_ledger::*;

fn ledger(dir: &std::path::Path) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap()
}

#[test]
fn the_uploader_cannot_tell_registered_numbers_from_unknown_ones() {
    let dir = tempfile::tempdir().unwrap();
    let l = ledger(dir.path());
    let acme = Recipient::partner("acme-ads").unwrap();
    let bob = SubjectId::new("user-bob").unwrap();
    l.collect(
        &bob,
        &Identifier::<Security>::phone("+15550100002").unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    let carol = SubjectId::new("user-carol").unwrap();
    let carol_phone = Identifier::<Advertising>::phone("+15550100003").unwrap();
    l.collect(&carol, &carol_phone, RecipientScope::all_partners())
        .unwrap();
    l.grant::<Advertising>(&carol, RecipientScope::all_partners(), None)
        .unwrap();
    l.withdraw::<Advertising>(&carol).unwrap();
    let dan = SubjectId::new("user-dan").unwrap();
    l.collect(
        &dan,
        &Identifier::<Advertising>::phone("+15550100004").unwrap(),
        RecipientScope::all_partners(),
    )
    .unwrap();
    let erin = SubjectId::new("user-erin").unwrap();
    l.collect(
        &erin,
        &Identifier::<Advertising>::phone("+15550100005").unwrap(),
        RecipientScope::all_partners(),
    )
    .unwrap();
    l.grant::<Advertising>(&erin, RecipientScope::all_partners(), None)
        .unwrap();
    let run = |rows: &[&str]| l.audience::<Advertising>(&acme).collect(rows.iter().copied()).1;
    let unknown = run(&["+15550100999"]);
    for number in ["+15550100002", "+15550100003", "+15550100004"] {
        let counts = run(&[number]);
        // The operator's counts tell them apart (what the issue asks them to report)...
        assert_ne!(counts, unknown, "{number}");
        // ...the uploader's view does not, at any minimum.
        for min in [0, 1, 100] {
            assert_eq!(
                counts.for_uploader(min),
                unknown.for_uploader(min),
                "{number}, minimum {min}"
            );
            assert_eq!(
                counts.for_uploader(min).to_string(),
                unknown.for_uploader(min).to_string()
            );
        }
    }
    // A match is shown only at or above the minimum.
    let matched = run(&["+15550100005", "+15550100999", "junk"]);
    assert_eq!(matched.matched, 1);
    assert_eq!(matched.for_uploader(1).matched, Some(1));
    assert_eq!(matched.for_uploader(2).matched, None);
    assert_eq!(
        matched.for_uploader(2).to_string(),
        "uploaded 3, malformed 1, matched fewer than 2"
    );
    assert_eq!(
        matched.for_uploader(1).to_string(),
        "uploaded 3, malformed 1, matched 1"
    );
}
