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

/// A bad signature followed by an entry checked under an invalid key (a mixed-order key,
/// A' = aB + T with T of order 2, whose rotation acceptance passes the strict check, so
/// the walk does reach the entry signed under it): the error names the bad signature,
/// the first broken position, not the key after it. (Found by review r77: the test this
/// replaces rotated to the identity point, which the acceptance check already refused,
/// so the branch it claimed to check never ran.)
#[test]
fn a_bad_signature_before_an_entry_signed_by_a_mixed_order_key_is_named_first() {
    use curve25519_dalek::edwards::CompressedEdwardsY;
    use sha2::Sha256;

    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let l = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap();
    let s = SubjectId::new("user-1").unwrap();
    l.grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    let last = l.len() - 1;
    drop(l);

    let mut t_bytes = [0xffu8; 32];
    t_bytes[0] = 0xec;
    t_bytes[31] = 0x7f;
    let t2 = CompressedEdwardsY(t_bytes).decompress().unwrap();
    let a = Scalar::from(123_456_789u64);
    let mixed = (a * B + t2).compress().to_bytes();
    assert!(consent_ledger::VerifyingKey::from_bytes(&mixed).is_ok());

    let db = sled_util::open(dir.path());
    let tree = db.open_tree("entries").unwrap();
    let prev = tree.get(last.to_be_bytes()).unwrap().unwrap().to_vec();
    let prev_hash: [u8; 32] = Sha256::digest(&prev).into();
    let seq = last + 1;
    // Acceptance by a' = a with public A' = aB + T: strict-valid when H(R||A'||m) is even.
    let mut msg = b"consent-ledger key accept v1\n".to_vec();
    msg.extend(seq.to_be_bytes());
    msg.extend(prev_hash);
    msg.extend(mixed);
    let mut accept = [0u8; 64];
    for i in 1u64.. {
        let r = Scalar::from(i);
        let big_r = (r * B).compress();
        let mut h = Sha512::new();
        h.update(big_r.as_bytes());
        h.update(mixed);
        h.update(&msg);
        let k = Scalar::from_bytes_mod_order_wide(&h.finalize().into());
        if k.as_bytes()[0] & 1 == 0 {
            accept[..32].copy_from_slice(big_r.as_bytes());
            accept[32..].copy_from_slice((r + k * a).as_bytes());
            break;
        }
    }
    let entry = |seq: u64, prev: [u8; 32], body: &[u8]| {
        let mut b = vec![1u8];
        b.extend(seq.to_be_bytes());
        b.extend((u64::MAX / 2).to_be_bytes());
        b.extend(2u32.to_be_bytes()); // System
        b.extend(prev);
        b.extend([0x5a; 16]);
        b.extend(body);
        b.extend([0x11; 64]); // a bad signature
        b
    };
    let mut rot = 6u32.to_be_bytes().to_vec();
    rot.extend(mixed);
    rot.extend(accept);
    let k = entry(seq, prev_hash, &rot);
    let k_hash: [u8; 32] = Sha256::digest(&k).into();
    let mut revoke = 7u32.to_be_bytes().to_vec();
    revoke.extend([9u8; 32]);
    revoke.extend(0u64.to_be_bytes());
    let k1 = entry(seq + 1, k_hash, &revoke); // checked under the mixed-order key
    tree.insert(seq.to_be_bytes(), k).unwrap();
    tree.insert((seq + 1).to_be_bytes(), k1).unwrap();
    db.flush().unwrap();
    drop(tree);
    drop(db);
    match Inspector::open(dir.path()).unwrap().verify() {
        Err(ReadError::Integrity(e)) => {
            assert_eq!(
                (e.position, e.problem),
                (seq, consent_ledger::IntegrityProblem::BadSignature)
            )
        }
        other => panic!("{other:?}"),
    }
    // The premise: with entry `seq` validly signed, the walk does reach `seq + 1` and
    // refuses the mixed-order key there (the rotation's acceptance passed).
    let db = sled_util::open(dir.path());
    let tree = db.open_tree("entries").unwrap();
    let mut k = tree.get(seq.to_be_bytes()).unwrap().unwrap().to_vec();
    let n = k.len() - 64;
    let mut m = b"consent-ledger entry v1\n".to_vec();
    m.extend(&k[..n]);
    let sig = ed25519_dalek::Signer::sign(&ed25519_dalek::SigningKey::from_bytes(&key.expose_seed()), &m);
    k[n..].copy_from_slice(&sig.to_bytes());
    let k_hash: [u8; 32] = Sha256::digest(&k).into();
    let mut k1 = tree.get((seq + 1).to_be_bytes()).unwrap().unwrap().to_vec();
    k1[21..53].copy_from_slice(&k_hash);
    tree.insert(seq.to_be_bytes(), k).unwrap();
    tree.insert((seq + 1).to_be_bytes(), k1).unwrap();
    db.flush().unwrap();
    drop(tree);
    drop(db);
    match Inspector::open(dir.path()).unwrap().verify() {
        Err(ReadError::Integrity(e)) => assert_eq!(
            (e.position, e.problem),
            (
                seq + 1,
                consent_ledger::IntegrityProblem::InvalidField("signing key")
            )
        ),
        other => panic!("{other:?}"),
    }
}

/// The point of order 2, (0, -1).
fn order_two() -> EdwardsPoint {
    let mut y = [0xffu8; 32];
    y[0] = 0xec;
    y[31] = 0x7f;
    curve25519_dalek::edwards::CompressedEdwardsY(y)
        .decompress()
        .unwrap()
}

/// Of `runs` calls of `verify()` on `dir`, the errors (each must be a bad signature at
/// `at`), and how many passed.
fn verify_runs(dir: &std::path::Path, runs: usize, at: u64) -> usize {
    let inspector = Inspector::open(dir).unwrap();
    let mut passed = 0;
    for _ in 0..runs {
        match inspector.verify() {
            Ok(_) => passed += 1,
            Err(e) => assert_eq!(
                (integrity(e).position, IntegrityProblem::BadSignature),
                (at, IntegrityProblem::BadSignature)
            ),
        }
    }
    passed
}

/// An R with a torsion component of order 2 (R = rB + T): the strict check refuses it,
/// and a batch passes when the weight of that signature is even. ed25519-dalek derives
/// the weights from the batch's contents alone, so the key's holder could try r until
/// `verify()` passed, and it then passed every time (review r140). Each batch now holds
/// a signature made for the call, so the weights cannot be chosen: an r whose first
/// call passed is refused by some of the next forty (all forty pass with a chance of
/// 2⁻⁴⁰). Open refuses it: it is the last entry.
#[test]
fn a_torsion_component_in_r_cannot_be_chosen_to_pass_verify() {
    let (dir, key, pk, last) = setup();
    let t = order_two();
    let mut chosen = None;
    for r in 1u64..64 {
        replace_signature(dir.path(), last, |signed| forge(signed, &key, Scalar::from(r), t));
        if Inspector::open(dir.path()).unwrap().verify().is_ok() {
            chosen = Some(r);
            break;
        }
    }
    assert!(chosen.is_some(), "no r passed a first verify() in 63 tries");
    let passed = verify_runs(dir.path(), 40, last);
    assert!(passed < 40, "r = {chosen:?} passed verify() 41 times in a row");
    assert_eq!(
        open_err(dir.path(), &key, &pk),
        Some((last, IntegrityProblem::BadSignature))
    );
}

/// The same signature on an entry inside the log, the entry after it relinked and
/// signed properly: open checks only the last signature and opens; `receipt` checks
/// the entry's signature strictly and refuses to issue a receipt the person's check
/// would refuse (it used to issue it: review r140); `verify()` refuses it in some of
/// forty calls.
#[test]
fn a_receipt_is_refused_for_an_entry_whose_signature_fails_the_strict_check() {
    use ed25519_dalek::Signer;
    let (dir, key, pk, last) = setup();
    let at = last - 1;
    {
        let db = sled_util::open(dir.path());
        let tree = db.open_tree("entries").unwrap();
        let mut bad = tree.get(at.to_be_bytes()).unwrap().unwrap().to_vec();
        let old_hash: [u8; 32] = sha2::Sha256::digest(&bad).into();
        let n = bad.len() - 64;
        let sig = forge(&bad[..n], &key, Scalar::from(1u64), order_two());
        bad[n..].copy_from_slice(&sig);
        let new_hash: [u8; 32] = sha2::Sha256::digest(&bad).into();
        let mut next = tree.get(last.to_be_bytes()).unwrap().unwrap().to_vec();
        let link = next.windows(32).position(|w| w == old_hash).unwrap();
        next[link..link + 32].copy_from_slice(&new_hash);
        let n = next.len() - 64;
        let mut signed = b"consent-ledger entry v1\n".to_vec();
        signed.extend_from_slice(&next[..n]);
        let dalek = ed25519_dalek::SigningKey::from_bytes(&key.expose_seed());
        next[n..].copy_from_slice(&dalek.sign(&signed).to_bytes());
        tree.insert(at.to_be_bytes(), bad).unwrap();
        tree.insert(last.to_be_bytes(), next).unwrap();
        db.flush().unwrap();
    }
    {
        let ledger = Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .open()
            .unwrap();
        let refused = integrity(ledger.receipt(at, "-").unwrap_err());
        assert_eq!(
            (refused.position, refused.problem),
            (at, IntegrityProblem::BadSignature)
        );
        let receipt = ledger.receipt(last, "-").unwrap();
        consent_ledger::verify_receipt(&receipt, &key.verifying_key()).unwrap();
    }
    assert!(verify_runs(dir.path(), 40, at) < 40);
}
