//! Personal data never reaches the database files, Debug, Display or error messages.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;

use consent_ledger::{
    Actor, Advertising, Durability, Identifier, IdentifierKind, Ledger, Name, PartnerSharing, PseudonymKey,
    Recipient, RecipientScope, Security, SigningKey, SubjectId,
};

const PHONE: &str = "+1 (555) 010-9999";
const EMAIL: &str = "alice.privacy-test@Example.com";
/// Fragments that would betray the values: E.164 with and without '+', national
/// digits, the email, its local part and the normalized email.
const NEEDLES: &[&str] = &[
    "+15550109999",
    "15550109999",
    "5550109999",
    "alice.privacy-test@example.com",
    "alice.privacy-test",
    "privacy-test",
];

fn all_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            all_files(&p, out);
        } else {
            out.push(p);
        }
    }
}

fn assert_clean(what: &str, text: &str) {
    for n in NEEDLES {
        assert!(!text.contains(n), "{what} contains {n:?}: {text}");
    }
}

#[test]
fn database_files_hold_no_raw_identifier() {
    for durability in [
        Durability::Immediate,
        Durability::GroupCommit,
        Durability::Relaxed,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let ledger = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .durability(durability)
            .open()
            .unwrap();
        let alice = SubjectId::new("account-1001").unwrap();
        let bob = SubjectId::new("account-1002").unwrap();
        let acme = Recipient::partner("acme-ads").unwrap();
        ledger
            .collect(
                &alice,
                &Identifier::<Security>::phone(PHONE).unwrap(),
                RecipientScope::first_party(),
            )
            .unwrap();
        ledger
            .collect(
                &alice,
                &Identifier::<Advertising>::phone(PHONE).unwrap(),
                RecipientScope::only(acme.clone()),
            )
            .unwrap();
        ledger
            .grant::<Advertising>(&alice, RecipientScope::only(acme), None)
            .unwrap();
        ledger
            .collect(
                &alice,
                &Identifier::<PartnerSharing>::email(EMAIL).unwrap(),
                RecipientScope::first_party(),
            )
            .unwrap();
        let bobs = Identifier::<Security>::email("bob.privacy-test@example.com").unwrap();
        ledger
            .collect(&bob, &bobs, RecipientScope::first_party())
            .unwrap();
        ledger
            .erase(&bob, Actor::Operator(Name::new("dpo").unwrap()))
            .unwrap();
        ledger.withdraw::<Advertising>(&alice).unwrap();
        ledger.sync().unwrap();
        drop(ledger);

        let mut files = Vec::new();
        all_files(dir.path(), &mut files);
        assert!(!files.is_empty());
        for f in files {
            let bytes = std::fs::read(&f).unwrap();
            let mut needles: Vec<&str> = NEEDLES.to_vec();
            needles.push("bob.privacy-test");
            for n in needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                    "{durability:?}: {} contains {n:?}",
                    f.display()
                );
            }
        }
    }
}

#[test]
fn debug_and_display_hold_no_raw_identifier() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&[5; 32]);
    let pk = PseudonymKey::from_bytes([6; 32]);
    let builder = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(pk.clone());
    assert_clean("builder", &format!("{builder:?}"));
    let ledger = builder.open().unwrap();
    let alice = SubjectId::new("account-1001").unwrap();
    let phone = Identifier::<Security>::phone(PHONE).unwrap();
    let email = Identifier::<PartnerSharing>::email(EMAIL).unwrap();
    ledger
        .collect(&alice, &phone, RecipientScope::first_party())
        .unwrap();
    ledger
        .collect(&alice, &email, RecipientScope::first_party())
        .unwrap();

    let mut shown = vec![
        format!("{phone:?} {phone}"),
        format!("{email:?} {email}"),
        format!("{ledger:?}"),
        format!("{key:?} {pk:?}"),
    ];
    let u = ledger.authorize(&phone, &Recipient::FirstParty).unwrap();
    shown.push(format!("{u:?} {:?}", u.evidence()));
    let acme = Recipient::partner("acme").unwrap();
    let denied = ledger.authorize(&email, &acme).unwrap_err();
    shown.push(format!("{denied:?} {denied}"));
    let wrong = Identifier::<Advertising>::phone(PHONE).unwrap();
    let denied = ledger.authorize(&wrong, &acme).unwrap_err();
    shown.push(format!("{denied:?} {denied}"));
    ledger
        .grant::<PartnerSharing>(&alice, RecipientScope::only(Recipient::FirstParty), None)
        .unwrap();
    let denied = ledger.authorize(&email, &acme).unwrap_err();
    shown.push(format!("{denied:?} {denied}"));
    for h in ledger.history(&alice).unwrap() {
        shown.push(format!("{h:?} {}", h.change));
    }
    shown.push(format!("{:?}", ledger.verify().unwrap()));
    // Errors from bad input built around the values.
    for raw in [
        "+1555010999x",
        "alice.privacy-test@",
        "5550109999",
        "alice.privacy-test@@example.com",
    ] {
        for kind in [
            IdentifierKind::Phone,
            IdentifierKind::Email,
            IdentifierKind::DeviceId,
        ] {
            if let Err(e) = Identifier::<Security>::parse(kind, raw) {
                shown.push(format!("{e:?} {e}"));
            }
        }
    }
    let e = SubjectId::new("alice.privacy-test@example.com").unwrap_err();
    shown.push(format!("{e:?} {e}"));
    let e = ledger
        .collect(
            &SubjectId::new("account-2").unwrap(),
            &phone,
            RecipientScope::first_party(),
        )
        .unwrap_err();
    shown.push(format!("{e:?} {e}"));
    for s in shown {
        assert_clean("formatted value", &s);
    }
}
