//! Signing keys after a rotation and a revocation: a stolen old key cannot vouch for a
//! shortened log, receipts are not issued for what it may have signed, and it never
//! signs again.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use consent_ledger::{
    verify_receipt, Analytics, IntegrityProblem, Ledger, ManualClock, OpenError, PseudonymKey, ReadError,
    RecipientScope, SigningKey, SubjectId, Timestamp, WriteError,
};

fn open(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn b64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Re-signs a checkpoint's body (origin, size, root) with `key`, as the holder of a
/// stolen old key would: C2SP signed note, key id = SHA-256(name || '\n' || 0x01 || pk)[..4].
fn forge_checkpoint(legit: &str, key: &SigningKey) -> String {
    use ed25519_dalek::Signer;
    use sha2::{Digest, Sha256};
    let body = &legit[..legit.find("\n\n").unwrap() + 1];
    let origin = body.lines().next().unwrap();
    let sk = ed25519_dalek::SigningKey::from_bytes(&key.expose_seed());
    let mut h = Sha256::new();
    h.update(origin.as_bytes());
    h.update([b'\n', 1]);
    h.update(sk.verifying_key().as_bytes());
    let mut raw = h.finalize()[..4].to_vec();
    raw.extend_from_slice(&sk.sign(body.as_bytes()).to_bytes());
    format!("{body}\n\u{2014} {origin} {}\n", b64(&raw))
}

fn truncate_to(dir: &std::path::Path, len: u64) {
    let db = sled_util::open(dir);
    let t = db.open_tree("entries").unwrap();
    while let Some((k, _)) = t.last().unwrap() {
        if u64::from_be_bytes(k.as_ref().try_into().unwrap()) < len {
            break;
        }
        t.remove(k).unwrap();
    }
    db.flush().unwrap();
}

/// A log cut short after a rotation: the checkpoint kept outside (signed with the
/// current key) catches it, and one forged with the old key, which may have been stolen,
/// is refused, whether or not the cut removed the revocation.
#[test]
fn a_checkpoint_signed_by_an_old_key_is_not_trusted() {
    let base = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let s = SubjectId::new("s-1").unwrap();
    let l = open(base.path(), &k0, &pk, &clock);
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap(); // 1
    l.rotate_key(k1.clone()).unwrap(); // 2 (signed by k0)
    let cp3 = l.checkpoint().unwrap();
    assert_eq!(cp3.size(), 3);
    l.revoke_key(k0.verifying_key(), 0).unwrap(); // 3: k0 compromised from 0
    let cp4 = l.checkpoint().unwrap();
    l.withdraw::<Analytics>(&s).unwrap(); // 4
    let cp_full = l.checkpoint().unwrap(); // size 5, signed by k1: kept outside the db
    assert_eq!(cp_full.size(), 5);
    drop(l);
    let opened = |dir: &std::path::Path, cp: String| {
        Ledger::builder(dir)
            .signing_key(k1.clone())
            .pseudonym_key(pk.clone())
            .trusted_checkpoint(cp)
            .open()
    };
    // Uncut, the current key's checkpoint opens it.
    opened(base.path(), cp_full.text().to_owned()).unwrap();
    for (cut, legit_prefix) in [(4u64, &cp4), (3, &cp3)] {
        let dir = tempfile::tempdir().unwrap();
        sled_util::copy_dir(base.path(), dir.path());
        truncate_to(dir.path(), cut); // the withdrawal (and, for 3, the revocation) is gone
        let e = opened(dir.path(), cp_full.text().to_owned()).unwrap_err();
        assert!(matches!(e, OpenError::Integrity(_)), "{e:?}");
        let forged = forge_checkpoint(legit_prefix.text(), &k0);
        let e = opened(dir.path(), forged).unwrap_err();
        assert!(matches!(e, OpenError::UntrustedCheckpoint), "cut {cut}: {e:?}");
    }
}

/// No receipt for an entry signed by a key at or after the position it was revoked
/// from: the current key would vouch for what the stolen one may have made.
#[test]
fn no_receipt_for_an_entry_signed_by_a_revoked_key() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let s = SubjectId::new("s-1").unwrap();
    let l = open(dir.path(), &k0, &pk, &clock);
    let before = l
        .grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    let g = l
        .grant::<Analytics>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), g.seq).unwrap();
    let after = l.withdraw::<Analytics>(&s).unwrap();
    let report = l.verify().unwrap();
    assert!(report.untrusted.iter().any(|r| r.from <= g.seq && g.seq <= r.to));
    match l.receipt(g.seq, "https://example.com/withdraw") {
        Err(ReadError::Integrity(e)) => {
            assert_eq!(e.position, g.seq);
            assert!(matches!(e.problem, IntegrityProblem::RevokedKey { .. }), "{e:?}");
        }
        other => panic!("{:?}", other.map(|_| ())),
    }
    // Before the revoked range, and after the rotation, receipts are issued and verify.
    for seq in [before.seq, after.seq] {
        let r = l.receipt(seq, "https://example.com/withdraw").unwrap();
        verify_receipt(&r, &k1.verifying_key()).unwrap();
    }
}

/// A revoked key is never rotated to again.
#[test]
fn a_revoked_key_cannot_be_rotated_to() {
    let dir = tempfile::tempdir().unwrap();
    let pk = PseudonymKey::generate();
    let clock = ManualClock::new(Timestamp::from_millis(1));
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let l = open(dir.path(), &k0, &pk, &clock);
    l.rotate_key(k1.clone()).unwrap();
    l.revoke_key(k0.verifying_key(), 0).unwrap();
    assert!(matches!(l.rotate_key(k0.clone()), Err(WriteError::Input(_))));
    drop(l);
    // Also after reopening (the revocation is read back from the log).
    let l = open(dir.path(), &k1, &pk, &clock);
    assert!(matches!(l.rotate_key(k0.clone()), Err(WriteError::Input(_))));
    assert_eq!(l.verifying_key().unwrap(), k1.verifying_key());
}

/// A key revoked twice lists its entries once, from the earliest position, named by
/// the revocation that gave it.
#[test]
fn a_key_revoked_twice_lists_its_entries_once() {
    let dir = tempfile::tempdir().unwrap();
    let (k1, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let l = open(dir.path(), &k1, &pk, &clock);
    let s = SubjectId::new("user-1").unwrap();
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    l.withdraw::<Analytics>(&s).unwrap();
    l.rotate_key(SigningKey::generate()).unwrap();
    let first = l.revoke_key(k1.verifying_key(), 2).unwrap();
    let wider = l.revoke_key(k1.verifying_key(), 1).unwrap();
    l.revoke_key(k1.verifying_key(), 2).unwrap();
    let report = l.verify().unwrap();
    assert_eq!(report.untrusted.len(), 1, "{:?}", report.untrusted);
    let r = report.untrusted[0];
    assert_eq!((r.from, r.to, r.revoked_by), (1, 3, wider.seq), "{r:?}");
    assert!(first.seq < wider.seq);
}
