//! Consent receipts: what a person keeps to check, without trusting the operator, that
//! their consent change was recorded and has not been rolled back.
//!
//! A receipt is a JSON document (format version 1, specified in `docs/receipts.md`).
//! Its fields are informed by ISO/IEC TS 27560 and the Kantara consent receipt: who
//! (subject), what (action and purpose), with whom (recipients), on what legal basis,
//! when, and how to withdraw. It also carries the signed entry itself, an inclusion proof
//! and a signed checkpoint. [`verify_receipt`] checks all of it offline with the
//! ledger's public key: the checkpoint signature, the entry's signature, every hash of
//! the inclusion proof up to the checkpoint root, and that every human-readable field
//! is exactly what the signed entry says, except how to withdraw, which is the
//! application's text and signed by nothing. A later checkpoint and a consistency proof
//! then show that the log still contains the entry
//! ([`verify_consistency`](crate::verify_consistency)).

use serde::{Deserialize, Serialize};

use crate::checkpoint::{self, AuditError, InclusionProof, SignedCheckpoint};
use crate::entry::{Body, Entry};
use crate::note;
use crate::purpose::LegalBasis;
use crate::recipient::RecipientScope;
use crate::signing::VerifyingKey;

/// The receipt format version this library writes and reads.
pub const RECEIPT_VERSION: u64 = 1;

/// Longest receipt JSON, in bytes, that [`Receipt::from_json`] reads (1 MiB).
///
/// A receipt is a few KiB. Its parts grow only so far: the entry (base64 of at most
/// 64 KiB; entries written today are at most 7 KiB), its recipients (at most 256 names
/// of at most 128 bytes), the inclusion proof (one hash per level of the tree: at most
/// 64) and the checkpoint (at most 1,024 `revoked` lines of about 70 bytes). All of
/// them at their largest at once take under 512 KiB of pretty-printed JSON, which
/// leaves the rest for `how_to_withdraw`, the application's own text.
pub const MAX_RECEIPT_JSON_LEN: usize = 1 << 20;

/// Longest `how_to_withdraw` text, in bytes, that
/// [`Ledger::receipt`](crate::Ledger::receipt) puts in a receipt (64 KiB). Escaped in
/// JSON it takes at most six times that (`\u0001` for a control character), which with
/// the rest of a receipt at its largest stays under [`MAX_RECEIPT_JSON_LEN`]: every
/// receipt the ledger makes is one [`Receipt::from_json`] reads back.
pub const MAX_HOW_TO_WITHDRAW_LEN: usize = 64 * 1024;

/// A consent receipt. Build one with [`Ledger::receipt`](crate::Ledger::receipt), store
/// or send it as JSON ([`Receipt::to_json`]), and check it with [`verify_receipt`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Receipt {
    version: u64,
    /// The ledger (checkpoint origin).
    ledger: String,
    entry_seq: u64,
    /// RFC 3339, UTC.
    timestamp: String,
    subject: String,
    /// `collected`, `granted`, `withdrawn`, `expired` or `erased`.
    action: String,
    purpose: Option<String>,
    legal_basis: Option<String>,
    /// Recipient descriptions, or `["all business partners"]`.
    recipients: Vec<String>,
    expires_at: Option<String>,
    how_to_withdraw: String,
    /// The stored entry, base64.
    entry: String,
    /// The public key that signed the entry, base64.
    entry_signer: String,
    inclusion_proof: ProofJson,
    /// The signed checkpoint note.
    checkpoint: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProofJson {
    index: u64,
    tree_size: u64,
    hashes: Vec<String>,
}

/// The human-readable part of a receipt, derived from an entry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fields {
    subject: String,
    action: &'static str,
    purpose: Option<String>,
    legal_basis: Option<String>,
    recipients: Vec<String>,
    expires_at: Option<String>,
    timestamp: String,
}

fn scope_strings(scope: &RecipientScope) -> Vec<String> {
    match scope.recipients() {
        Some(list) => list.iter().map(ToString::to_string).collect(),
        None => vec![scope.to_string()],
    }
}

fn fields(e: &Entry) -> Option<Fields> {
    let (subject, action, purpose, basis, recipients, expires_at) = match &e.body {
        Body::Collected {
            subject,
            purpose,
            basis,
            scope,
            ..
        } => (
            subject,
            "collected",
            Some(purpose.clone()),
            Some(*basis),
            scope_strings(scope),
            None,
        ),
        Body::Granted {
            subject,
            purpose,
            scope,
            expires_at,
        } => (
            subject,
            "granted",
            Some(purpose.clone()),
            Some(LegalBasis::Consent),
            scope_strings(scope),
            expires_at.map(|t| t.to_string()),
        ),
        Body::Withdrawn { subject, purpose } => {
            (subject, "withdrawn", Some(purpose.clone()), None, vec![], None)
        }
        Body::Expired { subject, purpose } => (subject, "expired", Some(purpose.clone()), None, vec![], None),
        Body::Erased { subject } => (subject, "erased", None, None, vec![], None),
        Body::Genesis { .. } | Body::KeyRotated { .. } | Body::KeyRevoked { .. } => return None,
    };
    Some(Fields {
        subject: subject.as_str().to_owned(),
        action,
        purpose,
        legal_basis: basis.map(|b| b.as_str().to_owned()),
        recipients,
        expires_at,
        timestamp: e.timestamp.to_string(),
    })
}

impl Receipt {
    pub(crate) fn build(
        bytes: &[u8],
        proof: &InclusionProof,
        cp: &SignedCheckpoint,
        signer: &VerifyingKey,
        how_to_withdraw: &str,
    ) -> Option<Receipt> {
        let stored = crate::entry::decode(bytes).ok()?;
        let f = fields(&stored.entry)?;
        Some(Receipt {
            version: RECEIPT_VERSION,
            ledger: cp.origin().to_owned(),
            entry_seq: stored.entry.seq,
            timestamp: f.timestamp,
            subject: f.subject,
            action: f.action.to_owned(),
            purpose: f.purpose,
            legal_basis: f.legal_basis,
            recipients: f.recipients,
            expires_at: f.expires_at,
            how_to_withdraw: how_to_withdraw.to_owned(),
            entry: note::base64_encode(bytes),
            entry_signer: note::base64_encode(&signer.to_bytes()),
            inclusion_proof: ProofJson {
                index: proof.index,
                tree_size: proof.tree_size,
                hashes: proof.hashes.iter().map(|h| note::base64_encode(h)).collect(),
            },
            checkpoint: cp.text().to_owned(),
        })
    }

    /// The receipt as pretty-printed JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_default()
    }

    /// Parses a receipt from JSON (does not verify it: see [`verify_receipt`]).
    ///
    /// JSON longer than [`MAX_RECEIPT_JSON_LEN`] bytes is refused before it is parsed,
    /// so that a receipt handed in by anyone costs memory and time bounded by the limit
    /// rather than by its length. A receipt made by [`Ledger::receipt`](crate::Ledger::receipt)
    /// is far smaller, unless its `how_to_withdraw` is very long. (Deserializing a
    /// [`Receipt`] with `serde` directly has no limit: bound the input first.)
    ///
    /// # Errors
    /// [`AuditError::Malformed`] when it is not a receipt document, or is longer than
    /// [`MAX_RECEIPT_JSON_LEN`]; [`AuditError::UnsupportedVersion`] for another format
    /// version.
    pub fn from_json(json: &str) -> Result<Receipt, AuditError> {
        if json.len() > MAX_RECEIPT_JSON_LEN {
            return Err(AuditError::Malformed("receipt: longer than the size limit"));
        }
        match serde_json::from_str::<Receipt>(json) {
            Ok(r) if r.version == RECEIPT_VERSION => Ok(r),
            Ok(r) => Err(AuditError::UnsupportedVersion(r.version)),
            // Another version may have other fields: parsed again for its number only
            // (on this path alone, so a receipt is parsed once).
            Err(_) => {
                #[derive(Deserialize)]
                struct Version {
                    version: u64,
                }
                match serde_json::from_str::<Version>(json) {
                    Ok(v) if v.version != RECEIPT_VERSION => Err(AuditError::UnsupportedVersion(v.version)),
                    _ => Err(AuditError::Malformed("receipt")),
                }
            }
        }
    }

    /// The entry's position in the log.
    pub fn entry_seq(&self) -> u64 {
        self.entry_seq
    }

    /// The subject's id.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// What happened: `granted`, `withdrawn`, ...
    pub fn action(&self) -> &str {
        &self.action
    }

    /// The purpose id, if the entry is about one.
    pub fn purpose(&self) -> Option<&str> {
        self.purpose.as_deref()
    }

    /// The public key the receipt says signed the entry (checked by
    /// [`verify_receipt`]), to look up in a later checkpoint's revocations
    /// ([`SignedCheckpoint::revoked_from`]).
    ///
    /// # Errors
    /// [`AuditError::Malformed`] when the field is not the base64 of a valid public key.
    pub fn entry_signer(&self) -> Result<VerifyingKey, AuditError> {
        let bytes: [u8; 32] = note::base64_decode(&self.entry_signer)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuditError::Malformed("entry signer"))?;
        VerifyingKey::from_bytes(&bytes).map_err(|_| AuditError::Malformed("entry signer"))
    }

    /// How to withdraw, as the application stated it. Not verified: nothing signs it,
    /// so a receipt passed on by someone else may carry any text here, and
    /// [`verify_receipt`] still accepts it.
    pub fn how_to_withdraw(&self) -> &str {
        &self.how_to_withdraw
    }
}

/// A receipt that passed [`verify_receipt`]. The ledger it is a receipt of is its
/// checkpoint's [`origin`](SignedCheckpoint::origin): compare it with the ledger you
/// expect (see [`verify_receipt`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    /// The entry's position.
    pub entry_seq: u64,
    /// The subject's id.
    pub subject: String,
    /// What happened.
    pub action: String,
    /// The purpose id, if any.
    pub purpose: Option<String>,
    /// The checkpoint the receipt was issued under, to compare with later ones.
    pub checkpoint: SignedCheckpoint,
}

/// Verifies a receipt offline with the ledger's public key: the checkpoint is signed by
/// `key`; the entry's signature verifies under the key named in the receipt, and the
/// checkpoint does not list that key as revoked from a position at or before the entry;
/// the inclusion proof leads from the entry to the checkpoint's root, every hash
/// checked; and every human-readable field is what the signed entry says.
///
/// **`key` must be the ledger's current public key.** The verdict rests on it and on
/// nothing else: whoever holds the private half of `key` can make a receipt that passes
/// (any entry, any tree). After [`Ledger::rotate_key`](crate::Ledger::rotate_key), an
/// older key vouches for nothing, since it may have been stolen, and nothing in a
/// receipt can tell that it was rotated away. So learn the current key from the
/// operator (it is [`VerifyReport::current_key`](crate::VerifyReport::current_key) of
/// the log, and each rotation is accepted by its new key), and when it is not the key a
/// receipt was checked with before, ask for a fresh receipt
/// ([`Ledger::receipt`](crate::Ledger::receipt)) or a fresh checkpoint with a consistency proof from the
/// receipt's checkpoint ([`verify_consistency`](crate::verify_consistency)) and check
/// them under the current key. A fresh checkpoint also lists the revocations made since
/// the receipt was issued: see [`SignedCheckpoint::revoked_from`] and
/// [`Receipt::entry_signer`].
///
/// **A key vouches for every ledger it signs for.** Nothing stops an operator from
/// opening two ledgers with one signing key; then a receipt of one verifies under the
/// key of the other. The verified receipt names its ledger (its checkpoint's
/// [`origin`](SignedCheckpoint::origin), `consent-ledger/<ledger id>`): compare it with
/// the ledger you expect, and give each ledger a key of its own.
///
/// # Errors
/// [`AuditError`] naming what does not hold; [`AuditError::RevokedSigner`] when the
/// checkpoint lists the entry's signer as revoked at or before the entry.
pub fn verify_receipt(receipt: &Receipt, key: &VerifyingKey) -> Result<VerifiedReceipt, AuditError> {
    if receipt.version != RECEIPT_VERSION {
        return Err(AuditError::UnsupportedVersion(receipt.version));
    }
    let cp = SignedCheckpoint::verify(&receipt.checkpoint, key)?;
    if cp.origin() != receipt.ledger {
        return Err(AuditError::Mismatch(
            "receipt names another ledger than its checkpoint",
        ));
    }
    let bytes = note::base64_decode(&receipt.entry).map_err(|_| AuditError::Malformed("entry"))?;
    let signer = receipt.entry_signer()?;
    let signer_bytes = signer.to_bytes();
    let entry = checkpoint::decode_signed(&bytes, &signer)?;
    if entry.seq != receipt.entry_seq || receipt.inclusion_proof.index != entry.seq {
        return Err(AuditError::Mismatch(
            "receipt position does not match the signed entry",
        ));
    }
    if let Some(revoked_from) = cp
        .revoked_from_bytes(&signer_bytes)
        .filter(|from| *from <= entry.seq)
    {
        return Err(AuditError::RevokedSigner { revoked_from });
    }
    let f = fields(&entry).ok_or(AuditError::Mismatch("entry is not a consent change"))?;
    let claimed = Fields {
        subject: receipt.subject.clone(),
        action: f.action,
        purpose: receipt.purpose.clone(),
        legal_basis: receipt.legal_basis.clone(),
        recipients: receipt.recipients.clone(),
        expires_at: receipt.expires_at.clone(),
        timestamp: receipt.timestamp.clone(),
    };
    if claimed != f || receipt.action != f.action {
        return Err(AuditError::Mismatch(
            "receipt fields do not match the signed entry",
        ));
    }
    let mut hashes = Vec::with_capacity(receipt.inclusion_proof.hashes.len());
    for h in &receipt.inclusion_proof.hashes {
        let h: [u8; 32] = note::base64_decode(h)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AuditError::Malformed("inclusion proof"))?;
        hashes.push(h);
    }
    let proof = InclusionProof {
        index: receipt.inclusion_proof.index,
        tree_size: receipt.inclusion_proof.tree_size,
        hashes,
    };
    checkpoint::verify_inclusion(&bytes, &proof, &cp)?;
    Ok(VerifiedReceipt {
        entry_seq: entry.seq,
        subject: f.subject,
        action: f.action.to_owned(),
        purpose: f.purpose,
        checkpoint: cp,
    })
}

/// [`verify_receipt`], then checks the receipt against a later checkpoint of the same
/// ledger, `latest` (verified under the same current key, for example
/// [`Ledger::checkpoint`](crate::Ledger::checkpoint) now): `proof` must show that the
/// receipt's checkpoint is a prefix of `latest`
/// ([`Ledger::consistency_proof`](crate::Ledger::consistency_proof)`(old, new)` and
/// [`verify_consistency`](crate::verify_consistency)), and `latest` must not list the entry's signer as revoked from
/// a position at or before the entry.
///
/// `verify_receipt` alone sees only the revocations its own checkpoint lists: a receipt
/// put together with a checkpoint signed before a revocation (any checkpoint of the
/// ledger is public output) passes it. Checking against a checkpoint signed after the
/// revocation is what refuses it; the later the checkpoint, the more revocations it
/// covers.
///
/// # Errors
/// As [`verify_receipt`] and [`verify_consistency`](crate::verify_consistency);
/// [`AuditError::RevokedSigner`] when `latest` lists the entry's signer as revoked at or
/// before the entry.
pub fn verify_receipt_against(
    receipt: &Receipt,
    key: &VerifyingKey,
    latest: &SignedCheckpoint,
    proof: &crate::checkpoint::ConsistencyProof,
) -> Result<VerifiedReceipt, AuditError> {
    let verified = verify_receipt(receipt, key)?;
    // `latest` may be given as parsed under another key: check it under this one.
    let latest = SignedCheckpoint::verify(latest.text(), key)?;
    checkpoint::verify_consistency(&verified.checkpoint, &latest, proof)?;
    let signer = receipt.entry_signer()?.to_bytes();
    if let Some(revoked_from) = latest
        .revoked_from_bytes(&signer)
        .filter(|from| *from <= verified.entry_seq)
    {
        return Err(AuditError::RevokedSigner { revoked_from });
    }
    Ok(verified)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// A receipt with every field of the given size (nothing in it verifies).
    fn receipt(entry_len: usize, recipients: Vec<String>, hashes: usize, revocations: usize) -> Receipt {
        let b64 = |n: usize| note::base64_encode(&vec![0xff; n]);
        let mut checkpoint = format!("consent-ledger/{}\n{}\n{}\n", "f".repeat(32), u64::MAX, b64(32));
        for _ in 0..revocations {
            checkpoint.push_str(&format!("revoked {} {}\n", b64(32), u64::MAX));
        }
        checkpoint.push_str(&format!(
            "\n\u{2014} consent-ledger/{} {}\n",
            "f".repeat(32),
            b64(68)
        ));
        Receipt {
            version: RECEIPT_VERSION,
            ledger: format!("consent-ledger/{}", "f".repeat(32)),
            entry_seq: u64::MAX,
            timestamp: "+275760-09-13T00:00:00.000Z".to_owned(),
            subject: "\"".repeat(crate::subject::MAX_SUBJECT_ID_LEN),
            action: "collected".to_owned(),
            purpose: Some("p".repeat(crate::purpose::MAX_PURPOSE_ID_LEN)),
            legal_basis: Some("legitimate-interest".to_owned()),
            recipients,
            expires_at: Some("+275760-09-13T00:00:00.000Z".to_owned()),
            how_to_withdraw: String::new(),
            entry: b64(entry_len),
            entry_signer: b64(32),
            inclusion_proof: ProofJson {
                index: u64::MAX,
                tree_size: u64::MAX,
                hashes: vec![b64(32); hashes],
            },
            checkpoint,
        }
    }

    /// The size limit leaves room for the largest receipt a ledger can make, even
    /// with every part at its limit at once (as the constant's documentation says).
    #[test]
    fn the_largest_receipt_a_ledger_makes_is_well_within_the_limit() {
        // Recipient names of quotes: Debug escapes them, then JSON escapes that.
        let name = "\"".repeat(crate::recipient::MAX_RECIPIENT_NAME_LEN);
        let recipients = vec![format!("developer app {name:?}"); crate::entry::MAX_SCOPE_RECIPIENTS];
        let r = receipt(
            crate::entry::MAX_ENTRY_LEN,
            recipients,
            64,
            crate::checkpoint::MAX_REVOCATIONS,
        );
        let json = r.to_json();
        assert!(json.len() < MAX_RECEIPT_JSON_LEN / 2, "{}", json.len());
        assert_eq!(Receipt::from_json(&json), Ok(r.clone()));
        // With the longest `how_to_withdraw`, of characters JSON escapes as `\u0001`.
        let r = Receipt {
            how_to_withdraw: "\u{1}".repeat(MAX_HOW_TO_WITHDRAW_LEN),
            ..r
        };
        let json = r.to_json();
        assert!(json.len() <= MAX_RECEIPT_JSON_LEN, "{}", json.len());
        assert_eq!(Receipt::from_json(&json), Ok(r));
    }

    /// `from_json` parsed input of any length: memory grew with it.
    #[test]
    fn json_over_the_limit_is_refused_before_it_is_parsed() {
        let r = receipt(200, vec!["first party".to_owned()], 20, 0);
        let json = r.to_json();
        let too_long = AuditError::Malformed("receipt: longer than the size limit");
        // Padded with whitespace: up to the limit it is the same receipt, past it not.
        let padded = format!("{json}{}", " ".repeat(MAX_RECEIPT_JSON_LEN - json.len()));
        assert_eq!(Receipt::from_json(&padded), Ok(r.clone()));
        assert_eq!(Receipt::from_json(&format!("{padded} ")), Err(too_long.clone()));
        // A proof of far more hashes than any tree has levels.
        let long_proof = receipt(200, vec!["first party".to_owned()], 30_000, 0);
        assert_eq!(Receipt::from_json(&long_proof.to_json()), Err(too_long));
    }

    /// The parse is done once, and still tells another version from a malformed one.
    #[test]
    fn versions_and_garbage_are_told_apart() {
        let json = receipt(200, vec![], 1, 0).to_json();
        let v2 = json.replacen("\"version\": 1", "\"version\": 2", 1);
        assert_eq!(Receipt::from_json(&v2), Err(AuditError::UnsupportedVersion(2)));
        let v2_other_fields = v2.replacen("\"ledger\"", "\"origin\"", 1);
        assert_eq!(
            Receipt::from_json(&v2_other_fields),
            Err(AuditError::UnsupportedVersion(2))
        );
        let v1_other_fields = json.replacen("\"ledger\"", "\"origin\"", 1);
        assert_eq!(
            Receipt::from_json(&v1_other_fields),
            Err(AuditError::Malformed("receipt"))
        );
        assert_eq!(Receipt::from_json("[]"), Err(AuditError::Malformed("receipt")));
    }
}
