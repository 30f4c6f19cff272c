//! Signed checkpoints and Merkle proofs: checking the ledger from outside.
//!
//! Besides being a hash chain, the log is a Merkle tree hashed exactly as RFC 9162
//! section 2.1 says (leaf = SHA-256(0x00 || stored entry bytes), node =
//! SHA-256(0x01 || left || right)). The ledger signs **checkpoints** of that tree in the
//! C2SP tlog-checkpoint / signed-note text format:
//!
//! ```text
//! consent-ledger/<ledger id in hex>
//! <tree size>
//! <base64 root hash>
//! [revoked <base64 public key> <first untrusted position>]...
//!
//! — consent-ledger/<ledger id in hex> <base64 key id and Ed25519 signature>
//! ```
//!
//! The `revoked` extension lines (one per key the first `<tree size>` entries revoke,
//! with the earliest position it was revoked from, sorted by the base64 key; none for a
//! ledger that never revoked a key, whose checkpoints are then exactly the three lines)
//! tell a verifier which signatures the ledger no longer vouches for: a receipt for an
//! entry signed by a listed key at or after its position is refused
//! ([`AuditError::RevokedSigner`]). They are covered by the signature like the rest of
//! the text; any other extension line is refused.
//!
//! An **inclusion proof** shows that an entry is in the tree of a checkpoint; a
//! **consistency proof** shows that the tree of an older checkpoint is a prefix of a
//! newer one, i.e. nothing was rewritten, removed or forked in between. Both are checked
//! with nothing but the ledger's public key. Entries carry a random salt, so the sibling
//! hashes in a proof reveal nothing about other people's entries.

use std::collections::BTreeMap;

use crate::entry;
use crate::merkle::{self, ProofError};
use crate::note::{self, Checkpoint, NoteError};
use crate::signing::VerifyingKey;

/// Why a checkpoint, proof or receipt does not show what it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The checkpoint note is malformed or its signature does not verify.
    #[error("checkpoint rejected: {0}")]
    Checkpoint(#[from] NoteError),
    /// A Merkle proof does not lead to the checkpoint's root.
    #[error("proof rejected: {0}")]
    Proof(#[from] ProofError),
    /// A document (receipt, proof) is not well formed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Two things that must agree do not (named in the message).
    #[error("{0}")]
    Mismatch(&'static str),
    /// The receipt format version is not one this library reads.
    #[error("receipt version {0} is not supported")]
    UnsupportedVersion(u64),
    /// The entry was signed by a key that the checkpoint lists as revoked from a
    /// position at or before the entry's: the ledger no longer vouches for it.
    #[error("the entry's signer was revoked from position {revoked_from}, at or before the entry")]
    RevokedSigner {
        /// The position the signer's key was revoked from.
        revoked_from: u64,
    },
}

/// Most `revoked` lines a checkpoint may carry (and keys a ledger may revoke), so that
/// a hostile checkpoint cannot make a verifier do unbounded work.
pub const MAX_REVOCATIONS: usize = 1024;

/// The start of a revocation extension line.
const REVOKED_PREFIX: &str = "revoked ";

/// A key the ledger revoked, as a checkpoint lists it: entries it signed at or after
/// `from` are not vouched for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Revocation {
    /// The revoked Ed25519 public key.
    pub key: [u8; 32],
    /// The earliest position the key was revoked from.
    pub from: u64,
}

/// The revocations in force, in canonical order: one per key, with its earliest
/// position, sorted by the base64 text of the key (which is what the lines are
/// compared by). Returns each with its base64 key.
fn canonical(revocations: impl IntoIterator<Item = Revocation>) -> BTreeMap<String, Revocation> {
    let mut out: BTreeMap<String, Revocation> = BTreeMap::new();
    for r in revocations {
        out.entry(note::base64_encode(&r.key))
            .and_modify(|held| held.from = held.from.min(r.from))
            .or_insert(r);
    }
    out
}

/// The extension line of a revocation: `revoked <base64 key> <from>`.
pub(crate) fn revocation_line(r: &Revocation) -> String {
    format!("{REVOKED_PREFIX}{} {}", note::base64_encode(&r.key), r.from)
}

/// The revocations in force in the tree of the first `size` entries, from the
/// revocation entries of the log (key, position revoked from, position of the
/// revocation entry), in canonical order.
pub(crate) fn in_force(revoked: &[([u8; 32], u64, u64)], size: u64) -> Vec<Revocation> {
    canonical(
        revoked
            .iter()
            .filter(|(.., at)| *at < size)
            .map(|(key, from, _)| Revocation {
                key: *key,
                from: *from,
            }),
    )
    .into_values()
    .collect()
}

/// Parses the extension lines of a checkpoint of `size` entries: each must be
/// `revoked <base64 key> <decimal position>` (canonical base64 of 32 bytes, canonical
/// decimal below `size`), at most [`MAX_REVOCATIONS`] of them, in strictly ascending
/// order of the key text (so each key once).
fn parse_revocations(lines: &[String], size: u64) -> Result<Vec<Revocation>, AuditError> {
    if lines.len() > MAX_REVOCATIONS {
        return Err(AuditError::Malformed("checkpoint: too many revocation lines"));
    }
    let malformed = AuditError::Malformed("checkpoint extension line");
    let mut out = Vec::with_capacity(lines.len());
    let mut previous: Option<&str> = None;
    for line in lines {
        let (key_text, from_text) = line
            .strip_prefix(REVOKED_PREFIX)
            .and_then(|rest| rest.split_once(' '))
            .ok_or_else(|| malformed.clone())?;
        let key: [u8; 32] = note::base64_decode(key_text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| malformed.clone())?;
        let from = note::parse_decimal_u64(from_text)
            .filter(|from| *from < size)
            .ok_or_else(|| malformed.clone())?;
        if previous.is_some_and(|p| p >= key_text) {
            return Err(AuditError::Malformed(
                "checkpoint: revocation lines out of order or repeated",
            ));
        }
        previous = Some(key_text);
        out.push(Revocation { key, from });
    }
    Ok(out)
}

/// A checkpoint whose signature has been verified: the tree size and root the ledger
/// committed to. Obtained from [`SignedCheckpoint::verify`] or from the ledger.
///
/// Two checkpoints are equal (`==`) when they commit to the same head: the same origin,
/// size, root and `revoked` lines. The note's signature lines are not compared, so a
/// copy that a witness cosigned equals the ledger's own, and so does the same head
/// signed by another key of the ledger (each was verified under the key it was given);
/// compare [`text`] to tell them apart.
///
/// [`text`]: SignedCheckpoint::text
#[derive(Debug, Clone)]
pub struct SignedCheckpoint {
    text: String,
    origin: String,
    size: u64,
    root: [u8; 32],
    revocations: Vec<Revocation>,
}

impl PartialEq for SignedCheckpoint {
    fn eq(&self, other: &Self) -> bool {
        // `text` is left out on purpose (see the type's docs); the body's text is
        // determined by these fields, since only canonical forms are accepted.
        self.origin == other.origin
            && self.size == other.size
            && self.root == other.root
            && self.revocations == other.revocations
    }
}

impl Eq for SignedCheckpoint {}

/// Whether `origin` has the shape [`origin_of`] gives: `consent-ledger/` and 32
/// lower-case hex digits (docs/format.md). Another shape is no ledger's.
fn is_ledger_origin(origin: &str) -> bool {
    origin.strip_prefix("consent-ledger/").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// The origin line of a ledger's checkpoints.
pub(crate) fn origin_of(ledger_id: &[u8; 16]) -> String {
    let hex: String = ledger_id.iter().map(|b| format!("{b:02x}")).collect();
    format!("consent-ledger/{hex}")
}

impl SignedCheckpoint {
    /// Signs a checkpoint of `size` entries with tree root `root` and one `revoked`
    /// line per key of `revocations` (put in canonical form here).
    pub(crate) fn sign(
        ledger_id: &[u8; 16],
        size: u64,
        root: [u8; 32],
        revocations: &[Revocation],
        key: &ed25519_dalek::SigningKey,
    ) -> Result<Self, AuditError> {
        let origin = origin_of(ledger_id);
        let canonical = canonical(revocations.iter().copied());
        if canonical.len() > MAX_REVOCATIONS {
            return Err(AuditError::Malformed("checkpoint: too many revocation lines"));
        }
        if canonical.values().any(|r| r.from >= size) {
            return Err(AuditError::Malformed("checkpoint extension line"));
        }
        let cp = Checkpoint {
            origin: origin.clone(),
            size,
            root,
            extensions: canonical.values().map(revocation_line).collect(),
        };
        cp.validate()?;
        let text = note::sign_note(&cp.body(), &origin, key)?;
        Ok(SignedCheckpoint {
            text,
            origin,
            size,
            root,
            revocations: canonical.into_values().collect(),
        })
    }

    /// Parses a signed checkpoint and verifies its signature under `key`.
    ///
    /// `key` must be the ledger's current public key: after a rotation, a checkpoint
    /// signed by an older key proves nothing (that key may have been stolen).
    ///
    /// # Errors
    /// [`AuditError::Checkpoint`] when it is malformed or not signed by `key`;
    /// [`AuditError::Mismatch`] when its origin is not a consent-ledger origin, or when
    /// it lists `key` itself as revoked; [`AuditError::Malformed`] when its body names
    /// another origin, or has an extension line other than a well-formed `revoked` line
    /// (canonical base64 of a 32-byte key, a canonical decimal position below the tree
    /// size), more than [`MAX_REVOCATIONS`] of them, or not in strictly ascending order
    /// of the key.
    pub fn verify(text: &str, key: &VerifyingKey) -> Result<Self, AuditError> {
        let origin = text.split('\n').next().unwrap_or_default();
        if !is_ledger_origin(origin) {
            return Err(AuditError::Mismatch("checkpoint origin is not a consent ledger"));
        }
        let body = note::open_note(text, origin, key.inner())?;
        let cp = Checkpoint::parse_body(&body)?;
        if cp.origin != origin {
            return Err(AuditError::Malformed("checkpoint"));
        }
        let revocations = parse_revocations(&cp.extensions, cp.size)?;
        if revocations.iter().any(|r| r.key == key.to_bytes()) {
            return Err(AuditError::Mismatch(
                "checkpoint is signed by a key it lists as revoked",
            ));
        }
        Ok(SignedCheckpoint {
            text: text.to_owned(),
            origin: cp.origin,
            size: cp.size,
            root: cp.root,
            revocations,
        })
    }

    /// The signed note text, to store or hand out.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The origin line: `consent-ledger/<ledger id in hex>`.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of entries the checkpoint covers.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The Merkle root of those entries.
    pub fn root(&self) -> [u8; 32] {
        self.root
    }

    /// The keys the ledger revoked in those entries, each with the earliest position it
    /// was revoked from, in the order of the checkpoint's `revoked` lines. Empty for a
    /// ledger that never revoked a key.
    pub fn revocations(&self) -> &[Revocation] {
        &self.revocations
    }

    /// The position from which `key` is revoked, if the checkpoint lists it: entries it
    /// signed there or later are not vouched for.
    pub fn revoked_from(&self, key: &VerifyingKey) -> Option<u64> {
        self.revoked_from_bytes(&key.to_bytes())
    }

    /// [`SignedCheckpoint::revoked_from`] for a key given as bytes.
    pub(crate) fn revoked_from_bytes(&self, key: &[u8; 32]) -> Option<u64> {
        self.revocations.iter().find(|r| r.key == *key).map(|r| r.from)
    }
}

/// Proof that entry `index` is in the tree of `tree_size` entries (RFC 9162 §2.1.3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct InclusionProof {
    /// The entry's position.
    pub index: u64,
    /// The tree size the proof is for.
    pub tree_size: u64,
    /// The sibling hashes, leaf to root.
    pub hashes: Vec<[u8; 32]>,
}

/// Proof that the tree of `old_size` entries is a prefix of the tree of `new_size`
/// entries (RFC 9162 §2.1.4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub old_size: u64,
    /// The newer tree size.
    pub new_size: u64,
    /// The proof hashes.
    pub hashes: Vec<[u8; 32]>,
}

/// Checks that the stored entry `entry_bytes` is entry `proof.index` of the tree the
/// checkpoint commits to.
///
/// # Errors
/// [`AuditError::Mismatch`] when the proof is for another tree size, and
/// [`AuditError::Proof`] when it does not lead to the checkpoint's root.
pub fn verify_inclusion(
    entry_bytes: &[u8],
    proof: &InclusionProof,
    checkpoint: &SignedCheckpoint,
) -> Result<(), AuditError> {
    if proof.tree_size != checkpoint.size {
        return Err(AuditError::Mismatch(
            "inclusion proof is for another tree size than the checkpoint",
        ));
    }
    let leaf = merkle::leaf_hash(entry_bytes);
    merkle::verify_inclusion(
        proof.index,
        proof.tree_size,
        &leaf,
        &proof.hashes,
        &checkpoint.root,
    )?;
    Ok(())
}

/// Checks that the older checkpoint's tree is a prefix of the newer one's: the log was
/// only appended to in between, never rolled back, rewritten or forked; and that the
/// newer one still lists every revocation the older one lists, from the same position
/// or an earlier one (a revocation is an entry of the log, so it cannot go away).
///
/// Both must have been verified under the ledger's current key.
///
/// # Errors
/// [`AuditError::Mismatch`] when the proof's sizes are not the checkpoints' or the
/// origins differ, or when the newer checkpoint drops or narrows a revocation; and
/// [`AuditError::Proof`] when the proof fails.
pub fn verify_consistency(
    older: &SignedCheckpoint,
    newer: &SignedCheckpoint,
    proof: &ConsistencyProof,
) -> Result<(), AuditError> {
    if older.origin != newer.origin {
        return Err(AuditError::Mismatch("checkpoints come from different ledgers"));
    }
    if proof.old_size != older.size || proof.new_size != newer.size {
        return Err(AuditError::Mismatch(
            "consistency proof is for other tree sizes than the checkpoints",
        ));
    }
    merkle::verify_consistency(older.size, newer.size, &older.root, &newer.root, &proof.hashes)?;
    if older
        .revocations
        .iter()
        .any(|r| newer.revoked_from_bytes(&r.key).is_none_or(|from| from > r.from))
    {
        return Err(AuditError::Mismatch(
            "the newer checkpoint drops or narrows a revocation the older one lists",
        ));
    }
    Ok(())
}

/// Decodes stored entry bytes for a receipt check: the entry and whether its
/// signature verifies under `signer`.
pub(crate) fn decode_signed(bytes: &[u8], signer: &VerifyingKey) -> Result<entry::Entry, AuditError> {
    let stored = entry::decode(bytes).map_err(|_| AuditError::Malformed("entry"))?;
    let signed = entry::signed_part(bytes, &stored);
    if !signer.verify_entry(signed, &stored.signature) {
        return Err(AuditError::Mismatch(
            "entry signature does not verify under the entry signer's key",
        ));
    }
    Ok(stored.entry)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn key() -> ed25519_dalek::SigningKey {
        ed25519_dalek::SigningKey::from_bytes(&[0x42; 32])
    }

    fn public(seed: u8) -> [u8; 32] {
        ed25519_dalek::SigningKey::from_bytes(&[seed; 32])
            .verifying_key()
            .to_bytes()
    }

    /// Only a ledger's origin shape is accepted (`consent-ledger/` and 32 lower-case hex
    /// digits), even in a note signed by the key: the prefix alone passed before.
    #[test]
    fn an_origin_of_another_shape_is_refused() {
        let k = key();
        let vk = VerifyingKey::from_bytes(&k.verifying_key().to_bytes()).unwrap();
        let good = SignedCheckpoint::sign(&[0xab; 16], 3, [7; 32], &[], &k).unwrap();
        assert_eq!(SignedCheckpoint::verify(good.text(), &vk).unwrap(), good);
        let hex = "ab".repeat(16);
        for origin in [
            format!("consent-ledger/{}", hex.to_uppercase()),
            format!("consent-ledger/{hex}0"),
            format!("consent-ledger/{}", &hex[1..]),
            "consent-ledger/acme".to_owned(),
            "consent-ledger/".to_owned(),
            format!("consent-ledger/{}g", &hex[1..]),
        ] {
            let body = Checkpoint {
                origin: origin.clone(),
                size: 3,
                root: [7; 32],
                extensions: Vec::new(),
            }
            .body();
            let text = note::sign_note(&body, &origin, &k).unwrap();
            assert_eq!(
                SignedCheckpoint::verify(&text, &vk),
                Err(AuditError::Mismatch("checkpoint origin is not a consent ledger")),
                "{origin}"
            );
        }
    }

    /// A copy cosigned by a witness (one more signature line) commits to the same head
    /// and so is equal; a checkpoint of another size, root or revocation is not.
    #[test]
    fn equality_is_of_the_head_not_of_the_signature_lines() {
        let k = key();
        let vk = VerifyingKey::from_bytes(&k.verifying_key().to_bytes()).unwrap();
        let cp = SignedCheckpoint::sign(&[1; 16], 3, [7; 32], &[], &k).unwrap();
        let body = cp.text().split("\n\n").next().unwrap().to_owned() + "\n";
        let witness = ed25519_dalek::SigningKey::from_bytes(&[0x17; 32]);
        let by_witness = note::sign_note(&body, "witness.example", &witness).unwrap();
        let line = by_witness.rsplit("\n\n").next().unwrap();
        let cosigned_text = format!("{}{line}", cp.text());
        let cosigned = SignedCheckpoint::verify(&cosigned_text, &vk).unwrap();
        assert_ne!(cosigned.text(), cp.text());
        assert_eq!(cosigned, cp);

        let revoked = [Revocation {
            key: public(9),
            from: 1,
        }];
        for other in [
            SignedCheckpoint::sign(&[1; 16], 4, [7; 32], &[], &k).unwrap(),
            SignedCheckpoint::sign(&[1; 16], 3, [8; 32], &[], &k).unwrap(),
            SignedCheckpoint::sign(&[2; 16], 3, [7; 32], &[], &k).unwrap(),
            SignedCheckpoint::sign(&[1; 16], 3, [7; 32], &revoked, &k).unwrap(),
        ] {
            assert_ne!(other, cp);
        }
    }

    /// Without revocations, exactly the checkpoint of before `revoked` lines existed
    /// (this text was produced by the code before them).
    #[test]
    fn a_checkpoint_without_revocations_is_unchanged() {
        let cp = SignedCheckpoint::sign(&[1; 16], 3, [7; 32], &[], &key()).unwrap();
        assert_eq!(
            cp.text(),
            "consent-ledger/01010101010101010101010101010101\n3\n\
             BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\n\
             \u{2014} consent-ledger/01010101010101010101010101010101 \
             6Jb7xp+x3K8dfxRxMPoosz7URUKa2XB3yLk3LsAZR6QUkSPJoDsGbzcDs8ELLUb1RiMB1CvCztG2lqj6LLhmS/fMJg4=\n"
        );
        assert!(cp.revocations().is_empty());
    }

    /// Revocations are written one line per key, with its earliest position, sorted by
    /// the base64 key; what is signed verifies and reads back.
    #[test]
    fn revocation_lines_are_canonical() {
        let cp = SignedCheckpoint::sign(
            &[1; 16],
            3,
            [7; 32],
            &[
                Revocation {
                    key: public(1),
                    from: 2,
                },
                Revocation {
                    key: public(2),
                    from: 0,
                },
                Revocation {
                    key: public(1),
                    from: 1,
                },
            ],
            &key(),
        )
        .unwrap();
        assert_eq!(
            cp.text(),
            "consent-ledger/01010101010101010101010101010101\n3\n\
             BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=\n\
             revoked gTl3Dqh9F19Wo1Rmw0x+zMuNipG07jeiXfYPW4/Js5Q= 0\n\
             revoked iojj3XQJ8ZX9UtstPLpdcspnCb8dlBIb83SIAbQPb1w= 1\n\n\
             \u{2014} consent-ledger/01010101010101010101010101010101 \
             6Jb7xhINEDsI9HACR8t4lowRAoepbs1Z2RozmLVhmOND5a1qoRfuE2z1NyI0RCcFmJwckD2jB7R8s7TamgPNwg2ItAI=\n"
        );
        let expected = [
            Revocation {
                key: public(2),
                from: 0,
            },
            Revocation {
                key: public(1),
                from: 1,
            },
        ];
        assert_eq!(cp.revocations(), expected);
        let public_key = VerifyingKey::from_bytes(key().verifying_key().as_bytes()).unwrap();
        let read = SignedCheckpoint::verify(cp.text(), &public_key).unwrap();
        assert_eq!(read, cp);
        assert_eq!(
            in_force(
                &[
                    (public(1), 2, 2),
                    (public(2), 0, 1),
                    (public(1), 1, 0),
                    (public(3), 0, 3)
                ],
                3
            ),
            expected
        );
    }

    /// What cannot be written is refused when signing: positions beyond the tree, more
    /// keys than a verifier reads.
    #[test]
    fn unwritable_revocations_are_refused() {
        let beyond = [Revocation {
            key: public(1),
            from: 3,
        }];
        assert!(SignedCheckpoint::sign(&[1; 16], 3, [7; 32], &beyond, &key()).is_err());
        let many: Vec<Revocation> = (0..=MAX_REVOCATIONS as u32)
            .map(|i| {
                let mut key = [0u8; 32];
                key[..4].copy_from_slice(&i.to_be_bytes());
                Revocation { key, from: 0 }
            })
            .collect();
        assert!(SignedCheckpoint::sign(&[1; 16], 3, [7; 32], &many, &key()).is_err());
        assert!(SignedCheckpoint::sign(&[1; 16], 3, [7; 32], &many[1..], &key()).is_ok());
    }
}
