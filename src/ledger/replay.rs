//! Walking the stored log in order and checking it: positions, decoding, the hash
//! chain, timestamps, genesis placement, key rotations and revocations, and
//! signatures (all of them for [`Ledger::verify`](crate::Ledger::verify), only the
//! last one when opening: the last signature covers the whole chain through the
//! previous-entry hashes).

use std::sync::mpsc::{Receiver, SyncSender};

use ed25519_dalek::Signature;

use crate::entry::{self, Body, Hash, Stored};
use crate::error::{IntegrityError, IntegrityProblem, ReadError};
use crate::signing::{VerifyingKey, ENTRY_CONTEXT};
use crate::store::{Bytes, RawEntry};

/// A signing key and the positions it signed.
#[derive(Debug, Clone)]
pub(crate) struct KeySpan {
    pub(crate) key: [u8; 32],
    pub(crate) from: u64,
    /// Last position signed with it so far (inclusive).
    pub(crate) to: u64,
}

/// A signature to check: (context || signed bytes, signature, public key, position).
pub(crate) type SigCheck = (Vec<u8>, [u8; 64], [u8; 32], u64);

/// The last entry as read (stored bytes, signed length, signature, signer, position).
type LastEntry = (Bytes, usize, [u8; 64], [u8; 32], u64);

/// How many signatures to check in one batch.
const BATCH: usize = 256;

/// The checker's running state.
#[derive(Debug)]
pub(crate) struct Replay {
    next_seq: u64,
    prev_hash: Hash,
    last_ts: u64,
    /// Keys in the order they were authorized; the last one signs new entries.
    pub(crate) keys: Vec<KeySpan>,
    /// Revocations seen: (key, first untrusted position, revocation entry).
    pub(crate) revoked: Vec<([u8; 32], u64, u64)>,
    pub(crate) ledger_id: [u8; 16],
    pub(crate) pseudonym_key_check: [u8; 16],
    /// Pending signature checks: (signed bytes with context, signature, key, position).
    pending: Vec<SigCheck>,
    verify_all: bool,
    /// Where full batches go to be checked on another thread, if anywhere.
    checker: Option<SyncSender<Vec<SigCheck>>>,
    /// The last entry's stored bytes, signed length, signer and position, checked at
    /// the end when not verifying all (kept as read: no copy per entry).
    last: Option<LastEntry>,
    /// Added to the batches checked on this thread (made at the first).
    blind: Option<Blind>,
}

fn broken(position: u64, problem: IntegrityProblem) -> IntegrityError {
    IntegrityError { position, problem }
}

impl Replay {
    pub(crate) fn new(verify_all: bool) -> Self {
        Replay {
            next_seq: 0,
            prev_hash: [0; 32],
            last_ts: 0,
            keys: Vec::new(),
            revoked: Vec::new(),
            ledger_id: [0; 16],
            pseudonym_key_check: [0; 16],
            pending: Vec::new(),
            verify_all,
            checker: None,
            last: None,
            blind: None,
        }
    }

    /// Checks every signature, handing full batches to `checker` (threads running
    /// [`check_shared_batches`]) so that reading and decoding overlap with verification.
    pub(crate) fn pipelined(checker: SyncSender<Vec<SigCheck>>) -> Self {
        Replay {
            checker: Some(checker),
            ..Replay::new(true)
        }
    }

    /// Hangs up on the checker thread (after [`Replay::finish`] sent the last batch).
    pub(crate) fn close_checker(&mut self) {
        self.checker = None;
    }

    /// Number of entries accepted so far.
    pub(crate) fn len(&self) -> u64 {
        self.next_seq
    }

    /// Hash of the last accepted entry (zeros before the first).
    pub(crate) fn head_hash(&self) -> Hash {
        self.prev_hash
    }

    /// Timestamp of the last accepted entry.
    pub(crate) fn last_timestamp(&self) -> u64 {
        self.last_ts
    }

    /// The key that signs the next entry.
    pub(crate) fn current_key(&self) -> Option<[u8; 32]> {
        self.keys.last().map(|k| k.key)
    }

    /// Checks the next stored entry and returns it decoded.
    ///
    /// When the entry is bad, an earlier entry may be the real culprit: an edited entry
    /// still links to its predecessor, and it is its successor whose previous-hash no
    /// longer matches. So before reporting, the signatures not yet checked (the batch,
    /// or the previous entry when only the last is checked) are checked, and a bad one
    /// there is reported instead: the error always names the first bad position.
    pub(crate) fn step(&mut self, raw: RawEntry) -> Result<Stored, ReadError> {
        match self.step_inner(raw) {
            Ok(stored) => Ok(stored),
            Err(ReadError::Integrity(e)) => {
                self.check_pending()?;
                if let Some(last) = self.last.take() {
                    check_last(&last)?;
                }
                Err(e.into())
            }
            Err(other) => Err(other),
        }
    }

    /// Checks the next stored entry as far as the hash chain needs (its position, the
    /// previous entry's hash, timestamp order and the key that signed it) without
    /// decoding its body: for the entries before a state snapshot when opening, whose
    /// state comes from the snapshot. Their bytes were decoded and checked in full when
    /// they were appended or last replayed, and the chain up to the last, signed entry
    /// pins them down: an entry changed since then no longer links. About half the
    /// cost of [`Replay::step`] per entry (no allocation, no canonical re-encoding).
    ///
    /// Entries that change signing keys, the genesis entry, anything this does not
    /// accept, and every entry when all signatures are being verified go through
    /// [`Replay::step`], so problems are reported exactly as it reports them.
    pub(crate) fn step_chained(&mut self, raw: RawEntry) -> Result<(), ReadError> {
        let hash = entry::entry_hash(&raw.1);
        self.step_chained_hashed(raw, hash)
    }

    /// [`Replay::step_chained`] of an entry whose hash (SHA-256 of its stored bytes,
    /// [`entry::entry_hash`]) the caller computed, with others in bulk.
    pub(crate) fn step_chained_hashed(&mut self, raw: RawEntry, hash: entry::Hash) -> Result<(), ReadError> {
        let expected = self.next_seq;
        let fields = match (&raw.0, self.verify_all) {
            (Ok(key), false) if *key == expected && expected != 0 => entry::chain_fields(&raw.1),
            _ => None,
        }
        .filter(|f| {
            f.seq == expected
                && !f.changes_keys
                && f.prev_hash == self.prev_hash
                && f.timestamp >= self.last_ts
        });
        let (Some(f), Some(span)) = (fields, self.keys.last_mut()) else {
            return self.step(raw).map(|_| ());
        };
        span.to = expected;
        let signer = span.key;
        self.prev_hash = hash;
        self.last = Some((raw.1, f.signed_len, f.signature, signer, expected));
        self.last_ts = f.timestamp;
        self.next_seq = expected.saturating_add(1);
        Ok(())
    }

    fn step_inner(&mut self, raw: RawEntry) -> Result<Stored, ReadError> {
        let expected = self.next_seq;
        let (key, bytes) = raw;
        let key = key.map_err(|_| {
            broken(
                expected,
                IntegrityProblem::Undecodable("storage key is not a position"),
            )
        })?;
        if key != expected {
            return Err(broken(expected, IntegrityProblem::Missing { next: key }).into());
        }
        let stored = entry::decode(&bytes).map_err(|p| broken(expected, p))?;
        let e = &stored.entry;
        if e.seq != key {
            return Err(broken(
                expected,
                IntegrityProblem::Misplaced {
                    stored_at: key,
                    claims: e.seq,
                },
            )
            .into());
        }
        if e.prev_hash != self.prev_hash {
            return Err(broken(expected, IntegrityProblem::ChainBroken).into());
        }
        if e.timestamp.as_millis() < self.last_ts {
            return Err(broken(expected, IntegrityProblem::TimeWentBackwards).into());
        }
        let signer = match (&e.body, expected) {
            (
                Body::Genesis {
                    signing_key,
                    ledger_id,
                    pseudonym_key_check,
                },
                0,
            ) => {
                self.ledger_id = *ledger_id;
                self.pseudonym_key_check = *pseudonym_key_check;
                self.keys.push(KeySpan {
                    key: *signing_key,
                    from: 0,
                    to: 0,
                });
                *signing_key
            }
            (Body::Genesis { .. }, _) => {
                return Err(broken(expected, IntegrityProblem::GenesisMisplaced).into())
            }
            (_, 0) => return Err(broken(expected, IntegrityProblem::GenesisMisplaced).into()),
            _ => {
                let span = self
                    .keys
                    .last_mut()
                    .ok_or_else(|| broken(expected, IntegrityProblem::GenesisMisplaced))?;
                span.to = expected;
                span.key
            }
        };
        if self.verify_all {
            let mut signed = Vec::with_capacity(ENTRY_CONTEXT.len() + stored.signed_len);
            signed.extend_from_slice(ENTRY_CONTEXT);
            signed.extend_from_slice(entry::signed_part(&bytes, &stored));
            self.pending.push((signed, stored.signature, signer, expected));
            if self.pending.len() >= BATCH {
                self.check_pending()?;
            }
        } else {
            self.last = Some((bytes, stored.signed_len, stored.signature, signer, expected));
        }
        // Key changes take effect after this entry (which the old key signed). A
        // rotation also carries the new key's acceptance of it here, checked at once
        // on every path (open sends key changes through here too): rare, and it decides
        // which key is checked from here on.
        match &e.body {
            Body::KeyRotated { new_key, accept } => {
                let accepted = VerifyingKey::from_bytes(new_key)
                    .is_ok_and(|k| k.accepted_rotation(expected, &e.prev_hash, accept));
                if !accepted {
                    return Err(broken(expected, IntegrityProblem::RotationNotAccepted).into());
                }
                // As `rotate_key` refuses it: a key the log revoked is never signing
                // again. (Else every later checkpoint would list its own signing key
                // as revoked, which no verifier accepts, and no receipt would verify.)
                if self.revoked.iter().any(|(key, ..)| key == new_key) {
                    return Err(broken(
                        expected,
                        IntegrityProblem::InvalidField("rotation to a revoked key"),
                    )
                    .into());
                }
                self.keys.push(KeySpan {
                    key: *new_key,
                    from: expected.saturating_add(1),
                    to: expected,
                });
            }
            Body::KeyRevoked { key, from } => {
                // As `revoke_key` writes them: from a position within the log, never
                // the key in use. (Else only the key's holder could have written it,
                // and it would make every later checkpoint fail: one past the log
                // cannot be signed, one of the current key does not verify.)
                if *from > expected {
                    return Err(
                        broken(expected, IntegrityProblem::InvalidField("revocation position")).into(),
                    );
                }
                if self.keys.last().is_some_and(|k| k.key == *key) {
                    return Err(broken(expected, IntegrityProblem::InvalidField("revoked key")).into());
                }
                self.revoked.push((*key, *from, expected));
            }
            _ => {}
        }
        self.prev_hash = stored.hash;
        self.last_ts = e.timestamp.as_millis();
        self.next_seq = expected.saturating_add(1);
        Ok(stored)
    }

    fn check_pending(&mut self) -> Result<(), IntegrityError> {
        let batch = std::mem::replace(&mut self.pending, Vec::with_capacity(BATCH));
        if batch.is_empty() {
            return Ok(());
        }
        if let Some(checker) = &self.checker {
            let first = batch.first().map_or(0, |b| b.3);
            // The checker stops only at a bad signature, which it reports; this error
            // (at a later position) is then superseded by it.
            return checker
                .send(batch)
                .map_err(|_| broken(first, IntegrityProblem::BadSignature));
        }
        check_batch(batch, self.blind.get_or_insert_with(Blind::new))
    }
}

/// The batch channel as the checker threads share it: `None` once a checker has found
/// a bad signature.
pub(crate) type SharedBatches = std::sync::Mutex<Option<Receiver<Vec<SigCheck>>>>;

/// Checks batches until the sender hangs up or one fails, the error naming the bad
/// position; for one of several checker threads taking batches from one channel.
///
/// Each thread checks the batches it takes, in the order it takes them. A thread that
/// finds a bad signature closes the channel (under its lock): batches not taken yet lie
/// after the one it failed, the reading thread's next send fails and the other threads
/// stop after the batch they hold, each stopping at its own first bad signature. So the
/// first bad entry of the log is the lowest position among the threads' errors
/// ([`first_bad`]), and a log damaged early is not checked to its end.
pub(crate) fn check_shared_batches(batches: &SharedBatches) -> Result<(), IntegrityError> {
    let _close = CloseOnPanic(batches);
    let mut blind = None;
    loop {
        // (A checker that panicked holding the lock left the channel as it was.)
        let next = batches
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .as_ref()
            .map(Receiver::recv);
        let Some(Ok(batch)) = next else {
            return Ok(());
        };
        if let Err(e) = check_batch(batch, blind.get_or_insert_with(Blind::new)) {
            *batches.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
            return Err(e);
        }
    }
}

/// Closes the shared channel if its checker thread panics, so that the reading thread's
/// next send fails instead of waiting for a checker that is gone.
struct CloseOnPanic<'a>(&'a SharedBatches);

impl Drop for CloseOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        }
    }
}

/// The first bad signature among the checker threads' outcomes: the lowest position.
pub(crate) fn first_bad(
    outcomes: impl IntoIterator<Item = Result<(), IntegrityError>>,
) -> Result<(), IntegrityError> {
    outcomes
        .into_iter()
        .filter_map(Result::err)
        .min_by_key(|e| e.position)
        .map_or(Ok(()), Err)
}

/// A signature by a throwaway key over random bytes, made once per check of a log and
/// added to each of its batches.
///
/// Batch verification weighs each signature by a 128-bit scalar z, and checks that
/// the weighted sum of the signatures' equations is zero. An R with a small torsion
/// component T added (R = rB + T) leaves z·T in the sum, which is zero when z is a
/// multiple of T's order (2, 4 or 8): then the batch passes though the strict check of
/// that one signature fails. ed25519-dalek derives the z from the batch's contents
/// alone, so whoever holds the signing key could try values of r until a batch passed,
/// and then it would pass every time. With this signature in every batch, the z depend
/// on bytes only this check knows: they cannot be chosen, and a batch holding such
/// signatures passes at most half the time (the weighted torsion parts are zero for
/// at most half of the z). The strict check then names the first bad entry.
///
/// A cheaper change than a strict check of every R: deciding whether a point has a
/// torsion component takes a scalar multiplication per signature, more than the batch
/// check costs.
pub(crate) struct Blind {
    message: [u8; 32],
    signature: Signature,
    key: ed25519_dalek::VerifyingKey,
}

impl std::fmt::Debug for Blind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Blind")
    }
}

impl Blind {
    fn new() -> Self {
        use ed25519_dalek::Signer;
        use rand_core::RngCore;
        let mut message = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut message);
        // Zeroized on drop.
        let key = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
        Blind {
            message,
            signature: key.sign(&message),
            key: key.verifying_key(),
        }
    }
}

fn check_batch(batch: Vec<SigCheck>, blind: &Blind) -> Result<(), IntegrityError> {
    let mut keys = Vec::with_capacity(batch.len());
    // Decompressing a key costs about as much as checking a signature in a batch:
    // do it once per run of entries signed by the same key.
    let mut last: Option<([u8; 32], ed25519_dalek::VerifyingKey)> = None;
    for (i, (_, s, k, pos)) in batch.iter().enumerate() {
        let key = match last {
            Some((bytes, key)) if bytes == *k => Ok(key),
            _ => signer(k, *pos),
        };
        // An entry before this one may be bad too: the error names the first.
        let earlier = || first_strict_failure(batch.get(..i).unwrap_or_default(), &keys);
        let key = match key {
            Ok(key) => key,
            Err(e) => return Err(earlier().unwrap_or(e)),
        };
        if !r_may_verify(s) {
            return Err(earlier().unwrap_or_else(|| broken(*pos, IntegrityProblem::BadSignature)));
        }
        last = Some((*k, key));
        keys.push(key);
    }
    let mut msgs: Vec<&[u8]> = batch.iter().map(|(m, ..)| m.as_slice()).collect();
    let mut sigs: Vec<Signature> = batch.iter().map(|(_, s, ..)| Signature::from_bytes(s)).collect();
    msgs.push(&blind.message);
    sigs.push(blind.signature);
    keys.push(blind.key);
    if ed25519_dalek::verify_batch(&msgs, &sigs, &keys).is_ok() {
        return Ok(());
    }
    // Some signature is bad: find the first one.
    Err(first_strict_failure(&batch, &keys)
        .unwrap_or_else(|| broken(batch.first().map_or(0, |b| b.3), IntegrityProblem::BadSignature)))
}

/// The first of `batch` (with its keys) whose signature the strict check refuses.
fn first_strict_failure(batch: &[SigCheck], keys: &[ed25519_dalek::VerifyingKey]) -> Option<IntegrityError> {
    batch
        .iter()
        .zip(keys)
        .find(|((m, s, ..), k)| k.verify_strict(m, &Signature::from_bytes(s)).is_err())
        .map(|((.., pos), _)| broken(*pos, IntegrityProblem::BadSignature))
}

/// The y-coordinates (little-endian, sign bit clear) of the eight points of small order:
/// the identity, the point of order 2, the two of order 4 (y = 0) and the four of
/// order 8 (two values of y).
const SMALL_ORDER_Y: [[u8; 32]; 5] = [
    [
        0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ],
    [
        0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ],
    [0; 32],
    [
        0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0, 0xd5,
        0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05,
    ],
    [
        0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a,
        0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a,
    ],
];

/// Whether a signature's R (its first half) is one the strict check can accept: a
/// canonical encoding (y below the field prime) of a point not of small order.
///
/// Batch verification is not strict: it accepts a signature whose R is of small order
/// (the identity, say) or encoded non-canonically, which the strict check of a single
/// signature refuses; `verify` and `open` (or a receipt) would then disagree about the
/// same entry. Checked on the bytes, as libsodium does: decompressing R would cost a
/// third of the batch check. (An R with a small torsion component added may still pass
/// a batch where the strict check refuses it: see [`Blind`]. Only the holder of the
/// signing key can make one.)
fn r_may_verify(sig: &[u8; 64]) -> bool {
    let Some(r) = sig.first_chunk::<32>() else {
        return false;
    };
    let mut y = *r;
    y[31] &= 0x7f;
    // y >= p = 2^255 - 19: 0x7f, then thirty 0xff, then at least 0xed (little-endian).
    let non_canonical = y[31] == 0x7f && y[1..31].iter().all(|b| *b == 0xff) && y[0] >= 0xed;
    !non_canonical && !SMALL_ORDER_Y.contains(&y)
}

impl Replay {
    /// Finishes the walk: outstanding signatures, and the last entry's signature when
    /// only that one is checked.
    pub(crate) fn finish(&mut self) -> Result<(), IntegrityError> {
        self.check_pending()?;
        if let Some(last) = self.last.take() {
            check_last(&last)?;
        }
        Ok(())
    }

    /// Runs of entries signed with a key at or after the position from which it was
    /// revoked, in log order. They verify cryptographically, but the key that signed
    /// them was declared compromised for that range. A key revoked more than once counts
    /// from its earliest position, named by the revocation that gave it: each entry is
    /// listed once.
    pub(crate) fn untrusted(&self) -> Vec<UntrustedRange> {
        untrusted_ranges(&self.keys, &self.revoked)
    }

    /// The position of the next entry to step.
    pub(crate) fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// A replay that goes on from where this one stopped (its position, chain head,
    /// time, keys and revocations), for the key history receipts read: none of this
    /// one's signature checking (no batches, checker or last entry) comes along.
    pub(crate) fn key_history(&self) -> Replay {
        Replay {
            next_seq: self.next_seq,
            prev_hash: self.prev_hash,
            last_ts: self.last_ts,
            keys: self.keys.clone(),
            revoked: self.revoked.clone(),
            ledger_id: self.ledger_id,
            pseudonym_key_check: self.pseudonym_key_check,
            ..Replay::new(false)
        }
    }
}

/// [`Replay::untrusted`] of the key spans `keys` and the revocations `revoked` (key,
/// position revoked from, revocation entry).
///
/// Linear in the spans and revocations (a log read from disk may hold any number of
/// them: a hostile one, many distinct revoked keys).
fn untrusted_ranges(keys: &[KeySpan], revoked: &[([u8; 32], u64, u64)]) -> Vec<UntrustedRange> {
    // Each revoked key's earliest position, with the revocation that gave it.
    let mut earliest: std::collections::HashMap<[u8; 32], (u64, u64)> =
        std::collections::HashMap::with_capacity(revoked.len());
    for (key, from, revoked_by) in revoked {
        let held = earliest.entry(*key).or_insert((*from, *revoked_by));
        if *from < held.0 {
            *held = (*from, *revoked_by);
        }
    }
    let mut out: Vec<UntrustedRange> = keys
        .iter()
        .filter(|span| span.to >= span.from)
        .filter_map(|span| {
            let (from, revoked_by) = *earliest.get(&span.key)?;
            (span.to >= from).then(|| UntrustedRange {
                from: span.from.max(from),
                to: span.to,
                revoked_by,
                revoked_from: from,
            })
        })
        .collect();
    out.sort_by_key(|r| (r.from, r.to));
    out
}

/// Which key signed each entry and which keys were revoked, learnt from decoded entries
/// seen in log order, without the checks of a [`Replay`]: for marking, in a history or
/// an export that reads the log anyway, the entries signed by a revoked key.
#[derive(Debug, Default)]
pub(crate) struct Signers {
    keys: Vec<KeySpan>,
    revoked: Vec<([u8; 32], u64, u64)>,
}

impl Signers {
    /// Takes in the next entry of the log.
    pub(crate) fn observe(&mut self, e: &entry::Entry) {
        // Signed by the key in force; a key change takes effect after it.
        if let Some(span) = self.keys.last_mut() {
            span.to = e.seq;
        }
        match &e.body {
            Body::Genesis { signing_key, .. } => self.keys.push(KeySpan {
                key: *signing_key,
                from: e.seq,
                to: e.seq,
            }),
            Body::KeyRotated { new_key, .. } => self.keys.push(KeySpan {
                key: *new_key,
                from: e.seq.saturating_add(1),
                to: e.seq,
            }),
            Body::KeyRevoked { key, from } => self.revoked.push((*key, *from, e.seq)),
            _ => {}
        }
    }

    /// Whether a key was revoked in the entries seen.
    pub(crate) fn any_revoked(&self) -> bool {
        !self.revoked.is_empty()
    }

    /// The untrusted ranges of the entries seen, as [`Replay::untrusted`] gives them.
    pub(crate) fn untrusted(&self) -> Vec<UntrustedRange> {
        untrusted_ranges(&self.keys, &self.revoked)
    }
}

/// Entries `from..=to` were signed with a key that the entry `revoked_by` declared
/// compromised from a position at or before `from`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UntrustedRange {
    /// First untrusted position.
    pub from: u64,
    /// Last untrusted position (inclusive).
    pub to: u64,
    /// The revocation entry.
    pub revoked_by: u64,
    /// The position the revocation names: the key is not trusted from there on. It may
    /// be before `from` (a key revoked from before it signed anything, or rotated back
    /// to later), so it is what errors about the key name.
    pub revoked_from: u64,
}

/// The key that signs the entry at `pos`, ready to verify with: a valid encoding of a
/// point in the prime-order subgroup, as every key made from a signing key is.
///
/// A small-order or mixed-order key (only a forged genesis or rotation entry can name
/// one) is refused outright: batch verification, which is not strict, could accept a
/// signature under it that the strict check of a single signature rejects, and then
/// `verify` and `open` would disagree about the same log.
fn signer(k: &[u8; 32], pos: u64) -> Result<ed25519_dalek::VerifyingKey, IntegrityError> {
    let invalid = || broken(pos, IntegrityProblem::InvalidField("signing key"));
    let key = *VerifyingKey::from_bytes(k).map_err(|_| invalid())?.inner();
    if key.is_weak() || !key.to_edwards().is_torsion_free() {
        return Err(invalid());
    }
    Ok(key)
}

/// Checks the signature of the last entry read (kept as stored bytes).
fn check_last((bytes, signed_len, s, k, pos): &LastEntry) -> Result<(), IntegrityError> {
    let key = signer(k, *pos)?;
    let mut m = Vec::with_capacity(ENTRY_CONTEXT.len() + signed_len);
    m.extend_from_slice(ENTRY_CONTEXT);
    m.extend_from_slice(bytes.get(..*signed_len).unwrap_or(&[]));
    if key.verify_strict(&m, &Signature::from_bytes(s)).is_err() {
        return Err(broken(*pos, IntegrityProblem::BadSignature));
    }
    Ok(())
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
    use crate::entry::{Actor, Entry};
    use crate::signing::SigningKey;
    use crate::time::Timestamp;

    /// Replays a log of `bodies` after a genesis, all signed by one key; the result of
    /// the last step.
    fn replay_after_genesis(bodies: impl FnOnce(&SigningKey) -> Vec<Body>) -> Result<Stored, ReadError> {
        let key = SigningKey::from_bytes(&[7; 32]);
        let mut all = vec![Body::Genesis {
            ledger_id: [1; 16],
            signing_key: key.verifying_key().to_bytes(),
            pseudonym_key_check: [0; 16],
        }];
        all.extend(bodies(&key));
        let mut replay = Replay::new(true);
        let mut prev = [0u8; 32];
        let mut last = None;
        for (seq, body) in all.into_iter().enumerate() {
            let e = Entry {
                seq: seq as u64,
                timestamp: Timestamp::from_millis(1_700_000_000_000),
                actor: Actor::System,
                prev_hash: prev,
                salt: [0; 16],
                body,
            };
            let signed = entry::encode_signed_part(&e).unwrap();
            let bytes = entry::seal(signed.clone(), &key.sign_entry(&signed));
            prev = entry::entry_hash(&bytes);
            last = Some(replay.step((Ok(seq as u64), Bytes::from_vec(bytes))));
        }
        last.unwrap()
    }

    /// A revocation is replayed only as `revoke_key` writes it: from a position within
    /// the log (at most its own), of a key other than the one in use. Either other kind
    /// (which only the key's holder could write) made every later checkpoint fail:
    /// one past the log cannot be signed, one of the current key does not verify.
    #[test]
    fn a_revocation_revoke_key_would_refuse_is_an_integrity_error() {
        let other = SigningKey::from_bytes(&[9; 32]).verifying_key().to_bytes();
        let at = |r: Result<Stored, ReadError>| match r {
            Err(ReadError::Integrity(e)) => Some((e.position, e.problem)),
            Err(e) => panic!("{e:?}"),
            Ok(_) => None,
        };
        assert_eq!(
            at(replay_after_genesis(|_| vec![Body::KeyRevoked {
                key: other,
                from: 1
            }])),
            None
        );
        assert_eq!(
            at(replay_after_genesis(|_| vec![Body::KeyRevoked {
                key: other,
                from: 2
            }])),
            Some((1, IntegrityProblem::InvalidField("revocation position")))
        );
        assert_eq!(
            at(replay_after_genesis(|_| vec![Body::KeyRevoked {
                key: other,
                from: u64::MAX
            }])),
            Some((1, IntegrityProblem::InvalidField("revocation position")))
        );
        assert_eq!(
            at(replay_after_genesis(|k| vec![Body::KeyRevoked {
                key: k.verifying_key().to_bytes(),
                from: 0
            }])),
            Some((1, IntegrityProblem::InvalidField("revoked key")))
        );
    }

    /// The ranges as first written (a search of the keys seen for each revocation, a
    /// scan of every span for each revoked key): quadratic in distinct revoked keys, which
    /// a hostile log can hold by the tens of thousands (found by a review: 6.2 s against
    /// 0.9 s to verify 40,000 revocations). What the linear version must still give.
    fn quadratic(keys: &[KeySpan], revoked: &[([u8; 32], u64, u64)]) -> Vec<UntrustedRange> {
        let mut earliest: Vec<([u8; 32], u64, u64)> = Vec::new();
        for (key, from, revoked_by) in revoked {
            match earliest.iter_mut().find(|(k, ..)| k == key) {
                Some((_, f, by)) if *from < *f => (*f, *by) = (*from, *revoked_by),
                Some(_) => {}
                None => earliest.push((*key, *from, *revoked_by)),
            }
        }
        let mut out = Vec::new();
        for (key, from, revoked_by) in &earliest {
            for span in keys.iter().filter(|s| s.key == *key && s.to >= s.from) {
                if span.to >= *from {
                    out.push(UntrustedRange {
                        from: span.from.max(*from),
                        to: span.to,
                        revoked_by: *revoked_by,
                        revoked_from: *from,
                    });
                }
            }
        }
        out.sort_by_key(|r| (r.from, r.to));
        out
    }

    proptest::proptest! {
        #[test]
        fn untrusted_ranges_are_those_of_the_first_version(
            spans in proptest::collection::vec((0u8..6, 0u64..50, 0u64..50), 0..12),
            revoked in proptest::collection::vec((0u8..8, 0u64..60, 0u64..60), 0..12),
        ) {
            // Spans in log order, as a replay makes them: consecutive, one key each.
            let mut keys = Vec::new();
            let mut at = 0u64;
            for (k, len, _) in &spans {
                keys.push(KeySpan { key: [*k; 32], from: at, to: at + len });
                at += len + 1;
            }
            let revoked: Vec<_> = revoked.iter().map(|(k, f, by)| ([*k; 32], *f, *by)).collect();
            proptest::prop_assert_eq!(untrusted_ranges(&keys, &revoked), quadratic(&keys, &revoked));
        }
    }
}
