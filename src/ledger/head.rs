//! The head record: how long the log was known to be durable, and the time floor, in
//! a small file of the ledger's own beside sled's (`head`), authenticated with the
//! pseudonym key.
//!
//! sled's recovery takes a damaged message in its log for the torn tail of a crash and
//! stops reading there: one flipped bit in its data file silently cut the log short,
//! and an acknowledged withdrawal was gone, with nothing to notice it. Opening now
//! refuses a log shorter than the length recorded here (a record sled cannot cut, since
//! it lives outside sled's files), and takes the time floor from here, where an edit is
//! detected (a raised floor expired valid consents and signed false `Expired` entries
//! into the log; a lowered one revived lapsed consents after a clock step), raised only
//! by times as well authenticated: the last entry's, and the latest use that the last
//! decision record under each key prefix shows (`records::latest_recorded_use`).
//!
//! # Layout
//!
//! Two 64-byte slots, written in turn (each write replaces one whole slot):
//!
//! ```text
//! "clhead1\n" | counter (u64) | durable length (u64) | time floor (ms, u64) | tag (32)
//! ```
//!
//! integers big-endian; the tag is the pseudonym key's record tag over the domain
//! `consent-ledger head v1`, the ledger id and the slot's first 32 bytes. The slot with
//! the greater counter is the record, and both must check (and sit at `counter mod 2`,
//! where every write puts them). Both slots are written when
//! the file is created (through a temporary file, renamed into place), and a slot lies
//! inside the file's first disk sector, whose write a crash does not tear: a slot that
//! does not check is damage or an edit, and every open is refused
//! ([`OpenError::CorruptMetadata`]`("head record")`). Restore the file from a backup, or
//! delete it to open without the checks it gives (below).
//!
//! # Limits
//!
//! The record is written, without a sync, each second the clock moves on (with the time
//! floor) and within about 100 ms of the durable length moving on (by the ticker's
//! thread, which a custom clock does not have), and with a sync by
//! [`Ledger::sync`](crate::Ledger::sync) and on close: a cut that takes only entries
//! made durable since the last write goes unnoticed. Deleting the file, or putting an older copy of it back, is not detected
//! (a ledger written before this record existed has none); the time floor is then
//! the later of the last entry's time and the latest recorded use.
//!
//! The time floor on disk may be behind the times the ledger handed out in evidence
//! and entries: it is saved once the time seen is [`TIME_FLOOR_STEP_MS`] past the saved
//! one, and synced only by `sync` and on close. After a kill (the last write is in the
//! page cache) a decision made since may be up to a step later than where the reopened
//! ledger starts (more if a write of the record failed); after a power loss or an OS
//! crash, which may lose every write since the last sync, up to the time since then.
//! What the open finds durable narrows this: an entry (its time), a decision record
//! that sled flushed (under `Relaxed` every 500 ms, otherwise with the next sync). Only
//! a clock also stepped back across the restart, by more than the time it took, then
//! decides earlier than before the crash (a grant lapsing in that window is allowed
//! again). Starting the reopened ledger a margin ahead was weighed and not done: a
//! reopen cannot tell a crash from a close, so every reopen would date its decisions
//! and entries (`Expired` ones included) up to the margin ahead of the clock, and no
//! margin bounds what a power loss takes.
//!
//! [`TIME_FLOOR_STEP_MS`]: super::TIME_FLOOR_STEP_MS

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::{OpenError, StorageError};
use crate::identifier::PseudonymKey;
use crate::store::HeadFile;

/// Bytes of one slot.
pub(crate) const SLOT: usize = 64;
/// Bytes of the file: two slots.
pub(crate) const FILE_LEN: usize = 2 * SLOT;
pub(crate) const MAGIC: &[u8; 8] = b"clhead1\n";
const DOMAIN: &[u8] = b"consent-ledger head v1";

/// What the record holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Head {
    /// Incremented by each write; the slot written is `counter % 2`.
    pub(crate) counter: u64,
    /// Entries known durable when it was written: the log cannot be shorter.
    pub(crate) durable_len: u64,
    /// The latest time (ms) the ledger had seen.
    pub(crate) time_floor: u64,
}

impl Head {
    /// Where its slot starts in the file.
    pub(crate) fn offset(&self) -> u64 {
        (self.counter % 2) * SLOT as u64
    }
}

/// Writes a ledger's head record. Shared by the ledger and its ticker's thread, and
/// holding no part of sled: if the ticker's thread is the last to let go of it, only
/// the head file is closed there.
#[derive(Debug)]
pub(crate) struct HeadWriter {
    file: HeadFile,
    key: PseudonymKey,
    ledger_id: [u8; 16],
    /// The counter of the last record written; held while one is.
    counter: Mutex<u64>,
    /// The durable length the last record written holds.
    recorded_len: AtomicU64,
    /// The time floor the last record written holds. Read without a lock on every
    /// time-dependent decision.
    pub(crate) time_floor_saved: AtomicU64,
    /// The log length known durable now (raised by the ledger after each sync).
    durable: AtomicU64,
}

impl HeadWriter {
    /// The writer for the ledger `ledger_id` whose record on disk is `last` (`None`:
    /// none yet), its log known durable up to `durable`.
    pub(crate) fn new(
        file: HeadFile,
        key: PseudonymKey,
        ledger_id: [u8; 16],
        last: Option<Head>,
        durable: u64,
    ) -> Self {
        HeadWriter {
            file,
            key,
            ledger_id,
            counter: Mutex::new(last.map_or(0, |h| h.counter)),
            recorded_len: AtomicU64::new(last.map_or(0, |h| h.durable_len)),
            time_floor_saved: AtomicU64::new(last.map_or(0, |h| h.time_floor)),
            durable: AtomicU64::new(durable),
        }
    }

    /// Notes that the log is durable up to `len`.
    pub(crate) fn durable_up_to(&self, len: u64) {
        self.durable.fetch_max(len, Ordering::AcqRel);
    }

    fn record(&self, counter: u64, time_floor: u64) -> Head {
        Head {
            counter,
            durable_len: self.durable.load(Ordering::Acquire),
            time_floor,
        }
    }

    /// Creates the file, both slots holding the time floor `t` (or the saved one, if
    /// later) and the durable length.
    pub(crate) fn create(&self, t: u64) -> Result<(), StorageError> {
        let mut counter = self.counter.lock().map_err(|_| poisoned())?;
        let time_floor = t.max(self.time_floor_saved.load(Ordering::Acquire));
        let a = self.record(counter.saturating_add(1), time_floor);
        let b = Head {
            counter: counter.saturating_add(2),
            ..a
        };
        let mut bytes = [0u8; FILE_LEN];
        for h in [a, b] {
            let at = usize::try_from(h.offset()).unwrap_or(0);
            if let Some(to) = bytes.get_mut(at..at + SLOT) {
                to.copy_from_slice(&seal(&self.key, &self.ledger_id, &h));
            }
        }
        self.file.create(&bytes)?;
        *counter = b.counter;
        self.recorded_len.store(b.durable_len, Ordering::Release);
        self.time_floor_saved.store(time_floor, Ordering::Release);
        Ok(())
    }

    /// Writes the next slot: the time floor `t` (or the saved one, if later) and the
    /// durable length; synced if `sync`. On a failure the record on disk stays the last
    /// one written (never later than the truth); callers treat it as best effort.
    pub(crate) fn save(&self, t: u64, sync: bool) -> Result<(), StorageError> {
        let mut counter = self.counter.lock().map_err(|_| poisoned())?;
        let written = self.record(
            counter.saturating_add(1),
            t.max(self.time_floor_saved.load(Ordering::Acquire)),
        );
        let bytes = seal(&self.key, &self.ledger_id, &written);
        self.file.put(written.offset(), &bytes, sync)?;
        *counter = written.counter;
        self.recorded_len.store(written.durable_len, Ordering::Release);
        self.time_floor_saved.store(written.time_floor, Ordering::Release);
        Ok(())
    }

    /// Records a durable length that has moved on since the last record (not synced):
    /// the ticker's duty, so that quiet after a burst of appends does not leave the
    /// record behind.
    pub(crate) fn record_durable_if_behind(&self) {
        if self.durable.load(Ordering::Acquire) > self.recorded_len.load(Ordering::Acquire) {
            let _ = self.save(0, false);
        }
    }
}

fn poisoned() -> StorageError {
    StorageError::new("writing the head record", std::io::Error::other("lock poisoned"))
}

/// The slot bytes of `head` for the ledger `ledger_id`.
pub(crate) fn seal(key: &PseudonymKey, ledger_id: &[u8; 16], head: &Head) -> [u8; SLOT] {
    let mut body = [0u8; 32];
    for (to, from) in body.chunks_exact_mut(8).zip([
        *MAGIC,
        head.counter.to_be_bytes(),
        head.durable_len.to_be_bytes(),
        head.time_floor.to_be_bytes(),
    ]) {
        to.copy_from_slice(&from);
    }
    let tag = key.index_tag(&[DOMAIN, ledger_id, &body]);
    let mut out = [0u8; SLOT];
    let (first, last) = out.split_at_mut(32);
    first.copy_from_slice(&body);
    last.copy_from_slice(&tag);
    out
}

/// The record in the file's bytes: the slot with the greatest counter. Both slots must
/// check: both are written when the file is created, and each write replaces one whole
/// slot of 64 bytes inside the file's first disk sector, which a crash does not tear.
/// (Falling back to the other slot when one failed let one flipped byte lower the time
/// floor, or the durable length to that of a whole session before, without an error.)
/// A slot must also sit where its counter puts it ([`Head::offset`]), as every write
/// puts it: a slot moved to the other place (the only way two slots get one counter)
/// is refused, so that this reader and the keyless [`claimed_len`] never take
/// different slots.
///
/// # Errors
/// [`OpenError::CorruptMetadata`] when the file is not two slots long or a slot does not
/// check (damage, an edit, another ledger's file, or a wrong pseudonym key).
pub(crate) fn open(bytes: &[u8], key: &PseudonymKey, ledger_id: &[u8; 16]) -> Result<Head, OpenError> {
    let corrupt = || OpenError::CorruptMetadata("head record");
    if bytes.len() != FILE_LEN {
        return Err(corrupt());
    }
    let mut newest: Option<Head> = None;
    for (at, slot) in (0u64..).step_by(SLOT).zip(bytes.chunks_exact(SLOT)) {
        let h = open_slot(slot, key, ledger_id)
            .filter(|h| h.offset() == at)
            .ok_or_else(corrupt)?;
        if newest.is_none_or(|n| h.counter > n.counter) {
            newest = Some(h);
        }
    }
    newest.ok_or_else(corrupt)
}

/// The durable length the file claims, read without the key (its tags unchecked): the
/// slot with the greatest counter among those with the right magic, where their
/// counter puts them (see [`open`]). For a keyless reader, for whom an edited file can
/// only raise a false alarm.
pub(crate) fn claimed_len(bytes: &[u8]) -> Option<u64> {
    (0u64..)
        .step_by(SLOT)
        .zip(bytes.chunks_exact(SLOT).take(2))
        .filter_map(|(at, slot)| read_slot(slot.get(..32)?).filter(|h| h.offset() == at))
        .max_by_key(|h| h.counter)
        .map(|h| h.durable_len)
}

fn open_slot(slot: &[u8], key: &PseudonymKey, ledger_id: &[u8; 16]) -> Option<Head> {
    let (body, tag) = slot.split_at_checked(32)?;
    if !key.verify_index_tag(&[DOMAIN, ledger_id, body], tag) {
        return None;
    }
    read_slot(body)
}

/// The fields of a slot's first 32 bytes, if they start with the magic.
fn read_slot(body: &[u8]) -> Option<Head> {
    let mut words = body.chunks_exact(8);
    let mut next = || words.next().and_then(|w| <[u8; 8]>::try_from(w).ok());
    if &next()? != MAGIC {
        return None;
    }
    let mut number = || next().map(u64::from_be_bytes);
    Some(Head {
        counter: number()?,
        durable_len: number()?,
        time_floor: number()?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    fn file(key: &PseudonymKey, id: &[u8; 16], a: Head, b: Head) -> Vec<u8> {
        [seal(key, id, &a), seal(key, id, &b)].concat()
    }

    #[test]
    fn the_newest_slot_is_the_record_and_both_must_check() {
        let key = PseudonymKey::from_bytes([7; 32]);
        let id = [1; 16];
        let h = |counter, durable_len| Head {
            counter,
            durable_len,
            time_floor: counter * 10,
        };
        let f = file(&key, &id, h(4, 40), h(5, 50));
        assert_eq!(open(&f, &key, &id).unwrap(), h(5, 50));
        assert_eq!(
            open(&file(&key, &id, h(8, 80), h(7, 70)), &key, &id).unwrap(),
            h(8, 80)
        );
        // A slot moved to the other place (its counter says where it belongs), as the
        // only way to give both slots one counter: refused by the keyed reader, not
        // taken by the keyless one, so the two never take different slots.
        assert!(open(&file(&key, &id, h(7, 70), h(6, 60)), &key, &id).is_err());
        let moved = file(&key, &id, h(5, 50), h(5, 55));
        assert!(open(&moved, &key, &id).is_err());
        assert_eq!(claimed_len(&moved), Some(55));
        assert_eq!(claimed_len(&file(&key, &id, h(7, 70), h(6, 60))), None);
        // Any byte changed in either slot is refused: never the other slot in its place.
        for at in 0..FILE_LEN {
            let mut damaged = f.clone();
            damaged[at] ^= 1;
            assert!(open(&damaged, &key, &id).is_err(), "byte {at}");
        }
        // Another ledger's file, another key, a wrong length: refused.
        assert!(open(&f, &key, &[2; 16]).is_err());
        assert!(open(&f, &PseudonymKey::from_bytes([8; 32]), &id).is_err());
        assert!(open(&f[..SLOT], &key, &id).is_err());
        assert!(open(&[0; FILE_LEN], &key, &id).is_err());
        assert_eq!(claimed_len(&f), Some(50));
        assert_eq!(claimed_len(&[0; FILE_LEN]), None);
        assert_eq!(h(5, 0).offset(), SLOT as u64);
        assert_eq!(h(6, 0).offset(), 0);
    }
}
