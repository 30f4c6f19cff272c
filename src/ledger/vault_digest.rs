//! The vault digest record: what a clean close says the vault held, so that an open
//! from a state snapshot can tell, without reading and authenticating every index
//! record, that the vault's index records are the ones the snapshot and the log were
//! written with.
//!
//! A state snapshot holds the identifier links (lookup pseudonym to subject) of its
//! time; a full replay takes them from the vault's index records, each authenticated.
//! An index record lost in a way the vault cannot tell from free space (its slot read
//! back as zeros, whole slots cut from the end of the file), or altered with its slot
//! checksum recomputed, changes what a full replay decides but not what the snapshot
//! says. Opening compares the vault's index digest ([`crate::store::digest`], computed
//! while the vault is read anyway) with this record: the snapshot is used only if they
//! agree.
//!
//! # Layout
//!
//! Stored in sled's `meta` tree under `"vault digest"`, written at every close that
//! changed it (with [`Snapshots::OnClose`](crate::Snapshots::OnClose)):
//!
//! ```text
//! version (1) | tag (32)
//! ```
//!
//! The tag is the pseudonym key's record tag over the parts `"consent-ledger vault
//! digest v3"`, the ledger id, the log's length (u64 big-endian) and head hash, the tag
//! of the state snapshot the close left on disk (32 bytes, zeros for none), and the
//! vault's index digest: its number of index records and the sum of their keyed
//! hashes (each u64 big-endian). The snapshot's tag binds the record to the snapshot
//! itself: an older `state` file put back after the vault changed would otherwise
//! match a record written, for the changed vault, by a close that wrote no snapshot
//! (review r117), or one at the same length (review r118: version 2 bound only the
//! length). Records of earlier versions match nothing: the first open after the
//! upgrade replays in full. The digest itself is not stored, only its tag, so that the
//! per-record hashes are not learnt from a series of records. The record matches only
//! the log it was written with (its length and head) and the vault's index records at
//! that time (whatever slots they sit in).
//!
//! # Limits
//!
//! An unclean end (a crash, a kill) writes no record: the next open from a snapshot
//! finds the log longer than the record says, and replays it in full. Putting back an
//! older vault with the record written with it is noticed unless the log is put back to
//! that time too (then the snapshot, taken later, is refused as ahead of the log, or an
//! older one is restored as well: the whole directory rolled back, which only a trusted
//! checkpoint notices). A vault whose index records were changed and then changed back
//! (the same records, in any slots) matches: it decides as the original.

use crate::entry::Hash;
use crate::identifier::PseudonymKey;
use crate::store::digest::{DigestKey, IndexDigest};

/// The `meta` key the record is stored under.
pub(crate) const META_KEY: &str = "vault digest";
/// First byte of the record.
pub(crate) const VERSION: u8 = 3;
/// Bytes of a record: the version and the tag.
pub(crate) const LEN: usize = 1 + 32;
/// First part of the tag: keeps these tags apart from every other record tag.
const TAG_DOMAIN: &[u8] = b"consent-ledger vault digest v3";
/// The only part of the tag that derives the per-record hash key.
const KEY_DOMAIN: &[u8] = b"consent-ledger vault digest key v1";

/// The key of the vault's per-record hashes, derived from the pseudonym key (its record
/// tag over one part of its own, never a stored tag's parts).
pub(crate) fn digest_key(key: &PseudonymKey) -> DigestKey {
    let tag = key.index_tag(&[KEY_DOMAIN]);
    let mut bytes = [0u8; 16];
    for (b, t) in bytes.iter_mut().zip(tag.iter()) {
        *b = *t;
    }
    DigestKey::from_bytes(bytes)
}

/// What a record vouches for: a log and the index records of a vault.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Covered<'a> {
    /// The ledger's id (from its genesis entry).
    pub(crate) ledger_id: &'a [u8; 16],
    /// Entries in the log.
    pub(crate) len: u64,
    /// Hash of the last one.
    pub(crate) head: &'a Hash,
    /// The tag of the state snapshot on disk (zeros: none): which snapshot it is.
    pub(crate) snapshot: &'a [u8; 32],
    /// The vault's index digest.
    pub(crate) digest: IndexDigest,
}

fn tag_parts<R>(covered: &Covered<'_>, f: impl FnOnce(&[&[u8]]) -> R) -> R {
    let len = covered.len.to_be_bytes();
    let records = covered.digest.records.to_be_bytes();
    let sum = covered.digest.sum.to_be_bytes();
    f(&[
        TAG_DOMAIN,
        &covered.ledger_id[..],
        &len,
        &covered.head[..],
        &covered.snapshot[..],
        &records,
        &sum,
    ])
}

/// The record for `covered`.
pub(crate) fn seal(key: &PseudonymKey, covered: &Covered<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(LEN);
    out.push(VERSION);
    out.extend_from_slice(&tag_parts(covered, |parts| key.index_tag(parts)));
    out
}

/// Whether `bytes` is the record for `covered` (the tag compared in constant time).
pub(crate) fn matches(bytes: &[u8], key: &PseudonymKey, covered: &Covered<'_>) -> bool {
    match bytes.split_first() {
        Some((&VERSION, tag)) if tag.len() == LEN - 1 => {
            tag_parts(covered, |parts| key.verify_index_tag(parts, tag))
        }
        _ => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn covered(digest: IndexDigest) -> Covered<'static> {
        Covered {
            ledger_id: &[7; 16],
            len: 12,
            head: &[9; 32],
            snapshot: &[4; 32],
            digest,
        }
    }

    #[test]
    fn a_record_matches_only_what_it_was_written_for() {
        let key = PseudonymKey::from_bytes([1; 32]);
        let d = IndexDigest { records: 3, sum: 99 };
        let rec = seal(&key, &covered(d));
        assert_eq!(rec.len(), LEN);
        assert!(matches(&rec, &key, &covered(d)));
        assert!(!matches(&rec, &PseudonymKey::from_bytes([2; 32]), &covered(d)));
        for other in [
            Covered {
                len: 13,
                ..covered(d)
            },
            Covered {
                head: &[8; 32],
                ..covered(d)
            },
            Covered {
                ledger_id: &[6; 16],
                ..covered(d)
            },
            Covered {
                snapshot: &[0; 32],
                ..covered(d)
            },
            covered(IndexDigest { records: 2, ..d }),
            covered(IndexDigest { sum: 98, ..d }),
        ] {
            assert!(!matches(&rec, &key, &other), "{other:?}");
        }
        for i in 0..rec.len() {
            let mut b = rec.clone();
            b[i] ^= 1;
            assert!(!matches(&b, &key, &covered(d)), "byte {i}");
        }
        assert!(!matches(&rec[..LEN - 1], &key, &covered(d)));
        assert!(!matches(&[rec.clone(), vec![0]].concat(), &key, &covered(d)));
        assert!(!matches(&[], &key, &covered(d)));
    }

    /// Freezes the format: a change to these bytes is a new version.
    #[test]
    fn golden_record() {
        let key = PseudonymKey::from_bytes([1; 32]);
        let rec = seal(&key, &covered(IndexDigest { records: 3, sum: 99 }));
        let hex: String = rec.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, GOLDEN);
        let k = digest_key(&key);
        let sum = crate::store::digest::record_hash(&k, &[5; 16]);
        assert_eq!(sum, GOLDEN_RECORD_HASH);
    }

    // Version 3 (with the snapshot tag); checked against an HMAC computed in Python
    // from docs/format.md alone.
    const GOLDEN: &str = "03d3b49f3e8d750739ecab50591e65970044d5767ed7f417bbbc13153d1c34bae0";
    const GOLDEN_RECORD_HASH: u64 = 0x766c_48ce_dfe0_ff8d;
}
