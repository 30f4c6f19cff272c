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
//!
//! — consent-ledger/<ledger id in hex> <base64 key id and Ed25519 signature>
//! ```
//!
//! An **inclusion proof** shows that an entry is in the tree of a checkpoint; a
//! **consistency proof** shows that the tree of an older checkpoint is a prefix of a
//! newer one, i.e. nothing was rewritten, removed or forked in between. Both are checked
//! with nothing but the ledger's public key. Entries carry a random salt, so the sibling
//! hashes in a proof reveal nothing about other people's entries.

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
}

/// A checkpoint whose signature has been verified: the tree size and root the ledger
/// committed to. Obtained from [`SignedCheckpoint::verify`] or from the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    text: String,
    origin: String,
    size: u64,
    root: [u8; 32],
}

/// The origin line of a ledger's checkpoints.
pub(crate) fn origin_of(ledger_id: &[u8; 16]) -> String {
    let hex: String = ledger_id.iter().map(|b| format!("{b:02x}")).collect();
    format!("consent-ledger/{hex}")
}

impl SignedCheckpoint {
    /// Signs a checkpoint of `size` entries with tree root `root`.
    pub(crate) fn sign(
        ledger_id: &[u8; 16],
        size: u64,
        root: [u8; 32],
        key: &ed25519_dalek::SigningKey,
    ) -> Result<Self, AuditError> {
        let origin = origin_of(ledger_id);
        let cp = Checkpoint {
            origin: origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        cp.validate()?;
        let text = note::sign_note(&cp.body(), &origin, key)?;
        Ok(SignedCheckpoint {
            text,
            origin,
            size,
            root,
        })
    }

    /// Parses a signed checkpoint and verifies its signature under `key`.
    ///
    /// # Errors
    /// [`AuditError::Checkpoint`] when it is malformed or not signed by `key`;
    /// [`AuditError::Mismatch`] when its origin is not a consent-ledger origin;
    /// [`AuditError::Malformed`] when its body names another origin or has extension
    /// lines.
    pub fn verify(text: &str, key: &VerifyingKey) -> Result<Self, AuditError> {
        let origin = text.split('\n').next().unwrap_or_default();
        if !origin.starts_with("consent-ledger/") {
            return Err(AuditError::Mismatch("checkpoint origin is not a consent ledger"));
        }
        let body = note::open_note(text, origin, key.inner())?;
        let cp = Checkpoint::parse_body(&body)?;
        if cp.origin != origin || !cp.extensions.is_empty() {
            return Err(AuditError::Malformed("checkpoint"));
        }
        Ok(SignedCheckpoint {
            text: text.to_owned(),
            origin: cp.origin,
            size: cp.size,
            root: cp.root,
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
/// only appended to in between, never rolled back, rewritten or forked.
///
/// # Errors
/// [`AuditError::Mismatch`] when the proof's sizes are not the checkpoints' or the
/// origins differ, and [`AuditError::Proof`] when the proof fails.
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
