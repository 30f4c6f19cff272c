//! Stored entry bytes, written by hand from docs/format.md, for the variants the golden
//! vectors in src/entry.rs do not hold (a review's test).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use std::path::Path;

use consent_ledger::{
    Advertising, Identifier, Ledger, ManualClock, PseudonymKey, Recipient, RecipientScope, SigningKey,
    SubjectId, Timestamp,
};

const T0: u64 = 1_800_000_000_000;

fn open(dir: &Path, key: &SigningKey, pk: &PseudonymKey, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .clock(clock.clone())
        .open()
        .unwrap()
}

consent_ledger::declare_purpose!(
    Billing,
    "billing",
    "billing",
    consent_ledger::LegalBasis::Contract
);
consent_ledger::declare_purpose!(
    Tax,
    "tax",
    "tax records",
    consent_ledger::LegalBasis::LegalObligation
);

/// Freezes, from docs/format.md, what the golden vectors in src/entry.rs leave out:
/// legal basis codes 2 and 4, identifier kinds 2 and 3, `DeveloperApp` (recipient tag
/// 2), `AllPartners` (scope tag 1) and `expires_at: None`, as stored by the ledger.
/// (Swapping two basis codes, or two kind codes, passed every other test.)
#[test]
fn stored_bytes_of_the_variants_the_golden_vectors_leave_out() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let s = SubjectId::new("u").unwrap();
    {
        let l = open(dir.path(), &key, &pk, &clock);
        let dev = Identifier::<Billing>::device_id("dev-1").unwrap();
        l.collect(
            &s,
            &dev,
            RecipientScope::only(Recipient::developer_app("app").unwrap()),
        )
        .unwrap(); // 1
        let mail = Identifier::<Tax>::email("t@example.com").unwrap();
        l.collect(&s, &mail, RecipientScope::all_partners()).unwrap(); // 2
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap(); // 3
    }
    let db = sled_util::open(dir.path());
    let entries = db.open_tree("entries").unwrap();
    let body = |seq: u64| {
        let v = entries.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
        // version, seq, timestamp, actor Subject (tag 0), prev_hash, salt | body | signature
        v[1 + 8 + 8 + 4 + 32 + 16..v.len() - 64].to_vec()
    };
    let str_ = |v: &str| [&(v.len() as u64).to_be_bytes()[..], v.as_bytes()].concat();
    let collected = |kind: u8, pseudonym: &[u8], purpose: &str, basis: u8, scope: &[u8]| {
        [
            &1u32.to_be_bytes()[..],
            &str_("u"),
            &[kind],
            pseudonym,
            &str_(purpose),
            &[basis],
            scope,
        ]
        .concat()
    };
    let b1 = body(1);
    let developer_app = [
        &0u32.to_be_bytes()[..],
        &1u64.to_be_bytes(),
        &2u32.to_be_bytes(),
        &str_("app"),
    ]
    .concat();
    assert_eq!(
        b1,
        collected(3, &b1[4 + 9 + 1..4 + 9 + 1 + 32], "billing", 2, &developer_app)
    );
    let b2 = body(2);
    let all_partners = 1u32.to_be_bytes();
    assert_eq!(
        b2,
        collected(2, &b2[4 + 9 + 1..4 + 9 + 1 + 32], "tax", 4, &all_partners)
    );
    let granted = [
        &2u32.to_be_bytes()[..],
        &str_("u"),
        &str_("advertising"),
        &all_partners,
        &[0],
    ]
    .concat();
    assert_eq!(body(3), granted);
}
