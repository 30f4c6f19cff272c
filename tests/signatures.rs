//! `verify()` checks signatures in batches, which are not strict: it must still refuse
//! what the strict check of one signature (open, receipts) refuses, and name the first
//! bad entry.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use consent_ledger::{
    Inspector, IntegrityError, IntegrityProblem, Ledger, OpenError, PartnerSharing, PseudonymKey, ReadError,
    RecipientScope, SigningKey, SubjectId,
};
use curve25519_dalek::constants::ED25519_BASEPOINT_POINT as B;
use curve25519_dalek::edwards::EdwardsPoint;
use curve25519_dalek::Scalar;
use sha2::{Digest, Sha512};

/// A signature (R, s) over `signed` (version || body) with a chosen R: for R = R' + T
/// with R' = rB, s = r + H(R || A || ctx || signed) * a. With T = identity and r = 0,
/// R is the identity (small order); with T of order 2, R has a torsion component.
fn forge(signed: &[u8], key: &SigningKey, r: Scalar, t: EdwardsPoint) -> [u8; 64] {
    let dalek = ed25519_dalek::SigningKey::from_bytes(&key.expose_seed());
    let a = dalek.to_scalar();
    let big_r = (r * B + t).compress();
    let mut h = Sha512::new();
    h.update(big_r.as_bytes());
    h.update(key.verifying_key().to_bytes());
    h.update(b"consent-ledger entry v1\n");
    h.update(signed);
    let h = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
    let s = r + h * a;
    let mut sig = [0u8; 64];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

fn setup() -> (tempfile::TempDir, SigningKey, PseudonymKey, u64) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let ledger = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap();
    for i in 0..3 {
        let s = SubjectId::new(&format!("user-{i}")).unwrap();
        ledger
            .grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    let last = ledger.len() - 1;
    drop(ledger);
    (dir, key, pk, last)
}

fn replace_signature(dir: &std::path::Path, pos: u64, f: impl FnOnce(&[u8]) -> [u8; 64]) {
    let db = sled_util::open(dir);
    let tree = db.open_tree("entries").unwrap();
    let mut bytes = tree.get(pos.to_be_bytes()).unwrap().unwrap().to_vec();
    let n = bytes.len() - 64;
    let sig = f(&bytes[..n]);
    bytes[n..].copy_from_slice(&sig);
    tree.insert(pos.to_be_bytes(), bytes).unwrap();
    db.flush().unwrap();
}

fn integrity(e: ReadError) -> IntegrityError {
    match e {
        ReadError::Integrity(i) => i,
        other => panic!("{other:?}"),
    }
}

fn open_err(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey) -> Option<(u64, IntegrityProblem)> {
    match Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
    {
        Ok(_) => None,
        Err(OpenError::Integrity(e)) => Some((e.position, e.problem)),
        Err(other) => panic!("{other:?}"),
    }
}

/// A signature whose R is the identity satisfies the batch equation exactly; the strict
/// check refuses it. `verify()` and open both report it, at its position.
#[test]
fn a_small_order_r_is_refused_by_verify_as_by_open() {
    let (dir, key, pk, last) = setup();
    let identity = EdwardsPoint::default();
    replace_signature(dir.path(), last, |signed| {
        forge(signed, &key, Scalar::ZERO, identity)
    });
    let err = integrity(Inspector::open(dir.path()).unwrap().verify().unwrap_err());
    assert_eq!(
        (err.position, err.problem.clone()),
        (last, IntegrityProblem::BadSignature)
    );
    assert_eq!(
        open_err(dir.path(), &key, &pk),
        Some((last, IntegrityProblem::BadSignature))
    );
}

/// A hand-encoded KeyRotated entry (format v1, actor System) with a junk acceptance and
/// a junk signature.
fn key_rotated(seq: u64, ts: u64, prev: [u8; 32], new_key: [u8; 32]) -> Vec<u8> {
    let mut b = vec![1u8];
    b.extend_from_slice(&seq.to_be_bytes());
    b.extend_from_slice(&ts.to_be_bytes());
    b.extend_from_slice(&2u32.to_be_bytes()); // System
    b.extend_from_slice(&prev);
    b.extend_from_slice(&[0x5a; 16]); // salt
    b.extend_from_slice(&6u32.to_be_bytes()); // KeyRotated
    b.extend_from_slice(&new_key);
    b.extend_from_slice(&[0x22; 64]); // the new key's acceptance: not valid either
    b.extend_from_slice(&[0x11; 64]); // not a valid signature by anyone
    b
}

/// A bad signature followed by an entry naming an invalid key: the error names the bad
/// signature, the first broken position, not the key after it.
#[test]
fn verify_names_the_first_bad_entry_before_a_later_invalid_key() {
    let (dir, _key, _pk, last) = setup();
    {
        let db = sled_util::open(dir.path());
        let tree = db.open_tree("entries").unwrap();
        let prev = tree.get(last.to_be_bytes()).unwrap().unwrap().to_vec();
        let prev_hash: [u8; 32] = sha2::Sha256::digest(&prev).into();
        // Entry last+1: forged (bad signature), rotating to the identity point (a weak key).
        let mut weak = [0u8; 32];
        weak[0] = 1;
        let k = key_rotated(last + 1, u64::MAX / 2, prev_hash, weak);
        let k_hash: [u8; 32] = sha2::Sha256::digest(&k).into();
        // Entry last+2: links correctly to the forged one.
        let k1 = key_rotated(last + 2, u64::MAX / 2, k_hash, [9; 32]);
        tree.insert((last + 1).to_be_bytes(), k).unwrap();
        tree.insert((last + 2).to_be_bytes(), k1).unwrap();
        db.flush().unwrap();
    }
    let err = integrity(Inspector::open(dir.path()).unwrap().verify().unwrap_err());
    // The first bad entry is last+1 (its signature does not verify under the genesis key).
    assert_eq!(
        (err.position, err.problem.clone()),
        (last + 1, IntegrityProblem::BadSignature),
        "{err}"
    );
}
