//! Compact storage for the decision state: chunked dense arrays and two open-addressing
//! indexes over them (identifiers by lookup pseudonym, subjects by id).
//!
//! Why not `HashMap`: with a million subjects a `HashMap` keyed by pseudonym or
//! `SubjectId` costs its key, its value and about half a table of empty buckets per
//! entry (hashbrown doubles its capacity), and doubling the dense arrays would copy
//! tens of megabytes under the write lock. Here records live once, in fixed-size chunks
//! that never move, and the indexes hold only 4- or 8-byte slots that grow by 1.5x.
//!
//! Nothing is ever removed from an index: records are overwritten in place, so linear
//! probing needs no tombstones.

use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;

use crate::identifier::Pseudonym;
use crate::subject::SubjectId;

/// Elements per chunk (a power of two).
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: usize = CHUNK - 1;

/// An append-only array stored in chunks of [`CHUNK`] elements: pushing never moves
/// existing elements, and at most one chunk is partly empty.
#[derive(Debug)]
pub(super) struct Chunked<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Chunked<T> {
    pub(super) fn len(&self) -> usize {
        self.len
    }

    /// Appends `value` and returns its index.
    pub(super) fn push(&mut self, value: T) -> usize {
        let index = self.len;
        match self.chunks.last_mut() {
            Some(last) if last.len() < CHUNK => last.push(value),
            _ => {
                let mut chunk = Vec::with_capacity(CHUNK);
                chunk.push(value);
                self.chunks.push(chunk);
            }
        }
        self.len += 1;
        index
    }

    pub(super) fn get(&self, index: usize) -> Option<&T> {
        self.chunks.get(index >> CHUNK_BITS)?.get(index & CHUNK_MASK)
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut T> {
        self.chunks
            .get_mut(index >> CHUNK_BITS)?
            .get_mut(index & CHUNK_MASK)
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    pub(super) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.chunks.iter_mut().flatten()
    }
}

/// Largest load (occupied / capacity) before an index grows, as a fraction.
const MAX_LOAD_NUM: usize = 4;
const MAX_LOAD_DEN: usize = 5;
const MIN_CAPACITY: usize = 16;

fn needs_growth(used: usize, capacity: usize) -> bool {
    (used + 1) * MAX_LOAD_DEN > capacity * MAX_LOAD_NUM
}

fn grown(capacity: usize) -> usize {
    (capacity + capacity / 2).max(MIN_CAPACITY)
}

/// The capacity that holds `n` entries at the largest load.
fn capacity_for(n: usize) -> usize {
    (n.saturating_add(1).saturating_mul(MAX_LOAD_DEN) / MAX_LOAD_NUM + 1).max(MIN_CAPACITY)
}

/// One identifier collected for one purpose: 48 bytes.
#[derive(Debug, Clone)]
pub(super) struct IdentRec {
    pub(super) lookup: Pseudonym,
    /// `seq << 16 | basis << 12 | purpose`: see [`pack_collection`].
    pub(super) meta: u64,
    /// Interned recipient scope of the collection.
    pub(super) scope: u32,
    /// Subject index.
    pub(super) subject: u32,
}

/// Largest purpose index that fits a record (12 bits).
pub(super) const MAX_PURPOSES: usize = crate::purpose::MAX_PURPOSE_IDS;
/// Largest sequence number that fits a record (48 bits); a sled database of 2^48
/// entries (about 280 trillion) is far beyond any real ledger.
const MAX_SEQ: u64 = (1 << 48) - 1;

pub(super) fn pack_collection(seq: u64, basis: u8, purpose: u16) -> u64 {
    (seq.min(MAX_SEQ) << 16) | (u64::from(basis & 0xF) << 12) | u64::from(purpose & 0xFFF)
}

impl IdentRec {
    pub(super) fn seq(&self) -> u64 {
        self.meta >> 16
    }

    pub(super) fn basis(&self) -> u8 {
        ((self.meta >> 12) & 0xF) as u8
    }

    pub(super) fn purpose(&self) -> u16 {
        (self.meta & 0xFFF) as u16
    }
}

/// Identifier records indexed by lookup pseudonym. Several records may share a lookup
/// (one per purpose it was collected for, or a stale record of an erased subject).
///
/// A slot is `0` (empty) or `hash32 << 32 | (record index + 1)`, where `hash32` is the
/// pseudonym's first four bytes: pseudonyms are HMAC outputs under the application's
/// secret key, so they are uniformly distributed and cannot be chosen by an attacker.
/// Growing the index reads only the slots, never the records.
///
/// Linear probing kept in home order (Robin Hood placement): along any run of
/// occupied slots, each slot's home position (from its hash) is no later than the
/// next one's, so a search stops at the first slot whose home is past its own. A
/// lookup nobody holds (half of a typical upload) then reads about as few slots as
/// one that is held (about 3 at the largest load, 4/5), where plain linear probing
/// reads on to the next empty slot (about 13, often a second cache line). Slots with
/// one hash keep their insertion order.
#[derive(Debug, Default)]
pub(super) struct IdentTable {
    slots: Vec<u64>,
    pub(super) recs: Chunked<IdentRec>,
}

fn hash32(lookup: &Pseudonym) -> u32 {
    let [a, b, c, d, ..] = lookup.0;
    u32::from_le_bytes([a, b, c, d])
}

/// Multiply-shift range reduction of a 32-bit hash onto `0..capacity`.
fn home32(hash: u32, capacity: usize) -> usize {
    ((u64::from(hash) * capacity as u64) >> 32) as usize
}

impl IdentTable {
    /// Indexes of the records whose lookup pseudonym is `lookup`, in insertion order
    /// along the probe sequence.
    pub(super) fn find<'t>(
        &'t self,
        lookup: &'t Pseudonym,
    ) -> impl Iterator<Item = (usize, &'t IdentRec)> + 't {
        self.same_hash(lookup)
            .filter(move |(_, rec)| rec.lookup == *lookup)
    }

    /// Indexes of the records whose slots hold `lookup`'s 32-bit hash, along its probe
    /// sequence: those of `lookup`, and of any other with the same hash (a record whose
    /// lookup was overwritten keeps the hash in its slot).
    pub(super) fn same_hash<'t>(
        &'t self,
        lookup: &Pseudonym,
    ) -> impl Iterator<Item = (usize, &'t IdentRec)> + 't {
        let hash = hash32(lookup);
        self.probe(hash).filter_map(move |slot| {
            if (slot >> 32) as u32 != hash {
                return None;
            }
            let index = (slot & 0xFFFF_FFFF) as usize - 1;
            Some((index, self.recs.get(index)?))
        })
    }

    /// The occupied slots a search for `hash` reads, from its home position on, up to
    /// the first empty slot or the first slot whose home is past `hash`'s (see the
    /// type's docs), and at most once around.
    fn probe(&self, hash: u32) -> impl Iterator<Item = u64> + '_ {
        let cap = self.slots.len();
        let start = home32(hash, cap);
        let mut i = start;
        // How far `i` is from `start`: a slot displaced less than that from its own
        // home would have been passed over by `hash`'s records.
        let mut dist = 0usize;
        std::iter::from_fn(move || {
            let slot = self.slot_at(i);
            if dist >= cap || slot == 0 || displacement(slot, i, cap) < dist {
                return None;
            }
            i = if i + 1 == cap { 0 } else { i + 1 };
            dist += 1;
            Some(slot)
        })
    }

    /// The slot at `lookup`'s home position (0 when empty): reading it brings the start
    /// of the probe sequence into the cache.
    pub(super) fn home_slot(&self, lookup: &Pseudonym) -> u64 {
        let cap = self.slots.len();
        if cap == 0 {
            return 0;
        }
        self.slot_at(home32(hash32(lookup), cap))
    }

    /// Adds a record and returns its index; `None` when the index space is exhausted.
    pub(super) fn insert(&mut self, rec: IdentRec) -> Option<usize> {
        if self.recs.len() >= u32::MAX as usize - 1 {
            return None;
        }
        if needs_growth(self.recs.len(), self.slots.len()) {
            self.grow();
        }
        let hash = hash32(&rec.lookup);
        let index = self.recs.push(rec);
        place_ordered(&mut self.slots, (u64::from(hash) << 32) | (index as u64 + 1));
        Some(index)
    }

    /// Takes `recs`, the identifier records of a state being decoded, into a table that
    /// holds none yet, and indexes them all at once. `false`, with the table left empty,
    /// when one lookup is held by two subjects or twice for one purpose (the rule
    /// [`State`](super::State) keeps as it applies collections), or when there are too
    /// many records to index.
    ///
    /// The records are sorted by hash first: records with one lookup are then
    /// neighbours, so only records with equal hashes are ever compared, and the slots
    /// are written in the order of their home positions, which is the hash's order.
    /// Inserting them one by one, each after a search for clashes, waited for a cache
    /// miss in the slot array per record (about 185 ms of CPU per open of a 1M-subject
    /// snapshot, measured in stop 28). The slots end up as inserting the records in
    /// that order would leave them: runs in home order, and the records of one hash in
    /// the order of `recs`. Writing them takes one pass over the slots (see
    /// [`place_sorted`]), whatever the hashes, and a table in which some record would
    /// sit more than [`MAX_LOADED_DISPLACEMENT`] slots past its home is refused.
    pub(super) fn load(&mut self, recs: Chunked<IdentRec>) -> bool {
        if self.recs.len() != 0 || recs.len() >= u32::MAX as usize - 1 {
            return false;
        }
        let mut keyed: Vec<u64> = Vec::new();
        if keyed.try_reserve_exact(recs.len()).is_err() {
            return false;
        }
        keyed.extend(
            recs.iter()
                .enumerate()
                .map(|(index, rec)| (u64::from(hash32(&rec.lookup)) << 32) | index as u64),
        );
        keyed.sort_unstable();
        let mut rest = keyed.as_slice();
        while let [first, ..] = rest {
            let run = rest.iter().take_while(|k| *k >> 32 == first >> 32).count();
            let (same, after) = rest.split_at(run);
            if run > 1 && clash_within(same, &recs) {
                return false;
            }
            rest = after;
        }
        let cap = capacity_for(keyed.len()).max(self.slots.len());
        let mut slots = vec![0; cap];
        if !place_sorted(&mut slots, &keyed) {
            return false;
        }
        self.slots = slots;
        self.recs = recs;
        true
    }

    /// Makes room for `n` records in total without growing the index.
    pub(super) fn reserve(&mut self, n: usize) {
        let cap = capacity_for(n);
        if cap > self.slots.len() {
            self.rehash(cap);
        }
    }

    fn grow(&mut self) {
        self.rehash(grown(self.slots.len()));
    }

    fn rehash(&mut self, cap: usize) {
        let old = std::mem::take(&mut self.slots);
        self.slots = vec![0; cap];
        // Read in probe order, from an empty slot on (the table is never full), so that
        // no run is split at the end and slots with one hash keep their order.
        let from = old.iter().position(|s| *s == 0).unwrap_or(0);
        let (head, tail) = old.split_at(from.min(old.len()));
        for slot in tail.iter().chain(head).copied().filter(|s| *s != 0) {
            place_ordered(&mut self.slots, slot);
        }
    }

    pub(super) fn get_mut(&mut self, index: usize) -> Option<&mut IdentRec> {
        self.recs.get_mut(index)
    }

    /// How many slots a search for `lookup` reads (for tests of the probe length): the
    /// occupied ones, and the one that stops it.
    #[cfg(test)]
    pub(super) fn probe_len(&self, lookup: &Pseudonym) -> usize {
        self.probe(hash32(lookup)).count() + 1
    }

    /// The slot at position `i` (0, empty, past the end).
    fn slot_at(&self, i: usize) -> u64 {
        self.slots.get(i).copied().unwrap_or(0)
    }

    /// Whether every run of occupied slots is in home order (see the type's docs).
    #[cfg(test)]
    fn runs_in_home_order(&self) -> bool {
        let cap = self.slots.len();
        (0..cap).all(|i| {
            let (here, next) = (self.slot_at(i), self.slot_at((i + 1) % cap));
            here == 0 || next == 0 || displacement(next, (i + 1) % cap, cap) <= displacement(here, i, cap) + 1
        })
    }

    /// Bytes of slot storage (for memory accounting in tests).
    #[cfg(test)]
    pub(super) fn slot_capacity(&self) -> usize {
        self.slots.len()
    }
}

/// Whether two of the records whose `hash << 32 | index` keys are `same` (one hash)
/// hold one lookup for two subjects, or for one purpose twice. Sorted by lookup and
/// purpose, a clash is always between neighbours (the records of one lookup must all
/// be one subject's), so a run costs a sort, not a comparison of every pair.
fn clash_within(same: &[u64], recs: &Chunked<IdentRec>) -> bool {
    let mut held: Vec<(&Pseudonym, u16, u32)> = Vec::with_capacity(same.len());
    for key in same {
        let Some(rec) = recs.get((key & 0xFFFF_FFFF) as usize) else {
            return true;
        };
        held.push((&rec.lookup, rec.purpose(), rec.subject));
    }
    held.sort_unstable();
    held.windows(2).any(|pair| match pair {
        [(a, pa, sa), (b, pb, sb)] => a == b && (sa != sb || pa == pb),
        _ => false,
    })
}

/// How far the identifier slot `slot`, found at position `i`, is from its home
/// position (wrapping).
fn displacement(slot: u64, i: usize, cap: usize) -> usize {
    let home = home32((slot >> 32) as u32, cap);
    if i >= home {
        i - home
    } else {
        i + (cap - home)
    }
}

/// Writes the identifier slot `slot` into its run in home order, after the slots of
/// its own home already there: at the first slot whose home is past its own (or an
/// empty one), moving the rest of the run on by one (Robin Hood placement, which
/// keeps the run's order). The caller keeps the table below full, so an empty
/// position exists.
fn place_ordered(slots: &mut [u64], slot: u64) {
    let cap = slots.len();
    let next = |i: usize| if i + 1 == cap { 0 } else { i + 1 };
    let mut i = home32((slot >> 32) as u32, cap);
    for dist in 0..cap {
        let s = slots.get(i).copied().unwrap_or(0);
        if s == 0 || displacement(s, i, cap) < dist {
            break;
        }
        i = next(i);
    }
    let mut carried = slot;
    for _ in 0..cap {
        let Some(s) = slots.get_mut(i) else {
            return;
        };
        carried = std::mem::replace(s, carried);
        if carried == 0 {
            return;
        }
        i = next(i);
    }
}

/// The farthest [`IdentTable::load`] places a record from its home position. Records
/// loaded from a snapshot are HMAC outputs, spread evenly: at the load a snapshot's
/// index has (4/5), a million of them sit at most a few dozen slots past their homes
/// (25 in this module's tests), far below this bound.
/// Records crafted to share a hash (only whoever holds the key can tag such a file)
/// would make every search that starts in their run read all of it, so such a table
/// is refused, and the ledger replays its log instead.
pub(super) const MAX_LOADED_DISPLACEMENT: usize = 1 << 16;

/// Writes the identifier slots `sorted` (`hash << 32 | index`, in ascending order;
/// each is stored plus one) into `slots`, which are all empty and more than `sorted`,
/// as [`place_ordered`] would leave them inserted one by one in that order, in one
/// pass: each goes to its home position or, if that is taken, just after the slot
/// before it. Those the end of the table pushes past it wrap around to the start,
/// where they go first in the run there (their displacement is the larger) and push
/// the slots already there on, in order, up to the first empty position. `false` if
/// a slot would be more than [`MAX_LOADED_DISPLACEMENT`] past its home, or if
/// `sorted` does not fit.
fn place_sorted(slots: &mut [u64], sorted: &[u64]) -> bool {
    let cap = slots.len();
    if sorted.len() >= cap {
        return false;
    }
    // Positions counted without wrapping: `next` may pass `cap`.
    let mut next = 0usize;
    let mut wrapped = std::collections::VecDeque::new();
    for key in sorted {
        let slot = key + 1;
        let home = home32((key >> 32) as u32, cap);
        let at = home.max(next);
        if at - home > MAX_LOADED_DISPLACEMENT {
            return false;
        }
        next = at + 1;
        match slots.get_mut(at) {
            Some(s) => *s = slot,
            None => wrapped.push_back(slot),
        }
    }
    // The wrapped slots take positions 0, 1, ...; each slot met there moves on behind
    // them, keeping the run's order, until an empty position takes the last one.
    let mut i = 0;
    while let Some(slot) = wrapped.pop_front() {
        let Some(s) = slots.get_mut(i) else {
            return false;
        };
        if displacement(slot, i, cap) > MAX_LOADED_DISPLACEMENT {
            return false;
        }
        let moved = std::mem::replace(s, slot);
        if moved != 0 {
            wrapped.push_back(moved);
        }
        i += 1;
    }
    true
}

/// Writes `slot` at the first empty position from `home` on (wrapping). The caller
/// keeps the table below full, so an empty position exists.
fn place<S: Copy + PartialEq + Default>(slots: &mut [S], home: usize, slot: S) {
    let cap = slots.len();
    let mut i = home;
    for _ in 0..cap {
        if let Some(s) = slots.get_mut(i) {
            if *s == S::default() {
                *s = slot;
                return;
            }
        }
        i += 1;
        if i == cap {
            i = 0;
        }
    }
}

/// Subject indexes by id. A slot is `0` (empty) or `subject index + 1`; the id is
/// compared in the dense subject array, and hashed with a per-process random key
/// (subject ids come from the application and may be chosen by users).
#[derive(Debug, Default)]
pub(super) struct SubjectIndex {
    slots: Vec<u32>,
    used: usize,
    hasher: RandomState,
}

fn home64(hash: u64, capacity: usize) -> usize {
    ((u128::from(hash) * capacity as u128) >> 64) as usize
}

impl SubjectIndex {
    /// The index of `id`, given a way to read the id of a subject index.
    pub(super) fn find<'s>(&self, id: &str, ids: impl Fn(usize) -> Option<&'s SubjectId>) -> Option<u32> {
        let cap = self.slots.len();
        if cap == 0 {
            return None;
        }
        let mut i = home64(self.hasher.hash_one(id), cap);
        for _ in 0..cap {
            let slot = self.slots.get(i).copied().unwrap_or(0);
            if slot == 0 {
                return None;
            }
            let index = slot - 1;
            if ids(index as usize).is_some_and(|s| s.as_str() == id) {
                return Some(index);
            }
            i += 1;
            if i == cap {
                i = 0;
            }
        }
        None
    }

    /// Records that subject index `index` has id `id` (not yet present).
    pub(super) fn insert<'s>(&mut self, id: &str, index: u32, ids: impl Fn(usize) -> Option<&'s SubjectId>) {
        if needs_growth(self.used, self.slots.len()) {
            self.rehash(grown(self.slots.len()), &ids);
        }
        let home = home64(self.hasher.hash_one(id), self.slots.len());
        place(&mut self.slots, home, index.saturating_add(1));
        self.used += 1;
    }

    /// Indexes subjects `0..n` of a state being decoded, into an index that holds none
    /// yet; `false` when two of them have the same id (or one is missing), and the index
    /// is then left empty.
    ///
    /// The ids are hashed and sorted by hash first: equal ids are then neighbours, so only
    /// ids with equal hashes are ever compared, and the slots are written in the order of
    /// their home positions. Inserting one by one instead read a random subject record
    /// and its id for every slot passed on the way (a third of a 1M-subject snapshot's
    /// decoding).
    pub(super) fn load<'s>(&mut self, n: usize, ids: impl Fn(usize) -> Option<&'s SubjectId>) -> bool {
        if self.used != 0 {
            return false;
        }
        let mut keyed: Vec<(u64, u32)> = Vec::new();
        if keyed.try_reserve_exact(n).is_err() {
            return false;
        }
        for i in 0..n {
            let (Some(id), Ok(index)) = (ids(i), u32::try_from(i)) else {
                return false;
            };
            keyed.push((self.hasher.hash_one(id.as_str()), index));
        }
        keyed.sort_unstable();
        // Within a run of equal hashes (almost always of one), every pair.
        let mut rest = keyed.as_slice();
        while let [(hash, _), ..] = rest {
            let run = rest.iter().take_while(|(h, _)| h == hash).count();
            let (same, after) = rest.split_at(run);
            for (k, (_, a)) in same.iter().enumerate() {
                let a = ids(*a as usize);
                if same.iter().skip(k + 1).any(|(_, b)| ids(*b as usize) == a) {
                    return false;
                }
            }
            rest = after;
        }
        let cap = capacity_for(n).max(self.slots.len());
        self.slots = vec![0; cap];
        for (hash, index) in keyed {
            place(&mut self.slots, home64(hash, cap), index.saturating_add(1));
        }
        self.used = n;
        true
    }

    /// Makes room for `n` subjects in total without growing.
    pub(super) fn reserve<'s>(&mut self, n: usize, ids: impl Fn(usize) -> Option<&'s SubjectId>) {
        let cap = capacity_for(n);
        if cap > self.slots.len() {
            self.rehash(cap, &ids);
        }
    }

    fn rehash<'s>(&mut self, cap: usize, ids: &impl Fn(usize) -> Option<&'s SubjectId>) {
        {
            let mut slots = vec![0u32; cap];
            for slot in self.slots.iter().copied().filter(|s| *s != 0) {
                if let Some(existing) = ids((slot - 1) as usize) {
                    place(
                        &mut slots,
                        home64(self.hasher.hash_one(existing.as_str()), cap),
                        slot,
                    );
                }
            }
            self.slots = slots;
        }
    }

    #[cfg(test)]
    pub(super) fn slot_capacity(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn chunked_keeps_elements_in_place() {
        let mut c = Chunked::default();
        for i in 0..(3 * CHUNK + 5) {
            assert_eq!(c.push(i), i);
        }
        assert_eq!(c.len(), 3 * CHUNK + 5);
        assert_eq!(c.get(CHUNK), Some(&CHUNK));
        assert_eq!(c.get(3 * CHUNK + 5), None);
        *c.get_mut(7).unwrap() = 70;
        assert_eq!(c.iter().nth(7), Some(&70));
        assert_eq!(c.iter().count(), 3 * CHUNK + 5);
    }

    fn pseudo(i: u32) -> Pseudonym {
        // Spread like an HMAC would, but also force some colliding hash prefixes.
        let mut p = [0u8; 32];
        let h = if i.is_multiple_of(7) {
            42
        } else {
            i.wrapping_mul(0x9E37_79B9)
        };
        p[..4].copy_from_slice(&h.to_le_bytes());
        p[4..8].copy_from_slice(&i.to_le_bytes());
        Pseudonym(p)
    }

    #[test]
    fn ident_table_finds_every_record_and_nothing_else() {
        let mut t = IdentTable::default();
        for i in 0..5_000u32 {
            let rec = IdentRec {
                lookup: pseudo(i),
                meta: pack_collection(u64::from(i), 1, (i % 3) as u16),
                scope: i,
                subject: i,
            };
            t.insert(rec).unwrap();
            if i % 10 == 0 {
                // A second record for the same lookup (another purpose).
                t.insert(IdentRec {
                    lookup: pseudo(i),
                    meta: pack_collection(u64::from(i), 2, 7),
                    scope: i,
                    subject: i,
                })
                .unwrap();
            }
        }
        for i in 0..5_000u32 {
            let found: Vec<_> = t.find(&pseudo(i)).map(|(_, r)| r.purpose()).collect();
            let want = if i % 10 == 0 {
                vec![(i % 3) as u16, 7]
            } else {
                vec![(i % 3) as u16]
            };
            assert_eq!(found, want, "{i}");
        }
        for i in 5_000..6_000u32 {
            assert_eq!(t.find(&pseudo(i)).count(), 0);
        }
        assert!(t.slot_capacity() * 4 >= t.recs.len() * 5);
        let nine = pseudo(9);
        let r = t.find(&nine).next().unwrap().1;
        assert_eq!((r.seq(), r.basis(), r.purpose()), (9, 1, 0));
    }

    #[test]
    fn packing_saturates_instead_of_wrapping() {
        let m = pack_collection(u64::MAX, 0xFF, 0xFFFF);
        let r = IdentRec {
            lookup: Pseudonym([0; 32]),
            meta: m,
            scope: 0,
            subject: 0,
        };
        assert_eq!((r.seq(), r.basis(), r.purpose()), (MAX_SEQ, 0xF, 0xFFF));
    }

    #[test]
    fn subject_index_round_trip() {
        let ids: Vec<SubjectId> = (0..3_000)
            .map(|i| SubjectId::new(&format!("s-{i}")).unwrap())
            .collect();
        let mut idx = SubjectIndex::default();
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(idx.find(id.as_str(), |k| ids.get(k)), None);
            idx.insert(id.as_str(), i as u32, |k| ids.get(k));
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(idx.find(id.as_str(), |k| ids.get(k)), Some(i as u32));
        }
        assert_eq!(idx.find("nobody", |k| ids.get(k)), None);
        assert!(idx.slot_capacity() < ids.len() * 2);
    }

    #[test]
    fn loading_refuses_an_id_twice_and_finds_every_other() {
        let ids: Vec<SubjectId> = (0..3_000)
            .map(|i| SubjectId::new(&format!("s-{i}")).unwrap())
            .collect();
        let mut idx = SubjectIndex::default();
        assert!(idx.load(ids.len(), |k| ids.get(k)));
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(idx.find(id.as_str(), |k| ids.get(k)), Some(i as u32));
        }
        assert_eq!(idx.find("nobody", |k| ids.get(k)), None);
        assert!(idx.slot_capacity() < ids.len() * 2);
        // Loaded once only: a second load, or a load into an index that holds ids, is
        // refused.
        assert!(!idx.load(ids.len(), |k| ids.get(k)));
        // An id twice, wherever the two are, and a missing id.
        for (a, b) in [(0, 1), (0, 2_999), (1_234, 17), (2_998, 2_999)] {
            let mut twice = ids.clone();
            twice[b] = twice[a].clone();
            assert!(
                !SubjectIndex::default().load(twice.len(), |k| twice.get(k)),
                "{a} {b}"
            );
        }
        let all_one: Vec<SubjectId> = vec![ids[5].clone(); 100];
        assert!(!SubjectIndex::default().load(all_one.len(), |k| all_one.get(k)));
        assert!(!SubjectIndex::default().load(ids.len() + 1, |k| ids.get(k)));
        // Nothing: an empty index.
        let mut none = SubjectIndex::default();
        assert!(none.load(0, |k| ids.get(k)));
        assert_eq!(none.find("s-1", |k| ids.get(k)), None);
    }

    /// A pseudonym with hash `h`, told apart by `n` (never all zeros, the lookup a
    /// forgotten record is left with).
    fn with_hash(h: u32, n: u32) -> Pseudonym {
        let mut p = [0u8; 32];
        p[..4].copy_from_slice(&h.to_le_bytes());
        p[4..8].copy_from_slice(&n.to_le_bytes());
        p[31] = 0xAB;
        Pseudonym(p)
    }

    /// A xorshift generator from `x` (not zero): each call gives a number below its `n`.
    fn xorshift(mut x: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        }
    }

    fn rec_for(lookup: Pseudonym, n: u32) -> IdentRec {
        IdentRec {
            lookup,
            meta: pack_collection(u64::from(n), 1, (n % 4000) as u16),
            scope: n,
            subject: n,
        }
    }

    /// The table against a model (each record's slot hash, which never changes, and its
    /// current lookup), through inserts (also of lookups already held), reserves (a
    /// rehash into a larger index), lookups forgotten (zeros, as an erasure leaves them)
    /// and records reused for another lookup with the same hash (as a collect reuses an
    /// erased subject's): hashes bunched at 0, `u32::MAX` (runs that wrap past the end)
    /// and 2^31, and random ones. Records come back in index order, which is the order
    /// their slots were inserted in, and runs stay in home order. (From review r96.)
    #[test]
    fn ident_table_agrees_with_a_model() {
        for seed in 1..8u64 {
            let mut rng = xorshift(0x9E37_79B9_7F4A_7C15 ^ seed.wrapping_mul(0xDEAD_BEEF));
            let mut t = IdentTable::default();
            let mut model: Vec<(u32, Pseudonym)> = Vec::new();
            let mut pool: Vec<Pseudonym> = Vec::new();
            let n_ops = 3_000 + rng(3_000);
            for op in 0..n_ops {
                match rng(20) {
                    0 if !model.is_empty() => {
                        let i = rng(model.len() as u64) as usize;
                        t.get_mut(i).unwrap().lookup = Pseudonym([0; 32]);
                        model[i].1 = Pseudonym([0; 32]);
                    }
                    1 if !model.is_empty() => {
                        let i = rng(model.len() as u64) as usize;
                        let l = with_hash(model[i].0, 5_000_000 + op as u32);
                        t.get_mut(i).unwrap().lookup = l;
                        model[i].1 = l;
                        pool.push(l);
                    }
                    2 => t.reserve(model.len() + rng(3_000) as usize),
                    _ => {
                        let lookup = if !pool.is_empty() && rng(4) == 0 {
                            pool[rng(pool.len() as u64) as usize]
                        } else {
                            let h = match rng(6) {
                                0 => u32::MAX - rng(40) as u32,
                                1 => rng(40) as u32,
                                2 => 0x8000_0000,
                                3 => u32::MAX,
                                4 => 0,
                                _ => (rng(u64::MAX) >> 16) as u32,
                            };
                            let l = with_hash(h, op as u32);
                            pool.push(l);
                            l
                        };
                        assert_eq!(t.insert(rec_for(lookup, model.len() as u32)), Some(model.len()));
                        model.push((hash32(&lookup), lookup));
                    }
                }
                if op % 500 == 0 || op + 1 == n_ops {
                    assert!(t.runs_in_home_order(), "seed {seed} op {op}");
                    let absent = [with_hash(0, 9_999_999), with_hash(u32::MAX, 9_999_999)];
                    for l in pool.iter().chain(&absent) {
                        let want: Vec<usize> = (0..model.len()).filter(|i| model[*i].1 == *l).collect();
                        let got: Vec<usize> = t.find(l).map(|(i, _)| i).collect();
                        assert_eq!(got, want, "seed {seed} op {op}: find");
                        let want: Vec<usize> =
                            (0..model.len()).filter(|i| model[*i].0 == hash32(l)).collect();
                        let got: Vec<usize> = t.same_hash(l).map(|(i, _)| i).collect();
                        assert_eq!(got, want, "seed {seed} op {op}: same_hash");
                    }
                }
            }
        }
    }

    /// A record of subject `subject` for `purpose`, under `lookup`.
    fn held(lookup: Pseudonym, subject: u32, purpose: u16) -> IdentRec {
        IdentRec {
            lookup,
            meta: pack_collection(u64::from(subject), 1, purpose),
            scope: 0,
            subject,
        }
    }

    fn chunked(recs: &[IdentRec]) -> Chunked<IdentRec> {
        let mut c = Chunked::default();
        for r in recs {
            c.push(r.clone());
        }
        c
    }

    /// Loaded at once, records are found as after inserting them one by one: the same
    /// records for every lookup, in the same order, with hashes that wrap around the end
    /// of the index, that collide, and lookups held for several purposes.
    #[test]
    fn loading_indexes_as_inserting_does() {
        for seed in 1..6u64 {
            let mut rng = xorshift(0x2545_F491_4F6C_DD1D ^ seed.wrapping_mul(0xDEAD_BEEF));
            let n = 2_000 + rng(3_000) as u32;
            let mut recs: Vec<IdentRec> = Vec::new();
            let mut pool: Vec<Pseudonym> = Vec::new();
            for i in 0..n {
                if !pool.is_empty() && rng(8) == 0 {
                    // The lookup of an earlier record, for the same subject and another
                    // purpose (as a second collection of one identifier leaves it).
                    let j = rng(recs.len() as u64) as usize;
                    let (lookup, subject) = (recs[j].lookup, recs[j].subject);
                    let purposes = recs.iter().filter(|r| r.lookup == lookup).count();
                    recs.push(held(lookup, subject, 1 + purposes as u16));
                    continue;
                }
                let h = match rng(6) {
                    0 => u32::MAX - rng(40) as u32,
                    1 => rng(40) as u32,
                    2 => 0x8000_0000,
                    _ => (rng(u64::MAX) >> 16) as u32,
                };
                let l = with_hash(h, i);
                pool.push(l);
                recs.push(held(l, i, 1));
            }
            let one_by_one = inserted(&recs);
            let mut loaded = IdentTable::default();
            assert!(loaded.load(chunked(&recs)), "seed {seed}");
            assert!(loaded.runs_in_home_order(), "seed {seed}");
            assert_eq!(loaded.slot_capacity(), one_by_one.slot_capacity());
            let absent = [with_hash(0, 9_999_999), with_hash(u32::MAX, 9_999_999)];
            for l in pool.iter().chain(&absent) {
                let got: Vec<usize> = loaded.find(l).map(|(i, _)| i).collect();
                let want: Vec<usize> = one_by_one.find(l).map(|(i, _)| i).collect();
                assert_eq!(got, want, "seed {seed}: find");
                let got: Vec<usize> = loaded.same_hash(l).map(|(i, _)| i).collect();
                let want: Vec<usize> = one_by_one.same_hash(l).map(|(i, _)| i).collect();
                assert_eq!(got, want, "seed {seed}: same_hash");
            }
            // And the loaded table goes on growing as any other.
            for i in 0..3_000 {
                let l = with_hash((rng(u64::MAX) >> 16) as u32, 8_000_000 + i);
                let index = loaded.insert(held(l, 8_000_000 + i, 1)).unwrap();
                assert_eq!(loaded.find(&l).map(|(i, _)| i).collect::<Vec<_>>(), vec![index]);
            }
            assert!(loaded.runs_in_home_order(), "seed {seed}");
        }
    }

    /// A table of `recs` inserted one by one, in their order.
    fn inserted(recs: &[IdentRec]) -> IdentTable {
        let mut t = IdentTable::default();
        t.reserve(recs.len());
        for r in recs {
            t.insert(r.clone()).unwrap();
        }
        t
    }

    /// Many records under one hash (at the start, in the middle, at the end of the hash
    /// space, so that their run wraps around the end of the index), with others spread
    /// out, loaded at once, are placed slot for slot as inserting them one by one in
    /// hash order places them (the records are numbered in that order, so that both
    /// tables hold the same record indexes).
    #[test]
    fn loading_one_hash_many_times_indexes_as_inserting_does() {
        for h in [0, 0x8000_0000, u32::MAX - 3, u32::MAX] {
            let mut lookups: Vec<Pseudonym> = (0..3_000)
                .map(|i| with_hash(h, i))
                .chain((0..3_000).map(|i| with_hash(i * 1_431_655, 3_000 + i)))
                .collect();
            lookups.sort_by_key(hash32);
            let recs: Vec<IdentRec> = (0..).zip(lookups).map(|(i, l)| held(l, i, 1)).collect();
            let mut loaded = IdentTable::default();
            assert!(loaded.load(chunked(&recs)), "{h:#x}");
            assert_eq!(loaded.slots, inserted(&recs).slots, "{h:#x}");
        }
    }

    /// Records that would sit more than `MAX_LOADED_DISPLACEMENT` slots past their home
    /// (only crafted ones: lookups are HMAC outputs) are refused, so that no run of
    /// such a length reaches a loaded table; the table is left empty. One fewer fits.
    #[test]
    fn loading_refuses_a_run_longer_than_the_bound() {
        let n = MAX_LOADED_DISPLACEMENT as u32 + 1;
        for h in [7, u32::MAX] {
            let recs: Vec<IdentRec> = (0..=n).map(|i| held(with_hash(h, i), i, 1)).collect();
            let mut t = IdentTable::default();
            assert!(!t.load(chunked(&recs)), "{h:#x}");
            assert_eq!((t.recs.len(), t.slot_capacity()), (0, 0));
            let mut t = IdentTable::default();
            assert!(t.load(chunked(&recs[..n as usize])), "{h:#x}");
            assert!(t.runs_in_home_order());
            // (A search in the run reads on to the lookup: a few of them.)
            for r in recs[..n as usize].iter().step_by(4_099) {
                assert_eq!(t.find(&r.lookup).count(), 1);
            }
        }
    }

    /// How far from the bound real tables are: a million evenly spread hashes at the
    /// largest load a loaded index has (4/5) are placed at most a few dozen slots from
    /// their homes (25 with this seed).
    #[test]
    fn evenly_spread_hashes_stay_far_below_the_bound() {
        let mut rng = xorshift(0x9E37_79B9_7F4A_7C15);
        let n = 1_000_000u32;
        let mut keyed: Vec<u64> = (0..n).map(|i| (rng(1 << 32) << 32) | u64::from(i)).collect();
        keyed.sort_unstable();
        let cap = capacity_for(keyed.len());
        let mut slots = vec![0; cap];
        assert!(place_sorted(&mut slots, &keyed));
        let worst = (0..cap)
            .filter(|i| slots[*i] != 0)
            .map(|i| displacement(slots[i], i, cap))
            .max()
            .unwrap();
        assert!(worst < MAX_LOADED_DISPLACEMENT / 16, "{worst}");
        println!("largest displacement of a million evenly spread hashes: {worst}");
    }

    /// A lookup held by two subjects, or twice for one purpose, is refused wherever its
    /// records are (also between records of another lookup with the same hash), and the
    /// table is left empty; one subject's lookup for several purposes is not.
    #[test]
    fn loading_refuses_a_lookup_held_twice() {
        let (a, b, other) = (with_hash(42, 1), with_hash(42, 2), with_hash(7, 3));
        let fine = [
            vec![held(a, 1, 0), held(b, 2, 0), held(a, 1, 1), held(other, 3, 0)],
            vec![held(a, 1, 0), held(a, 1, 1), held(a, 1, 2), held(b, 1, 0)],
        ];
        for recs in fine {
            let mut t = IdentTable::default();
            assert!(t.load(chunked(&recs)));
            assert_eq!(t.find(&a).count(), recs.iter().filter(|r| r.lookup == a).count());
        }
        let clashing = [
            // Another subject, another purpose; and the same purpose.
            vec![held(a, 1, 0), held(b, 2, 0), held(a, 3, 1)],
            vec![held(a, 1, 0), held(a, 3, 0)],
            // One subject, one purpose twice.
            vec![held(other, 3, 0), held(a, 1, 5), held(b, 1, 5), held(a, 1, 5)],
            // Three records: the subjects differ between the last two only.
            vec![held(a, 1, 0), held(a, 1, 1), held(a, 2, 2)],
            vec![held(a, 1, 0), held(a, 2, 1), held(a, 1, 2)],
        ];
        for (k, recs) in clashing.iter().enumerate() {
            let mut t = IdentTable::default();
            assert!(!t.load(chunked(recs)), "case {k}");
            assert_eq!(
                (t.recs.len(), t.find(&a).count(), t.find(&b).count()),
                (0, 0, 0),
                "case {k}"
            );
        }
        // Only into a table that holds nothing yet.
        let mut t = IdentTable::default();
        t.insert(held(other, 3, 0)).unwrap();
        assert!(!t.load(chunked(&[held(a, 1, 0)])));
        assert_eq!(
            (t.recs.len(), t.find(&other).count(), t.find(&a).count()),
            (1, 1, 0)
        );
    }

    #[test]
    fn a_search_for_a_lookup_nobody_holds_stops_early() {
        // At the largest load (an index sized for exactly this many records, as a
        // snapshot's is), plain linear probing reads about 13 slots for a lookup
        // nobody holds; kept in home order, about as many as for one that is held.
        let n = 100_000u32;
        let mut t = IdentTable::default();
        t.reserve(n as usize);
        // Uniform hashes, as HMAC outputs are (a multiplicative hash of a counter would
        // spread too evenly to show anything).
        let hash = |i: u32| {
            let mut x = u64::from(i).wrapping_add(0x9E37_79B9_7F4A_7C15);
            x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            (x ^ (x >> 31)) as u32
        };
        for i in 0..n {
            t.insert(rec_for(with_hash(hash(i), i), i)).unwrap();
        }
        assert!(t.slot_capacity() * 3 < t.recs.len() * 4, "load above 3/4");
        let held: usize = (0..n)
            .step_by(7)
            .map(|i| t.probe_len(&with_hash(hash(i), i)))
            .sum();
        let absent: usize = (0..n)
            .step_by(7)
            .map(|i| t.probe_len(&with_hash(hash(n + i), n + i)))
            .sum();
        let count = (0..n).step_by(7).count();
        let (held, absent) = (held as f64 / count as f64, absent as f64 / count as f64);
        assert!(held < 5.0 && absent < 5.0, "held {held:.1}, absent {absent:.1}");
    }
}
