//! RFC 9162 §2.1 Merkle tree: hashing, an append-only in-memory tree, and
//! inclusion / consistency proofs together with their verifiers.
//!
//! The ledger commits to its entries with the same Merkle tree as Certificate
//! Transparency (RFC 6962, restated in RFC 9162 §2.1), so that a checkpoint
//! (tree size + root hash, see the `note` module) can be audited with standard
//! tooling:
//!
//! * `leaf_hash(d) = SHA-256(0x00 || d)`,
//! * `node_hash(l, r) = SHA-256(0x01 || l || r)`,
//! * the hash of the empty tree is `SHA-256("")`,
//! * a tree of `n > 1` leaves is split at `k`, the largest power of two
//!   strictly smaller than `n`.
//!
//! [`MerkleTree`] keeps every leaf hash plus the hash of every *complete,
//! aligned* subtree (level 0 = leaves, level 1 = aligned pairs, ...). That is
//! about 64 bytes per leaf in total, and it makes the root of any prefix as
//! well as every inclusion and consistency proof cost O(log n) hash
//! operations instead of O(n). The right-most complete node of each level
//! whose bit is set in the tree size forms the "frontier" (compact range) of
//! the tree, from which the current root is folded.
//!
//! The verifiers [`verify_inclusion`] and [`verify_consistency`] need nothing
//! but hashes and implement RFC 9162 §2.1.3.2 and §2.1.4.2 step by step.
//! Nothing here panics on caller-supplied sizes or indexes, including values
//! close to `u64::MAX`: out-of-range arguments give `None` or an error.

use sha2::{Digest, Sha256};

/// A SHA-256 digest: a leaf hash, an interior node hash or a tree root.
pub(crate) type Hash = [u8; 32];

/// Domain-separation prefix for leaf hashes (RFC 9162 §2.1.1).
const LEAF_PREFIX: u8 = 0x00;

/// Domain-separation prefix for interior node hashes (RFC 9162 §2.1.1).
const NODE_PREFIX: u8 = 0x01;

/// Hashes one leaf's data: `SHA-256(0x00 || data)`.
///
/// The 0x00 prefix keeps leaf hashes and node hashes in separate domains, so
/// that an interior node can never be passed off as a leaf (second-preimage
/// protection required by RFC 9162).
pub(crate) fn leaf_hash(data: &[u8]) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([LEAF_PREFIX]);
    hasher.update(data);
    hasher.finalize().into()
}

/// Hashes two child hashes into their parent: `SHA-256(0x01 || left || right)`.
pub(crate) fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut hasher = Sha256::new();
    hasher.update([NODE_PREFIX]);
    hasher.update(left);
    hasher.update(right);
    hasher.finalize().into()
}

/// The root hash of the empty tree: `SHA-256("")` (RFC 9162 §2.1.1).
pub(crate) fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// Why a proof failed to verify.
///
/// Every failure of [`verify_inclusion`](crate::verify_inclusion) or [`verify_consistency`](crate::verify_consistency) maps to one
/// of these; callers should treat all of them as "the proof does not show
/// what was claimed".
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProofError {
    /// The leaf index is not smaller than the tree size, so the leaf cannot
    /// be in the tree.
    #[error("leaf index is not below the tree size")]
    IndexOutOfRange,
    /// A consistency proof was requested from a larger tree to a smaller one.
    #[error("old tree size is larger than the new tree size")]
    SizeOrder,
    /// The proof does not have the number of hashes that the RFC 9162
    /// algorithm prescribes for these sizes and this index.
    #[error("proof has {actual} hashes but {expected} were expected")]
    WrongProofLength {
        /// Number of hashes a valid proof has for these arguments.
        expected: usize,
        /// Number of hashes the proof actually has.
        actual: usize,
    },
    /// The root recomputed from the proof differs from the expected root.
    #[error("computed root does not match the expected root")]
    RootMismatch,
}

/// The largest power of two strictly smaller than `n`, the split point `k` of
/// RFC 9162 §2.1.1. `None` for `n < 2`, where there is no split.
fn split_point(n: u64) -> Option<u64> {
    let exponent = n.checked_sub(1)?.checked_ilog2()?;
    1u64.checked_shl(exponent)
}

/// Number of hashes in the RFC 9162 §2.1.3.1 inclusion proof (`PATH`) of leaf
/// `index` in a tree of `size` leaves; `None` if `index >= size`.
///
/// Walks the same recursion as `PATH` without hashing anything, so a verifier
/// can reject a proof of the wrong length before doing any work.
fn inclusion_proof_len(index: u64, size: u64) -> Option<usize> {
    if index >= size {
        return None;
    }
    let (mut m, mut n, mut len) = (index, size, 0usize);
    while n > 1 {
        let k = split_point(n)?;
        if m < k {
            n = k;
        } else {
            m = m.checked_sub(k)?;
            n = n.checked_sub(k)?;
        }
        len = len.checked_add(1)?;
    }
    Some(len)
}

/// Number of hashes in the RFC 9162 §2.1.4.1 consistency proof (`PROOF`)
/// between tree sizes `old_size` and `new_size`; `None` if
/// `old_size > new_size`. The proof is empty when `old_size` is 0 or equal to
/// `new_size`.
fn consistency_proof_len(old_size: u64, new_size: u64) -> Option<usize> {
    if old_size > new_size {
        return None;
    }
    if old_size == 0 || old_size == new_size {
        return Some(0);
    }
    let (mut m, mut n, mut complete, mut len) = (old_size, new_size, true, 0usize);
    while m != n {
        let k = split_point(n)?;
        if m <= k {
            n = k;
        } else {
            m = m.checked_sub(k)?;
            n = n.checked_sub(k)?;
            complete = false;
        }
        len = len.checked_add(1)?;
    }
    if !complete {
        len = len.checked_add(1)?;
    }
    Some(len)
}

/// An append-only RFC 9162 Merkle tree held in memory.
///
/// `levels[0]` holds every leaf hash in order; `levels[l]` holds the hash of
/// every complete subtree of `2^l` leaves that starts at a multiple of `2^l`.
/// Appending a leaf hashes at most as many nodes as the number of complete
/// subtrees it closes (amortized one hash per push), and the whole structure
/// costs about 64 bytes per leaf. Because every node of the RFC 9162 tree for
/// any prefix decomposes into at most 64 such stored subtrees, roots of past
/// sizes and all proofs take O(log n) hash operations.
#[derive(Clone, Default)]
pub(crate) struct MerkleTree {
    /// `levels[l][i]` is the hash of leaves `[i * 2^l, (i + 1) * 2^l)`.
    levels: Vec<Vec<Hash>>,
}

impl std::fmt::Debug for MerkleTree {
    /// Shows the size and root only: the stored hashes can run to gigabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MerkleTree")
            .field("len", &self.len())
            .field("root", &HexHash(&self.root()))
            .finish_non_exhaustive()
    }
}

/// Formats a hash as lowercase hex in `Debug` output.
struct HexHash<'a>(&'a Hash);

impl std::fmt::Debug for HexHash<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl MerkleTree {
    /// An empty tree, whose root is [`empty_root`].
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Appends one leaf hash (as produced by [`leaf_hash`]).
    ///
    /// Completes the parent of every subtree that this leaf closes, which is
    /// amortized O(1) hash operations per leaf.
    pub(crate) fn push(&mut self, leaf: Hash) {
        let mut carry = leaf;
        let mut level = 0usize;
        loop {
            if self.levels.len() <= level {
                self.levels.push(Vec::new());
            }
            let Some(row) = self.levels.get_mut(level) else {
                return;
            };
            row.push(carry);
            if row.len() % 2 != 0 {
                return;
            }
            // An even count means the last two nodes of this level are
            // siblings whose parent just became complete.
            carry = match row.as_slice() {
                [.., left, right] => node_hash(left, right),
                _ => return,
            };
            level = level.saturating_add(1);
        }
    }

    /// Number of leaves appended so far.
    pub(crate) fn len(&self) -> u64 {
        self.levels
            .first()
            .map_or(0, |leaves| u64::try_from(leaves.len()).unwrap_or(u64::MAX))
    }

    /// Whether no leaf has been appended yet.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The root hash of the whole tree as it stands.
    pub(crate) fn root(&self) -> Hash {
        // `root_at(len)` only fails for sizes beyond `len`, so the fallback is
        // never taken; it only avoids a panic path.
        self.root_at(self.len()).unwrap_or_else(empty_root)
    }

    /// The root hash of the tree made of the first `size` leaves, or `None`
    /// if `size` exceeds the number of leaves.
    ///
    /// O(log n): folds the complete subtrees of the prefix (its frontier).
    pub(crate) fn root_at(&self, size: u64) -> Option<Hash> {
        if size > self.len() {
            return None;
        }
        if size == 0 {
            return Some(empty_root());
        }
        self.range_hash(0, size)
    }

    /// The RFC 9162 §2.1.3.1 inclusion proof `PATH(index, D[0:size])` of leaf
    /// `index` in the tree of the first `size` leaves, ordered from the leaf's
    /// sibling up to the root's child.
    ///
    /// `None` if `size` exceeds the number of leaves or `index >= size`.
    pub(crate) fn inclusion_proof(&self, index: u64, size: u64) -> Option<Vec<Hash>> {
        if size > self.len() || index >= size {
            return None;
        }
        // Walk down from the root; `[start, start + n)` is the current subtree
        // and `m` the leaf's offset inside it. Siblings are collected top-down
        // and reversed at the end, because PATH lists the deepest one first.
        let mut proof = Vec::new();
        let (mut start, mut n, mut m) = (0u64, size, index);
        while n > 1 {
            let k = split_point(n)?;
            let rest = n.checked_sub(k)?;
            if m < k {
                proof.push(self.range_hash(start.checked_add(k)?, rest)?);
                n = k;
            } else {
                proof.push(self.range_hash(start, k)?);
                start = start.checked_add(k)?;
                m = m.checked_sub(k)?;
                n = rest;
            }
        }
        proof.reverse();
        Some(proof)
    }

    /// The RFC 9162 §2.1.4.1 consistency proof `PROOF(old_size, D[0:new_size])`
    /// showing that the tree of `old_size` leaves is a prefix of the tree of
    /// `new_size` leaves.
    ///
    /// Empty when `old_size` is 0 or equal to `new_size`, as the RFC
    /// specifies. `None` if `new_size` exceeds the number of leaves or
    /// `old_size > new_size`.
    pub(crate) fn consistency_proof(&self, old_size: u64, new_size: u64) -> Option<Vec<Hash>> {
        if new_size > self.len() || old_size > new_size {
            return None;
        }
        if old_size == 0 || old_size == new_size {
            return Some(Vec::new());
        }
        // SUBPROOF(m, D[start:start+n], complete), unrolled top-down.
        let mut proof = Vec::new();
        let (mut start, mut m, mut n, mut complete) = (0u64, old_size, new_size, true);
        while m != n {
            let k = split_point(n)?;
            let rest = n.checked_sub(k)?;
            if m <= k {
                proof.push(self.range_hash(start.checked_add(k)?, rest)?);
                n = k;
            } else {
                proof.push(self.range_hash(start, k)?);
                start = start.checked_add(k)?;
                m = m.checked_sub(k)?;
                n = rest;
                complete = false;
            }
        }
        if !complete {
            // The old tree's subtree itself is not a node the verifier knows,
            // so SUBPROOF(m, D[m], false) contributes MTH(D[m]).
            proof.push(self.range_hash(start, n)?);
        }
        proof.reverse();
        Some(proof)
    }

    /// The stored hash of complete subtree number `index` at `level`
    /// (leaves `[index * 2^level, (index + 1) * 2^level)`), if it exists yet.
    fn node(&self, level: u32, index: u64) -> Option<Hash> {
        let row = self.levels.get(usize::try_from(level).ok()?)?;
        row.get(usize::try_from(index).ok()?).copied()
    }

    /// `MTH(D[start:start+size])` for a subtree of the RFC 9162 tree, built
    /// from at most 64 stored complete subtrees.
    ///
    /// Every node of the RFC tree starts at a multiple of the smallest power
    /// of two not below its size; such ranges decompose into aligned complete
    /// subtrees, largest first. Returns `None` for an empty, misaligned or not
    /// yet complete range instead of computing a wrong hash.
    fn range_hash(&self, start: u64, size: u64) -> Option<Hash> {
        if size == 0 {
            return None;
        }
        let aligned = match size.checked_next_power_of_two() {
            Some(span) => start.is_multiple_of(span),
            None => start == 0,
        };
        if !aligned {
            return None;
        }
        // Fold from the smallest (right-most) subtree to the largest one.
        let mut acc: Option<Hash> = None;
        for level in 0..u64::BITS {
            if (size >> level) & 1 == 1 {
                let index = (start >> level).checked_add(size >> level)?.checked_sub(1)?;
                let subtree = self.node(level, index)?;
                acc = Some(match acc {
                    None => subtree,
                    Some(right) => node_hash(&subtree, &right),
                });
            }
        }
        acc
    }
}

/// Verifies an inclusion proof exactly as RFC 9162 §2.1.3.2 describes.
///
/// Succeeds only if `proof` shows that `leaf` (a [`leaf_hash`]) is leaf number
/// `index` of the tree of `size` leaves whose root is `root`. Every proof
/// element is consumed, the proof length must be exactly the one `PATH`
/// produces, and any changed element changes the recomputed root.
///
/// The size only determines the shape of the path: for a leaf far from the
/// right edge, neighbouring sizes give the same shape. `size` and `root` must
/// therefore come together from one verified checkpoint, never separately.
pub(crate) fn verify_inclusion(
    index: u64,
    size: u64,
    leaf: &Hash,
    proof: &[Hash],
    root: &Hash,
) -> Result<(), ProofError> {
    // Step 1: the index must lie inside the tree.
    if index >= size {
        return Err(ProofError::IndexOutOfRange);
    }
    let expected = inclusion_proof_len(index, size).ok_or(ProofError::IndexOutOfRange)?;
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    // Redundant with the checks of steps 4a and 5, but gives a precise error
    // before any hashing.
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // Steps 2 and 3.
    let mut f_n = index;
    let mut s_n = size.checked_sub(1).ok_or(ProofError::IndexOutOfRange)?;
    let mut r = *leaf;
    // Step 4.
    for p in proof {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            r = node_hash(p, &r);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            r = node_hash(&r, p);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    if s_n != 0 {
        return Err(wrong_length);
    }
    if r != *root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

/// Verifies a consistency proof exactly as RFC 9162 §2.1.4.2 describes.
///
/// Succeeds only if `proof` shows that the tree of `old_size` leaves with
/// root `old_root` is a prefix of the tree of `new_size` leaves with root
/// `new_root`. Special cases, where the proof must be empty:
///
/// * `old_size == new_size`: the roots must be equal (and, for size 0, equal
///   to [`empty_root`]);
/// * `old_size == 0`: `old_root` must be [`empty_root`]; every tree extends
///   the empty tree.
///
/// As with [`verify_inclusion`], each size must come from the same verified
/// checkpoint as its root.
pub(crate) fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), ProofError> {
    if old_size > new_size {
        return Err(ProofError::SizeOrder);
    }
    let expected = consistency_proof_len(old_size, new_size).ok_or(ProofError::SizeOrder)?;
    let wrong_length = ProofError::WrongProofLength {
        expected,
        actual: proof.len(),
    };
    if proof.len() != expected {
        return Err(wrong_length);
    }
    // The RFC's special cases: nothing to prove, so the proof must be empty.
    if old_size == new_size {
        if !proof.is_empty() {
            return Err(wrong_length);
        }
        if old_root != new_root || (old_size == 0 && *old_root != empty_root()) {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    if old_size == 0 {
        if !proof.is_empty() {
            return Err(wrong_length);
        }
        if *old_root != empty_root() {
            return Err(ProofError::RootMismatch);
        }
        return Ok(());
    }
    // Step 1: an empty proof cannot link two different non-empty trees.
    let Some((first, rest)) = proof.split_first() else {
        return Err(wrong_length);
    };
    // Step 2: if old_size is a power of two, its root is a node of the new
    // tree and is implicitly the first element of the path.
    let (seed, path) = if old_size.is_power_of_two() {
        (*old_root, proof)
    } else {
        (*first, rest)
    };
    // Step 3.
    let mut f_n = old_size.checked_sub(1).ok_or(ProofError::SizeOrder)?;
    let mut s_n = new_size.checked_sub(1).ok_or(ProofError::SizeOrder)?;
    // Step 4.
    while f_n & 1 == 1 {
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 5.
    let mut fr = seed;
    let mut sr = seed;
    // Step 6.
    for c in path {
        if s_n == 0 {
            return Err(wrong_length);
        }
        if f_n & 1 == 1 || f_n == s_n {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            if f_n & 1 == 0 {
                while f_n & 1 == 0 && f_n != 0 {
                    f_n >>= 1;
                    s_n >>= 1;
                }
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f_n >>= 1;
        s_n >>= 1;
    }
    // Step 7.
    if s_n != 0 {
        return Err(wrong_length);
    }
    if fr != *old_root || sr != *new_root {
        return Err(ProofError::RootMismatch);
    }
    Ok(())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Decodes a hex string (test helper).
    fn hex(s: &str) -> Vec<u8> {
        assert!(s.len().is_multiple_of(2), "odd hex length");
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Decodes a 32-byte hex hash (test helper).
    fn h(s: &str) -> Hash {
        hex(s).try_into().unwrap()
    }

    // ---------------------------------------------------------------------
    // Reference vectors.
    //
    // The eight leaves and the roots / node hashes / proofs below are the
    // RFC 6962 reference test data used by Certificate Transparency, copied
    // from transparency-dev/merkle (testonly/constants.go and
    // proof/verify_test.go, formerly google/trillian merkle testdata). They
    // were re-checked with an independent implementation before being
    // written down here.
    // ---------------------------------------------------------------------

    const CT_LEAVES: [&str; 8] = [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ];

    /// Roots of the trees made of the first 1..=8 CT leaves.
    const CT_ROOTS: [&str; 8] = [
        "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
        "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
        "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
        "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
        "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
        "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
        "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
    ];

    /// Hashes of all complete subtrees of the 8-leaf CT tree, per level
    /// (transparency-dev/merkle testonly.NodeHashes).
    const CT_NODES: [&[&str]; 4] = [
        &[
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
            "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
        ],
        &[
            "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
        ],
        &[
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
        &["5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"],
    ];

    /// (0-based leaf index, tree size, proof) from
    /// transparency-dev/merkle proof/verify_test.go `inclusionProofs`
    /// (which lists 1-based leaf numbers).
    const CT_INCLUSION: [(u64, u64, &[&str]); 6] = [
        (0, 1, &[]),
        (
            0,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            5,
            8,
            &[
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            3,
            &["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"],
        ),
        (
            1,
            5,
            &[
                "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            7,
            8,
            &[
                // Not in verify_test.go: built from testonly.NodeHashes as
                // PATH(7, D[8]) = [leaf 6, node(1, 2), node(2, 0)].
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    /// (old size, new size, proof) from transparency-dev/merkle
    /// proof/verify_test.go `consistencyProofs`.
    const CT_CONSISTENCY: [(u64, u64, &[&str]); 5] = [
        (1, 1, &[]),
        (
            1,
            8,
            &[
                "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
            ],
        ),
        (
            6,
            8,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
        (
            2,
            5,
            &[
                "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
                "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            ],
        ),
        (
            6,
            7,
            &[
                "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
                "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
                "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
            ],
        ),
    ];

    // Real Certificate Transparency data: Google's Argon 2020 log, as stored
    // in golang.org/x/mod sumdb/tlog/testdata/argon2020 (get-sth,
    // get-entries?start=10000&end=10000, get-proof-by-hash and
    // get-sth-consistency?first=3654490 responses, used by ct_test.go),
    // converted from base64 to hex. Tree size 961984013, leaf 10000, old size
    // 3654490 with old root AuIZ5V6s...KBQ= (from ct_test.go).
    const ARGON_SIZE: u64 = 961_984_013;
    const ARGON_INDEX: u64 = 10_000;
    const ARGON_OLD_SIZE: u64 = 3_654_490;
    const ARGON_LEAF_HEX: &str = concat!(
        "00000000015e94f86a5300000005623082055e30820446a003020102021100ea1d1f365da96205cd",
        "8ca5fd2a2f8423300d06092a864886f70d01010b0500308190310b3009060355040613024742311b",
        "30190603550408131247726561746572204d616e636865737465723110300e060355040713075361",
        "6c666f7264311a3018060355040a1311434f4d4f444f204341204c696d6974656431363034060355",
        "0403132d434f4d4f444f2052534120446f6d61696e2056616c69646174696f6e2053656375726520",
        "536572766572204341301e170d3137303231353030303030305a170d323030343136323335393539",
        "5a305f3121301f060355040b1318446f6d61696e20436f6e74726f6c2056616c696461746564311d",
        "301b060355040b1314506f73697469766553534c2057696c6463617264311b301906035504030c12",
        "2a2e6c616e646c6f7264732e636f6d2e617530820122300d06092a864886f70d0101010500038201",
        "0f003082010a0282010100ad3c128a1e3e3376b1a50a38131f36f9831f490acf7b0f0bc1cfad1fd7",
        "8803b9f17685a59b3b1c89d1ade8a4032c6673abf079004550b0c5da86fcf4df00271bd1033b14e9",
        "73bf11aac5ab5a4d8882870be49227fc17d1a5270ebd1ee1e0ce1bac3dfd58b5f937a6cd4f442d78",
        "324cab4b89303eb93f2dee17764a91a51c3adb01b857a2246f3b0d3043a5d47f048146dfc9aa5d39",
        "c5711e3233bc1572e7a7c144a1b4e45af9c0dab701c6a4e6461974db0b8619a5aea01f0238a899b5",
        "b785bdd5e5b9497510b40437581efdbecca7b2e8ba89d450e85e8e88cdbccfa42f9a89f672e3b617",
        "fbf37553ae109f9c650e0ee638ff095df90d2476d4d532591e27f90203010001a38201e1308201dd",
        "301f0603551d2304183016801490af6a3a945a0bd890ea125673df43b43a28dae7301d0603551d0e",
        "0416041435048b8e4a33d3523e8aeba80b9960129d1a9e17300e0603551d0f0101ff0404030205a0",
        "300c0603551d130101ff04023000301d0603551d250416301406082b0601050507030106082b0601",
        "0505070302304f0603551d2004483046303a060b2b06010401b23101020207302b302906082b0601",
        "0505070201161d68747470733a2f2f7365637572652e636f6d6f646f2e636f6d2f43505330080606",
        "67810c01020130540603551d1f044d304b3049a047a0458643687474703a2f2f63726c2e636f6d6f",
        "646f63612e636f6d2f434f4d4f444f525341446f6d61696e56616c69646174696f6e536563757265",
        "53657276657243412e63726c30818506082b0601050507010104793077304f06082b060105050730",
        "028643687474703a2f2f6372742e636f6d6f646f63612e636f6d2f434f4d4f444f525341446f6d61",
        "696e56616c69646174696f6e53656375726553657276657243412e637274302406082b0601050507",
        "30018618687474703a2f2f6f6373702e636f6d6f646f63612e636f6d302f0603551d110428302682",
        "122a2e6c616e646c6f7264732e636f6d2e617582106c616e646c6f7264732e636f6d2e6175300d06",
        "092a864886f70d01010b050003820101000b21eac54ceb7b14e863bb4ebf8fa4c863cfd83dbb3f5b",
        "50a72cde025d5b3ce6e232134ad9bf6fbc12c35806aa9bc73460bd61f8305d2e85b37f7c45b08913",
        "0950a35894cd48d95c62d81193aa2bd6cee35ac7d7cd6aac9cf8cf3e64c8382c3b11f1fb6267b7a3",
        "13ecdd452c99284080fc0da2102d2fd1aa96a32228ceafd56537347b74d6312834fdb72d16ba29e3",
        "4ae801fa5872729332f6db72258605e31d37ae423ea547e4cdad05c9ba1c135d87bedb4aeba4f431",
        "7353e7ec0aa7bdf5a09a271143b81d21caf857af9e713bcb7cd39a2746587b91b9822b8001d4e6ec",
        "5e7ba64d387f883264d60aae3f3c9af6e4a2b88df1bea3716131b6b60ee9b9b64f0000",
    );
    const ARGON_ROOT_HEX: &str = "77096e79aa5d77b2da3849d7d96d96a7dbf65c4f8acde8c7450187c04c74a1a3";
    const ARGON_OLD_ROOT_HEX: &str = "02e219e55eac0d48f5be7dd8d4af39a0e690ef2f852492adc914e5d5e7482814";
    const ARGON_INCLUSION_HEX: [&str; 30] = [
        "4f8e80989b2e38cfe01621a5529f8824979ba7ed59e6aadab45356ed4d09c8e4",
        "f498f515ea1d9f8dae45811f7df915e0717f1083c5439668f48c24c5b436ba19",
        "0f9dffd6808d79b178279f471e08a8a2f299c6b9ab29c56e095872dc8ce0f029",
        "c121438064abb1744f03ed5cf161e80050ac59e52ff0d0f23ff43f4a0b325726",
        "e75ebf45cc2c81dc1dcc79f5f2fd5d247a819201546cd86608858e1a3b0c25a1",
        "9da4c56366a32c582b82ce57525fb32586679e5264b0b1ac035558c292dfa9b6",
        "98a051268eaa6a8fb429d87fae11a46546c7500c4c86bb6b725ad3a486cd8c88",
        "0a8e2e78e144ee5a627cb8a8f788abc71b2fd7014c31a2b7b4fbb665090796ba",
        "c91832f34d0ae89318082d39b167ea17692f0a0dab893fe954cfa711ae95e7ed",
        "9f63b7f172590bcfd6a5bc22f47860562ce55327941d566f632401d7ad3b3117",
        "828ded023b8d7cd4828fcef2d91835c4eae80e49c637579a7f7720bf339b7fb4",
        "f03d0c8f7fc9ef24929c56f469f207617bfaae53a11029ec79b63a5ca8b5211f",
        "eab71ecf8e9953c339bcf89654c0147c97c0395d293cffe6721fe56336618ff3",
        "dabb48797acfbd2754c8773999a220480541d81cda29aba95b14808956b20c4e",
        "9e7896fc830540f379c70f14b07167ec2452b586e6d602eeecd35aea4911a894",
        "9913cf8bbb104b6d8c76e204caf70dcc2345a88b7a90bc183e434aad5b4872ef",
        "26f4e2bf3112352f701c8f1aa61e5aeee89e566b52fe9f4f722319e43e86c8ea",
        "513c9077e626d30638cc6faa2bcd3a6c1391c22d42495bc543f2a49e7aa8663f",
        "857383aea37e7dff94eb33ea450f9940ab3a8a6d5f3dcc487ab0d27cdc1f9611",
        "208e8613e598fc3ae96737c7ced2f0911e3aa37ef356434b0b23d895febccc0d",
        "77ad3d91659c3419656c0f096ff69de170155469d270b466b4ff05632afe0dc9",
        "ae2901b0fd06d208a85d1a411440f60b341d48bac63ef45dd1b11c6c4670d6b2",
        "19720495f9a746e59f6c0e33eee6d5fd4c25a524546d479e73ba0be470c39e1d",
        "a51d121ff3583fab3dfbc6b35b069e51703865eff758222031f879616eb0bdc1",
        "7f71ae00a615ac5f11060decd798ef03f62f57da009625adccffe29b03e14150",
        "5879fccc3c65560915fa54a59b368e75f481ad31e846be674f777beaad0a2961",
        "7f6b95d99c558142f32cf2ae65ca30458dd963b7d1957e7d88306357547c90d4",
        "3734158c9b2f4306e2ed64ad32bf6816487d55b1df2bb2c1ea8ed6c00ab0353b",
        "0b42edb417981d91e02fed37d8921c242dc24c1232cdafe1b1b98952025f9832",
        "9e2c54e425931550e517804675c53a900ed6498bab1297bd8d159cf85ffbb0e7",
    ];
    const ARGON_CONSISTENCY_HEX: [&str; 30] = [
        "f3449f6e3e9440475549909222087d34c3e3def081cdc735038f01d9cac94968",
        "15972b8001d493a9cd3ef88966af2410aea3086d5dd7ca49385138e590dcd534",
        "43aeeb7965e63c1a3551f9b005aa785e2f4f30f7c5754492c3758695165d1bb9",
        "789ec2ca14783f1cc1c4322c5a0ad5616d5e1546fd9dd81fe3ab459a2a95af10",
        "42b0f0a74eb61ab9b9598f0a76b845b01bae3631b3468c7625bf0f9952f9398c",
        "5cce1832330474b1ff5c96a6fd95b268fd78937726b0eb673ec396439e255b5b",
        "48688187e8ce4c671c5d4e3c673810f3c9517019ad078c33e284839ddbf64138",
        "5804bab71a8d2d82862f519d05da6a995e364d37e7e9c26cb83b2a2d7b9308d2",
        "4059914b4ae2ad403b64dde5c458c39dc57e135382ae7dcd501e110a9fb97f37",
        "1dd6e9ec8b765c135998d0c1a4237f28f77bbdf56ac60cf03a8b2a54868403d1",
        "9b1bc72f46626e505d0fb8fba486b58e57c1d204aa7c9ea85f4506a3b2f456c5",
        "ab9863cafa16e932ff3d3860722b690dc493ae7297da9d7e6aab1ca87d9eb910",
        "8d33960eab772078f635515e7b3c81cf6a1fa6bbbeced132c2a29401f15c94a2",
        "188467d30dc7a8976f53d8f55950fffde47a964d80693563cb38ec24d3fc53cf",
        "c79d8626fc46f357e7401ae03936e5975039b73f79fcb5cad00835361074af52",
        "ebfd0eaab71381cde8e5d0f93f29a6a02f7a941f722cf16e4c756f2f2f1f4869",
        "19ffa228b7dc5cee65e091059ac66f49d1b9ab5b847963df60baddb3aa668f3d",
        "0c6b9a728f8c73233701f45217aa97ed1c127adc1eda2798266c70e5ef6b571d",
        "dad409f55df6867629f9f7693fa4dc8e680998b78d54e30a334325d6493870d5",
        "dcf6a92be224c89afc23dc8012b026cee65ecf32cccec83e3df7910a0356f0d4",
        "b3ac6261e7a36fec2da8703e511259d88fd208fc885bc7283fa681d341496cc6",
        "cfd952a6675372be4ce59cca95ce043e1dd2ad2ca9285764e89505fd471c6995",
        "19720495f9a746e59f6c0e33eee6d5fd4c25a524546d479e73ba0be470c39e1d",
        "a51d121ff3583fab3dfbc6b35b069e51703865eff758222031f879616eb0bdc1",
        "7f71ae00a615ac5f11060decd798ef03f62f57da009625adccffe29b03e14150",
        "5879fccc3c65560915fa54a59b368e75f481ad31e846be674f777beaad0a2961",
        "7f6b95d99c558142f32cf2ae65ca30458dd963b7d1957e7d88306357547c90d4",
        "3734158c9b2f4306e2ed64ad32bf6816487d55b1df2bb2c1ea8ed6c00ab0353b",
        "0b42edb417981d91e02fed37d8921c242dc24c1232cdafe1b1b98952025f9832",
        "9e2c54e425931550e517804675c53a900ed6498bab1297bd8d159cf85ffbb0e7",
    ];

    fn ct_leaf_data() -> Vec<Vec<u8>> {
        CT_LEAVES.iter().map(|s| hex(s)).collect()
    }

    fn tree_of(data: &[Vec<u8>]) -> MerkleTree {
        let mut tree = MerkleTree::new();
        for d in data {
            tree.push(leaf_hash(d));
        }
        tree
    }

    fn hashes(list: &[&str]) -> Vec<Hash> {
        list.iter().map(|s| h(s)).collect()
    }

    // ---------------------------------------------------------------------
    // Naive reference implementation, straight from the RFC 9162 §2.1 text
    // (MTH, PATH, PROOF/SUBPROOF), hashing with sha2 directly so that it
    // shares no code with the implementation under test.
    // ---------------------------------------------------------------------

    fn ref_k(n: usize) -> usize {
        let mut k = 1;
        while k * 2 < n {
            k *= 2;
        }
        k
    }

    fn ref_mth(d: &[Vec<u8>]) -> Hash {
        match d.len() {
            0 => Sha256::digest(b"").into(),
            1 => {
                let mut input = vec![0x00];
                input.extend_from_slice(&d[0]);
                Sha256::digest(&input).into()
            }
            n => {
                let k = ref_k(n);
                let mut input = vec![0x01];
                input.extend_from_slice(&ref_mth(&d[..k]));
                input.extend_from_slice(&ref_mth(&d[k..]));
                Sha256::digest(&input).into()
            }
        }
    }

    fn ref_path(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        let n = d.len();
        if n <= 1 {
            return Vec::new();
        }
        let k = ref_k(n);
        if m < k {
            let mut p = ref_path(m, &d[..k]);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_path(m - k, &d[k..]);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    fn ref_subproof(m: usize, d: &[Vec<u8>], b: bool) -> Vec<Hash> {
        let n = d.len();
        if m == n {
            return if b { Vec::new() } else { vec![ref_mth(d)] };
        }
        let k = ref_k(n);
        if m <= k {
            let mut p = ref_subproof(m, &d[..k], b);
            p.push(ref_mth(&d[k..]));
            p
        } else {
            let mut p = ref_subproof(m - k, &d[k..], false);
            p.push(ref_mth(&d[..k]));
            p
        }
    }

    fn ref_proof(m: usize, d: &[Vec<u8>]) -> Vec<Hash> {
        if m == 0 || m == d.len() {
            Vec::new()
        } else {
            ref_subproof(m, d, true)
        }
    }

    /// Distinct leaf data for synthetic trees.
    fn synthetic(n: usize) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("leaf {i}").into_bytes()).collect()
    }

    // ---------------------------------------------------------------------
    // Known-answer tests.
    // ---------------------------------------------------------------------

    #[test]
    fn hashing_known_answers() {
        // transparency-dev/merkle rfc6962/rfc6962_test.go.
        assert_eq!(
            empty_root(),
            h("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
        assert_eq!(
            leaf_hash(b""),
            h("6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d")
        );
        assert_eq!(
            leaf_hash(b"L123456"),
            h("395aa064aa4c29f7010acfe3f25db9485bbd4b91897b6ad7ad547639252b4d56")
        );
        // Level-1 node of the CT tree: node_hash(leaf 0, leaf 1).
        assert_eq!(
            node_hash(&h(CT_NODES[0][0]), &h(CT_NODES[0][1])),
            h(CT_NODES[1][0])
        );
        assert_ne!(empty_root(), leaf_hash(b""));
    }

    #[test]
    fn ct_roots_for_every_size() {
        let data = ct_leaf_data();
        let mut tree = MerkleTree::new();
        assert!(tree.is_empty());
        assert_eq!(tree.root(), empty_root());
        assert_eq!(tree.root_at(0), Some(empty_root()));
        for (i, d) in data.iter().enumerate() {
            tree.push(leaf_hash(d));
            assert_eq!(tree.len(), i as u64 + 1);
            assert_eq!(tree.root(), h(CT_ROOTS[i]), "root after {} leaves", i + 1);
        }
        for (i, root) in CT_ROOTS.iter().enumerate() {
            assert_eq!(tree.root_at(i as u64 + 1), Some(h(root)));
        }
        assert_eq!(tree.root_at(0), Some(empty_root()));
        assert_eq!(tree.root_at(9), None);
    }

    #[test]
    fn debug_output_is_short() {
        let tree = tree_of(&ct_leaf_data());
        assert_eq!(
            format!("{tree:?}"),
            format!("MerkleTree {{ len: 8, root: {}, .. }}", CT_ROOTS[7])
        );
    }

    #[test]
    fn ct_stored_complete_subtrees() {
        let tree = tree_of(&ct_leaf_data());
        assert_eq!(tree.levels.len(), CT_NODES.len());
        for (level, nodes) in CT_NODES.iter().enumerate() {
            assert_eq!(tree.levels[level], hashes(nodes), "level {level}");
        }
    }

    #[test]
    fn ct_inclusion_vectors() {
        let tree = tree_of(&ct_leaf_data());
        for (index, size, proof) in CT_INCLUSION {
            let proof = hashes(proof);
            assert_eq!(tree.inclusion_proof(index, size), Some(proof.clone()));
            let leaf = leaf_hash(&hex(CT_LEAVES[index as usize]));
            let root = h(CT_ROOTS[size as usize - 1]);
            assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
            assert_eq!(inclusion_proof_len(index, size), Some(proof.len()));
        }
    }

    #[test]
    fn ct_consistency_vectors() {
        let tree = tree_of(&ct_leaf_data());
        for (old, new, proof) in CT_CONSISTENCY {
            let proof = hashes(proof);
            assert_eq!(tree.consistency_proof(old, new), Some(proof.clone()));
            let old_root = h(CT_ROOTS[old as usize - 1]);
            let new_root = h(CT_ROOTS[new as usize - 1]);
            assert_eq!(verify_consistency(old, new, &old_root, &new_root, &proof), Ok(()));
            assert_eq!(consistency_proof_len(old, new), Some(proof.len()));
        }
    }

    #[test]
    fn argon2020_real_log_proofs() {
        let leaf = leaf_hash(&hex(ARGON_LEAF_HEX));
        let root = h(ARGON_ROOT_HEX);
        let old_root = h(ARGON_OLD_ROOT_HEX);
        let inclusion: Vec<Hash> = ARGON_INCLUSION_HEX.iter().map(|s| h(s)).collect();
        let consistency: Vec<Hash> = ARGON_CONSISTENCY_HEX.iter().map(|s| h(s)).collect();

        assert_eq!(
            verify_inclusion(ARGON_INDEX, ARGON_SIZE, &leaf, &inclusion, &root),
            Ok(())
        );
        assert_eq!(
            verify_consistency(ARGON_OLD_SIZE, ARGON_SIZE, &old_root, &root, &consistency),
            Ok(())
        );

        check_inclusion_mutations(ARGON_INDEX, ARGON_SIZE, &leaf, &inclusion, &root);
        check_consistency_mutations(ARGON_OLD_SIZE, ARGON_SIZE, &old_root, &root, &consistency);
        // Neighbouring positions and sizes must not verify with this data.
        for index in [ARGON_INDEX - 1, ARGON_INDEX + 1, ARGON_INDEX ^ 2] {
            assert!(verify_inclusion(index, ARGON_SIZE, &leaf, &inclusion, &root).is_err());
        }
        for size in [ARGON_SIZE * 2, ARGON_SIZE / 2] {
            assert!(verify_inclusion(ARGON_INDEX, size, &leaf, &inclusion, &root).is_err());
            assert!(verify_consistency(ARGON_OLD_SIZE, size, &old_root, &root, &consistency).is_err());
        }
        // Inherent to RFC 9162 (not a bug): a path far from the right edge of
        // the tree has the same shape for neighbouring tree sizes, so the same
        // proof and root also "verify" for size +/- 1. The size is only
        // meaningful together with the root it was signed with, which is why
        // callers must take both from the same verified checkpoint.
        for size in [ARGON_SIZE - 1, ARGON_SIZE + 1] {
            assert_eq!(
                verify_inclusion(ARGON_INDEX, size, &leaf, &inclusion, &root),
                Ok(())
            );
            assert_eq!(
                verify_consistency(ARGON_OLD_SIZE, size, &old_root, &root, &consistency),
                Ok(())
            );
        }
        for old in [ARGON_OLD_SIZE - 1, ARGON_OLD_SIZE + 1, ARGON_OLD_SIZE ^ 2] {
            assert!(verify_consistency(old, ARGON_SIZE, &old_root, &root, &consistency).is_err());
        }
    }

    /// Edge cases of transparency-dev/merkle proof/verify_test.go
    /// TestVerifyConsistency, adapted: that suite accepts any old root for
    /// old size 0, while this verifier insists on the empty-tree hash.
    #[test]
    fn consistency_trivial_cases() {
        let root1 = leaf_hash(b"don't care 1");
        let root2 = leaf_hash(b"don't care 2");
        let empty = empty_root();
        let some = [empty];

        // Sizes that are always consistent.
        assert_eq!(verify_consistency(0, 0, &empty, &empty, &[]), Ok(()));
        assert_eq!(verify_consistency(0, 1, &empty, &root2, &[]), Ok(()));
        assert_eq!(verify_consistency(0, u64::MAX, &empty, &root2, &[]), Ok(()));
        assert_eq!(verify_consistency(1, 1, &root2, &root2, &[]), Ok(()));
        assert_eq!(
            verify_consistency(u64::MAX, u64::MAX, &root2, &root2, &[]),
            Ok(())
        );

        // Roots that differ for equal sizes.
        assert_eq!(
            verify_consistency(1, 1, &root1, &root2, &[]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 0, &root1, &root1, &[]),
            Err(ProofError::RootMismatch)
        );
        assert_eq!(
            verify_consistency(0, 0, &empty, &root2, &[]),
            Err(ProofError::RootMismatch)
        );
        // The empty tree has exactly one root.
        assert_eq!(
            verify_consistency(0, 1, &root1, &root2, &[]),
            Err(ProofError::RootMismatch)
        );
        // Time travel to the past.
        assert_eq!(
            verify_consistency(1, 0, &root1, &root2, &[]),
            Err(ProofError::SizeOrder)
        );
        assert_eq!(
            verify_consistency(2, 1, &root1, &root2, &[]),
            Err(ProofError::SizeOrder)
        );
        // Empty proof for distinct non-empty sizes.
        assert_eq!(
            verify_consistency(1, 2, &root1, &root2, &[]),
            Err(ProofError::WrongProofLength {
                expected: 1,
                actual: 0
            })
        );
        // Matching roots but a non-empty proof.
        for (old, new) in [(0, 0), (0, 1), (1, 1)] {
            assert_eq!(
                verify_consistency(old, new, &empty, &empty, &some),
                Err(ProofError::WrongProofLength {
                    expected: 0,
                    actual: 1
                })
            );
        }
    }

    #[test]
    fn inclusion_trivial_cases() {
        let leaf = leaf_hash(b"data");
        // A one-leaf tree's root is its leaf hash and the proof is empty.
        assert_eq!(verify_inclusion(0, 1, &leaf, &[], &leaf), Ok(()));
        assert_eq!(
            verify_inclusion(0, 1, &leaf, &[], &empty_root()),
            Err(ProofError::RootMismatch)
        );
        for (index, size) in [(0, 0), (1, 0), (1, 1), (2, 1), (u64::MAX, u64::MAX)] {
            assert_eq!(
                verify_inclusion(index, size, &leaf, &[], &leaf),
                Err(ProofError::IndexOutOfRange)
            );
        }
        assert_eq!(
            verify_inclusion(0, 1, &leaf, &[leaf], &leaf),
            Err(ProofError::WrongProofLength {
                expected: 0,
                actual: 1
            })
        );
    }

    // ---------------------------------------------------------------------
    // Mutation checks shared by the tests below.
    // ---------------------------------------------------------------------

    fn flip(hash: &Hash, byte: usize, bit: u8) -> Hash {
        let mut out = *hash;
        out[byte % 32] ^= 1 << (bit % 8);
        out
    }

    /// Asserts that `proof` verifies and that every tampered variant fails.
    fn check_inclusion_mutations(index: u64, size: u64, leaf: &Hash, proof: &[Hash], root: &Hash) {
        assert_eq!(verify_inclusion(index, size, leaf, proof, root), Ok(()));
        let fails = |i: u64, s: u64, l: &Hash, p: &[Hash], r: &Hash| {
            assert!(
                verify_inclusion(i, s, l, p, r).is_err(),
                "tampered inclusion proof verified: index {i} size {s}"
            );
        };
        // Every single element changed, in a low and a high bit.
        for pos in 0..proof.len() {
            for (byte, bit) in [(0, 0), (31, 7), (pos, 3)] {
                let mut bad = proof.to_vec();
                bad[pos] = flip(&bad[pos], byte, bit);
                fails(index, size, leaf, &bad, root);
            }
        }
        // Truncated at either end.
        if let Some((_, tail)) = proof.split_first() {
            fails(index, size, leaf, tail, root);
        }
        if let Some((_, head)) = proof.split_last() {
            fails(index, size, leaf, head, root);
        }
        // Extended at either end, or with an element inserted.
        for extra in [[0u8; 32], *root, *leaf, empty_root()] {
            let mut longer = proof.to_vec();
            longer.push(extra);
            fails(index, size, leaf, &longer, root);
            let mut longer = vec![extra];
            longer.extend_from_slice(proof);
            fails(index, size, leaf, &longer, root);
            if proof.len() > 1 {
                let mut longer = proof.to_vec();
                longer.insert(1, extra);
                fails(index, size, leaf, &longer, root);
            }
        }
        // Elements swapped.
        if proof.len() > 1 && proof[0] != proof[1] {
            let mut swapped = proof.to_vec();
            swapped.swap(0, 1);
            fails(index, size, leaf, &swapped, root);
        }
        // Wrong leaf or root.
        fails(index, size, &flip(leaf, 0, 0), proof, root);
        fails(index, size, leaf, proof, &flip(root, 31, 0));
        fails(index, size, leaf, proof, &empty_root());
        // Wrong index, same tree (any other position of the same tree).
        for other in [index.wrapping_sub(1), index.wrapping_add(1), index ^ 2, index ^ 1] {
            if other != index {
                fails(other, size, leaf, proof, root);
            }
        }
        // Wrong size, same root (transparency-dev corruptInclusionProof).
        fails(index, size.saturating_mul(2), leaf, proof, root);
        if size / 2 != size {
            fails(index, size / 2, leaf, proof, root);
        }
    }

    /// Asserts that `proof` verifies and that every tampered variant fails.
    fn check_consistency_mutations(old: u64, new: u64, old_root: &Hash, new_root: &Hash, proof: &[Hash]) {
        assert_eq!(verify_consistency(old, new, old_root, new_root, proof), Ok(()));
        let fails = |o: u64, n: u64, r1: &Hash, r2: &Hash, p: &[Hash]| {
            assert!(
                verify_consistency(o, n, r1, r2, p).is_err(),
                "tampered consistency proof verified: old {o} new {n}"
            );
        };
        for pos in 0..proof.len() {
            for (byte, bit) in [(0, 0), (31, 7), (pos, 4)] {
                let mut bad = proof.to_vec();
                bad[pos] = flip(&bad[pos], byte, bit);
                fails(old, new, old_root, new_root, &bad);
            }
        }
        fails(old, new, old_root, new_root, &[]);
        if let Some((_, tail)) = proof.split_first() {
            fails(old, new, old_root, new_root, tail);
        }
        if let Some((_, head)) = proof.split_last() {
            fails(old, new, old_root, new_root, head);
        }
        let mut extras = vec![[0u8; 32], *old_root, *new_root, empty_root()];
        extras.extend(proof.first().copied());
        for extra in extras {
            let mut longer = proof.to_vec();
            longer.push(extra);
            fails(old, new, old_root, new_root, &longer);
            let mut longer = vec![extra];
            longer.extend_from_slice(proof);
            fails(old, new, old_root, new_root, &longer);
        }
        if proof.len() > 1 && proof[0] != proof[1] {
            let mut swapped = proof.to_vec();
            swapped.swap(0, 1);
            fails(old, new, old_root, new_root, &swapped);
        }
        // Wrong or swapped roots.
        fails(old, new, &flip(old_root, 0, 0), new_root, proof);
        fails(old, new, old_root, &flip(new_root, 0, 0), proof);
        fails(old, new, new_root, old_root, proof);
        // Swapped sizes.
        assert_eq!(
            verify_consistency(new, old, old_root, new_root, proof),
            Err(ProofError::SizeOrder)
        );
        // Wrong sizes, same roots (transparency-dev corruptConsistencyProof).
        for o in [old.wrapping_sub(1), old.wrapping_add(1), old ^ 2] {
            if o != old && o != 0 {
                fails(o, new, old_root, new_root, proof);
            }
        }
        fails(old, new.saturating_mul(2), old_root, new_root, proof);
        if new / 2 != new {
            fails(old, new / 2, old_root, new_root, proof);
        }
    }

    // ---------------------------------------------------------------------
    // Exhaustive checks on small trees against the reference.
    // ---------------------------------------------------------------------

    const SMALL: usize = 40;

    #[test]
    fn small_trees_match_reference_exhaustively() {
        let data = synthetic(SMALL);
        let mut tree = MerkleTree::new();
        for n in 0..=SMALL {
            assert_eq!(tree.root(), ref_mth(&data[..n]), "root of {n}");
            if n < SMALL {
                tree.push(leaf_hash(&data[n]));
            }
        }
        for n in 0..=SMALL {
            assert_eq!(tree.root_at(n as u64), Some(ref_mth(&data[..n])));
            for m in 0..n {
                assert_eq!(
                    tree.inclusion_proof(m as u64, n as u64),
                    Some(ref_path(m, &data[..n])),
                    "PATH({m}, D[{n}])"
                );
                assert_eq!(
                    inclusion_proof_len(m as u64, n as u64),
                    Some(ref_path(m, &data[..n]).len())
                );
            }
            assert_eq!(tree.inclusion_proof(n as u64, n as u64), None);
            for m in 0..=n {
                assert_eq!(
                    tree.consistency_proof(m as u64, n as u64),
                    Some(ref_proof(m, &data[..n])),
                    "PROOF({m}, D[{n}])"
                );
                assert_eq!(
                    consistency_proof_len(m as u64, n as u64),
                    Some(ref_proof(m, &data[..n]).len())
                );
            }
            assert_eq!(tree.consistency_proof(n as u64 + 1, n as u64), None);
        }
        assert_eq!(tree.root_at(SMALL as u64 + 1), None);
        assert_eq!(tree.inclusion_proof(0, SMALL as u64 + 1), None);
        assert_eq!(tree.consistency_proof(1, SMALL as u64 + 1), None);
    }

    #[test]
    fn small_inclusion_proofs_resist_tampering() {
        let data = synthetic(SMALL);
        let tree = tree_of(&data);
        let roots: Vec<Hash> = (0..=SMALL).map(|n| ref_mth(&data[..n])).collect();
        for n in 1..=33usize {
            for i in 0..n {
                let (index, size) = (i as u64, n as u64);
                let leaf = leaf_hash(&data[i]);
                let proof = tree.inclusion_proof(index, size).unwrap();
                check_inclusion_mutations(index, size, &leaf, &proof, &roots[n]);
                // Every other index of the same tree.
                for other in 0..n {
                    if other != i {
                        assert!(verify_inclusion(other as u64, size, &leaf, &proof, &roots[n]).is_err());
                    }
                }
                // Every other size, each with its own true root: only passes
                // where the proof really is the proof for that size.
                for other in 1..=SMALL {
                    if other == n {
                        continue;
                    }
                    let result = verify_inclusion(index, other as u64, &leaf, &proof, &roots[other]);
                    if i >= other {
                        assert_eq!(result, Err(ProofError::IndexOutOfRange));
                    } else if ref_path(i, &data[..other]) != proof {
                        assert!(result.is_err(), "index {i}: size {n} proof passed as {other}");
                    }
                }
            }
        }
    }

    #[test]
    fn small_consistency_proofs_resist_tampering() {
        let data = synthetic(SMALL);
        let tree = tree_of(&data);
        let roots: Vec<Hash> = (0..=SMALL).map(|n| ref_mth(&data[..n])).collect();
        for n in 2..=33usize {
            for m in 1..n {
                let (old, new) = (m as u64, n as u64);
                let proof = tree.consistency_proof(old, new).unwrap();
                check_consistency_mutations(old, new, &roots[m], &roots[n], &proof);
                // Other old sizes with their true roots.
                for other in 1..=n {
                    if other != m && ref_proof(other, &data[..n]) != proof {
                        assert!(
                            verify_consistency(other as u64, new, &roots[other], &roots[n], &proof).is_err(),
                            "PROOF({m}, {n}) passed as old size {other}"
                        );
                    }
                }
                // Other new sizes with their true roots.
                for other in m..=SMALL {
                    if other != n && ref_proof(m, &data[..other]) != proof {
                        assert!(
                            verify_consistency(old, other as u64, &roots[m], &roots[other], &proof).is_err(),
                            "PROOF({m}, {n}) passed as new size {other}"
                        );
                    }
                }
            }
        }
    }

    // ---------------------------------------------------------------------
    // Huge and hostile sizes.
    // ---------------------------------------------------------------------

    #[test]
    fn huge_sizes_and_indexes_never_panic() {
        let tree = tree_of(&synthetic(5));
        let big = [u64::MAX, u64::MAX - 1, 1 << 63, (1 << 63) + 1, (1 << 63) - 1];
        for &a in &big {
            assert_eq!(tree.root_at(a), None);
            assert_eq!(tree.inclusion_proof(0, a), None);
            assert_eq!(tree.inclusion_proof(a, a), None);
            assert_eq!(tree.inclusion_proof(a, 5), None);
            assert_eq!(tree.consistency_proof(1, a), None);
            assert_eq!(tree.consistency_proof(a, a), None);
            assert_eq!(tree.consistency_proof(a, 5), None);
        }
        let leaf = leaf_hash(b"x");
        let junk: Vec<Hash> = (0u8..70).map(|i| leaf_hash(&[i])).collect();
        for &a in &big {
            for &b in &big {
                for len in [0, 1, 63, 64, 65, 70] {
                    let proof = &junk[..len];
                    assert!(verify_inclusion(a, b, &leaf, proof, &leaf).is_err());
                    assert!(verify_inclusion(b.saturating_sub(1), b, &leaf, proof, &leaf).is_err());
                    assert!(verify_inclusion(0, b, &leaf, proof, &leaf).is_err());
                    let _ = verify_consistency(a, b, &leaf, &leaf, proof);
                    assert!(verify_consistency(1, b, &leaf, &leaf, proof).is_err());
                    assert!(verify_consistency(b - 1, b, &leaf, &leaf, proof).is_err());
                }
            }
        }
        // Lengths for the largest trees are still computed.
        assert_eq!(inclusion_proof_len(0, u64::MAX), Some(64));
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), Some(63));
        assert_eq!(inclusion_proof_len(1 << 63, (1 << 63) + 1), Some(1));
        assert_eq!(inclusion_proof_len(u64::MAX, u64::MAX), None);
        assert_eq!(inclusion_proof_len(0, 1 << 63), Some(63));
        assert_eq!(consistency_proof_len(u64::MAX, u64::MAX), Some(0));
        assert_eq!(consistency_proof_len(u64::MAX, u64::MAX - 1), None);
        assert!(consistency_proof_len(1, u64::MAX).is_some());
        assert!(consistency_proof_len(u64::MAX - 1, u64::MAX).is_some());
        assert_eq!(split_point(0), None);
        assert_eq!(split_point(1), None);
        assert_eq!(split_point(2), Some(1));
        assert_eq!(split_point(u64::MAX), Some(1 << 63));
        assert_eq!(split_point(1 << 63), Some(1 << 62));
    }

    #[test]
    fn range_hash_rejects_misaligned_or_missing_ranges() {
        let tree = tree_of(&synthetic(8));
        assert_eq!(tree.range_hash(0, 0), None);
        assert_eq!(tree.range_hash(1, 2), None);
        assert_eq!(tree.range_hash(2, 3), None);
        assert_eq!(tree.range_hash(4, 8), None);
        assert_eq!(tree.range_hash(u64::MAX, 1), None);
        assert_eq!(tree.range_hash(0, u64::MAX), None);
        assert_eq!(tree.range_hash(1 << 63, 1 << 63), None);
        assert_eq!(tree.range_hash(4, 3), Some(ref_mth(&synthetic(8)[4..7])));
    }

    #[test]
    fn larger_tree_proofs_verify() {
        // 2^17 + 3 leaves: proofs are produced from stored subtrees in
        // O(log n) and verify against the incremental roots.
        let n: u64 = (1 << 17) + 3;
        let mut tree = MerkleTree::new();
        let mut roots = Vec::new();
        for i in 0..n {
            tree.push(leaf_hash(&i.to_be_bytes()));
            if i % 9_973 == 0 || i + 1 == n {
                roots.push((i + 1, tree.root()));
            }
        }
        assert_eq!(tree.len(), n);
        for &(size, root) in &roots {
            assert_eq!(tree.root_at(size), Some(root));
            for index in [0, size / 3, size - 1] {
                let proof = tree.inclusion_proof(index, size).unwrap();
                let leaf = leaf_hash(&index.to_be_bytes());
                assert_eq!(verify_inclusion(index, size, &leaf, &proof, &root), Ok(()));
            }
            for &(old, old_root) in &roots {
                if old <= size {
                    let proof = tree.consistency_proof(old, size).unwrap();
                    assert_eq!(verify_consistency(old, size, &old_root, &root, &proof), Ok(()));
                }
            }
        }
    }

    // ---------------------------------------------------------------------
    // Property tests against the reference, sizes up to 300.
    // ---------------------------------------------------------------------

    fn leaves_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
        prop::collection::vec(prop::collection::vec(any::<u8>(), 0..6), 1..=300)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        #[test]
        fn prop_roots_match_reference(data in leaves_strategy(), pick in any::<prop::sample::Index>()) {
            let tree = tree_of(&data);
            prop_assert_eq!(tree.root(), ref_mth(&data));
            let size = pick.index(data.len() + 1);
            prop_assert_eq!(tree.root_at(size as u64), Some(ref_mth(&data[..size])));
        }

        #[test]
        fn prop_inclusion_matches_reference(
            data in leaves_strategy(),
            size_pick in any::<prop::sample::Index>(),
            index_pick in any::<prop::sample::Index>(),
            byte in any::<usize>(),
            bit in any::<u8>(),
            elem_pick in any::<prop::sample::Index>(),
        ) {
            let tree = tree_of(&data);
            let size = size_pick.index(data.len()) + 1;
            let index = index_pick.index(size);
            let proof = tree.inclusion_proof(index as u64, size as u64).unwrap();
            prop_assert_eq!(&proof, &ref_path(index, &data[..size]));
            let root = ref_mth(&data[..size]);
            let leaf = leaf_hash(&data[index]);
            prop_assert_eq!(verify_inclusion(index as u64, size as u64, &leaf, &proof, &root), Ok(()));
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let pos = elem_pick.index(bad.len());
                bad[pos] = flip(&bad[pos], byte, bit);
                prop_assert_eq!(
                    verify_inclusion(index as u64, size as u64, &leaf, &bad, &root),
                    Err(ProofError::RootMismatch)
                );
            }
        }

        #[test]
        fn prop_consistency_matches_reference(
            data in leaves_strategy(),
            new_pick in any::<prop::sample::Index>(),
            old_pick in any::<prop::sample::Index>(),
            byte in any::<usize>(),
            bit in any::<u8>(),
            elem_pick in any::<prop::sample::Index>(),
        ) {
            let tree = tree_of(&data);
            let new = new_pick.index(data.len() + 1);
            let old = old_pick.index(new + 1);
            let proof = tree.consistency_proof(old as u64, new as u64).unwrap();
            prop_assert_eq!(&proof, &ref_proof(old, &data[..new]));
            let old_root = ref_mth(&data[..old]);
            let new_root = ref_mth(&data[..new]);
            prop_assert_eq!(
                verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof),
                Ok(())
            );
            if !proof.is_empty() {
                let mut bad = proof.clone();
                let pos = elem_pick.index(bad.len());
                bad[pos] = flip(&bad[pos], byte, bit);
                prop_assert_eq!(
                    verify_consistency(old as u64, new as u64, &old_root, &new_root, &bad),
                    Err(ProofError::RootMismatch)
                );
                prop_assert!(
                    verify_consistency(old as u64, new as u64, &old_root, &new_root, &proof[1..]).is_err()
                );
            }
        }

        #[test]
        fn prop_verifiers_never_panic(
            index in any::<u64>(),
            size in any::<u64>(),
            proof in prop::collection::vec(any::<[u8; 32]>(), 0..70),
            a in any::<[u8; 32]>(),
            b in any::<[u8; 32]>(),
        ) {
            let _ = verify_inclusion(index, size, &a, &proof, &b);
            let _ = verify_inclusion(index % size.max(1), size, &a, &proof, &b);
            let _ = verify_consistency(index, size, &a, &b, &proof);
            let _ = verify_consistency(index.min(size), size, &a, &b, &proof);
        }
    }
}
