//! Lookup pseudonyms computed on SHA-256's compression function.
//!
//! A lookup pseudonym is HMAC-SHA256(key, `LOOKUP_DOMAIN` || kind || normalized value).
//! Audience matching computes one per uploaded row. Through `hmac`'s general API each
//! one also copies the keyed state, fills and drains two buffers and builds arrays of
//! its own, about a tenth of the time on top of the two compressions HMAC needs. Here
//! the key's padded blocks are compressed once, when the key is made; a row is
//! normalized straight into its padded message block, which is wiped after each row;
//! and each pseudonym costs its compressions and little else. Tests check the outputs
//! against `hmac`'s, for every kind and every length of value.

use sha2::digest::generic_array::GenericArray;
use zeroize::Zeroize;

use super::{IdentifierKind, Pseudonym, LOOKUP_DOMAIN};
use crate::normalize::{self, MAX_NORMALIZED};

/// SHA-256's initial hash value (FIPS 180-4, 5.3.3).
const IV: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

const BLOCK: usize = 64;
/// The domain prefix and the kind byte, which start every lookup message.
const PREFIX: usize = LOOKUP_DOMAIN.len() + 1;
/// Room for the longest message and its padding (the `0x80` byte and the 8-byte length).
const BUF: usize = (PREFIX + MAX_NORMALIZED + 9).div_ceil(BLOCK) * BLOCK;

/// A key's HMAC-SHA256 states: SHA-256 after its inner (ipad) block and after its outer
/// (opad) block. As secret as the key; wiped on drop.
#[derive(Clone)]
pub(crate) struct KeyStates {
    inner: [u32; 8],
    outer: [u32; 8],
}

impl KeyStates {
    pub(crate) fn new(key: &[u8; 32]) -> KeyStates {
        let padded = |pad: u8| {
            let mut block = [pad; BLOCK];
            for (b, k) in block.iter_mut().zip(key) {
                *b ^= k;
            }
            let mut state = IV;
            compress(&mut state, &block);
            block.zeroize();
            state
        };
        KeyStates {
            inner: padded(0x36),
            outer: padded(0x5c),
        }
    }
}

impl Drop for KeyStates {
    fn drop(&mut self) {
        self.inner.zeroize();
        self.outer.zeroize();
    }
}

fn compress(state: &mut [u32; 8], block: &[u8; BLOCK]) {
    sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
}

fn to_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    for (dst, w) in out.chunks_exact_mut(4).zip(state) {
        dst.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Computes lookup pseudonyms one after another in one message buffer, which holds the
/// domain prefix for good and is wiped after each value (and on drop).
pub(crate) struct LookupHasher<'k> {
    states: &'k KeyStates,
    buf: [u8; BUF],
    /// Message bytes written, the prefix included.
    len: usize,
}

impl<'k> LookupHasher<'k> {
    pub(crate) fn new(states: &'k KeyStates) -> LookupHasher<'k> {
        let mut buf = [0u8; BUF];
        if let Some(dst) = buf.get_mut(..LOOKUP_DOMAIN.len()) {
            dst.copy_from_slice(LOOKUP_DOMAIN);
        }
        LookupHasher {
            states,
            buf,
            len: PREFIX,
        }
    }

    /// The lookup pseudonym of a raw identifier of `kind`, checked and normalized as
    /// [`Identifier::parse`](super::Identifier::parse) does; `None` when it is malformed.
    pub(crate) fn of_raw(&mut self, kind: IdentifierKind, raw: &str) -> Option<Pseudonym> {
        if raw.len() > normalize::MAX_INPUT_LEN || raw.trim().is_empty() {
            return None;
        }
        self.start(kind);
        if kind.normalize_into(raw, self).is_err() {
            self.wipe();
            return None;
        }
        Some(self.finish())
    }

    /// The lookup pseudonym of an already normalized value; `None` only if it is longer
    /// than any normal form.
    pub(crate) fn of_normalized(&mut self, kind: IdentifierKind, normalized: &[u8]) -> Option<Pseudonym> {
        self.start(kind);
        if !self.push_bytes(normalized) {
            self.wipe();
            return None;
        }
        Some(self.finish())
    }

    fn start(&mut self, kind: IdentifierKind) {
        if let Some(b) = self.buf.get_mut(PREFIX - 1) {
            *b = kind.code();
        }
        self.len = PREFIX;
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> bool {
        let end = self.len + bytes.len();
        if end - PREFIX > MAX_NORMALIZED {
            return false;
        }
        match self.buf.get_mut(self.len..end) {
            Some(dst) => {
                dst.copy_from_slice(bytes);
                self.len = end;
                true
            }
            None => false,
        }
    }

    /// Pads the message, hashes it, wipes it and returns the HMAC.
    fn finish(&mut self) -> Pseudonym {
        let n = self.len;
        let end = (n + 9).div_ceil(BLOCK) * BLOCK;
        if let Some(b) = self.buf.get_mut(n) {
            *b = 0x80;
        }
        // The length in bits of what the inner hash covers: the key block and the message.
        let bits = ((BLOCK + n) as u64) * 8;
        if let Some(dst) = self.buf.get_mut(end.saturating_sub(8)..end) {
            dst.copy_from_slice(&bits.to_be_bytes());
        }
        let mut inner = self.states.inner;
        for block in self.buf.get(..end).unwrap_or_default().chunks_exact(BLOCK) {
            if let Ok(block) = <&[u8; BLOCK]>::try_from(block) {
                compress(&mut inner, block);
            }
        }
        self.wipe();
        // The outer hash: the key's outer block, then the inner digest, padded.
        let mut block = [0u8; BLOCK];
        let digest = to_bytes(&inner);
        inner.zeroize();
        for (dst, b) in block.iter_mut().zip(digest) {
            *dst = b;
        }
        let outer_bits = ((BLOCK + 32) as u64 * 8).to_be_bytes();
        for (dst, b) in block.iter_mut().skip(32).zip(std::iter::once(0x80)) {
            *dst = b;
        }
        for (dst, b) in block.iter_mut().skip(BLOCK - 8).zip(outer_bits) {
            *dst = b;
        }
        let mut outer = self.states.outer;
        compress(&mut outer, &block);
        Pseudonym(to_bytes(&outer))
    }

    /// Wipes what the last value wrote (the value, its padding and length), keeping the
    /// prefix.
    fn wipe(&mut self) {
        let end = (self.len + 9).div_ceil(BLOCK) * BLOCK;
        if let Some(used) = self.buf.get_mut(PREFIX..end.min(BUF)) {
            used.zeroize();
        }
        self.len = PREFIX;
    }
}

impl Drop for LookupHasher<'_> {
    fn drop(&mut self) {
        self.wipe();
    }
}

impl normalize::Out for LookupHasher<'_> {
    fn push_str(&mut self, s: &str) -> bool {
        self.push_bytes(s.as_bytes())
    }

    fn push_ascii(&mut self, b: u8) -> bool {
        if !b.is_ascii() || self.len - PREFIX >= MAX_NORMALIZED {
            return false;
        }
        match self.buf.get_mut(self.len) {
            Some(dst) => {
                *dst = b;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    fn written(&self) -> usize {
        self.len - PREFIX
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::super::PseudonymKey;
    use super::*;

    const KINDS: [IdentifierKind; 3] = [
        IdentifierKind::Phone,
        IdentifierKind::Email,
        IdentifierKind::DeviceId,
    ];

    #[test]
    fn equals_hmac_for_every_length_and_kind() {
        let key = PseudonymKey::from_bytes([7; 32]);
        let mut h = LookupHasher::new(&key.states);
        for len in 0..=MAX_NORMALIZED {
            let value: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            for kind in KINDS {
                assert_eq!(
                    h.of_normalized(kind, &value),
                    Some(key.lookup_hmac(kind, &value)),
                    "{kind:?} {len}"
                );
            }
        }
        assert_eq!(
            h.of_normalized(IdentifierKind::Email, &[b'a'; MAX_NORMALIZED + 1]),
            None
        );
        // Nothing of the values is left behind, only the prefix.
        assert_eq!(&h.buf[..LOOKUP_DOMAIN.len()], LOOKUP_DOMAIN);
        assert!(h.buf[LOOKUP_DOMAIN.len() + 1..].iter().all(|b| *b == 0));
    }

    #[test]
    fn raw_rows_equal_parsed_identifiers_and_leave_nothing() {
        let key = PseudonymKey::from_bytes([9; 32]);
        let mut h = LookupHasher::new(&key.states);
        let rows = [
            (IdentifierKind::Phone, "+1 (555) 010-9999"),
            (IdentifierKind::Email, " Someone.Long.Name@Example.COM "),
            (IdentifierKind::Email, "not an email"),
            (IdentifierKind::Phone, "+1 555 010 9999 and more"),
            (IdentifierKind::DeviceId, "6F9619FF-8B86-D011-B42D-00C04FC964FF"),
        ];
        for (kind, raw) in rows {
            let expect = kind
                .normalize(raw)
                .ok()
                .map(|n| key.lookup_hmac(kind, n.as_bytes()));
            assert_eq!(h.of_raw(kind, raw), expect, "{raw}");
            assert!(h.buf[PREFIX..].iter().all(|b| *b == 0), "{raw}");
        }
    }

    proptest::proptest! {
        /// Raw rows of any shape (the strategy of `normalize`'s agreement test) give
        /// `hmac`'s pseudonym of their normal form, or nothing when they are malformed,
        /// and leave nothing in the buffer.
        #[test]
        fn raw_rows_equal_hmac_of_their_normal_form(
            s in "\\PC{0,80}|[+0-9 ().@a-zA-Z-]{0,40}|[a-zA-Z]{1,64}@([a-zA-Z]{1,63}\\.){1,5}[A-Z]{2,63}|[a-z]{60,64}@[A-ZÉ]{60,63}\\.[a-zé]{60,63}\\.[a-zé]{60,63}\\.[a-z]{2,63}"
        ) {
            let key = PseudonymKey::from_bytes([3; 32]);
            let mut h = LookupHasher::new(&key.states);
            for kind in KINDS {
                let expect = kind.normalize(&s).ok().map(|n| key.lookup_hmac(kind, n.as_bytes()));
                proptest::prop_assert_eq!(h.of_raw(kind, &s), expect);
                proptest::prop_assert!(h.buf[PREFIX..].iter().all(|b| *b == 0));
            }
        }
    }
}
