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
    Advertising, Identifier, Ledger, ManualClock, PseudonymKey, Recipient, RecipientScope, Security,
    SigningKey, SubjectId, Timestamp,
};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

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

/// The pseudonym key of the records recomputed below.
const PK: [u8; 32] = [0x42; 32];

fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// docs/format.md, "Index record": the record tag, HMAC under the pseudonym key after
/// "consent-ledger/v1/index-record\0", over each part as u64 BE length || part.
fn record_tag(parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(&PK).unwrap();
    mac.update(b"consent-ledger/v1/index-record\0");
    for p in parts {
        mac.update(&(p.len() as u64).to_be_bytes());
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

/// The vault's slots (docs/format.md, "Directory"): (kind, key, value) of each used slot.
fn vault_slots(dir: &Path) -> Vec<(u8, Vec<u8>, Vec<u8>)> {
    let raw = std::fs::read(dir.join("vault")).unwrap();
    assert!(raw.starts_with(b"consent-ledger vault v1\n"));
    assert!(raw[24..256].iter().all(|b| *b == 0));
    let mut out = Vec::new();
    for slot in raw[256..].chunks_exact(256) {
        if slot.iter().all(|b| *b == 0) {
            continue;
        }
        let sum = Sha256::digest(&slot[..240]);
        assert_eq!(&slot[240..], &sum[..16], "slot checksum");
        let kind = slot[0];
        let klen = usize::from(slot[1]);
        let key = slot[2..2 + klen].to_vec();
        let vlen = usize::from(slot[2 + klen]);
        let value = slot[3 + klen..3 + klen + vlen].to_vec();
        assert!(slot[3 + klen + vlen..240].iter().all(|b| *b == 0), "padding");
        out.push((kind, key, value));
    }
    out
}

/// The index record and its tag, the vault slot layout, the secret slot and the
/// pseudonym derivations, and the head record, all recomputed from docs/format.md.
/// (Only round trips covered the index record and the head record: swapping two of
/// the index tag's parts, or two of the head slot's counters, passed every test. A
/// review's test.)
#[test]
fn index_record_vault_slots_and_head_record_are_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let s = SubjectId::new("u").unwrap();
    {
        let l = open(dir.path(), &key, &PseudonymKey::from_bytes(PK), &clock);
        let phone = Identifier::<Security>::phone("+1 555 010 9999").unwrap();
        l.collect(&s, &phone, RecipientScope::first_party()).unwrap();
        l.sync().unwrap();
    }
    // The ledger id and the collection's subject pseudonym, from the stored entries.
    let db = sled_util::open(dir.path());
    let entries = db.open_tree("entries").unwrap();
    let genesis = entries.get(0u64.to_be_bytes()).unwrap().unwrap().to_vec();
    // version, seq, timestamp, actor System (tag 2), prev_hash, salt, body tag 0, ledger id
    let at = 1 + 8 + 8 + 4 + 32 + 16 + 4;
    let ledger_id: [u8; 16] = genesis[at..at + 16].try_into().unwrap();
    let collected = entries.get(1u64.to_be_bytes()).unwrap().unwrap().to_vec();
    // version, seq, timestamp, actor Subject (tag 0), prev_hash, salt, body tag 1,
    // subject (u64 length 1, "u"), kind
    let at = 1 + 8 + 8 + 4 + 32 + 16 + 4 + 8 + 1;
    assert_eq!(collected[at], 1, "phone");
    let subject_pseudonym: [u8; 32] = collected[at + 1..at + 33].try_into().unwrap();
    drop(entries);
    drop(db);

    let slots = vault_slots(dir.path());
    assert_eq!(slots.len(), 2, "one secret, one index record");
    let (_, secret_key, secret) = slots.iter().find(|(k, ..)| *k == 1).unwrap();
    assert_eq!(secret_key, b"u");
    assert_eq!(secret.len(), 32);
    let (_, lookup, value) = slots.iter().find(|(k, ..)| *k == 2).unwrap();
    // lookup pseudonym = HMAC(pk, "consent-ledger/v1/lookup\0" || kind || normalized)
    let want_lookup = hmac(&PK, &[b"consent-ledger/v1/lookup\0", &[1], b"+15550109999"]);
    assert_eq!(lookup[..], want_lookup[..], "lookup pseudonym");
    // subject pseudonym = HMAC(HMAC(pk, "…subject-key\0" || secret), "…subject-identifier\0" || kind || normalized)
    let subject_key = hmac(&PK, &[b"consent-ledger/v1/subject-key\0", secret]);
    let want_sp = hmac(
        &subject_key,
        &[b"consent-ledger/v1/subject-identifier\0", &[1], b"+15550109999"],
    );
    assert_eq!(subject_pseudonym, want_sp, "subject pseudonym");
    // index record = bincode(version u8 1, subject string, kind u8, subject pseudonym, tag)
    let tag = record_tag(&[lookup, b"u", &[1], &subject_pseudonym]);
    let want_value = [
        &[1u8][..],
        &1u64.to_be_bytes(),
        b"u",
        &[1],
        &subject_pseudonym,
        &tag,
    ]
    .concat();
    assert_eq!(value, &want_value, "index record");

    // Head record: two 64-byte slots, "clhead1\n" | counter | durable length | time
    // floor | tag over ("consent-ledger head v1", ledger id, first 32 bytes).
    let head = std::fs::read(dir.path().join("head")).unwrap();
    assert_eq!(head.len(), 128);
    let mut counters = Vec::new();
    for (i, slot) in head.chunks_exact(64).enumerate() {
        assert_eq!(&slot[..8], b"clhead1\n");
        let counter = u64::from_be_bytes(slot[8..16].try_into().unwrap());
        assert_eq!(counter % 2, i as u64, "slot {i} sits where its counter puts it");
        let want = record_tag(&[b"consent-ledger head v1", &ledger_id, &slot[..32]]);
        assert_eq!(slot[32..], want[..], "head slot {i} tag");
        counters.push((counter, slot));
    }
    let newest = counters.iter().max_by_key(|(c, _)| *c).unwrap().1;
    assert_eq!(
        u64::from_be_bytes(newest[16..24].try_into().unwrap()),
        2,
        "durable length"
    );
    assert!(
        u64::from_be_bytes(newest[24..32].try_into().unwrap()) >= T0,
        "time floor"
    );
}

/// docs/format.md lists the `meta` tree's values: `"format"`, one byte `1`; `"vault
/// digest"`, 33 bytes (version 3 and a tag), absent in older ledgers, empty after a
/// close that left an erasure unfinished. Every value a plain close leaves there must
/// be one of the first shapes (a review's test).
#[test]
fn meta_values_after_a_close_have_the_documented_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    {
        let l = open(dir.path(), &key, &PseudonymKey::from_bytes(PK), &clock);
        let phone = Identifier::<Security>::phone("+1 555 010 9999").unwrap();
        l.collect(
            &SubjectId::new("u").unwrap(),
            &phone,
            RecipientScope::first_party(),
        )
        .unwrap();
    }
    let db = sled_util::open(dir.path());
    let meta = db.open_tree("meta").unwrap();
    for item in meta.iter() {
        let (k, v) = item.unwrap();
        match &k[..] {
            b"format" => assert_eq!(&v[..], &[1]),
            b"vault digest" => assert!(v.len() == 33 && v[0] == 3, "{v:?}"),
            other => panic!("undocumented meta key {other:?}"),
        }
    }
}
