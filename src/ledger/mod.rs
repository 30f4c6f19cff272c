//! The ledger: recording consent changes, deciding uses, reading history, verifying.

mod batch;
mod combine;
mod export;
#[cfg(test)]
mod faults;
pub(crate) mod head;
mod impact;
mod lifecycle;
mod merkle_log;
pub(crate) mod open;
mod past;
pub(crate) mod replay;
mod ticker;
pub(crate) mod vault_digest;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};

use zeroize::Zeroizing;

pub use impact::{Hypothesis, ImpactQuery, ImpactReport, Unlawful, UnlawfulUse, UntrustedUse};
pub use lifecycle::ExpiringConsent;
pub use open::{LedgerBuilder, NoPseudonymKey, NoSigningKey};
pub use past::At;
pub use replay::UntrustedRange;

use crate::decision::{Denied, Use};
use crate::entry::{self, Actor, Body, Entry, Hash, IndexRecord};
use crate::error::{IntegrityError, IntegrityProblem, ReadError, StorageError, WriteError};
use crate::identifier::{Identifier, IdentifierKind, Pseudonym, PseudonymKey, SubjectSecret};
use crate::purpose::{is_valid_purpose_id, LegalBasis, Purpose};
use crate::recipient::{Recipient, RecipientScope};
use crate::signing::{SigningKey, VerifyingKey};
use crate::state::State;
use crate::store::Backend;
use crate::subject::SubjectId;
use crate::time::{Clock, Timestamp};

/// What an acknowledged append promises about crashes.
///
/// | setting | process crash (kill -9) | power loss / OS crash |
/// |---|---|---|
/// | `Immediate` (default) | nothing acknowledged is lost | nothing acknowledged is lost (as far as the drive honours fsync) |
/// | `GroupCommit` | nothing acknowledged is lost | nothing acknowledged is lost |
/// | `Relaxed` | changes from the last ~500 ms may be lost | changes from the last ~500 ms may be lost, and collections since the last [`Ledger::sync`] may lose their effect (below) |
///
/// Lost changes are always a suffix: the log that survives is a valid prefix. Under
/// `Relaxed`, sled's background flush makes the log durable every 500 ms, but the
/// vault (each identifier's index record, each subject's secret) is synced only by
/// [`Ledger::sync`], by closing, or at the first sync after an open: after a power
/// loss, a collection since then may survive in the log without its index record. Its
/// identifier is then unknown and its uses are denied (fail closed), though later
/// entries survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Durability {
    /// Every append is flushed and fsynced before it returns. Appends are serialized,
    /// so throughput is one fsync per append.
    #[default]
    Immediate,
    /// Appends from concurrent threads share fsyncs: each append returns once a sync
    /// that started after it was written has finished. Same promise as `Immediate`,
    /// far higher throughput under concurrency. Concurrent grants and withdrawals are
    /// queued and appended in batches by one caller at a time, which signs its batch,
    /// hands the lead on and then stores its batch and waits for the sync covering it
    /// while the next batch is signed; the other callers sleep once. A decision may see
    /// an entry whose append has not returned yet (written, sync in flight); it never
    /// misses one whose append returned. If the sync covering a batch fails, its
    /// stored entries report [`WriteError::NotDurable`] (already in effect: they were
    /// applied before the sync; whether they survive a reopen depends on the disk) and changes not yet stored report [`WriteError::Failed`]; if storing a
    /// batched entry fails, the entries signed after it report `Failed`; either way the
    /// ledger takes no more writes (reopen it).
    ///
    /// Throughput grows with the callers in flight: a single caller still waits for a
    /// whole sync per append. On the two-vCPU machine of `BENCHMARKS.md`, 16 concurrent
    /// callers got an append done every 34–43 µs (bound by fsync latency) and 128 every
    /// 22–26 µs (bound by signing and thread scheduling), against 160–200 µs per append
    /// with `Immediate`.
    GroupCommit,
    /// Appends return once written to sled's in-memory log, flushed in the background
    /// every 500 ms. For tests and bulk imports; call [`Ledger::sync`] to make
    /// everything so far durable. An append made while such a sync runs waits for it
    /// to finish before it answers: if the sync fails, the append is told
    /// [`WriteError::NotDurable`], not `Ok`.
    Relaxed,
}

/// What decisions answer once the ledger has failed: a sync of its store failed, an
/// entry signed for a group could not be stored, or a thread panicked while recording
/// a change ([`Ledger::is_failed`]). From then on
/// the ledger takes no more writes until it is reopened: a withdrawal, an erasure, a
/// grant are all refused ([`WriteError::Failed`], or [`WriteError::NotDurable`] for the
/// change whose sync failed).
///
/// The trade-off is between availability and a person's "no":
///
/// - [`DenyDecisions`](AfterFailure::DenyDecisions) (the default) fails closed: every
///   decision ([`Ledger::authorize`], [`Ledger::authorize_batch`],
///   [`Channel::authorize`](crate::Channel::authorize), audience matching) is
///   [`Denied::LedgerFailed`] until the ledger is reopened. A person who withdraws
///   consent while the disk is failing cannot have the withdrawal recorded; with this
///   setting, no use under the consent they are trying to withdraw is allowed meanwhile.
///   The cost: every use stops, also those nobody is trying to stop, until the operator
///   reopens the ledger.
/// - [`KeepDeciding`](AfterFailure::KeepDeciding) keeps deciding from the state in
///   memory, as it stood at the failure (plus the changes that only take use away,
///   which take effect even when their sync fails). Uses go on, but so does every use
///   that a withdrawal refused since would have stopped: a fail-open window that lasts
///   until the ledger is reopened. Only for an application that must keep serving and
///   that watches [`Ledger::is_failed`] to reopen at once.
///
/// Either way, reopen the ledger after a failure (drop every clone and open it again):
/// it then continues from what is on disk. Retrying the sync in the same session is no
/// fix: after a failed `fsync` the kernel may have dropped the pages it failed to write
/// and report the next `fsync` as a success without them, so only a fresh read of the
/// disk tells what survived. This is why a failed sync is final.
///
/// Receipts, histories, exports, checkpoints, past decisions ([`Ledger::authorize_at`])
/// and impact queries are not decisions about a use now: they keep answering from
/// what the ledger holds, whichever setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AfterFailure {
    /// Deny every decision, as [`Denied::LedgerFailed`], until the ledger is reopened
    /// (fail closed). The default.
    #[default]
    DenyDecisions,
    /// Keep deciding from the state in memory (fail open for changes that could not be
    /// recorded).
    KeepDeciding,
}

/// When the ledger writes a snapshot of its decision state, so that the next open
/// loads it instead of replaying every entry.
///
/// Opening still reads the whole log and recomputes its hash chain (and checks the last
/// signature); a snapshot only spares rebuilding the state and authenticating the
/// identifier index. It is loaded only if its tag verifies under the pseudonym key and
/// the recomputed chain passes through the entry it was taken at; otherwise the log is
/// replayed as without one. An authentic snapshot of this ledger taken at a position
/// the log no longer reaches (entries made durable are gone) fails opening with
/// [`IntegrityProblem::ShorterThanSnapshot`](crate::IntegrityProblem::ShorterThanSnapshot)
/// rather than let the shorter log undo them; one whose position the log reaches with
/// another entry (the log that holds together is another history) fails with
/// [`IntegrityProblem::DivergesFromSnapshot`](crate::IntegrityProblem::DivergesFromSnapshot).
/// It never holds an erased subject's lookup pseudonyms: an erasure destroys the
/// snapshot on disk (overwritten with zeros, then removed), and the next close writes a
/// new one.
///
/// A snapshot holds the identifier links of its time; a full replay takes them from the
/// vault's index records. So that decisions do not depend on whether a snapshot was
/// there, it is loaded only if the vault holds the index records the last clean close
/// recorded, with this very log (its length and last entry): each close with snapshots
/// on stores an authenticated digest of them (a count, and a sum of keyed hashes of
/// their slots, kept up to date in memory by every write and computed again while
/// opening reads the vault, at the cost of one short keyed hash per index record). When
/// they differ, or the vault drops records at open (a damaged slot, conflicting copies,
/// a partial last slot), the state is rebuilt by a full replay, which denies an
/// identifier whose record was lost and refuses the open for one whose record fails its
/// tag, and the snapshot is destroyed. That covers an index record lost in a way the
/// vault cannot tell from free space (its slot read back as zeros, whole slots cut from
/// the end of the file), one altered with its slot checksum recomputed, and an older
/// vault put back while the log has moved on. A process that ended without closing (a
/// crash, a kill) leaves no digest for its log: the next open replays in full, slower
/// but the same decisions, and the next close records the digest again.
///
/// Not noticed: a vault whose index records are changed and then put back exactly (in
/// any slots; it decides as before), and the whole directory rolled back together (the
/// log, the vault, the snapshot and the digest, which only a
/// [trusted checkpoint](LedgerBuilder::trusted_checkpoint) notices). The digest is
/// keyed, and only an HMAC over it is stored, so a vault edited to give the same digest
/// without the pseudonym key succeeds by chance only (about 2^-64 per open tried).
/// Secrets are not part of the digest: a full replay does not read them either. Keep
/// the vault with the rest of the directory, and restore them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Snapshots {
    /// Never write one; opening ignores and destroys any left by an earlier setting.
    Off,
    /// Write one when the ledger is closed (its last handle dropped) if at least
    /// `min_new_entries` entries are not covered by the snapshot on disk, after syncing
    /// the log so that the snapshot covers only durable entries. Writing takes about a
    /// third of a second and 80 MB of disk per million subjects.
    OnClose {
        /// Entries beyond the snapshot on disk that make closing write a new one.
        min_new_entries: u64,
    },
}

impl Default for Snapshots {
    /// [`Snapshots::OnClose`] once 10,000 entries are new: small ledgers replay in
    /// milliseconds and never write one.
    fn default() -> Self {
        Snapshots::OnClose {
            min_new_entries: 10_000,
        }
    }
}

/// A recorded entry: its position and timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Recorded {
    /// The entry's sequence number (its position in the log).
    pub seq: u64,
    /// The time recorded in the entry.
    pub timestamp: Timestamp,
}

/// One consent change in a subject's history, for showing to the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    /// The entry's position in the log.
    pub seq: u64,
    /// When it was recorded.
    pub timestamp: Timestamp,
    /// Who made the change.
    pub actor: Actor,
    /// What changed.
    pub change: Change,
    /// The untrusted range this entry falls in, if any.
    untrusted: Option<UntrustedRange>,
}

impl HistoryEntry {
    /// Whether the ledger no longer vouches for this entry, and why: it was signed by a
    /// key at or after the position from which the log revoked that key as compromised
    /// ([`Ledger::revoke_key`]), so the holder of a stolen key may have made it.
    /// `Some` names the run of such entries it belongs to and the revocation entry
    /// ([`UntrustedRange::revoked_by`]); [`Ledger::receipt`] refuses a receipt for it.
    /// The entry still counts in the decision state like any other (nothing is
    /// rewritten): it is for the person and the operator to judge.
    ///
    /// Computed from the revocations among the entries read along with it: the whole
    /// log (as far as the state had applied it) for [`Ledger::history`] and
    /// [`Ledger::export_subject`], the entries below the limit given to
    /// [`Inspector::entries`](crate::Inspector::entries).
    pub fn untrusted(&self) -> Option<UntrustedRange> {
        self.untrusted
    }
}

/// Marks the entries of `history` that fall in one of `ranges` as untrusted. The ranges
/// are disjoint and in log order (one per run of entries signed by one key), so each
/// entry's is found by a binary search: a log read from disk may hold any number of
/// them.
pub(crate) fn mark_untrusted<'a>(
    history: impl IntoIterator<Item = &'a mut HistoryEntry>,
    ranges: &[UntrustedRange],
) {
    if ranges.is_empty() {
        return;
    }
    for h in history {
        let i = ranges.partition_point(|r| r.to < h.seq);
        h.untrusted = ranges.get(i).filter(|r| r.from <= h.seq).copied();
    }
}

/// What a history entry changed. Identifiers appear only by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// An identifier of this kind was collected for a purpose.
    Collected {
        /// The kind of identifier.
        kind: IdentifierKind,
        /// The purpose id.
        purpose: String,
        /// The legal basis recorded with it.
        legal_basis: LegalBasis,
        /// The recipients it may be used by (for non-consent purposes).
        scope: RecipientScope,
    },
    /// Consent was given.
    Granted {
        /// The purpose id.
        purpose: String,
        /// The recipients it covers.
        scope: RecipientScope,
        /// When it lapses, if ever.
        expires_at: Option<Timestamp>,
    },
    /// Consent was withdrawn.
    Withdrawn {
        /// The purpose id.
        purpose: String,
    },
    /// Consent lapsed.
    Expired {
        /// The purpose id.
        purpose: String,
    },
    /// The subject was erased.
    Erased,
}

impl Change {
    /// Whether decisions take this change into account: `false` for a change that the
    /// ledger writes no longer and that a log written before built-in purpose ids were
    /// reserved for their legal basis may hold, namely a consent change (grant,
    /// withdrawal, expiry) for `"security"`. Decisions about `"security"` rest on its
    /// collections on their reserved basis alone, so a history shows such an entry as
    /// it was recorded and this says it changed nothing. (A collection for `"security"`
    /// on another basis, also from such a log, does decide: it replaces the
    /// identifier's collection for the purpose, and its decisions are then
    /// [`NotCollectedForPurpose`](crate::Denied::NotCollectedForPurpose).)
    pub fn decides(&self) -> bool {
        match self {
            Change::Collected { .. } | Change::Erased => true,
            Change::Granted { purpose, .. } | Change::Withdrawn { purpose } | Change::Expired { purpose } => {
                crate::purpose::lone_basis(purpose).is_none()
            }
        }
    }
}

impl fmt::Display for Change {
    /// A sentence a person can read, such as
    /// `consent to "partner-sharing" for all business partners`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::Collected {
                kind,
                purpose,
                legal_basis,
                scope,
            } => write!(f, "{kind} collected for {purpose:?} ({legal_basis}), for {scope}"),
            Change::Granted {
                purpose,
                scope,
                expires_at: Some(t),
            } => write!(f, "consent to {purpose:?} for {scope}, until {t}"),
            Change::Granted { purpose, scope, .. } => write!(f, "consent to {purpose:?} for {scope}"),
            Change::Withdrawn { purpose } => write!(f, "consent to {purpose:?} withdrawn"),
            Change::Expired { purpose } => write!(f, "consent to {purpose:?} expired"),
            Change::Erased => f.write_str("erased"),
        }
    }
}

/// The result of a full [`Ledger::verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Number of entries checked (the whole log).
    pub entries: u64,
    /// SHA-256 of the last entry: the head of the hash chain.
    pub head: [u8; 32],
    /// Number of distinct signing keys the log authorized, the genesis key included (a
    /// key rotated back to counts once).
    pub keys: usize,
    /// The key the log authorized last: the one that signs new entries (`None` for an
    /// empty log). An auditor without the ledger's keys compares it with the public key
    /// they trust: each rotation is accepted by its new key, so no one can make a log
    /// that ends with that key without it.
    pub current_key: Option<crate::signing::VerifyingKey>,
    /// Entries signed with a key after the position from which it was revoked as
    /// compromised ([`Ledger::revoke_key`]). Empty unless a key was revoked.
    pub untrusted: Vec<UntrustedRange>,
}

impl VerifyReport {
    /// An error naming the first entry signed with a revoked key, if any.
    ///
    /// # Errors
    /// [`IntegrityProblem::RevokedKey`] at the first untrusted position.
    pub fn require_trusted(&self) -> Result<(), IntegrityError> {
        match self.untrusted.first() {
            None => Ok(()),
            Some(r) => Err(IntegrityError {
                position: r.from,
                problem: IntegrityProblem::RevokedKey {
                    revoked_from: r.revoked_from,
                },
            }),
        }
    }
}

/// A consent ledger: a signed, hash-chained, append-only log of consent changes on
/// disk, and the current state that decisions read.
///
/// Cheap to clone (clones share one ledger) and `Send + Sync`: share it between threads.
/// Open it with [`Ledger::builder`].
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

/// The state snapshot on disk, as this process knows it: the entries it covers and its
/// tag (both zero: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct SnapshotOnDisk {
    pub(super) len: u64,
    pub(super) tag: [u8; 32],
}

struct Inner {
    store: Box<dyn Backend>,
    state: RwLock<State>,
    writer: Mutex<Writer>,
    stage: Mutex<Stage>,
    group: GroupSync,
    clock: Arc<dyn Clock>,
    /// Millisecond readings of the default clock for stamping decisions.
    ticker: Option<ticker::Ticker>,
    pseudonym_key: PseudonymKey,
    durability: Durability,
    ledger_id: [u8; 16],
    /// The log as an RFC 9162 Merkle tree, built on first use (or at open when a
    /// trusted checkpoint is checked) and then extended by every append.
    tree: Mutex<Option<crate::merkle::MerkleTree>>,
    /// Decision records, as configured.
    recorder: crate::records::Recorder,
    /// The latest time (ms) the ledger has read from its clock or written in an entry:
    /// decisions never see time run backwards, so a consent that has expired stays
    /// expired when the system clock is stepped back. At open, the latest of the head
    /// record's time floor, the last entry's time and the latest recorded use (see
    /// [`head`] for what a crash can still take from it).
    high_water: AtomicU64,
    /// The head record (see [`head`]): the durable length and the time floor, saved
    /// at most every [`TIME_FLOOR_STEP_MS`] of the clock, by the ticker when the
    /// durable length moved on, and on `sync` and close. Shared with the ticker.
    head: Arc<head::HeadWriter>,
    /// Grants and withdrawals waiting for a leader (group commit).
    combiner: combine::Combiner,
    /// When to write state snapshots.
    snapshots: Snapshots,
    /// The state snapshot on disk: what a close compares the state with before writing
    /// another, and what the vault digest record written at close names.
    snapshot_on_disk: Mutex<SnapshotOnDisk>,
    /// The vault digest record found at open (see [`vault_digest`]): a close that
    /// would write the same bytes writes nothing.
    vault_digest_at_open: Option<Vec<u8>>,
    /// An erasure has not yet destroyed the snapshot on disk (its destruction failed):
    /// it must be destroyed, not merely replaced, before a new one is written.
    snapshot_outlives_erasure: std::sync::atomic::AtomicBool,
    /// An erasure's removal of an index record or secret failed in this session (set
    /// once, never cleared): a close then leaves no vault digest record, so that the
    /// next open replays the log in full and finishes it.
    erasure_unfinished: std::sync::atomic::AtomicBool,
    /// Every revocation entry of the log: (key, position revoked from, position of the
    /// entry). A revoked key is never rotated to again; checkpoints list them.
    revocations: Mutex<Vec<([u8; 32], u64, u64)>>,
    /// Every key the log authorized (the genesis key and each rotation's): the keys a
    /// revocation may name.
    signers: Mutex<Vec<[u8; 32]>>,
    /// The log's key history as [`Ledger::receipt`] reads it (which key signed each
    /// entry, and the revocations), continued from where the last receipt left it: the
    /// log is append-only, so only the entries since are read. Begun from the open's
    /// replay of the log; `None` after a read that failed (the next receipt then reads
    /// the whole log).
    receipt_keys: Mutex<Option<replay::Replay>>,
    /// Held by an erasure from its entry to its last removal.
    erasing: Mutex<()>,
    /// Held by every sync of the store while it runs and its failure is marked: the
    /// kernel reports a write-back error to one fsync only, so a sync that overlapped
    /// a failed one could succeed without the pages that one lost.
    syncing: Mutex<()>,
    /// What decisions answer once the ledger has failed.
    after_failure: AfterFailure,
    /// Set (never cleared) by [`Inner::mark_failed`] wherever the ledger is marked as
    /// taking no more writes (a failed sync, an entry of a group that could not be
    /// stored), before the failing call returns: one load on the decision path, where
    /// the group state's and the writer's flags are behind mutexes.
    failed: AtomicBool,
    /// Points where the crate's own tests step in.
    #[cfg(test)]
    test_hooks: TestHooks,
}

/// Points where the crate's own tests step in (each runs once, if set), to order
/// threads by what they have done rather than by sleeping.
#[cfg(test)]
#[derive(Debug, Default)]
struct TestHooks {
    /// In [`Ledger::signer_of`], once it has read how many entries the state applied
    /// and before it takes the cached key history (`receipt_keys`).
    receipt_read_applied: faults::Hook,
}

/// How far the time seen may run ahead of the saved floor before it is saved again:
/// what a kill can take from the floor the next open starts from, where no entry or
/// decision record made durable keeps a later time (see [`head`]).
const TIME_FLOOR_STEP_MS: u64 = 1_000;

impl Inner {
    /// Writes a state snapshot on close, if the setting asks for one. Best effort: a
    /// failure leaves the previous snapshot (or none), and the next open replays more.
    fn snapshot_on_close(&mut self) {
        let Snapshots::OnClose { min_new_entries } = self.snapshots else {
            return;
        };
        let (Ok(state), Ok(writer)) = (self.state.get_mut(), self.writer.get_mut()) else {
            return;
        };
        let Ok(on_disk) = self.snapshot_on_disk.get_mut() else {
            return;
        };
        let covered = on_disk.len;
        if writer.failed
            || state.len != writer.next_seq
            || state.len == 0
            || state.len.saturating_sub(covered) < min_new_entries.max(1)
        {
            return;
        }
        let at = crate::state::snapshot::Position {
            ledger_id: self.ledger_id,
            len: state.len,
            head: writer.last_hash,
        };
        // Zeroed whole first (the new one is written over the old in place, but may be
        // shorter, and a failed erasure must not leave its lookups to chance).
        if *self.snapshot_outlives_erasure.get_mut() {
            if self.store.destroy_snapshot().is_err() {
                return;
            }
            *self.snapshot_outlives_erasure.get_mut() = false;
        }
        // Only durable entries may be covered: a crash must not leave a snapshot of
        // a longer log than the one that survives.
        if self.store.sync().is_ok() {
            let bytes = crate::state::snapshot::seal(state, &at, &self.pseudonym_key);
            if self.store.put_snapshot(&bytes).is_ok() {
                *on_disk = SnapshotOnDisk {
                    len: state.len,
                    tag: crate::state::snapshot::peek_tag(&bytes).unwrap_or_default(),
                };
            }
        } else if let Ok(s) = self.group.state.get_mut() {
            // A failed sync is final, as anywhere else: the pages it failed to write
            // may since have been dropped, so the close's own sync, if it succeeds,
            // must not count anything durable after it.
            s.failed = true;
            *self.failed.get_mut() = true;
        }
    }
}

impl Inner {
    /// Records, at a clean close, the log and the vault's index records it ends with
    /// (see [`vault_digest`]), for the next open from a snapshot; made durable by the
    /// close's sync. Only with snapshots on, and only if the state in memory is the log's
    /// (no write failed). Best effort: without a record that matches, the next open
    /// from a snapshot replays the log in full instead. (A record left from an earlier
    /// close matches only that close's log and index records, which its state decides
    /// as; a full replay decides the same.)
    fn vault_digest_on_close(&mut self) {
        if self.snapshots == Snapshots::Off {
            return;
        }
        if *self.erasure_unfinished.get_mut() {
            // An open from a snapshot finishes an erasure only when it can tell one is
            // unfinished (its entry after the snapshot, or its subject's secret still
            // stored): not when the secret was lost before (a damaged slot) and the
            // snapshot written now leaves out the subject's lookups (review r140). No
            // record, not even the one found at open: the next open replays in full,
            // which removes every index record of an erased subject.
            let _ = self.store.set_meta(vault_digest::META_KEY, &[]);
            return;
        }
        let (Ok(state), Ok(writer)) = (self.state.get_mut(), self.writer.get_mut()) else {
            return;
        };
        if writer.failed || state.len != writer.next_seq {
            return;
        }
        let Ok(Some(digest)) = self.store.vault_index_digest() else {
            return;
        };
        let Ok(snapshot) = self.snapshot_on_disk.get_mut().map(|s| s.tag) else {
            return;
        };
        let covered = vault_digest::Covered {
            ledger_id: &self.ledger_id,
            len: writer.next_seq,
            head: &writer.last_hash,
            // The snapshot this close left on disk (written just before, or the one
            // this session opened from; zeros once destroyed).
            snapshot: &snapshot,
            digest,
        };
        let bytes = vault_digest::seal(&self.pseudonym_key, &covered);
        if self.vault_digest_at_open.as_deref() != Some(&bytes[..]) {
            let _ = self.store.set_meta(vault_digest::META_KEY, &bytes);
        }
    }
}

/// The refusal of a change for a new purpose id once the ledger holds as many as it can.
pub(super) fn too_many_purposes() -> WriteError {
    crate::error::InputError::new(
        "purpose",
        "is a new purpose id, and the ledger already holds MAX_PURPOSE_IDS (4096), the most it can",
    )
    .into()
}

impl Inner {
    /// Marks the ledger failed ([`Ledger::is_failed`]): with
    /// [`AfterFailure::DenyDecisions`], every decision from now on is denied. Called
    /// wherever the writer, the storing stage or the group state is marked failed, and
    /// before the call that failed returns, so that a caller told its change could not be
    /// recorded (or made durable) finds decisions denied at once.
    fn mark_failed(&self) {
        self.failed.store(true, Ordering::Release);
    }

    /// A thread panicked while holding the writer: no change can be recorded any more,
    /// so the ledger has failed as after a failed sync (a withdrawal asked for now is
    /// refused, and decisions are denied under [`AfterFailure::DenyDecisions`]).
    fn writer_poisoned(&self) -> WriteError {
        self.mark_failed();
        WriteError::Failed
    }

    /// Whether decisions are denied now: the ledger has failed and the setting is
    /// [`AfterFailure::DenyDecisions`]. One load of a flag on the decision path.
    fn denies_decisions(&self) -> bool {
        self.after_failure == AfterFailure::DenyDecisions && self.failed.load(Ordering::Acquire)
    }

    /// What this ledger's decision records are tagged with.
    fn record_key(&self) -> crate::records::TagKey<'_> {
        crate::records::TagKey {
            key: &self.pseudonym_key,
            ledger: &self.ledger_id,
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Aggregated counts still in memory; a failure here cannot be reported.
        let _ = self.recorder.flush(&*self.store, self.record_key());
        self.snapshot_on_close();
        self.vault_digest_on_close();
        // What is written is made durable, then recorded so (with the time floor);
        // a failure here cannot be reported.
        let synced = self.store.sync().is_ok();
        let written = *self.group.written.get_mut();
        let writer_failed = self.writer.get_mut().map_or(true, |w| w.failed);
        if let Ok(s) = self.group.state.get_mut() {
            if synced && !s.failed && !writer_failed {
                s.durable = s.durable.max(written);
                self.head.durable_up_to(s.durable);
            }
        }
        let floor = *self.high_water.get_mut();
        let _ = self.head.save(floor, true);
    }
}

/// Why a sync of the store did not happen or did not succeed.
#[derive(Debug)]
enum SyncError {
    /// An earlier sync failed (or a lock is poisoned): the ledger takes no more writes.
    Refused,
    /// This sync failed.
    Failed(StorageError),
}

impl SyncError {
    /// For a caller whose own entry was written and is now not durable: whether a
    /// sync failed now or was refused (an earlier one failed), the entry is in the
    /// store and may reach the disk (a close syncs what it can), so it may take effect
    /// after a reopen. Never `Failed`, which says nothing was done.
    fn not_durable(self) -> WriteError {
        match self {
            SyncError::Refused => WriteError::NotDurable(StorageError::new(
                "syncing the log",
                std::io::Error::other("no sync covering this entry succeeded (an earlier one had failed)"),
            )),
            SyncError::Failed(e) => WriteError::NotDurable(e),
        }
    }
}

impl From<SyncError> for WriteError {
    fn from(e: SyncError) -> Self {
        match e {
            SyncError::Refused => WriteError::Failed,
            SyncError::Failed(e) => WriteError::Storage(e),
        }
    }
}

/// Bytes of random salt in every entry.
const SALT_LEN: usize = 16;

/// An entry signed and sealed, not yet stored.
struct Sealed {
    entry: Entry,
    bytes: Vec<u8>,
    /// `entry_hash(bytes)`: the next entry's previous hash.
    hash: Hash,
    lookup: Option<Pseudonym>,
}

impl Sealed {
    fn recorded(&self) -> Recorded {
        Recorded {
            seq: self.entry.seq,
            timestamp: self.entry.timestamp,
        }
    }
}

/// The storing half of an append. Whoever holds it stores signed entries, adds them to
/// the Merkle tree and applies them to the state, in log order: it is always locked
/// after the writer lock and before that is released, so entries are stored in the
/// order they were signed. Group commit signs the next batch under the writer lock
/// while the batch before is stored under this one.
struct Stage {
    /// A signed entry could not be stored; entries signed after it chain to it, so none
    /// may be stored: no more writes.
    failed: bool,
}

/// Everything the single writer needs, behind one mutex.
struct Writer {
    next_seq: u64,
    last_hash: Hash,
    key: SigningKey,
    /// The first position `key` signs: one past its rotation entry (0 for the genesis
    /// key). A checkpoint signed with `key` must cover that entry, or its log would not
    /// authorize the key.
    key_from: u64,
    /// Set when a write may or may not have reached the disk: no more writes.
    failed: bool,
    /// New purpose ids of changes group commit signed that the state may not include
    /// yet (pruned at each batch; at most [`MAX_PURPOSE_IDS`](crate::MAX_PURPOSE_IDS)).
    new_purposes: Vec<Box<str>>,
}

/// Group commit: who is syncing, and how far the log is known durable.
struct GroupSync {
    state: Mutex<SyncState>,
    done: Condvar,
    /// Entries written to the store (not necessarily durable).
    written: AtomicU64,
}

struct SyncState {
    /// Entries known durable (a length: positions below it are durable).
    durable: u64,
    syncing: bool,
    failed: bool,
}

/// What a write's preparation decided.
enum Prepared {
    /// Append this body (with the lookup pseudonym for a collection).
    Append(Body, Option<Pseudonym>),
    /// Nothing to append: the change is already recorded, by the entry at this position.
    Already(u64),
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ledger")
            .field("store", &self.inner.store)
            .field("entries", &self.len())
            .field("durability", &self.inner.durability)
            .finish_non_exhaustive()
    }
}

impl Ledger {
    /// Starts opening (or creating) the ledger in directory `path`.
    ///
    /// The signing key and the pseudonym key are required: `open` is not available
    /// until both are given.
    ///
    /// ```compile_fail,E0599
    /// let ledger = consent_ledger::Ledger::builder("/tmp/x").open();
    /// ```
    pub fn builder(path: impl Into<std::path::PathBuf>) -> LedgerBuilder {
        LedgerBuilder::new(path.into())
    }

    /// Number of entries in the log (the current position).
    pub fn len(&self) -> u64 {
        self.inner.state.read().map(|s| s.len).unwrap_or(0)
    }

    /// Whether the log is empty. Never true for an open ledger: the genesis entry is
    /// written when it is created.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ledger's random 16-byte id, fixed at creation.
    pub fn id(&self) -> [u8; 16] {
        self.inner.ledger_id
    }

    /// Whether the ledger has failed: a sync of its store failed (an append's, a
    /// group's, [`Ledger::sync`]'s, an erasure's, a checkpoint's), an entry signed
    /// for a group could not be stored, or a thread panicked while it held the lock
    /// that orders changes (set by the next change asked for, which is refused as
    /// [`WriteError::Failed`]). A failure is final for the session: the ledger
    /// takes no more writes, and with [`AfterFailure::DenyDecisions`] (the default)
    /// every decision is [`Denied::LedgerFailed`]. Reopen it (drop every clone, then
    /// open the directory again) to continue from what is on disk; see
    /// [`AfterFailure`] for why the same session cannot recover.
    ///
    /// Not set by an erasure whose removals failed ([`WriteError::Unfinished`]): the
    /// erasure is recorded and in effect, the ledger takes writes, and retrying the
    /// erasure finishes it. Nor when storing an entry fails under
    /// [`Durability::Immediate`] or [`Durability::Relaxed`]
    /// ([`WriteError::Storage`]: nothing was stored, and the ledger takes writes).
    pub fn is_failed(&self) -> bool {
        self.inner.failed.load(Ordering::Acquire)
    }

    /// Whether decisions are denied now ([`AfterFailure::DenyDecisions`] after a
    /// failure): what every decision path checks first.
    pub(crate) fn denies_decisions(&self) -> bool {
        self.inner.denies_decisions()
    }

    /// The public key that verifies entries signed from now on.
    ///
    /// # Errors
    /// [`WriteError::Failed`] when a thread panicked while holding the writer.
    pub fn verifying_key(&self) -> Result<VerifyingKey, WriteError> {
        let w = self.inner.writer.lock().map_err(|_| WriteError::Failed)?;
        Ok(w.key.verifying_key())
    }

    /// Decides, now, whether `identifier` may be used for its purpose `P` by `recipient`.
    ///
    /// The decision reads the current state: every change whose recording call has
    /// returned, from any thread, is taken into account. On `Ok`, the [`Use`] delivers the
    /// value to `recipient` (or exposes it, to the first party) and carries the
    /// [`Evidence`](crate::Evidence). On `Err`, [`Denied`] says why.
    ///
    /// # Errors
    /// [`Denied`] with the reason; [`Denied::Unavailable`] when the state cannot be read
    /// or, with [`Recording::Every`](crate::Recording::Every), the use's record cannot be
    /// written; [`Denied::LedgerFailed`] for every identifier once the ledger has failed
    /// ([`Ledger::is_failed`]), unless it was opened with
    /// [`AfterFailure::KeepDeciding`].
    pub fn authorize<'a, P: Purpose>(
        &self,
        identifier: &'a Identifier<P>,
        recipient: &'a Recipient,
    ) -> Result<Use<'a, P>, Denied> {
        // A decision that starts after a failing write returned (its caller told the
        // change could not be recorded) is denied: see `AfterFailure`.
        if self.inner.denies_decisions() {
            return Err(Denied::LedgerFailed);
        }
        let lookup = identifier.lookup(&self.inner.pseudonym_key);
        let state = self.inner.state.read().map_err(|_| Denied::Unavailable)?;
        let decided = state.decide_query(
            &state.query::<P>(recipient),
            &lookup,
            || self.stamp(),
            || self.now_deciding(),
        );
        drop(state);
        self.save_time_floor_if_due();
        let (evidence, ..) = decided?;
        self.record(&evidence, recipient)?;
        Ok(Use::new(identifier, recipient, evidence))
    }

    /// Records an allowed use as configured; a use that must be recorded and cannot be
    /// is denied.
    pub(crate) fn record(&self, evidence: &crate::Evidence, recipient: &Recipient) -> Result<(), Denied> {
        self.inner
            .recorder
            .record(&*self.inner.store, self.inner.record_key(), evidence, recipient)
            .map_err(|_| Denied::Unavailable)
    }

    /// Whether allowed uses are recorded.
    pub(crate) fn records_decisions(&self) -> bool {
        self.inner.recorder.is_on()
    }

    /// Every stored decision record (aggregates held in memory are written first).
    ///
    /// # Errors
    /// Storage failures; [`ReadError::CorruptRecord`] for a record that was edited,
    /// copied under another storage key or from another ledger, or written with another
    /// pseudonym key (also when
    /// that is why aggregates in memory could not be written: they stay in memory).
    pub fn decision_records(&self) -> Result<Vec<crate::DecisionRecord>, ReadError> {
        self.decision_records_matching(|_| true)
    }

    /// [`Ledger::decision_records`], keeping only those `keep` selects as they are read
    /// (the export of one subject and an impact query hold only theirs in memory).
    pub(crate) fn decision_records_matching(
        &self,
        keep: impl FnMut(&crate::DecisionRecord) -> bool,
    ) -> Result<Vec<crate::DecisionRecord>, ReadError> {
        let flushed = self
            .inner
            .recorder
            .flush(&*self.inner.store, self.inner.record_key());
        // Read first: a corrupt record, the likelier cause of a failed flush, is named.
        let records = crate::records::read_matching(&*self.inner.store, self.inner.record_key(), keep)?;
        flushed?;
        Ok(records)
    }

    /// The time to stamp a decision that does not depend on the time with: never
    /// earlier than a time the ledger has already seen (so never before the entry that
    /// allowed the use), from the ticker when there is one rather than a clock read.
    ///
    /// A reading later than any seen raises the high-water time, as in [`Ledger::now`]:
    /// a time that evidence carries is a time the ledger has seen, so an expiry it has
    /// passed stays passed when the clock is stepped back. Never writes the time floor
    /// (see [`Ledger::now_deciding`]).
    pub(crate) fn stamp(&self) -> Timestamp {
        let t = match &self.inner.ticker {
            Some(t) => t.now().as_millis(),
            None => return self.now_deciding(),
        };
        // The decision path's cost: one load, unless the ticker has moved on.
        let current = self.inner.high_water.load(Ordering::Acquire);
        if t <= current {
            return Timestamp::from_millis(current);
        }
        self.raise(t)
    }

    /// The decision state.
    pub(crate) fn state(&self) -> &RwLock<State> {
        &self.inner.state
    }

    /// The application's pseudonym key.
    pub(crate) fn pseudonym_key(&self) -> &PseudonymKey {
        &self.inner.pseudonym_key
    }

    /// The clock, read now, never earlier than a time the ledger has already seen; saves
    /// the time floor when due.
    pub(crate) fn now(&self) -> Timestamp {
        let now = self.now_deciding();
        self.save_time_floor_if_due();
        now
    }

    /// [`Ledger::now`] for a decision under the state's read lock: it never writes the
    /// time floor, whose file write would hold the lock, and so every writer waiting
    /// for it and the readers queued behind them (review r147). The caller calls
    /// [`Ledger::save_time_floor_if_due`] once the lock is released. ([`Ledger::stamp`]
    /// never writes either.)
    pub(crate) fn now_deciding(&self) -> Timestamp {
        self.raise(self.inner.clock.now().as_millis())
    }

    /// Raises the high-water time to the reading `t` if it is later, and returns the
    /// high-water time.
    fn raise(&self, t: u64) -> Timestamp {
        // A plain load first: the shared line is written at most once per millisecond,
        // not by every decision.
        let high = &self.inner.high_water;
        let current = high.load(Ordering::Acquire);
        let seen = if t > current {
            high.fetch_max(t, Ordering::AcqRel).max(t)
        } else {
            current
        };
        Timestamp::from_millis(seen)
    }

    /// Saves the high-water time as the time floor once it is [`TIME_FLOOR_STEP_MS`]
    /// past the saved one. Best effort: the next step retries.
    pub(crate) fn save_time_floor_if_due(&self) {
        let seen = self.inner.high_water.load(Ordering::Acquire);
        let saved = self.inner.head.time_floor_saved.load(Ordering::Acquire);
        // (A difference, not `saved + STEP`: near the largest time that sum saturates,
        // and every reading would rewrite the record.)
        if seen.saturating_sub(saved) >= TIME_FLOOR_STEP_MS {
            let _ = self.inner.head.save(seen, false);
        }
    }

    /// Records that `identifier` was collected from `subject` for its purpose `P`, to be
    /// used by the recipients in `scope`. For purposes that are not consent-based, this
    /// is what allows a use, and `scope` says by whom. For consent-based purposes a use
    /// needs a [`grant`](Ledger::grant), and the grant's scope decides who may use it:
    /// the person's consent, which may be wider or narrower than `scope`.
    ///
    /// Recording the same collection again (same purpose id, legal basis and scope)
    /// appends nothing and returns the existing entry; a different scope, or the same
    /// purpose id through a type on another legal basis, appends a new entry that
    /// replaces the old collection.
    ///
    /// # Errors
    /// [`WriteError::HeldByAnotherSubject`] when the identifier is recorded for someone
    /// else, [`WriteError::SubjectErased`], [`WriteError::InvalidPurposeId`],
    /// [`WriteError::Input`] for a new purpose id once the ledger holds
    /// [`MAX_PURPOSE_IDS`](crate::MAX_PURPOSE_IDS) or a scope naming more than 256
    /// recipients, [`WriteError::TooLarge`] when the entry would exceed 7 KiB (a scope
    /// of about 48 names of 128 bytes), storage failures.
    pub fn collect<P: Purpose>(
        &self,
        subject: &SubjectId,
        identifier: &Identifier<P>,
        scope: RecipientScope,
    ) -> Result<Recorded, WriteError> {
        self.collect_as(Actor::Subject, subject, identifier, scope)
    }

    /// Records that `subject` consents to purpose `P` for the recipients in `scope`,
    /// until `expires_at` if given. Replaces any earlier consent to `P`.
    ///
    /// # Errors
    /// [`WriteError::Input`] when `P` is not consent-based (unless the subject holds an
    /// identifier collected for its id on a consent basis, or has a consent record for
    /// the id, see [`Ledger::withdraw`]) or
    /// `expires_at` is after [`Timestamp::MAX_RFC3339`] or `scope` names more than 256
    /// recipients, [`WriteError::TooLarge`] when the entry would exceed 7 KiB,
    /// [`WriteError::SubjectErased`], [`WriteError::InvalidPurposeId`], storage
    /// failures.
    pub fn grant<P: Purpose>(
        &self,
        subject: &SubjectId,
        scope: RecipientScope,
        expires_at: Option<Timestamp>,
    ) -> Result<Recorded, WriteError> {
        self.grant_as::<P>(Actor::Subject, subject, scope, expires_at)
    }

    /// Records that `subject` withdraws consent to purpose `P`. Effective for every
    /// decision that starts after this call returns.
    ///
    /// Only a consent-based purpose has a consent to withdraw: for one that is not (2FA
    /// under legitimate interest, say), a use rests on the collection, and what stops
    /// it is [`erase`](Ledger::erase) or collecting again with a narrower scope. Such a
    /// withdrawal is refused rather than recorded without effect, unless the subject
    /// holds an identifier collected for the purpose's id on a consent basis, or has a
    /// consent record for the id (either through another type with the same id, say
    /// before the purpose's basis changed): decisions about the subject's identifiers
    /// for that id then rest on the consent and its scope, so withdrawing it takes
    /// effect.
    ///
    /// A withdrawal is recorded (an entry is appended) even when no consent was given:
    /// the person's choice is then on record for an audit.
    ///
    /// # Errors
    /// [`WriteError::Input`] when `P` is not consent-based (but as above),
    /// [`WriteError::SubjectErased`],
    /// [`WriteError::InvalidPurposeId`], storage failures.
    pub fn withdraw<P: Purpose>(&self, subject: &SubjectId) -> Result<Recorded, WriteError> {
        self.withdraw_as::<P>(Actor::Subject, subject)
    }

    /// Erases `subject`: appends an erasure entry, then destroys the subject's secret
    /// and index records, so nothing in the database links its entries to any
    /// identifier. The log keeps verifying, and decision records of past uses stay, as
    /// evidence of the disclosures (`docs/erasure.md`). Erasing twice returns the first erasure,
    /// once its removals are done: erasures run one at a time, and a repeated one does
    /// the removals again (so retrying a failed erasure finishes it). A subject the
    /// ledger has never seen is erased too (an entry is appended), so that the id can
    /// never be given data afterwards: nothing more is recorded about it
    /// ([`WriteError::SubjectErased`]).
    ///
    /// # Errors
    /// Storage failures before the entry was appended ([`WriteError::Storage`]:
    /// nothing recorded). [`WriteError::Unfinished`] when the entry was appended but a
    /// removal failed: the subject is erased, and retrying the erasure, or opening the
    /// ledger next time, finishes it. If the entry or the removals could not be synced
    /// ([`WriteError::NotDurable`]), the removals are done all the same (as far as the
    /// store takes them) and the ledger takes no more writes: opening it again finishes
    /// the erasure.
    pub fn erase(&self, subject: &SubjectId, actor: Actor) -> Result<Recorded, WriteError> {
        // One erasure at a time: a repeated erasure of a subject returns only once the
        // first one's removals are done, and redoes them (the first may have failed).
        let _one_at_a_time = self.inner.erasing.lock().map_err(|_| WriteError::Failed)?;
        // The subject's lookup pseudonyms link it to its identifiers: wiped when dropped,
        // however this returns.
        let mut lookups: Zeroizing<Vec<Pseudonym>> = Zeroizing::default();
        let appended = self.append(actor, |state, _| {
            if let Some(at) = state.erased_at(subject) {
                lookups = Zeroizing::new(state.lookups_left_by(subject));
                return Ok(Prepared::Already(at));
            }
            lookups = Zeroizing::new(state.lookups_of(subject));
            Ok(Prepared::Append(
                Body::Erased {
                    subject: subject.clone(),
                },
                None,
            ))
        });
        let recorded = match appended {
            Ok(recorded) => recorded,
            // The entry is stored and applied (an erasure is, whichever sync failed) but
            // could not be synced: the ledger takes no more writes. The removals are done
            // all the same, as far as the store takes them (which also unlinks the
            // subject's identifiers in memory), so that nothing links the subject
            // meanwhile; the next open finishes what they leave.
            Err(WriteError::NotDurable(e)) => {
                let _best_effort = self.erasure_removals(subject, &lookups);
                return Err(WriteError::NotDurable(e));
            }
            Err(e) => return Err(e),
        };
        self.erasure_removals(subject, &lookups)?;
        if self.inner.durability != Durability::Relaxed {
            // The entry is durable already; the removals are not: a reopen finishes them.
            self.sync_store().map_err(SyncError::not_durable)?;
        }
        Ok(recorded)
    }

    /// The removals of an erasure whose entry is applied: `subject`'s index records
    /// under `lookups`, its secret, its lookups in the state, and the snapshot on disk.
    fn erasure_removals(&self, subject: &SubjectId, lookups: &[Pseudonym]) -> Result<(), WriteError> {
        let store = &self.inner.store;
        // From here on a snapshot on disk may outlive the erasure (if anything below
        // fails): closing must then destroy it before writing another, never rename a
        // new one over it (which would leave its bytes on the disk).
        self.inner
            .snapshot_outlives_erasure
            .store(true, Ordering::Release);
        // Only the subject's own records: once the erasure entry is applied, another
        // subject may collect one of these identifiers and write its own record under
        // the same lookup, which must survive (removed atomically with that check).
        let names_subject = |bytes: &[u8]| IndexRecord::decode(bytes).is_none_or(|r| r.subject == *subject);
        // The entry is in: a failure from here on leaves the erasure recorded, to be
        // finished by a retry or the next open.
        let unfinished = |e| {
            self.inner.erasure_unfinished.store(true, Ordering::Release);
            WriteError::Unfinished(e)
        };
        for l in lookups {
            store.remove_index_if(&l.0, &names_subject).map_err(unfinished)?;
        }
        store.remove_secret(subject.as_str()).map_err(unfinished)?;
        // Nothing on disk links them any more; nor, from here on, does the state in
        // memory. (Until now a repeated erasure needed them, to redo the removals.)
        if let Ok(mut state) = self.inner.state.write() {
            state.forget_lookups(subject, lookups);
        }
        // A snapshot on disk may hold the subject's lookup pseudonyms (one found
        // unusable at open too: always try). If this fails, closing destroys it
        // before writing another, and so does the next open.
        store.destroy_snapshot().map_err(WriteError::Unfinished)?;
        self.inner
            .snapshot_outlives_erasure
            .store(false, Ordering::Release);
        if let Ok(mut on_disk) = self.inner.snapshot_on_disk.lock() {
            *on_disk = SnapshotOnDisk::default();
        }
        Ok(())
    }

    /// Records a collection made by `actor` (for example an operator importing data).
    /// See [`Ledger::collect`].
    ///
    /// # Errors
    /// As [`Ledger::collect`].
    pub fn collect_as<P: Purpose>(
        &self,
        actor: Actor,
        subject: &SubjectId,
        identifier: &Identifier<P>,
        scope: RecipientScope,
    ) -> Result<Recorded, WriteError> {
        check_purpose::<P>()?;
        check_scope(&scope)?;
        let lookup = identifier.lookup(&self.inner.pseudonym_key);
        let key = &self.inner.pseudonym_key;
        // Whether this call wrote an index record for an identifier with no collection.
        let mut wrote_new_index = false;
        let result = self.append(actor, |state, store| {
            if let Some(at) = state.erased_at(subject) {
                return Err(WriteError::SubjectErased { erased_at: at });
            }
            if let Some(holder) = state.ident_subject(&lookup) {
                if holder != subject {
                    return Err(WriteError::HeldByAnotherSubject {
                        kind: identifier.kind(),
                    });
                }
            }
            if let Some(seq) = state.existing_collection(&lookup, P::ID, P::LEGAL_BASIS, &scope) {
                return Ok(Prepared::Already(seq));
            }
            if !state.can_hold_purpose(P::ID) {
                return Err(too_many_purposes());
            }
            // An identifier the subject already holds (collected again, for another
            // purpose) has its index record, written with the subject pseudonym its
            // earlier collections carry. The record is written again below: only with
            // that same pseudonym. A secret made anew because the stored one was lost (a
            // damaged vault slot), now or at an earlier collection of another of the
            // subject's identifiers, gives another one, and would unlink the earlier
            // collections from the identifier for good.
            let held = state.held_collection(&lookup, subject);
            let secret = subject_secret(store, subject, held.is_some())?;
            let mut pseudonym = secret.pseudonym(key, identifier.kind(), identifier.normalized());
            if let Some(seq) = held {
                let recorded = store
                    .entry(seq)?
                    .and_then(|bytes| entry::decode(&bytes).ok())
                    .and_then(|stored| match stored.entry.body {
                        Body::Collected { pseudonym, .. } => Some(pseudonym),
                        _ => None,
                    });
                // A ledger made before subject pseudonyms were keyed with the pseudonym
                // key too holds them keyed with the secret alone: its identifiers keep
                // the pseudonym they have (see `SubjectSecret::legacy_pseudonym`).
                let legacy = secret.legacy_pseudonym(identifier.kind(), identifier.normalized());
                match recorded {
                    Some(r) if r == pseudonym => {}
                    Some(r) if r == legacy => pseudonym = legacy,
                    _ => return Err(lost_link()),
                }
            }
            let code = [identifier.kind().code()];
            let tag = key.index_tag(&IndexRecord::tagged_parts(&lookup, subject, &code, &pseudonym));
            let record = IndexRecord {
                subject: subject.clone(),
                kind: identifier.kind(),
                pseudonym,
                tag,
            };
            // Written before the entry: an index record without its entry is inert (and
            // removed below if the entry is not stored).
            store.put_index(&lookup.0, &record.encode())?;
            wrote_new_index = state.ident_subject(&lookup).is_none();
            Ok(Prepared::Append(
                Body::Collected {
                    subject: subject.clone(),
                    kind: identifier.kind(),
                    pseudonym,
                    purpose: P::ID.to_owned(),
                    basis: P::LEGAL_BASIS,
                    scope,
                },
                Some(lookup),
            ))
        });
        // A storage error or an entry too large to write means the entry was not stored
        // (later failures are `NotDurable` or `Failed`): the new record would be an
        // orphan that nothing names, which erasing the subject could not find, and that
        // an open from a state snapshot would not look for (review of stop 32: a scope
        // too large left one). (A crash in between still leaves one: inert, and the next
        // open, a full replay, removes it; see docs/erasure.md.)
        let not_stored = matches!(result, Err(WriteError::Storage(_) | WriteError::TooLarge { .. }));
        if wrote_new_index && not_stored {
            self.forget_orphan_index(&lookup, subject);
        }
        result
    }

    /// Removes the index record `collect` wrote for `subject` under `lookup` when its
    /// entry could not be stored, unless a collection of that identifier has been
    /// recorded since (under the writer lock, so none can be meanwhile). Best effort:
    /// the caller already has the error that matters.
    fn forget_orphan_index(&self, lookup: &Pseudonym, subject: &SubjectId) {
        let Ok(_writer) = self.inner.writer.lock() else {
            return;
        };
        let collected = match self.inner.state.read() {
            Ok(state) => state.ident_subject(lookup).is_some(),
            Err(_) => return,
        };
        if !collected {
            let names_subject =
                |bytes: &[u8]| IndexRecord::decode(bytes).is_some_and(|r| r.subject == *subject);
            let _ = self.inner.store.remove_index_if(&lookup.0, &names_subject);
        }
    }

    /// Records a grant made through `actor` (for example an operator recording a paper
    /// form). See [`Ledger::grant`].
    ///
    /// # Errors
    /// As [`Ledger::grant`].
    pub fn grant_as<P: Purpose>(
        &self,
        actor: Actor,
        subject: &SubjectId,
        scope: RecipientScope,
        expires_at: Option<Timestamp>,
    ) -> Result<Recorded, WriteError> {
        check_purpose::<P>()?;
        check_scope(&scope)?;
        if expires_at.is_some_and(|t| t > Timestamp::MAX_RFC3339) {
            // Receipts and exports write it in RFC 3339; "never" is `None`.
            return Err(crate::error::InputError::new(
                "expires_at",
                "is after 9999-12-31T23:59:59.999Z; for a consent that does not expire, give None",
            )
            .into());
        }
        let purpose = P::ID;
        let without_consent = (!P::LEGAL_BASIS.requires_consent())
            .then_some("does not rely on consent; record a collection for it instead");
        self.append_consent_change::<P>(actor, subject, without_consent, move |subject| Body::Granted {
            subject,
            purpose: purpose.to_owned(),
            scope,
            expires_at,
        })
    }

    /// Records a withdrawal made through `actor`. See [`Ledger::withdraw`].
    ///
    /// # Errors
    /// As [`Ledger::withdraw`].
    pub fn withdraw_as<P: Purpose>(&self, actor: Actor, subject: &SubjectId) -> Result<Recorded, WriteError> {
        check_purpose::<P>()?;
        let purpose = P::ID;
        let without_consent = (!P::LEGAL_BASIS.requires_consent()).then_some(
            "does not rely on consent, so there is no consent to withdraw; erase the subject \
             or collect again with a narrower scope",
        );
        self.append_consent_change::<P>(actor, subject, without_consent, move |subject| Body::Withdrawn {
            subject,
            purpose: purpose.to_owned(),
        })
    }

    /// Appends a grant or withdrawal about `subject` for purpose `P` (refused once the
    /// subject is erased), through the group-commit queue.
    ///
    /// `without_consent` is the refusal for a purpose type that is not consent-based:
    /// given unless the subject holds an identifier collected for the purpose on a
    /// basis that is, or has a consent record for the purpose (either through another
    /// type with the same id), since the decisions then rest on its consent. Checked against the state the change is
    /// appended to, as decisions would see it.
    fn append_consent_change<P: Purpose>(
        &self,
        actor: Actor,
        subject: &SubjectId,
        without_consent: Option<&'static str>,
        body: impl FnOnce(SubjectId) -> Body + Send + 'static,
    ) -> Result<Recorded, WriteError> {
        let subject = subject.clone();
        self.append_combined(
            actor,
            Box::new(move |state: &State| {
                if let Some(refusal) = without_consent {
                    // As decisions do: consent decides when an identifier was collected
                    // for the id on a consent basis, or the subject has a consent record
                    // for it (given through another type with the same id); never for a
                    // built-in id reserved for another basis (whatever a log written
                    // before the reservation holds). (The subject's consent record first:
                    // the other is a scan of every identifier record.)
                    if const { crate::purpose::lone_basis(P::ID).is_some() }
                        || state.consent_for(&subject, P::ID).is_none()
                            && !state.collected_on_consent(&subject, P::ID)
                    {
                        return Err(crate::error::InputError::new("purpose", refusal).into());
                    }
                }
                if let Some(at) = state.erased_at(&subject) {
                    return Err(WriteError::SubjectErased { erased_at: at });
                }
                if !state.can_hold_purpose(P::ID) {
                    return Err(too_many_purposes());
                }
                Ok(body(subject))
            }),
        )
    }

    /// Makes every entry appended so far durable (flush and fsync). Useful with
    /// [`Durability::Relaxed`]; a no-op cost otherwise.
    ///
    /// # Errors
    /// Storage failures. A failed sync is final, as one inside an append is: the
    /// ledger then takes no more writes (reopen it to continue from what is on disk).
    /// Appends whose entries were stored and not yet synced report
    /// [`WriteError::NotDurable`] (under `GroupCommit` and `Relaxed` already in effect;
    /// whether they survive a reopen depends on the disk); appends not stored yet report
    /// [`WriteError::Failed`] (they will not take effect). This sync reports
    /// [`WriteError::Failed`] also if such a failure happened while it ran.
    pub fn sync(&self) -> Result<(), WriteError> {
        let written = self.inner.group.written.load(Ordering::SeqCst);
        // Aggregates that cannot be written (a storage failure, or an edited record
        // under their key) stay in memory; they must not keep the entries from syncing.
        let flushed = self
            .inner
            .recorder
            .flush(&*self.inner.store, self.inner.record_key());
        self.sync_store()?;
        self.synced_up_to(written)?;
        // Recorded durable, with the time floor (best effort, as between syncs).
        let _ = self
            .inner
            .head
            .save(self.inner.high_water.load(Ordering::Acquire), true);
        flushed?;
        Ok(())
    }

    /// After a sync that started once `written` entries were stored: records them
    /// durable, unless a sync failed meanwhile (then this one proves nothing about
    /// what it covered).
    fn synced_up_to(&self, written: u64) -> Result<(), WriteError> {
        let mut s = self.inner.group.state.lock().map_err(|_| WriteError::Failed)?;
        if s.failed {
            return Err(WriteError::Failed);
        }
        s.durable = s.durable.max(written);
        self.inner.head.durable_up_to(s.durable);
        Ok(())
    }

    /// Syncs the store. A failed sync is final, whoever asked for it: the pages it
    /// failed to write may since have been dropped, so that a later sync succeeds
    /// without them. Nothing written before it is acknowledged as durable after it, and
    /// the ledger takes no more writes (reopen it to continue from what is on disk).
    fn sync_store(&self) -> Result<(), SyncError> {
        let result = self.sync_unless_failed();
        if result.is_err() {
            // Before the writer lock, which an append may hold while it waits for a sync.
            self.inner.mark_failed();
            // The writer lock is taken before the group state, never after: only now.
            if let Ok(mut w) = self.inner.writer.lock() {
                w.failed = true;
            }
        }
        result
    }

    /// Syncs the store, one sync at a time; refused once a sync has failed (the ledger
    /// takes no more writes then), and a failure marks the group failed before the next
    /// sync may start.
    fn sync_unless_failed(&self) -> Result<(), SyncError> {
        let _one_at_a_time = self.inner.syncing.lock().map_err(|_| SyncError::Refused)?;
        if self.inner.group.state.lock().map_or(true, |s| s.failed) {
            return Err(SyncError::Refused);
        }
        // A store that panics while syncing has failed to sync, as far as anyone can
        // tell: caught here, so that the failure is final as any other (unwinding
        // would leave a group sync marked as running, and its waiters waiting).
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.inner.store.sync()))
            .unwrap_or_else(|_| {
                Err(StorageError::new(
                    "syncing the store",
                    "the store panicked while syncing",
                ))
            });
        if result.is_err() {
            self.fail_group_syncs();
        }
        result.map_err(SyncError::Failed)
    }

    /// After a failed sync: no group sync counts any more, and the appends waiting
    /// for one are woken to fail. (The writer is marked failed by the caller, which
    /// may hold its lock.)
    fn fail_group_syncs(&self) {
        let group = &self.inner.group;
        // Before the waiters are woken to fail: each is told so after decisions are
        // denied.
        self.inner.mark_failed();
        if let Ok(mut s) = group.state.lock() {
            s.failed = true;
        }
        group.done.notify_all();
    }

    /// The appending core: under the writer lock, let `prepare` check the change against
    /// the current state and build the body; sign and store it, then apply it to the
    /// state. `Immediate` syncs before applying; `GroupCommit` applies, releases the
    /// writer and then waits for a sync covering the entry (so a decision may see it
    /// before its append returns).
    fn append(
        &self,
        actor: Actor,
        prepare: impl FnOnce(&State, &dyn Backend) -> Result<Prepared, WriteError>,
    ) -> Result<Recorded, WriteError> {
        self.append_then(actor, |state, store, _| prepare(state, store), |_| {})
    }

    /// [`Ledger::append`] where `prepare` also sees the current signing key, and
    /// `appended` runs under the writer lock once the entry is stored (key rotation
    /// switches keys there).
    fn append_then(
        &self,
        actor: Actor,
        prepare: impl FnOnce(&State, &dyn Backend, &Writer) -> Result<Prepared, WriteError>,
        appended: impl FnOnce(&mut Writer),
    ) -> Result<Recorded, WriteError> {
        let mut w = self
            .inner
            .writer
            .lock()
            .map_err(|_| self.inner.writer_poisoned())?;
        let (recorded, new) = self.append_locked(&mut w, actor, prepare, appended)?;
        drop(w);
        if new {
            self.make_durable(recorded.seq)?;
        } else if self.inner.durability == Durability::GroupCommit {
            // Already recorded, by an entry that may still be waiting for its sync (it
            // is in the state as soon as it is stored): acknowledged only once durable.
            self.wait_durable(recorded.seq)?;
        } else if self.inner.durability == Durability::Immediate {
            // Already recorded by an entry synced before it was applied, whose appender
            // may not yet have recorded it durable: recorded here, so that a checkpoint
            // taken after this returns covers it (and its receipt is issued).
            self.make_durable(recorded.seq)?;
        }
        Ok(recorded)
    }

    /// The part of an append done under the writer lock: prepare, sign, store (synced
    /// here for `Immediate`), apply to the state. Returns the entry and whether it is new
    /// (`false`: `prepare` found it already recorded).
    ///
    /// The storing stage is locked too (after the writer, the order every path takes),
    /// so entries a group-commit leader signed earlier are stored and applied before
    /// `prepare` looks at the state.
    fn append_locked(
        &self,
        w: &mut Writer,
        actor: Actor,
        prepare: impl FnOnce(&State, &dyn Backend, &Writer) -> Result<Prepared, WriteError>,
        appended: impl FnOnce(&mut Writer),
    ) -> Result<(Recorded, bool), WriteError> {
        let inner = &*self.inner;
        if w.failed {
            return Err(WriteError::Failed);
        }
        let stage = inner.stage.lock().map_err(|_| WriteError::Failed)?;
        if stage.failed {
            return Err(WriteError::Failed);
        }
        // A sync that failed (anyone's: `Ledger::sync`, an erasure's, a group's) refuses
        // every later one: an entry stored now could never be acknowledged, and would
        // still take effect after a reopen. Refused before anything is written. (A sync
        // failing from here on, in another thread, is reported to this caller as
        // `NotDurable`: below.)
        if self.sync_has_failed() {
            return Err(WriteError::Failed);
        }
        let prepared = {
            let state = inner.state.read().map_err(|_| WriteError::Failed)?;
            prepare(&state, &*inner.store, w)?
        };
        let (body, lookup) = match prepared {
            Prepared::Already(seq) => return Ok((self.recorded_at(seq)?, false)),
            Prepared::Append(body, lookup) => (body, lookup),
        };
        let mut salt = [0u8; SALT_LEN];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut salt);
        let sealed = self.seal(w, actor, body, lookup, salt)?;
        inner.store.append_entry(sealed.entry.seq, &sealed.bytes)?;
        // Final, as in `sync_store` (which takes the writer lock, held here; the group
        // state is taken after the writer, never before). One sync at a time: one that
        // failed before this one started (`Ledger::sync`, an erasure's) refuses it, since
        // the pages it failed to write may have held this entry.
        let failed_sync = match inner.durability {
            Durability::Immediate => self.sync_unless_failed().err(),
            // `Relaxed` has no sync of its own, but a sync that failed in another thread
            // while this entry was being stored, or that was running then (waited out:
            // syncs hold `syncing`, and mark a failure before they let go of it), may have
            // left the entry off the disk: not acknowledged, as under `Immediate`, and not
            // applied unless it only takes away (found by review r146: it was applied
            // first). Lock order: the writer, held here, before `syncing`.
            Durability::Relaxed => {
                drop(inner.syncing.lock());
                self.sync_has_failed().then_some(SyncError::Refused)
            }
            Durability::GroupCommit => None,
        };
        // After a failed sync the entry is stored, and it may survive. A change that
        // only takes use or trust away (a withdrawal, an expiry, an erasure, a key
        // revocation, or a grant or collection that narrows what is in force:
        // `State::only_narrows`) takes effect now all the same, as every entry of a
        // failed group does under `GroupCommit` (applied before its sync): denying is
        // never wrong, and what the person (or the operator) asked for must not wait for
        // a reopen. Any other collection, grant or key rotation waits for a reopen to
        // find it on disk.
        if failed_sync.is_some() {
            w.failed = true;
            inner.mark_failed();
        }
        let failed_sync = match failed_sync {
            // Judged only then, against the state the entry is applied to (the writer
            // and the storing stage are held until it is, so nothing else changes it).
            Some(e)
                if !inner
                    .state
                    .read()
                    .is_ok_and(|state| state.only_narrows(&sealed.entry.body, sealed.lookup.as_ref())) =>
            {
                return Err(e.not_durable())
            }
            other => other,
        };
        w.next_seq = sealed.entry.seq.saturating_add(1);
        w.last_hash = sealed.hash;
        appended(w);
        let recorded = sealed.recorded();
        let applied = self.apply_stored(vec![sealed]);
        if let Some(e) = failed_sync {
            // (Applying fails only on a poisoned lock, after which nothing is decided.)
            return Err(e.not_durable());
        }
        applied?;
        drop(stage);
        Ok((recorded, true))
    }

    /// Whether a sync of the store has failed (which refuses every later one).
    fn sync_has_failed(&self) -> bool {
        self.inner.group.state.lock().map_or(true, |s| s.failed)
    }

    /// The stored entry at `seq` (already recorded: the store holds it, the storing
    /// stage is locked) as its position and timestamp.
    fn recorded_at(&self, seq: u64) -> Result<Recorded, WriteError> {
        let unreadable = || {
            WriteError::Storage(StorageError::new(
                "reading an entry already recorded",
                std::io::Error::new(std::io::ErrorKind::InvalidData, "the entry is missing or broken"),
            ))
        };
        let bytes = self.inner.store.entry(seq)?.ok_or_else(unreadable)?;
        let stored = entry::decode(&bytes).map_err(|_| unreadable())?;
        Ok(Recorded {
            seq,
            timestamp: stored.entry.timestamp,
        })
    }

    /// Signs `body` as the next entry, after the writer's last one, with `salt` (fresh
    /// random bytes). Stores nothing and does not move the writer on.
    fn seal(
        &self,
        w: &Writer,
        actor: Actor,
        body: Body,
        lookup: Option<Pseudonym>,
        salt: [u8; SALT_LEN],
    ) -> Result<Sealed, WriteError> {
        // Timestamps never go backwards in the log: `now` never runs earlier than a time
        // already seen, which includes every entry's (the high-water time starts at the
        // last entry's at open), so a clock that stepped back is clamped rather than
        // refusing the change.
        let timestamp = self.now();
        let entry = Entry {
            seq: w.next_seq,
            timestamp,
            actor,
            prev_hash: w.last_hash,
            salt,
            body,
        };
        let signed = entry::encode_signed_part(&entry)?;
        entry::check_writable(signed.len())?;
        let signature = w.key.sign_entry(&signed);
        let bytes = entry::seal(signed, &signature);
        Ok(Sealed {
            hash: entry::entry_hash(&bytes),
            entry,
            bytes,
            lookup,
        })
    }

    /// With the storing stage locked, after `sealed` (consecutive, in log order) are
    /// stored: adds them to the Merkle tree and applies them to the state, then counts
    /// them as written.
    fn apply_stored(&self, sealed: Vec<Sealed>) -> Result<(), WriteError> {
        let inner = &*self.inner;
        let Some(last) = sealed.last().map(|s| s.entry.seq) else {
            return Ok(());
        };
        if let Ok(mut tree) = inner.tree.lock() {
            if let Some(t) = tree.as_mut() {
                for s in &sealed {
                    t.push(crate::merkle::leaf_hash(&s.bytes));
                }
            }
        }
        {
            let mut state = inner.state.write().map_err(|_| WriteError::Failed)?;
            for s in sealed {
                state.apply(&s.entry, s.lookup);
            }
        }
        inner
            .group
            .written
            .store(last.saturating_add(1), Ordering::SeqCst);
        Ok(())
    }

    /// How many entries the state has applied: where reads of the log that must agree
    /// with decisions stop (an entry stored by an `Immediate` append whose sync failed
    /// is applied only if it takes use away: decisions never saw the others).
    pub(crate) fn applied_len(&self) -> Result<u64, ReadError> {
        Ok(self.inner.state.read().map_err(|_| poisoned())?.len)
    }

    /// How many entries the state has applied, read without a lock (set just after each
    /// application, before the change is acknowledged): what a matcher compares with
    /// the state's length it decided at to tell whether anything changed since.
    pub(crate) fn applied_hint(&self) -> u64 {
        self.inner.group.written.load(Ordering::Acquire)
    }

    /// After a new entry `seq` was appended (and the writer lock released): returns
    /// once it is as durable as the setting promises.
    fn make_durable(&self, seq: u64) -> Result<(), WriteError> {
        match self.inner.durability {
            Durability::Immediate => {
                if let Ok(mut s) = self.inner.group.state.lock() {
                    s.durable = s.durable.max(seq.saturating_add(1));
                    self.inner.head.durable_up_to(s.durable);
                }
                Ok(())
            }
            Durability::GroupCommit => self.wait_durable(seq),
            Durability::Relaxed => Ok(()),
        }
    }

    /// Group commit: returns once entry `seq` is durable, syncing if nobody else is.
    fn wait_durable(&self, seq: u64) -> Result<(), WriteError> {
        let group = &self.inner.group;
        let mut s = group.state.lock().map_err(|_| WriteError::Failed)?;
        loop {
            if s.durable > seq {
                return Ok(());
            }
            if s.failed {
                // The entry is stored: it may take effect after a reopen.
                return Err(SyncError::Refused.not_durable());
            }
            if s.syncing {
                s = group.done.wait(s).map_err(|_| WriteError::Failed)?;
                continue;
            }
            s.syncing = true;
            // Everything written before the sync starts is covered by it.
            let target = group.written.load(Ordering::SeqCst);
            drop(s);
            let result = self.sync_store();
            s = group.state.lock().map_err(|_| WriteError::Failed)?;
            s.syncing = false;
            match result {
                // Unless another sync failed meanwhile (`Ledger::sync`, an erasure):
                // then this one proves nothing.
                Ok(()) if !s.failed => {
                    s.durable = s.durable.max(target);
                    self.inner.head.durable_up_to(s.durable);
                }
                Ok(()) => {}
                Err(e) => {
                    group.done.notify_all();
                    return Err(e.not_durable());
                }
            }
            group.done.notify_all();
        }
    }

    /// The subject's consent history, oldest first, for showing to the person. After
    /// an erasure only the erasure entry is shown.
    ///
    /// The decision state does not keep which entries are about whom (it would cost
    /// memory for every entry, for a question asked rarely and one person at a time):
    /// this reads and decodes every entry of the log, so it takes time in proportion to
    /// the log's length, reading from disk. [`Ledger::export_subject`] reads the
    /// history this way too. For a subject the ledger has never recorded anything
    /// about, and for an erased one (whose history is its erasure entry), the log is
    /// not scanned (for an erased one, unless a key was revoked: then it is, to learn
    /// who signed the erasure).
    ///
    /// An entry signed by a key at or after the position it was revoked from is marked
    /// ([`HistoryEntry::untrusted`]). Every entry is shown as recorded, including those
    /// an older version of this crate wrote and decisions now ignore
    /// ([`Change::decides`]).
    ///
    /// # Errors
    /// Storage failures, or an [`IntegrityError`] if a stored entry is broken or
    /// missing (any entry of the log, as each is read to learn whom it is about).
    pub fn history(&self, subject: &SubjectId) -> Result<Vec<HistoryEntry>, ReadError> {
        let (len, known, erased_at) = {
            let state = self.inner.state.read().map_err(|_| poisoned())?;
            (state.len, state.knows_subject(subject), state.erased_at(subject))
        };
        self.history_at(subject, len, known, erased_at)
    }

    /// [`Ledger::history`] as of the state's length `len` (whether it `known` the
    /// subject, and when it was erased, read with it).
    pub(crate) fn history_at(
        &self,
        subject: &SubjectId,
        len: u64,
        known: bool,
        erased_at: Option<u64>,
    ) -> Result<Vec<HistoryEntry>, ReadError> {
        if !known {
            return Ok(Vec::new());
        }
        if let Some(seq) = erased_at {
            let bytes = self.inner.store.entry(seq)?.ok_or(IntegrityError {
                position: seq,
                problem: IntegrityProblem::Missing { next: seq },
            })?;
            let stored = entry::decode(&bytes).map_err(|problem| IntegrityError {
                position: seq,
                problem,
            })?;
            let mut out: Vec<HistoryEntry> = history_entry(stored.entry).into_iter().collect();
            // The log is read for its key changes only if a key was revoked in it.
            let revoked = self
                .inner
                .revocations
                .lock()
                .map_err(|_| poisoned())?
                .iter()
                .any(|(.., at)| *at < len);
            if revoked {
                let signers = self.walk(len, |_| {})?;
                mark_untrusted(&mut out, &signers.untrusted());
            }
            return Ok(out);
        }
        let mut out = Vec::new();
        let signers = self.walk(len, |e| {
            if e.body.subject() == Some(subject) {
                out.extend(history_entry(e));
            }
        })?;
        if signers.any_revoked() {
            mark_untrusted(&mut out, &signers.untrusted());
        }
        Ok(out)
    }

    /// Reads the first `len` entries of the log (those the state had applied when it
    /// was asked) in order, handing each to `each` and learning who signed it.
    fn walk(&self, len: u64, mut each: impl FnMut(Entry)) -> Result<replay::Signers, ReadError> {
        let mut signers = replay::Signers::default();
        let mut read = 0u64;
        for e in decoded_entries(&*self.inner.store).take(usize::try_from(len).unwrap_or(usize::MAX)) {
            let e = e?;
            read = read.saturating_add(1);
            signers.observe(&e);
            each(e);
        }
        if read < len {
            return Err(IntegrityError {
                position: read,
                problem: IntegrityProblem::Missing { next: read },
            }
            .into());
        }
        Ok(signers)
    }

    /// Checks the whole log: every entry decodes canonically, sits at its position,
    /// links to its predecessor by hash, has a non-decreasing timestamp, and carries a
    /// valid signature by the key authorized at its position (batch-verified). Entries
    /// signed with a key at or after the position from which the log revoked it are
    /// not an error here: they are listed in [`VerifyReport::untrusted`] (the log is
    /// intact; the ledger does not vouch for them). Use
    /// [`VerifyReport::require_trusted`] to fail on them.
    ///
    /// # Errors
    /// [`ReadError::Integrity`] naming the first bad position; storage failures.
    ///
    /// Reading and decoding run on the calling thread while other threads (one per
    /// core, up to four) check the signatures, batch by batch. Each checking thread
    /// makes its own throwaway key (below). Batch verification is not strict; signatures it would
    /// accept and the strict check of one signature refuses (an R of small order, or
    /// encoded non-canonically) are refused before batching. One kind still differs: an
    /// R with a small torsion component added. Only the holder of the signing key can
    /// make one. Each batch holds a signature by a throwaway key made for this call, so
    /// the batch's weights cannot be chosen: a batch with such a signature passes at
    /// most half the time, and a second call is refused with its own chance (a log holding one
    /// passes `n` calls with a chance of at most 2⁻ⁿ). Receipts check their
    /// entry's signature strictly and refuse it; opening checks only the last entry's
    /// signature, so it refuses it only there.
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        verify_store(&*self.inner.store)
    }
}

/// A log entry as shown in a history; `None` for entries about no subject (genesis,
/// key management).
pub(crate) fn history_entry(e: Entry) -> Option<HistoryEntry> {
    let change = match e.body {
        Body::Collected {
            kind,
            purpose,
            basis,
            scope,
            ..
        } => Change::Collected {
            kind,
            purpose,
            legal_basis: basis,
            scope,
        },
        Body::Granted {
            purpose,
            scope,
            expires_at,
            ..
        } => Change::Granted {
            purpose,
            scope,
            expires_at,
        },
        Body::Withdrawn { purpose, .. } => Change::Withdrawn { purpose },
        Body::Expired { purpose, .. } => Change::Expired { purpose },
        Body::Erased { .. } => Change::Erased,
        Body::Genesis { .. } | Body::KeyRotated { .. } | Body::KeyRevoked { .. } => return None,
    };
    Some(HistoryEntry {
        seq: e.seq,
        timestamp: e.timestamp,
        actor: e.actor,
        change,
        untrusted: None,
    })
}

/// How often verification reports progress, in entries.
pub(crate) const PROGRESS_EVERY: u64 = 4096;

/// The full check behind [`Ledger::verify`] and [`Inspector::verify`](crate::Inspector::verify).
pub(crate) fn verify_store(store: &dyn Backend) -> Result<VerifyReport, ReadError> {
    verify_store_with(store, &mut |_| {})
}

/// The log's entries in order, decoded, each checked to sit at its position (its
/// storage key, and the sequence number it carries): for reading every entry without
/// the chain and signature checks that [`Ledger::verify`] makes.
pub(crate) fn decoded_entries(store: &dyn Backend) -> impl Iterator<Item = Result<Entry, ReadError>> + '_ {
    let mut next = 0u64;
    store.entries_from(0).map(move |item| {
        let (key, bytes) = item?;
        let position = next;
        let broken = |problem| IntegrityError { position, problem };
        let key = key.map_err(|_| broken(IntegrityProblem::Undecodable("storage key is not a position")))?;
        if key != position {
            return Err(broken(IntegrityProblem::Missing { next: key }).into());
        }
        let stored = entry::decode(&bytes).map_err(broken)?;
        if stored.entry.seq != position {
            return Err(broken(IntegrityProblem::Misplaced {
                stored_at: position,
                claims: stored.entry.seq,
            })
            .into());
        }
        next = next.saturating_add(1);
        Ok(stored.entry)
    })
}

/// [`verify_store`] of entries `0..upto` only (the intact prefix of a damaged log).
pub(crate) fn verify_store_upto(store: &dyn Backend, upto: u64) -> Result<VerifyReport, ReadError> {
    verify_entries(store, upto, &mut |_| {})
}

/// [`verify_store`], calling `progress` with the number of entries read every
/// [`PROGRESS_EVERY`] entries.
pub(crate) fn verify_store_with(
    store: &dyn Backend,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, ReadError> {
    verify_entries(store, u64::MAX, progress)
}

fn verify_entries(
    store: &dyn Backend,
    upto: u64,
    progress: &mut dyn FnMut(u64),
) -> Result<VerifyReport, ReadError> {
    let upto = usize::try_from(upto).unwrap_or(usize::MAX);
    let (to_checker, batches) = std::sync::mpsc::sync_channel(4);
    let batches: &replay::SharedBatches = &std::sync::Mutex::new(Some(batches));
    std::thread::scope(|scope| {
        // One signature checker per core, sharing the channel (the reading thread
        // needs about an eighth of a core beside them: BENCHMARKS.md, "Stop 27").
        let checkers: Vec<_> = (0..verify_checkers())
            .filter_map(|_| {
                crate::threads::spawn_scoped(scope, SIGNATURE_CHECKER, move || {
                    replay::check_shared_batches(batches)
                })
                .ok()
            })
            .collect();
        // Without a thread, the signatures are checked on this one, batch by batch.
        let mut replay = if checkers.is_empty() {
            replay::Replay::new(true)
        } else {
            replay::Replay::pipelined(to_checker)
        };
        let walked = (|| -> Result<(), ReadError> {
            for raw in store.entries_from(0).take(upto) {
                // A storage failure yields to a bad signature before it (see
                // `first_failure`): the signatures read so far are checked first.
                let raw = match raw {
                    Ok(raw) => raw,
                    Err(e) => {
                        replay.finish()?;
                        return Err(e.into());
                    }
                };
                replay.step(raw)?;
                if replay.len().is_multiple_of(PROGRESS_EVERY) {
                    progress(replay.len());
                }
            }
            replay.finish()?;
            progress(replay.len());
            Ok(())
        })();
        replay.close_checker();
        let checked = joined_checkers(checkers);
        first_failure(walked, checked).map(|()| VerifyReport {
            entries: replay.len(),
            head: replay.head_hash(),
            keys: replay
                .keys
                .iter()
                .map(|k| k.key)
                .collect::<std::collections::HashSet<_>>()
                .len(),
            current_key: replay
                .current_key()
                .and_then(|k| crate::signing::VerifyingKey::from_bytes(&k).ok()),
            untrusted: replay.untrusted(),
        })
    })
}

/// Joins every signature checker thread and gives the first bad signature among their
/// outcomes. If one panicked (it closed the channel, so the others stop), its panic is
/// raised again once all are joined, as it would have been had the reading thread
/// checked the signatures itself: a panic says nothing about the log, so it is not
/// turned into a finding about one of its entries.
fn joined_checkers(
    checkers: Vec<std::thread::ScopedJoinHandle<'_, Result<(), IntegrityError>>>,
) -> Result<(), IntegrityError> {
    let mut panicked = None;
    let outcomes: Vec<_> = checkers
        .into_iter()
        .filter_map(|checker| checker.join().map_err(|p| panicked = Some(p)).ok())
        .collect();
    if let Some(payload) = panicked {
        std::panic::resume_unwind(payload);
    }
    replay::first_bad(outcomes)
}

/// The name of [`verify_store`]'s signature checker threads.
pub(super) const SIGNATURE_CHECKER: &str = "consent-ledger-verify";

/// How many threads check signatures in [`verify_store`]: one per core the process
/// may use, at least one and at most four.
fn verify_checkers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

/// The outcome of a verification from its two halves: the walk (reading, decoding, the
/// chain) and the signature checker. The error at the first position wins; a storage
/// failure of the walk yields to any bad signature, which lies before it.
fn first_failure(
    walked: Result<(), ReadError>,
    checked: Result<(), IntegrityError>,
) -> Result<(), ReadError> {
    match (walked, checked) {
        (Err(ReadError::Integrity(w)), Err(c)) if w.position < c.position => Err(w.into()),
        (_, Err(c)) => Err(c.into()),
        (walked, Ok(())) => walked,
    }
}

pub(super) fn poisoned() -> ReadError {
    ReadError::Storage(crate::error::StorageError::new(
        "reading the state",
        std::io::Error::other("a thread panicked while changing the ledger state"),
    ))
}

fn check_purpose<P: Purpose>() -> Result<(), WriteError> {
    crate::purpose::keeps_reserved_ids::<P>();
    if is_valid_purpose_id(P::ID) {
        Ok(())
    } else {
        Err(WriteError::InvalidPurposeId)
    }
}

fn check_scope(scope: &RecipientScope) -> Result<(), WriteError> {
    match scope.recipients() {
        Some(list) if list.len() > entry::MAX_SCOPE_RECIPIENTS => {
            Err(crate::error::InputError::new("recipient scope", "lists more than 256 recipients").into())
        }
        _ => Ok(()),
    }
}

/// Collecting again an identifier the subject holds needs the secret its earlier
/// collections were linked with, and the vault no longer has it.
fn lost_link() -> WriteError {
    WriteError::Storage(crate::error::StorageError::new(
        "reading a subject secret",
        std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the subject's secret that linked this identifier is gone from the vault (a damaged record \
             is dropped at open); collecting it again would unlink its earlier collections",
        ),
    ))
}

/// The subject's secret, made and stored if it has none yet, unless `must_exist` (the
/// subject holds identifiers linked with it): then a missing secret is an error, not a
/// new one.
fn subject_secret(
    store: &dyn Backend,
    subject: &SubjectId,
    must_exist: bool,
) -> Result<SubjectSecret, WriteError> {
    match store.secret(subject.as_str())? {
        Some(bytes) => SubjectSecret::from_slice(&bytes).ok_or_else(|| {
            WriteError::Storage(crate::error::StorageError::new(
                "reading a subject secret",
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "stored subject secret has the wrong length",
                ),
            ))
        }),
        None if must_exist => Err(lost_link()),
        None => {
            let secret = SubjectSecret::generate();
            store.put_secret(subject.as_str(), secret.as_bytes())?;
            Ok(secret)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    fn at(position: u64, problem: IntegrityProblem) -> IntegrityError {
        IntegrityError { position, problem }
    }

    /// Only consent changes for `"security"` decide nothing; the same changes for any
    /// other id, and every collection (one for `"security"` on another basis takes the
    /// identifier away from it: review h34), decide.
    #[test]
    fn changes_that_decide() {
        let collected = |purpose: &str, legal_basis| Change::Collected {
            kind: IdentifierKind::Phone,
            purpose: purpose.into(),
            legal_basis,
            scope: RecipientScope::first_party(),
        };
        let consent = |purpose: &str| {
            [
                Change::Granted {
                    purpose: purpose.into(),
                    scope: RecipientScope::all_partners(),
                    expires_at: None,
                },
                Change::Withdrawn {
                    purpose: purpose.into(),
                },
                Change::Expired {
                    purpose: purpose.into(),
                },
            ]
        };
        assert!(collected("security", LegalBasis::LegitimateInterest).decides());
        assert!(collected("security", LegalBasis::Consent).decides());
        assert!(collected("login", LegalBasis::Consent).decides());
        assert!(collected("advertising", LegalBasis::Consent).decides());
        assert!(consent("security").iter().all(|c| !c.decides()));
        assert!(consent("advertising").iter().all(Change::decides));
        assert!(consent("login").iter().all(Change::decides));
        assert!(Change::Erased.decides());
    }

    proptest::proptest! {
        /// Marking by binary search gives what a scan of every range gives, on ranges
        /// as `untrusted_ranges` makes them (disjoint, in log order).
        #[test]
        fn marks_are_those_of_a_scan(
            runs in proptest::collection::vec((0u64..4, 0u64..5, proptest::bool::ANY), 0..10),
            seqs in proptest::collection::vec(0u64..80, 0..30),
        ) {
            let mut ranges = Vec::new();
            let mut at = 0u64;
            for (gap, len, untrusted) in runs {
                let from = at + gap;
                if untrusted {
                    ranges.push(UntrustedRange { from, to: from + len, revoked_by: from + len + 1, revoked_from: from });
                }
                at = from + len + 1;
            }
            let mut history: Vec<HistoryEntry> = seqs
                .iter()
                .map(|seq| HistoryEntry {
                    seq: *seq,
                    timestamp: Timestamp::EPOCH,
                    actor: Actor::System,
                    change: Change::Withdrawn { purpose: "p".into() },
                    untrusted: None,
                })
                .collect();
            mark_untrusted(history.iter_mut(), &ranges);
            for h in &history {
                let scan = ranges.iter().find(|r| r.from <= h.seq && h.seq <= r.to).copied();
                proptest::prop_assert_eq!(h.untrusted, scan);
            }
        }
    }

    #[test]
    fn the_first_bad_position_wins() {
        let chain = || Err(ReadError::Integrity(at(9, IntegrityProblem::ChainBroken)));
        let sig = |p| Err(at(p, IntegrityProblem::BadSignature));
        assert!(matches!(first_failure(chain(), sig(4)), Err(ReadError::Integrity(e)) if e.position == 4));
        assert!(matches!(first_failure(chain(), sig(12)), Err(ReadError::Integrity(e)) if e.position == 9));
        assert!(matches!(first_failure(chain(), Ok(())), Err(ReadError::Integrity(e)) if e.position == 9));
        assert!(matches!(first_failure(Ok(()), sig(3)), Err(ReadError::Integrity(e)) if e.position == 3));
        let storage = Err(ReadError::Storage(crate::error::StorageError::new(
            "reading entries",
            std::io::Error::other("disk"),
        )));
        assert!(matches!(first_failure(storage, sig(3)), Err(ReadError::Integrity(e)) if e.position == 3));
        assert!(first_failure(Ok(()), Ok(())).is_ok());
    }

    #[test]
    fn an_aggregate_spans_a_use_recorded_after_a_later_one() {
        use crate::{Advertising, Identifier, ManualClock, Recording, SubjectId};
        let dir = tempfile::tempdir().unwrap();
        let base = 1_699_999_980_000; // a whole minute: one bucket from here
        let clock = ManualClock::new(Timestamp::from_millis(base + 30_000));
        let ledger = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .clock(clock)
            .record_decisions(Recording::Aggregated {
                bucket: std::time::Duration::from_secs(60),
            })
            .open()
            .unwrap();
        let s = SubjectId::new("s-1").unwrap();
        let id = Identifier::<Advertising>::email("p@example.org").unwrap();
        let acme = Recipient::partner("acme").unwrap();
        ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        ledger
            .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
        let late = ledger.authorize(&id, &acme).unwrap().evidence().clone();
        // Two threads' uses reach the recorder out of time order.
        let early = crate::Evidence {
            decided_at: Timestamp::from_millis(base + 1_000),
            ..late.clone()
        };
        ledger.record(&early, &acme).unwrap();
        let records = ledger.decision_records().unwrap();
        let [record] = records.as_slice() else {
            panic!("{} records", records.len());
        };
        assert_eq!(record.count(), 2);
        assert_eq!(record.times(), (early.decided_at, late.decided_at));
    }

    /// A checker thread that panics makes `verify` panic with its payload, once every
    /// checker is joined, whatever the others found: not a bad signature at entry 0, as
    /// it was reported before stop 32.
    #[test]
    fn a_checker_that_panics_is_not_a_bad_signature() {
        let bad = |position| {
            Err(IntegrityError {
                position,
                problem: IntegrityProblem::BadSignature,
            })
        };
        for panics_first in [true, false] {
            let caught = std::panic::catch_unwind(|| {
                std::thread::scope(|s| {
                    let mut checkers = vec![s.spawn(|| bad(40))];
                    let boom =
                        s.spawn(|| -> Result<(), IntegrityError> { std::panic::panic_any("checker failed") });
                    if panics_first {
                        checkers.insert(0, boom);
                    } else {
                        checkers.push(boom);
                    }
                    joined_checkers(checkers)
                })
            });
            let payload = caught.unwrap_err();
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"checker failed"));
        }
        // Without a panic, the lowest position.
        let first = std::thread::scope(|s| {
            joined_checkers(vec![s.spawn(|| bad(40)), s.spawn(|| bad(7)), s.spawn(|| Ok(()))])
        });
        assert_eq!(first.unwrap_err().position, 7);
    }

    /// Checker threads sharing one channel, bad signatures at positions 17 and 25 (the
    /// second and third batches, which different threads may take): the first is named,
    /// with one thread and with several, whichever thread finds what; and the channel
    /// closes on the first failure, so the sender stops long before its 200 batches.
    #[test]
    fn the_checker_threads_name_the_first_bad_signature_and_stop() {
        use ed25519_dalek::Signer;
        let key = SigningKey::from_bytes(&[3; 32]);
        for threads in [1, 2, 3] {
            for _ in 0..5 {
                let (tx, rx) = std::sync::mpsc::sync_channel(1);
                let shared: replay::SharedBatches = std::sync::Mutex::new(Some(rx));
                let (first, sent) = std::thread::scope(|s| {
                    let checkers: Vec<_> = (0..threads)
                        .map(|_| s.spawn(|| replay::check_shared_batches(&shared)))
                        .collect();
                    let mut sent = 0;
                    for b in 0..200u64 {
                        let batch: Vec<replay::SigCheck> = (0..10u64)
                            .map(|i| {
                                let pos = b * 10 + i;
                                let msg = pos.to_be_bytes().to_vec();
                                let mut sig = key.inner().sign(&msg).to_bytes();
                                if pos == 17 || pos == 25 {
                                    sig[0] ^= 1;
                                }
                                (msg, sig, key.verifying_key().to_bytes(), pos)
                            })
                            .collect();
                        if tx.send(batch).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    drop(tx);
                    let first = replay::first_bad(checkers.into_iter().map(|c| c.join().unwrap()));
                    (first, sent)
                });
                let first = first.unwrap_err();
                assert_eq!(
                    (first.position, first.problem),
                    (17, IntegrityProblem::BadSignature)
                );
                assert!(sent < 200, "{threads} threads: every batch was taken");
            }
        }
    }
}
