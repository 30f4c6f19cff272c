//! The vault's index digest: an order-independent sum over its index records, kept up
//! to date in memory by every write and removal, and computed from the slots when the
//! vault is opened.
//!
//! Each index record counts as SipHash-2-4, under a key derived from the application's
//! pseudonym key, of its slot's checksum (the 16 bytes of SHA-256 the slot ends with,
//! which opening computes and checks anyway): one short keyed hash per record on top of
//! what the scan already does, no further SHA-256 or HMAC. The digest is the number of
//! index records and the wrapping sum of those hashes. Removing a record subtracts its
//! hash, so the digest depends only on which records the vault holds, not on their order
//! or on the slots they sit in.
//!
//! The digest is never stored as such: a close stores an HMAC over it, the log's length
//! and head (`ledger::vault_digest`), so the per-record hashes stay unknown to anyone
//! without the key, and a vault whose records differ from the ones written (one lost,
//! altered, or added) gives another digest but by chance (2^-64 per try, and trying
//! means having the ledger opened).

use std::fmt;

/// The key of the per-record hashes (two 64-bit SipHash keys). Derived from the
/// pseudonym key; its `Debug` output is redacted.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct DigestKey {
    k0: u64,
    k1: u64,
}

impl DigestKey {
    /// The key from 16 secret bytes (little-endian halves).
    pub(crate) fn from_bytes(bytes: [u8; 16]) -> Self {
        let [a, b, c, d, e, f, g, h, i, j, k, l, m, n, o, p] = bytes;
        DigestKey {
            k0: u64::from_le_bytes([a, b, c, d, e, f, g, h]),
            k1: u64::from_le_bytes([i, j, k, l, m, n, o, p]),
        }
    }
}

impl fmt::Debug for DigestKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DigestKey([REDACTED])")
    }
}

/// The digest of a vault's index records: how many there are, and the wrapping sum of
/// their keyed hashes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct IndexDigest {
    /// Index records held.
    pub(crate) records: u64,
    /// Wrapping sum of their keyed hashes.
    pub(crate) sum: u64,
}

/// The digest as the vault keeps it: known only while every change to the index
/// records went through the vault with a key set (a failed write, or a slot found
/// changed under the open vault, makes it unknown for the rest of the process).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Tally {
    key: Option<DigestKey>,
    digest: IndexDigest,
    unknown: bool,
}

impl Tally {
    /// An empty tally under `key` (none: the digest stays unknown).
    pub(crate) fn new(key: Option<DigestKey>) -> Self {
        Tally {
            key,
            digest: IndexDigest::default(),
            unknown: key.is_none(),
        }
    }

    /// The digest, if known.
    pub(crate) fn digest(&self) -> Option<IndexDigest> {
        (!self.unknown).then_some(self.digest)
    }

    /// Counts the index record whose slot checksum is `checksum`.
    pub(crate) fn add(&mut self, checksum: &[u8]) {
        if let Some(h) = self.hash(checksum) {
            self.digest.records = self.digest.records.wrapping_add(1);
            self.digest.sum = self.digest.sum.wrapping_add(h);
        }
    }

    /// Stops counting the index record whose slot checksum is `checksum`.
    pub(crate) fn remove(&mut self, checksum: &[u8]) {
        if let Some(h) = self.hash(checksum) {
            self.digest.records = self.digest.records.wrapping_sub(1);
            self.digest.sum = self.digest.sum.wrapping_sub(h);
        }
    }

    /// The index records are no longer known (for the rest of the process).
    pub(crate) fn lose_track(&mut self) {
        self.unknown = true;
    }

    fn hash(&mut self, checksum: &[u8]) -> Option<u64> {
        let key = self.key?;
        let Ok(sum) = <[u8; 16]>::try_from(checksum) else {
            // Not a slot checksum: cannot happen (callers pass the last 16 bytes of a
            // slot), and if it did the digest could not be trusted.
            self.unknown = true;
            return None;
        };
        Some(record_hash(&key, &sum))
    }
}

/// The keyed hash one index record counts as: SipHash-2-4 of its slot checksum.
pub(crate) fn record_hash(key: &DigestKey, checksum: &[u8; 16]) -> u64 {
    siphash24(key.k0, key.k1, checksum)
}

/// SipHash-2-4 with a 64-bit output (Aumasson and Bernstein), of `bytes` under the key
/// `(k0, k1)` (the key's bytes read as two little-endian halves).
fn siphash24(k0: u64, k1: u64, bytes: &[u8]) -> u64 {
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let blocks = bytes.chunks_exact(8);
    let tail = blocks.remainder();
    for block in blocks {
        let mut m = [0u8; 8];
        m.copy_from_slice(block);
        compress(&mut v, u64::from_le_bytes(m), 2);
    }
    let mut last = [0u8; 8];
    for (l, b) in last.iter_mut().zip(tail) {
        *l = *b;
    }
    // The message length mod 256 in the last byte.
    last[7] = bytes.len() as u8;
    compress(&mut v, u64::from_le_bytes(last), 2);
    v[2] ^= 0xff;
    for _ in 0..4 {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn compress(v: &mut [u64; 4], m: u64, rounds: usize) {
    v[3] ^= m;
    for _ in 0..rounds {
        sip_round(v);
    }
    v[0] ^= m;
}

fn sip_round(v: &mut [u64; 4]) {
    let [mut v0, mut v1, mut v2, mut v3] = *v;
    v0 = v0.wrapping_add(v1);
    v1 = v1.rotate_left(13) ^ v0;
    v0 = v0.rotate_left(32);
    v2 = v2.wrapping_add(v3);
    v3 = v3.rotate_left(16) ^ v2;
    v0 = v0.wrapping_add(v3);
    v3 = v3.rotate_left(21) ^ v0;
    v2 = v2.wrapping_add(v1);
    v1 = v1.rotate_left(17) ^ v2;
    v2 = v2.rotate_left(32);
    *v = [v0, v1, v2, v3];
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    const K0: u64 = 0x0706_0504_0302_0100;
    const K1: u64 = 0x0f0e_0d0c_0b0a_0908;

    /// The reference vectors of the SipHash paper (key 00..0f, message 00..len-1).
    #[test]
    fn siphash_matches_the_reference_vectors() {
        let msg: Vec<u8> = (0..64).collect();
        assert_eq!(siphash24(K0, K1, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(K0, K1, &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    /// And the standard library's own SipHash-2-4 (deprecated as a `Hasher`, not wrong),
    /// for every length up to 64 and a few keys.
    #[test]
    #[allow(deprecated, reason = "the reference implementation to compare with")]
    fn siphash_matches_the_standard_librarys() {
        use std::hash::Hasher;
        let msg: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37) ^ 0x5a).collect();
        for (k0, k1) in [(K0, K1), (0, 0), (u64::MAX, 1), (0x1234_5678, 0x9abc_def0)] {
            for len in 0..=msg.len() {
                let mut h = std::hash::SipHasher::new_with_keys(k0, k1);
                h.write(&msg[..len]);
                assert_eq!(siphash24(k0, k1, &msg[..len]), h.finish(), "len {len}");
            }
        }
    }

    #[test]
    fn the_tally_depends_on_the_records_not_their_order() {
        let raw_key = DigestKey::from_bytes([3; 16]);
        let key = Some(raw_key);
        let sums: Vec<[u8; 16]> = (0..5u8).map(|i| [i; 16]).collect();
        let mut a = Tally::new(key);
        for s in &sums {
            a.add(s);
        }
        let mut b = Tally::new(key);
        for s in sums.iter().rev() {
            b.add(s);
        }
        b.add(&[9; 16]);
        assert_ne!(a.digest(), b.digest());
        b.remove(&[9; 16]);
        assert_eq!(a.digest(), b.digest());
        assert_eq!(a.digest().unwrap().records, 5);
        // Another record in place of one: another digest.
        b.remove(&sums[2]);
        b.add(&[7; 16]);
        assert_ne!(a.digest(), b.digest());
        // Another key: another digest.
        let mut c = Tally::new(Some(DigestKey::from_bytes([4; 16])));
        for s in &sums {
            c.add(s);
        }
        assert_ne!(a.digest(), c.digest());
        b.lose_track();
        assert_eq!(b.digest(), None);
        assert_eq!(Tally::new(None).digest(), None);
        assert_eq!(format!("{raw_key:?}"), "DigestKey([REDACTED])");
    }
}
