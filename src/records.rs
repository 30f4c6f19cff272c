//! Decision records: which allowed uses happened, kept beside the ledger.
//!
//! The ledger records consent changes; decision records say what was done under them:
//! subject, purpose, recipient, which collection (so which identifier) and which
//! consent entry, at which position and time. They are what an operator reads after
//! an incident ([`Ledger::impact`](crate::Ledger::impact)).
//!
//! Records hold the application's subject ids and entry positions, never identifier
//! values. Each carries an HMAC tag under the pseudonym key over the ledger's id, its
//! storage key and its bytes, so an edited or inserted record, one copied under
//! another storage key, or one copied from another ledger (also one sharing the
//! pseudonym key) is refused when read. (A deleted record is not noticed: nothing
//! counts them; nor is an aggregate put back to an earlier copy of itself, whose count
//! is then lower: the tag holds no version.)
//!
//! Storage keys (sled tree `decisions`):
//!
//! | mode | key |
//! |---|---|
//! | every decision | `0x01`, record number (`u64` BE) |
//! | aggregated | `0x02`, bucket start in ms (`u64` BE), 16 bytes of SHA-256 over the grouping fields |

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::decision::Evidence;
use crate::entry::DecisionFields;
use crate::error::{OpenError, ReadError, StorageError};
use crate::identifier::PseudonymKey;
use crate::purpose::LegalBasis;
use crate::recipient::Recipient;
use crate::store::Backend;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// Which allowed uses are recorded (set with
/// [`LedgerBuilder::record_decisions`](crate::LedgerBuilder::record_decisions)).
///
/// Denied uses are never recorded: nothing was used.
///
/// Decision records are not entries of the signed log, and the rule that a ledger
/// whose sync failed takes no more writes is about the log: decisions go on after a
/// failed sync (they read the state), and so do their records, as evidence of the uses.
/// They reach the disk only if a later sync does, which a failed one refuses: after
/// one, reopen the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Recording {
    /// No records (the default).
    #[default]
    Off,
    /// One record per allowed use, written to the store as part of the decision. If it
    /// cannot be written the use is denied ([`Denied::Unavailable`](crate::Denied::Unavailable)):
    /// an operator who asked for every use to be recorded gets no unrecorded use. The
    /// record is written to sled's log, not synced: it becomes durable with the next
    /// sync (the next append under `Immediate` or `GroupCommit`, [`Ledger::sync`](crate::Ledger::sync),
    /// sled's background flush under `Relaxed`), so a crash can lose the records of uses
    /// decided since then. Call `Ledger::sync` where that matters.
    Every,
    /// One record per subject, purpose, recipient, collection, consent entry and time
    /// bucket, with the number of uses and the first and last of them. Counted in
    /// memory and written when a bucket's table fills up, on
    /// [`Ledger::sync`](crate::Ledger::sync), on
    /// [`Ledger::decision_records`](crate::Ledger::decision_records) and when the
    /// ledger is dropped. A process crash loses the counts not yet written.
    Aggregated {
        /// Bucket length (at least one millisecond).
        bucket: Duration,
    },
}

/// A record of allowed uses: one use, or an aggregate of uses in one time bucket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecisionRecord {
    pub(crate) fields: DecisionFields,
}

impl DecisionRecord {
    /// The subject whose identifier was used.
    pub fn subject(&self) -> &SubjectId {
        &self.fields.subject
    }

    /// The purpose id of the use.
    pub fn purpose(&self) -> &str {
        &self.fields.purpose
    }

    /// Who received the data.
    pub fn recipient(&self) -> &Recipient {
        &self.fields.recipient
    }

    /// The legal basis the use relied on.
    pub fn legal_basis(&self) -> LegalBasis {
        self.fields.basis
    }

    /// The entry that allowed the use (the grant, or the collection when the purpose
    /// is not consent-based).
    pub fn allowed_by(&self) -> u64 {
        self.fields.allowed_by
    }

    /// The collection entry of the identifier used: it names the identifier (by kind
    /// and pseudonym) without its value.
    pub fn collected_at(&self) -> u64 {
        self.fields.collected_at
    }

    /// Number of uses in this record (1 unless aggregated).
    pub fn count(&self) -> u64 {
        self.fields.count
    }

    /// Ledger positions of the first and the last use (see [`Evidence::position`]).
    pub fn positions(&self) -> (u64, u64) {
        (self.fields.first_position, self.fields.last_position)
    }

    /// Times of the first and the last use.
    pub fn times(&self) -> (Timestamp, Timestamp) {
        (self.fields.first_at, self.fields.last_at)
    }
}

/// Domain separation for the records' tags. (v1 tags did not cover the storage key, v2
/// tags not the ledger's id.)
const TAG_DOMAIN: &[u8] = b"consent-ledger decision record v3";
const EVERY: u8 = 1;
/// The greatest record number a ledger could have written (2^63 - 1: at a billion uses
/// a second, three centuries): a greater one was planted, and numbering on from it
/// would soon run out.
pub(crate) const LAST_PLAUSIBLE_RECORD: u64 = (1 << 63) - 1;
const AGGREGATED: u8 = 2;
const SHARDS: usize = 16;
/// Aggregates held per shard before the shard is written out.
const SHARD_LIMIT: usize = 4096;

/// Writes decision records as configured.
pub(crate) struct Recorder {
    mode: Recording,
    bucket_ms: u64,
    next: AtomicU64,
    shards: Vec<Mutex<HashMap<u64, Vec<DecisionFields>>>>,
    hasher: RandomState,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

/// What a record's tag is made with: the pseudonym key, and the id of the ledger the
/// record belongs to.
#[derive(Clone, Copy)]
pub(crate) struct TagKey<'a> {
    pub(crate) key: &'a PseudonymKey,
    pub(crate) ledger: &'a [u8; 16],
}

/// The authentication tag of a record stored under `storage_key`: HMAC under the
/// pseudonym key, domain-separated, over the ledger's id, the storage key and the
/// record's bytes.
pub(crate) fn tag(key: TagKey<'_>, storage_key: &[u8], body: &[u8]) -> [u8; 32] {
    key.key.index_tag(&[TAG_DOMAIN, key.ledger, storage_key, body])
}

/// The stored form of a record to be stored under `storage_key`: its canonical bytes
/// and their tag.
pub(crate) fn seal(key: TagKey<'_>, storage_key: &[u8], fields: &DecisionFields) -> Vec<u8> {
    let mut bytes = fields.encode();
    let t = tag(key, storage_key, &bytes);
    bytes.extend_from_slice(&t);
    bytes
}

/// Checks the tag of a record read from `storage_key` and decodes it.
pub(crate) fn open_record(key: TagKey<'_>, storage_key: &[u8], bytes: &[u8]) -> Option<DecisionFields> {
    let split = bytes.len().checked_sub(32)?;
    let (body, t) = bytes.split_at(split);
    if !key
        .key
        .verify_index_tag(&[TAG_DOMAIN, key.ledger, storage_key, body], t)
    {
        return None;
    }
    DecisionFields::decode(body)
}

fn corrupt() -> ReadError {
    ReadError::CorruptRecord
}

/// The storage key of every-use record number `n`.
pub(crate) fn every_use_key(n: u64) -> [u8; 9] {
    let mut k = [EVERY; 9];
    for (to, from) in k.iter_mut().skip(1).zip(n.to_be_bytes()) {
        *to = from;
    }
    k
}

/// The number of the next every-use record after the one stored under `greatest_key`,
/// the greatest stored key starting with the every-use prefix (read back from the
/// store at each open): `None` when it is not a record number's key, or the number is
/// past [`LAST_PLAUSIBLE_RECORD`].
pub(crate) fn next_record_number(greatest_key: &[u8]) -> Option<u64> {
    greatest_key
        .get(1..)
        .and_then(|b| <[u8; 8]>::try_from(b).ok())
        .map(u64::from_be_bytes)
        .filter(|n| *n <= LAST_PLAUSIBLE_RECORD)?
        .checked_add(1)
}

/// The latest time of a use that the stored records show (ms; 0 when none does), read
/// at open to raise the time floor (see `ledger::head`): a use's record is a time the
/// ledger handed out in evidence, which sled may have made durable when the head
/// record's floor, saved each second and not synced, was not.
///
/// Only the last record under each prefix is read (two lookups, whatever the number of
/// records): the every-use record with the greatest number, nearly always the latest
/// use (threads that race may number theirs a little out of time order), and the
/// aggregate of the newest bucket that sorts last (another of that bucket may hold a
/// later use). A lower bound, then, which is all a floor needs: each is a time used. A
/// record whose tag does not check (edited, or not this ledger's) raises nothing.
///
/// # Errors
/// Storage failures.
pub(crate) fn latest_recorded_use(store: &dyn Backend, key: TagKey<'_>) -> Result<u64, StorageError> {
    let mut latest = 0;
    for prefix in [EVERY, AGGREGATED] {
        let Some(k) = store.last_decision_key(&[prefix])? else {
            continue;
        };
        let Some(bytes) = store.decision(&k)? else {
            continue;
        };
        if let Some(f) = open_record(key, &k, &bytes) {
            latest = latest.max(f.last_at.as_millis());
        }
    }
    Ok(latest)
}

impl Recorder {
    /// A recorder continuing the records already in `store`. With
    /// [`Recording::Every`], the next record number follows the greatest stored one.
    /// A key planted there cannot make a record be written over: each is written only
    /// where none is (an edited record is reported when records are read).
    ///
    /// # Errors
    /// Storage failures; [`OpenError::CorruptMetadata`] when the greatest key is not a
    /// record number's (once, a junk key reset the numbering to 0), or is past
    /// [`LAST_PLAUSIBLE_RECORD`] (once, a key at the last number there is wrapped the
    /// numbering around to the first records, and one just below it used the numbering
    /// up, so that every use was denied as unavailable).
    pub(crate) fn new(mode: Recording, store: &dyn Backend) -> Result<Recorder, OpenError> {
        let corrupt = || OpenError::CorruptMetadata("decision record");
        let next = match store.last_decision_key(&[EVERY])? {
            Some(k) if mode == Recording::Every => next_record_number(&k).ok_or_else(corrupt)?,
            _ => 0,
        };
        let bucket_ms = match mode {
            Recording::Aggregated { bucket } => u64::try_from(bucket.as_millis()).unwrap_or(u64::MAX).max(1),
            _ => 1,
        };
        Ok(Recorder {
            mode,
            bucket_ms,
            next: AtomicU64::new(next),
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            hasher: RandomState::new(),
        })
    }

    /// Whether anything is recorded.
    pub(crate) fn is_on(&self) -> bool {
        self.mode != Recording::Off
    }

    /// Records one allowed use.
    pub(crate) fn record(
        &self,
        store: &dyn Backend,
        key: TagKey<'_>,
        ev: &Evidence,
        recipient: &Recipient,
    ) -> Result<(), StorageError> {
        match self.mode {
            Recording::Off => Ok(()),
            Recording::Every => {
                let n = self
                    .next
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_add(1))
                    .map_err(|_| {
                        StorageError::new(
                            "writing a decision record",
                            std::io::Error::other("record numbers are used up"),
                        )
                    })?;
                let k = every_use_key(n);
                store.put_new_decision(&k, &seal(key, &k, &fields_of(ev, recipient)))
            }
            Recording::Aggregated { .. } => {
                let bucket = ev.decided_at.as_millis() / self.bucket_ms;
                let mut h = self.hasher.build_hasher();
                bucket.hash(&mut h);
                ev.subject.as_str().hash(&mut h);
                ev.purpose.hash(&mut h);
                recipient.hash(&mut h);
                ev.allowed_by.hash(&mut h);
                ev.collected_at.hash(&mut h);
                let hash = h.finish();
                let shard = self.shard(hash).ok_or_else(poisoned)?;
                let mut map = shard.lock().map_err(|_| poisoned())?;
                // Written out before this use is counted: if that fails, the use is
                // denied and not counted, and the shard's counts stay in memory.
                if map.len() >= SHARD_LIMIT {
                    self.write_out(store, key, &mut map)?;
                }
                let slot = map.entry(hash).or_default();
                let same = |f: &DecisionFields| {
                    f.first_at.as_millis() / self.bucket_ms == bucket
                        && f.subject == ev.subject
                        && f.purpose == ev.purpose
                        && f.recipient == *recipient
                        && f.allowed_by == ev.allowed_by
                        && f.collected_at == ev.collected_at
                };
                match slot.iter_mut().find(|f| same(f)) {
                    Some(f) => {
                        f.count = f.count.saturating_add(1);
                        f.first_position = f.first_position.min(ev.position);
                        f.last_position = f.last_position.max(ev.position);
                        // Uses are not recorded in time order (threads race, the
                        // clock may step back within the bucket): the span covers all.
                        f.first_at = f.first_at.min(ev.decided_at);
                        f.last_at = f.last_at.max(ev.decided_at);
                    }
                    None => slot.push(fields_of(ev, recipient)),
                }
                Ok(())
            }
        }
    }

    fn shard(&self, hash: u64) -> Option<&Mutex<HashMap<u64, Vec<DecisionFields>>>> {
        // Always some: there are `SHARDS` shards.
        self.shards.get((hash % SHARDS as u64) as usize)
    }

    /// Writes every aggregate held in memory. What cannot be written stays in memory
    /// for the next flush; the first error is returned.
    pub(crate) fn flush(&self, store: &dyn Backend, key: TagKey<'_>) -> Result<(), StorageError> {
        if !matches!(self.mode, Recording::Aggregated { .. }) {
            return Ok(());
        }
        let mut result = Ok(());
        for shard in &self.shards {
            let written = match shard.lock() {
                Ok(mut map) => self.write_out(store, key, &mut map),
                Err(_) => Err(poisoned()),
            };
            if result.is_ok() {
                result = written;
            }
        }
        result
    }

    /// Merges a shard's aggregates into the stored ones (under the shard's lock: a
    /// grouping key always falls in the same shard, so no other writer touches it).
    /// An aggregate leaves memory only once written; one that cannot be (a storage
    /// failure, or a stored record under its key that does not open: edited, or not
    /// this ledger's) stays, and the first error is returned.
    fn write_out(
        &self,
        store: &dyn Backend,
        key: TagKey<'_>,
        map: &mut HashMap<u64, Vec<DecisionFields>>,
    ) -> Result<(), StorageError> {
        let mut result = Ok(());
        map.retain(|_, group| {
            group.retain(|f| match self.merge_into_store(store, key, f) {
                Ok(()) => false,
                Err(e) => {
                    if result.is_ok() {
                        result = Err(e);
                    }
                    true
                }
            });
            !group.is_empty()
        });
        result
    }

    /// Adds one aggregate's counts to the record stored under its key.
    fn merge_into_store(
        &self,
        store: &dyn Backend,
        key: TagKey<'_>,
        f: &DecisionFields,
    ) -> Result<(), StorageError> {
        let k = aggregate_key(f, self.bucket_ms);
        let mut f = f.clone();
        if let Some(stored) = store.decision(&k)? {
            // Never written over: that would hide the edit and lose its counts.
            let old = open_record(key, &k, &stored).ok_or_else(|| {
                StorageError::new(
                    "merging decision records",
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        "a stored decision record is corrupt or was not written by this ledger",
                    ),
                )
            })?;
            f.count = f.count.saturating_add(old.count);
            f.first_position = f.first_position.min(old.first_position);
            f.last_position = f.last_position.max(old.last_position);
            f.first_at = f.first_at.min(old.first_at);
            f.last_at = f.last_at.max(old.last_at);
        }
        store.put_decision(&k, &seal(key, &k, &f))
    }
}

fn poisoned() -> StorageError {
    StorageError::new(
        "recording a decision",
        std::io::Error::other("a thread panicked while recording"),
    )
}

fn fields_of(ev: &Evidence, recipient: &Recipient) -> DecisionFields {
    DecisionFields {
        subject: ev.subject.clone(),
        purpose: ev.purpose.to_owned(),
        recipient: recipient.clone(),
        basis: ev.basis,
        allowed_by: ev.allowed_by,
        collected_at: ev.collected_at,
        first_position: ev.position,
        last_position: ev.position,
        first_at: ev.decided_at,
        last_at: ev.decided_at,
        count: 1,
    }
}

fn aggregate_key(f: &DecisionFields, bucket_ms: u64) -> Vec<u8> {
    let bucket = f.first_at.as_millis() / bucket_ms * bucket_ms;
    let mut h = Sha256::new();
    let group = DecisionFields {
        first_position: 0,
        last_position: 0,
        first_at: Timestamp::EPOCH,
        last_at: Timestamp::EPOCH,
        count: 1,
        ..f.clone()
    };
    h.update(group.encode());
    let digest = h.finalize();
    let mut k = Vec::with_capacity(25);
    k.push(AGGREGATED);
    k.extend_from_slice(&bucket.to_be_bytes());
    k.extend_from_slice(digest.get(..16).unwrap_or(&[]));
    k
}

/// The stored records `keep` selects, in key order (every-decision records first, by
/// number; then aggregates by bucket), each checked and decoded as it is read, so that
/// memory holds only those (an export of one subject, say, beside millions of records
/// of others).
pub(crate) fn read_matching(
    store: &dyn Backend,
    key: TagKey<'_>,
    mut keep: impl FnMut(&DecisionRecord) -> bool,
) -> Result<Vec<DecisionRecord>, ReadError> {
    let mut out = Vec::new();
    for item in store.decisions(&[]) {
        let (k, v) = item?;
        let fields = open_record(key, &k, &v).ok_or_else(corrupt)?;
        let record = DecisionRecord { fields };
        if keep(&record) {
            out.push(record);
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    /// The aggregate's key, frozen (docs/format.md, "Directory"): `0x02`, the bucket's
    /// start, then the first 16 bytes of SHA-256 of the record's fields as encoded, with
    /// positions and times zero and count 1. The bytes hashed are written out here by
    /// hand, so a change of the grouping (which would split old and new counts under
    /// two keys) fails this test (found missing by review h34).
    #[test]
    fn an_aggregates_key_is_as_documented() {
        let fields = DecisionFields {
            subject: SubjectId::new("u").unwrap(),
            purpose: "ads".into(),
            recipient: Recipient::partner("acme").unwrap(),
            basis: crate::LegalBasis::Consent,
            allowed_by: 7,
            collected_at: 5,
            first_position: 9,
            last_position: 12,
            first_at: Timestamp::from_millis(3_600_000 * 5 + 1234),
            last_at: Timestamp::from_millis(3_600_000 * 5 + 9999),
            count: 4,
        };
        let mut grouped = vec![1u8]; // version
        grouped.extend(1u64.to_be_bytes());
        grouped.extend(b"u");
        grouped.extend(3u64.to_be_bytes());
        grouped.extend(b"ads");
        grouped.extend(1u32.to_be_bytes()); // partner
        grouped.extend(4u64.to_be_bytes());
        grouped.extend(b"acme");
        grouped.push(1); // consent (docs/format.md: legal basis codes)
        grouped.extend(7u64.to_be_bytes());
        grouped.extend(5u64.to_be_bytes());
        grouped.extend([0u8; 32]); // positions and times
        grouped.extend(1u64.to_be_bytes()); // count
        let digest = Sha256::digest(&grouped);
        let mut want = vec![AGGREGATED];
        want.extend((3_600_000u64 * 5).to_be_bytes());
        want.extend(&digest[..16]);
        assert_eq!(aggregate_key(&fields, 3_600_000), want);
        // The key is about the group alone: other positions, times in the bucket and
        // counts give the same key.
        let later = DecisionFields {
            first_position: 100,
            last_position: 200,
            first_at: Timestamp::from_millis(3_600_000 * 5),
            count: 1,
            ..fields.clone()
        };
        assert_eq!(aggregate_key(&later, 3_600_000), want);
    }

    #[test]
    fn the_next_record_number_follows_a_record_numbers_key_only() {
        assert_eq!(next_record_number(&every_use_key(0)), Some(1));
        assert_eq!(next_record_number(&every_use_key(41)), Some(42));
        assert_eq!(
            next_record_number(&every_use_key(LAST_PLAUSIBLE_RECORD)),
            Some(LAST_PLAUSIBLE_RECORD + 1)
        );
        // Planted past the limit, too short, too long: not a record number's key.
        assert_eq!(
            next_record_number(&every_use_key(LAST_PLAUSIBLE_RECORD + 1)),
            None
        );
        assert_eq!(next_record_number(&every_use_key(u64::MAX)), None);
        assert_eq!(next_record_number(&[EVERY, 0, 0, 0, 0, 0, 0, 7]), None);
        assert_eq!(next_record_number(&[EVERY, 0, 0, 0, 0, 0, 0, 0, 7, 0]), None);
        assert_eq!(next_record_number(&[]), None);
    }
}
