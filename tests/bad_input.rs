//! Bad input gets a typed error with a clear message, and loses nothing already stored.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use consent_ledger::{
    Identifier, IdentifierError, IdentifierKind, Inspector, Ledger, OpenError, PseudonymKey, Recipient,
    RecipientScope, Security, SigningKey, SubjectId, VerifyReport,
};

#[test]
fn malformed_identifiers() {
    let cases: &[(IdentifierKind, &str)] = &[
        (IdentifierKind::Phone, "5550109999"),
        (IdentifierKind::Phone, "+1 555 CALL NOW"),
        (IdentifierKind::Phone, "+12"),
        (IdentifierKind::Phone, "+1234567890123456789"),
        (IdentifierKind::Phone, "+0123456789"),
        (IdentifierKind::Phone, "++15550109999"),
        (IdentifierKind::Email, "alice.example.com"),
        (IdentifierKind::Email, "alice@"),
        (IdentifierKind::Email, "@example.com"),
        (IdentifierKind::Email, "alice@localhost"),
        (IdentifierKind::Email, "al ice@example.com"),
        (IdentifierKind::Email, "alice@@example.com"),
        (IdentifierKind::DeviceId, "has space"),
    ];
    for (kind, raw) in cases {
        let err = Identifier::<Security>::parse(*kind, raw).unwrap_err();
        assert!(
            matches!(err, IdentifierError::Invalid { kind: k, .. } if k == *kind),
            "{raw}: {err:?}"
        );
        let msg = err.to_string();
        assert!(msg.starts_with(&format!("invalid {kind}: ")), "{msg}");
        assert!(!msg.contains(raw), "{msg}");
    }
}

#[test]
fn empty_and_oversize_identifiers() {
    let huge = "7".repeat(1 << 20);
    let huge_email = format!("{}@example.com", "a".repeat(1 << 20));
    for kind in [
        IdentifierKind::Phone,
        IdentifierKind::Email,
        IdentifierKind::DeviceId,
    ] {
        for empty in ["", "   ", "\t\n"] {
            let err = Identifier::<Security>::parse(kind, empty).unwrap_err();
            assert_eq!(err, IdentifierError::Empty { kind });
            assert_eq!(err.to_string(), format!("{kind} is empty"));
        }
        for big in [&huge, &huge_email] {
            let err = Identifier::<Security>::parse(kind, big).unwrap_err();
            assert!(
                matches!(err, IdentifierError::TooLong { kind: k, len, .. } if k == kind && len == big.len())
            );
            assert!(err.to_string().len() < 100);
        }
    }
}

#[test]
fn invalid_names() {
    for bad in ["", " padded", "line\nbreak", &"x".repeat(200)] {
        assert!(SubjectId::new(bad).is_err(), "{bad:?}");
        assert!(Recipient::partner(bad).is_err(), "{bad:?}");
    }
    let e = SubjectId::new("alice@example.com").unwrap_err();
    assert_eq!(e.field(), "subject id");
    assert!(RecipientScope::any_of([]).is_err());
}

struct Setup {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    report: VerifyReport,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let ledger = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap();
    let s = SubjectId::new("user-1").unwrap();
    ledger
        .collect(
            &s,
            &Identifier::<Security>::phone("+15550109999").unwrap(),
            RecipientScope::first_party(),
        )
        .unwrap();
    let report = ledger.verify().unwrap();
    Setup { dir, key, pk, report }
}

fn reopen_intact(s: &Setup) {
    let ledger = Ledger::builder(s.dir.path())
        .signing_key(s.key.clone())
        .pseudonym_key(s.pk.clone())
        .open()
        .unwrap();
    assert_eq!(ledger.verify().unwrap(), s.report);
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    assert!(ledger.authorize(&phone, &Recipient::FirstParty).is_ok());
}

#[test]
fn wrong_keys_on_reopen() {
    let s = setup();
    let e = Ledger::builder(s.dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(s.pk.clone())
        .open()
        .unwrap_err();
    assert!(matches!(e, OpenError::WrongSigningKey), "{e:?}");
    assert_eq!(
        e.to_string(),
        "the signing key is not the key the ledger authorizes for new entries"
    );
    let e = Ledger::builder(s.dir.path())
        .signing_key(s.key.clone())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap_err();
    assert!(matches!(e, OpenError::WrongPseudonymKey), "{e:?}");
    reopen_intact(&s);
}

#[test]
fn directory_with_other_files_is_not_a_ledger_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let note = dir.path().join("notes.txt");
    std::fs::write(&note, b"my precious data").unwrap();
    let e = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap_err();
    assert!(matches!(e, OpenError::NotALedger), "{e:?}");
    assert_eq!(std::fs::read(&note).unwrap(), b"my precious data");
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "nothing was created"
    );
    assert!(matches!(
        Inspector::open(dir.path()).unwrap_err(),
        OpenError::NotALedger
    ));
}

/// Another program's `conf` file (or a `blobs` directory) alone is not a ledger's
/// cut-short creation, whatever its size: the open refuses and changes nothing (it
/// used to overwrite a short one with sled's, and add a vault beside a longer one).
#[test]
fn a_directory_with_another_programs_conf_is_left_alone() {
    for text in [&b"port=80\n"[..], &b"listen = 8080\nuser = alice\n"[..]] {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("conf");
        std::fs::write(&conf, text).unwrap();
        let e = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .open()
            .map(|l| l.len());
        assert!(matches!(e, Err(OpenError::NotALedger)), "{e:?}");
        assert_eq!(std::fs::read(&conf).unwrap(), text);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["conf"], "the refused open added files");
    }
}

#[test]
fn other_sled_database_is_not_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    {
        let db = sled_util::open(dir.path());
        db.open_tree("users").unwrap().insert("k", "v").unwrap();
        db.flush().unwrap();
    }
    let e = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap_err();
    assert!(matches!(e, OpenError::NotALedger), "{e:?}");
    let db = sled_util::open(dir.path());
    assert_eq!(
        db.open_tree("users").unwrap().get("k").unwrap().unwrap().as_ref(),
        b"v"
    );
}

#[test]
fn file_instead_of_directory_and_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let e = Ledger::builder(&file)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap_err();
    assert!(
        matches!(e, OpenError::NotALedger | OpenError::Storage(_)),
        "{e:?}"
    );
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
    assert!(matches!(
        Inspector::open(dir.path().join("missing")).unwrap_err(),
        OpenError::NotALedger
    ));
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn second_open_while_open_is_an_error_not_a_panic() {
    let s = setup();
    let first = Ledger::builder(s.dir.path())
        .signing_key(s.key.clone())
        .pseudonym_key(s.pk.clone())
        .open()
        .unwrap();
    let second = Ledger::builder(s.dir.path())
        .signing_key(s.key.clone())
        .pseudonym_key(s.pk.clone())
        .open();
    assert!(matches!(second, Err(OpenError::Storage(_))), "{second:?}");
    drop(first);
    reopen_intact(&s);
}

#[test]
fn identifier_held_by_another_subject() {
    let s = setup();
    let ledger = Ledger::builder(s.dir.path())
        .signing_key(s.key.clone())
        .pseudonym_key(s.pk.clone())
        .open()
        .unwrap();
    let other = SubjectId::new("user-2").unwrap();
    let phone = Identifier::<Security>::phone("+1 555 010 9999").unwrap();
    let e = ledger
        .collect(&other, &phone, RecipientScope::first_party())
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "the phone number is already recorded for another subject"
    );
    assert_eq!(ledger.len(), s.report.entries);
}
