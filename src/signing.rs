//! Signing keys: who may append to the ledger, and how entries are signed and checked.
//!
//! Entries are signed with Ed25519 (RFC 8032, via `ed25519-dalek`, strict verification).
//! The signed message is a fixed context string followed by the entry's canonical bytes,
//! so a signature over an entry can never be replayed as a signature over anything else
//! this crate signs (checkpoints use the signed-note format, which has its own framing).

use std::fmt;

use ed25519_dalek::Signer;

/// Context prefixed to every entry before signing.
pub(crate) const ENTRY_CONTEXT: &[u8] = b"consent-ledger entry v1\n";

/// Context of a new key's acceptance of a rotation to it (see [`key_acceptance`]).
const KEY_ACCEPT_CONTEXT: &[u8] = b"consent-ledger key accept v1\n";

/// What a new signing key signs to accept a rotation to it: the context, the position
/// of the rotation entry and the hash of the entry before it (so the acceptance pins
/// the whole log before the rotation: it cannot be copied into another log, nor to
/// another position of this one), and the new key itself.
///
/// Without it, the old key alone could write a rotation to the current key at any
/// position, and whoever stole an old key could rewrite everything after the genuine
/// rotation: the rewritten log would open with the current key.
fn key_acceptance(seq: u64, prev_hash: &[u8; 32], new_key: &[u8; 32]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(KEY_ACCEPT_CONTEXT.len() + 8 + 32 + 32);
    msg.extend_from_slice(KEY_ACCEPT_CONTEXT);
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(prev_hash);
    msg.extend_from_slice(new_key);
    msg
}

/// The secret key that signs new ledger entries.
///
/// Its `Debug` output is redacted and its bytes are wiped on drop.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// A key from its 32-byte secret seed.
    pub fn from_bytes(seed: &[u8; 32]) -> Self {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(seed))
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        SigningKey(ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng))
    }

    /// The secret seed, for storing the key in a secret manager.
    pub fn expose_seed(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// The public half, which anyone may hold to verify entries, checkpoints and receipts.
    pub fn verifying_key(&self) -> VerifyingKey {
        VerifyingKey(self.0.verifying_key())
    }

    pub(crate) fn sign_entry(&self, body: &[u8]) -> [u8; 64] {
        let mut msg = Vec::with_capacity(ENTRY_CONTEXT.len() + body.len());
        msg.extend_from_slice(ENTRY_CONTEXT);
        msg.extend_from_slice(body);
        self.0.sign(&msg).to_bytes()
    }

    /// This key's acceptance of a rotation to it, by the entry at `seq` whose
    /// predecessor hashes to `prev_hash` (see [`key_acceptance`]).
    pub(crate) fn accept_rotation(&self, seq: u64, prev_hash: &[u8; 32]) -> [u8; 64] {
        let new_key = self.0.verifying_key().to_bytes();
        self.0.sign(&key_acceptance(seq, prev_hash, &new_key)).to_bytes()
    }

    pub(crate) fn inner(&self) -> &ed25519_dalek::SigningKey {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SigningKey([REDACTED], public {:?})", self.verifying_key())
    }
}

/// A public Ed25519 key that verifies ledger entries, checkpoints and receipts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct VerifyingKey(ed25519_dalek::VerifyingKey);

impl VerifyingKey {
    /// A key from its 32-byte encoding.
    ///
    /// # Errors
    /// [`InvalidKey`] when the bytes are not a valid Ed25519 point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, InvalidKey> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map(VerifyingKey)
            .map_err(|_| InvalidKey)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Whether `signature` is this key's signature over the entry bytes `body`.
    pub(crate) fn verify_entry(&self, body: &[u8], signature: &[u8; 64]) -> bool {
        let mut msg = Vec::with_capacity(ENTRY_CONTEXT.len() + body.len());
        msg.extend_from_slice(ENTRY_CONTEXT);
        msg.extend_from_slice(body);
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(&msg, &sig).is_ok()
    }

    /// Whether `signature` is this key's acceptance of a rotation to it by the entry at
    /// `seq` whose predecessor hashes to `prev_hash` (strict verification).
    pub(crate) fn accepted_rotation(&self, seq: u64, prev_hash: &[u8; 32], signature: &[u8; 64]) -> bool {
        let msg = key_acceptance(seq, prev_hash, &self.to_bytes());
        let sig = ed25519_dalek::Signature::from_bytes(signature);
        self.0.verify_strict(&msg, &sig).is_ok()
    }

    pub(crate) fn inner(&self) -> &ed25519_dalek::VerifyingKey {
        &self.0
    }
}

impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VerifyingKey(")?;
        for b in self.0.as_bytes().iter().take(8) {
            write!(f, "{b:02x}")?;
        }
        f.write_str("..)")
    }
}

/// Bytes that are not a valid Ed25519 public key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bytes are not a valid ed25519 public key")]
pub struct InvalidKey;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_and_verify_with_context() {
        let k = SigningKey::from_bytes(&[9; 32]);
        let sig = k.sign_entry(b"body");
        assert!(k.verifying_key().verify_entry(b"body", &sig));
        assert!(!k.verifying_key().verify_entry(b"bodx", &sig));
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(!other.verifying_key().verify_entry(b"body", &sig));
        // A plain signature over the body (no context) is not an entry signature.
        let plain = k.inner().sign(b"body").to_bytes();
        assert!(!k.verifying_key().verify_entry(b"body", &plain));
        // The seed is in no form: not as hex, not as a list of numbers.
        let shown = format!("{k:?} {k:#?}");
        assert!(
            !shown.contains("0909") && !shown.contains("9, 9") && !shown.contains("9,\n"),
            "{shown}"
        );
    }
}
