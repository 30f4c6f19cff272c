//! Checkpoints, Merkle proofs and consent receipts: truncation, rollback, forks and
//! forgeries are caught with nothing but the public key.
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
    verify_consistency, verify_inclusion, verify_receipt, AuditError, Durability, Identifier,
    IntegrityProblem, Ledger, OpenError, PartnerSharing, PseudonymKey, ReadError, Receipt, Recipient,
    RecipientScope, SignedCheckpoint, SigningKey, SubjectId, Timestamp, WriteError, MAX_HOW_TO_WITHDRAW_LEN,
    MAX_RECEIPT_JSON_LEN,
};

struct Fx {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
}

fn fx() -> Fx {
    Fx {
        dir: tempfile::tempdir().unwrap(),
        key: SigningKey::generate(),
        pk: PseudonymKey::generate(),
    }
}

fn open_at(dir: &Path, f: &Fx, trusted: Option<&str>) -> Result<Ledger, OpenError> {
    let mut b = Ledger::builder(dir)
        .signing_key(f.key.clone())
        .pseudonym_key(f.pk.clone())
        .durability(Durability::Immediate);
    if let Some(t) = trusted {
        b = b.trusted_checkpoint(t);
    }
    b.open()
}

fn activity(l: &Ledger, from: usize, to: usize) {
    for i in from..to {
        let s = SubjectId::new(&format!("s-{i}")).unwrap();
        let id = Identifier::<PartnerSharing>::email(&format!("p{i}@example.com")).unwrap();
        l.collect(&s, &id, RecipientScope::first_party()).unwrap();
        l.grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    }
}

#[test]
fn checkpoints_and_proofs_verify_with_the_public_key_only() {
    let f = fx();
    let l = open_at(f.dir.path(), &f, None).unwrap();
    activity(&l, 0, 6);
    let cp1 = l.checkpoint().unwrap();
    assert_eq!(cp1.size(), l.len());
    assert!(cp1.text().starts_with("consent-ledger/"));
    let public = f.key.verifying_key();
    let parsed = SignedCheckpoint::verify(cp1.text(), &public).unwrap();
    assert_eq!(parsed, cp1);
    assert!(SignedCheckpoint::verify(cp1.text(), &SigningKey::generate().verifying_key()).is_err());
    for seq in 0..cp1.size() {
        let proof = l.inclusion_proof(seq, cp1.size()).unwrap();
        verify_inclusion(&l.entry_bytes(seq).unwrap(), &proof, &cp1).unwrap();
        // The wrong entry for that proof fails.
        let other = l.entry_bytes((seq + 1) % cp1.size()).unwrap();
        assert!(verify_inclusion(&other, &proof, &cp1).is_err());
    }
    activity(&l, 6, 9);
    let cp2 = l.checkpoint().unwrap();
    let proof = l.consistency_proof(cp1.size(), cp2.size()).unwrap();
    verify_consistency(&cp1, &cp2, &proof).unwrap();
    // A proof for other sizes, or with a changed hash, fails.
    let wrong = l.consistency_proof(cp1.size() - 1, cp2.size()).unwrap();
    assert!(matches!(
        verify_consistency(&cp1, &cp2, &wrong),
        Err(AuditError::Mismatch(_))
    ));
    let mut bent = proof.clone();
    bent.hashes[0][0] ^= 1;
    assert!(matches!(
        verify_consistency(&cp1, &cp2, &bent),
        Err(AuditError::Proof(_))
    ));
    assert!(l.inclusion_proof(cp2.size(), cp2.size()).is_err());
    assert!(l.consistency_proof(3, cp2.size() + 1).is_err());
}

#[test]
fn receipts_verify_offline_and_forgeries_are_rejected_with_a_reason() {
    let f = fx();
    let l = open_at(f.dir.path(), &f, None).unwrap();
    activity(&l, 0, 3);
    let s = SubjectId::new("alice-1").unwrap();
    let g = l
        .grant::<PartnerSharing>(
            &s,
            RecipientScope::only(Recipient::partner("acme").unwrap()),
            None,
        )
        .unwrap();
    activity(&l, 3, 5);
    let receipt = l.receipt(g.seq, "https://example.com/privacy/withdraw").unwrap();
    let json = receipt.to_json();
    assert!(
        json.contains("\"action\": \"granted\"") && json.contains("partner-sharing"),
        "{json}"
    );
    let parsed = Receipt::from_json(&json).unwrap();
    let public = f.key.verifying_key();
    let ok = verify_receipt(&parsed, &public).unwrap();
    assert_eq!(
        (ok.entry_seq, ok.subject.as_str(), ok.action.as_str()),
        (g.seq, "alice-1", "granted")
    );
    assert_eq!(ok.purpose.as_deref(), Some("partner-sharing"));

    // Wrong key.
    assert!(matches!(
        verify_receipt(&parsed, &SigningKey::generate().verifying_key()),
        Err(AuditError::Checkpoint(_))
    ));
    // An edited human-readable field.
    let edited = json.replace("\"alice-1\"", "\"mallory-1\"");
    assert!(matches!(
        verify_receipt(&Receipt::from_json(&edited).unwrap(), &public),
        Err(AuditError::Mismatch(_))
    ));
    let edited = json.replace("\"granted\"", "\"withdrawn\"");
    assert!(matches!(
        verify_receipt(&Receipt::from_json(&edited).unwrap(), &public),
        Err(AuditError::Mismatch(_))
    ));
    // An edited entry (another entry's bytes): its own signature checks, but it is not
    // the entry at the receipt's position.
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    let other = l.receipt(g.seq - 1, "x").unwrap();
    let ov: serde_json::Value = serde_json::from_str(&other.to_json()).unwrap();
    let mut swapped = v.clone();
    swapped["entry"] = ov["entry"].clone();
    assert!(verify_receipt(&serde_json::from_value(swapped).unwrap(), &public).is_err());
    // Another entry, consistent with its own position and fields, with this receipt's
    // inclusion proof: the proof does not lead from it to the checkpoint's root (stop
    // 32's review: the case above is refused before the proof is checked).
    let mut wrong_proof = ov.clone();
    assert_ne!(ov["inclusion_proof"]["hashes"], v["inclusion_proof"]["hashes"]);
    wrong_proof["inclusion_proof"]["hashes"] = v["inclusion_proof"]["hashes"].clone();
    assert!(verify_receipt(&other, &public).is_ok());
    assert!(matches!(
        verify_receipt(&serde_json::from_value(wrong_proof).unwrap(), &public),
        Err(AuditError::Proof(_))
    ));
    // A wrong proof hash.
    let mut bent = v.clone();
    let h = bent["inclusion_proof"]["hashes"][0].as_str().unwrap().to_owned();
    let flipped = if h.starts_with('A') {
        h.replacen('A', "B", 1)
    } else {
        format!("A{}", &h[1..])
    };
    bent["inclusion_proof"]["hashes"][0] = flipped.into();
    assert!(matches!(
        verify_receipt(&serde_json::from_value(bent).unwrap(), &public),
        Err(AuditError::Proof(_))
    ));
    // A proof for another tree size than the checkpoint's.
    let mut resized = v.clone();
    let size = resized["inclusion_proof"]["tree_size"].as_u64().unwrap();
    resized["inclusion_proof"]["tree_size"] = (size - 1).into();
    assert!(verify_receipt(&serde_json::from_value(resized).unwrap(), &public).is_err());
    // A proof for another leaf than the entry.
    let mut moved = v.clone();
    moved["inclusion_proof"]["index"] = (g.seq - 1).into();
    assert!(matches!(
        verify_receipt(&serde_json::from_value(moved).unwrap(), &public),
        Err(AuditError::Mismatch(m)) if m.contains("position")
    ));
    // A checkpoint from another ledger, signed by the same key: it verifies, so only
    // the comparison of its origin with the receipt's ledger refuses it.
    let f2 = Fx {
        dir: tempfile::tempdir().unwrap(),
        key: f.key.clone(),
        pk: f.pk.clone(),
    };
    let l2 = open_at(f2.dir.path(), &f2, None).unwrap();
    activity(&l2, 0, 6);
    let foreign_cp = l2.checkpoint().unwrap();
    SignedCheckpoint::verify(foreign_cp.text(), &public).unwrap();
    let mut foreign = v.clone();
    foreign["checkpoint"] = foreign_cp.text().into();
    let other_ledger =
        |r: Result<_, AuditError>| matches!(r, Err(AuditError::Mismatch(m)) if m.contains("another ledger"));
    assert!(other_ledger(verify_receipt(
        &serde_json::from_value(foreign).unwrap(),
        &public
    )));
    // The receipt naming another ledger than its checkpoint's.
    let mut renamed = v.clone();
    renamed["ledger"] = "consent-ledger/00000000000000000000000000000000".into();
    assert!(other_ledger(verify_receipt(
        &serde_json::from_value(renamed).unwrap(),
        &public
    )));
    // Unknown versions and garbage.
    assert!(matches!(
        Receipt::from_json(&json.replace("\"version\": 1", "\"version\": 2")),
        Err(AuditError::UnsupportedVersion(2))
    ));
    assert!(Receipt::from_json("{}").is_err());
    assert!(Receipt::from_json("not json").is_err());
    // Up to the size limit, the same receipt; one byte past it, refused unparsed.
    let padded = format!("{json}{}", " ".repeat(MAX_RECEIPT_JSON_LEN - json.len()));
    assert_eq!(Receipt::from_json(&padded).unwrap(), parsed);
    assert!(matches!(
        Receipt::from_json(&format!("{padded}\n")),
        Err(AuditError::Malformed(_))
    ));
}

#[test]
fn opening_refuses_truncated_and_rolled_back_ledgers() {
    let f = fx();
    let l = open_at(f.dir.path(), &f, None).unwrap();
    activity(&l, 0, 4);
    drop(l);
    let backup = tempfile::tempdir().unwrap();
    sled_util::copy_dir(f.dir.path(), backup.path());
    let l = open_at(f.dir.path(), &f, None).unwrap();
    activity(&l, 4, 8);
    let cp = l.checkpoint().unwrap();
    drop(l);
    // The live ledger extends the checkpoint: fine.
    open_at(f.dir.path(), &f, Some(cp.text())).unwrap();
    // Restoring the older backup is a rollback.
    let e = open_at(backup.path(), &f, Some(cp.text())).unwrap_err();
    assert!(
        matches!(&e, OpenError::Integrity(i) if matches!(i.problem, IntegrityProblem::Truncated { checkpoint_size } if checkpoint_size == cp.size())),
        "{e:?}"
    );
    // Cutting off the tail (which the chain alone cannot notice) is caught too: by the
    // head record, and without it (deleted too) by the checkpoint.
    {
        let db = sled_util::open(f.dir.path());
        let t = db.open_tree("entries").unwrap();
        for seq in cp.size() - 3..cp.size() {
            t.remove(seq.to_be_bytes()).unwrap();
        }
        db.flush().unwrap();
    }
    let e = open_at(f.dir.path(), &f, None).unwrap_err();
    assert!(
        matches!(&e, OpenError::Integrity(i) if i.position == cp.size() - 3
            && i.problem == IntegrityProblem::ShorterThanRecorded { recorded: cp.size() }),
        "{e:?}"
    );
    std::fs::remove_file(f.dir.path().join("head")).unwrap();
    open_at(f.dir.path(), &f, None).unwrap();
    let e = open_at(f.dir.path(), &f, Some(cp.text())).unwrap_err();
    assert!(
        matches!(&e, OpenError::Integrity(i) if i.position == cp.size() - 3),
        "{e:?}"
    );
    // A checkpoint signed by a stranger is refused.
    let stranger = {
        let f3 = fx();
        let l3 = open_at(f3.dir.path(), &f3, None).unwrap();
        activity(&l3, 0, 1);
        l3.checkpoint().unwrap()
    };
    assert!(matches!(
        open_at(backup.path(), &f, Some(stranger.text())),
        Err(OpenError::UntrustedCheckpoint)
    ));
}

#[test]
fn a_fork_is_caught_at_open_and_by_an_earlier_receipt() {
    let f = fx();
    let l = open_at(f.dir.path(), &f, None).unwrap();
    activity(&l, 0, 3);
    drop(l);
    let fork = tempfile::tempdir().unwrap();
    sled_util::copy_dir(f.dir.path(), fork.path());
    // The real history: alice grants, and receives a receipt.
    let l = open_at(f.dir.path(), &f, None).unwrap();
    let alice = SubjectId::new("alice-1").unwrap();
    let g = l
        .grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    activity(&l, 3, 5);
    let receipt = l.receipt(g.seq, "settings page").unwrap();
    let held = verify_receipt(&receipt, &f.key.verifying_key()).unwrap();
    let real_len = l.len();
    drop(l);
    // A forked history of the same length, signed with the same key, in which alice
    // never granted anything.
    let lf = open_at(fork.path(), &f, None).unwrap();
    activity(&lf, 100, 103);
    assert!(lf.len() >= real_len);
    let forked_cp = lf.checkpoint().unwrap();
    assert!(forked_cp.size() >= held.checkpoint.size());
    // The operator cannot produce a consistency proof from alice's checkpoint to the fork.
    let proof = lf
        .consistency_proof(held.checkpoint.size(), forked_cp.size())
        .unwrap();
    assert!(verify_consistency(&held.checkpoint, &forked_cp, &proof).is_err());
    drop(lf);
    // And opening the fork with the real checkpoint is refused.
    let e = open_at(fork.path(), &f, Some(held.checkpoint.text())).unwrap_err();
    assert!(
        matches!(&e, OpenError::Integrity(i) if i.problem == IntegrityProblem::InconsistentWithCheckpoint),
        "{e:?}"
    );
    // The real ledger, grown later, still proves alice's receipt.
    let l = open_at(f.dir.path(), &f, Some(held.checkpoint.text())).unwrap();
    activity(&l, 5, 7);
    let later = l.checkpoint().unwrap();
    let proof = l.consistency_proof(held.checkpoint.size(), later.size()).unwrap();
    verify_consistency(&held.checkpoint, &later, &proof).unwrap();
}

/// Receipt dates are RFC 3339, whose years have four digits: a grant refuses an expiry
/// after the last time it can write ("never" is `None`), and the last one is written.
#[test]
fn receipt_expiries_stay_within_rfc3339() {
    let f = fx();
    let l = open_at(f.dir.path(), &f, None).unwrap();
    let s = SubjectId::new("alice-1").unwrap();
    let never = Timestamp::from_millis(u64::MAX);
    let e = l
        .grant::<PartnerSharing>(&s, RecipientScope::all_partners(), Some(never))
        .unwrap_err();
    assert!(matches!(e, WriteError::Input(_)), "{e:?}");
    let g = l
        .grant::<PartnerSharing>(&s, RecipientScope::all_partners(), Some(Timestamp::MAX_RFC3339))
        .unwrap();
    let r = l.receipt(g.seq, "settings page").unwrap();
    verify_receipt(&r, &f.key.verifying_key()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(v["expires_at"], "9999-12-31T23:59:59.999Z");
}

/// Every receipt the ledger makes is one `from_json` reads back: a `how_to_withdraw`
/// longer than the limit is refused (it made receipts that `from_json` refused), and
/// one at the limit, of characters JSON escapes six bytes long, reads back.
#[test]
fn every_receipt_the_ledger_makes_reads_back() {
    let f = fx();
    let l = open_at(f.dir.path(), &f, None).unwrap();
    let s = SubjectId::new("alice-1").unwrap();
    let g = l
        .grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    let too_long = "x".repeat(MAX_HOW_TO_WITHDRAW_LEN + 1);
    match l.receipt(g.seq, &too_long) {
        Err(ReadError::Input(e)) => assert_eq!(e.field(), "how to withdraw"),
        other => panic!("{other:?}"),
    }
    let longest = "\u{1}".repeat(MAX_HOW_TO_WITHDRAW_LEN);
    let r = l.receipt(g.seq, &longest).unwrap();
    let json = r.to_json();
    assert!(json.len() > 6 * MAX_HOW_TO_WITHDRAW_LEN && json.len() <= MAX_RECEIPT_JSON_LEN);
    let back = Receipt::from_json(&json).unwrap();
    assert_eq!(back, r);
    verify_receipt(&back, &f.key.verifying_key()).unwrap();
}

/// A trusted checkpoint given for a directory that holds no ledger yet is refused
/// before anything is created there.
#[test]
fn a_checkpoint_for_a_new_directory_is_refused_and_nothing_is_created() {
    let f = fx();
    let other = open_at(f.dir.path(), &f, None).unwrap();
    let cp = other.checkpoint().unwrap();
    let parent = tempfile::tempdir().unwrap();
    // The mark a first open makes before sled: a new ledger's vault, its header alone.
    let fresh = parent.path().join("fresh");
    drop(open_at(&fresh, &f, None).unwrap());
    let mark = std::fs::read(fresh.join("vault")).unwrap();
    // Missing, empty, or a first open cut short (the mark and sled's `blobs/` alone).
    for (dir, entries) in [
        (parent.path().join("new"), 0),
        (parent.path().join("empty"), 0),
        (parent.path().join("cut-short"), 2),
    ] {
        if entries > 0 {
            std::fs::create_dir_all(dir.join("blobs")).unwrap();
            std::fs::write(dir.join("vault"), &mark).unwrap();
        } else if dir.ends_with("empty") {
            std::fs::create_dir(&dir).unwrap();
        }
        for text in [cp.text(), "not a checkpoint"] {
            let r = open_at(&dir, &f, Some(text));
            assert!(
                matches!(r, Err(OpenError::UntrustedCheckpoint)),
                "{:?}",
                r.map(|l| l.len())
            );
            let left = std::fs::read_dir(&dir).map_or(0, |d| d.count());
            assert_eq!(left, entries, "the refused open left files in {}", dir.display());
        }
    }
}
