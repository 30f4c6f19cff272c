//! Personal identifiers bound to the purpose they were collected for, and their pseudonyms.
//!
//! An [`Identifier<P>`] holds a normalized phone number, email address or device id
//! together with, in its type, the purpose `P` it was collected for. Its value is
//! private: `Debug` and `Display` are redacted, it implements neither `Clone` nor
//! `Serialize`, there is no conversion between purposes, and it is read only through a
//! [`Use`](crate::Use) ([`Use::expose`](crate::Use::expose) for the first party's own
//! use, or a delivery checked against the recipient), which only an allowed decision produces. The
//! value is wiped from memory when the identifier is dropped.
//!
//! These guard against mistakes and shortcuts in the application's own code (an ad
//! matcher handed 2FA numbers, a comparison that matches without asking), not against
//! code in the process set on getting around them: an identifier is not tied to one
//! ledger, so such code could open a ledger of its own, collect the identifier there
//! and have that ledger allow its use, or read the process's memory.
//!
//! The ledger never stores the value: it stores keyed pseudonyms (HMAC-SHA256 over the
//! normalized value) computed with a [`PseudonymKey`] the application supplies.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use crate::error::IdentifierError;
use crate::normalize;
use crate::purpose::Purpose;

mod fast;
pub(crate) use fast::LookupHasher;

type HmacSha256 = Hmac<Sha256>;

/// The kind of a personal identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive] // more kinds (postal address, national id) may come
pub enum IdentifierKind {
    /// A phone number, normalized to E.164 (`+15550109999`).
    Phone,
    /// An email address: trimmed, ASCII local part, domain lower-cased (an
    /// internationalized domain in its ASCII form, `xn--…`).
    Email,
    /// A device or advertising id: trimmed, ASCII lower-cased.
    DeviceId,
}

impl IdentifierKind {
    /// The byte written to the ledger for this kind.
    pub(crate) const fn code(self) -> u8 {
        match self {
            IdentifierKind::Phone => 1,
            IdentifierKind::Email => 2,
            IdentifierKind::DeviceId => 3,
        }
    }

    /// The kind a ledger byte stands for.
    pub(crate) const fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(IdentifierKind::Phone),
            2 => Some(IdentifierKind::Email),
            3 => Some(IdentifierKind::DeviceId),
            _ => None,
        }
    }

    /// A stable lower-case name, used in exports.
    pub const fn as_str(self) -> &'static str {
        match self {
            IdentifierKind::Phone => "phone number",
            IdentifierKind::Email => "email address",
            IdentifierKind::DeviceId => "device id",
        }
    }

    fn normalize(self, raw: &str) -> Result<String, &'static str> {
        match self {
            IdentifierKind::Phone => normalize::phone(raw),
            IdentifierKind::Email => normalize::email(raw),
            IdentifierKind::DeviceId => normalize::device_id(raw),
        }
    }

    fn normalize_into(self, raw: &str, out: &mut impl normalize::Out) -> Result<(), &'static str> {
        match self {
            IdentifierKind::Phone => normalize::phone_into(raw, out),
            IdentifierKind::Email => normalize::email_into(raw, out),
            IdentifierKind::DeviceId => normalize::device_id_into(raw, out),
        }
    }
}

impl fmt::Display for IdentifierKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A personal identifier collected for purpose `P`.
///
/// ```
/// use consent_ledger::{Identifier, Security};
///
/// let a = Identifier::<Security>::phone("+1 (555) 010-9999")?;
/// assert_eq!(format!("{a:?}"), "Identifier<security>(phone number, [REDACTED])");
/// # Ok::<(), consent_ledger::IdentifierError>(())
/// ```
///
/// Two identifiers cannot be compared outside the crate: with a comparison, code that
/// holds identifiers could match them against an uploaded list, or test guesses of a
/// value (a phone number has few possible values), without any use-time decision: the
/// very shortcut behind 2FA numbers matched for ads. (This guards against such
/// shortcuts, not against code determined to get around the crate: see the module
/// docs.)
///
/// ```compile_fail,E0624
/// use consent_ledger::{Identifier, Security};
/// let held = Identifier::<Security>::phone("+1 (555) 010-9999").unwrap();
/// let guess = Identifier::<Security>::phone("+15550109999").unwrap();
/// let _ = held.same_as(&guess);
/// ```
///
/// An identifier collected for security cannot be given to code that needs one for
/// advertising:
///
/// ```compile_fail,E0308
/// use consent_ledger::{Advertising, Identifier, Security};
/// fn match_audience(_: &Identifier<Advertising>) {}
/// let phone = Identifier::<Security>::phone("+15550109999").unwrap();
/// match_audience(&phone);
/// ```
pub struct Identifier<P: Purpose> {
    kind: IdentifierKind,
    value: Zeroizing<String>,
    /// Lookup pseudonym under the first key it was computed with (set once; under any
    /// other key it is computed each time), so repeated decisions cost a hash-map
    /// lookup rather than an HMAC.
    cached: OnceLock<(KeyTag, Pseudonym)>,
    _purpose: PhantomData<fn(P) -> P>,
}

impl<P: Purpose> Identifier<P> {
    /// Parses and normalizes a raw identifier of the given kind.
    ///
    /// # Errors
    /// [`IdentifierError`] naming the kind and the problem; the message never contains the input.
    pub fn parse(kind: IdentifierKind, raw: &str) -> Result<Self, IdentifierError> {
        if raw.len() > normalize::MAX_INPUT_LEN {
            return Err(IdentifierError::TooLong {
                kind,
                len: raw.len(),
                max: normalize::MAX_INPUT_LEN,
            });
        }
        if raw.trim().is_empty() {
            return Err(IdentifierError::Empty { kind });
        }
        let value = kind
            .normalize(raw)
            .map_err(|problem| IdentifierError::Invalid { kind, problem })?;
        Ok(Identifier {
            kind,
            value: Zeroizing::new(value),
            cached: OnceLock::new(),
            _purpose: PhantomData,
        })
    }

    /// A phone number in international form (`+` and country code), normalized to E.164.
    ///
    /// # Errors
    /// See [`Identifier::parse`].
    pub fn phone(raw: &str) -> Result<Self, IdentifierError> {
        Self::parse(IdentifierKind::Phone, raw)
    }

    /// An email address.
    ///
    /// # Errors
    /// See [`Identifier::parse`].
    pub fn email(raw: &str) -> Result<Self, IdentifierError> {
        Self::parse(IdentifierKind::Email, raw)
    }

    /// A device or advertising id.
    ///
    /// # Errors
    /// See [`Identifier::parse`].
    pub fn device_id(raw: &str) -> Result<Self, IdentifierError> {
        Self::parse(IdentifierKind::DeviceId, raw)
    }

    /// The kind of identifier.
    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    /// Whether both are the same identifier after normalization (same kind and value),
    /// compared in constant time. Not public: see the type's docs.
    #[cfg_attr(
        not(any(test, feature = "fuzzing")),
        allow(dead_code, reason = "tests and fuzzing")
    )]
    pub(crate) fn same_as(&self, other: &Identifier<P>) -> bool {
        self.kind == other.kind && constant_time_eq(self.value.as_bytes(), other.value.as_bytes())
    }

    /// The normalized value; crate-internal, reachable by users only through a `Use`.
    pub(crate) fn normalized(&self) -> &str {
        &self.value
    }

    /// The lookup pseudonym under `key`, cached for the first key used (a later key's is
    /// computed each time, not cached).
    pub(crate) fn lookup(&self, key: &PseudonymKey) -> Pseudonym {
        if let Some((tag, p)) = self.cached.get() {
            if *tag == key.tag {
                return *p;
            }
        }
        let p = key.lookup(self.kind, self.value.as_bytes());
        let _ = self.cached.set((key.tag, p));
        p
    }
}

/// The lookup pseudonym of a raw identifier of `kind`, checked and normalized as
/// [`Identifier::parse`] does; `None` when it is malformed. Nothing of the value is
/// left in the buffers. For one row; bulk matching keeps one [`LookupHasher`] for many.
#[cfg_attr(not(feature = "fuzzing"), allow(dead_code, reason = "fuzzing"))]
pub(crate) fn lookup_of_raw(key: &PseudonymKey, kind: IdentifierKind, raw: &str) -> Option<Pseudonym> {
    key.lookup_hasher().of_raw(kind, raw)
}

#[cfg_attr(
    not(any(test, feature = "fuzzing")),
    allow(dead_code, reason = "tests and fuzzing")
)]
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl<P: Purpose> fmt::Debug for Identifier<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identifier<{}>({}, [REDACTED])", P::ID, self.kind)
    }
}

impl<P: Purpose> fmt::Display for Identifier<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[REDACTED {}]", self.kind)
    }
}

/// A keyed pseudonym of an identifier: HMAC-SHA256 output.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Pseudonym(pub(crate) [u8; 32]);

impl fmt::Debug for Pseudonym {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A pseudonym is not the value, but it is still linkable: show only a prefix.
        write!(f, "Pseudonym({:02x}{:02x}..)", self.0[0], self.0[1])
    }
}

// So that a list of them can be wiped before its memory is freed (an erasure's
// lookups, held as `Zeroizing<Vec<Pseudonym>>`).
impl Zeroize for Pseudonym {
    fn zeroize(&mut self) {
        self.0.zeroize();
    }
}

/// Identifies a pseudonym key without revealing it (first bytes of an HMAC under it).
pub(crate) type KeyTag = [u8; 16];

/// Domain-separation prefixes for every HMAC this crate computes.
const LOOKUP_DOMAIN: &[u8] = b"consent-ledger/v1/lookup\0";
const SUBJECT_DOMAIN: &[u8] = b"consent-ledger/v1/subject-identifier\0";
const CHECK_DOMAIN: &[u8] = b"consent-ledger/v1/key-check\0";
const INDEX_DOMAIN: &[u8] = b"consent-ledger/v1/index-record\0";
const SUBJECT_KEY_DOMAIN: &[u8] = b"consent-ledger/v1/subject-key\0";

/// The application's secret key for pseudonyms (HMAC-SHA256).
///
/// Keep it outside the database directory: whoever holds the database and this key can
/// test guesses of identifiers against the lookup index. Its `Debug` output is redacted
/// and its bytes are wiped on drop.
#[derive(Clone)]
pub struct PseudonymKey {
    bytes: Zeroizing<[u8; 32]>,
    /// A keyed HMAC ready to clone, so each pseudonym costs one HMAC, not a re-keying.
    mac: HmacSha256,
    /// The same key's HMAC states, for lookup pseudonyms computed in bulk.
    states: fast::KeyStates,
    tag: KeyTag,
}

impl PseudonymKey {
    /// A key from 32 secret bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        let bytes = Zeroizing::new(bytes);
        let mac = keyed(&bytes[..]);
        let mut check = mac.clone();
        check.update(CHECK_DOMAIN);
        let full = check.finalize().into_bytes();
        let mut tag = [0u8; 16];
        for (t, b) in tag.iter_mut().zip(full.iter()) {
            *t = *b;
        }
        let states = fast::KeyStates::new(&bytes);
        PseudonymKey {
            bytes,
            mac,
            states,
            tag,
        }
    }

    /// A fresh random key from the operating system's generator.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 32];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes);
        let key = Self::from_bytes(bytes);
        bytes.zeroize();
        key
    }

    /// The secret bytes, for storing the key in a secret manager.
    pub fn expose_bytes(&self) -> &[u8; 32] {
        &self.bytes
    }

    /// A non-secret check value: equal keys give equal values. Stored in the ledger so
    /// that opening with the wrong key is an error rather than silent misses.
    pub(crate) fn check_value(&self) -> KeyTag {
        self.tag
    }

    pub(crate) fn lookup(&self, kind: IdentifierKind, normalized: &[u8]) -> Pseudonym {
        // Every normal form fits the fast path; `hmac` computes anything longer.
        self.lookup_hasher()
            .of_normalized(kind, normalized)
            .unwrap_or_else(|| self.lookup_hmac(kind, normalized))
    }

    /// A hasher of lookup pseudonyms under this key, for many values in a row.
    pub(crate) fn lookup_hasher(&self) -> LookupHasher<'_> {
        LookupHasher::new(&self.states)
    }

    /// [`PseudonymKey::lookup`] through `hmac`'s API: what the fast path is checked
    /// against.
    pub(crate) fn lookup_hmac(&self, kind: IdentifierKind, normalized: &[u8]) -> Pseudonym {
        let mut mac = self.mac.clone();
        mac.update(LOOKUP_DOMAIN);
        mac.update(&[kind.code()]);
        mac.update(normalized);
        Pseudonym(mac.finalize().into_bytes().into())
    }

    /// Authentication tag of an index record, so a tampered index cannot map an
    /// identifier to another subject's collection. (Also the tag of decision records
    /// and state snapshots, with their own first part.)
    pub(crate) fn index_tag(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.index_mac(parts).finalize().into_bytes().into()
    }

    /// Whether `tag` is [`PseudonymKey::index_tag`] of `parts`, compared in constant
    /// time (`hmac`'s `verify_slice`), so that how long a rejection takes says nothing
    /// about how much of a forged tag was right.
    pub(crate) fn verify_index_tag(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.index_mac(parts).verify_slice(tag).is_ok()
    }

    fn index_mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut mac = self.mac.clone();
        mac.update(INDEX_DOMAIN);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PseudonymKey([REDACTED])")
    }
}

fn keyed(key: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail; the fallback keeps the
    // function total without a panic path.
    HmacSha256::new_from_slice(key)
        .unwrap_or_else(|_| <HmacSha256 as hmac::digest::KeyInit>::new(&Default::default()))
}

/// A subject's own pseudonym secret. Identifiers appear in the signed log only as
/// pseudonyms under this secret, which lives outside the log and is destroyed when the
/// subject is erased, so that the log keeps verifying but no longer links to anyone.
#[derive(Clone)]
pub(crate) struct SubjectSecret(Zeroizing<[u8; 32]>);

impl SubjectSecret {
    pub(crate) fn generate() -> Self {
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut bytes[..]);
        SubjectSecret(bytes)
    }

    /// A secret copied straight from stored bytes into its wiped buffer (no copy left
    /// behind on the stack); `None` if they are not 32 bytes.
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut secret = Zeroizing::new([0u8; 32]);
        if bytes.len() != secret.len() {
            return None;
        }
        secret.copy_from_slice(bytes);
        Some(SubjectSecret(secret))
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The subject pseudonym of an identifier: an HMAC keyed with both this secret and
    /// the application's pseudonym key (through [`SUBJECT_KEY_DOMAIN`]). The secret is
    /// stored in the vault, in the same directory as the pseudonyms; keyed with it
    /// alone, a copy of the directory would let anyone test guessed identifiers
    /// against the log (found by review r113). Erasing the secret still unlinks them.
    pub(crate) fn pseudonym(&self, key: &PseudonymKey, kind: IdentifierKind, normalized: &str) -> Pseudonym {
        #[cfg(test)]
        if WRITE_LEGACY.with(std::cell::Cell::get) {
            return self.legacy_pseudonym(kind, normalized);
        }
        let mut subject_key = key.mac.clone();
        subject_key.update(SUBJECT_KEY_DOMAIN);
        subject_key.update(&self.0[..]);
        let subject_key = Zeroizing::new(<[u8; 32]>::from(subject_key.finalize().into_bytes()));
        Self::pseudonym_under(&subject_key[..], kind, normalized)
    }

    /// The subject pseudonym as ledgers made before 2026-11-30 wrote it: keyed with the
    /// secret alone. Read only to keep linking an identifier such a ledger holds.
    pub(crate) fn legacy_pseudonym(&self, kind: IdentifierKind, normalized: &str) -> Pseudonym {
        Self::pseudonym_under(&self.0[..], kind, normalized)
    }

    fn pseudonym_under(key: &[u8], kind: IdentifierKind, normalized: &str) -> Pseudonym {
        let mut mac = keyed(key);
        mac.update(SUBJECT_DOMAIN);
        mac.update(&[kind.code()]);
        mac.update(normalized.as_bytes());
        Pseudonym(mac.finalize().into_bytes().into())
    }
}

#[cfg(test)]
thread_local! {
    /// Set by tests: subject pseudonyms are made as ledgers made before 2026-11-30 made
    /// them, to build such a ledger.
    pub(crate) static WRITE_LEGACY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl fmt::Debug for SubjectSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SubjectSecret([REDACTED])")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::purpose::{Advertising, Security};

    /// An erasure's lookups are held as `Zeroizing<Vec<Pseudonym>>`, which wipes each
    /// element with this (and then the rest of the allocation) when dropped.
    #[test]
    fn pseudonyms_wipe_to_zeros() {
        let mut lookups = vec![Pseudonym([0xa5; 32]); 3];
        // What `Vec::zeroize` does to the elements, before it clears the vector.
        lookups.iter_mut().zeroize();
        assert!(lookups.iter().all(|p| p.0 == [0; 32]), "{lookups:?}");
        let mut held = Zeroizing::new(vec![Pseudonym([0x5a; 32]); 2]);
        held.zeroize();
        assert!(held.is_empty());
    }

    #[test]
    fn equal_after_normalization() {
        let a = Identifier::<Security>::phone("+1 (555) 010-9999").unwrap();
        let b = Identifier::<Security>::phone("+15550109999").unwrap();
        assert!(a.same_as(&b));
        let key = PseudonymKey::from_bytes([7; 32]);
        assert_eq!(a.lookup(&key), b.lookup(&key));
        let e1 = Identifier::<Advertising>::email("  Alice@Example.COM ").unwrap();
        let e2 = Identifier::<Advertising>::email("Alice@example.com").unwrap();
        assert!(e1.same_as(&e2));
    }

    #[test]
    fn pseudonyms_depend_on_key_kind_and_value() {
        let k1 = PseudonymKey::from_bytes([1; 32]);
        let k2 = PseudonymKey::from_bytes([2; 32]);
        let a = Identifier::<Security>::phone("+15550109999").unwrap();
        let p1 = a.lookup(&k1);
        // The cache must not answer for another key.
        assert_ne!(a.lookup(&k2), p1);
        assert_eq!(a.lookup(&k1), p1);
        assert_ne!(k1.lookup(IdentifierKind::DeviceId, b"+15550109999"), p1);
        assert_ne!(k1.check_value(), k2.check_value());
        let s = SubjectSecret::from_slice(&[1; 32]).unwrap();
        let sp = s.pseudonym(&k1, IdentifierKind::Phone, "+15550109999");
        assert_ne!(sp, p1);
        // Keyed with both: neither the secret nor the pseudonym key alone gives it.
        assert_ne!(sp, s.pseudonym(&k2, IdentifierKind::Phone, "+15550109999"));
        assert_ne!(sp, s.legacy_pseudonym(IdentifierKind::Phone, "+15550109999"));
        let other = SubjectSecret::from_slice(&[2; 32]).unwrap();
        assert_ne!(sp, other.pseudonym(&k1, IdentifierKind::Phone, "+15550109999"));
    }

    #[test]
    fn errors_and_debug_never_show_the_value() {
        let raw = "+1555010999x";
        let err = Identifier::<Security>::phone(raw).unwrap_err();
        assert!(!err.to_string().contains("555"));
        assert!(!format!("{err:?}").contains("555"));
        let big = "9".repeat(1 << 20);
        let err = Identifier::<Security>::phone(&big).unwrap_err();
        assert!(matches!(err, IdentifierError::TooLong { .. }));
        assert!(matches!(
            Identifier::<Security>::email("   ").unwrap_err(),
            IdentifierError::Empty {
                kind: IdentifierKind::Email
            }
        ));
        let id = Identifier::<Security>::email("alice@example.com").unwrap();
        assert!(!format!("{id:?} {id}").contains("alice"));
        let key = PseudonymKey::generate();
        assert_eq!(format!("{key:?}"), "PseudonymKey([REDACTED])");
    }

    #[test]
    fn kind_codes_round_trip() {
        for k in [
            IdentifierKind::Phone,
            IdentifierKind::Email,
            IdentifierKind::DeviceId,
        ] {
            assert_eq!(IdentifierKind::from_code(k.code()), Some(k));
        }
        assert_eq!(IdentifierKind::from_code(0), None);
    }
}
