//! A catalogue of hostile and broken inputs, one row each: what is fed in, and the
//! exact typed error (or, where accepting is right, the sensible outcome) it gets.
//!
//! Every row runs against its own freshly made ledger, and afterwards the harness checks
//! that nothing already stored was lost: once the row has undone any damage it did to
//! the files on purpose, the keyless [`Inspector`] verifies the whole log, and the ledger
//! reopens with the right keys, verifies, holds every earlier entry byte for byte, and
//! still makes the same decisions.
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
    declare_purpose, verify_inclusion, verify_receipt, Advertising, AuditError, Change, Denied, Identifier,
    IdentifierError, IdentifierKind, InputError, Inspector, IntegrityError, IntegrityProblem, Ledger,
    LegalBasis, ManualClock, NoteError, OpenError, PartnerSharing, ProofError, PseudonymKey, ReadError,
    Receipt, Recipient, RecipientScope, Security, SignedCheckpoint, SigningKey, SubjectId, Timestamp,
    WriteError, MAX_RECIPIENT_NAME_LEN, MAX_SUBJECT_ID_LEN,
};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

// ---- the ledger every row starts from ---------------------------------------------------

const T0: u64 = 1_750_000_000_000;

struct Fx {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    clock: ManualClock,
    /// The stored bytes of every entry before the row ran.
    original: Vec<Vec<u8>>,
}

fn phone1() -> Identifier<Security> {
    Identifier::phone("+1 555 010 0001").unwrap()
}

fn email1() -> Identifier<PartnerSharing> {
    Identifier::email("one@example.com").unwrap()
}

fn phone2() -> Identifier<Advertising> {
    Identifier::phone("+1 555 010 0002").unwrap()
}

fn user(n: u8) -> SubjectId {
    SubjectId::new(&format!("user-{n}")).unwrap()
}

fn acme() -> Recipient {
    Recipient::partner("acme").unwrap()
}

/// Genesis, then: user-1's phone collected for security and email for partner sharing,
/// consent to partner sharing with all partners, user-2's phone collected for security,
/// user-2 withdraws advertising. Six entries, one second apart; closed.
fn fixture() -> Fx {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let fx = Fx {
        dir,
        key: SigningKey::generate(),
        pk: PseudonymKey::generate(),
        clock,
        original: Vec::new(),
    };
    let ledger = open(&fx).unwrap();
    let step = || fx.clock.advance(Duration::from_secs(1));
    step();
    ledger
        .collect(&user(1), &phone1(), RecipientScope::first_party())
        .unwrap();
    step();
    ledger
        .collect(&user(1), &email1(), RecipientScope::first_party())
        .unwrap();
    step();
    ledger
        .grant::<PartnerSharing>(&user(1), RecipientScope::all_partners(), None)
        .unwrap();
    step();
    let p2: Identifier<Security> = Identifier::phone("+1 555 010 0002").unwrap();
    ledger
        .collect(&user(2), &p2, RecipientScope::first_party())
        .unwrap();
    step();
    ledger.withdraw::<Advertising>(&user(2)).unwrap();
    assert_eq!(ledger.len(), 6);
    let original = (0..ledger.len())
        .map(|s| ledger.entry_bytes(s).unwrap())
        .collect();
    assert_same_decisions(&ledger);
    drop(ledger);
    Fx { original, ..fx }
}

fn open(fx: &Fx) -> Result<Ledger, OpenError> {
    Ledger::builder(fx.dir.path())
        .signing_key(fx.key.clone())
        .pseudonym_key(fx.pk.clone())
        .clock(fx.clock.clone())
        .open()
}

/// The decisions the fixture's entries make.
fn assert_same_decisions(ledger: &Ledger) {
    assert!(ledger.authorize(&phone1(), &Recipient::FirstParty).is_ok());
    assert!(ledger.authorize(&email1(), &acme()).is_ok());
    assert!(matches!(
        ledger.authorize(&phone2(), &acme()),
        Err(Denied::NotCollectedForPurpose { .. })
    ));
}

/// Nothing stored before the row ran is lost: the keyless inspector verifies the log,
/// and the ledger reopens with its keys, verifies, holds every earlier entry unchanged
/// and makes the same decisions.
fn assert_nothing_lost(fx: &Fx, row: &str) {
    let inspector = Inspector::open(fx.dir.path()).unwrap_or_else(|e| panic!("{row}: inspector: {e:?}"));
    let report = inspector
        .verify()
        .unwrap_or_else(|e| panic!("{row}: inspector verify: {e}"));
    assert!(report.entries >= fx.original.len() as u64, "{row}");
    drop(inspector);
    let ledger = open(fx).unwrap_or_else(|e| panic!("{row}: reopen: {e}"));
    assert_eq!(ledger.verify().unwrap(), report, "{row}");
    for (seq, bytes) in fx.original.iter().enumerate() {
        assert_eq!(
            &ledger.entry_bytes(seq as u64).unwrap(),
            bytes,
            "{row}: entry {seq}"
        );
    }
    assert_same_decisions(&ledger);
}

// ---- editing the files directly (the ledger closed) ----------------------------------------

fn with_tree<T>(fx: &Fx, tree: &str, f: impl FnOnce(&sled::Tree) -> T) -> T {
    let db = sled_util::open(fx.dir.path());
    let t = db.open_tree(tree).unwrap();
    let out = f(&t);
    db.flush().unwrap();
    out
}

fn put_entry(fx: &Fx, seq: u64, bytes: &[u8]) {
    with_tree(fx, "entries", |t| t.insert(seq.to_be_bytes(), bytes).unwrap());
}

fn restore_entry(fx: &Fx, seq: u64) {
    put_entry(fx, seq, &fx.original[seq as usize]);
}

/// A consent entry encoded by hand as `docs/format.md` specifies (version 1, bincode
/// big-endian fixed-width), chained to the last stored entry and signed with the
/// ledger's key: what a writer of a later application version could have stored.
fn granted_entry(fx: &Fx, seq: u64, timestamp: u64, subject: &str, purpose: &str) -> Vec<u8> {
    let string = |out: &mut Vec<u8>, s: &str| {
        out.extend_from_slice(&(s.len() as u64).to_be_bytes());
        out.extend_from_slice(s.as_bytes());
    };
    let prev: [u8; 32] = Sha256::digest(&fx.original[seq as usize - 1]).into();
    let mut e = vec![1u8]; // format version
    e.extend_from_slice(&seq.to_be_bytes());
    e.extend_from_slice(&timestamp.to_be_bytes());
    e.extend_from_slice(&0u32.to_be_bytes()); // actor: the subject
    e.extend_from_slice(&prev);
    e.extend_from_slice(&[7; 16]); // salt
    e.extend_from_slice(&2u32.to_be_bytes()); // body: granted
    string(&mut e, subject);
    string(&mut e, purpose);
    e.extend_from_slice(&1u32.to_be_bytes()); // scope: all partners
    e.push(0); // no expiry
    let mut msg = b"consent-ledger entry v1\n".to_vec();
    msg.extend_from_slice(&e);
    let key = ed25519_dalek::SigningKey::from_bytes(&fx.key.expose_seed());
    e.extend_from_slice(&key.sign(&msg).to_bytes());
    e
}

/// An entry whose purpose id no `Purpose` type in this program declares.
fn append_unknown_purpose(fx: &Fx, purpose: &str) -> u64 {
    let seq = fx.original.len() as u64;
    let ts = T0 + 60_000;
    put_entry(fx, seq, &granted_entry(fx, seq, ts, "user-1", purpose));
    seq
}

// ---- what a row got -------------------------------------------------------------------------

/// The outcome of feeding a row's input in.
#[derive(Debug)]
enum Got {
    Identifier(IdentifierError),
    Input(InputError),
    Write(WriteError),
    Open(OpenError),
    Audit(AuditError),
    /// Accepted, as it should be (the row asserts what then holds).
    Accepted,
}

/// Opening with the right keys, and verifying with the inspector, both fail at the
/// same place; the message names the position.
fn open_and_verify_fail(fx: &Fx) -> Got {
    let verify = Inspector::open(fx.dir.path()).unwrap().verify().unwrap_err();
    let open = open(fx).unwrap_err();
    match (&open, &verify) {
        (OpenError::Integrity(a), ReadError::Integrity(b)) => {
            assert_eq!(a, b);
            assert!(a.to_string().contains(&format!("entry {}", a.position)), "{a}");
        }
        other => panic!("open and verify disagree: {other:?}"),
    }
    Got::Open(open)
}

fn integrity(g: &Got, position: u64, problem: IntegrityProblem) -> bool {
    matches!(g, Got::Open(OpenError::Integrity(e)) if *e == IntegrityError { position, problem })
}

fn input(g: &Got, field: &str, problem: &str) -> bool {
    matches!(g, Got::Input(e) if e.field() == field && e.problem() == problem)
}

fn parse<P: consent_ledger::Purpose>(kind: IdentifierKind, raw: &str) -> Got {
    match Identifier::<P>::parse(kind, raw) {
        Ok(_) => Got::Accepted,
        Err(e) => {
            assert!(raw.trim().len() < 4 || !e.to_string().contains(raw.trim()), "{e}");
            Got::Identifier(e)
        }
    }
}

fn receipt_json(fx: &Fx) -> serde_json::Value {
    let ledger = open(fx).unwrap();
    let r = ledger.receipt(3, "write to privacy@example.com").unwrap();
    serde_json::from_str(&r.to_json()).unwrap()
}

declare_purpose!(Telemetry, "telemetry", "usage statistics", LegalBasis::Consent);

/// A purpose type whose id breaks the rules (`declare_purpose!` would refuse it).
enum BadId {}
impl consent_ledger::Purpose for BadId {
    const ID: &'static str = "Not Valid!";
    const DESCRIPTION: &'static str = "an id with spaces and capitals";
    const LEGAL_BASIS: LegalBasis = LegalBasis::Consent;
}

// ---- the catalogue -----------------------------------------------------------------------------

struct Row {
    input: &'static str,
    feed: fn(&Fx) -> Got,
    expect: fn(&Got) -> bool,
    /// Undoes damage the row did to the files on purpose.
    undo: fn(&Fx),
}

fn nothing(_: &Fx) {}

const PHONE: IdentifierKind = IdentifierKind::Phone;
const EMAIL: IdentifierKind = IdentifierKind::Email;

fn rows() -> Vec<Row> {
    vec![
        // -- identifiers: malformed, empty, oversize ------------------------------------------
        Row {
            input: "phone without '+' and country code",
            feed: |_| parse::<Security>(PHONE, "(555) 010-9999"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: PHONE, problem })
                    if *problem == "must start with '+' and a country code")
            },
            undo: nothing,
        },
        Row {
            input: "phone with letters",
            feed: |_| parse::<Security>(PHONE, "+1 555 FLOWERS"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: PHONE, problem })
                    if *problem == "contains a character that is not a digit or separator")
            },
            undo: nothing,
        },
        Row {
            input: "phone with full-width digits",
            feed: |_| parse::<Security>(PHONE, "+１５５５０１０９９９９"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: PHONE, problem })
                    if *problem == "contains a character that is not a digit or separator")
            },
            undo: nothing,
        },
        Row {
            input: "phone with 16 digits",
            feed: |_| parse::<Security>(PHONE, "+1234567890123456"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: PHONE, problem })
                    if *problem == "has more than 15 digits")
            },
            undo: nothing,
        },
        Row {
            input: "email with two '@'",
            feed: |_| parse::<PartnerSharing>(EMAIL, "one@two@example.com"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: EMAIL, problem })
                    if *problem == "must contain exactly one '@'")
            },
            undo: nothing,
        },
        Row {
            input: "email with an IP-literal domain",
            feed: |_| parse::<PartnerSharing>(EMAIL, "one@[192.0.2.1]"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: EMAIL, problem })
                    if *problem == "domain contains a character not allowed in a host name")
            },
            undo: nothing,
        },
        Row {
            input: "email with a NUL byte",
            feed: |_| parse::<PartnerSharing>(EMAIL, "one\0@example.com"),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::Invalid { kind: EMAIL, problem })
                    if *problem == "contains whitespace or a control character")
            },
            undo: nothing,
        },
        Row {
            input: "empty email (whitespace only)",
            feed: |_| parse::<PartnerSharing>(EMAIL, " \t\r\n "),
            expect: |g| matches!(g, Got::Identifier(IdentifierError::Empty { kind: EMAIL })),
            undo: nothing,
        },
        Row {
            input: "empty phone",
            feed: |_| parse::<Security>(PHONE, ""),
            expect: |g| matches!(g, Got::Identifier(IdentifierError::Empty { kind: PHONE })),
            undo: nothing,
        },
        Row {
            input: "oversize email (1 MiB)",
            feed: |_| parse::<PartnerSharing>(EMAIL, &format!("{}@example.com", "a".repeat(1 << 20))),
            expect: |g| {
                matches!(g, Got::Identifier(IdentifierError::TooLong { kind: EMAIL, len, max: 512 })
                    if *len == (1 << 20) + 12)
            },
            undo: nothing,
        },
        Row {
            input: "oversize phone (513 bytes)",
            feed: |_| parse::<Security>(PHONE, &format!("+{}", "1".repeat(512))),
            expect: |g| {
                matches!(
                    g,
                    Got::Identifier(IdentifierError::TooLong {
                        kind: PHONE,
                        len: 513,
                        max: 512
                    })
                )
            },
            undo: nothing,
        },
        // -- names written in clear: subject ids, recipients, operators -------------------------------
        Row {
            input: "empty subject id",
            feed: |_| SubjectId::new("").map_or_else(Got::Input, |_| Got::Accepted),
            expect: |g| input(g, "subject id", "is empty"),
            undo: nothing,
        },
        Row {
            input: "oversize subject id",
            feed: |_| {
                SubjectId::new(&"u".repeat(MAX_SUBJECT_ID_LEN + 1)).map_or_else(Got::Input, |_| Got::Accepted)
            },
            expect: |g| input(g, "subject id", "is too long"),
            undo: nothing,
        },
        Row {
            input: "subject id that is an email address",
            feed: |_| SubjectId::new("one@example.com").map_or_else(Got::Input, |_| Got::Accepted),
            expect: |g| {
                input(
                    g,
                    "subject id",
                    "contains '@', like an email address; use an opaque id",
                )
            },
            undo: nothing,
        },
        Row {
            input: "subject id with a line break",
            feed: |_| SubjectId::new("user-1\nuser-2").map_or_else(Got::Input, |_| Got::Accepted),
            expect: |g| input(g, "subject id", "contains a control character"),
            undo: nothing,
        },
        Row {
            input: "oversize recipient name",
            feed: |_| {
                Recipient::partner(&"p".repeat(MAX_RECIPIENT_NAME_LEN + 1))
                    .map_or_else(Got::Input, |_| Got::Accepted)
            },
            expect: |g| input(g, "recipient name", "is too long"),
            undo: nothing,
        },
        Row {
            input: "recipient name padded with spaces",
            feed: |_| Recipient::developer_app(" app-1 ").map_or_else(Got::Input, |_| Got::Accepted),
            expect: |g| input(g, "recipient name", "has leading or trailing whitespace"),
            undo: nothing,
        },
        Row {
            input: "consent for an empty set of recipients",
            feed: |_| RecipientScope::any_of([]).map_or_else(Got::Input, |_| Got::Accepted),
            expect: |g| input(g, "recipient scope", "is empty"),
            undo: nothing,
        },
        Row {
            input: "purpose type with an invalid id",
            feed: |fx| {
                let ledger = open(fx).unwrap();
                ledger
                    .grant::<BadId>(&user(1), RecipientScope::all_partners(), None)
                    .map_or_else(Got::Write, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Write(WriteError::InvalidPurposeId)),
            undo: nothing,
        },
        // -- bytes and text taken from callers ------------------------------------------------------
        Row {
            input: "non-entry bytes (invalid UTF-8) given as an entry to verify_inclusion",
            feed: |fx| {
                let ledger = open(fx).unwrap();
                let cp = ledger.checkpoint().unwrap();
                let proof = ledger.inclusion_proof(3, cp.size()).unwrap();
                verify_inclusion(b"\xff\xfe\x00garbage", &proof, &cp)
                    .map_or_else(Got::Audit, |()| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Audit(AuditError::Proof(ProofError::RootMismatch))),
            undo: nothing,
        },
        Row {
            input: "receipt whose entry is not entry bytes",
            feed: |fx| {
                let mut json = receipt_json(fx);
                json["entry"] = "//79AA==".into(); // ff fe fd 00
                let r = Receipt::from_json(&json.to_string()).unwrap();
                let key = fx.key.verifying_key();
                verify_receipt(&r, &key).map_or_else(Got::Audit, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Audit(AuditError::Malformed("entry"))),
            undo: nothing,
        },
        Row {
            input: "receipt JSON with an escaped lone surrogate (not UTF-8)",
            feed: |fx| {
                let json = receipt_json(fx).to_string().replacen("user-1", "user-\\udc00", 1);
                Receipt::from_json(&json).map_or_else(Got::Audit, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Audit(AuditError::Malformed("receipt"))),
            undo: nothing,
        },
        Row {
            input: "receipt of a future format version",
            feed: |fx| {
                let mut json = receipt_json(fx);
                json["version"] = 2.into();
                Receipt::from_json(&json.to_string()).map_or_else(Got::Audit, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Audit(AuditError::UnsupportedVersion(2))),
            undo: nothing,
        },
        Row {
            input: "checkpoint text that is not a signed note",
            feed: |fx| {
                let text = "consent-ledger/00000000000000000000000000000000\n1\nAAAA\n";
                SignedCheckpoint::verify(text, &fx.key.verifying_key())
                    .map_or_else(Got::Audit, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Audit(AuditError::Checkpoint(NoteError::Malformed))),
            undo: nothing,
        },
        Row {
            input: "trusted checkpoint that is garbage",
            feed: |fx| {
                Ledger::builder(fx.dir.path())
                    .signing_key(fx.key.clone())
                    .pseudonym_key(fx.pk.clone())
                    .trusted_checkpoint("\u{2014} not a checkpoint\n")
                    .open()
                    .map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Open(OpenError::UntrustedCheckpoint)),
            undo: nothing,
        },
        // -- keys --------------------------------------------------------------------------------
        Row {
            input: "wrong signing key on open",
            feed: |fx| {
                Ledger::builder(fx.dir.path())
                    .signing_key(SigningKey::generate())
                    .pseudonym_key(fx.pk.clone())
                    .open()
                    .map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Open(OpenError::WrongSigningKey)),
            undo: nothing,
        },
        Row {
            input: "wrong pseudonym key on open",
            feed: |fx| {
                Ledger::builder(fx.dir.path())
                    .signing_key(fx.key.clone())
                    .pseudonym_key(PseudonymKey::generate())
                    .open()
                    .map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Open(OpenError::WrongPseudonymKey)),
            undo: nothing,
        },
        // -- time ------------------------------------------------------------------------------------
        Row {
            input: "clock set back a day: appends clamp to the last timestamp",
            feed: |fx| {
                let last = Timestamp::from_millis(T0 + 5_000);
                fx.clock.set(Timestamp::from_millis(T0 - 86_400_000));
                let ledger = open(fx).unwrap();
                let a = ledger
                    .grant::<Telemetry>(&user(2), RecipientScope::first_party(), None)
                    .unwrap();
                let b = ledger.withdraw::<Telemetry>(&user(2)).unwrap();
                assert_eq!((a.timestamp, b.timestamp), (last, last));
                assert_eq!((a.seq, b.seq), (6, 7));
                ledger.verify().unwrap();
                let history = ledger.history(&user(2)).unwrap();
                assert!(history.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
                // Time moving forward again is recorded as it is.
                fx.clock.set(Timestamp::from_millis(T0 + 10_000));
                let c = ledger.withdraw::<Advertising>(&user(1)).unwrap();
                assert_eq!(c.timestamp, Timestamp::from_millis(T0 + 10_000));
                Got::Accepted
            },
            expect: |g| matches!(g, Got::Accepted),
            undo: nothing,
        },
        // -- stored data ------------------------------------------------------------------------------
        Row {
            input: "stored entry with a purpose id no Purpose type declares",
            feed: |fx| {
                let seq = append_unknown_purpose(fx, "telemetry-v2");
                let ledger = open(fx).unwrap();
                assert_eq!(ledger.verify().unwrap().entries, seq + 1);
                // Purpose ids are strings: the entry is history like any other ...
                let last = ledger.history(&user(1)).unwrap().pop().unwrap();
                assert_eq!(last.seq, seq);
                assert!(matches!(&last.change, Change::Granted { purpose, .. } if purpose == "telemetry-v2"));
                assert!(ledger
                    .export_subject(&user(1), "write to privacy@example.com")
                    .unwrap()
                    .contains("telemetry-v2"));
                // ... it grants nothing for any purpose the program does name ...
                assert!(matches!(
                    ledger.authorize(
                        &Identifier::<Telemetry>::email("one@example.com").unwrap(),
                        &acme()
                    ),
                    Err(Denied::NotCollectedForPurpose { .. })
                ));
                assert_same_decisions(&ledger);
                // ... and the log goes on after it.
                ledger
                    .grant::<Telemetry>(&user(2), RecipientScope::first_party(), None)
                    .unwrap();
                ledger.verify().unwrap();
                Got::Accepted
            },
            expect: |g| matches!(g, Got::Accepted),
            undo: nothing,
        },
        Row {
            input: "stored entry with an invalid purpose id (correctly signed)",
            feed: |fx| {
                append_unknown_purpose(fx, "Tele Metry");
                open_and_verify_fail(fx)
            },
            expect: |g| integrity(g, 6, IntegrityProblem::InvalidField("purpose id")),
            undo: |fx| {
                with_tree(fx, "entries", |t| t.remove(6u64.to_be_bytes()).unwrap());
            },
        },
        Row {
            input: "stored entry of a future format version",
            feed: |fx| {
                let mut bytes = fx.original[4].clone();
                bytes[0] = 2;
                put_entry(fx, 4, &bytes);
                open_and_verify_fail(fx)
            },
            expect: |g| integrity(g, 4, IntegrityProblem::UnsupportedVersion(2)),
            undo: |fx| restore_entry(fx, 4),
        },
        Row {
            input: "stored entry with invalid UTF-8 in its subject id",
            feed: |fx| {
                let mut bytes = fx.original[2].clone();
                let at = bytes.windows(6).position(|w| w == b"user-1").unwrap();
                bytes[at + 5] = 0xFF;
                put_entry(fx, 2, &bytes);
                open_and_verify_fail(fx)
            },
            expect: |g| integrity(g, 2, IntegrityProblem::Undecodable("invalid UTF-8 in a string")),
            undo: |fx| restore_entry(fx, 2),
        },
        Row {
            input: "gap in the stored sequence (entry 3 removed)",
            feed: |fx| {
                with_tree(fx, "entries", |t| t.remove(3u64.to_be_bytes()).unwrap());
                open_and_verify_fail(fx)
            },
            expect: |g| integrity(g, 3, IntegrityProblem::Missing { next: 4 }),
            undo: |fx| restore_entry(fx, 3),
        },
        Row {
            input: "ledger format marker of a future version",
            feed: |fx| {
                with_tree(fx, "meta", |t| t.insert("format", &[2u8]).unwrap());
                assert!(matches!(
                    Inspector::open(fx.dir.path()),
                    Err(OpenError::UnsupportedFormat {
                        found: 2,
                        supported: 1
                    })
                ));
                open(fx).map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| {
                matches!(
                    g,
                    Got::Open(OpenError::UnsupportedFormat {
                        found: 2,
                        supported: 1
                    })
                )
            },
            undo: |fx| {
                with_tree(fx, "meta", |t| t.insert("format", &[1u8]).unwrap());
            },
        },
        Row {
            input: "ledger format marker that is not one byte",
            feed: |fx| {
                with_tree(fx, "meta", |t| t.insert("format", &b"v1"[..]).unwrap());
                open(fx).map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Open(OpenError::CorruptMetadata("format marker"))),
            undo: |fx| {
                with_tree(fx, "meta", |t| t.insert("format", &[1u8]).unwrap());
            },
        },
        Row {
            input: "head record with its time floor raised in both slots (no key)",
            feed: |fx| {
                let path = fx.dir.path().join("head");
                let mut bytes = std::fs::read(&path).unwrap();
                std::fs::write(fx.dir.path().join("head.orig"), &bytes).unwrap();
                for slot in 0..2 {
                    bytes[slot * 64 + 24] = bytes[slot * 64 + 24].wrapping_add(1);
                }
                std::fs::write(&path, &bytes).unwrap();
                open(fx).map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Open(OpenError::CorruptMetadata("head record"))),
            undo: |fx| {
                std::fs::rename(fx.dir.path().join("head.orig"), fx.dir.path().join("head")).unwrap();
            },
        },
        Row {
            input: "head record cut short",
            feed: |fx| {
                let path = fx.dir.path().join("head");
                let bytes = std::fs::read(&path).unwrap();
                std::fs::write(fx.dir.path().join("head.orig"), &bytes).unwrap();
                std::fs::write(&path, &bytes[..70]).unwrap();
                open(fx).map_or_else(Got::Open, |_| Got::Accepted)
            },
            expect: |g| matches!(g, Got::Open(OpenError::CorruptMetadata("head record"))),
            undo: |fx| {
                std::fs::rename(fx.dir.path().join("head.orig"), fx.dir.path().join("head")).unwrap();
            },
        },
    ]
}

#[test]
fn every_hostile_input_gets_its_typed_error_and_loses_nothing() {
    let rows = rows();
    let mut failures = Vec::new();
    for row in &rows {
        let fx = fixture();
        let got = (row.feed)(&fx);
        if !(row.expect)(&got) {
            failures.push(format!("{}: got {got:?}", row.input));
            continue;
        }
        (row.undo)(&fx);
        assert_nothing_lost(&fx, row.input);
    }
    assert!(
        failures.is_empty(),
        "unexpected outcomes:\n{}",
        failures.join("\n")
    );
}

#[test]
fn the_catalogue_covers_each_kind_of_hostile_input() {
    let rows = rows();
    let has = |word: &str| rows.iter().any(|r| r.input.contains(word));
    for word in [
        "phone",
        "email",
        "empty",
        "oversize",
        "invalid UTF-8",
        "no Purpose type declares",
        "future format version",
        "wrong signing key",
        "wrong pseudonym key",
        "clock set back",
        "gap in the stored sequence",
    ] {
        assert!(has(word), "no row about {word}");
    }
}
