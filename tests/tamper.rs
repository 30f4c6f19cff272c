//! Tampering with the stored log, by editing the sled database directly, is detected by
//! both `open` and `verify`, which name the first bad position and never panic.
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
    Advertising, Identifier, Inspector, IntegrityError, IntegrityProblem, Ledger, OpenError, PartnerSharing,
    PseudonymKey, ReadError, RecipientScope, Security, SigningKey, Snapshots, SubjectId,
};
use ed25519_dalek::Signer;

struct Fixture {
    /// With or without a state snapshot, for messages.
    how: &'static str,
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    len: u64,
}

/// A ledger of 21 entries (genesis + 20), closed.
fn fixture() -> Fixture {
    fixture_with(Snapshots::default(), "without a snapshot")
}

/// Both ways a closed ledger is found: without a state snapshot (this small ledger
/// writes none by default), and with one covering every entry, so that opening checks
/// the entries before it by the chain alone (see `Replay::step_chained`). Tampering
/// must be found, at the same position and as the same problem, either way.
fn fixtures() -> [Fixture; 2] {
    let with = fixture_with(Snapshots::OnClose { min_new_entries: 1 }, "with a snapshot");
    assert!(with.dir.path().join("state").exists());
    [fixture(), with]
}

fn fixture_with(snapshots: Snapshots, how: &'static str) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let ledger = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .snapshots(snapshots)
        .open()
        .unwrap();
    for i in 0..5 {
        let s = SubjectId::new(&format!("user-{i}")).unwrap();
        let phone = Identifier::<Security>::phone(&format!("+1555010{i:04}")).unwrap();
        ledger.collect(&s, &phone, RecipientScope::first_party()).unwrap();
        let email = Identifier::<PartnerSharing>::email(&format!("u{i}@example.com")).unwrap();
        ledger.collect(&s, &email, RecipientScope::first_party()).unwrap();
        ledger
            .grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
            .unwrap();
        ledger.withdraw::<Advertising>(&s).unwrap();
    }
    let len = ledger.len();
    assert_eq!(len, 21);
    ledger.verify().unwrap();
    drop(ledger);
    Fixture {
        how,
        dir,
        key,
        pk,
        len,
    }
}

fn with_entries(dir: &Path, f: impl FnOnce(&sled::Tree)) {
    let db = sled_util::open(dir);
    let tree = db.open_tree("entries").unwrap();
    f(&tree);
    db.flush().unwrap();
}

fn get(tree: &sled::Tree, seq: u64) -> Vec<u8> {
    tree.get(seq.to_be_bytes()).unwrap().unwrap().to_vec()
}

/// Asserts that opening and verifying both fail at `position` with `problem`.
fn assert_broken_at(fx: &Fixture, position: u64, problem: IntegrityProblem) {
    let want = IntegrityError { position, problem };
    match Ledger::builder(fx.dir.path())
        .signing_key(fx.key.clone())
        .pseudonym_key(fx.pk.clone())
        .open()
    {
        Err(OpenError::Integrity(e)) => assert_eq!(e, want, "open, {}", fx.how),
        other => panic!("open ({}) should fail with {want}, got {other:?}", fx.how),
    }
    let inspector = Inspector::open(fx.dir.path()).unwrap();
    match inspector.verify() {
        Err(ReadError::Integrity(e)) => assert_eq!(e, want, "verify"),
        other => panic!("verify should fail with {want}, got {other:?}"),
    }
    // The message names the position.
    assert!(want.to_string().contains(&format!("entry {position}")));
}

/// Re-signs the signed part of stored bytes with `key`, as a forger would.
fn resign(bytes: &[u8], key: &ed25519_dalek::SigningKey) -> Vec<u8> {
    let signed = &bytes[..bytes.len() - 64];
    let mut msg = b"consent-ledger entry v1\n".to_vec();
    msg.extend_from_slice(signed);
    let mut out = signed.to_vec();
    out.extend_from_slice(&key.sign(&msg).to_bytes());
    out
}

#[test]
fn untouched_ledger_verifies_both_ways() {
    let fx = fixture();
    let inspector = Inspector::open(fx.dir.path()).unwrap();
    let report = inspector.verify().unwrap();
    assert_eq!(report.entries, fx.len);
    assert_eq!(inspector.len().unwrap(), fx.len);
    assert_eq!(inspector.genesis_key().unwrap(), fx.key.verifying_key());
    drop(inspector);
    let ledger = Ledger::builder(fx.dir.path())
        .signing_key(fx.key.clone())
        .pseudonym_key(fx.pk.clone())
        .open()
        .unwrap();
    assert_eq!(ledger.verify().unwrap(), report);
}

#[test]
fn flipped_byte_in_an_entry_is_found_at_that_entry() {
    // Every byte of entry 7's signed part and signature, one at a time.
    for fx in fixtures() {
        let original = {
            let mut v = Vec::new();
            with_entries(fx.dir.path(), |t| v = get(t, 7));
            v
        };
        for i in 0..original.len() {
            let mut bytes = original.clone();
            bytes[i] ^= 0x01;
            with_entries(fx.dir.path(), |t| {
                t.insert(7u64.to_be_bytes(), bytes.clone()).unwrap();
            });
            // Whatever the byte, the first bad position is 7 (decoding, version, misplaced
            // sequence number, chain, or signature).
            let err = Inspector::open(fx.dir.path()).unwrap().verify().unwrap_err();
            match err {
                ReadError::Integrity(e) => assert_eq!(e.position, 7, "byte {i}: {e}"),
                other => panic!("byte {i}: {other}"),
            }
            let open = Ledger::builder(fx.dir.path())
                .signing_key(fx.key.clone())
                .pseudonym_key(fx.pk.clone())
                .open();
            match open {
                Err(OpenError::Integrity(e)) => assert_eq!(e.position, 7, "{} byte {i}: {e}", fx.how),
                other => panic!("{} byte {i}: open should fail, got {other:?}", fx.how),
            }
        }
        with_entries(fx.dir.path(), |t| {
            t.insert(7u64.to_be_bytes(), original.clone()).unwrap();
        });
        Inspector::open(fx.dir.path()).unwrap().verify().unwrap();
    }
}

#[test]
fn a_damaged_genesis_entry_is_not_reported_as_a_wrong_key() {
    // The genesis entry names the pseudonym key by a check value, and opening compares it
    // before anything else. A flipped bit there must be reported as damage at entry 0,
    // not as "wrong pseudonym key" (found by the 3,000-trial corruption run).
    let fx = fixture();
    let original = {
        let mut v = Vec::new();
        with_entries(fx.dir.path(), |t| v = get(t, 0));
        v
    };
    for i in 0..original.len() {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        with_entries(fx.dir.path(), |t| {
            t.insert(0u64.to_be_bytes(), bytes.clone()).unwrap();
        });
        let open = Ledger::builder(fx.dir.path())
            .signing_key(fx.key.clone())
            .pseudonym_key(fx.pk.clone())
            .open();
        match open {
            Err(OpenError::Integrity(e)) => assert_eq!(e.position, 0, "byte {i}: {e}"),
            other => panic!("byte {i}: open should fail at entry 0, got {other:?}"),
        }
    }
    with_entries(fx.dir.path(), |t| {
        t.insert(0u64.to_be_bytes(), original.clone()).unwrap();
    });
    // An intact log opened with another pseudonym key is still a wrong key.
    let other = Ledger::builder(fx.dir.path())
        .signing_key(fx.key.clone())
        .pseudonym_key(PseudonymKey::generate())
        .open();
    assert!(matches!(other, Err(OpenError::WrongPseudonymKey)), "{other:?}");
    Inspector::open(fx.dir.path()).unwrap().verify().unwrap();
}

#[test]
fn deleted_entry() {
    for fx in fixtures() {
        with_entries(fx.dir.path(), |t| {
            t.remove(9u64.to_be_bytes()).unwrap();
        });
        assert_broken_at(&fx, 9, IntegrityProblem::Missing { next: 10 });
    }
}

#[test]
fn swapped_entries() {
    for fx in fixtures() {
        with_entries(fx.dir.path(), |t| {
            let (a, b) = (get(t, 4), get(t, 5));
            t.insert(4u64.to_be_bytes(), b).unwrap();
            t.insert(5u64.to_be_bytes(), a).unwrap();
        });
        assert_broken_at(
            &fx,
            4,
            IntegrityProblem::Misplaced {
                stored_at: 4,
                claims: 5,
            },
        );
    }
}

#[test]
fn forged_entry_signed_with_another_key_replacing_one() {
    // The forger rewrites entry 6 (properly chained to 5, canonical) and signs it with
    // its own key.
    for fx in fixtures() {
        let forger = ed25519_dalek::SigningKey::from_bytes(&[42; 32]);
        with_entries(fx.dir.path(), |t| {
            let forged = resign(&get(t, 6), &forger);
            t.insert(6u64.to_be_bytes(), forged).unwrap();
        });
        assert_broken_at(&fx, 6, IntegrityProblem::BadSignature);
    }
}

#[test]
fn forged_entry_inserted_in_the_middle() {
    // Entries from 8 on move up by one; a forged copy of entry 8 (re-signed) takes its place.
    for fx in fixtures() {
        let forger = ed25519_dalek::SigningKey::from_bytes(&[43; 32]);
        with_entries(fx.dir.path(), |t| {
            for seq in (8..fx.len).rev() {
                let v = get(t, seq);
                t.insert((seq + 1).to_be_bytes(), v).unwrap();
            }
            let forged = resign(&get(t, 8), &forger);
            t.insert(8u64.to_be_bytes(), forged).unwrap();
        });
        assert_broken_at(&fx, 8, IntegrityProblem::BadSignature);
    }
}

#[test]
fn forged_entry_appended_at_the_end() {
    for fx in fixtures() {
        let forger = ed25519_dalek::SigningKey::from_bytes(&[44; 32]);
        with_entries(fx.dir.path(), |t| {
            // A copy of the last entry, re-signed: it does not even chain, and its
            // sequence number is wrong; the first problem is the position.
            let forged = resign(&get(t, fx.len - 1), &forger);
            t.insert(fx.len.to_be_bytes(), forged).unwrap();
        });
        assert_broken_at(
            &fx,
            fx.len,
            IntegrityProblem::Misplaced {
                stored_at: fx.len,
                claims: fx.len - 1,
            },
        );
    }
}

#[test]
fn removed_run_in_the_middle() {
    for fx in fixtures() {
        with_entries(fx.dir.path(), |t| {
            for seq in 10..15u64 {
                t.remove(seq.to_be_bytes()).unwrap();
            }
        });
        assert_broken_at(&fx, 10, IntegrityProblem::Missing { next: 15 });
    }
}

#[test]
fn edited_last_entry() {
    // Open checks the chain everywhere but only the last signature: that one must catch it.
    for fx in fixtures() {
        let last = fx.len - 1;
        with_entries(fx.dir.path(), |t| {
            let mut v = get(t, last);
            let n = v.len();
            v[n - 70] ^= 0x80; // inside the body, before the signature
            t.insert(last.to_be_bytes(), v).unwrap();
        });
        let err = Inspector::open(fx.dir.path()).unwrap().verify().unwrap_err();
        let ReadError::Integrity(e) = err else {
            panic!("{err}")
        };
        assert_eq!(e.position, last);
        // With a snapshot, nothing before its position is decoded at open: the last
        // signature is what finds this.
        match Ledger::builder(fx.dir.path())
            .signing_key(fx.key.clone())
            .pseudonym_key(fx.pk.clone())
            .open()
        {
            Err(OpenError::Integrity(e)) => assert_eq!(e.position, last, "{}: {e}", fx.how),
            other => panic!("open ({}) should fail, got {other:?}", fx.how),
        }
    }
}

#[test]
fn garbage_key_in_the_entries_tree() {
    for fx in fixtures() {
        with_entries(fx.dir.path(), |t| {
            // A 3-byte key sorts before every 8-byte key that starts with 0x00 0x00 0x00 0x00...
            t.insert([0xFFu8, 0xFF, 0xFF], b"junk".to_vec()).unwrap();
        });
        assert_broken_at(
            &fx,
            fx.len,
            IntegrityProblem::Undecodable("storage key is not a position"),
        );
    }
}

/// Rewrites a vault slot with a valid slot checksum (first 16 bytes of SHA-256 over the
/// first 240 bytes): damage the vault cannot notice, only the index tag can.
fn rewrite_slot(raw: &mut [u8], n: usize, edit: impl FnOnce(&mut [u8])) {
    use sha2::Digest;
    let slot = &mut raw[n * 256..(n + 1) * 256];
    edit(slot);
    let sum = sha2::Sha256::digest(&slot[..240]);
    slot[240..].copy_from_slice(&sum[..16]);
}

#[test]
fn a_tampered_index_record_anywhere_in_the_vault_fails_open() {
    // Enough identifiers that the index spans several read chunks, and both halves
    // that opening authenticates on different threads hold records.
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .durability(consent_ledger::Durability::Relaxed)
            .open()
    };
    let ledger = open().unwrap();
    for i in 0..1500 {
        let s = SubjectId::new(&format!("user-{i}")).unwrap();
        let phone = Identifier::<Security>::phone(&format!("+1555{i:07}")).unwrap();
        ledger.collect(&s, &phone, RecipientScope::first_party()).unwrap();
    }
    drop(ledger);
    let path = dir.path().join("vault");
    let original = std::fs::read(&path).unwrap();
    let index_slots: Vec<usize> = (1..original.len() / 256)
        .filter(|n| original[n * 256] == 2)
        .collect();
    assert_eq!(index_slots.len(), 1500);
    let picks = [
        index_slots[0],
        index_slots[index_slots.len() / 2],
        index_slots[index_slots.len() - 1],
    ];
    for n in picks {
        // The record's last byte (inside its tag), changed under a valid slot checksum.
        let mut raw = original.clone();
        rewrite_slot(&mut raw, n, |slot| {
            let klen = usize::from(slot[1]);
            let vlen = usize::from(slot[2 + klen]);
            slot[2 + klen + vlen] ^= 1;
        });
        std::fs::write(&path, &raw).unwrap();
        match open() {
            Err(OpenError::CorruptMetadata("index record")) => {}
            other => panic!("slot {n}: {other:?}"),
        }
    }
    std::fs::write(&path, &original).unwrap();
    let ledger = open().unwrap();
    let phone = Identifier::<Security>::phone("+15550000042").unwrap();
    assert!(ledger
        .authorize(&phone, &consent_ledger::Recipient::FirstParty)
        .is_ok());
}

#[test]
fn a_vault_that_is_not_a_vault_fails_open_with_or_without_a_snapshot() {
    let fx = fixture();
    let vault = fx.dir.path().join("vault");
    let original = std::fs::read(&vault).unwrap();
    for snapshots in [
        consent_ledger::Snapshots::Off,
        consent_ledger::Snapshots::OnClose { min_new_entries: 1 },
    ] {
        let open = || {
            Ledger::builder(fx.dir.path())
                .signing_key(fx.key.clone())
                .pseudonym_key(fx.pk.clone())
                .snapshots(snapshots)
                .open()
        };
        // Closing writes a snapshot for the second round to load.
        drop(open().unwrap());
        std::fs::write(&vault, b"this is not a vault file").unwrap();
        match open() {
            Err(OpenError::Storage(e)) => assert!(e.to_string().contains("vault"), "{e}"),
            other => panic!("{snapshots:?}: {other:?}"),
        }
        std::fs::write(&vault, &original).unwrap();
        assert_eq!(open().unwrap().len(), fx.len);
    }
}

/// Offset of `prev_hash` in stored entry bytes (after version, seq, timestamp, actor).
fn prev_hash_at(bytes: &[u8]) -> usize {
    let tag = u32::from_be_bytes(bytes[17..21].try_into().unwrap());
    if tag == 1 {
        let len = u64::from_be_bytes(bytes[21..29].try_into().unwrap()) as usize;
        29 + len
    } else {
        21
    }
}

fn ledger_with(dir: &Path, key: &SigningKey, pk: &PseudonymKey, snapshots: Snapshots) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .snapshots(snapshots)
        .open()
        .unwrap()
}

/// README ("Guarantees"): "A modified, removed, reordered or inserted entry makes `open`
/// and `verify` fail with the first bad position"; `LedgerBuilder::open`: "OpenError::Integrity
/// naming the first bad position"; tests/tamper.rs: "Tampering must be found, at the same
/// position and as the same problem, either way".
///
/// Entry 3 is edited (one salt byte) and every later entry's `prev_hash` is updated so the
/// chain holds (the signatures of 3.. no longer verify). `verify` names entry 3; `open`,
/// which checks only the last signature, named the last entry (review r77), with or
/// without a state snapshot: it now names entry 3 too.
#[test]
fn open_names_the_first_bad_entry_when_the_chain_is_relinked() {
    for snapshots in [Snapshots::default(), Snapshots::OnClose { min_new_entries: 1 }] {
        let dir = tempfile::tempdir().unwrap();
        let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
        let l = ledger_with(dir.path(), &key, &pk, snapshots);
        for i in 0..8 {
            let s = SubjectId::new(&format!("user-{i}")).unwrap();
            l.grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        let n = l.len();
        drop(l);
        {
            let db = sled_util::open(dir.path());
            let t = db.open_tree("entries").unwrap();
            let mut prev = [0u8; 32];
            for seq in 0..n {
                let mut b = t.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
                let at = prev_hash_at(&b);
                if seq == 3 {
                    b[at + 32] ^= 1; // a salt byte
                }
                if seq > 3 {
                    b[at..at + 32].copy_from_slice(&prev);
                }
                prev = <sha2::Sha256 as sha2::Digest>::digest(&b).into();
                t.insert(seq.to_be_bytes(), b).unwrap();
            }
            db.flush().unwrap();
        }
        let verified = match Inspector::open(dir.path()).unwrap().verify() {
            Err(ReadError::Integrity(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(verified.position, 3, "verify");
        let opened: IntegrityError = match Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .open()
        {
            Err(OpenError::Integrity(e)) => e,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            (opened.position, &opened.problem),
            (verified.position, &verified.problem),
            "open names {opened}, verify {verified} ({snapshots:?}, log of {n})"
        );
    }
}
