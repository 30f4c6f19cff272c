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
use crate::lanes::{self, IV};
use crate::normalize::{self, MAX_NORMALIZED};

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
        if !self.normalized_raw(kind, raw) {
            self.wipe();
            return None;
        }
        Some(self.finish())
    }

    /// Writes the normal form of `raw` as the message; false when it is malformed.
    fn normalized_raw(&mut self, kind: IdentifierKind, raw: &str) -> bool {
        if raw.len() > normalize::MAX_INPUT_LEN || raw.trim().is_empty() {
            return false;
        }
        self.start(kind);
        kind.normalize_into(raw, self).is_ok()
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

    /// The lookup pseudonyms of many raw identifiers, in order, each as
    /// [`LookupHasher::of_raw`] gives it: in lanes where that is faster
    /// ([`lanes::worthwhile`]), one by one elsewhere.
    pub(crate) fn of_raws<'r>(
        &mut self,
        rows: impl ExactSizeIterator<Item = (IdentifierKind, &'r str)>,
    ) -> Vec<Option<(IdentifierKind, Pseudonym)>> {
        self.of_raws_in(rows, lanes::worthwhile())
    }

    /// [`LookupHasher::of_raws`], in lanes if `in_lanes`.
    pub(crate) fn of_raws_in<'r>(
        &mut self,
        rows: impl ExactSizeIterator<Item = (IdentifierKind, &'r str)>,
        in_lanes: bool,
    ) -> Vec<Option<(IdentifierKind, Pseudonym)>> {
        self.hash_many(rows, in_lanes, |h, (kind, raw)| {
            h.normalized_raw(kind, raw).then_some(kind)
        })
    }

    /// The lookup pseudonyms of many already normalized values, in order, each as
    /// [`LookupHasher::of_normalized`] gives it, in lanes if `in_lanes`: the audience
    /// bench's measure of the hashing alone (`bench_support::lookup_hashing`).
    pub(crate) fn of_normalized_many<'r>(
        &mut self,
        values: impl ExactSizeIterator<Item = (IdentifierKind, &'r [u8])>,
        in_lanes: bool,
    ) -> Vec<Option<(IdentifierKind, Pseudonym)>> {
        self.hash_many(values, in_lanes, |h, (kind, value)| {
            h.start(kind);
            h.push_bytes(value).then_some(kind)
        })
    }

    /// Hashes each item's message, written into the buffer by `fill` (which returns the
    /// kind, or `None` for a malformed item), in order. With `in_lanes`, messages that
    /// fit one block wait in a [`LaneBatch`] and are hashed sixteen at a time; longer
    /// ones are hashed at once. The buffer is wiped after every item.
    fn hash_many<I: ExactSizeIterator>(
        &mut self,
        items: I,
        in_lanes: bool,
        mut fill: impl FnMut(&mut Self, I::Item) -> Option<IdentifierKind>,
    ) -> Vec<Option<(IdentifierKind, Pseudonym)>> {
        let mut out = Vec::with_capacity(items.len());
        let mut batch = LaneBatch::default();
        for item in items {
            let Some(kind) = fill(self, item) else {
                self.wipe();
                out.push(None);
                continue;
            };
            if !in_lanes || self.len + 9 > BLOCK {
                out.push(Some((kind, self.finish())));
                continue;
            }
            self.pad();
            let row = out.len();
            // A placeholder until the batch is hashed: rows of a batch that cannot be
            // hashed stay `None` (malformed), failing closed.
            out.push(None);
            if let Some(block) = self.buf.first_chunk::<BLOCK>() {
                batch.push(block, kind, row);
            }
            self.wipe();
            if batch.len == lanes::LANES {
                batch.hash(self.states, &mut out);
            }
        }
        batch.hash(self.states, &mut out);
        out
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

    /// Pads the message (SHA-256's padding, for an inner hash that starts after the
    /// key block) and returns its length with the padding: a whole number of blocks.
    fn pad(&mut self) -> usize {
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
        end
    }

    /// Pads the message, hashes it, wipes it and returns the HMAC.
    fn finish(&mut self) -> Pseudonym {
        let end = self.pad();
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

/// Padded one-block messages waiting to be hashed in lanes: their words (message `l`
/// in `blocks[l]`), kinds and rows. Wiped after each hash and on drop.
#[derive(Default)]
struct LaneBatch {
    blocks: [[u32; 16]; lanes::LANES],
    rows: [(usize, Option<IdentifierKind>); lanes::LANES],
    len: usize,
}

impl LaneBatch {
    /// Adds a padded block, the message of row `row`; the caller hashes the batch when
    /// it is full (a push to a full batch is dropped, and its row stays malformed).
    fn push(&mut self, block: &[u8; BLOCK], kind: IdentifierKind, row: usize) {
        let (Some(slot), Some(words)) = (self.rows.get_mut(self.len), self.blocks.get_mut(self.len)) else {
            return;
        };
        *slot = (row, Some(kind));
        for (dst, src) in words.iter_mut().zip(block.chunks_exact(4)) {
            if let Ok(src) = <[u8; 4]>::try_from(src) {
                *dst = u32::from_be_bytes(src);
            }
        }
        self.len += 1;
    }

    /// HMACs the waiting messages (the inner hash from the key's inner state, then the
    /// outer hash of its digest), writes each pseudonym to its row of `out`, and wipes
    /// the batch.
    fn hash(&mut self, states: &KeyStates, out: &mut [Option<(IdentifierKind, Pseudonym)>]) {
        if self.len == 0 {
            return;
        }
        let mut digests = [[0u32; 8]; lanes::LANES];
        lanes::hmac_one_block(&states.inner, &states.outer, &self.blocks, self.len, &mut digests);
        for ((row, kind), digest) in self.rows.iter().zip(&digests).take(self.len) {
            if let (Some(dst), Some(kind)) = (out.get_mut(*row), kind) {
                *dst = Some((*kind, Pseudonym(to_bytes(digest))));
            }
        }
        for digest in digests.iter_mut().take(self.len) {
            digest.zeroize();
        }
        self.wipe();
    }

    /// Wipes the blocks in use and forgets the rows.
    fn wipe(&mut self) {
        for block in self.blocks.iter_mut().take(self.len) {
            block.zeroize();
        }
        self.rows = [(0, None); lanes::LANES];
        self.len = 0;
    }
}

impl Drop for LaneBatch {
    fn drop(&mut self) {
        self.wipe();
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

    /// Rows of every length around the one-block limit, malformed ones among them, in
    /// lanes and one by one: each row's pseudonym is `of_raw`'s, in order, and nothing
    /// of the values is left in the buffer or the batch.
    #[test]
    fn many_rows_in_lanes_equal_one_by_one() {
        let key = PseudonymKey::from_bytes([5; 32]);
        let mut h = LookupHasher::new(&key.states);
        let mut rows: Vec<(IdentifierKind, String)> = Vec::new();
        // Messages of 26 bytes of prefix plus 0 to 60 bytes: one block up to 55 bytes.
        for len in 1..=60 {
            let local = "a".repeat(len.max(3) - 2);
            rows.push((IdentifierKind::Email, format!("{local}@b.io")));
            rows.push((IdentifierKind::DeviceId, "x".repeat(len)));
            rows.push((
                IdentifierKind::Phone,
                format!("+1555{:0>width$}", len, width = len % 12),
            ));
            rows.push((IdentifierKind::Phone, "not a number".to_owned()));
        }
        for take in [0, 1, 15, 16, 17, 31, 33, rows.len()] {
            let part = &rows[..take];
            let expect: Vec<_> = part
                .iter()
                .map(|(k, r)| h.of_raw(*k, r).map(|p| (*k, p)))
                .collect();
            for in_lanes in [true, false] {
                let got = h.of_raws_in(part.iter().map(|(k, r)| (*k, r.as_str())), in_lanes);
                assert_eq!(got, expect, "{take} rows, in lanes: {in_lanes}");
                assert!(h.buf[PREFIX..].iter().all(|b| *b == 0));
            }
        }
        assert!(expect_some_of_each(&rows, &mut h));
    }

    /// The rows above include one-block and longer messages, and malformed rows.
    fn expect_some_of_each(rows: &[(IdentifierKind, String)], h: &mut LookupHasher<'_>) -> bool {
        let normal: Vec<_> = rows.iter().filter_map(|(k, r)| k.normalize(r).ok()).collect();
        normal.iter().any(|n| PREFIX + n.len() + 9 <= BLOCK)
            && normal.iter().any(|n| PREFIX + n.len() + 9 > BLOCK)
            && rows.iter().any(|(k, r)| h.of_raw(*k, r).is_none())
    }

    /// (The `Drop` implementation calls the same `wipe`.)
    #[test]
    fn a_batch_is_wiped_after_hashing() {
        let key = PseudonymKey::from_bytes([6; 32]);
        let mut batch = LaneBatch::default();
        batch.push(&[0x61; BLOCK], IdentifierKind::Email, 0);
        let mut out = vec![None];
        batch.hash(&key.states, &mut out);
        assert!(out[0].is_some());
        assert!(batch.blocks.iter().flatten().all(|w| *w == 0) && batch.len == 0);
        batch.push(&[0x61; BLOCK], IdentifierKind::Email, 0);
        batch.wipe();
        assert!(batch.blocks.iter().flatten().all(|w| *w == 0));
        // A row the output does not have stays unanswered rather than panicking.
        batch.push(&[0x61; BLOCK], IdentifierKind::Email, 7);
        batch.hash(&key.states, &mut out);
    }

    proptest::proptest! {
        /// Any rows, in lanes, give what one-by-one hashing gives.
        #[test]
        fn any_rows_in_lanes_equal_one_by_one(
            rows in proptest::collection::vec("\\PC{0,40}|[+0-9 ().@a-z-]{0,40}|[a-z]{1,40}@[a-z]{1,20}\\.[a-z]{2,6}", 0..70)
        ) {
            let key = PseudonymKey::from_bytes([4; 32]);
            let mut h = LookupHasher::new(&key.states);
            let kinds = rows.iter().map(|r| IdentifierKind::guess(r));
            let expect: Vec<_> = kinds.clone().zip(&rows).map(|(k, r)| h.of_raw(k, r).map(|p| (k, p))).collect();
            let got = h.of_raws_in(kinds.zip(&rows).map(|(k, r)| (k, r.as_str())), true);
            proptest::prop_assert_eq!(got, expect);
        }
    }

    proptest::proptest! {
        /// Raw rows of any shape (the strategy of `normalize`'s agreement test) give
        /// `hmac`'s pseudonym of their normal form, or nothing when they are malformed,
        /// and leave nothing in the buffer.
        #[test]
        fn raw_rows_equal_hmac_of_their_normal_form(
            s in proptest::prop_oneof![
                "\\PC{0,80}|[+0-9 ().@a-zA-Z-]{0,40}|[a-zA-Z]{1,64}@([a-zA-Z]{1,63}\\.){1,5}[A-Z]{2,63}|[a-z]{60,64}@[A-ZÉ]{60,63}\\.[a-zé]{60,63}\\.[a-zé]{60,63}\\.[a-z]{2,63}",
                normalize::PHONE_SHAPES,
                normalize::LOCAL_PART_SHAPES,
            ]
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
