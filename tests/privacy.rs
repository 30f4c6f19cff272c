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
/// What would betray the values: each as the caller wrote it and in parts people
/// recognize, the E.164 form with and without '+', the national digits, the email, its
/// local part and the normalized email; searched for in UTF-8 and in UTF-16 (both byte
/// orders), see [`spellings`].
const NEEDLES: &[&str] = &[
    PHONE,
    "(555) 010-9999",
    "010-9999",
    "+1555010999",
    "+15550109999",
    "15550109999",
    "5550109999",
    EMAIL,
    "alice.privacy-test@example.com",
    "alice.privacy-test",
    "privacy-test",
];

/// Each needle in UTF-8, UTF-16LE and UTF-16BE.
fn spellings(needles: &[&str]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for n in needles {
        out.push(n.as_bytes().to_vec());
        out.push(n.encode_utf16().flat_map(u16::to_le_bytes).collect());
        out.push(n.encode_utf16().flat_map(u16::to_be_bytes).collect());
    }
    out
}

fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

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
    for n in spellings(NEEDLES) {
        assert!(!holds(text.as_bytes(), &n), "{what} contains {n:?}: {text}");
    }
}

/// The needles can find what they are meant to find: each value as the caller wrote it
/// (a check that would pass whatever the crate printed proves nothing).
#[test]
fn the_needles_find_the_values_as_written() {
    for (value, leaked) in [
        (PHONE, format!("Identifier {{ value: {PHONE:?} }}")),
        ("+1555010999x", "+1555010999x".to_owned()),
        (EMAIL, format!("<{EMAIL}>")),
    ] {
        let caught = std::panic::catch_unwind(|| assert_clean("leak", &leaked)).is_err();
        assert!(caught, "{value:?} leaked unseen");
    }
    let utf16: Vec<u8> = PHONE.encode_utf16().flat_map(u16::to_le_bytes).collect();
    assert!(spellings(NEEDLES).iter().any(|n| holds(&utf16, n)));
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
            for n in spellings(&needles) {
                assert!(
                    !holds(&bytes, &n),
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

/// Everything at once (the tests above look at one thing each).
mod everything {
    use consent_ledger::*;

    /// The same scan with everything the crate writes or shows: a state snapshot, decision
    /// records (every use), a device id, a reopening, a receipt, an export, audience counts,
    /// a misdelivery, a channel, an impact report, and the key bytes themselves.
    #[test]
    fn nothing_the_crate_writes_or_shows_holds_an_identifier_or_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let sk = SigningKey::from_bytes(&[0xA7; 32]);
        let pk = PseudonymKey::from_bytes([0xB3; 32]);
        let open = || {
            Ledger::builder(dir.path())
                .signing_key(sk.clone())
                .pseudonym_key(pk.clone())
                .snapshots(Snapshots::OnClose { min_new_entries: 1 })
                .record_decisions(Recording::Every)
                .open()
                .unwrap()
        };
        let ledger = open();
        let alice = SubjectId::new("account-1").unwrap();
        let bob = SubjectId::new("account-2").unwrap();
        let acme = Recipient::partner("acme").unwrap();
        let phone = Identifier::<Advertising>::phone("+1 555 010 9999").unwrap();
        let dev = Identifier::<Advertising>::device_id("6D92078A-8246-4BA4-AE5B-76104861E7DC").unwrap();
        let bobs = Identifier::<Advertising>::email("bob.privacy@example.com").unwrap();
        ledger
            .collect(&alice, &phone, RecipientScope::all_partners())
            .unwrap();
        ledger
            .collect(&alice, &dev, RecipientScope::all_partners())
            .unwrap();
        ledger
            .collect(&bob, &bobs, RecipientScope::all_partners())
            .unwrap();
        ledger
            .grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
            .unwrap();
        ledger
            .grant::<Advertising>(&bob, RecipientScope::all_partners(), None)
            .unwrap();
        let mut shown = Vec::new();
        for id in [&phone, &dev, &bobs] {
            let u = ledger.authorize(id, &acme).unwrap();
            shown.push(format!("{u:?}"));
            let r = u
                .deliver_to(&Recipient::partner("other").unwrap(), |v| v.len())
                .unwrap_err();
            shown.push(format!("{r:?} {r}"));
        }
        let (m, c) =
            ledger
                .audience::<Advertising>(&acme)
                .collect(["+15550109999", "bob.privacy@example.com", "x"]);
        shown.push(format!("{m:?} {c:?} {c}"));
        ledger.channel(&acme, |ch| {
            let p = ch.authorize(&phone).unwrap();
            shown.push(format!("{ch:?} {p:?}"));
        });
        shown.push(ledger.export_subject(&alice, "x").unwrap());
        shown.push(ledger.receipt(1, "x").unwrap().to_json());
        shown.push(format!("{:?}", ledger.decision_records().unwrap()));
        shown.push(format!(
            "{:?}",
            ledger
                .impact(&ImpactQuery::between(
                    Timestamp::EPOCH,
                    Timestamp::from_millis(u64::MAX / 2)
                ))
                .unwrap()
        ));
        ledger.erase(&bob, Actor::System).unwrap();
        ledger.sync().unwrap();
        drop(ledger);
        let l2 = open();
        shown.push(format!("{l2:?}"));
        drop(l2);
        // The values as written and normalized, in UTF-8 and UTF-16; then the keys.
        let texts = super::spellings(&[
            "+1 555 010 9999",
            "555 010 9999",
            "15550109999",
            "5550109999",
            "6D92078A-8246-4BA4-AE5B-76104861E7DC",
            "6d92078a",
            "6D92078A",
            "bob.privacy",
        ]);
        let keys: [&[u8]; 3] = [&[0xA7; 32], &[0xB3; 32], &sk.expose_seed()];
        let needles: Vec<&[u8]> = texts.iter().map(Vec::as_slice).chain(keys).collect();
        let mut all = Vec::new();
        super::all_files(dir.path(), &mut all);
        let names: Vec<_> = all
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().any(|n| n == "state"), "a snapshot was written");
        for f in &all {
            let b = std::fs::read(f).unwrap();
            for n in &needles {
                assert!(!super::holds(&b, n), "{} holds {:?}", f.display(), n);
            }
        }
        for s in &shown {
            for n in &texts {
                assert!(!super::holds(s.as_bytes(), n), "shown: {s}");
            }
        }
    }
}

/// The files that hold subject secrets, lookups and the log are readable by this user
/// only, and a link planted where the snapshot is written is not followed.
#[cfg(unix)]
#[test]
fn ledger_files_are_private_and_links_are_not_followed() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("ledger");
    let (sk, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let open = || {
        Ledger::builder(&dir)
            .signing_key(sk.clone())
            .pseudonym_key(pk.clone())
            .snapshots(consent_ledger::Snapshots::OnClose { min_new_entries: 1 })
            .open()
            .unwrap()
    };
    let l = open();
    let alice = SubjectId::new("account-1").unwrap();
    l.collect(
        &alice,
        &Identifier::<Security>::phone(PHONE).unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    // Another file, elsewhere, that a planted link points to.
    let outside = parent.path().join("unrelated");
    std::fs::write(&outside, b"keep me").unwrap();
    std::os::unix::fs::symlink(&outside, dir.join("state.tmp")).unwrap();
    drop(l); // writes the snapshot
    assert_eq!(std::fs::read(&outside).unwrap(), b"keep me");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir), 0o700);
    for name in ["vault", "state"] {
        assert!(!std::fs::symlink_metadata(dir.join(name))
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(mode(&dir.join(name)), 0o600, "{name}");
    }
    // The snapshot is written over the previous one in place, but never through a
    // symbolic link planted in its place.
    let other = parent.path().join("other");
    std::fs::write(&other, b"keep me").unwrap();
    std::fs::remove_file(dir.join("state")).unwrap();
    std::os::unix::fs::symlink(&other, dir.join("state")).unwrap();
    let l = open();
    l.grant::<consent_ledger::Analytics>(&alice, RecipientScope::first_party(), None)
        .unwrap();
    drop(l);
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
    let m = std::fs::symlink_metadata(dir.join("state")).unwrap();
    assert!(m.file_type().is_file(), "{m:?}");
    assert_eq!(mode(&dir.join("state")), 0o600);
}
