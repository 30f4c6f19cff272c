//! Erasure by forgetting keys: afterwards nothing in the database links an erased
//! subject's entries to any identifier, even for someone holding the pseudonym key who
//! tries every phone number; the log still verifies; the subject's history shows only
//! the erasure.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashSet;
use std::path::Path;

use consent_ledger::{
    Actor, Advertising, Change, Denied, Durability, Identifier, Ledger, Name, PseudonymKey, Recipient,
    RecipientScope, Security, SigningKey, Snapshots, SubjectId,
};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The phone range the attacker tries: +1 555 010 0000 to +1 555 010 1999.
const RANGE: std::ops::Range<u32> = 0..2000;
const SUBJECTS: u32 = 80;

fn number(i: u32) -> String {
    format!("+1555010{i:04}")
}

/// The documented lookup derivation (docs/format.md): what an attacker holding the
/// pseudonym key computes for each guess.
fn lookup(key: &[u8; 32], e164: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(b"consent-ledger/v1/lookup\0");
    mac.update(&[1]); // phone
    mac.update(e164.as_bytes());
    mac.finalize().into_bytes().into()
}

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

fn contains(files: &[Vec<u8>], needle: &[u8]) -> bool {
    files.iter().any(|f| f.windows(needle.len()).any(|w| w == needle))
}

/// Every file's bytes with an index of the 8-byte prefix at every offset, so that
/// thousands of 32-byte needles can be searched quickly (candidates are confirmed
/// byte for byte).
struct Haystack {
    files: Vec<Vec<u8>>,
    prefixes: HashSet<u64>,
}

impl Haystack {
    fn new(dir: &Path) -> Self {
        let files = files(dir);
        let prefixes = files
            .iter()
            .flat_map(|f| f.windows(8).map(|w| u64::from_le_bytes(w.try_into().unwrap())))
            .collect();
        Haystack { files, prefixes }
    }

    fn contains(&self, needle: &[u8; 32]) -> bool {
        let prefix = u64::from_le_bytes(needle[..8].try_into().unwrap());
        self.prefixes.contains(&prefix) && contains(&self.files, needle)
    }
}

/// Reads a subject's secret from the vault file (slot layout in src/store/vault.rs:
/// kind 1, key length, subject id, value length 32, secret), as someone with a copy of
/// the directory could before the erasure.
fn secret_from_vault(dir: &Path, subject: &str) -> Option<[u8; 32]> {
    let raw = std::fs::read(dir.join("vault")).unwrap();
    raw.chunks_exact(256).skip(1).find_map(|slot| {
        let klen = usize::from(slot[1]);
        (slot[0] == 1 && &slot[2..2 + klen] == subject.as_bytes() && slot[2 + klen] == 32)
            .then(|| slot[3 + klen..3 + klen + 32].try_into().unwrap())
    })
}

#[test]
fn brute_force_with_the_pseudonym_key_finds_no_erased_subject() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk_bytes = [0x5Au8; 32];
    let pk = PseudonymKey::from_bytes(pk_bytes);
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .durability(Durability::Relaxed)
            // A state snapshot at every close: they must not keep erased links either.
            .snapshots(Snapshots::OnClose { min_new_entries: 1 })
            .open()
            .unwrap()
    };
    let ledger = open();
    let acme = Recipient::partner("acme").unwrap();
    let owner = |i: u32| SubjectId::new(&format!("account-{}", i % SUBJECTS)).unwrap();
    for i in RANGE {
        let s = owner(i);
        if i % 2 == 0 {
            ledger
                .collect(
                    &s,
                    &Identifier::<Security>::phone(&number(i)).unwrap(),
                    RecipientScope::first_party(),
                )
                .unwrap();
        } else {
            let id = Identifier::<Advertising>::phone(&number(i)).unwrap();
            ledger
                .collect(&s, &id, RecipientScope::only(acme.clone()))
                .unwrap();
        }
    }
    for n in 0..SUBJECTS {
        let s = SubjectId::new(&format!("account-{n}")).unwrap();
        ledger
            .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    ledger.sync().unwrap();
    drop(ledger);

    // Every fourth subject is erased. Before that, note their secrets, as a copy of the
    // directory would hold them.
    let erased: HashSet<u32> = (0..SUBJECTS).filter(|n| n % 4 == 0).collect();
    let secrets: Vec<[u8; 32]> = erased
        .iter()
        .map(|n| secret_from_vault(dir.path(), &format!("account-{n}")).unwrap())
        .collect();
    let before = files(dir.path());
    assert!(
        contains(&before, &lookup(&pk_bytes, &number(0))),
        "the scan finds lookups before erasure"
    );
    assert!(
        contains(&before, &secrets[0]),
        "the scan finds secrets before erasure"
    );

    let ledger = open();
    let dpo = Actor::Operator(Name::new("dpo").unwrap());
    for n in &erased {
        ledger
            .erase(&SubjectId::new(&format!("account-{n}")).unwrap(), dpo.clone())
            .unwrap();
    }
    // Traffic after the erasures, so storage has moved on.
    for i in 0..200u32 {
        let s = SubjectId::new(&format!("late-{i}")).unwrap();
        ledger
            .collect(
                &s,
                &Identifier::<Security>::phone(&format!("+1666010{i:04}")).unwrap(),
                RecipientScope::first_party(),
            )
            .unwrap();
    }
    ledger.sync().unwrap();
    drop(ledger);

    // The attacker: every file, every number in the range, the pseudonym key in hand.
    let after = Haystack::new(dir.path());
    let mut linked = 0;
    for i in RANGE {
        let found = after.contains(&lookup(&pk_bytes, &number(i)));
        if erased.contains(&(i % SUBJECTS)) {
            assert!(!found, "{} still links to its erased subject", number(i));
        } else {
            assert!(found, "{} of a kept subject should still be findable", number(i));
            linked += 1;
        }
    }
    assert!(linked > 0);
    for s in &secrets {
        assert!(!after.contains(s), "an erased subject's secret survives on disk");
    }

    // Through the API: the log verifies; erased numbers are unknown; history shows only the erasure.
    let ledger = open();
    ledger.verify().unwrap();
    for i in RANGE {
        let id = Identifier::<Advertising>::phone(&number(i)).unwrap();
        let d = ledger.authorize(&id, &acme);
        if erased.contains(&(i % SUBJECTS)) {
            assert_eq!(d.unwrap_err(), Denied::UnknownIdentifier, "{}", number(i));
        } else if i % 2 == 1 {
            assert!(d.is_ok(), "{}", number(i));
        }
    }
    for n in &erased {
        let h = ledger
            .history(&SubjectId::new(&format!("account-{n}")).unwrap())
            .unwrap();
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].change, Change::Erased);
        assert!(matches!(h[0].actor, Actor::Operator(_)));
    }
}

/// The documented subject pseudonym derivation (docs/format.md): keyed with the
/// subject's secret and, through it, with the pseudonym key. `secret_only` is the old
/// derivation, keyed with the secret alone.
fn subject_pseudonym(pseudonym_key: Option<&[u8; 32]>, secret: &[u8; 32], e164: &str) -> [u8; 32] {
    let subject_key: [u8; 32] = match pseudonym_key {
        Some(pk) => {
            let mut mac = Hmac::<Sha256>::new_from_slice(pk).unwrap();
            mac.update(b"consent-ledger/v1/subject-key\0");
            mac.update(secret);
            mac.finalize().into_bytes().into()
        }
        None => *secret,
    };
    let mut mac = Hmac::<Sha256>::new_from_slice(&subject_key).unwrap();
    mac.update(b"consent-ledger/v1/subject-identifier\0");
    mac.update(&[1]); // phone
    mac.update(e164.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Someone with a copy of the directory but not the pseudonym key reads every
/// subject's secret from the vault (it is stored there, in the clear, until erasure)
/// and tries every number of a range against the log: no subject pseudonym is found.
/// When subject pseudonyms were keyed with the secret alone, every collected number
/// was confirmed this way. With the pseudonym key as well, they are all found, which
/// shows the search works. (From review r113.)
#[test]
fn without_the_pseudonym_key_a_copy_of_the_directory_confirms_no_guess() {
    let dir = tempfile::tempdir().unwrap();
    let pk_bytes = [0x3Cu8; 32];
    let subjects = 20u32;
    // Every fifth number of the range, two per subject.
    let owner = |i: u32| format!("account-{}", (i / 5) % subjects);
    {
        let ledger = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::from_bytes(pk_bytes))
            .durability(Durability::Relaxed)
            .open()
            .unwrap();
        for i in (0..200u32).step_by(5) {
            let s = SubjectId::new(&owner(i)).unwrap();
            let id = Identifier::<Security>::phone(&number(i)).unwrap();
            ledger.collect(&s, &id, RecipientScope::first_party()).unwrap();
        }
        ledger.sync().unwrap();
    }
    let haystack = Haystack::new(dir.path());
    let secrets: Vec<(u32, [u8; 32])> = (0..subjects)
        .map(|n| (n, secret_from_vault(dir.path(), &format!("account-{n}")).unwrap()))
        .collect();
    let (mut without_key, mut with_key) = (Vec::new(), 0);
    for i in 0..200u32 {
        for (n, secret) in &secrets {
            if haystack.contains(&subject_pseudonym(None, secret, &number(i))) {
                without_key.push((*n, number(i)));
            }
            if haystack.contains(&subject_pseudonym(Some(&pk_bytes), secret, &number(i))) {
                assert_eq!(owner(i), format!("account-{n}"));
                with_key += 1;
            }
        }
    }
    assert!(
        without_key.is_empty(),
        "confirmed without the key: {without_key:?}"
    );
    assert_eq!(with_key, 40, "every collected number is found with the key");
}

#[test]
fn erasure_interrupted_before_the_keys_were_destroyed_is_completed_on_open() {
    // Simulate a crash between the erasure entry and the key destruction: put the
    // vault file back as it was before the erasure.
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::from_bytes([3; 32]);
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .snapshots(Snapshots::OnClose { min_new_entries: 1 })
            .open()
            .unwrap()
    };
    let ledger = open();
    let s = SubjectId::new("account-9").unwrap();
    ledger
        .collect(
            &s,
            &Identifier::<Security>::phone("+15550109999").unwrap(),
            RecipientScope::first_party(),
        )
        .unwrap();
    drop(ledger);
    let vault_before = std::fs::read(dir.path().join("vault")).unwrap();
    let secret = secret_from_vault(dir.path(), "account-9").unwrap();
    let ledger = open();
    ledger.erase(&s, Actor::Subject).unwrap();
    drop(ledger);
    std::fs::write(dir.path().join("vault"), &vault_before).unwrap();
    assert!(contains(&files(dir.path()), &secret));

    let ledger = open();
    let id = Identifier::<Security>::phone("+15550109999").unwrap();
    assert_eq!(
        ledger.authorize(&id, &Recipient::FirstParty).unwrap_err(),
        Denied::UnknownIdentifier
    );
    drop(ledger);
    assert!(
        !contains(&files(dir.path()), &secret),
        "open completes the destruction"
    );
    assert!(!contains(&files(dir.path()), &lookup(&[3; 32], "+15550109999")));
}

#[test]
fn a_snapshot_taken_before_an_interrupted_erasure_is_destroyed_on_open() {
    // A crash right after the erasure entry: the vault and the state snapshot on disk
    // are still those from before it.
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk_bytes = [4u8; 32];
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(PseudonymKey::from_bytes(pk_bytes))
            .snapshots(Snapshots::OnClose { min_new_entries: 1 })
            .open()
            .unwrap()
    };
    let ledger = open();
    let s = SubjectId::new("account-7").unwrap();
    let phone = Identifier::<Security>::phone("+15550107777").unwrap();
    ledger.collect(&s, &phone, RecipientScope::first_party()).unwrap();
    drop(ledger);
    let link = lookup(&pk_bytes, "+15550107777");
    let snapshot_before = std::fs::read(dir.path().join("state")).unwrap();
    assert!(
        snapshot_before.windows(32).any(|w| w == link),
        "the snapshot holds the subject's lookup before the erasure"
    );
    let vault_before = std::fs::read(dir.path().join("vault")).unwrap();
    let ledger = open();
    ledger.erase(&s, Actor::Subject).unwrap();
    assert!(
        !contains(&files(dir.path()), &link),
        "erasure destroys the snapshot at once"
    );
    drop(ledger);
    std::fs::write(dir.path().join("vault"), &vault_before).unwrap();
    std::fs::write(dir.path().join("state"), &snapshot_before).unwrap();

    let ledger = open();
    assert_eq!(
        ledger.authorize(&phone, &Recipient::FirstParty).unwrap_err(),
        Denied::UnknownIdentifier
    );
    assert!(
        !contains(&files(dir.path()), &link),
        "open destroyed the old snapshot and the index record"
    );
    drop(ledger);
    assert!(
        !contains(&files(dir.path()), &link),
        "nor did closing write it again"
    );
    let history: Vec<u64> = open().history(&s).unwrap().iter().map(|h| h.seq).collect();
    assert_eq!(history, vec![2]);
}

/// Every close writes its snapshot over the previous one in place: an older snapshot
/// is never released to the file system with an erased subject's lookups in it. A read
/// handle on the first snapshot stands for its blocks (a rename would have released
/// them as they were); the snapshot current at the erasure is zeroed either way.
#[cfg(unix)]
#[test]
fn an_older_snapshot_is_not_left_behind_with_an_erased_subjects_lookup() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let (sk, pk) = (SigningKey::generate(), [0x42u8; 32]);
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(sk.clone())
            .pseudonym_key(PseudonymKey::from_bytes(pk))
            .snapshots(Snapshots::OnClose { min_new_entries: 1 })
            .open()
            .unwrap()
    };
    let alice = SubjectId::new("account-1").unwrap();
    let link = lookup(&pk, &number(4242));
    let l = open();
    l.collect(
        &alice,
        &Identifier::<Security>::phone(&number(4242)).unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    drop(l);
    let mut first = std::fs::File::open(dir.path().join("state")).unwrap();
    let l = open();
    let bob = SubjectId::new("account-2").unwrap();
    l.collect(
        &bob,
        &Identifier::<Security>::phone(&number(2)).unwrap(),
        RecipientScope::first_party(),
    )
    .unwrap();
    drop(l);
    let mut second = std::fs::File::open(dir.path().join("state")).unwrap();
    let l = open();
    l.erase(&alice, Actor::System).unwrap();
    drop(l);
    assert!(
        !contains(&files(dir.path()), &link),
        "a file holds the erased subject's lookup"
    );
    let read = |f: &mut std::fs::File| {
        let mut b = Vec::new();
        f.read_to_end(&mut b).unwrap();
        b
    };
    let (first, second) = (read(&mut first), read(&mut second));
    assert!(
        !contains(&[second], &link),
        "the snapshot current at the erasure still holds the lookup"
    );
    assert!(
        !contains(std::slice::from_ref(&first), &link),
        "the first snapshot's blocks still hold the erased subject's lookup ({} bytes)",
        first.len()
    );
}
