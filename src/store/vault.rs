//! The vault: the erasable part of the store, subject secrets and index records.
//!
//! sled is log-structured: a removed value stays in stale segments of its data file until
//! they happen to be reused (measured: after erasing a subject, its 32-byte secret was
//! still in the `db` file ten times over). Anything erasure must destroy therefore lives
//! here instead: a plain file of fixed 256-byte slots, where removing a record
//! overwrites its slot with zeros in place (erasure then syncs it).
//!
//! # Layout
//!
//! Slot 0 is a header (`"consent-ledger vault v1\n"`, then zeros). Every other slot is
//! either all zeros (free) or
//!
//! ```text
//! kind (1: secret, 2: index) | key length (1) | key | value length (1) | value | zeros |
//! checksum: first 16 bytes of SHA-256 over bytes 0..240, at 240..256
//! ```
//!
//! A secret is keyed by the subject id (value: the 32-byte secret); an index record by
//! its lookup pseudonym (value: the encoded index record). Slots are 256-byte aligned, so
//! a slot write never spans a disk sector boundary of 512 bytes or more. A slot whose
//! checksum does not match (a write torn by a crash, or damage) is treated as free and
//! zeroed when the vault is opened: the record it held is lost, and a decision that
//! needed it is denied (fail closed).
//!
//! # In memory
//!
//! Only a table from each record's name (kind and key, see [`Name`]) to its slot, keyed
//! by the name's 64-bit hash ([`Table`]): 17 to 40 bytes a record, with the map's spare
//! room (about 35 at a million subjects' two million records), and a byte a slot for
//! the kind of record it should hold. And the index digest (a count and a 64-bit sum,
//! see [`super::digest`]): computed from the slots' checksums while they are read at
//! open, kept up to date by every write and removal of an index record. Values, and the names
//! themselves, are read from the file when asked for, and listing the index streams the
//! file a chunk at a time. (Keeping keys and values in memory cost about 560 MB for a
//! million subjects, and a table keyed by the whole name about 200 MB.) No secret is
//! therefore held in memory beyond the call that reads it, and erasure has no in-memory
//! copy to forget.

use std::collections::hash_map::{DefaultHasher, Entry, RandomState};
use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::digest::{DigestKey, IndexDigest, Tally};
use crate::error::StorageError;

pub(crate) const SLOT: usize = 256;
const BODY: usize = SLOT - 16;
pub(crate) const MAGIC: &[u8] = b"consent-ledger vault v1\n";
/// Slots read at a time when scanning the file or listing records (256 KiB).
const CHUNK_SLOTS: u64 = 1024;
/// Most records the table is sized for before scanning (a 2 GiB file); beyond, it grows.
const MAX_RESERVED: usize = 1 << 23;

/// A key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// A decoded slot: free (`None`) or a record.
#[cfg(any(test, feature = "fuzzing"))]
type Decoded = Option<(Kind, Vec<u8>, Vec<u8>)>;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Secret = 1,
    Index = 2,
}

/// How the in-memory table names a record: its kind and 32 bytes: the key itself for an
/// index record (a 32-byte lookup pseudonym), a key under 32 bytes zero-padded with
/// its length last, and the SHA-256 of any other key (a long subject id). The table
/// keeps only the name's hash (see [`Table`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Name {
    kind: Kind,
    id: [u8; 32],
}

impl Hash for Name {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u8(self.kind as u8);
        state.write(&self.id);
    }
}

/// Hashes the table's names. An index record's name is a lookup pseudonym, an HMAC
/// output under the application's key: no one without the key can choose one, so its
/// first eight bytes, mixed with per-process random keys (one folded multiply), make a good
/// hash (the state's identifier table relies on the same). The mixing is for a vault
/// file written by someone else, whose names are whatever it holds: raw, names sharing
/// their low 32 bits and top byte fell in one probe sequence, and opening took
/// quadratic time. A secret's name comes from a subject id, which users may choose:
/// SipHash under per-process random keys, as `HashMap`'s default. (Opening a vault of a
/// million subjects inserts two million names: SipHash over all of them was a fifth of
/// the time.)
#[derive(Debug, Clone)]
struct NameHash {
    sip: RandomState,
    /// Random keys for index names: `(head ^ k0) * k1`, odd `k1`.
    keys: (u64, u64),
}

impl Default for NameHash {
    fn default() -> Self {
        let sip = RandomState::new();
        let keys = (sip.hash_one(0x6b30u64), sip.hash_one(0x6b31u64) | 1);
        NameHash { sip, keys }
    }
}

impl BuildHasher for NameHash {
    type Hasher = NameHasher;

    fn build_hasher(&self) -> NameHasher {
        NameHasher {
            kind: 0,
            fast: None,
            keys: self.keys,
            sip: self.sip.build_hasher(),
        }
    }
}

struct NameHasher {
    kind: u8,
    fast: Option<u64>,
    keys: (u64, u64),
    sip: DefaultHasher,
}

impl Hasher for NameHasher {
    fn write_u8(&mut self, kind: u8) {
        self.kind = kind;
    }

    fn write(&mut self, bytes: &[u8]) {
        match bytes.first_chunk::<8>() {
            Some(head) if self.kind == Kind::Index as u8 && self.fast.is_none() => {
                self.fast = Some(u64::from_le_bytes(*head));
            }
            _ => {
                self.sip.write_u8(self.kind);
                self.sip.write(bytes);
            }
        }
    }

    fn finish(&self) -> u64 {
        #[cfg(test)]
        if tests::COLLIDE.with(std::cell::Cell::get) {
            return 0;
        }
        match self.fast {
            Some(head) => {
                // A full-width multiply folded (as foldhash and wyhash mix): every bit
                // of the head reaches both halves of the 128-bit product, so every bit
                // of the result. (A 64-bit multiply carries differences upward only:
                // heads differing in their top bits kept their low bits.)
                let p = u128::from(head ^ self.keys.0) * u128::from(self.keys.1);
                (p as u64) ^ ((p >> 64) as u64)
            }
            None => self.sip.finish(),
        }
    }
}

/// What [`Table::find`] found.
#[allow(clippy::large_enum_variant, reason = "short-lived, returned once per lookup")]
enum Lookup {
    Absent,
    /// The record's slot, and its bytes (wiped when dropped: a secret's slot holds it).
    Found(u64, Zeroizing<[u8; SLOT]>),
    /// The slot the table points to for that name no longer holds a record whose name
    /// has its hash: the file changed under the open vault. It may have held the record
    /// asked for; a read of it is an error, a write or removal goes to that slot.
    Damaged(u64),
}

/// A hasher for keys that are hashes already ([`Table`]'s).
#[derive(Debug, Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn write(&mut self, bytes: &[u8]) {
        // Only `u64` keys are hashed with it; fold anything else in all the same.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, h: u64) {
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// The in-memory table: each record's slot, found by the record's name.
///
/// Keyed by the name's 64-bit hash ([`NameHash`]), not the name: 16 bytes a record (and
/// the map's spare room) instead of 48. A slot holds its record's kind and key, so a
/// lookup that finds a slot reads it to confirm the name. Two names with the same hash
/// (an index name's hash is the first 8 bytes of an HMAC output under the application's
/// key, a secret name's is SipHash under a per-process random key: nobody can aim for
/// a pair, and by chance one in about 2^64) are both kept, the later in `overflow`
/// under its whole name. (A file written by anyone else may hold any number of index
/// names with the same first 8 bytes: `overflow` hashes the whole name with SipHash
/// under random keys, so that they do not all land in one of its buckets.)
///
/// `kinds` says, for each slot, which kind of tracked record it holds (0: none): a
/// byte a slot, so that listing can tell, slot by slot, whether a slot it reads should
/// have held a record.
#[derive(Debug, Default)]
struct Table {
    by_hash: HashMap<u64, u64, BuildHasherDefault<Prehashed>>,
    overflow: HashMap<Name, u64>,
    hash: NameHash,
    kinds: Vec<u8>,
}

/// A record's name with its hash under the table's hasher, computed once per
/// operation (SipHash over a secret's name is not free when opening reads millions).
struct Named {
    id: Name,
    hash: u64,
}

impl Table {
    fn named(&self, kind: Kind, key: &[u8]) -> Named {
        let id = name(kind, key);
        Named {
            hash: self.hash.hash_one(id),
            id,
        }
    }

    #[cfg(any(test, feature = "fuzzing"))]
    fn len(&self) -> usize {
        self.by_hash.len() + self.overflow.len()
    }

    fn is_empty(&self) -> bool {
        self.by_hash.is_empty() && self.overflow.is_empty()
    }

    /// Every tracked slot.
    #[cfg(any(test, feature = "fuzzing"))]
    fn slots(&self) -> impl Iterator<Item = u64> + '_ {
        self.by_hash.values().chain(self.overflow.values()).copied()
    }

    fn in_overflow(&self, id: &Name) -> Option<u64> {
        if self.overflow.is_empty() {
            return None;
        }
        self.overflow.get(id).copied()
    }

    /// Where the record `named` is, reading the slot the table points to through
    /// `read` to confirm it.
    ///
    /// # Errors
    /// From `read`.
    fn find(
        &self,
        named: &Named,
        read: impl FnOnce(u64) -> Result<Zeroizing<[u8; SLOT]>, StorageError>,
    ) -> Result<Lookup, StorageError> {
        let (n, by_name) = match self.in_overflow(&named.id) {
            Some(n) => (n, true),
            None => match self.by_hash.get(&named.hash) {
                Some(n) => (*n, false),
                None => return Ok(Lookup::Absent),
            },
        };
        let slot = read(n)?;
        let held = match parse(&*slot) {
            Ok(Some((k, key, _))) => name(k, key),
            _ => return Ok(Lookup::Damaged(n)),
        };
        Ok(if held == named.id {
            Lookup::Found(n, slot)
        } else if !by_name && self.hash.hash_one(held) == named.hash && self.in_overflow(&held).is_none() {
            // The record tracked under that hash, whose name is not `named`: `named` is
            // not in the vault. (From `overflow`, found by the whole name, or holding a
            // record tracked at another slot, the slot has changed under the vault.)
            Lookup::Absent
        } else {
            Lookup::Damaged(n)
        })
    }

    /// Tracks a record that is not in the table yet at slot `n`.
    fn insert_new(&mut self, named: Named, n: u64) {
        match self.by_hash.entry(named.hash) {
            Entry::Vacant(free) => {
                free.insert(n);
            }
            Entry::Occupied(_) => {
                self.overflow.insert(named.id, n);
            }
        }
        self.set_kind(n, named.id.kind as u8);
    }

    /// Stops tracking the record `named`, held at slot `n`.
    fn remove(&mut self, named: &Named, n: u64) {
        if self.in_overflow(&named.id).is_some() {
            if let Some(m) = self.overflow.remove(&named.id) {
                self.set_kind(m, 0);
            }
        } else if let Entry::Occupied(held) = self.by_hash.entry(named.hash) {
            if *held.get() == n {
                held.remove();
                self.set_kind(n, 0);
            }
        }
    }

    fn set_kind(&mut self, n: u64, kind: u8) {
        let Ok(i) = usize::try_from(n) else {
            return;
        };
        if i >= self.kinds.len() {
            if kind == 0 {
                return;
            }
            self.kinds.resize(i.saturating_add(1), 0);
        }
        if let Some(k) = self.kinds.get_mut(i) {
            *k = kind;
        }
    }

    /// The kind of record tracked at slot `n`, if any.
    fn kind_at(&self, n: u64) -> Option<Kind> {
        match usize::try_from(n).ok().and_then(|i| self.kinds.get(i)) {
            Some(1) => Some(Kind::Secret),
            Some(2) => Some(Kind::Index),
            _ => None,
        }
    }

    /// Whether slot `n`, which holds the record `named`, is that record's tracked slot.
    fn tracks(&self, named: &Named, n: u64) -> bool {
        self.in_overflow(&named.id) == Some(n) || self.by_hash.get(&named.hash) == Some(&n)
    }
}

fn name(kind: Kind, key: &[u8]) -> Name {
    let id = match <[u8; 32]>::try_from(key) {
        Ok(id) if kind == Kind::Index => id,
        // A short key (most subject ids) is itself, zero-padded, with its length in the
        // last byte: distinct keys stay distinct without hashing them.
        _ if key.len() < 32 => {
            let mut id = [0u8; 32];
            if let Some(head) = id.get_mut(..key.len()) {
                head.copy_from_slice(key);
            }
            id[31] = key.len() as u8;
            id
        }
        _ => Sha256::digest(key).into(),
    };
    Name { kind, id }
}

#[derive(Debug, Default)]
struct Slots {
    /// Record name -> slot number.
    table: Table,
    free: Vec<u64>,
    /// Number of slots in the file, the header included.
    count: u64,
    /// Damaged slots found (and zeroed) when opening.
    damaged: u64,
    /// The digest of the index records the table tracks (see [`super::digest`]).
    tally: Tally,
}

/// The vault file and its in-memory table.
#[derive(Debug)]
pub(crate) struct Vault {
    file: Mutex<File>,
    slots: Mutex<Slots>,
    /// Written since the last sync (changed only while holding `file`). A sync of a
    /// clean file is skipped: on a virtual disk an fdatasync with nothing to write still
    /// costs a device cache flush, about a third of a durable append.
    dirty: AtomicBool,
    /// Repairs found when opening and not yet written (see [`Vault::open_deferred`]).
    pending: Mutex<Option<Repair>>,
}

/// What opening found to repair: written by [`Vault::finish_repair`].
#[derive(Debug)]
struct Repair {
    new_header: bool,
    zero: Vec<u64>,
    /// Cut the file to this many bytes (a partial last slot).
    truncate_to: Option<u64>,
    /// The directory to sync (the file is new).
    dir: Option<std::path::PathBuf>,
}

fn io(context: &'static str) -> impl Fn(std::io::Error) -> StorageError {
    move |e| StorageError::new(context, e)
}

fn poisoned() -> StorageError {
    StorageError::new(
        "using the vault",
        std::io::Error::other("a thread panicked while using the vault"),
    )
}

/// A tracked record's slot no longer holds it: the file changed under the open vault.
fn damaged_since_open() -> StorageError {
    StorageError::new(
        "reading the vault",
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a vault slot was damaged after the vault was opened",
        ),
    )
}

fn checksum(body: &[u8]) -> [u8; 16] {
    let d = Sha256::digest(body);
    let mut out = [0u8; 16];
    out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    out
}

/// The checksum a slot ends with (what the index digest hashes).
fn checksum_of(slot: &[u8]) -> &[u8] {
    slot.get(BODY..).unwrap_or_default()
}

/// A record's slot bytes (wiped when dropped: a secret's slot holds it), or `None` if
/// the record does not fit in a slot.
fn encode(kind: Kind, key: &[u8], value: &[u8]) -> Option<Zeroizing<[u8; SLOT]>> {
    let klen = u8::try_from(key.len()).ok()?;
    let vlen = u8::try_from(value.len()).ok()?;
    let value_at = key.len().checked_add(3)?;
    let end = value_at.checked_add(value.len())?;
    if end > BODY {
        return None;
    }
    let mut slot = Zeroizing::new([0u8; SLOT]);
    slot.get_mut(..2)?.copy_from_slice(&[kind as u8, klen]);
    slot.get_mut(2..value_at - 1)?.copy_from_slice(key);
    *slot.get_mut(value_at - 1)? = vlen;
    slot.get_mut(value_at..end)?.copy_from_slice(value);
    let sum = checksum(slot.get(..BODY)?);
    slot.get_mut(BODY..)?.copy_from_slice(&sum);
    Some(slot)
}

/// Parses a slot: `Ok(None)` for a free slot, `Err(())` for a damaged one.
#[cfg(any(test, feature = "fuzzing"))]
#[allow(
    clippy::result_unit_err,
    reason = "private helper; the caller only needs to know it is damaged"
)]
fn decode(slot: &[u8]) -> Result<Decoded, ()> {
    Ok(parse(slot)?.map(|(kind, key, value)| (kind, key.to_vec(), value.to_vec())))
}

/// A parsed slot, borrowing its key and value.
type Parsed<'a> = Option<(Kind, &'a [u8], &'a [u8])>;

/// Parses a slot without copying: `Ok(None)` for a free slot, `Err(())` for a damaged one.
#[allow(
    clippy::result_unit_err,
    reason = "private helper; the caller only needs to know it is damaged"
)]
fn parse(slot: &[u8]) -> Result<Parsed<'_>, ()> {
    parse_summed(slot, checksum)
}

/// [`parse`], with the checksum of a slot's body given by `sum` (computed in bulk by
/// [`scan_with`]).
#[allow(
    clippy::result_unit_err,
    reason = "private helper; the caller only needs to know it is damaged"
)]
fn parse_summed(slot: &[u8], sum: impl FnOnce(&[u8]) -> [u8; 16]) -> Result<Parsed<'_>, ()> {
    if all_zero(slot) {
        return Ok(None);
    }
    let (body, stored) = slot.split_at_checked(BODY).ok_or(())?;
    if sum(body) != stored {
        return Err(());
    }
    let kind = match body.first() {
        Some(1) => Kind::Secret,
        Some(2) => Kind::Index,
        _ => return Err(()),
    };
    let klen = usize::from(*body.get(1).ok_or(())?);
    let key = body.get(2..2 + klen).ok_or(())?;
    let vlen = usize::from(*body.get(2 + klen).ok_or(())?);
    let value = body.get(3 + klen..3 + klen + vlen).ok_or(())?;
    // Canonical: nothing but zeros after the value (a slot holds one record, nothing more).
    if body.get(3 + klen + vlen..).is_some_and(|rest| !all_zero(rest)) {
        return Err(());
    }
    Ok(Some((kind, key, value)))
}

/// Whether every byte is zero. Without an early exit, so the compiler checks sixteen
/// bytes or more at a time: a byte-at-a-time search for a nonzero byte through the
/// zeros after each record was a tenth of the vault's open.
fn all_zero(bytes: &[u8]) -> bool {
    bytes.iter().fold(0u8, |any, b| any | b) == 0
}

/// What reading the vault file's bytes found, and what opening must repair.
#[derive(Debug)]
pub(crate) struct Scan {
    slots: Slots,
    /// Slots to zero: damaged, or a conflicting or duplicate copy of a record.
    zero: Vec<u64>,
    /// The file needs a fresh header (it was empty, or a header write was torn).
    new_header: bool,
    /// The file ends in a partial slot and must be cut to `slots.count` slots.
    truncate: bool,
}

/// Bytes of a vault that holds no record: the header slot alone.
pub(crate) const EMPTY_LEN: usize = SLOT;

/// The header slot: the magic line, then zeros.
pub(crate) fn header() -> [u8; SLOT] {
    let mut header = [0u8; SLOT];
    if let Some(h) = header.get_mut(..MAGIC.len()) {
        h.copy_from_slice(MAGIC);
    }
    header
}

/// Reads the vault file's bytes into the in-memory table, deciding what to repair
/// (see [`scan_with`]).
///
/// # Errors
/// When the bytes do not start with the vault header.
#[cfg(any(test, feature = "fuzzing"))]
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan, StorageError> {
    scan_with(bytes.len() as u64, Some(sample_digest_key()), |offset, buf| {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| bytes.get(start..start.checked_add(buf.len())?))
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::UnexpectedEof))?;
        buf.copy_from_slice(src);
        Ok(())
    })
}

/// Reads a vault of `len` bytes through `read` (fill the buffer from that offset), a
/// chunk of slots at a time, into the in-memory table, deciding what to repair.
///
/// An empty file, or a file holding only the beginning of a header (creation stopped
/// part-way), is a new vault. A slot that does not decode is damaged. A record whose
/// key is already held by an earlier slot is a copy that no write of this crate makes:
/// if the values agree, the later copy is dropped; if they disagree, neither can be
/// trusted and all copies are dropped (fail closed). Either way every copy is zeroed,
/// so no slot holds a record the table does not track, which erasure could then miss.
///
/// # Errors
/// When the file does not start with the vault header, or cannot be read.
fn scan_with(
    len: u64,
    key: Option<DigestKey>,
    mut read: impl FnMut(u64, &mut [u8]) -> std::io::Result<()>,
) -> Result<Scan, StorageError> {
    let mut slots = Slots {
        tally: Tally::new(key),
        ..Slots::default()
    };
    let header = header();
    let slot_len = SLOT as u64;
    let mut first = vec![0u8; usize::try_from(len.min(slot_len)).unwrap_or(SLOT)];
    read(0, &mut first).map_err(io("reading the vault"))?;
    if len < slot_len && header.starts_with(&first) {
        slots.count = 1;
        return Ok(Scan {
            slots,
            zero: Vec::new(),
            new_header: true,
            truncate: false,
        });
    }
    if !first.starts_with(MAGIC) || len < slot_len {
        return Err(StorageError::new(
            "reading the vault",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the vault file has no vault header",
            ),
        ));
    }
    // A partial last slot (a crash while the file grew) is dropped.
    let whole = len / slot_len;
    // At most one record per slot: growing the table step by step instead re-inserted
    // every name about once more. A vault with many free slots reserves more than it
    // fills (about 20 bytes per 256-byte slot of its file), so the reservation is
    // capped, and one that cannot be made is left to growth.
    let expected = usize::try_from(whole.saturating_sub(1)).unwrap_or(usize::MAX);
    let _ = slots.table.by_hash.try_reserve(expected.min(MAX_RESERVED));
    let mut zero = Vec::new();
    let mut damaged = 0u64;
    let _ = slots
        .table
        .kinds
        .try_reserve(expected.saturating_add(1).min(MAX_RESERVED));
    // Every record read, by its name's hash: the table is filled after the scan, in the
    // order of the places the hashes take in it (see `fill`).
    let mut found: Vec<Found> = Vec::new();
    let _ = found.try_reserve(expected.min(MAX_RESERVED));
    // Allocated once at its largest and wiped when dropped: it holds secrets.
    let largest = usize::try_from(whole.saturating_sub(1).min(CHUNK_SLOTS)).unwrap_or(0) * SLOT;
    let mut buf = Zeroizing::new(vec![0u8; largest]);
    let mut start = 1u64;
    while start < whole {
        let n_slots = (whole - start).min(CHUNK_SLOTS);
        let chunk = buf
            .get_mut(..usize::try_from(n_slots).unwrap_or(0) * SLOT)
            .unwrap_or_default();
        read(start * slot_len, chunk).map_err(io("reading the vault"))?;
        // The chunk's checksums, sixteen at a time where the CPU has no SHA
        // instructions (see `crate::lanes`): the bulk of opening a large vault.
        // (Free slots, all zeros, are not hashed: `parse_summed` asks for the next
        // checksum only for a slot that is not free.)
        let bodies: Vec<&[u8]> = chunk
            .chunks_exact(SLOT)
            .filter(|s| !all_zero(s))
            .map(|s| s.get(..BODY).unwrap_or_default())
            .collect();
        let mut sums = crate::lanes::sha256_each(&bodies).into_iter();
        drop(bodies);
        for (n, slot) in (start..).zip(chunk.chunks_exact(SLOT)) {
            let checked = |_: &[u8]| {
                sums.next()
                    .and_then(|d| d.first_chunk::<16>().copied())
                    .unwrap_or_default()
            };
            match parse_summed(slot, checked) {
                Ok(Some((kind, key, _))) => {
                    // Counted now, and taken off again if `fill` finds it a copy.
                    if kind == Kind::Index {
                        slots.tally.add(checksum_of(slot));
                    }
                    slots.table.set_kind(n, kind as u8);
                    found.push(Found {
                        hash: slots.table.named(kind, key).hash,
                        n,
                    });
                }
                Ok(None) => slots.free.push(n),
                Err(()) => {
                    damaged += 1;
                    zero.push(n);
                }
            }
        }
        start += n_slots;
    }
    drop(buf);
    fill(&mut slots, found, &mut zero, |n| {
        let mut slot = Zeroizing::new([0u8; SLOT]);
        read(n * slot_len, &mut slot[..]).map_err(io("reading the vault"))?;
        Ok(slot)
    })?;
    zero.sort_unstable();
    slots.free.extend_from_slice(&zero);
    slots.count = whole;
    slots.damaged = damaged;
    Ok(Scan {
        slots,
        zero,
        new_header: false,
        truncate: !len.is_multiple_of(slot_len),
    })
}

/// A record [`scan_with`] read: its name's hash and its slot.
#[derive(Debug, Clone, Copy)]
struct Found {
    hash: u64,
    n: u64,
}

/// How many buckets a `HashMap` that holds `capacity` entries has (std's `HashMap`
/// keeps a power of two, at most seven eighths full). Only the speed of [`fill`]
/// depends on it being right.
fn buckets_for(capacity: usize) -> usize {
    let buckets = if capacity < 7 {
        capacity.saturating_add(1)
    } else {
        (capacity / 7).saturating_mul(8)
    };
    buckets.checked_next_power_of_two().unwrap_or(usize::MAX / 2 + 1)
}

/// Tracks the records [`scan_with`] `found`, and settles names found in more than one
/// slot, reading such slots again through `read`.
///
/// The records go in in the order of the places their hashes take in the table (std's
/// `HashMap` starts its search for a hash at the hash's low bits): inserted in the
/// order of the file, each of a large vault's millions of records waited for a cache
/// miss (about 0.8 s of the vault's 2.2 s of CPU per open of the 1M-subject ledger,
/// measured in stop 28), while in this
/// order the table fills from one end to the other. Records are looked at name by
/// name; a name's slots in the order of the file, as [`scan_with`] documents.
///
/// # Errors
/// From `read`, and when a slot read again no longer holds the record it held.
fn fill(
    slots: &mut Slots,
    mut found: Vec<Found>,
    zero: &mut Vec<u64>,
    mut read: impl FnMut(u64) -> Result<Zeroizing<[u8; SLOT]>, StorageError>,
) -> Result<(), StorageError> {
    let _ = slots.table.by_hash.try_reserve(found.len());
    let place_bits = buckets_for(slots.table.by_hash.capacity()).trailing_zeros();
    // Rotating a hash's low bits to the top sorts by place first; records with the
    // same hash still end up side by side (rotating is one to one).
    found.sort_unstable_by_key(|f| (f.hash.rotate_right(place_bits), f.n));
    // Names found in more than one slot with different values: none of them is trusted.
    let mut conflicted: HashSet<Name> = HashSet::new();
    let mut rest = found.as_slice();
    while let Some(first) = rest.first() {
        let same = rest.iter().take_while(|f| f.hash == first.hash).count();
        let (group, after) = rest.split_at(same);
        rest = after;
        if let [one] = group {
            // Alone with its hash (almost every record): no other record can be in
            // the table under it.
            if let Entry::Vacant(free) = slots.table.by_hash.entry(one.hash) {
                free.insert(one.n);
                continue;
            }
        }
        for f in group {
            settle(slots, f, zero, &mut conflicted, &mut read)?;
        }
    }
    Ok(())
}

/// Tracks the record `f` found in a slot that shares its name's hash with other slots:
/// a copy of a record an earlier slot holds is dropped; records of one name that
/// disagree are all dropped (fail closed). A dropped record's slot is zeroed, its kind
/// forgotten and, for an index record, its checksum taken off the tally.
fn settle(
    slots: &mut Slots,
    f: &Found,
    zero: &mut Vec<u64>,
    conflicted: &mut HashSet<Name>,
    read: &mut impl FnMut(u64) -> Result<Zeroizing<[u8; SLOT]>, StorageError>,
) -> Result<(), StorageError> {
    let slot = read(f.n)?;
    let Ok(Some((kind, key, _))) = parse(&slot[..]) else {
        return Err(damaged_since_open());
    };
    let named = slots.table.named(kind, key);
    if named.hash != f.hash {
        return Err(damaged_since_open());
    }
    let mut drop_copy = |slots: &mut Slots, n: u64, bytes: &[u8]| {
        zero.push(n);
        slots.table.set_kind(n, 0);
        if kind == Kind::Index {
            slots.tally.remove(checksum_of(bytes));
        }
    };
    if conflicted.contains(&named.id) {
        drop_copy(slots, f.n, &slot[..]);
        return Ok(());
    }
    // An earlier slot holding a record of that name, if any (read back to tell a copy
    // from a record whose name has the same hash).
    match slots.table.find(&named, &mut *read)? {
        Lookup::Absent => slots.table.insert_new(named, f.n),
        // Encoding is canonical: the same record makes the same slot bytes.
        Lookup::Found(_, earlier) if earlier[..] == slot[..] => drop_copy(slots, f.n, &slot[..]),
        Lookup::Found(held, earlier) => {
            slots.table.remove(&named, held);
            drop_copy(slots, held, &earlier[..]);
            drop_copy(slots, f.n, &slot[..]);
            conflicted.insert(named.id);
        }
        // It held a record when it was read a moment ago.
        Lookup::Damaged(_) => return Err(damaged_since_open()),
    }
    Ok(())
}

impl Scan {
    /// Number of index records read.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn index_records(&self) -> u64 {
        self.slots.tally.digest().map_or(0, |d| d.records)
    }

    /// Number of records read.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn records(&self) -> usize {
        self.slots.table.len()
    }

    /// Checks the table against the bytes it was read from: every slot after the header
    /// is exactly one of tracked record, free, or to be zeroed; every tracked record's
    /// slot holds a record of that name; and the header slot is never handed out.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn consistent_with(&self, bytes: &[u8]) -> Result<(), &'static str> {
        let s = &self.slots;
        if s.count == 0 {
            return Err("a vault without a header slot");
        }
        let mut seen = vec![0u8; usize::try_from(s.count).map_err(|_| "slot count overflows")?];
        let used = s.table.slots().chain(s.free.iter().copied());
        for n in used {
            let slot = seen
                .get_mut(usize::try_from(n).map_err(|_| "slot number overflows")?)
                .ok_or("a slot number beyond the file")?;
            if n == 0 {
                return Err("the header slot is used for a record");
            }
            *slot = slot.saturating_add(1);
        }
        if seen.iter().skip(1).any(|c| *c != 1) {
            return Err("a slot is neither a record nor free, or both");
        }
        for n in s.table.slots() {
            let start = usize::try_from(n)
                .map_err(|_| "slot number overflows")?
                .saturating_mul(SLOT);
            let on_disk = bytes
                .get(start..start.saturating_add(SLOT))
                .ok_or("record beyond the file")?;
            match decode(on_disk) {
                Ok(Some((kind, key, value))) if s.table.tracks(&s.table.named(kind, &key), n) => {
                    if encode(kind, &key, &value).as_ref().map(|e| &e[..]) != Some(on_disk) {
                        return Err("a record does not re-encode to its slot");
                    }
                }
                _ => return Err("a tracked slot does not hold the record named"),
            }
        }
        for n in &self.zero {
            if s.table.slots().any(|m| m == *n) {
                return Err("a slot to be zeroed still holds a tracked record");
            }
        }
        let kinds = s.table.kinds.iter().filter(|k| **k != 0).count();
        if kinds != s.table.len() {
            return Err("the slots' kinds do not count the tracked records");
        }
        for (id, n) in s.table.overflow.iter().map(|(id, n)| (id.kind, *n)) {
            if s.table.kind_at(n) != Some(id) {
                return Err("a tracked slot's kind is not its record's");
            }
        }
        if s.tally.digest() != Some(index_digest_of(bytes, &s.table)) {
            return Err("the index digest is not that of the tracked index records");
        }
        Ok(())
    }
}

/// The index digest of the index records `table` tracks in `bytes`, computed afresh.
#[cfg(any(test, feature = "fuzzing"))]
fn index_digest_of(bytes: &[u8], table: &Table) -> IndexDigest {
    let mut tally = Tally::new(Some(sample_digest_key()));
    for n in table.slots() {
        let slot = usize::try_from(n)
            .ok()
            .and_then(|n| bytes.get(n.checked_mul(SLOT)?..n.checked_mul(SLOT)?.checked_add(SLOT)?));
        if let (Some(slot), Some(Kind::Index)) = (slot, table.kind_at(n)) {
            tally.add(checksum_of(slot));
        }
    }
    tally.digest().unwrap_or_default()
}

/// A small valid vault file (a secret, an index record, a free slot, and an index
/// record whose name has the same hash as the first one's), for fuzz seeds.
#[cfg(feature = "fuzzing")]
pub(crate) fn sample_file() -> Vec<u8> {
    let mut out = header().to_vec();
    let mut same_hash = [9u8; 32];
    same_hash[..8].copy_from_slice(&[7; 8]);
    let records = [
        encode(Kind::Secret, b"user-1", &[0xA5; 32]),
        encode(Kind::Index, &[7; 32], &[1; 100]),
        Some(Zeroizing::new([0; SLOT])),
        encode(Kind::Secret, b"user-2", &[0x5A; 32]),
        encode(Kind::Index, &same_hash, &[2; 50]),
    ];
    for slot in records.iter().flatten() {
        out.extend_from_slice(&slot[..]);
    }
    out
}

/// The digest key of vaults read by [`scan`] and opened by the unit tests.
#[cfg(any(test, feature = "fuzzing"))]
fn sample_digest_key() -> DigestKey {
    DigestKey::from_bytes([0x42; 16])
}

/// Reads `buf.len()` bytes at `offset`.
fn read_at(file: &mut File, offset: u64, buf: &mut [u8]) -> std::io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Reads slot `n` (into a buffer wiped when dropped: a secret's slot holds it).
fn read_slot(file: &mut File, n: u64) -> Result<Zeroizing<[u8; SLOT]>, StorageError> {
    let mut slot = Zeroizing::new([0u8; SLOT]);
    read_at(file, n * SLOT as u64, &mut slot[..]).map_err(io("reading the vault"))?;
    Ok(slot)
}

impl Vault {
    /// Opens the vault at `path`, or creates it if `create` (a new ledger's).
    ///
    /// # Errors
    /// A missing file when not `create`; a file that is not a vault; storage failures.
    #[cfg(test)]
    pub(crate) fn open(path: &Path, create: bool) -> Result<Vault, StorageError> {
        let vault = Vault::open_deferred(path, create, Some(sample_digest_key()))?;
        vault.finish_repair()?;
        Ok(vault)
    }

    /// [`Vault::open`] without its repairs: they are kept for [`Vault::finish_repair`],
    /// which the first write also does. So an open of the ledger that fails a later
    /// check (a wrong key, say) writes nothing to the vault. Until then the vault reads
    /// as repaired: damaged slots and extra copies are not in the table.
    ///
    /// # Errors
    /// As [`Vault::open`], but for failures to write the repairs.
    ///
    /// The index digest is computed under `key` while the slots are read (none: it
    /// stays unknown).
    pub(crate) fn open_deferred(
        path: &Path,
        create: bool,
        key: Option<DigestKey>,
    ) -> Result<Vault, StorageError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(create).truncate(false);
        // Created readable by this user only: it holds the subjects' secrets.
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        // Anything but a regular file at the vault's name is refused, a symbolic link
        // first of all: secrets and index records would be written, and erasures zero
        // slots, wherever it points. (A FIFO is refused before it is opened.)
        let not_regular = || {
            StorageError::new(
                "opening the vault",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "the vault is not a regular file"),
            )
        };
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_file() => return Err(not_regular()),
            _ => {}
        }
        let mut file = options.open(path).map_err(io("opening the vault"))?;
        let meta = file.metadata().map_err(io("reading the vault"))?;
        // What was opened is what the name holds now (not a link swapped in meanwhile).
        let named = std::fs::symlink_metadata(path).map_err(io("reading the vault"))?;
        if !meta.file_type().is_file() || !named.file_type().is_file() || !same_file(&meta, &named) {
            return Err(not_regular());
        }
        let len = meta.len();
        // The vault never leaves a hole: slots are written in full at the end, and freed
        // ones are overwritten with zeros. A file that is mostly a hole (made by
        // `truncate`, at no cost to its maker) would make this scan read, and track as
        // free slots, every byte of its length (review r140: a 2 GiB hole took 85 MiB and
        // minutes). Refused, as sled's `db` is, by the same test.
        #[cfg(unix)]
        if super::mostly_a_hole(&meta) {
            return Err(StorageError::new(
                "opening the vault",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the vault file is mostly a hole, which the vault never makes",
                ),
            ));
        }
        let scan = scan_with(len, key, |offset, buf| read_at(&mut file, offset, buf))?;
        // An empty vault (or one holding part of a header) is a new one only for a
        // ledger being created. A used ledger's vault emptied is refused like a missing
        // one: a new header would unlink every identifier from its subject without a
        // word, and hide that it happened.
        if scan.new_header && !create {
            return Err(StorageError::new(
                "opening the vault",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "the vault is empty: its subjects' secrets and index records are gone",
                ),
            ));
        }
        let repair = Repair {
            new_header: scan.new_header,
            truncate_to: scan.truncate.then(|| scan.slots.count * SLOT as u64),
            // A new file's directory entry is durable only once its directory is synced:
            // until then, a power loss could take the whole file.
            dir: scan.new_header.then(|| {
                path.parent()
                    .filter(|d| !d.as_os_str().is_empty())
                    .unwrap_or(Path::new("."))
                    .to_path_buf()
            }),
            zero: scan.zero,
        };
        let needed = repair.new_header || !repair.zero.is_empty() || repair.truncate_to.is_some();
        Ok(Vault {
            file: Mutex::new(file),
            slots: Mutex::new(scan.slots),
            // What a process killed before its sync wrote may be in the page cache
            // only: the first sync of a session syncs the file whatever this one writes
            // (an open that finds the log longer than the head record says was durable
            // syncs, and then counts every entry durable; stop 32's review).
            dirty: AtomicBool::new(true),
            pending: Mutex::new(needed.then_some(repair)),
        })
    }

    /// Writes the repairs opening found (a new header, zeroed damaged slots and extra
    /// copies, a partial last slot cut off) and syncs them; nothing if there are none.
    ///
    /// # Errors
    /// Storage failures (the repairs stay pending).
    pub(crate) fn finish_repair(&self) -> Result<(), StorageError> {
        let mut pending = self.pending.lock().map_err(|_| poisoned())?;
        let Some(repair) = pending.as_ref() else {
            return Ok(());
        };
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        if repair.new_header {
            write_slot(&mut file, 0, &header())?;
        }
        for n in &repair.zero {
            write_slot(&mut file, *n, &[0u8; SLOT])?;
        }
        if let Some(len) = repair.truncate_to {
            file.set_len(len).map_err(io("repairing the vault"))?;
        }
        file.sync_all().map_err(io("repairing the vault"))?;
        if let Some(dir) = &repair.dir {
            super::sync_dir(dir).map_err(io("creating the vault"))?;
        }
        *pending = None;
        Ok(())
    }

    /// The value of a record, read from its slot (wiped when dropped).
    ///
    /// # Errors
    /// Storage failures; a slot that no longer holds the record the table names (the
    /// file was changed under the open vault) is an error, never a missing record.
    pub(crate) fn get(&self, kind: Kind, key: &[u8]) -> Result<Option<Zeroizing<Vec<u8>>>, StorageError> {
        let slots = self.slots.lock().map_err(|_| poisoned())?;
        let read = |n| read_slot(&mut *self.file.lock().map_err(|_| poisoned())?, n);
        let slot = match slots.table.find(&slots.table.named(kind, key), read)? {
            Lookup::Absent => return Ok(None),
            Lookup::Found(_, slot) => slot,
            Lookup::Damaged(_) => return Err(damaged_since_open()),
        };
        match parse(&*slot) {
            Ok(Some((k, stored, value))) if k == kind && stored == key => {
                Ok(Some(Zeroizing::new(value.to_vec())))
            }
            _ => Err(damaged_since_open()),
        }
    }

    /// Inserts or replaces a record. Replacing writes the new record over the old slot.
    pub(crate) fn put(&self, kind: Kind, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        let slot = encode(kind, key, value).ok_or_else(|| {
            StorageError::new(
                "writing the vault",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "record too large for a vault slot",
                ),
            )
        })?;
        // Repairs first: a free slot may be one queued for zeroing.
        self.finish_repair()?;
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        let named = slots.table.named(kind, key);
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        // A damaged slot the table gives that name is written over, as a found one.
        let (held, old) = match slots.table.find(&named, |n| read_slot(&mut file, n))? {
            Lookup::Absent => (None, None),
            Lookup::Found(n, old) => (Some(n), Some(old)),
            Lookup::Damaged(n) => (Some(n), None),
        };
        // The table and the free list change only once the write succeeded, so that a
        // failed write leaves them describing the file as it was.
        let n = match held {
            Some(n) => n,
            None => slots.free.last().copied().unwrap_or(slots.count),
        };
        self.dirty.store(true, Ordering::Relaxed);
        if let Err(e) = write_slot(&mut file, n, &slot) {
            // The slot may hold the old record, the new one, or part of each.
            slots.tally.lose_track();
            return Err(e);
        }
        if kind == Kind::Index {
            match (held, old) {
                (Some(_), Some(old)) => slots.tally.remove(checksum_of(&old[..])),
                // Written over a slot that changed under the vault: what it counted
                // for is not known.
                (Some(_), None) => slots.tally.lose_track(),
                (None, _) => {}
            }
            slots.tally.add(checksum_of(&slot[..]));
        } else if held.is_some() && old.is_none() {
            slots.tally.lose_track();
        }
        if held.is_none() {
            if slots.free.last() == Some(&n) {
                slots.free.pop();
            } else {
                slots.count += 1;
            }
            slots.table.insert_new(named, n);
        }
        Ok(())
    }

    /// Removes a record by overwriting its slot with zeros in place.
    pub(crate) fn remove(&self, kind: Kind, key: &[u8]) -> Result<(), StorageError> {
        self.finish_repair()?;
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        let named = slots.table.named(kind, key);
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        // A damaged slot the table gives that name is zeroed, as a found one: it may
        // hold what is left of the record.
        // Forgotten only once zeroed: after a failed write the record stays tracked (and
        // reads as damaged if the write was torn), so that a retry zeroes it.
        let (n, old) = match slots.table.find(&named, |n| read_slot(&mut file, n))? {
            Lookup::Absent => return Ok(()),
            Lookup::Found(n, old) => (n, Some(old)),
            Lookup::Damaged(n) => (n, None),
        };
        self.dirty.store(true, Ordering::Relaxed);
        self.zero_tracked(&mut slots, &mut file, &named, n, old.as_deref())
    }

    /// Zeroes slot `n`, which the table gives the record `named` (whose slot bytes were
    /// `old`, if it still held it), and stops tracking it.
    fn zero_tracked(
        &self,
        slots: &mut Slots,
        file: &mut File,
        named: &Named,
        n: u64,
        old: Option<&[u8; SLOT]>,
    ) -> Result<(), StorageError> {
        if let Err(e) = write_slot(file, n, &[0u8; SLOT]) {
            slots.tally.lose_track();
            return Err(e);
        }
        match old {
            Some(old) if named.id.kind == Kind::Index => slots.tally.remove(checksum_of(&old[..])),
            Some(_) => {}
            // The slot changed under the vault: what it counted for is not known.
            None => slots.tally.lose_track(),
        }
        slots.table.remove(named, n);
        slots.free.push(n);
        Ok(())
    }

    /// Removes a record, as [`Vault::remove`], only if `remove` says so of its value:
    /// decided and done under the vault's lock, so that no write of the same name comes
    /// in between. Returns whether it removed one.
    pub(crate) fn remove_if(
        &self,
        kind: Kind,
        key: &[u8],
        remove: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, StorageError> {
        self.finish_repair()?;
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        let named = slots.table.named(kind, key);
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        let (n, old) = match slots.table.find(&named, |n| read_slot(&mut file, n))? {
            Lookup::Absent => return Ok(false),
            Lookup::Found(n, slot) => match parse(&*slot) {
                Ok(Some((_, _, value))) if remove(value) => (n, Some(slot)),
                _ => return Ok(false),
            },
            // What is left of a record that may have been this one: zeroed, as by `remove`.
            Lookup::Damaged(n) => (n, None),
        };
        self.dirty.store(true, Ordering::Relaxed);
        self.zero_tracked(&mut slots, &mut file, &named, n, old.as_deref())?;
        Ok(true)
    }

    /// All records of a kind, read from the file a chunk of slots at a time (the locks
    /// are taken per chunk, not for the whole walk).
    #[cfg(test)]
    pub(crate) fn records(&self, kind: Kind) -> Records<'_> {
        self.records_in(kind, 0, 1)
    }

    /// The records of a kind whose slots lie in part `part` of `parts` equal ranges of
    /// the slots that exist now (so that several threads can read the vault at once).
    pub(crate) fn records_in(&self, kind: Kind, part: u64, parts: u64) -> Records<'_> {
        let count = self.slots.lock().map(|s| s.count).unwrap_or(0);
        let parts = parts.max(1);
        let per_part = count.div_ceil(parts);
        let start = per_part.saturating_mul(part).max(1);
        let end = if part.saturating_add(1) >= parts {
            u64::MAX
        } else {
            per_part.saturating_mul(part.saturating_add(1))
        };
        Records {
            vault: self,
            kind,
            next_slot: start,
            end,
            ready: Vec::new(),
            done: false,
        }
    }

    pub(crate) fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.slots.lock().map_err(|_| poisoned())?.table.is_empty())
    }

    /// Whether opening found records it drops (damaged slots, conflicting or duplicate
    /// copies, to be zeroed by the repairs, or a partial last slot, to be cut): until
    /// the repairs are written. (A slot read back as zeros, or whole slots cut from the
    /// end, look like free space and cannot be told from it here: the index digest,
    /// compared with the one a clean close recorded, tells them apart.)
    pub(crate) fn drops_records(&self) -> Result<bool, StorageError> {
        Ok(self
            .pending
            .lock()
            .map_err(|_| poisoned())?
            .as_ref()
            .is_some_and(|r| !r.zero.is_empty() || r.truncate_to.is_some()))
    }

    /// The digest of the index records the vault holds (see [`super::digest`]), kept
    /// up to date by every write and removal; `None` if not known (opened without a
    /// digest key, or a write failed or met a slot changed under the open vault).
    pub(crate) fn index_digest(&self) -> Result<Option<IndexDigest>, StorageError> {
        Ok(self.slots.lock().map_err(|_| poisoned())?.tally.digest())
    }

    /// Slots found damaged (and zeroed) when the vault was opened.
    #[cfg_attr(not(test), allow(dead_code, reason = "exposed for tests and diagnostics"))]
    pub(crate) fn damaged(&self) -> u64 {
        self.slots.lock().map(|s| s.damaged).unwrap_or(0)
    }

    /// Makes every write so far durable; nothing to do if nothing was written since the
    /// last successful sync.
    pub(crate) fn sync(&self) -> Result<(), StorageError> {
        let file = self.file.lock().map_err(|_| poisoned())?;
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(());
        }
        file.sync_data().map_err(|e| {
            self.dirty.store(true, Ordering::Relaxed);
            StorageError::new("syncing the vault", e)
        })
    }

    /// Reads the records of `kind` in slots `from..end` (one chunk): the pairs, and the
    /// next slot to read (`None` at the end).
    fn read_chunk(&self, kind: Kind, from: u64, end: u64) -> Result<(Vec<Pair>, Option<u64>), StorageError> {
        let slots = self.slots.lock().map_err(|_| poisoned())?;
        let end = end.min(slots.count);
        if from >= end {
            return Ok((Vec::new(), None));
        }
        let n_slots = (end - from).min(CHUNK_SLOTS);
        // Wiped when dropped: the chunk holds every kind of record, secrets too.
        let mut buf = Zeroizing::new(vec![0u8; usize::try_from(n_slots).unwrap_or(0) * SLOT]);
        {
            let mut file = self.file.lock().map_err(|_| poisoned())?;
            read_at(&mut file, from * SLOT as u64, &mut buf).map_err(io("reading the vault"))?;
        }
        let mut out = Vec::new();
        for (n, slot) in (from..).zip(buf.chunks_exact(SLOT)) {
            // Only what the table tracks counts; anything else in a slot was never
            // written by this vault since it was opened. A slot that should hold a
            // record of this kind and does not (zeroed, damaged or replaced since the
            // vault was opened) is an error, as it is for `get`: the listing would
            // otherwise be short without saying so.
            let expected = slots.table.kind_at(n);
            match parse(slot) {
                Ok(Some((k, key, value))) if k == kind && expected == Some(kind) => {
                    if !slots.table.tracks(&slots.table.named(k, key), n) {
                        return Err(damaged_since_open());
                    }
                    out.push((key.to_vec(), value.to_vec()));
                }
                _ if expected == Some(kind) => return Err(damaged_since_open()),
                // Another kind's tracked slot, checked when that kind is listed; or a
                // free slot.
                Ok(_) => {}
                Err(()) if expected.is_some() => return Err(damaged_since_open()),
                Err(()) => {}
            }
        }
        Ok((out, Some(from + n_slots)))
    }
}

/// The records of one kind, streamed from the file (see [`Vault::records`]).
#[derive(Debug)]
pub(crate) struct Records<'a> {
    vault: &'a Vault,
    kind: Kind,
    next_slot: u64,
    /// First slot not to read.
    end: u64,
    /// Records read and not yet handed out, in reverse order.
    ready: Vec<Pair>,
    done: bool,
}

impl Iterator for Records<'_> {
    type Item = Result<Pair, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(pair) = self.ready.pop() {
                return Some(Ok(pair));
            }
            if self.done {
                return None;
            }
            match self.vault.read_chunk(self.kind, self.next_slot, self.end) {
                Ok((mut pairs, next)) => {
                    pairs.reverse();
                    self.ready = pairs;
                    match next {
                        Some(n) => self.next_slot = n,
                        None => self.done = true,
                    }
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

fn write_slot(file: &mut File, n: u64, slot: &[u8; SLOT]) -> Result<(), StorageError> {
    file.seek(SeekFrom::Start(n * SLOT as u64))
        .map_err(io("writing the vault"))?;
    file.write_all(slot).map_err(io("writing the vault"))
}

/// Whether two metadata describe the same file (on Unix: device and inode; elsewhere the
/// name's check alone has to do).
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        a.dev() == b.dev() && a.ino() == b.ino()
    }
    #[cfg(not(unix))]
    {
        let _ = (a, b);
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    thread_local! {
        /// Makes every name hash to 0 on this thread, so that every record after the
        /// first goes through the table's collision path.
        pub(super) static COLLIDE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    #[test]
    fn every_write_marks_the_vault_for_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&dir.path().join("vault"), true).unwrap();
        let dirty = |v: &Vault| v.dirty.load(Ordering::Relaxed);
        assert!(dirty(&v), "a freshly opened vault is synced once");
        v.sync().unwrap();
        assert!(!dirty(&v));
        // (Opened again: what the last process wrote may not be on the disk.)
        drop(v);
        let v = Vault::open(&dir.path().join("vault"), true).unwrap();
        assert!(dirty(&v), "a reopened vault is synced once");
        v.sync().unwrap();
        v.put(Kind::Secret, b"subject-1", &[1; 32]).unwrap();
        assert!(dirty(&v), "a put must be synced");
        v.sync().unwrap();
        assert!(!dirty(&v));
        v.remove(Kind::Secret, b"subject-2").unwrap();
        assert!(!dirty(&v), "removing an absent record writes nothing");
        v.remove(Kind::Secret, b"subject-1").unwrap();
        assert!(dirty(&v), "a removal must be synced");
        v.sync().unwrap();
        assert!(!dirty(&v));
    }

    #[test]
    fn records_survive_reopen_and_removal_zeroes_the_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        let secret = [0xA5u8; 32];
        v.put(Kind::Secret, b"subject-1", &secret).unwrap();
        v.put(Kind::Index, &[7; 32], b"record").unwrap();
        v.put(Kind::Index, &[8; 32], b"other").unwrap();
        v.sync().unwrap();
        drop(v);
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.get(Kind::Secret, b"subject-1").unwrap().unwrap()[..], secret);
        assert_eq!(v.records(Kind::Index).count(), 2);
        v.remove(Kind::Secret, b"subject-1").unwrap();
        v.remove(Kind::Index, &[7; 32]).unwrap();
        v.sync().unwrap();
        drop(v);
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(32).any(|w| w == secret), "secret bytes remain");
        assert!(!raw.windows(6).any(|w| w == b"record"), "index bytes remain");
        assert!(raw.windows(5).any(|w| w == b"other"));
        // Freed slots are reused: the file does not grow.
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"subject-2", &[1; 32]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), raw.len() as u64);
    }

    #[test]
    fn torn_or_damaged_slots_are_dropped_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        drop(v);
        let mut raw = std::fs::read(&path).unwrap();
        raw[SLOT + 40] ^= 1; // damage slot 1
        raw.extend_from_slice(&[9; 100]); // a torn append
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.damaged(), 1);
        assert_eq!(v.get(Kind::Secret, b"a").unwrap(), None);
        assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * SLOT as u64);
    }

    /// The slot checksums computed in bulk (in lanes, or one by one through `sha2`,
    /// whichever the CPU makes the faster) give the same scan as each other, over more
    /// than one chunk of slots with free slots between records, damaged slots, a
    /// conflicting copy and a torn last slot.
    #[test]
    fn a_scan_is_the_same_with_checksums_in_lanes_or_not() {
        let mut raw = header().to_vec();
        for i in 0..CHUNK_SLOTS + 40 {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&i.to_be_bytes());
            match i % 7 {
                0 => raw.extend_from_slice(&[0; SLOT]),
                1 => {
                    let mut slot = encode(Kind::Index, &key, b"value").unwrap();
                    slot[40] ^= 1;
                    raw.extend_from_slice(&slot[..]);
                }
                2 => raw.extend_from_slice(&encode(Kind::Secret, &key[..8], &[3; 32]).unwrap()[..]),
                _ => raw.extend_from_slice(&encode(Kind::Index, &key, b"value").unwrap()[..]),
            }
        }
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&3u64.to_be_bytes());
        raw.extend_from_slice(&encode(Kind::Index, &key, b"other").unwrap()[..]);
        raw.extend_from_slice(&[5; 100]);
        let outcome = |lanes: bool| {
            crate::lanes::force(Some(lanes));
            let scan = scan(&raw).unwrap();
            crate::lanes::force(None);
            let s = &scan.slots;
            (
                scan.zero.clone(),
                s.free.clone(),
                s.damaged,
                s.count,
                s.tally.digest(),
                scan.truncate,
            )
        };
        let (in_lanes, one_by_one) = (outcome(true), outcome(false));
        assert_eq!(in_lanes, one_by_one);
        let (zero, free, damaged, ..) = in_lanes;
        assert!(damaged > 100 && free.len() > 100 && zero.contains(&4));
    }

    /// The index digest read at open is the one kept up to date before; an index slot
    /// zeroed, cut from the end, or altered with its checksum recomputed (all of which
    /// open takes for free space or a record) gives another; secrets do not count; a
    /// conflicting copy drops both from it.
    #[test]
    fn the_index_digest_notices_what_looks_like_free_space() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Index, &[7; 32], b"seven").unwrap();
        v.put(Kind::Secret, b"s", &[3; 32]).unwrap();
        v.put(Kind::Index, &[8; 32], b"eight").unwrap();
        v.put(Kind::Index, &[8; 32], b"eight again").unwrap();
        v.put(Kind::Index, &[9; 32], b"nine").unwrap();
        v.remove(Kind::Index, &[9; 32]).unwrap();
        let kept = v.index_digest().unwrap().unwrap();
        assert_eq!(kept.records, 2);
        drop(v);
        let raw = std::fs::read(&path).unwrap();
        let digest = |bytes: &[u8]| {
            std::fs::write(&path, bytes).unwrap();
            let v = Vault::open_deferred(&path, false, Some(sample_digest_key())).unwrap();
            let d = v.index_digest().unwrap().unwrap();
            (d, v.drops_records().unwrap())
        };
        assert_eq!(digest(&raw), (kept, false));
        // Slots 1 and 3 hold the index records, slot 2 the secret.
        let mut zeroed = raw.clone();
        zeroed[SLOT..2 * SLOT].fill(0);
        assert_eq!(digest(&zeroed).0.records, 1);
        assert!(!digest(&zeroed).1, "a zeroed slot is free space to the vault");
        let cut = &raw[..3 * SLOT];
        assert_eq!(
            digest(cut),
            (
                IndexDigest {
                    records: 1,
                    ..digest(cut).0
                },
                false
            )
        );
        assert_ne!(digest(cut).0, kept);
        let mut altered = raw.clone();
        altered[SLOT..2 * SLOT].copy_from_slice(&encode(Kind::Index, &[7; 32], b"SEVEN").unwrap()[..]);
        let (d, drops) = digest(&altered);
        assert_eq!((d.records, drops), (2, false));
        assert_ne!(d, kept);
        // Moved to another slot: the same records, the same digest.
        let mut moved = raw.clone();
        moved.extend_from_slice(&raw[SLOT..2 * SLOT]);
        moved[SLOT..2 * SLOT].fill(0);
        assert_eq!(digest(&moved), (kept, false));
        // The secret does not count.
        let mut no_secret = raw.clone();
        no_secret[2 * SLOT..3 * SLOT].fill(0);
        assert_eq!(digest(&no_secret).0, kept);
        // A conflicting copy: neither counts (and the vault says it drops records).
        let mut copies = raw.clone();
        copies.extend_from_slice(&encode(Kind::Index, &[7; 32], b"other").unwrap()[..]);
        let (d, drops) = digest(&copies);
        assert_eq!((d.records, drops), (1, true));
        // Without a key, no digest.
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open_deferred(&path, false, None).unwrap();
        assert_eq!(v.index_digest().unwrap(), None);
    }

    #[test]
    fn buckets_for_is_the_bucket_count_of_a_map_that_holds_the_capacity() {
        // std's `HashMap` (hashbrown) holds 7/8 of its buckets, all but one below 8.
        let capacity_of = |buckets: usize| if buckets < 8 { buckets - 1 } else { buckets / 8 * 7 };
        for bits in 2..usize::BITS - 1 {
            let buckets = 1usize << bits;
            assert_eq!(buckets_for(capacity_of(buckets)), buckets, "{buckets}");
        }
        // And that is what std's maps report: each capacity is one of those.
        for n in [1usize, 3, 6, 7, 8, 13, 14, 15, 100, 1000, 2_000_000] {
            let capacity = HashMap::<u64, u64>::with_capacity(n).capacity();
            assert_eq!(capacity_of(buckets_for(capacity)), capacity, "{n}");
        }
        // No overflow, whatever a map reports.
        assert!(buckets_for(usize::MAX).is_power_of_two());
    }

    /// Opening counts every index record it reads, then takes off those it drops as
    /// copies: what is left must be the digest of the records it keeps, whatever the
    /// order of the copies and whether or not names share hashes.
    #[test]
    fn copies_found_at_open_leave_the_digest_of_the_records_kept() {
        let check = || {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vault");
            let v = Vault::open(&path, true).unwrap();
            v.put(Kind::Index, &[7; 32], b"seven").unwrap();
            v.put(Kind::Secret, b"s", &[3; 32]).unwrap();
            v.put(Kind::Index, &[8; 32], b"eight").unwrap();
            v.put(Kind::Index, &[9; 32], b"nine").unwrap();
            drop(v);
            let raw = std::fs::read(&path).unwrap();
            let open = |bytes: &[u8]| {
                std::fs::write(&path, bytes).unwrap();
                let v = Vault::open_deferred(&path, false, Some(sample_digest_key())).unwrap();
                let mut listed: Vec<Vec<u8>> = v.records(Kind::Index).map(|r| r.unwrap().1).collect();
                listed.sort();
                (
                    v.index_digest().unwrap().unwrap(),
                    listed,
                    v.drops_records().unwrap(),
                )
            };
            // Slots 1, 3 and 4 hold the index records; without 8's, the records kept below.
            let mut without_eight = raw.clone();
            without_eight[3 * SLOT..4 * SLOT].fill(0);
            let (kept, listed, _) = open(&without_eight);
            assert_eq!(
                (kept.records, listed),
                (2, vec![b"nine".to_vec(), b"seven".to_vec()])
            );
            // An identical copy of 7, a conflicting copy of 8, then an identical one.
            let mut copies = raw.clone();
            copies.extend_from_slice(&raw[SLOT..2 * SLOT]);
            copies.extend_from_slice(&encode(Kind::Index, &[8; 32], b"EIGHT").unwrap()[..]);
            copies.extend_from_slice(&raw[3 * SLOT..4 * SLOT]);
            let (digest, listed, drops) = open(&copies);
            assert_eq!(digest, kept);
            assert_eq!(listed, vec![b"nine".to_vec(), b"seven".to_vec()]);
            assert!(drops);
            // The same copies before the records they copy.
            let mut first = copies[5 * SLOT..].to_vec();
            first.splice(0..0, raw[..SLOT].iter().copied());
            first.extend_from_slice(&raw[SLOT..]);
            let (digest, listed, _) = open(&first);
            assert_eq!(digest, kept);
            assert_eq!(listed, vec![b"nine".to_vec(), b"seven".to_vec()]);
        };
        check();
        colliding(check);
    }

    #[test]
    fn foreign_file_and_oversize_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        std::fs::write(&path, b"not a vault").unwrap();
        assert!(Vault::open(&path, true).is_err());
        let path = dir.path().join("vault2");
        let v = Vault::open(&path, true).unwrap();
        assert!(v.put(Kind::Index, &[0; 32], &[0; 230]).is_err());
        assert!(v.put(Kind::Secret, &[b'x'; 300], &[0; 32]).is_err());
    }

    #[test]
    fn duplicate_records_are_zeroed_so_erasure_cannot_miss_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        drop(v);
        // Copies that no write of the vault makes: "a" twice with its own value, "b"
        // again with another value.
        let mut raw = std::fs::read(&path).unwrap();
        raw.extend_from_slice(&encode(Kind::Secret, b"a", &[1; 32]).unwrap()[..]);
        raw.extend_from_slice(&encode(Kind::Secret, b"b", &[9; 32]).unwrap()[..]);
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.get(Kind::Secret, b"a").unwrap().unwrap()[..], [1; 32]);
        // Which "b" is right cannot be told: neither is trusted.
        assert_eq!(v.get(Kind::Secret, b"b").unwrap(), None);
        v.remove(Kind::Secret, b"a").unwrap();
        drop(v);
        let raw = std::fs::read(&path).unwrap();
        for secret in [[1u8; 32], [2; 32], [9; 32]] {
            assert!(
                !raw.windows(32).any(|w| w == secret),
                "a copy of a secret remains"
            );
        }
    }

    #[test]
    fn torn_header_is_a_new_vault_not_a_lost_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        // Creation stopped after part of the header reached the disk.
        std::fs::write(&path, &MAGIC[..10]).unwrap();
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        drop(v);
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.get(Kind::Secret, b"a").unwrap().unwrap()[..], [1; 32]);
        drop(v);
        // The header slot itself, cut short: the record must not land on slot 0.
        std::fs::write(&path, &header()[..100]).unwrap();
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        drop(v);
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
    }

    #[test]
    fn bytes_after_the_value_make_a_slot_damaged() {
        let mut s = encode(Kind::Secret, b"a", &[1; 32]).unwrap();
        assert!(decode(&s[..]).is_ok());
        s[100] = 7;
        let sum = checksum(&s[..BODY]);
        s[BODY..].copy_from_slice(&sum);
        assert_eq!(decode(&s[..]), Err(()));
    }

    #[test]
    fn records_stream_across_chunks_and_copies_are_found_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        let n = CHUNK_SLOTS as usize * 2 + 10;
        for i in 0..n {
            v.put(
                Kind::Index,
                &[(i % 251) as u8, (i / 251) as u8].repeat(16),
                &i.to_be_bytes(),
            )
            .unwrap();
            v.put(Kind::Secret, format!("s{i}").as_bytes(), &[1; 32]).unwrap();
        }
        v.remove(Kind::Index, &[5, 0].repeat(16)).unwrap();
        let listed: Vec<Pair> = v.records(Kind::Index).map(Result::unwrap).collect();
        assert_eq!(listed.len(), n - 1);
        let mut values: Vec<usize> = listed
            .iter()
            .map(|(_, value)| usize::from_be_bytes(value[..].try_into().unwrap()))
            .collect();
        values.sort_unstable();
        assert_eq!(values, (0..n).filter(|i| *i != 5).collect::<Vec<_>>());
        drop(v);
        // A copy of the first record, two chunks later, with the same value: dropped.
        let mut raw = std::fs::read(&path).unwrap();
        let first = raw[SLOT..2 * SLOT].to_vec();
        raw.extend_from_slice(&first);
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.records(Kind::Index).count(), n - 1);
        let raw = std::fs::read(&path).unwrap();
        assert!(
            raw[raw.len() - SLOT..].iter().all(|b| *b == 0),
            "the copy was zeroed"
        );
    }

    #[test]
    fn parts_of_the_slots_together_list_every_record_once() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&dir.path().join("vault"), true).unwrap();
        for i in 0..3000u32 {
            v.put(Kind::Index, &[i.to_be_bytes(); 8].concat(), &i.to_be_bytes())
                .unwrap();
        }
        let all: Vec<Pair> = v.records(Kind::Index).map(Result::unwrap).collect();
        assert_eq!(all.len(), 3000);
        for parts in [1, 2, 3, 7, 5000] {
            let mut joined: Vec<Pair> = (0..parts)
                .flat_map(|p| v.records_in(Kind::Index, p, parts).map(Result::unwrap))
                .collect();
            joined.sort();
            let mut expected = all.clone();
            expected.sort();
            assert_eq!(joined, expected, "{parts} parts");
        }
    }

    #[test]
    fn a_slot_damaged_after_opening_is_an_error_not_a_missing_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Index, &[7; 32], b"record").unwrap();
        v.sync().unwrap();
        // Another writer damages both slots behind the open vault's back.
        let mut raw = std::fs::read(&path).unwrap();
        raw[SLOT + 10] ^= 1;
        raw[2 * SLOT + 10] ^= 1;
        std::fs::write(&path, &raw).unwrap();
        assert!(v.get(Kind::Secret, b"a").is_err());
        assert_eq!(v.get(Kind::Secret, b"b").unwrap(), None);
        assert!(v.records(Kind::Index).any(|r| r.is_err()));
    }

    /// Makes the vault's writes fail (a read-only handle stands in for EIO or ENOSPC)
    /// while `f` runs.
    fn with_failing_writes(v: &Vault, path: &Path, f: impl FnOnce()) {
        let rw = std::mem::replace(&mut *v.file.lock().unwrap(), File::open(path).unwrap());
        f();
        *v.file.lock().unwrap() = rw;
    }

    fn in_file(path: &Path, bytes: &[u8]) -> bool {
        std::fs::read(path)
            .unwrap()
            .windows(bytes.len())
            .any(|w| w == bytes)
    }

    #[test]
    fn a_failed_removal_keeps_the_record_so_that_a_retry_erases_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[0xA5; 32]).unwrap();
        v.sync().unwrap();
        with_failing_writes(&v, &path, || assert!(v.remove(Kind::Secret, b"a").is_err()));
        assert_eq!(v.get(Kind::Secret, b"a").unwrap().unwrap()[..], [0xA5; 32]);
        v.remove(Kind::Secret, b"a").unwrap();
        assert!(!in_file(&path, &[0xA5; 32]), "the retried removal erased it");
        assert_eq!(v.get(Kind::Secret, b"a").unwrap(), None);
        drop(v);
        assert_eq!(
            Vault::open(&path, true).unwrap().get(Kind::Secret, b"a").unwrap(),
            None
        );
    }

    #[test]
    fn a_failed_put_takes_no_slot_and_tracks_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        v.remove(Kind::Secret, b"a").unwrap();
        // Slot 1 is free; a failed put neither uses it up nor tracks the record.
        with_failing_writes(&v, &path, || {
            assert!(v.put(Kind::Secret, b"c", &[3; 32]).is_err())
        });
        assert_eq!(v.get(Kind::Secret, b"c").unwrap(), None);
        v.put(Kind::Secret, b"d", &[4; 32]).unwrap();
        // And on a full file, a failed put does not count a slot it never wrote.
        with_failing_writes(&v, &path, || {
            assert!(v.put(Kind::Secret, b"e", &[5; 32]).is_err())
        });
        v.put(Kind::Secret, b"f", &[6; 32]).unwrap();
        v.sync().unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 4 * SLOT as u64);
        assert_eq!(v.records(Kind::Secret).count(), 3);
        drop(v);
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.get(Kind::Secret, b"d").unwrap().unwrap()[..], [4; 32]);
        assert_eq!(v.get(Kind::Secret, b"f").unwrap().unwrap()[..], [6; 32]);
        assert_eq!(v.get(Kind::Secret, b"c").unwrap(), None);
        assert_eq!(v.get(Kind::Secret, b"e").unwrap(), None);
    }

    /// A vault holding secrets "a" (slot 1, tracked by hash) and "b" (slot 2, by whole
    /// name, under `colliding`), then slot `from` copied over slot `to` behind its back.
    fn a_and_b_colliding_then_copied(
        from: usize,
        to: usize,
    ) -> (tempfile::TempDir, std::path::PathBuf, Vault) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path, true).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        v.sync().unwrap();
        let mut raw = std::fs::read(&path).unwrap();
        let copied = raw[from * SLOT..(from + 1) * SLOT].to_vec();
        raw[to * SLOT..(to + 1) * SLOT].copy_from_slice(&copied);
        std::fs::write(&path, &raw).unwrap();
        (dir, path, v)
    }

    /// A record tracked by its whole name (its hash was taken) whose slot now holds
    /// another record with the same hash: the file changed under the vault, so reading
    /// it is an error, not a missing record; and removing both names leaves no copy.
    #[test]
    fn an_overflow_slot_holding_another_same_hash_record_is_damaged() {
        colliding(|| {
            let (_dir, path, v) = a_and_b_colliding_then_copied(1, 2);
            assert!(v.get(Kind::Secret, b"b").is_err());
            // "c" has the same hash and is tracked nowhere: absent, as before.
            assert_eq!(v.get(Kind::Secret, b"c").unwrap(), None);
            v.remove(Kind::Secret, b"b").unwrap();
            v.remove(Kind::Secret, b"a").unwrap();
            assert!(!in_file(&path, &[1; 32]));
        });
    }

    /// The record tracked under a hash is replaced by a copy of a record tracked by its
    /// whole name: a name with that hash may have been the one lost, so reading it is an
    /// error.
    #[test]
    fn a_hash_slot_holding_a_record_tracked_elsewhere_is_damaged() {
        colliding(|| {
            let (_dir, _, v) = a_and_b_colliding_then_copied(2, 1);
            assert!(v.get(Kind::Secret, b"a").is_err());
            assert!(v.get(Kind::Secret, b"c").is_err());
            assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
        });
    }

    #[test]
    fn listing_reports_a_tracked_slot_changed_after_opening() {
        for change in 0..3 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vault");
            let v = Vault::open(&path, true).unwrap();
            v.put(Kind::Index, &[7; 32], b"seven").unwrap();
            v.put(Kind::Index, &[8; 32], b"eight").unwrap();
            v.put(Kind::Secret, b"s", &[3; 32]).unwrap();
            v.sync().unwrap();
            let mut raw = std::fs::read(&path).unwrap();
            let replacement = match change {
                0 => [0u8; SLOT],
                1 => *encode(Kind::Secret, b"t", &[4; 32]).unwrap(),
                _ => *encode(Kind::Index, &[9; 32], b"nine").unwrap(),
            };
            raw[SLOT..2 * SLOT].copy_from_slice(&replacement);
            // Junk in a free slot is not the vault's and is skipped.
            raw.extend_from_slice(&encode(Kind::Index, &[10; 32], b"ten").unwrap()[..]);
            std::fs::write(&path, &raw).unwrap();
            assert!(v.get(Kind::Index, &[7; 32]).is_err(), "change {change}");
            let listed: Vec<_> = v.records(Kind::Index).collect();
            assert!(listed.iter().any(Result::is_err), "change {change}: {listed:?}");
            // The other kind's listing does not depend on that slot.
            let secrets: Vec<_> = v.records(Kind::Secret).map(Result::unwrap).collect();
            assert_eq!(secrets, vec![(b"s".to_vec(), vec![3; 32])], "change {change}");
        }
    }

    /// Index names are HMAC outputs, so their first 8 bytes serve as their hash; a file
    /// written by someone else may hold any number sharing them. They all go to the
    /// overflow, which hashes whole names, so opening stays linear. (Measured with a
    /// table whose overflow used the same 8-byte hash, in a debug build: 0.10 / 0.37 /
    /// 1.73 / 5.99 s to open 2,000 / 4,000 / 8,000 / 16,000 such records, against
    /// 0.013 / 0.026 / 0.051 / 0.118 s now. This test checks the records, not the time.)
    #[test]
    fn index_names_sharing_their_first_8_bytes_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut raw = header().to_vec();
        let key = |i: u32| {
            let mut key = [0u8; 32];
            key[8..12].copy_from_slice(&i.to_be_bytes());
            key
        };
        for i in 0..20_000u32 {
            raw.extend_from_slice(&encode(Kind::Index, &key(i), &i.to_be_bytes()).unwrap()[..]);
        }
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open(&path, true).unwrap();
        assert_eq!(v.slots.lock().unwrap().table.overflow.len(), 19_999);
        for i in (0..20_000u32).step_by(97) {
            assert_eq!(v.get(Kind::Index, &key(i)).unwrap().unwrap()[..], i.to_be_bytes());
        }
        assert_eq!(v.records(Kind::Index).count(), 20_000);
    }

    #[test]
    fn names_keep_kinds_and_keys_apart() {
        assert_ne!(name(Kind::Index, &[1; 32]), name(Kind::Secret, &[1; 32]));
        assert_ne!(name(Kind::Secret, b"a"), name(Kind::Secret, b"b"));
        // A 32-byte index key is its own name; short keys are padded, with their length.
        assert_eq!(name(Kind::Index, &[1; 32]).id, [1; 32]);
        assert_ne!(name(Kind::Secret, b"ab"), name(Kind::Secret, b"ab\0"));
        assert_ne!(name(Kind::Secret, b""), name(Kind::Secret, b"\0"));
        assert_eq!(name(Kind::Secret, b"ab").id[31], 2);
        // Longer keys are hashed.
        assert_ne!(name(Kind::Secret, &[1; 40]).id[..31], [1; 31]);
        assert_ne!(name(Kind::Secret, &[1; 32]).id, [1; 32]);
    }

    #[test]
    fn decode_never_panics_on_any_slot() {
        let mut slot = [0u8; SLOT];
        for i in 0..SLOT {
            slot[i] = 0xFF;
            let _ = decode(&slot);
        }
        // A slot with a valid checksum but lengths beyond the body.
        let mut s = [0u8; SLOT];
        s[0] = 1;
        s[1] = 250;
        let sum = checksum(&s[..BODY]);
        s[BODY..].copy_from_slice(&sum);
        assert_eq!(decode(&s[..]), Err(()));
    }

    /// Runs `f` with every name hashing to the same value on this thread.
    fn colliding(f: impl FnOnce()) {
        struct Reset;
        impl Drop for Reset {
            fn drop(&mut self) {
                COLLIDE.with(|c| c.set(false));
            }
        }
        let _reset = Reset;
        COLLIDE.with(|c| c.set(true));
        f();
    }

    #[test]
    fn names_with_the_same_hash_are_kept_apart() {
        colliding(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vault");
            let v = Vault::open(&path, true).unwrap();
            v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
            v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
            v.put(Kind::Index, &[3; 32], b"three").unwrap();
            {
                let s = v.slots.lock().unwrap();
                assert_eq!((s.table.by_hash.len(), s.table.overflow.len()), (1, 2));
            }
            assert_eq!(v.get(Kind::Secret, b"c").unwrap(), None);
            assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
            // The record found by hash goes; the ones in the overflow stay findable.
            v.remove(Kind::Secret, b"a").unwrap();
            assert_eq!(v.get(Kind::Secret, b"a").unwrap(), None);
            assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
            v.put(Kind::Secret, b"d", &[4; 32]).unwrap();
            drop(v);
            let v = Vault::open(&path, true).unwrap();
            assert_eq!(v.slots.lock().unwrap().table.len(), 3);
            for (key, value) in [(&b"b"[..], [2; 32]), (b"d", [4; 32])] {
                assert_eq!(v.get(Kind::Secret, key).unwrap().unwrap()[..], value);
            }
            assert_eq!(v.get(Kind::Index, &[3; 32]).unwrap().unwrap()[..], *b"three");
        });
    }

    /// Index names hash to their first 8 bytes, so two keys that share them collide
    /// without any forcing.
    #[cfg(feature = "fuzzing")]
    #[test]
    fn the_sample_file_has_two_index_names_with_the_same_hash() {
        let bytes = sample_file();
        let scan = scan(&bytes).unwrap();
        scan.consistent_with(&bytes).unwrap();
        assert_eq!(scan.records(), 4);
        assert_eq!(scan.slots.table.overflow.len(), 1);
        let mut same_hash = [9u8; 32];
        same_hash[..8].copy_from_slice(&[7; 8]);
        let table = &scan.slots.table;
        assert!(table.tracks(&table.named(Kind::Index, &same_hash), 5));
        assert!(table.tracks(&table.named(Kind::Index, &[7; 32]), 2));
    }

    /// The tests above, again with every record after the first in the overflow.
    #[test]
    fn the_vault_behaves_the_same_when_every_name_collides() {
        colliding(|| {
            every_write_marks_the_vault_for_the_next_sync();
            records_survive_reopen_and_removal_zeroes_the_bytes();
            torn_or_damaged_slots_are_dropped_not_trusted();
            foreign_file_and_oversize_records_are_errors();
            duplicate_records_are_zeroed_so_erasure_cannot_miss_a_copy();
            torn_header_is_a_new_vault_not_a_lost_one();
            records_stream_across_chunks_and_copies_are_found_across_chunks();
            parts_of_the_slots_together_list_every_record_once();
        });
    }

    /// As [`a_slot_damaged_after_opening_is_an_error_not_a_missing_record`], but a
    /// lookup of an absent name whose hash leads to the damaged slot cannot tell that
    /// the slot did not hold it: an error too, never a wrong answer. A write of such a
    /// name goes over the damaged slot, and a removal zeroes it, as they would for the
    /// name that slot held.
    #[test]
    fn a_damaged_slot_found_by_hash_is_an_error_for_every_name_with_that_hash() {
        colliding(|| {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vault");
            let v = Vault::open(&path, true).unwrap();
            v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
            v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
            let mut raw = std::fs::read(&path).unwrap();
            raw[SLOT + 10] ^= 1;
            std::fs::write(&path, &raw).unwrap();
            assert!(v.get(Kind::Secret, b"a").is_err());
            assert!(v.get(Kind::Secret, b"c").is_err());
            // "b" is in the overflow, under its whole name: still found.
            assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
            v.put(Kind::Secret, b"c", &[3; 32]).unwrap();
            assert_eq!(v.get(Kind::Secret, b"c").unwrap().unwrap()[..], [3; 32]);
            assert_eq!(v.get(Kind::Secret, b"a").unwrap(), None);
            // Damaged again, then removed: the slot is zeroed all the same.
            let mut raw = std::fs::read(&path).unwrap();
            raw[SLOT + 10] ^= 1;
            std::fs::write(&path, &raw).unwrap();
            v.remove(Kind::Secret, b"c").unwrap();
            let raw = std::fs::read(&path).unwrap();
            assert!(raw[SLOT..2 * SLOT].iter().all(|b| *b == 0));
            assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap()[..], [2; 32]);
            drop(v);
            let v = Vault::open(&path, true).unwrap();
            assert_eq!((v.damaged(), v.slots.lock().unwrap().table.len()), (0, 1));
        });
    }

    /// Random puts, removals, reads, listings and reopenings against a map, with names
    /// hashed as usual and with every name colliding.
    #[test]
    fn random_operations_agree_with_a_map() {
        use std::collections::BTreeMap;
        fn run(seed: u64) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("vault");
            let mut v = Vault::open(&path, true).unwrap();
            let mut model: BTreeMap<(u8, Vec<u8>), Vec<u8>> = BTreeMap::new();
            let mut x = seed;
            let mut next = move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x
            };
            for step in 0..1500u64 {
                let r = next();
                let kind = if r & 1 == 0 { Kind::Secret } else { Kind::Index };
                let key = match kind {
                    Kind::Secret => format!("subject-{}", (r >> 8) % 40).into_bytes(),
                    Kind::Index => vec![((r >> 8) % 40) as u8; 32],
                };
                let k = (kind as u8, key.clone());
                match (r >> 16) % 10 {
                    0..=3 => {
                        let value = step.to_be_bytes().to_vec();
                        v.put(kind, &key, &value).unwrap();
                        model.insert(k, value);
                    }
                    4..=5 => {
                        v.remove(kind, &key).unwrap();
                        model.remove(&k);
                    }
                    6..=7 => assert_eq!(
                        v.get(kind, &key).unwrap().map(|z| z.to_vec()),
                        model.get(&k).cloned(),
                        "step {step}"
                    ),
                    8 => {
                        let mut listed: Vec<Pair> = v.records(Kind::Index).map(Result::unwrap).collect();
                        listed.sort();
                        let expected: Vec<Pair> = model
                            .iter()
                            .filter(|((kind, _), _)| *kind == Kind::Index as u8)
                            .map(|((_, key), value)| (key.clone(), value.clone()))
                            .collect();
                        assert_eq!(listed, expected, "step {step}");
                    }
                    _ => {
                        drop(v);
                        v = Vault::open(&path, true).unwrap();
                        assert_eq!(v.damaged(), 0);
                    }
                }
                assert_eq!(v.slots.lock().unwrap().table.len(), model.len(), "step {step}");
                // The digest kept up to date is the one computed from the file.
                let raw = std::fs::read(&path).unwrap();
                let fresh = index_digest_of(&raw, &v.slots.lock().unwrap().table);
                assert_eq!(v.index_digest().unwrap(), Some(fresh), "step {step}");
                let indexed = model.keys().filter(|(k, _)| *k == Kind::Index as u8).count();
                assert_eq!(fresh.records, indexed as u64, "step {step}");
            }
            // Nothing removed is left in the file.
            drop(v);
            let raw = std::fs::read(&path).unwrap();
            for slot in raw.chunks_exact(SLOT).skip(1) {
                if let Ok(Some((kind, key, value))) = parse(slot) {
                    assert_eq!(
                        model.get(&(kind as u8, key.to_vec())).map(Vec::as_slice),
                        Some(value)
                    );
                }
            }
        }
        for seed in [1, 2, 3] {
            run(seed);
            colliding(|| run(seed));
        }
    }
}
