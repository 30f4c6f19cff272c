//! Opening a ledger: the builder, creation of a new ledger, and loading an existing one.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use super::replay::Replay;
use super::ticker::Ticker;
use super::{
    AfterFailure, Durability, GroupSync, Inner, Ledger, SnapshotOnDisk, Snapshots, Stage, SyncState, Writer,
};
use crate::entry::{self, Actor, Body, Entry, IndexRecord};
use crate::error::{IntegrityError, IntegrityProblem, OpenError, ReadError, StorageError};
use crate::identifier::{Pseudonym, PseudonymKey};
use crate::signing::SigningKey;
use crate::state::snapshot::Position;
use crate::state::State;
use crate::store::{Backend, Opened, RawEntry, SledStore};
use crate::subject::SubjectId;
use crate::threads::spawn_scoped;
use crate::time::{Clock, SystemClock, Timestamp};

/// Metadata key of the format marker.
pub(crate) const FORMAT_KEY: &str = "format";

/// Placeholder: no signing key given yet.
#[derive(Debug, Clone, Copy)]
pub struct NoSigningKey;

/// Placeholder: no pseudonym key given yet.
#[derive(Debug, Clone, Copy)]
pub struct NoPseudonymKey;

/// Opens or creates a [`Ledger`]. Made by [`Ledger::builder`].
///
/// `open` exists only once both keys are given, so forgetting one is a compile error.
///
/// # Defaults
/// - durability: [`Durability::Immediate`] (every append fsynced before it returns)
/// - clock: [`SystemClock`]; decisions that do not depend on the time are stamped from a
///   millisecond ticker rather than a clock read each (see [`Evidence::decided_at`](crate::Evidence::decided_at)).
///   Giving any clock with [`LedgerBuilder::clock`], `SystemClock` included, makes every
///   decision read that clock.
/// - after a failure: [`AfterFailure::DenyDecisions`] (every decision denied until the
///   ledger is reopened)
pub struct LedgerBuilder<S = NoSigningKey, K = NoPseudonymKey> {
    path: PathBuf,
    signing_key: S,
    pseudonym_key: K,
    durability: Durability,
    clock: Arc<dyn Clock>,
    trusted_checkpoint: Option<String>,
    /// Stamp time-independent decisions from a ticker (default clock only).
    ticker: bool,
    recording: crate::records::Recording,
    snapshots: Snapshots,
    after_failure: AfterFailure,
}

impl<S, K> fmt::Debug for LedgerBuilder<S, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LedgerBuilder")
            .field("path", &self.path)
            .field("durability", &self.durability)
            .field("clock", &self.clock)
            .field("after_failure", &self.after_failure)
            .finish_non_exhaustive()
    }
}

impl LedgerBuilder {
    pub(super) fn new(path: PathBuf) -> Self {
        LedgerBuilder {
            path,
            signing_key: NoSigningKey,
            pseudonym_key: NoPseudonymKey,
            durability: Durability::default(),
            clock: Arc::new(SystemClock),
            trusted_checkpoint: None,
            ticker: true,
            recording: crate::records::Recording::Off,
            snapshots: Snapshots::default(),
            after_failure: AfterFailure::default(),
        }
    }
}

impl<K> LedgerBuilder<NoSigningKey, K> {
    /// The key that signs new entries. On reopening it must be the key the log
    /// currently authorizes (the genesis key, or the latest rotated-to key).
    pub fn signing_key(self, key: SigningKey) -> LedgerBuilder<SigningKey, K> {
        LedgerBuilder {
            path: self.path,
            signing_key: key,
            pseudonym_key: self.pseudonym_key,
            durability: self.durability,
            clock: self.clock,
            trusted_checkpoint: self.trusted_checkpoint,
            ticker: self.ticker,
            recording: self.recording,
            snapshots: self.snapshots,
            after_failure: self.after_failure,
        }
    }
}

impl<S> LedgerBuilder<S, NoPseudonymKey> {
    /// The application's pseudonym key. On reopening it must be the key the ledger
    /// was created with.
    pub fn pseudonym_key(self, key: PseudonymKey) -> LedgerBuilder<S, PseudonymKey> {
        LedgerBuilder {
            path: self.path,
            signing_key: self.signing_key,
            pseudonym_key: key,
            durability: self.durability,
            clock: self.clock,
            trusted_checkpoint: self.trusted_checkpoint,
            ticker: self.ticker,
            recording: self.recording,
            snapshots: self.snapshots,
            after_failure: self.after_failure,
        }
    }
}

impl<S, K> LedgerBuilder<S, K> {
    /// What an acknowledged append promises about crashes (default [`Durability::Immediate`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Which allowed uses to record as [`DecisionRecord`](crate::DecisionRecord)s, for
    /// audits and [impact queries](Ledger::impact). Default: [`Recording::Off`](crate::Recording::Off).
    pub fn record_decisions(mut self, recording: crate::records::Recording) -> Self {
        self.recording = recording;
        self
    }

    /// A signed checkpoint kept outside the database (a file, another store), from
    /// [`Ledger::checkpoint`]. Opening then refuses a ledger that is shorter than the
    /// checkpoint ([`IntegrityProblem::Truncated`](crate::IntegrityProblem::Truncated))
    /// or whose first entries are not the ones it committed to (its root pins every
    /// entry it covers, the key revocations included; its `revoked` lines are not
    /// compared)
    /// ([`IntegrityProblem::InconsistentWithCheckpoint`](crate::IntegrityProblem::InconsistentWithCheckpoint)):
    /// truncation and restoring an older backup are caught. The checkpoint must be signed
    /// by the current signing key, the one this builder opens with: after
    /// [`Ledger::rotate_key`], keep a new checkpoint (a checkpoint signed by an older key,
    /// which may have been stolen, proves nothing about the log). Default: none.
    pub fn trusted_checkpoint(mut self, signed_checkpoint: impl Into<String>) -> Self {
        self.trusted_checkpoint = Some(signed_checkpoint.into());
        self
    }

    /// When to write state snapshots that make the next open faster (default
    /// [`Snapshots::OnClose`] once 10,000 entries are new). See [`Snapshots`].
    pub fn snapshots(mut self, snapshots: Snapshots) -> Self {
        self.snapshots = snapshots;
        self
    }

    /// What decisions answer once the ledger has failed (a sync of its store failed,
    /// or an entry could not be stored; [`Ledger::is_failed`]), when it takes no more
    /// changes until it is reopened. Default: [`AfterFailure::DenyDecisions`], every
    /// decision [`Denied::LedgerFailed`](crate::Denied::LedgerFailed) until then (fail
    /// closed).
    ///
    /// The trade-off: denying stops every use until the operator reopens the ledger (a
    /// loss of availability); [`AfterFailure::KeepDeciding`] keeps uses going from the
    /// state in memory, but a person who withdraws consent meanwhile cannot have the
    /// withdrawal recorded, and the uses it would have stopped stay allowed until the
    /// reopen. Reopen after a failure in either case: after a failed `fsync` the pages
    /// it failed to write may be lost, and a later `fsync` in the same session can
    /// succeed without them, so only a reopen reads what the disk kept. See
    /// [`AfterFailure`].
    pub fn after_failure(mut self, after_failure: AfterFailure) -> Self {
        self.after_failure = after_failure;
        self
    }

    /// Where time comes from (default [`SystemClock`]); tests use [`ManualClock`](crate::ManualClock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self.ticker = false;
        self
    }
}

impl LedgerBuilder<SigningKey, PseudonymKey> {
    /// Opens the ledger in the directory, creating it (and a genesis entry naming the
    /// signing key) if the directory is empty or missing. A new ledger's directory is
    /// made readable by this user only (mode 0700 on Unix), also one that existed
    /// (empty) if this user owns it: the files in it hold the log, subject ids, secrets
    /// and decision records. A directory another user provided, and an existing
    /// ledger's, are left as they are.
    ///
    /// Opening recomputes the whole hash chain and checks every entry's position and
    /// timestamp, and the encoding of every entry it replays (all of them without a
    /// usable state snapshot; those after it with one: the entries before it are
    /// chained, and their bytes were checked when the snapshot's state was built), but
    /// verifies only the last signature, which covers everything before it through
    /// the chain; [`Ledger::verify`] decodes and checks them all.
    ///
    /// The log is read on the calling thread, while helper threads check it, load the
    /// state and open the vault. With glibc, what the storage engine allocates while
    /// reading comes from the calling thread's allocator arena, which glibc grows far
    /// more cheaply for the program's main thread than for others: a large ledger
    /// opens fastest from the main thread (at 1.25M entries, an open from a newly
    /// started thread made about 110,000 more system calls; BENCHMARKS.md, "Stop 31").
    ///
    /// # Errors
    /// - [`OpenError::NotALedger`]: the directory holds other data (left untouched);
    /// - [`OpenError::WrongSigningKey`], [`OpenError::WrongPseudonymKey`];
    /// - [`OpenError::Integrity`] naming the first bad position; with a
    ///   [`trusted_checkpoint`](LedgerBuilder::trusted_checkpoint), also a log shorter
    ///   than it or not the one it commits to (`Truncated`,
    ///   `InconsistentWithCheckpoint`), whichever of the two it is even when the cut
    ///   took away the rotation to the signing key given (without a checkpoint, or a
    ///   head record showing the cut, that is [`OpenError::WrongSigningKey`]);
    /// - [`OpenError::UntrustedCheckpoint`]: the trusted checkpoint is malformed, is
    ///   another ledger's, or is not signed by the log's current key;
    /// - [`OpenError::UnsupportedFormat`], [`OpenError::CorruptMetadata`], storage failures
    ///   (such as another process holding the ledger open).
    ///
    /// An open refused by a check writes nothing of its own, with three exceptions, all
    /// beneath the ledger: sled's recovery rewrites its data file at every open (before any check;
    /// keep backups); the files of a sled snapshot that a crash left unfinished
    /// (`snap.*.generating`) are removed first, as sled would on its next snapshot;
    /// and opening sled's trees adds the ledger's tree names to a sled database that
    /// lacks them (another program's database whose trees are all unknown is refused
    /// before that, as [`OpenError::NotALedger`]). Once every check has passed, the open
    /// writes its repairs (the vault's damaged slots zeroed, an unfinished erasure's
    /// index records removed, a stale state snapshot destroyed), syncs, and creates a
    /// missing head record (and, for a new ledger, its first entry): a storage failure
    /// in that part is still an [`OpenError::Storage`], with the repairs before it done
    /// (they are the ones the next open would make anyway).
    pub fn open(self) -> Result<Ledger, OpenError> {
        self.open_through(|store| store)
    }

    /// [`LedgerBuilder::open`], with every storage call going through what `wrap`
    /// makes of the store (tests put failures in between).
    pub(crate) fn open_through(
        self,
        wrap: impl FnOnce(Box<dyn Backend>) -> Box<dyn Backend>,
    ) -> Result<Ledger, OpenError> {
        let background = match self.durability {
            Durability::Relaxed => Some(500),
            Durability::Immediate | Durability::GroupCommit => None,
        };
        // A trusted checkpoint cannot be of a ledger not made yet: refused before
        // anything is created.
        if self.trusted_checkpoint.is_some()
            && std::fs::read_dir(&self.path)
                .map_or(true, |_| crate::store::is_unfinished_creation(&self.path))
        {
            return Err(OpenError::UntrustedCheckpoint);
        }
        let store: Box<dyn Backend> = match SledStore::open(&self.path, background)? {
            Opened::Store(s) => wrap(s),
            Opened::Foreign => return Err(OpenError::NotALedger),
        };
        // Before anything opens the vault: its index digest is computed as it is read.
        store.set_vault_digest_key(super::vault_digest::digest_key(&self.pseudonym_key));
        // Written only once the open is known to create a ledger (a refused open writes
        // nothing).
        let needs_marker = match store.meta(FORMAT_KEY)? {
            None => {
                if !store.is_empty()? {
                    // No marker but the ledger's own files: its log (marker included)
                    // was lost, for example dropped by sled's recovery of a damaged
                    // `db`; not another application's data.
                    return Err(emptied_or_foreign(&*store, &self.path)?);
                }
                true
            }
            Some(v) => {
                check_format_marker(&v)?;
                false
            }
        };
        // No entries is a creation (or one that stopped before the genesis entry),
        // unless anything else shows the ledger was used: then its log was emptied, and
        // a new genesis entry would hide that and start another ledger over its files.
        let has_entries = store.entries_from(0).next().is_some();
        if !has_entries {
            if was_used(&*store, &self.path)? {
                return Err(OpenError::Integrity(IntegrityError {
                    position: 0,
                    problem: IntegrityProblem::LogEmptied,
                }));
            }
            // A trusted checkpoint cannot be of a ledger about to be made (its creation
            // cut short before the genesis entry): refused before the marker and genesis.
            if self.trusted_checkpoint.is_some() {
                return Err(OpenError::UntrustedCheckpoint);
            }
            // Being created.
            store.allow_vault_creation();
            if needs_marker {
                store.set_meta(FORMAT_KEY, &[entry::FORMAT_VERSION])?;
            }
            create_genesis(&*store, &self.signing_key, &self.pseudonym_key, &*self.clock)?;
        }
        load(store, self)
    }
}

/// Checks the stored format marker: one byte, the format version this library reads.
///
/// # Errors
/// [`OpenError::UnsupportedFormat`] for another version; [`OpenError::CorruptMetadata`]
/// when the marker is not a single byte.
pub(crate) fn check_format_marker(marker: &[u8]) -> Result<(), OpenError> {
    match marker {
        [entry::FORMAT_VERSION] => Ok(()),
        [found] => Err(OpenError::UnsupportedFormat {
            found: *found,
            supported: entry::FORMAT_VERSION,
        }),
        _ => Err(OpenError::CorruptMetadata("format marker")),
    }
}

/// Whether a store without entries holds anything only a used ledger writes: a state
/// snapshot, the head record, an index record or a decision record.
/// What a store with data but no format marker is: a ledger whose log was emptied
/// (no entries, and the ledger's own files show it was used), or not a ledger.
pub(crate) fn emptied_or_foreign(store: &dyn Backend, dir: &std::path::Path) -> Result<OpenError, OpenError> {
    Ok(
        if store.entries_from(0).next().is_none() && was_used(store, dir)? {
            OpenError::Integrity(IntegrityError {
                position: 0,
                problem: IntegrityProblem::LogEmptied,
            })
        } else {
            OpenError::NotALedger
        },
    )
}

pub(crate) fn was_used(store: &dyn Backend, dir: &std::path::Path) -> Result<bool, OpenError> {
    Ok(crate::store::snapshot_exists(dir)
        || store.snapshot()?.is_some()
        || crate::store::HeadFile::new(dir).read()?.is_some()
        // (Read from the directory's own vault, keyless: the `Inspector`'s store is a
        // copy without one. A missing vault holds no record.)
        || crate::store::vault_holds_index_slot(dir)?
        || store.decisions(&[]).next().is_some())
}

fn create_genesis(
    store: &dyn Backend,
    key: &SigningKey,
    pseudonym_key: &PseudonymKey,
    clock: &dyn Clock,
) -> Result<(), OpenError> {
    let mut ledger_id = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut ledger_id);
    let mut salt = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
    let genesis = Entry {
        seq: 0,
        timestamp: clock.now(),
        actor: Actor::System,
        prev_hash: [0; 32],
        salt,
        body: Body::Genesis {
            ledger_id,
            signing_key: key.verifying_key().to_bytes(),
            pseudonym_key_check: pseudonym_key.check_value(),
        },
    };
    let signed =
        entry::encode_signed_part(&genesis).map_err(|_| OpenError::CorruptMetadata("genesis entry"))?;
    let signature = key.sign_entry(&signed);
    store.append_entry(0, &entry::seal(signed, &signature))?;
    store.sync()?;
    Ok(())
}

fn read_err(e: ReadError) -> OpenError {
    match e {
        ReadError::Storage(s) => OpenError::Storage(s),
        ReadError::Integrity(i) => OpenError::Integrity(i),
        ReadError::OutOfRange => OpenError::CorruptMetadata("log"),
        ReadError::CorruptRecord => OpenError::CorruptMetadata("decision record"),
        // No read at open takes caller input.
        ReadError::Input(_) => OpenError::CorruptMetadata("log"),
    }
}

fn load(store: Box<dyn Backend>, b: LedgerBuilder<SigningKey, PseudonymKey>) -> Result<Ledger, OpenError> {
    let key = &b.pseudonym_key;
    // The genesis entry names the pseudonym key (by a check value): test it before
    // trusting anything keyed with it. Its integrity is checked with the rest below.
    let genesis = store.entry(0)?.and_then(|bytes| entry::decode(&bytes).ok());
    if let Some(stored) = genesis {
        if let Body::Genesis {
            pseudonym_key_check, ..
        } = stored.entry.body
        {
            if pseudonym_key_check != key.check_value() {
                // A damaged genesis entry must not pass for a wrong key: only a genesis
                // entry whose signature holds names the key the ledger was made with.
                let mut check = Replay::new(true);
                if let Some(raw) = store.entries_from(0).next() {
                    check.step(raw?).map_err(read_err)?;
                    check.finish()?;
                }
                return Err(OpenError::WrongPseudonymKey);
            }
        }
    }
    let trusted = b.trusted_checkpoint.is_some();
    let backend: &dyn Backend = &*store;
    // A usable snapshot spares authenticating the index and replaying the state; the
    // log is read and its chain recomputed either way.
    let snapshot = match b.snapshots {
        Snapshots::Off => None,
        Snapshots::OnClose { .. } => store.snapshot()?,
    };
    let had_snapshot = snapshot.is_some();
    let from_snapshot = match snapshot {
        Some(bytes) => load_from_snapshot(backend, key, trusted, bytes).map_err(|e| first_bad(backend, e))?,
        None => FromSnapshot::Unusable,
    };
    let mut used_snapshot = matches!(from_snapshot, FromSnapshot::Loaded(_));
    let Loaded {
        mut state,
        mut index,
        replay,
        tree,
        mut snapshot,
        mut tail_erased,
    } = match from_snapshot {
        FromSnapshot::Loaded(loaded) => *loaded,
        FromSnapshot::Unusable => replay_all(backend, key, trusted).map_err(|e| first_bad(backend, e))?,
        FromSnapshot::OffLog(at) => {
            // The log is read and checked in full first, so that a damaged or tampered
            // entry is reported as such; a log that holds together but is not the one
            // the snapshot was taken from is the error.
            let loaded = replay_all(backend, key, trusted).map_err(|e| first_bad(backend, e))?;
            if loaded.replay.ledger_id == at.ledger_id {
                return Err(diverged(at));
            }
            loaded
        }
    };
    if replay.pseudonym_key_check != key.check_value() {
        return Err(OpenError::WrongPseudonymKey);
    }
    // The head record: the log may not be shorter than was durable (sled drops what
    // follows a damaged part of its log without an error), and the time floor. Checked
    // before the signing key and a trusted checkpoint, which a cut can also fail (a cut
    // back to before a key rotation): a cut is reported as a cut, whichever key opens.
    let head_file = crate::store::HeadFile::new(&b.path);
    let head_record = match head_file.read()? {
        Some(bytes) => Some(super::head::open(&bytes, &b.pseudonym_key, &replay.ledger_id)?),
        None => None,
    };
    if let Some(h) = head_record.filter(|h| replay.len() < h.durable_len) {
        return Err(OpenError::Integrity(IntegrityError {
            position: replay.len(),
            problem: IntegrityProblem::ShorterThanRecorded {
                recorded: h.durable_len,
            },
        }));
    }
    let signing_key = b.signing_key.verifying_key().to_bytes();
    if replay.current_key() != Some(signing_key) {
        // The log cut back to before the rotation to this key (with the head record
        // deleted, which goes unnoticed) names an older key as current. The operator's
        // own checkpoint, signed by the key given here, is then trusted enough to say
        // why the open is refused: a cut is reported as a cut (review h35-d), not as a
        // wrong key, which would send the operator to the older key.
        if let (Some(text), Some(t)) = (&b.trusted_checkpoint, &tree) {
            if let Some(cp) = checkpoint_of(text, Some(signing_key), &replay) {
                check_against(&cp, t)?;
            }
        }
        return Err(OpenError::WrongSigningKey);
    }
    if let (Some(text), Some(t)) = (&b.trusted_checkpoint, &tree) {
        // Only the current key: an older one may have been stolen (and revoked by entries
        // a cut removes), and with it a checkpoint for a shortened log could be forged.
        let cp = checkpoint_of(text, replay.current_key(), &replay).ok_or(OpenError::UntrustedCheckpoint)?;
        check_against(&cp, t)?;
    }
    // The vault opens on first use: make sure it does, so that a broken vault fails open
    // (its repairs are written once every check below has passed).
    store.open_parts()?;
    // The record of the last clean close, if it vouches for this log and the index
    // records the vault holds now (its digest, computed while the vault was read).
    let digest_record = store.meta(super::vault_digest::META_KEY)?;
    let vault_as_closed = match (&digest_record, store.vault_index_digest()?) {
        (Some(bytes), Some(digest)) => super::vault_digest::matches(
            bytes,
            key,
            &super::vault_digest::Covered {
                ledger_id: &replay.ledger_id,
                len: replay.len(),
                head: &replay.head_hash(),
                // The snapshot loaded (only then is the record consulted).
                snapshot: &snapshot.tag,
                digest,
            },
        ),
        _ => false,
    };
    // A record the vault drops at open (a damaged slot, conflicting copies) is lost to
    // a full replay, which then denies the identifiers it linked; a snapshot, taken
    // before the damage, still links them. So is one lost in a way the vault cannot
    // tell from free space (a slot zeroed, slots cut from the end), and one altered
    // with its slot checksum recomputed (its tag fails: a full replay refuses the
    // open). Decisions must not depend on whether a snapshot was there: unless the
    // vault's index records are the ones the last clean close recorded with this log
    // (`vault_digest`), the log is replayed in full (same log, so the checks above
    // hold), and the snapshot destroyed below. After a crash there is no such record
    // for this log: a full replay too, slower, never wrong.
    if used_snapshot && (!vault_as_closed || store.vault_drops_records()?) {
        let fresh = replay_all(backend, key, trusted).map_err(|e| first_bad(backend, e))?;
        state = fresh.state;
        index = fresh.index;
        snapshot = fresh.snapshot;
        tail_erased = fresh.tail_erased;
        used_snapshot = false;
    }
    // Every check before any write: a failed open writes nothing.
    let recorder = crate::records::Recorder::new(b.recording, &*store)?;
    // The time floor: the head record's, or the latest use a decision record shows if
    // later (the head's floor is saved each second, not synced; a kill or a power loss
    // may leave it behind uses whose records sled made durable). The last entry's time
    // is taken below. Each source is authenticated: none can be raised by an edit.
    let recorded_use = crate::records::latest_recorded_use(
        &*store,
        crate::records::TagKey {
            key,
            ledger: &replay.ledger_id,
        },
    )?;
    let time_floor = head_record.map_or(0, |h| h.time_floor).max(recorded_use);
    // Erasures interrupted by a crash are finished below. From a snapshot, only an
    // erasure after it, or an erased subject whose secret is still stored, can be
    // unfinished; then the index is read (and each record authenticated, which may
    // refuse the open) after all: here, before anything is written.
    let unfinished = match index {
        Some(index) => Some(index),
        None if tail_erased || has_erased_secret(&*store, &state)? => Some(load_index(&*store, key)?),
        None => None,
    };
    // Every check has passed: the vault's repairs (damaged slots and extra copies zeroed,
    // a partial last slot cut) are written now, before anything else writes to it.
    store.ready()?;
    if let Some(index) = unfinished {
        remove_leftovers(&*store, &state, &index)?;
        // Nor does the state in memory link them any more.
        state.forget_erased();
    }
    // A snapshot taken before an erasure may hold the erased subject's lookups; with
    // snapshots off, none is kept. One that could not be used (damaged, say by a kill
    // in the middle of its destruction by an erasure, which zeroes it from the start)
    // may still hold lookups in its undamaged part: destroyed too, rather than left
    // until a close writes a new one over it.
    if tail_erased || b.snapshots == Snapshots::Off || (had_snapshot && !used_snapshot) {
        store.destroy_snapshot()?;
        snapshot = SnapshotOnDisk::default();
    }

    // What sled presents may not all be synced (the last writes of a killed process):
    // a log longer than the head record says was durable is synced once before all of
    // it counts as durable (after a clean close the record holds the whole log).
    let durable_at_open = match head_record {
        Some(h) if h.durable_len >= replay.len() => h.durable_len,
        // Behind the log (a kill after appends), or none: one sync, and every entry
        // counts (a checkpoint never covers less than one signed before).
        _ => {
            store.sync()?;
            replay.len()
        }
    };

    let head = replay.head_hash();
    let len = replay.len();
    let last_ts = Timestamp::from_millis(replay.last_timestamp());
    let ledger_id = replay.ledger_id;
    let ledger = Ledger {
        inner: Arc::new(Inner {
            store,
            state: RwLock::new(state),
            writer: Mutex::new(Writer {
                next_seq: len,
                last_hash: head,
                key: b.signing_key,
                key_from: replay.keys.last().map_or(0, |k| k.from),
                failed: false,
                new_purposes: Vec::new(),
            }),
            stage: Mutex::new(Stage { failed: false }),
            group: GroupSync {
                state: Mutex::new(SyncState {
                    durable: durable_at_open,
                    syncing: false,
                    failed: false,
                }),
                done: Condvar::new(),
                written: AtomicU64::new(len),
            },
            ticker: if b.ticker {
                Ticker::start(Arc::clone(&b.clock))
            } else {
                None
            },
            clock: b.clock,
            high_water: AtomicU64::new(last_ts.as_millis().max(time_floor)),
            head: Arc::new(super::head::HeadWriter::new(
                head_file,
                b.pseudonym_key.clone(),
                ledger_id,
                head_record,
                durable_at_open,
            )),
            combiner: super::combine::Combiner::default(),
            pseudonym_key: b.pseudonym_key,
            durability: b.durability,
            ledger_id,
            tree: Mutex::new(tree),
            recorder,
            snapshots: b.snapshots,
            snapshot_on_disk: Mutex::new(snapshot),
            vault_digest_at_open: digest_record,
            snapshot_outlives_erasure: std::sync::atomic::AtomicBool::new(false),
            erasure_unfinished: std::sync::atomic::AtomicBool::new(false),
            revocations: Mutex::new(replay.revoked.clone()),
            signers: Mutex::new(replay.keys.iter().map(|k| k.key).collect()),
            // The open read the whole log: receipts go on from there.
            receipt_keys: Mutex::new(Some(replay.key_history())),
            erasing: Mutex::new(()),
            syncing: Mutex::new(()),
            after_failure: b.after_failure,
            failed: std::sync::atomic::AtomicBool::new(false),
            #[cfg(test)]
            test_hooks: super::TestHooks::default(),
        }),
    };
    if let Some(ticker) = &ledger.inner.ticker {
        // Holds the head writer only: no part of the ledger, so that the ledger's close
        // never runs on the ticker's thread.
        let weak = Arc::downgrade(&ledger.inner.head);
        ticker.set_duty(move || {
            if let Some(head) = weak.upgrade() {
                head.record_durable_if_behind();
            }
        });
    }
    // A ledger without a head record (new, or written before there was one) gets one,
    // both slots, so that a torn write of one always leaves the other.
    if head_record.is_none() {
        let floor = ledger.inner.high_water.load(std::sync::atomic::Ordering::Acquire);
        if let Err(e) = ledger.inner.head.create(floor) {
            // The open fails: the ledger built here is dropped without its close (no
            // snapshot, no flush of anything).
            if let Ok(mut w) = ledger.inner.writer.lock() {
                w.failed = true;
            }
            return Err(e.into());
        }
    }
    Ok(ledger)
}

/// What loading the log produced.
struct Loaded {
    state: State,
    /// The authenticated index, when it was read.
    index: Option<IndexMap>,
    replay: Replay,
    tree: Option<crate::merkle::MerkleTree>,
    /// The snapshot loaded (none: a full replay).
    snapshot: SnapshotOnDisk,
    /// Whether an entry after the snapshot erased a subject.
    tail_erased: bool,
}

/// Replays the whole log on two threads. This one authenticates the second half of
/// the index, then reads the log and checks it (positions, encodings, the chain). The
/// other authenticates the first half, then applies the checked entries to the state as
/// they arrive; they wait in a short queue until the whole index is ready.
/// An open that found a bad signature where it checks one (the last entry, whose
/// signature with the hash chain pins every entry before it) reports the first bad
/// position instead, as `verify` names it: an edited entry followed by a re-linked
/// chain is found at the end, but is the edited entry's fault. Only on that failure
/// does the open check every signature up to there.
fn first_bad(store: &dyn Backend, e: OpenError) -> OpenError {
    match &e {
        OpenError::Integrity(found) if matches!(found.problem, IntegrityProblem::BadSignature) => {
            match super::verify_store_upto(store, found.position.saturating_add(1)) {
                Err(ReadError::Integrity(first)) if first.position < found.position => {
                    OpenError::Integrity(first)
                }
                _ => e,
            }
        }
        _ => e,
    }
}

fn replay_all(backend: &dyn Backend, key: &PseudonymKey, trusted: bool) -> Result<Loaded, OpenError> {
    let (walked, built) = std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<Entry>>(QUEUED_BATCHES);
        let (half_tx, half_rx) = sync_channel::<Result<IndexMap, OpenError>>(1);
        let builder = match spawn_scoped(s, "consent-ledger-open", move || {
            build_state(backend, key, half_rx, rx)
        }) {
            Ok(builder) => builder,
            Err(e) => return (Ok(None), Err(no_thread(e))),
        };
        let half = load_index_part(backend, key, 1, 2);
        let half_ok = half.is_ok();
        // If the builder is gone, its own error is the one to report.
        let _ = half_tx.send(half);
        let walked = if half_ok {
            walk_log(backend, trusted, tx, 0)
        } else {
            Ok(None)
        };
        (walked, joined(builder))
    });
    // The index is checked first, as it always was: its errors come before the log's.
    let (index, state) = built?;
    let Some((replay, tree)) = walked? else {
        return Err(OpenError::CorruptMetadata("log"));
    };
    Ok(Loaded {
        state,
        index: Some(index),
        replay,
        tree,
        snapshot: SnapshotOnDisk::default(),
        tail_erased: false,
    })
}

/// The result of a helper thread of open (see [`spawn_scoped`]); a panic there is
/// raised again here.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, T>) -> T {
    handle
        .join()
        .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
}

/// The error of an open that could not start the helper thread it needs: the operating
/// system refused one (too many threads, or no memory for a stack).
fn no_thread(e: std::io::Error) -> OpenError {
    OpenError::Storage(StorageError::new("starting a thread to open the ledger", e))
}

/// What a state snapshot gave open.
enum FromSnapshot {
    Loaded(Box<Loaded>),
    /// Damaged, not written with this pseudonym key, or of another ledger: replay the
    /// log as without one.
    Unusable,
    /// Authentic (its tag verifies), and the log reaches its position but does not pass
    /// through the entry it names there: unless the log turns out to be damaged, or of
    /// another ledger, it is not the log the snapshot was taken from.
    OffLog(Position),
}

/// The error for an authentic snapshot of this ledger whose log has been replaced
/// before its position.
fn diverged(at: Position) -> OpenError {
    OpenError::Integrity(IntegrityError {
        position: at.len.saturating_sub(1),
        problem: IntegrityProblem::DivergesFromSnapshot { snapshot_len: at.len },
    })
}

/// Reads and checks the whole log on this thread while another checks and decodes the
/// snapshot and applies the entries after it. `Unusable` (replay everything instead)
/// when the snapshot is damaged, not written with this pseudonym key, or of another
/// ledger; an error when the log is shorter than an authentic snapshot of this ledger;
/// `OffLog` when its chain does not pass through the snapshot's head.
fn load_from_snapshot(
    backend: &dyn Backend,
    key: &PseudonymKey,
    trusted: bool,
    bytes: Vec<u8>,
) -> Result<FromSnapshot, OpenError> {
    // Where it claims to be taken, unchecked: only to skip sending the builder the
    // entries before it. The builder checks it again once the tag holds.
    let (Some(claimed), Some(snapshot_tag)) = (
        crate::state::snapshot::peek_position(&bytes),
        crate::state::snapshot::peek_tag(&bytes),
    ) else {
        return Ok(FromSnapshot::Unusable);
    };
    let (walked, built, vault) = std::thread::scope(|s| {
        let (tx, rx) = sync_channel::<Vec<Entry>>(QUEUED_BATCHES);
        // The vault is needed later in any case, and opening it reads and checks every
        // slot: on a third thread, beside the log reading and the snapshot decoding (a
        // tail that collects waits for it).
        // Without a thread for it, it is opened here once the log is read.
        let vault = spawn_scoped(s, VAULT_OPENER, || backend.open_parts()).ok();
        let builder = spawn_scoped(
            s,
            "consent-ledger-open",
            move || match crate::state::snapshot::open(&bytes, key).filter(|(at, _)| *at == claimed) {
                Some((at, state)) => {
                    drop(bytes);
                    apply_tail(backend, key, at, state, rx)
                }
                None => Ok(Tail::Unusable),
            },
        );
        let builder = match builder {
            Ok(builder) => builder,
            Err(e) => return (Ok(None), Err(no_thread(e)), Ok(())),
        };
        let walked = walk_log(backend, trusted, tx, claimed.len);
        let built = joined(builder);
        let vault = match vault {
            Some(vault) => joined(vault),
            None => backend.open_parts(),
        };
        (walked, built, vault)
    });
    vault?;
    let (state, index, tail_erased) = match built? {
        Tail::Applied(applied) => *applied,
        Tail::Unusable => return Ok(FromSnapshot::Unusable),
        Tail::OffLog => return Ok(FromSnapshot::OffLog(claimed)),
    };
    let Some((replay, tree)) = walked? else {
        return Ok(FromSnapshot::Unusable);
    };
    if replay.ledger_id == claimed.ledger_id && claimed.len > replay.len() {
        // An authentic snapshot of this ledger, taken after a sync, at a position the
        // log no longer reaches: durable entries are gone. Replaying the shorter log
        // would undo them silently (a withdrawal, say), so this is an error.
        return Err(OpenError::Integrity(IntegrityError {
            position: replay.len(),
            problem: IntegrityProblem::ShorterThanSnapshot {
                snapshot_len: claimed.len,
            },
        }));
    }
    if replay.ledger_id != claimed.ledger_id || state.len != replay.len() {
        return Ok(FromSnapshot::Unusable);
    }
    if claimed.len == replay.len() && replay.head_hash() != claimed.head {
        // The whole log was read and holds together (a damaged one is an error above).
        return Err(diverged(claimed));
    }
    Ok(FromSnapshot::Loaded(Box::new(Loaded {
        state,
        index,
        replay,
        tree,
        snapshot: SnapshotOnDisk {
            len: claimed.len,
            tag: snapshot_tag,
        },
        tail_erased,
    })))
}

/// What applying the entries after a snapshot gave.
enum Tail {
    /// The state with the tail applied, the index if it had to be read, and whether the
    /// tail erases a subject.
    Applied(Box<(State, Option<IndexMap>, bool)>),
    /// The snapshot's tag or body did not hold.
    Unusable,
    /// The entry right after the snapshot's position does not link to its head.
    OffLog,
}

/// Applies the entries after the snapshot's position to its state, reading the index
/// only if one of them collects an identifier. `OffLog` when the entry right after the
/// snapshot does not link to the head it names.
fn apply_tail(
    store: &dyn Backend,
    key: &PseudonymKey,
    at: Position,
    mut state: State,
    rx: Receiver<Vec<Entry>>,
) -> Result<Tail, OpenError> {
    let mut index: Option<IndexMap> = None;
    let mut erased = false;
    for batch in rx {
        for entry in batch.iter().filter(|e| e.seq >= at.len) {
            if entry.seq == at.len && entry.prev_hash != at.head {
                return Ok(Tail::OffLog);
            }
            let lookup = match (&entry.body, &index) {
                (Body::Collected { .. }, Some(index)) => entry_lookup(index, entry),
                (Body::Collected { .. }, None) => {
                    let loaded = load_index(store, key)?;
                    let lookup = entry_lookup(&loaded, entry);
                    index = Some(loaded);
                    lookup
                }
                (Body::Erased { .. }, _) => {
                    erased = true;
                    None
                }
                _ => None,
            };
            state.apply(entry, lookup);
        }
    }
    Ok(Tail::Applied(Box::new((state, index, erased))))
}

/// Whether an erased subject's secret is still stored (an erasure that did not finish).
fn has_erased_secret(store: &dyn Backend, state: &State) -> Result<bool, StorageError> {
    for subject in state.erased_subjects() {
        if store.secret(subject.as_str())?.is_some() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Entries handed on at a time: read ones to the log's checker, checked ones to the
/// state builder.
const BATCH_ENTRIES: usize = 256;
/// Batches the log's reading may be ahead of its checking, and the checking ahead of
/// the state builder.
const QUEUED_BATCHES: usize = 16;

/// Reads the whole log in order and checks it (only the last signature), handing the
/// checked entries from position `send_from` on to the state builder. `None` when the
/// builder stopped taking them (its own error is then the one to report).
///
/// A helper thread checks the entries while this one reads them from the store, in
/// batches: reading a large log from sled takes about twice the CPU that checking it
/// does (2.7 s against 1.2 s for 1.25M entries; BENCHMARKS.md, "Stop 21"). The reading
/// stays on the calling thread because what sled allocates while reading (its page
/// cache, kept until the ledger is dropped) then comes from the calling thread's
/// allocator arena: with glibc, a program's main thread grows its arena with `brk`,
/// 128 KiB at a time, where a thread started for the purpose grows a fresh arena a
/// page or so at a time with `mprotect`, about 126,000 calls for a 1.25M-entry log
/// (BENCHMARKS.md, "Stop 31").
/// Without the helper (the operating system refused a thread), this thread does both.
fn walk_log(
    store: &dyn Backend,
    trusted: bool,
    tx: SyncSender<Vec<Entry>>,
    send_from: u64,
) -> Result<Option<(Replay, Option<crate::merkle::MerkleTree>)>, OpenError> {
    std::thread::scope(|s| {
        let (raw_tx, raw_rx) = sync_channel::<Vec<Result<RawEntry, StorageError>>>(QUEUED_BATCHES);
        // (A clone: if the thread is refused, its work is dropped unrun, and `tx` is
        // still needed here.)
        let helper_tx = tx.clone();
        #[cfg(test)]
        let counts = tests::counts();
        let checker = spawn_scoped(s, LOG_CHECKER, move || {
            #[cfg(test)]
            tests::counted_on(counts);
            check_log(raw_rx.into_iter().flatten(), trusted, helper_tx, send_from)
        });
        match checker {
            Ok(checker) => {
                // The state builder stops waiting once the helper's sender is gone.
                drop(tx);
                // (Once the checker stops early, the next send here fails and the
                // reading stops too.)
                read_log(store, raw_tx);
                joined(checker)
            }
            Err(_) => check_log(store.entries_from(0), trusted, tx, send_from),
        }
    })
}

/// The name of [`walk_log`]'s helper thread.
pub(super) const LOG_CHECKER: &str = "consent-ledger-check";

/// The name of the thread that opens the vault while the log is walked.
const VAULT_OPENER: &str = "consent-ledger-vault";

/// Reads the whole log in batches of [`BATCH_ENTRIES`] into `to`, up to and including
/// the first error, until the receiver hangs up. `to` is dropped on return, which ends
/// the receiver's iteration (so that the checker finishes before it is joined).
fn read_log(store: &dyn Backend, to: SyncSender<Vec<Result<RawEntry, StorageError>>>) {
    let mut batch = Vec::with_capacity(BATCH_ENTRIES);
    for item in store.entries_from(0) {
        let failed = item.is_err();
        batch.push(item);
        if failed {
            break;
        }
        if batch.len() == BATCH_ENTRIES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ENTRIES));
            if to.send(full).is_err() {
                return;
            }
        }
    }
    let _ = to.send(batch);
}

/// [`walk_log`]'s checking, over the log's entries as read from the store.
fn check_log(
    entries: impl Iterator<Item = Result<RawEntry, StorageError>>,
    trusted: bool,
    tx: SyncSender<Vec<Entry>>,
    send_from: u64,
) -> Result<Option<(Replay, Option<crate::merkle::MerkleTree>)>, OpenError> {
    #[cfg(test)]
    tests::count_check();
    let mut replay = Replay::new(false);
    let mut tree = trusted.then(crate::merkle::MerkleTree::new);
    let mut batch = Vec::with_capacity(BATCH_ENTRIES);
    // Where lanes are faster (x86-64), entries before the snapshot wait to be hashed
    // together, sixteen at a time in lanes, then are stepped in order; elsewhere each
    // is stepped (and hashed by `sha2`) as it is read.
    let in_lanes = crate::lanes::worthwhile();
    let mut chained: Vec<RawEntry> = Vec::with_capacity(crate::lanes::LANES);
    let flush_chained = |replay: &mut Replay, chained: &mut Vec<RawEntry>| -> Result<(), OpenError> {
        if chained.is_empty() {
            return Ok(());
        }
        let bytes: Vec<&[u8]> = chained.iter().map(|raw| &raw.1[..]).collect();
        let hashes = crate::lanes::sha256_each_in(&bytes, true);
        drop(bytes);
        for (raw, hash) in chained.drain(..).zip(hashes) {
            replay.step_chained_hashed(raw, hash).map_err(read_err)?;
            #[cfg(test)]
            tests::count_chained();
        }
        Ok(())
    };
    for raw in entries {
        let raw = match raw {
            Ok(raw) => raw,
            Err(e) => {
                // The entries read before it are checked first, as one by one.
                flush_chained(&mut replay, &mut chained)?;
                return Err(e.into());
            }
        };
        if let Some(t) = tree.as_mut() {
            t.push(crate::merkle::leaf_hash(&raw.1));
        }
        if matches!(raw.0, Ok(seq) if seq < send_from) {
            // Before the snapshot: its state is loaded, only the chain is needed.
            if !in_lanes {
                replay.step_chained(raw).map_err(read_err)?;
                #[cfg(test)]
                tests::count_chained();
                continue;
            }
            chained.push(raw);
            if chained.len() == crate::lanes::LANES {
                flush_chained(&mut replay, &mut chained)?;
            }
            continue;
        }
        flush_chained(&mut replay, &mut chained)?;
        // (An entry at a position before `send_from` went through the branch above.)
        batch.push(replay.step(raw).map_err(read_err)?.entry);
        if batch.len() == BATCH_ENTRIES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ENTRIES));
            if tx.send(full).is_err() {
                return Ok(None);
            }
        }
    }
    flush_chained(&mut replay, &mut chained)?;
    if tx.send(batch).is_err() {
        return Ok(None);
    }
    replay.finish()?;
    Ok(Some((replay, tree)))
}

/// Authenticates the first half of the index and takes the second from the thread
/// that walks the log, then rebuilds the state from the checked entries as they arrive
/// (until the log's checker hangs up).
fn build_state(
    store: &dyn Backend,
    key: &PseudonymKey,
    second_half: Receiver<Result<IndexMap, OpenError>>,
    rx: Receiver<Vec<Entry>>,
) -> Result<(IndexMap, State), OpenError> {
    let mut index = load_index_part(store, key, 0, 2)?;
    // The later half's records win, as they would in one walk over all slots.
    let rest = second_half
        .recv()
        .map_err(|_| OpenError::CorruptMetadata("index record"))??;
    index.extend(rest);
    let mut state = State::default();
    // Most subjects hold at least one identifier: size the tables once.
    state.reserve(index.len(), index.len());
    for batch in rx {
        for entry in batch {
            state.apply(&entry, entry_lookup(&index, &entry));
        }
    }
    Ok((index, state))
}

/// Index records by the subject-keyed pseudonym in the entries: (lookup pseudonym,
/// subject). Keys are HMAC outputs under per-subject secrets (uniform, not chosen by
/// anyone), so their first eight bytes serve as the hash.
pub(super) type IndexMap = HashMap<PseudonymKey32, (Pseudonym, SubjectId), BuildHasherDefault<PrefixHasher>>;

#[derive(PartialEq, Eq)]
pub(super) struct PseudonymKey32([u8; 32]);

impl Hash for PseudonymKey32 {
    fn hash<H: Hasher>(&self, state: &mut H) {
        let [a, b, c, d, e, f, g, h, ..] = self.0;
        state.write_u64(u64::from_le_bytes([a, b, c, d, e, f, g, h]));
    }
}

/// Passes a `write_u64` through as the hash.
#[derive(Default)]
pub(super) struct PrefixHasher(u64);

impl Hasher for PrefixHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used (above); fold anything else in anyway.
        for b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 ^= n;
    }
}

/// Removes what a crash left behind, with every index record read (`index`):
/// - an erasure whose entry was written but whose removals did not finish: the erased
///   subject's index records and secret;
/// - a collection whose index record was written but whose entry was not: a record no
///   entry names. Inert, but it links an identifier to its subject, and erasing the
///   subject later would not find it (erasure removes the records of the collections
///   the log holds; review r140 found one outliving an erasure for as long as opens
///   used a snapshot). A crash makes the next open replay the whole log, so such a
///   record is gone before that subject can be erased.
///
/// A record stays exactly when the state holds its lookup for its subject.
fn remove_leftovers(store: &dyn Backend, state: &State, index: &IndexMap) -> Result<(), StorageError> {
    let mut changed = false;
    for (lookup, subject) in index.values() {
        if state.ident_subject(lookup) != Some(subject) {
            store.remove_index(&lookup.0)?;
            changed = true;
        }
    }
    for subject in state.erased_subjects() {
        if store.secret(subject.as_str())?.is_some() {
            store.remove_secret(subject.as_str())?;
            changed = true;
        }
    }
    if changed {
        store.sync()?;
    }
    Ok(())
}

/// The checkpoint `text`, if `key` signed it for this ledger.
fn checkpoint_of(
    text: &str,
    key: Option<[u8; 32]>,
    replay: &Replay,
) -> Option<crate::checkpoint::SignedCheckpoint> {
    let key = crate::signing::VerifyingKey::from_bytes(&key?).ok()?;
    let cp = crate::checkpoint::SignedCheckpoint::verify(text, &key).ok()?;
    (cp.origin() == crate::checkpoint::origin_of(&replay.ledger_id)).then_some(cp)
}

/// Refuses a log that the trusted checkpoint `cp` shows cut short or changed.
fn check_against(
    cp: &crate::checkpoint::SignedCheckpoint,
    tree: &crate::merkle::MerkleTree,
) -> Result<(), OpenError> {
    if tree.len() < cp.size() {
        return Err(IntegrityError {
            position: tree.len(),
            problem: IntegrityProblem::Truncated {
                checkpoint_size: cp.size(),
            },
        }
        .into());
    }
    // The root pins every entry it covers, the revocation entries included; its
    // `revoked` lines are not compared (one signed before they existed has none, and
    // only the current key's holder could sign lines that disagree with the root).
    if tree.root_at(cp.size()) != Some(cp.root()) {
        return Err(IntegrityError {
            position: cp.size().saturating_sub(1),
            problem: IntegrityProblem::InconsistentWithCheckpoint,
        }
        .into());
    }
    Ok(())
}

/// Reads and authenticates the index records: subject-keyed pseudonym -> (lookup
/// pseudonym, subject). Each is tagged with the pseudonym key, so a tampered index
/// cannot point an identifier at another subject's collection.
pub(super) fn load_index(store: &dyn Backend, key: &PseudonymKey) -> Result<IndexMap, OpenError> {
    load_index_part(store, key, 0, 1)
}

/// [`load_index`] for part `part` of `parts` of the stored index records.
/// An index record read under `lookup`: decoded canonically and its tag checked (it
/// binds the lookup, the subject, the kind and the subject pseudonym under the
/// application's key), or `None`.
pub(crate) fn open_index_record(key: &PseudonymKey, lookup: &Pseudonym, bytes: &[u8]) -> Option<IndexRecord> {
    let rec = IndexRecord::decode(bytes)?;
    let code = [rec.kind.code()];
    let parts = IndexRecord::tagged_parts(lookup, &rec.subject, &code, &rec.pseudonym);
    key.verify_index_tag(&parts, &rec.tag).then_some(rec)
}

fn load_index_part(
    store: &dyn Backend,
    key: &PseudonymKey,
    part: u64,
    parts: u64,
) -> Result<IndexMap, OpenError> {
    let mut index = IndexMap::default();
    for item in store.index_records(part, parts) {
        let (k, v) = item?;
        let lookup = <[u8; 32]>::try_from(&*k)
            .map(Pseudonym)
            .map_err(|_| OpenError::CorruptMetadata("index key"))?;
        let rec = open_index_record(key, &lookup, &v).ok_or(OpenError::CorruptMetadata("index record"))?;
        index.insert(PseudonymKey32(rec.pseudonym.0), (lookup, rec.subject));
    }
    Ok(index)
}

/// The lookup pseudonym to apply `entry` with: a collection entry's, if its index
/// record is still there (it is gone after erasure); `None` for other entries.
pub(super) fn entry_lookup(index: &IndexMap, entry: &Entry) -> Option<Pseudonym> {
    match &entry.body {
        Body::Collected {
            subject, pseudonym, ..
        } => index_lookup(index, subject, pseudonym),
        _ => None,
    }
}

/// The lookup pseudonym of a collection entry's identifier, if its index record is
/// still there (it is gone after erasure).
fn index_lookup(index: &IndexMap, subject: &SubjectId, pseudonym: &Pseudonym) -> Option<Pseudonym> {
    index
        .get(&PseudonymKey32(pseudonym.0))
        .filter(|(_, s)| s == subject)
        .map(|(lookup, _)| *lookup)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use crate::*;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// What this thread's opens did, counted for the tests: see [`COUNTS`].
    #[derive(Debug, Default)]
    pub(super) struct Counts {
        /// Entries stepped through the chain check alone (those before a snapshot's
        /// position).
        chained: AtomicU64,
        /// Runs of `check_log` on the helper thread [`LOG_CHECKER`](super::LOG_CHECKER).
        checked_on_helper: AtomicU64,
    }

    thread_local! {
        /// This thread's [`Counts`]. `check_log` runs on a helper thread, which counts
        /// into the counts of the thread that started it (see [`counted_on`]).
        pub(super) static COUNTS: std::cell::RefCell<Arc<Counts>> = std::cell::RefCell::default();
    }

    /// Adds one to this thread's count of entries stepped through the chain alone.
    pub(super) fn count_chained() {
        COUNTS.with(|n| n.borrow().chained.fetch_add(1, Ordering::Relaxed));
    }

    /// Counts a run of `check_log` if this thread is the log-checking helper.
    pub(super) fn count_check() {
        if std::thread::current().name() == Some(super::LOG_CHECKER) {
            COUNTS.with(|n| n.borrow().checked_on_helper.fetch_add(1, Ordering::Relaxed));
        }
    }

    /// This thread's [`Counts`], for a helper thread to count into.
    pub(super) fn counts() -> Arc<Counts> {
        COUNTS.with(|n| Arc::clone(&n.borrow()))
    }

    /// Makes `counts` this thread's [`COUNTS`] (on a helper thread, its starter's).
    pub(super) fn counted_on(counts: Arc<Counts>) {
        COUNTS.with(|n| *n.borrow_mut() = counts);
    }

    /// This thread's count of entries stepped through the chain alone, reset to 0.
    fn take_chained() -> u64 {
        COUNTS.with(|n| n.borrow().chained.swap(0, Ordering::Relaxed))
    }

    /// Whether `check_log` ran on the helper thread since the last call (reset).
    fn took_helper() -> bool {
        COUNTS.with(|n| n.borrow().checked_on_helper.swap(0, Ordering::Relaxed)) > 0
    }

    /// Opens the ledger in `dir` under the tests' keys, writing a snapshot at each close
    /// if `snapshots`.
    fn open_in(dir: &std::path::Path, snapshots: bool) -> Result<Ledger, OpenError> {
        Ledger::builder(dir)
            .signing_key(SigningKey::from_bytes(&[1; 32]))
            .pseudonym_key(PseudonymKey::from_bytes([2; 32]))
            .durability(Durability::Relaxed)
            .snapshots(if snapshots {
                Snapshots::OnClose { min_new_entries: 1 }
            } else {
                Snapshots::Off
            })
            .open()
    }

    /// Flips the last byte (of the signature) of the stored entry at `at`: the next
    /// entry no longer links to it.
    fn change_entry(dir: &std::path::Path, at: u64) {
        let db = sled::Config::new().path(dir).open().unwrap();
        let tree = db.open_tree("entries").unwrap();
        let mut bytes = tree.get(at.to_be_bytes()).unwrap().unwrap().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        tree.insert(at.to_be_bytes(), bytes).unwrap();
        db.flush().unwrap();
    }

    /// Opening from a snapshot hashes the entries before it sixteen at a time in lanes
    /// where the CPU has no SHA instructions, and steps them one at a time
    /// ([`Replay::step_chained`](super::Replay::step_chained)) elsewhere; a helper thread
    /// reads the log, or the checking thread itself if none can be started. Every way
    /// gives the same ledger, and the same error at the same position for an entry
    /// changed before the snapshot's position.
    #[test]
    fn an_open_from_a_snapshot_is_the_same_with_entry_hashes_in_lanes_or_not() {
        let dir = tempfile::tempdir().unwrap();
        let open = || open_in(dir.path(), true);
        let ledger = open().unwrap();
        // 40 entries: two full groups of sixteen and a partial one.
        for i in 0..39 {
            let s = SubjectId::new(&format!("user-{i}")).unwrap();
            let phone = Identifier::<Security>::phone(&format!("+1555010{i:04}")).unwrap();
            ledger.collect(&s, &phone, RecipientScope::first_party()).unwrap();
        }
        ledger.sync().unwrap();
        drop(ledger);
        // The ledger, and how many entries were checked for the chain alone: all of
        // them when the snapshot was loaded. (Checked that the helper thread checked
        // the log, or that it did not when refused, and set aside.)
        let opened = |on_helper: bool| {
            take_chained();
            took_helper();
            let opened = open()
                .map(|l| (l.len(), l.checkpoint().unwrap().root()))
                .map_err(|e| e.to_string());
            assert_eq!(took_helper(), on_helper);
            (opened, take_chained())
        };
        let outcome = |lanes: bool| {
            crate::lanes::force(Some(lanes));
            let opened = opened(true);
            crate::lanes::force(None);
            opened
        };
        let without_helper = || crate::threads::with_thread_refused(super::LOG_CHECKER, || opened(false));
        let (in_lanes, one_by_one) = (outcome(true), outcome(false));
        assert_eq!(in_lanes.0.as_ref().unwrap().0, 40);
        assert_eq!(in_lanes.1, 40, "opened from the snapshot");
        assert_eq!(in_lanes, one_by_one);
        assert_eq!(in_lanes, without_helper());
        // An entry before the snapshot's position changed: its successor no longer links.
        change_entry(dir.path(), 17);
        let (in_lanes, one_by_one) = (outcome(true), outcome(false));
        let error = in_lanes.0.as_ref().unwrap_err();
        assert!(error.contains("17"), "{error}");
        assert_eq!(in_lanes, one_by_one);
        assert_eq!(in_lanes, without_helper());
    }

    /// A checker that stops early on a long log, while the reading waits on a full
    /// channel, neither hangs nor changes the error; with and without a snapshot (from
    /// review r139), and for an entry changed after the snapshot's position (in the
    /// tail the checker hands on to be applied: from stop 32's review). Also without
    /// the vault's thread.
    #[test]
    fn an_early_stop_on_a_long_log_is_the_same_with_or_without_the_checker() {
        for snapshots in [true, false] {
            let dir = tempfile::tempdir().unwrap();
            let open = || open_in(dir.path(), snapshots);
            let grants = |ledger: &Ledger, from: usize, to: usize| {
                for i in from..to {
                    let s = SubjectId::new(&format!("user-{i}")).unwrap();
                    ledger
                        .grant::<crate::Advertising>(&s, RecipientScope::all_partners(), None)
                        .unwrap();
                }
                ledger.sync().unwrap();
            };
            grants(&open().unwrap(), 0, 6000);
            // 3000 more, past the snapshot written at the last close (none is written
            // at this one: too few new entries).
            let tail = Ledger::builder(dir.path())
                .signing_key(SigningKey::from_bytes(&[1; 32]))
                .pseudonym_key(PseudonymKey::from_bytes([2; 32]))
                .durability(Durability::Relaxed)
                .snapshots(Snapshots::OnClose {
                    min_new_entries: 1_000_000,
                })
                .open()
                .unwrap();
            grants(&tail, 6000, 9000);
            drop(tail);
            let opened = || {
                took_helper();
                let opened = open().map(|l| l.len()).map_err(|e| e.to_string());
                assert!(took_helper(), "the helper checked the log");
                opened
            };
            let alone = || {
                crate::threads::with_thread_refused(super::LOG_CHECKER, || {
                    crate::threads::with_thread_refused(super::VAULT_OPENER, || {
                        open().map(|l| l.len()).map_err(|e| e.to_string())
                    })
                })
            };
            take_chained();
            assert_eq!(opened(), alone());
            assert_eq!(take_chained() > 0, snapshots, "opened from the snapshot");
            for at in [7000u64, 5000, 17] {
                change_entry(dir.path(), at);
                let threaded = opened();
                assert!(
                    threaded.as_ref().is_err_and(|e| e.contains(&at.to_string())),
                    "{threaded:?}"
                );
                assert_eq!(threaded, alone());
            }
        }
    }
}
