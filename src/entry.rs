//! Ledger entries and the one place where bytes are encoded and decoded.
//!
//! # Format (version 1)
//!
//! A stored entry is `version (1 byte) || body || signature (64 bytes)`, where `body` is
//! the entry encoded with bincode 2.0.1 in a fixed configuration: big-endian,
//! fixed-width integers (no varints), enum tags as `u32`, lengths as `u64`, strings as
//! UTF-8, and a 64 KiB limit checked before anything is allocated. Signed structures
//! hold no maps and no floats, so every value has exactly one encoding. Decoding
//! rejects trailing bytes, out-of-range values and non-canonical scopes, and finally
//! re-encodes the entry and rejects it if the bytes differ.
//!
//! The signature is Ed25519 over `"consent-ledger entry v1\n" || version || body`.
//! The entry's hash, which the next entry carries as `prev_hash`, is SHA-256 over the
//! whole stored entry, signature included. See `docs/format.md` for the field tables;
//! golden vectors in the tests freeze the bytes.

use bincode::config::{BigEndian, Configuration, Fixint, Limit};
use bincode::{Decode, Encode};
use sha2::{Digest, Sha256};

use crate::error::{IntegrityProblem, WriteError};
use crate::identifier::{IdentifierKind, Pseudonym};
use crate::purpose::{is_valid_purpose_id, LegalBasis};
use crate::recipient::{Name, Recipient, RecipientScope, ScopeRepr};
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// The format version byte written first in every entry.
pub(crate) const FORMAT_VERSION: u8 = 1;
/// Largest encoded entry, signature included, that decoding accepts.
pub(crate) const MAX_ENTRY_LEN: usize = 64 * 1024;
/// Largest entry the ledger writes, signature included (review r146). sled 0.34.7 writes
/// a tree page larger than a quarter of its 512 KiB log segment, less headers, to a file
/// of its own under `blobs/`, and never syncs that file or its directory: a power loss
/// after the log that points to it was synced can lose or tear it, and with it every
/// entry of the page, acknowledged ones included (sled then drops the page, and the log
/// has a gap). A leaf of the entries tree holds at most 17 entries (sled splits one
/// holding more than 16), with about a dozen bytes of key and length each: 17 entries of
/// 7 KiB stay under the 131,020 bytes that go to the log. (Entries of up to
/// [`MAX_ENTRY_LEN`] written before this limit are still read.)
pub(crate) const MAX_WRITTEN_ENTRY_LEN: usize = 7 * 1024;
/// Largest number of recipients in one scope.
pub(crate) const MAX_SCOPE_RECIPIENTS: usize = 256;
const SIGNATURE_LEN: usize = 64;

type Config = Configuration<BigEndian, Fixint, Limit<MAX_ENTRY_LEN>>;

const fn config() -> Config {
    bincode::config::standard()
        .with_big_endian()
        .with_fixed_int_encoding()
        .with_limit::<MAX_ENTRY_LEN>()
}

/// SHA-256 output.
pub(crate) type Hash = [u8; 32];

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Actor {
    /// The person the data is about.
    Subject,
    /// A named operator of the application (staff member or tool), for example
    /// recording a consent given on paper or acting on an erasure request.
    Operator(Name),
    /// The ledger itself (expiry, key management).
    System,
}

/// One consent change, as stored (minus the signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub(crate) seq: u64,
    pub(crate) timestamp: Timestamp,
    pub(crate) actor: Actor,
    pub(crate) prev_hash: Hash,
    /// Random per entry, so hashes of low-entropy entries cannot be guessed from proofs.
    pub(crate) salt: [u8; 16],
    pub(crate) body: Body,
}

/// What changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Body {
    /// The first entry: which ledger, which key signs, which pseudonym key it uses.
    Genesis {
        ledger_id: [u8; 16],
        signing_key: [u8; 32],
        pseudonym_key_check: [u8; 16],
    },
    /// An identifier was collected for a purpose, for the recipients in `scope`.
    Collected {
        subject: SubjectId,
        kind: IdentifierKind,
        /// Pseudonym under the subject's own secret (destroyed on erasure).
        pseudonym: Pseudonym,
        purpose: String,
        basis: LegalBasis,
        scope: RecipientScope,
    },
    /// The subject consented to a purpose for the recipients in `scope`, replacing any earlier consent.
    Granted {
        subject: SubjectId,
        purpose: String,
        scope: RecipientScope,
        expires_at: Option<Timestamp>,
    },
    /// The subject withdrew consent to a purpose.
    Withdrawn { subject: SubjectId, purpose: String },
    /// A consent lapsed (recorded by the system when it noticed).
    Expired { subject: SubjectId, purpose: String },
    /// The subject was erased: its secret and index entries are destroyed.
    Erased { subject: SubjectId },
    /// From the next entry on, entries are signed by `new_key` (this entry is signed by
    /// the old one). `accept` is `new_key`'s signature accepting the rotation at this
    /// position of this log (see `signing::key_acceptance`): the old key alone cannot
    /// hand the log to a key.
    KeyRotated { new_key: [u8; 32], accept: [u8; 64] },
    /// `key` is compromised: entries it signed from position `from` on are not trusted.
    KeyRevoked { key: [u8; 32], from: u64 },
}

impl Body {
    /// Whether the entry only takes use or trust away (a withdrawal, an expiry, an
    /// erasure, a key revocation): applying it can only turn an allowed decision into a
    /// denied one, or a receipt issued into one refused.
    pub(crate) fn only_takes_away(&self) -> bool {
        matches!(
            self,
            Body::Withdrawn { .. } | Body::Expired { .. } | Body::Erased { .. } | Body::KeyRevoked { .. }
        )
    }

    /// The subject this entry is about, if any.
    pub(crate) fn subject(&self) -> Option<&SubjectId> {
        match self {
            Body::Collected { subject, .. }
            | Body::Granted { subject, .. }
            | Body::Withdrawn { subject, .. }
            | Body::Expired { subject, .. }
            | Body::Erased { subject } => Some(subject),
            Body::Genesis { .. } | Body::KeyRotated { .. } | Body::KeyRevoked { .. } => None,
        }
    }

    /// The purpose id this entry is about, if any.
    pub(crate) fn purpose(&self) -> Option<&str> {
        match self {
            Body::Collected { purpose, .. }
            | Body::Granted { purpose, .. }
            | Body::Withdrawn { purpose, .. }
            | Body::Expired { purpose, .. } => Some(purpose),
            Body::Genesis { .. }
            | Body::Erased { .. }
            | Body::KeyRotated { .. }
            | Body::KeyRevoked { .. } => None,
        }
    }
}

/// A decoded, checked stored entry.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) entry: Entry,
    /// `version || body`: the signed part.
    pub(crate) signed_len: usize,
    pub(crate) signature: [u8; 64],
    pub(crate) hash: Hash,
}

// ---- wire types: private mirrors with bincode derives --------------------------------

#[derive(Encode, Decode)]
struct WireEntry {
    seq: u64,
    timestamp: u64,
    actor: WireActor,
    prev_hash: [u8; 32],
    salt: [u8; 16],
    body: WireBody,
}

#[derive(Encode, Decode)]
enum WireActor {
    Subject,
    Operator(String),
    System,
}

#[derive(Encode, Decode)]
enum WireBody {
    Genesis {
        ledger_id: [u8; 16],
        signing_key: [u8; 32],
        pseudonym_key_check: [u8; 16],
    },
    Collected {
        subject: String,
        kind: u8,
        pseudonym: [u8; 32],
        purpose: String,
        basis: u8,
        scope: WireScope,
    },
    Granted {
        subject: String,
        purpose: String,
        scope: WireScope,
        expires_at: Option<u64>,
    },
    Withdrawn {
        subject: String,
        purpose: String,
    },
    Expired {
        subject: String,
        purpose: String,
    },
    Erased {
        subject: String,
    },
    KeyRotated {
        new_key: [u8; 32],
        accept: [u8; 64],
    },
    KeyRevoked {
        key: [u8; 32],
        from: u64,
    },
}

#[derive(Encode, Decode)]
enum WireScope {
    Recipients(Vec<WireRecipient>),
    AllPartners,
}

#[derive(Encode, Decode)]
enum WireRecipient {
    FirstParty,
    Partner(String),
    DeveloperApp(String),
}

// Borrowed mirrors of the wire types, for encoding without cloning strings. Same
// variants in the same order and same fields, so their bytes are the owned types'
// bytes (`&str` encodes exactly as `String`); the golden vectors check it.

#[derive(Encode)]
struct WireEntryRef<'a> {
    seq: u64,
    timestamp: u64,
    actor: WireActorRef<'a>,
    prev_hash: [u8; 32],
    salt: [u8; 16],
    body: WireBodyRef<'a>,
}

#[derive(Encode)]
enum WireActorRef<'a> {
    Subject,
    Operator(&'a str),
    System,
}

#[derive(Encode)]
enum WireBodyRef<'a> {
    Genesis {
        ledger_id: [u8; 16],
        signing_key: [u8; 32],
        pseudonym_key_check: [u8; 16],
    },
    Collected {
        subject: &'a str,
        kind: u8,
        pseudonym: [u8; 32],
        purpose: &'a str,
        basis: u8,
        scope: WireScopeRef<'a>,
    },
    Granted {
        subject: &'a str,
        purpose: &'a str,
        scope: WireScopeRef<'a>,
        expires_at: Option<u64>,
    },
    Withdrawn {
        subject: &'a str,
        purpose: &'a str,
    },
    Expired {
        subject: &'a str,
        purpose: &'a str,
    },
    Erased {
        subject: &'a str,
    },
    KeyRotated {
        new_key: [u8; 32],
        accept: [u8; 64],
    },
    KeyRevoked {
        key: [u8; 32],
        from: u64,
    },
}

#[derive(Encode)]
enum WireScopeRef<'a> {
    Recipients(Vec<WireRecipientRef<'a>>),
    AllPartners,
}

#[derive(Encode)]
enum WireRecipientRef<'a> {
    FirstParty,
    Partner(&'a str),
    DeveloperApp(&'a str),
}

fn wire_scope_ref(s: &RecipientScope) -> WireScopeRef<'_> {
    match &s.0 {
        ScopeRepr::AllPartners => WireScopeRef::AllPartners,
        ScopeRepr::Recipients(list) => WireScopeRef::Recipients(
            list.iter()
                .map(|r| match r {
                    Recipient::FirstParty => WireRecipientRef::FirstParty,
                    Recipient::Partner(n) => WireRecipientRef::Partner(n.as_str()),
                    Recipient::DeveloperApp(n) => WireRecipientRef::DeveloperApp(n.as_str()),
                })
                .collect(),
        ),
    }
}

fn to_wire_ref(e: &Entry) -> WireEntryRef<'_> {
    WireEntryRef {
        seq: e.seq,
        timestamp: e.timestamp.as_millis(),
        actor: match &e.actor {
            Actor::Subject => WireActorRef::Subject,
            Actor::Operator(n) => WireActorRef::Operator(n.as_str()),
            Actor::System => WireActorRef::System,
        },
        prev_hash: e.prev_hash,
        salt: e.salt,
        body: match &e.body {
            Body::Genesis {
                ledger_id,
                signing_key,
                pseudonym_key_check,
            } => WireBodyRef::Genesis {
                ledger_id: *ledger_id,
                signing_key: *signing_key,
                pseudonym_key_check: *pseudonym_key_check,
            },
            Body::Collected {
                subject,
                kind,
                pseudonym,
                purpose,
                basis,
                scope,
            } => WireBodyRef::Collected {
                subject: subject.as_str(),
                kind: kind.code(),
                pseudonym: pseudonym.0,
                purpose,
                basis: basis_code(*basis),
                scope: wire_scope_ref(scope),
            },
            Body::Granted {
                subject,
                purpose,
                scope,
                expires_at,
            } => WireBodyRef::Granted {
                subject: subject.as_str(),
                purpose,
                scope: wire_scope_ref(scope),
                expires_at: expires_at.map(Timestamp::as_millis),
            },
            Body::Withdrawn { subject, purpose } => WireBodyRef::Withdrawn {
                subject: subject.as_str(),
                purpose,
            },
            Body::Expired { subject, purpose } => WireBodyRef::Expired {
                subject: subject.as_str(),
                purpose,
            },
            Body::Erased { subject } => WireBodyRef::Erased {
                subject: subject.as_str(),
            },
            Body::KeyRotated { new_key, accept } => WireBodyRef::KeyRotated {
                new_key: *new_key,
                accept: *accept,
            },
            Body::KeyRevoked { key, from } => WireBodyRef::KeyRevoked {
                key: *key,
                from: *from,
            },
        },
    }
}

/// A bincode writer that compares what is written with expected bytes instead of
/// storing it: re-encoding a decoded entry checks it is canonical without allocating.
struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
}

impl bincode::enc::write::Writer for Compare<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        let end = self.pos.saturating_add(bytes.len());
        match self.expected.get(self.pos..end) {
            Some(e) if e == bytes => {
                self.pos = end;
                Ok(())
            }
            _ => Err(bincode::error::EncodeError::Other(
                "differs from the stored bytes",
            )),
        }
    }
}

/// Whether encoding `entry` gives exactly `body`.
fn encodes_to(entry: &Entry, body: &[u8]) -> bool {
    let mut w = Compare {
        expected: body,
        pos: 0,
    };
    bincode::encode_into_writer(to_wire_ref(entry), &mut w, config()).is_ok() && w.pos == body.len()
}

const fn basis_code(b: LegalBasis) -> u8 {
    match b {
        LegalBasis::Consent => 1,
        LegalBasis::Contract => 2,
        LegalBasis::LegitimateInterest => 3,
        LegalBasis::LegalObligation => 4,
    }
}

const fn basis_from_code(c: u8) -> Option<LegalBasis> {
    match c {
        1 => Some(LegalBasis::Consent),
        2 => Some(LegalBasis::Contract),
        3 => Some(LegalBasis::LegitimateInterest),
        4 => Some(LegalBasis::LegalObligation),
        _ => None,
    }
}

#[cfg(test)]
fn wire_scope(s: &RecipientScope) -> WireScope {
    match &s.0 {
        ScopeRepr::AllPartners => WireScope::AllPartners,
        ScopeRepr::Recipients(list) => WireScope::Recipients(
            list.iter()
                .map(|r| match r {
                    Recipient::FirstParty => WireRecipient::FirstParty,
                    Recipient::Partner(n) => WireRecipient::Partner(n.as_str().to_owned()),
                    Recipient::DeveloperApp(n) => WireRecipient::DeveloperApp(n.as_str().to_owned()),
                })
                .collect(),
        ),
    }
}

/// The owned wire form (tests build non-canonical encodings with it).
#[cfg(test)]
fn to_wire(e: &Entry) -> WireEntry {
    let s = |x: &SubjectId| x.as_str().to_owned();
    WireEntry {
        seq: e.seq,
        timestamp: e.timestamp.as_millis(),
        actor: match &e.actor {
            Actor::Subject => WireActor::Subject,
            Actor::Operator(n) => WireActor::Operator(n.as_str().to_owned()),
            Actor::System => WireActor::System,
        },
        prev_hash: e.prev_hash,
        salt: e.salt,
        body: match &e.body {
            Body::Genesis {
                ledger_id,
                signing_key,
                pseudonym_key_check,
            } => WireBody::Genesis {
                ledger_id: *ledger_id,
                signing_key: *signing_key,
                pseudonym_key_check: *pseudonym_key_check,
            },
            Body::Collected {
                subject,
                kind,
                pseudonym,
                purpose,
                basis,
                scope,
            } => WireBody::Collected {
                subject: s(subject),
                kind: kind.code(),
                pseudonym: pseudonym.0,
                purpose: purpose.clone(),
                basis: basis_code(*basis),
                scope: wire_scope(scope),
            },
            Body::Granted {
                subject,
                purpose,
                scope,
                expires_at,
            } => WireBody::Granted {
                subject: s(subject),
                purpose: purpose.clone(),
                scope: wire_scope(scope),
                expires_at: expires_at.map(Timestamp::as_millis),
            },
            Body::Withdrawn { subject, purpose } => WireBody::Withdrawn {
                subject: s(subject),
                purpose: purpose.clone(),
            },
            Body::Expired { subject, purpose } => WireBody::Expired {
                subject: s(subject),
                purpose: purpose.clone(),
            },
            Body::Erased { subject } => WireBody::Erased { subject: s(subject) },
            Body::KeyRotated { new_key, accept } => WireBody::KeyRotated {
                new_key: *new_key,
                accept: *accept,
            },
            Body::KeyRevoked { key, from } => WireBody::KeyRevoked {
                key: *key,
                from: *from,
            },
        },
    }
}

type Invalid = IntegrityProblem;

fn subject_from(s: String) -> Result<SubjectId, Invalid> {
    SubjectId::stored(&s).ok_or(Invalid::InvalidField("subject id"))
}

/// The canonical encoding of a recipient scope on its own (as inside an entry), for
/// state snapshots.
pub(crate) fn encode_scope(s: &RecipientScope) -> Vec<u8> {
    // Bounded: a scope is at most MAX_SCOPE_RECIPIENTS names, far under the limit.
    bincode::encode_to_vec(wire_scope_ref(s), config()).unwrap_or_default()
}

/// Decodes a scope written by [`encode_scope`]; `None` unless the bytes are exactly a
/// canonical encoding of a valid scope.
pub(crate) fn decode_scope(bytes: &[u8]) -> Option<RecipientScope> {
    let (wire, used): (WireScope, usize) = bincode::decode_from_slice(bytes, config()).ok()?;
    let scope = scope_from(wire).ok()?;
    (used == bytes.len() && encode_scope(&scope) == bytes).then_some(scope)
}

fn purpose_from(p: String) -> Result<String, Invalid> {
    if is_valid_purpose_id(&p) {
        Ok(p)
    } else {
        Err(Invalid::InvalidField("purpose id"))
    }
}

fn scope_from(w: WireScope) -> Result<RecipientScope, Invalid> {
    match w {
        WireScope::AllPartners => Ok(RecipientScope(ScopeRepr::AllPartners)),
        WireScope::Recipients(list) => {
            if list.is_empty() || list.len() > MAX_SCOPE_RECIPIENTS {
                return Err(Invalid::InvalidField("recipient scope"));
            }
            let mut out = Vec::with_capacity(list.len());
            for r in list {
                let name = |n: String| Name::stored(&n).ok_or(Invalid::InvalidField("recipient name"));
                out.push(match r {
                    WireRecipient::FirstParty => Recipient::FirstParty,
                    WireRecipient::Partner(n) => Recipient::Partner(name(n)?),
                    WireRecipient::DeveloperApp(n) => Recipient::DeveloperApp(name(n)?),
                });
            }
            // Canonical: strictly increasing (sorted, no duplicates).
            if out.windows(2).any(|w| matches!(w, [a, b] if a >= b)) {
                return Err(Invalid::InvalidField("recipient scope order"));
            }
            Ok(RecipientScope(ScopeRepr::Recipients(out)))
        }
    }
}

fn from_wire(w: WireEntry) -> Result<Entry, Invalid> {
    let actor = match w.actor {
        WireActor::Subject => Actor::Subject,
        WireActor::System => Actor::System,
        WireActor::Operator(n) => {
            Actor::Operator(Name::stored(&n).ok_or(Invalid::InvalidField("operator name"))?)
        }
    };
    let body = match w.body {
        WireBody::Genesis {
            ledger_id,
            signing_key,
            pseudonym_key_check,
        } => Body::Genesis {
            ledger_id,
            signing_key,
            pseudonym_key_check,
        },
        WireBody::Collected {
            subject,
            kind,
            pseudonym,
            purpose,
            basis,
            scope,
        } => Body::Collected {
            subject: subject_from(subject)?,
            kind: IdentifierKind::from_code(kind).ok_or(Invalid::InvalidField("identifier kind"))?,
            pseudonym: Pseudonym(pseudonym),
            purpose: purpose_from(purpose)?,
            basis: basis_from_code(basis).ok_or(Invalid::InvalidField("legal basis"))?,
            scope: scope_from(scope)?,
        },
        WireBody::Granted {
            subject,
            purpose,
            scope,
            expires_at,
        } => Body::Granted {
            subject: subject_from(subject)?,
            purpose: purpose_from(purpose)?,
            scope: scope_from(scope)?,
            expires_at: expires_at.map(Timestamp::from_millis),
        },
        WireBody::Withdrawn { subject, purpose } => Body::Withdrawn {
            subject: subject_from(subject)?,
            purpose: purpose_from(purpose)?,
        },
        WireBody::Expired { subject, purpose } => Body::Expired {
            subject: subject_from(subject)?,
            purpose: purpose_from(purpose)?,
        },
        WireBody::Erased { subject } => Body::Erased {
            subject: subject_from(subject)?,
        },
        WireBody::KeyRotated { new_key, accept } => Body::KeyRotated { new_key, accept },
        WireBody::KeyRevoked { key, from } => Body::KeyRevoked { key, from },
    };
    Ok(Entry {
        seq: w.seq,
        timestamp: Timestamp::from_millis(w.timestamp),
        actor,
        prev_hash: w.prev_hash,
        salt: w.salt,
        body,
    })
}

/// Refuses an entry of `signed_len` bytes before its signature that the ledger must not
/// write ([`MAX_WRITTEN_ENTRY_LEN`]).
pub(crate) fn check_writable(signed_len: usize) -> Result<(), WriteError> {
    let size = signed_len.saturating_add(SIGNATURE_LEN);
    if size > MAX_WRITTEN_ENTRY_LEN {
        return Err(WriteError::TooLarge {
            size,
            max: MAX_WRITTEN_ENTRY_LEN,
        });
    }
    Ok(())
}

/// Encodes `version || body`: the bytes to sign.
pub(crate) fn encode_signed_part(e: &Entry) -> Result<Vec<u8>, WriteError> {
    let mut out = vec![FORMAT_VERSION];
    let body = bincode::encode_to_vec(to_wire_ref(e), config()).map_err(|_| WriteError::TooLarge {
        size: usize::MAX,
        max: MAX_ENTRY_LEN,
    })?;
    out.extend_from_slice(&body);
    let size = out.len() + SIGNATURE_LEN;
    if size > MAX_ENTRY_LEN {
        return Err(WriteError::TooLarge {
            size,
            max: MAX_ENTRY_LEN,
        });
    }
    Ok(out)
}

/// Appends the signature to the signed part, giving the stored bytes.
pub(crate) fn seal(mut signed_part: Vec<u8>, signature: &[u8; 64]) -> Vec<u8> {
    signed_part.extend_from_slice(signature);
    signed_part
}

/// SHA-256 of a stored entry: what the next entry's `prev_hash` must be.
pub(crate) fn entry_hash(stored: &[u8]) -> Hash {
    Sha256::digest(stored).into()
}

fn describe(e: &bincode::error::DecodeError) -> &'static str {
    use bincode::error::DecodeError as D;
    match e {
        D::UnexpectedEnd { .. } => "ends early",
        D::LimitExceeded => "a length exceeds the size limit",
        D::InvalidBooleanValue(_) => "invalid boolean",
        D::UnexpectedVariant { .. } => "unknown variant tag",
        D::Utf8 { .. } => "invalid UTF-8 in a string",
        D::InvalidCharEncoding(_) => "invalid character",
        _ => "malformed",
    }
}

/// Decodes and checks stored entry bytes: version, size, strict decoding, no trailing
/// bytes, valid fields, canonical form. Does not check the signature or the chain.
pub(crate) fn decode(bytes: &[u8]) -> Result<Stored, IntegrityProblem> {
    if bytes.len() > MAX_ENTRY_LEN {
        return Err(Invalid::Undecodable("larger than the maximum entry size"));
    }
    let (version, rest) = bytes.split_first().ok_or(Invalid::Undecodable("empty"))?;
    if *version != FORMAT_VERSION {
        return Err(Invalid::UnsupportedVersion(*version));
    }
    let (body, signature) = rest
        .split_last_chunk::<SIGNATURE_LEN>()
        .ok_or(Invalid::Undecodable("shorter than a signature"))?;
    let (wire, used): (WireEntry, usize) =
        bincode::decode_from_slice(body, config()).map_err(|e| Invalid::Undecodable(describe(&e)))?;
    if used != body.len() {
        return Err(Invalid::Undecodable("trailing bytes after the entry"));
    }
    let entry = from_wire(wire)?;
    if !encodes_to(&entry, body) {
        return Err(Invalid::NonCanonical);
    }
    Ok(Stored {
        entry,
        signed_len: 1 + body.len(),
        signature: *signature,
        hash: entry_hash(bytes),
    })
}

/// What the hash chain needs from stored entry bytes, read without decoding the body
/// (see [`chain_fields`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ChainFields {
    pub(crate) seq: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) timestamp: u64,
    pub(crate) prev_hash: Hash,
    /// Genesis, key rotation or key revocation (or a body tag this version does not
    /// know): entries a walker must decode to follow the signing keys.
    pub(crate) changes_keys: bool,
    /// `version || body`: the signed part.
    pub(crate) signed_len: usize,
    pub(crate) signature: [u8; 64],
}

/// Reads the position, timestamp and previous-entry hash of stored entry bytes, and
/// whether the entry changes signing keys, from the fixed layout of the format (see
/// the module docs: big-endian fixed-width integers, `u32` enum tags, `u64` string
/// lengths) without decoding the rest. `None` when the bytes are too short or do not
/// have that layout.
///
/// Only for entries whose bytes the hash chain already pins down, such as those
/// before a state snapshot's position when opening: they were fully decoded and
/// checked when they were appended or last replayed, and any change to their bytes
/// changes their hash. Anything else goes through [`decode`].
pub(crate) fn chain_fields(bytes: &[u8]) -> Option<ChainFields> {
    if bytes.len() > MAX_ENTRY_LEN {
        return None;
    }
    let (&version, rest) = bytes.split_first()?;
    if version != FORMAT_VERSION {
        return None;
    }
    let (body, signature) = rest.split_last_chunk::<SIGNATURE_LEN>()?;
    let seq = u64::from_be_bytes(*body.first_chunk::<8>()?);
    let after_seq = body.get(8..)?;
    let timestamp = u64::from_be_bytes(*after_seq.first_chunk::<8>()?);
    let actor = after_seq.get(8..)?;
    let actor_tag = u32::from_be_bytes(*actor.first_chunk::<4>()?);
    let after_actor = match actor_tag {
        // Subject, System: the tag alone.
        0 | 2 => actor.get(4..)?,
        // Operator(String): a u64 length, then the bytes.
        1 => {
            let len = u64::from_be_bytes(*actor.get(4..)?.first_chunk::<8>()?);
            actor.get(12usize.checked_add(usize::try_from(len).ok()?)?..)?
        }
        _ => return None,
    };
    let prev_hash = *after_actor.first_chunk::<32>()?;
    // Then the 16-byte salt, then the body's tag.
    let body_tag = u32::from_be_bytes(*after_actor.get(48..)?.first_chunk::<4>()?);
    Some(ChainFields {
        seq,
        timestamp,
        prev_hash,
        // Genesis 0, KeyRotated 6, KeyRevoked 7 (the order of `WireBody`).
        changes_keys: !(1..=5).contains(&body_tag),
        signed_len: 1 + body.len(),
        signature: *signature,
    })
}

/// The signed part of stored bytes that [`decode`] accepted.
pub(crate) fn signed_part<'a>(bytes: &'a [u8], stored: &Stored) -> &'a [u8] {
    bytes.get(..stored.signed_len).unwrap_or(&[])
}

// ---- index records ---------------------------------------------------------------------

/// Index record: lookup pseudonym -> (subject, kind, subject-keyed pseudonym), with an
/// HMAC tag under the pseudonym key so a tampered index is detected when loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IndexRecord {
    pub(crate) subject: SubjectId,
    pub(crate) kind: IdentifierKind,
    pub(crate) pseudonym: Pseudonym,
    pub(crate) tag: [u8; 32],
}

#[derive(Encode, Decode)]
struct WireIndex {
    version: u8,
    subject: String,
    kind: u8,
    pseudonym: [u8; 32],
    tag: [u8; 32],
}

impl IndexRecord {
    /// The parts the tag authenticates, together with the lookup key the record is stored under.
    pub(crate) fn tagged_parts<'a>(
        lookup: &'a Pseudonym,
        subject: &'a SubjectId,
        kind: &'a [u8; 1],
        pseudonym: &'a Pseudonym,
    ) -> [&'a [u8]; 4] {
        [&lookup.0, subject.as_str().as_bytes(), kind, &pseudonym.0]
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let wire = WireIndex {
            version: FORMAT_VERSION,
            subject: self.subject.as_str().to_owned(),
            kind: self.kind.code(),
            pseudonym: self.pseudonym.0,
            tag: self.tag,
        };
        // Bounded: a subject id is at most 128 bytes, far under the limit.
        bincode::encode_to_vec(wire, config()).unwrap_or_default()
    }

    pub(crate) fn decode(bytes: &[u8]) -> Option<IndexRecord> {
        let (wire, used): (WireIndex, usize) = bincode::decode_from_slice(bytes, config()).ok()?;
        if used != bytes.len() || wire.version != FORMAT_VERSION {
            return None;
        }
        let rec = IndexRecord {
            subject: SubjectId::stored(&wire.subject)?,
            kind: IdentifierKind::from_code(wire.kind)?,
            pseudonym: Pseudonym(wire.pseudonym),
            tag: wire.tag,
        };
        (rec.encode() == bytes).then_some(rec)
    }
}

// ---- decision records ------------------------------------------------------------------

/// The fields of a decision record (one allowed use, or an aggregate of several), as
/// encoded; the authentication tag is added by the recorder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecisionFields {
    pub(crate) subject: SubjectId,
    pub(crate) purpose: String,
    pub(crate) recipient: Recipient,
    pub(crate) basis: LegalBasis,
    pub(crate) allowed_by: u64,
    pub(crate) collected_at: u64,
    pub(crate) first_position: u64,
    pub(crate) last_position: u64,
    pub(crate) first_at: Timestamp,
    pub(crate) last_at: Timestamp,
    pub(crate) count: u64,
}

#[derive(Encode, Decode)]
struct WireDecision {
    version: u8,
    subject: String,
    purpose: String,
    recipient: WireRecipient,
    basis: u8,
    allowed_by: u64,
    collected_at: u64,
    first_position: u64,
    last_position: u64,
    first_at: u64,
    last_at: u64,
    count: u64,
}

impl DecisionFields {
    /// The canonical bytes (bounded: ids and names are short, far under the limit).
    pub(crate) fn encode(&self) -> Vec<u8> {
        let wire = WireDecision {
            version: FORMAT_VERSION,
            subject: self.subject.as_str().to_owned(),
            purpose: self.purpose.clone(),
            recipient: match &self.recipient {
                Recipient::FirstParty => WireRecipient::FirstParty,
                Recipient::Partner(n) => WireRecipient::Partner(n.as_str().to_owned()),
                Recipient::DeveloperApp(n) => WireRecipient::DeveloperApp(n.as_str().to_owned()),
            },
            basis: basis_code(self.basis),
            allowed_by: self.allowed_by,
            collected_at: self.collected_at,
            first_position: self.first_position,
            last_position: self.last_position,
            first_at: self.first_at.as_millis(),
            last_at: self.last_at.as_millis(),
            count: self.count,
        };
        bincode::encode_to_vec(wire, config()).unwrap_or_default()
    }

    /// Decodes canonical bytes: any other bytes (trailing data, another version, an
    /// invalid field, a non-canonical form, an inconsistent range) are `None`.
    pub(crate) fn decode(bytes: &[u8]) -> Option<DecisionFields> {
        let (w, used): (WireDecision, usize) = bincode::decode_from_slice(bytes, config()).ok()?;
        if used != bytes.len() || w.version != FORMAT_VERSION {
            return None;
        }
        let name = |n: String| Name::stored(&n);
        let rec = DecisionFields {
            subject: SubjectId::stored(&w.subject)?,
            purpose: purpose_from(w.purpose).ok()?,
            recipient: match w.recipient {
                WireRecipient::FirstParty => Recipient::FirstParty,
                WireRecipient::Partner(n) => Recipient::Partner(name(n)?),
                WireRecipient::DeveloperApp(n) => Recipient::DeveloperApp(name(n)?),
            },
            basis: basis_from_code(w.basis)?,
            allowed_by: w.allowed_by,
            collected_at: w.collected_at,
            first_position: w.first_position,
            last_position: w.last_position,
            first_at: Timestamp::from_millis(w.first_at),
            last_at: Timestamp::from_millis(w.last_at),
            count: w.count,
        };
        let consistent =
            rec.count > 0 && rec.first_position <= rec.last_position && rec.first_at <= rec.last_at;
        (consistent && rec.encode() == bytes).then_some(rec)
    }
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;

    fn subject() -> SubjectId {
        SubjectId::new("user-1").unwrap()
    }

    /// One entry of each kind with fixed field values.
    pub(crate) fn samples() -> Vec<(&'static str, Entry)> {
        let base = |seq: u64, body: Body| Entry {
            seq,
            timestamp: Timestamp::from_millis(1_700_000_000_000 + seq),
            actor: Actor::Subject,
            prev_hash: [seq as u8; 32],
            salt: [0xAB; 16],
            body,
        };
        let partner = Recipient::partner("acme").unwrap();
        vec![
            (
                "genesis",
                Entry {
                    actor: Actor::System,
                    ..base(
                        0,
                        Body::Genesis {
                            ledger_id: [1; 16],
                            signing_key: [2; 32],
                            pseudonym_key_check: [3; 16],
                        },
                    )
                },
            ),
            (
                "collected",
                base(
                    1,
                    Body::Collected {
                        subject: subject(),
                        kind: IdentifierKind::Phone,
                        pseudonym: Pseudonym([4; 32]),
                        purpose: "security".into(),
                        basis: LegalBasis::LegitimateInterest,
                        scope: RecipientScope::first_party(),
                    },
                ),
            ),
            (
                "granted",
                base(
                    2,
                    Body::Granted {
                        subject: subject(),
                        purpose: "partner-sharing".into(),
                        scope: RecipientScope::any_of([partner, Recipient::FirstParty]).unwrap(),
                        expires_at: Some(Timestamp::from_millis(1_800_000_000_000)),
                    },
                ),
            ),
            (
                "withdrawn",
                Entry {
                    actor: Actor::Operator(Name::new("dpo").unwrap()),
                    ..base(
                        3,
                        Body::Withdrawn {
                            subject: subject(),
                            purpose: "partner-sharing".into(),
                        },
                    )
                },
            ),
            (
                "expired",
                Entry {
                    actor: Actor::System,
                    ..base(
                        4,
                        Body::Expired {
                            subject: subject(),
                            purpose: "advertising".into(),
                        },
                    )
                },
            ),
            ("erased", base(5, Body::Erased { subject: subject() })),
            (
                "key-rotated",
                Entry {
                    actor: Actor::System,
                    ..base(
                        6,
                        Body::KeyRotated {
                            new_key: [5; 32],
                            accept: [6; 64],
                        },
                    )
                },
            ),
            (
                "key-revoked",
                Entry {
                    actor: Actor::System,
                    ..base(
                        7,
                        Body::KeyRevoked {
                            key: [6; 32],
                            from: 3,
                        },
                    )
                },
            ),
        ]
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    /// Golden vectors: the signed part of each sample, in hex. Changing these means a
    /// new format version, never an edit.
    const GOLDEN: &[(&str, &str)] = &[
        ("genesis", "0100000000000000000000018bcfe56800000000020000000000000000000000000000000000000000000000000000000000000000abababababababababababababababab0000000001010101010101010101010101010101020202020202020202020202020202020202020202020202020202020202020203030303030303030303030303030303"),
        ("collected", "0100000000000000010000018bcfe56801000000000101010101010101010101010101010101010101010101010101010101010101abababababababababababababababab000000010000000000000006757365722d31010404040404040404040404040404040404040404040404040404040404040404000000000000000873656375726974790300000000000000000000000100000000"),
        ("granted", "0100000000000000020000018bcfe56802000000000202020202020202020202020202020202020202020202020202020202020202abababababababababababababababab000000020000000000000006757365722d31000000000000000f706172746e65722d73686172696e670000000000000000000000020000000000000001000000000000000461636d6501000001a3185c5000"),
        ("withdrawn", "0100000000000000030000018bcfe5680300000001000000000000000364706f0303030303030303030303030303030303030303030303030303030303030303abababababababababababababababab000000030000000000000006757365722d31000000000000000f706172746e65722d73686172696e67"),
        ("expired", "0100000000000000040000018bcfe56804000000020404040404040404040404040404040404040404040404040404040404040404abababababababababababababababab000000040000000000000006757365722d31000000000000000b6164766572746973696e67"),
        ("erased", "0100000000000000050000018bcfe56805000000000505050505050505050505050505050505050505050505050505050505050505abababababababababababababababab000000050000000000000006757365722d31"),
        ("key-rotated", "0100000000000000060000018bcfe56806000000020606060606060606060606060606060606060606060606060606060606060606abababababababababababababababab00000006050505050505050505050505050505050505050505050505050505050505050506060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606060606"),
        ("key-revoked", "0100000000000000070000018bcfe56807000000020707070707070707070707070707070707070707070707070707070707070707abababababababababababababababab0000000706060606060606060606060606060606060606060606060606060606060606060000000000000003"),
    ];

    #[test]
    fn golden_vectors_freeze_the_encoding() {
        let mut failures = Vec::new();
        for (name, entry) in samples() {
            let bytes = hex(&encode_signed_part(&entry).unwrap());
            match GOLDEN.iter().find(|(n, _)| *n == name) {
                Some((_, want)) if *want == bytes => {}
                _ => failures.push(format!("(\"{name}\", \"{bytes}\"),")),
            }
        }
        assert!(
            failures.is_empty(),
            "golden vectors differ or are missing:\n{}",
            failures.join("\n")
        );
    }

    /// An entry whose subject id, recipient name and operator name the current rule for
    /// new names refuses (it grew stricter after they were written) still decodes: the
    /// log that holds it opens. Only a name's shape is checked when it is read back.
    #[test]
    fn names_refused_as_new_input_still_decode() {
        let old = "callto:+15550109999";
        assert!(SubjectId::new(old).is_err() && Name::new(old).is_err());
        let entry = Entry {
            seq: 2,
            timestamp: Timestamp::from_millis(1_700_000_000_002),
            actor: Actor::Operator(Name::stored(old).unwrap()),
            prev_hash: [2; 32],
            salt: [0xAB; 16],
            body: Body::Granted {
                subject: SubjectId::stored(old).unwrap(),
                purpose: "partner-sharing".into(),
                scope: RecipientScope::only(Recipient::Partner(Name::stored(old).unwrap())),
                expires_at: None,
            },
        };
        let bytes = seal(encode_signed_part(&entry).unwrap(), &[9; 64]);
        let stored = decode(&bytes).unwrap();
        assert_eq!(stored.entry.body.subject().map(SubjectId::as_str), Some(old));
    }

    /// `chain_fields` reads what `decode` reads, for every kind of entry and actor
    /// (the withdrawal has an operator, whose name moves the fields after it), and
    /// flags exactly the entries that change keys.
    #[test]
    fn chain_fields_agree_with_decoding() {
        for (name, entry) in samples() {
            let bytes = seal(encode_signed_part(&entry).unwrap(), &[9; 64]);
            let stored = decode(&bytes).unwrap();
            let f = chain_fields(&bytes).unwrap_or_else(|| panic!("{name}"));
            assert_eq!(f.seq, stored.entry.seq, "{name}");
            assert_eq!(f.timestamp, stored.entry.timestamp.as_millis(), "{name}");
            assert_eq!(f.prev_hash, stored.entry.prev_hash, "{name}");
            assert_eq!(
                (f.signed_len, f.signature),
                (stored.signed_len, stored.signature),
                "{name}"
            );
            let changes_keys = matches!(
                stored.entry.body,
                Body::Genesis { .. } | Body::KeyRotated { .. } | Body::KeyRevoked { .. }
            );
            assert_eq!(f.changes_keys, changes_keys, "{name}");
            // Never a panic on a prefix, and no fields from bytes too short to hold them.
            for cut in 0..bytes.len() {
                if let Some(g) = chain_fields(&bytes[..cut]) {
                    assert!(
                        cut >= 1 + 8 + 8 + 4 + 32 + 16 + 4 + SIGNATURE_LEN,
                        "{name} cut at {cut}"
                    );
                    // A prefix shares the front fields; its last 64 bytes are taken
                    // as the signature, so everything after the body's tag moves.
                    assert_eq!(
                        (g.seq, g.timestamp, g.prev_hash, g.changes_keys),
                        (f.seq, f.timestamp, f.prev_hash, f.changes_keys),
                        "{name} cut at {cut}"
                    );
                    assert_eq!(g.signed_len, cut - SIGNATURE_LEN, "{name} cut at {cut}");
                }
            }
        }
        let mut wrong_version = seal(encode_signed_part(&samples()[1].1).unwrap(), &[9; 64]);
        wrong_version[0] = 2;
        assert_eq!(chain_fields(&wrong_version), None);
    }

    /// Decision records are not signed, but they are stored: their bytes are frozen too.
    #[test]
    fn decision_record_golden_vector() {
        let rec = DecisionFields {
            subject: subject(),
            purpose: "advertising".into(),
            recipient: Recipient::Partner(Name::new("acme").unwrap()),
            basis: LegalBasis::Consent,
            allowed_by: 7,
            collected_at: 3,
            first_position: 8,
            last_position: 9,
            first_at: Timestamp::from_millis(1_700_000_000_000),
            last_at: Timestamp::from_millis(1_700_000_000_500),
            count: 2,
        };
        let bytes = rec.encode();
        assert_eq!(
            hex(&bytes),
            "010000000000000006757365722d31000000000000000b6164766572746973696e6700000001000000000000000461636d650100000000000000070000000000000003000000000000000800000000000000090000018bcfe568000000018bcfe569f40000000000000002"
        );
        assert_eq!(DecisionFields::decode(&bytes), Some(rec.clone()));
        // Trailing bytes, a cut, another version, an empty range: all refused.
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(DecisionFields::decode(&longer), None);
        assert_eq!(DecisionFields::decode(&bytes[..bytes.len() - 1]), None);
        let mut other = bytes.clone();
        other[0] = 2;
        assert_eq!(DecisionFields::decode(&other), None);
        let none = DecisionFields { count: 0, ..rec };
        assert_eq!(DecisionFields::decode(&none.encode()), None);
    }

    #[test]
    fn round_trip_every_kind() {
        for (name, entry) in samples() {
            let signed = encode_signed_part(&entry).unwrap();
            let bytes = seal(signed.clone(), &[7; 64]);
            let stored = decode(&bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(stored.entry, entry, "{name}");
            assert_eq!(signed_part(&bytes, &stored), &signed[..]);
            assert_eq!(stored.signature, [7; 64]);
            assert_eq!(stored.hash, entry_hash(&bytes));
        }
    }

    #[test]
    fn rejects_bad_bytes() {
        let (_, entry) = samples().remove(2);
        let bytes = seal(encode_signed_part(&entry).unwrap(), &[0; 64]);
        assert_eq!(decode(&[]).unwrap_err(), Invalid::Undecodable("empty"));
        assert_eq!(decode(&[2, 0, 0]).unwrap_err(), Invalid::UnsupportedVersion(2));
        assert!(matches!(
            decode(&bytes[..40]).unwrap_err(),
            Invalid::Undecodable(_)
        ));
        // Trailing byte inside the body (before the signature).
        let mut extra = encode_signed_part(&entry).unwrap();
        extra.push(0);
        assert!(matches!(
            decode(&seal(extra, &[0; 64])).unwrap_err(),
            Invalid::Undecodable(_)
        ));
        // A length field claiming a terabyte must fail without allocating it.
        let mut huge = vec![1u8];
        huge.extend_from_slice(&0u64.to_be_bytes()); // seq
        huge.extend_from_slice(&0u64.to_be_bytes()); // timestamp
        huge.extend_from_slice(&1u32.to_be_bytes()); // Operator
        huge.extend_from_slice(&(1u64 << 40).to_be_bytes());
        huge.extend_from_slice(&[0; 64]);
        assert!(matches!(decode(&huge).unwrap_err(), Invalid::Undecodable(_)));
        // Unsorted scope is not canonical.
        let mut unsorted = to_wire(&entry);
        if let WireBody::Granted {
            scope: WireScope::Recipients(list),
            ..
        } = &mut unsorted.body
        {
            list.reverse();
        }
        let mut b = vec![1u8];
        b.extend(bincode::encode_to_vec(unsorted, config()).unwrap());
        assert_eq!(
            decode(&seal(b, &[0; 64])).unwrap_err(),
            Invalid::InvalidField("recipient scope order")
        );
    }

    #[test]
    fn canonical_check_compares_every_byte() {
        for (name, entry) in samples() {
            let signed = encode_signed_part(&entry).unwrap();
            let body = &signed[1..];
            assert!(encodes_to(&entry, body), "{name}");
            let mut changed = body.to_vec();
            let last = changed.len() - 1;
            changed[last] ^= 1;
            assert!(!encodes_to(&entry, &changed), "{name}");
            assert!(!encodes_to(&entry, &body[..last]), "{name}");
            let mut longer = body.to_vec();
            longer.push(0);
            assert!(!encodes_to(&entry, &longer), "{name}");
            // The owned and borrowed wire forms encode identically.
            assert_eq!(
                bincode::encode_to_vec(to_wire(&entry), config()).unwrap(),
                body,
                "{name}"
            );
        }
    }

    #[test]
    fn index_records_round_trip_and_reject_garbage() {
        let rec = IndexRecord {
            subject: subject(),
            kind: IdentifierKind::Email,
            pseudonym: Pseudonym([9; 32]),
            tag: [8; 32],
        };
        let bytes = rec.encode();
        assert_eq!(IndexRecord::decode(&bytes), Some(rec));
        assert_eq!(IndexRecord::decode(&bytes[..bytes.len() - 1]), None);
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(IndexRecord::decode(&longer), None);
        assert_eq!(IndexRecord::decode(&[]), None);
    }
}
