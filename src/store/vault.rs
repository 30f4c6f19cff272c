//! The vault: the erasable part of the store, subject secrets and index records.
//!
//! sled is log-structured: a removed value stays in stale segments of its data file until
//! they happen to be reused (measured: after erasing a subject, its 32-byte secret was
//! still in the `db` file ten times over). Anything erasure must destroy therefore lives
//! here instead: a plain file of fixed 256-byte slots, where removing a record
//! overwrites its slot with zeros in place and fsyncs.
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

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use crate::error::StorageError;

const SLOT: usize = 256;
const BODY: usize = SLOT - 16;
const MAGIC: &[u8] = b"consent-ledger vault v1\n";

/// A key and its value.
type Pair = (Vec<u8>, Vec<u8>);

/// A decoded slot: free (`None`) or a record.
type Decoded = Option<(Kind, Vec<u8>, Vec<u8>)>;

/// What a slot holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Secret = 1,
    Index = 2,
}

#[derive(Debug, Default)]
struct Slots {
    /// (kind, key) -> (slot number, value)
    records: HashMap<(Kind, Vec<u8>), (u64, Vec<u8>)>,
    free: Vec<u64>,
    /// Number of slots in the file, the header included.
    count: u64,
    /// Damaged slots found (and zeroed) when opening.
    damaged: u64,
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

fn checksum(body: &[u8]) -> [u8; 16] {
    let d = Sha256::digest(body);
    let mut out = [0u8; 16];
    out.copy_from_slice(d.get(..16).unwrap_or(&[0; 16]));
    out
}

fn encode(kind: Kind, key: &[u8], value: &[u8]) -> Option<[u8; SLOT]> {
    let klen = u8::try_from(key.len()).ok()?;
    let vlen = u8::try_from(value.len()).ok()?;
    let mut slot = [0u8; SLOT];
    let mut body = Vec::with_capacity(BODY);
    body.push(kind as u8);
    body.push(klen);
    body.extend_from_slice(key);
    body.push(vlen);
    body.extend_from_slice(value);
    if body.len() > BODY {
        return None;
    }
    slot.get_mut(..body.len())?.copy_from_slice(&body);
    let sum = checksum(slot.get(..BODY)?);
    slot.get_mut(BODY..)?.copy_from_slice(&sum);
    Some(slot)
}

/// Parses a slot: `Ok(None)` for a free slot, `Err(())` for a damaged one.
#[allow(
    clippy::result_unit_err,
    reason = "private helper; the caller only needs to know it is damaged"
)]
fn decode(slot: &[u8]) -> Result<Decoded, ()> {
    if slot.iter().all(|b| *b == 0) {
        return Ok(None);
    }
    let (body, sum) = slot.split_at_checked(BODY).ok_or(())?;
    if checksum(body) != sum {
        return Err(());
    }
    let kind = match body.first() {
        Some(1) => Kind::Secret,
        Some(2) => Kind::Index,
        _ => return Err(()),
    };
    let klen = usize::from(*body.get(1).ok_or(())?);
    let key = body.get(2..2 + klen).ok_or(())?.to_vec();
    let vlen = usize::from(*body.get(2 + klen).ok_or(())?);
    let value = body.get(3 + klen..3 + klen + vlen).ok_or(())?.to_vec();
    // Canonical: nothing but zeros after the value (a slot holds one record, nothing more).
    if body
        .get(3 + klen + vlen..)
        .is_some_and(|rest| rest.iter().any(|b| *b != 0))
    {
        return Err(());
    }
    Ok(Some((kind, key, value)))
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

/// The header slot: the magic line, then zeros.
fn header() -> [u8; SLOT] {
    let mut header = [0u8; SLOT];
    if let Some(h) = header.get_mut(..MAGIC.len()) {
        h.copy_from_slice(MAGIC);
    }
    header
}

/// Reads the vault file's bytes into the in-memory table, deciding what to repair.
///
/// An empty file, or a file holding only the beginning of a header (creation stopped
/// part-way), is a new vault. A slot that does not decode is damaged. A record whose
/// key is already held by an earlier slot is a copy that no write of this crate makes:
/// if the values agree, the later copy is dropped; if they disagree, neither can be
/// trusted and all copies are dropped (fail closed). Either way every copy is zeroed,
/// so no slot holds a record the table does not track, which erasure could then miss.
///
/// # Errors
/// When the bytes do not start with the vault header.
pub(crate) fn scan(bytes: &[u8]) -> Result<Scan, StorageError> {
    let mut slots = Slots::default();
    let header = header();
    if bytes.len() < SLOT && header.starts_with(bytes) {
        slots.count = 1;
        return Ok(Scan {
            slots,
            zero: Vec::new(),
            new_header: true,
            truncate: false,
        });
    }
    if !bytes.starts_with(MAGIC) || bytes.len() < SLOT {
        return Err(StorageError::new(
            "reading the vault",
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the vault file has no vault header",
            ),
        ));
    }
    // A partial last slot (a crash while the file grew) is dropped.
    let whole = bytes.len() / SLOT;
    let mut zero = Vec::new();
    let mut damaged = 0u64;
    // Keys found in more than one slot with different values: none of them is trusted.
    let mut conflicted: Vec<(Kind, Vec<u8>)> = Vec::new();
    for (n, slot) in bytes.chunks_exact(SLOT).enumerate().skip(1) {
        let n = n as u64;
        match decode(slot) {
            Ok(Some((kind, key, value))) => {
                let id = (kind, key);
                if conflicted.contains(&id) {
                    zero.push(n);
                    continue;
                }
                match slots.records.get(&id) {
                    None => {
                        slots.records.insert(id, (n, value));
                    }
                    Some((_, held)) if *held == value => zero.push(n),
                    Some((first, _)) => {
                        zero.push(*first);
                        zero.push(n);
                        slots.records.remove(&id);
                        conflicted.push(id);
                    }
                }
            }
            Ok(None) => slots.free.push(n),
            Err(()) => {
                damaged += 1;
                zero.push(n);
            }
        }
    }
    zero.sort_unstable();
    slots.free.extend_from_slice(&zero);
    slots.count = whole as u64;
    slots.damaged = damaged;
    Ok(Scan {
        slots,
        zero,
        new_header: false,
        truncate: bytes.len() % SLOT != 0,
    })
}

impl Scan {
    /// Number of records read.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn records(&self) -> usize {
        self.slots.records.len()
    }

    /// Checks the table against the bytes it was read from: every slot after the header
    /// is exactly one of tracked record, free, or to be zeroed; every tracked record
    /// re-encodes to the bytes of its slot; and the header slot is never handed out.
    #[cfg(feature = "fuzzing")]
    pub(crate) fn consistent_with(&self, bytes: &[u8]) -> Result<(), &'static str> {
        let s = &self.slots;
        if s.count == 0 {
            return Err("a vault without a header slot");
        }
        let mut seen = vec![0u8; usize::try_from(s.count).map_err(|_| "slot count overflows")?];
        let used = s.records.values().map(|(n, _)| *n).chain(s.free.iter().copied());
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
        for ((kind, key), (n, value)) in &s.records {
            let start = usize::try_from(*n)
                .map_err(|_| "slot number overflows")?
                .saturating_mul(SLOT);
            let on_disk = bytes
                .get(start..start.saturating_add(SLOT))
                .ok_or("record beyond the file")?;
            if encode(*kind, key, value).as_ref().map(|e| &e[..]) != Some(on_disk) {
                return Err("a record does not re-encode to its slot");
            }
        }
        for n in &self.zero {
            if s.records.values().any(|(m, _)| m == n) {
                return Err("a slot to be zeroed still holds a tracked record");
            }
        }
        Ok(())
    }
}

/// A small valid vault file (a secret, an index record, a free slot), for fuzz seeds.
#[cfg(feature = "fuzzing")]
pub(crate) fn sample_file() -> Vec<u8> {
    let mut out = header().to_vec();
    let records = [
        encode(Kind::Secret, b"user-1", &[0xA5; 32]),
        encode(Kind::Index, &[7; 32], &[1; 100]),
        Some([0; SLOT]),
        encode(Kind::Secret, b"user-2", &[0x5A; 32]),
    ];
    for slot in records.iter().flatten() {
        out.extend_from_slice(slot);
    }
    out
}

impl Vault {
    /// Opens or creates the vault at `path`.
    pub(crate) fn open(path: &Path) -> Result<Vault, StorageError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io("opening the vault"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).map_err(io("reading the vault"))?;
        let scan = scan(&bytes)?;
        let mut repaired = false;
        if scan.new_header {
            write_slot(&mut file, 0, &header())?;
            repaired = true;
        }
        for n in &scan.zero {
            write_slot(&mut file, *n, &[0u8; SLOT])?;
            repaired = true;
        }
        if scan.truncate {
            file.set_len(scan.slots.count * SLOT as u64)
                .map_err(io("repairing the vault"))?;
            repaired = true;
        }
        if repaired {
            file.sync_all().map_err(io("repairing the vault"))?;
        }
        Ok(Vault {
            file: Mutex::new(file),
            slots: Mutex::new(scan.slots),
            dirty: AtomicBool::new(false),
        })
    }

    pub(crate) fn get(&self, kind: Kind, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let slots = self.slots.lock().map_err(|_| poisoned())?;
        Ok(slots.records.get(&(kind, key.to_vec())).map(|(_, v)| v.clone()))
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
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        let n = match slots.records.get(&(kind, key.to_vec())) {
            Some((n, _)) => *n,
            None => match slots.free.pop() {
                Some(n) => n,
                None => {
                    slots.count += 1;
                    slots.count - 1
                }
            },
        };
        let mut file = self.file.lock().map_err(|_| poisoned())?;
        self.dirty.store(true, Ordering::Relaxed);
        write_slot(&mut file, n, &slot)?;
        slots.records.insert((kind, key.to_vec()), (n, value.to_vec()));
        Ok(())
    }

    /// Removes a record by overwriting its slot with zeros in place.
    pub(crate) fn remove(&self, kind: Kind, key: &[u8]) -> Result<(), StorageError> {
        let mut slots = self.slots.lock().map_err(|_| poisoned())?;
        if let Some((n, _)) = slots.records.remove(&(kind, key.to_vec())) {
            let mut file = self.file.lock().map_err(|_| poisoned())?;
            self.dirty.store(true, Ordering::Relaxed);
            write_slot(&mut file, n, &[0u8; SLOT])?;
            slots.free.push(n);
        }
        Ok(())
    }

    /// All records of a kind.
    pub(crate) fn all(&self, kind: Kind) -> Result<Vec<Pair>, StorageError> {
        let slots = self.slots.lock().map_err(|_| poisoned())?;
        Ok(slots
            .records
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .map(|((_, key), (_, v))| (key.clone(), v.clone()))
            .collect())
    }

    pub(crate) fn is_empty(&self) -> Result<bool, StorageError> {
        Ok(self.slots.lock().map_err(|_| poisoned())?.records.is_empty())
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
}

fn write_slot(file: &mut File, n: u64, slot: &[u8; SLOT]) -> Result<(), StorageError> {
    file.seek(SeekFrom::Start(n * SLOT as u64))
        .map_err(io("writing the vault"))?;
    file.write_all(slot).map_err(io("writing the vault"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn every_write_marks_the_vault_for_the_next_sync() {
        let dir = tempfile::tempdir().unwrap();
        let v = Vault::open(&dir.path().join("vault")).unwrap();
        let dirty = |v: &Vault| v.dirty.load(Ordering::Relaxed);
        assert!(!dirty(&v), "a freshly opened vault has nothing to sync");
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
        let v = Vault::open(&path).unwrap();
        let secret = [0xA5u8; 32];
        v.put(Kind::Secret, b"subject-1", &secret).unwrap();
        v.put(Kind::Index, &[7; 32], b"record").unwrap();
        v.put(Kind::Index, &[8; 32], b"other").unwrap();
        v.sync().unwrap();
        drop(v);
        let v = Vault::open(&path).unwrap();
        assert_eq!(v.get(Kind::Secret, b"subject-1").unwrap().unwrap(), secret);
        assert_eq!(v.all(Kind::Index).unwrap().len(), 2);
        v.remove(Kind::Secret, b"subject-1").unwrap();
        v.remove(Kind::Index, &[7; 32]).unwrap();
        v.sync().unwrap();
        drop(v);
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(32).any(|w| w == secret), "secret bytes remain");
        assert!(!raw.windows(6).any(|w| w == b"record"), "index bytes remain");
        assert!(raw.windows(5).any(|w| w == b"other"));
        // Freed slots are reused: the file does not grow.
        let v = Vault::open(&path).unwrap();
        v.put(Kind::Secret, b"subject-2", &[1; 32]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), raw.len() as u64);
    }

    #[test]
    fn torn_or_damaged_slots_are_dropped_not_trusted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        drop(v);
        let mut raw = std::fs::read(&path).unwrap();
        raw[SLOT + 40] ^= 1; // damage slot 1
        raw.extend_from_slice(&[9; 100]); // a torn append
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open(&path).unwrap();
        assert_eq!(v.damaged(), 1);
        assert_eq!(v.get(Kind::Secret, b"a").unwrap(), None);
        assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap(), [2; 32]);
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * SLOT as u64);
    }

    #[test]
    fn foreign_file_and_oversize_records_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        std::fs::write(&path, b"not a vault").unwrap();
        assert!(Vault::open(&path).is_err());
        let path = dir.path().join("vault2");
        let v = Vault::open(&path).unwrap();
        assert!(v.put(Kind::Index, &[0; 32], &[0; 230]).is_err());
        assert!(v.put(Kind::Secret, &[b'x'; 300], &[0; 32]).is_err());
    }

    #[test]
    fn duplicate_records_are_zeroed_so_erasure_cannot_miss_a_copy() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let v = Vault::open(&path).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        drop(v);
        // Copies that no write of the vault makes: "a" twice with its own value, "b"
        // again with another value.
        let mut raw = std::fs::read(&path).unwrap();
        raw.extend_from_slice(&encode(Kind::Secret, b"a", &[1; 32]).unwrap());
        raw.extend_from_slice(&encode(Kind::Secret, b"b", &[9; 32]).unwrap());
        std::fs::write(&path, &raw).unwrap();
        let v = Vault::open(&path).unwrap();
        assert_eq!(v.get(Kind::Secret, b"a").unwrap().unwrap(), [1; 32]);
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
        let v = Vault::open(&path).unwrap();
        v.put(Kind::Secret, b"a", &[1; 32]).unwrap();
        drop(v);
        let v = Vault::open(&path).unwrap();
        assert_eq!(v.get(Kind::Secret, b"a").unwrap().unwrap(), [1; 32]);
        drop(v);
        // The header slot itself, cut short: the record must not land on slot 0.
        std::fs::write(&path, &header()[..100]).unwrap();
        let v = Vault::open(&path).unwrap();
        v.put(Kind::Secret, b"b", &[2; 32]).unwrap();
        drop(v);
        assert!(std::fs::read(&path).unwrap().starts_with(MAGIC));
        let v = Vault::open(&path).unwrap();
        assert_eq!(v.get(Kind::Secret, b"b").unwrap().unwrap(), [2; 32]);
    }

    #[test]
    fn bytes_after_the_value_make_a_slot_damaged() {
        let mut s = encode(Kind::Secret, b"a", &[1; 32]).unwrap();
        assert!(decode(&s).is_ok());
        s[100] = 7;
        let sum = checksum(&s[..BODY]);
        s[BODY..].copy_from_slice(&sum);
        assert_eq!(decode(&s), Err(()));
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
        assert_eq!(decode(&s), Err(()));
    }
}
