//! The log as an RFC 9162 Merkle tree (from a review): roots, inclusion and consistency
//! proofs at every size from 1 to 35, checked against a reference of RFC 9162 §2.1 written here.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use consent_ledger::{
    verify_consistency, verify_inclusion, AuditError, ConsistencyProof, Durability, Identifier,
    InclusionProof, Ledger, PartnerSharing, PseudonymKey, RecipientScope, SigningKey, SubjectId,
};
use sha2::{Digest, Sha256};

type H = [u8; 32];

fn leaf(d: &[u8]) -> H {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(d);
    h.finalize().into()
}
fn node(l: &H, r: &H) -> H {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}
fn k_of(n: usize) -> usize {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}
fn mth(d: &[Vec<u8>]) -> H {
    match d.len() {
        0 => Sha256::digest([]).into(),
        1 => leaf(&d[0]),
        n => {
            let k = k_of(n);
            node(&mth(&d[..k]), &mth(&d[k..]))
        }
    }
}
fn path(m: usize, d: &[Vec<u8>]) -> Vec<H> {
    let n = d.len();
    if n <= 1 {
        return vec![];
    }
    let k = k_of(n);
    if m < k {
        let mut p = path(m, &d[..k]);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = path(m - k, &d[k..]);
        p.push(mth(&d[..k]));
        p
    }
}
fn subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<H> {
    let n = d.len();
    if m == n {
        return if b { vec![] } else { vec![mth(d)] };
    }
    let k = k_of(n);
    if m <= k {
        let mut p = subproof(m, &d[..k], b);
        p.push(mth(&d[k..]));
        p
    } else {
        let mut p = subproof(m - k, &d[k..], false);
        p.push(mth(&d[..k]));
        p
    }
}
fn proof(m: usize, d: &[Vec<u8>]) -> Vec<H> {
    if m == 0 || m == d.len() {
        vec![]
    } else {
        subproof(m, d, true)
    }
}

fn open(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey, d: Durability) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .durability(d)
        .open()
        .unwrap()
}

fn grant(l: &Ledger, i: usize) {
    let s = SubjectId::new(&format!("s-{i}")).unwrap();
    l.grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
        .unwrap();
}

/// Every checkpoint root, inclusion proof and consistency proof the ledger gives, at
/// every size from 1 to 35 (1, 2, powers of two and their neighbours), equals the
/// reference, verifies, and does not verify for another leaf, index or checkpoint.
#[test]
fn ledger_roots_and_proofs_match_an_independent_reference() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::Immediate);
    let mut cps = vec![l.checkpoint().unwrap()];
    assert_eq!(cps[0].size(), 1);
    let mut i = 0;
    while l.len() < 35 {
        grant(&l, i);
        i += 1;
        let cp = l.checkpoint().unwrap();
        assert_eq!(cp.size(), l.len());
        cps.push(cp);
    }
    let n = l.len() as usize;
    let data: Vec<Vec<u8>> = (0..n as u64).map(|s| l.entry_bytes(s).unwrap()).collect();
    for cp in &cps {
        let size = cp.size() as usize;
        assert_eq!(cp.root(), mth(&data[..size]), "root at {size}");
        for m in 0..size {
            let p = l.inclusion_proof(m as u64, size as u64).unwrap();
            assert_eq!(p.hashes, path(m, &data[..size]), "PATH({m},{size})");
            verify_inclusion(&data[m], &p, cp).unwrap();
            for other in 0..size {
                if other != m {
                    assert!(verify_inclusion(&data[other], &p, cp).is_err());
                    let mut moved = p.clone();
                    moved.index = other as u64;
                    assert!(verify_inclusion(&data[m], &moved, cp).is_err());
                }
            }
            let mut beyond = p.clone();
            beyond.index = size as u64;
            assert!(verify_inclusion(&data[m], &beyond, cp).is_err());
            // The same proof with another checkpoint (and its size) fails unless it
            // is really that size's proof.
            for other in &cps {
                if other.size() != cp.size() {
                    let mut q = p.clone();
                    q.tree_size = other.size();
                    let ok = verify_inclusion(&data[m], &q, other).is_ok();
                    let real =
                        m < other.size() as usize && path(m, &data[..other.size() as usize]) == p.hashes;
                    assert_eq!(ok, real, "PATH({m},{size}) vs size {}", other.size());
                }
            }
        }
        assert!(l.inclusion_proof(size as u64, size as u64).is_err());
        for old in &cps {
            let m = old.size() as usize;
            if m > size {
                assert!(l.consistency_proof(m as u64, size as u64).is_err());
                continue;
            }
            let p = l.consistency_proof(m as u64, size as u64).unwrap();
            assert_eq!(p.hashes, proof(m, &data[..size]), "PROOF({m},{size})");
            verify_consistency(old, cp, &p).unwrap();
            if m != size {
                // Reversed.
                let rev = ConsistencyProof {
                    old_size: size as u64,
                    new_size: m as u64,
                    hashes: p.hashes.clone(),
                };
                assert!(verify_consistency(cp, old, &rev).is_err());
            }
            // Any flipped hash fails.
            for j in 0..p.hashes.len() {
                let mut bad = p.clone();
                bad.hashes[j][7] ^= 0x40;
                assert!(verify_consistency(old, cp, &bad).is_err());
            }
            // One hash more or less fails.
            let mut more = p.clone();
            more.hashes.push(cp.root());
            assert!(verify_consistency(old, cp, &more).is_err());
            if !p.hashes.is_empty() {
                let mut less = p.clone();
                less.hashes.pop();
                assert!(verify_consistency(old, cp, &less).is_err());
            }
        }
    }
}

/// A rewritten or forked log cannot be shown consistent with a checkpoint of the
/// original: the proof against the fork's (reference) root is refused.
#[test]
fn a_rewritten_log_is_not_consistent() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::Immediate);
    for i in 0..9 {
        grant(&l, i);
    }
    let old = l.checkpoint().unwrap();
    for i in 9..17 {
        grant(&l, i);
    }
    let new = l.checkpoint().unwrap();
    let p = l.consistency_proof(old.size(), new.size()).unwrap();
    verify_consistency(&old, &new, &p).unwrap();
    // Same proof, other sizes: refused as a mismatch.
    for (o, n) in [
        (old.size() - 1, new.size()),
        (old.size(), new.size() + 1),
        (0, new.size()),
    ] {
        let q = ConsistencyProof {
            old_size: o,
            new_size: n,
            hashes: p.hashes.clone(),
        };
        assert!(matches!(
            verify_consistency(&old, &new, &q),
            Err(AuditError::Mismatch(_))
        ));
    }
}

/// Hostile proof inputs: huge sizes, index >= size, far too many hashes. Errors, no
/// panic, quickly.
#[test]
fn hostile_proofs_are_refused_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::Immediate);
    for i in 0..5 {
        grant(&l, i);
    }
    let cp = l.checkpoint().unwrap();
    let bytes = l.entry_bytes(0).unwrap();
    for (a, b) in [
        (u64::MAX, u64::MAX),
        (0, u64::MAX),
        (u64::MAX, 0),
        (cp.size(), cp.size()),
        (u64::MAX - 1, u64::MAX),
        (1 << 63, (1 << 63) + 1),
    ] {
        assert!(l.inclusion_proof(a, b).is_err());
        if a != b {
            assert!(l.consistency_proof(a, b).is_err());
        }
    }
    let many = vec![[0u8; 32]; 1_000_000];
    let start = std::time::Instant::now();
    for index in [0, cp.size() - 1, cp.size(), u64::MAX] {
        let p = InclusionProof {
            index,
            tree_size: cp.size(),
            hashes: many.clone(),
        };
        assert!(verify_inclusion(&bytes, &p, &cp).is_err());
    }
    let c = ConsistencyProof {
        old_size: cp.size(),
        new_size: cp.size(),
        hashes: many.clone(),
    };
    assert!(verify_consistency(&cp, &cp, &c).is_err());
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

/// Leaf/node domain separation: the two children of an interior node, given as an
/// entry, do not pass as a leaf one level up.
#[test]
fn interior_nodes_do_not_pass_as_entries() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::Immediate);
    for i in 0..3 {
        grant(&l, i);
    }
    let cp = l.checkpoint().unwrap();
    assert_eq!(cp.size(), 4);
    let data: Vec<Vec<u8>> = (0..4).map(|s| l.entry_bytes(s).unwrap()).collect();
    let (l0, l1) = (leaf(&data[0]), leaf(&data[1]));
    let n23 = node(&leaf(&data[2]), &leaf(&data[3]));
    let mut fake = vec![1u8];
    fake.extend_from_slice(&l0);
    fake.extend_from_slice(&l1);
    for idx in [0u64, 1] {
        for hashes in [vec![n23], vec![n23, n23], vec![l1, n23]] {
            let p = InclusionProof {
                index: idx,
                tree_size: 4,
                hashes: hashes.clone(),
            };
            assert!(verify_inclusion(&fake, &p, &cp).is_err());
            assert!(verify_inclusion(&fake[1..], &p, &cp).is_err());
        }
    }
}

/// A checkpoint covers only durable entries: with `Relaxed`, only what was synced;
/// and a receipt is refused for an entry not yet durable.
#[test]
fn relaxed_checkpoint_covers_only_synced_entries() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::Relaxed);
    let base = l.checkpoint().unwrap().size();
    for i in 0..4 {
        grant(&l, i);
    }
    let cp = l.checkpoint().unwrap();
    assert_eq!(cp.size(), base, "checkpoint covers unsynced entries");
    assert!(l.receipt(base, "x").is_err());
    l.sync().unwrap();
    let cp2 = l.checkpoint().unwrap();
    assert_eq!(cp2.size(), l.len());
    let p = l.consistency_proof(cp.size(), cp2.size()).unwrap();
    verify_consistency(&cp, &cp2, &p).unwrap();
    let id = Identifier::<PartnerSharing>::email("a@example.com").unwrap();
    let s = SubjectId::new("s-x").unwrap();
    l.collect(&s, &id, RecipientScope::first_party()).unwrap();
    assert_eq!(l.checkpoint().unwrap().size(), cp2.size());
}
