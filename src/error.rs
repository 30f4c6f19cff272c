//! Error types, one per domain.
//!
//! Messages are lower-case without trailing punctuation. They name fields, kinds and
//! ledger positions, never an identifier's value, a subject's data or key material.
//! Every enum is `#[non_exhaustive]`: new failure modes will be added as the crate grows,
//! so match with a wildcard arm.

use crate::identifier::IdentifierKind;

/// Caller input that breaks a rule: which field, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {problem}")]
pub struct InputError {
    field: &'static str,
    problem: &'static str,
}

impl InputError {
    pub(crate) const fn new(field: &'static str, problem: &'static str) -> Self {
        InputError { field, problem }
    }

    /// The field that was rejected, such as `"subject id"`.
    pub fn field(&self) -> &'static str {
        self.field
    }

    /// What is wrong with it, such as `"is empty"`.
    pub fn problem(&self) -> &'static str {
        self.problem
    }
}

/// A raw identifier that cannot be parsed. The message never contains the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentifierError {
    /// Nothing but whitespace was given.
    #[error("{kind} is empty")]
    Empty {
        /// The kind of identifier expected.
        kind: IdentifierKind,
    },
    /// The input is longer than any valid identifier of any kind.
    #[error("{kind} input is {len} bytes, more than the {max} accepted")]
    TooLong {
        /// The kind of identifier expected.
        kind: IdentifierKind,
        /// Length of the input in bytes.
        len: usize,
        /// The largest length accepted.
        max: usize,
    },
    /// The input is not a valid identifier of this kind.
    #[error("invalid {kind}: {problem}")]
    Invalid {
        /// The kind of identifier expected.
        kind: IdentifierKind,
        /// What is wrong, without the value.
        problem: &'static str,
    },
}

/// The storage engine failed (I/O error, lock held by another process, corrupt files),
/// or the operating system refused a resource the ledger needs (open replays the log on
/// helper threads, and fails this way when none can be started).
///
/// The source is chained for diagnostics; it describes files and operations, not data.
#[derive(Debug, thiserror::Error)]
#[error("storage failure while {context}")]
pub struct StorageError {
    context: &'static str,
    #[source]
    source: Box<dyn std::error::Error + Send + Sync + 'static>,
}

impl StorageError {
    pub(crate) fn new(
        context: &'static str,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        StorageError {
            context,
            source: source.into(),
        }
    }

    /// What the ledger was doing when storage failed.
    pub fn context(&self) -> &'static str {
        self.context
    }

    /// Whether the failure is damage found in what was read (sled reporting its
    /// database corrupt, or a file of the directory not as sled or the ledger makes
    /// it), as opposed to storage that could not be used (an I/O error, a lock held):
    /// for an audit, a check that failed rather than one that could not run.
    pub fn is_corruption(&self) -> bool {
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(&*self.source);
        while let Some(e) = next {
            if matches!(
                e.downcast_ref::<sled::Error>(),
                Some(sled::Error::Corruption { .. })
            ) || e
                .downcast_ref::<std::io::Error>()
                .is_some_and(|io| io.kind() == std::io::ErrorKind::InvalidData)
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// Where and how the signed log is broken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger integrity broken at entry {position}: {problem}")]
pub struct IntegrityError {
    /// Sequence number of the first entry found bad (for a missing entry, the one expected there).
    pub position: u64,
    /// What is wrong there.
    pub problem: IntegrityProblem,
}

/// What is wrong with the log at a position.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IntegrityProblem {
    /// The stored bytes are not a valid entry.
    #[error("entry bytes cannot be decoded ({0})")]
    Undecodable(&'static str),
    /// The entry decodes but is not in canonical form (re-encoding gives other bytes).
    #[error("entry is not canonically encoded")]
    NonCanonical,
    /// The entry was written by a newer (or unknown) format version.
    #[error("entry format version {0} is not supported")]
    UnsupportedVersion(u8),
    /// The entry expected at this position is missing.
    #[error("entry is missing (next stored entry is {next})")]
    Missing {
        /// The next sequence number actually stored.
        next: u64,
    },
    /// The storage key and the sequence number inside the entry disagree (entries moved or swapped).
    #[error("entry is stored under position {stored_at} but says it is entry {claims}")]
    Misplaced {
        /// The position it is stored at.
        stored_at: u64,
        /// The sequence number it carries.
        claims: u64,
    },
    /// The entry's previous-hash does not match the entry before it.
    #[error("hash chain broken: previous-entry hash does not match")]
    ChainBroken,
    /// The signature does not verify under the key authorized at this position.
    #[error("signature does not verify under the authorized key")]
    BadSignature,
    /// The entry's timestamp is earlier than its predecessor's.
    #[error("timestamp is earlier than the previous entry's")]
    TimeWentBackwards,
    /// The first entry is not a genesis entry, or a genesis entry appears later.
    #[error("genesis entry misplaced")]
    GenesisMisplaced,
    /// A field holds a value the format does not allow (such as an invalid purpose id).
    #[error("invalid {0}")]
    InvalidField(&'static str),
    /// A key rotation that the new key did not accept: its acceptance signature (by
    /// the new key, over the rotation's position and the hash of the entry before it)
    /// is missing or wrong. Only the holder of the old key could have written it, and
    /// the old key alone must not be able to hand the log to a key: whoever stole an
    /// old key could otherwise rewrite everything after a genuine rotation.
    #[error("key rotation not accepted by the new key")]
    RotationNotAccepted,
    /// The entry was signed with a key after it was revoked.
    #[error("signed with a key revoked from entry {revoked_from}")]
    RevokedKey {
        /// The first position at which the key is no longer trusted.
        revoked_from: u64,
    },
    /// The log is shorter than a checkpoint kept elsewhere says it was.
    #[error("log is shorter than the trusted checkpoint of size {checkpoint_size}")]
    Truncated {
        /// The size recorded in the trusted checkpoint.
        checkpoint_size: u64,
    },
    /// The log does not extend a checkpoint kept elsewhere.
    #[error("log is not consistent with the trusted checkpoint")]
    InconsistentWithCheckpoint,
    /// The log holds no entry at all, but the ledger's other files (a state snapshot,
    /// the head record, index records or decision records) show that it was used: its
    /// entries were deleted. Opening never starts a new ledger over them.
    #[error("the log is empty, but the ledger's other files show it held entries")]
    LogEmptied,
    /// The log is shorter than the state snapshot written when the ledger was last
    /// closed says it was: entries that had been made durable are gone (the log was
    /// cut, or an older copy of it restored). The position is the first missing entry.
    /// The snapshot is authenticated with the pseudonym key, so this is not a damaged
    /// snapshot. To open the shorter log anyway, remove the `state` file (and the
    /// `head` file, which notices the cut too: [`IntegrityProblem::ShorterThanRecorded`]); only a
    /// trusted checkpoint ([`LedgerBuilder::trusted_checkpoint`](crate::LedgerBuilder::trusted_checkpoint))
    /// protects against a cut that also removed the snapshot.
    #[error("log is shorter than the state snapshot of the last close ({snapshot_len} entries)")]
    ShorterThanSnapshot {
        /// The log length the snapshot was taken at.
        snapshot_len: u64,
    },
    /// The log is shorter than the ledger's head record says was durable: entries that
    /// had been made durable are gone. sled's recovery takes a damaged part of its log
    /// for the torn tail of a crash and drops everything from there (one flipped bit
    /// in its data file does it), or the log was cut or an older copy restored. The
    /// position is the first missing entry. The head record (the `head` file) is
    /// authenticated with the pseudonym key; it is written within about 100 ms of the
    /// durable length moving on, and on sync and close, so a cut of only the entries
    /// made durable just before a crash can go unnoticed.
    /// To open the shorter log anyway, remove the `head` file.
    #[error("log is shorter than the {recorded} entries its head record says were durable")]
    ShorterThanRecorded {
        /// The durable length the head record holds.
        recorded: u64,
    },
    /// The log reaches the position of the state snapshot written when the ledger was
    /// last closed, and holds together (every link and the last signature check out),
    /// but is not the log the snapshot was taken from: its entry at that position is
    /// another one. Entries that had been made durable were replaced (an older copy of
    /// the log restored and written to since, or a history rewritten with the signing
    /// key). The position is the last entry the snapshot covers. As for
    /// [`IntegrityProblem::ShorterThanSnapshot`], removing the `state` file opens the log
    /// as it is.
    #[error("log differs from the state snapshot of the last close at or before entry {}", snapshot_len.saturating_sub(1))]
    DivergesFromSnapshot {
        /// The log length the snapshot was taken at.
        snapshot_len: u64,
    },
}

/// Opening a ledger failed. An open refused by one of its checks (keys, integrity,
/// format, metadata) changed none of the ledger's own files (vault, head record, state
/// snapshot) and wrote no entry; beneath them, sled's recovery may have rewritten its
/// files, as [`LedgerBuilder::open`](crate::LedgerBuilder::open) lists. A storage
/// failure after every check passed may leave the open's repairs done (see there). A
/// ledger is created in an empty directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The directory holds no consent ledger: [`Ledger`](crate::Ledger) reports it for
    /// a directory holding other data (an empty or missing one becomes a new ledger);
    /// [`Inspector`](crate::Inspector), which never creates one, also for a missing or
    /// empty directory.
    #[error("the directory holds no consent ledger (it is missing or empty, or holds other data)")]
    NotALedger,
    /// The ledger was written by an unsupported version of the format.
    #[error("ledger format version {found} is not supported (this library reads version {supported})")]
    UnsupportedFormat {
        /// The version found on disk.
        found: u8,
        /// The version this library reads and writes.
        supported: u8,
    },
    /// The signing key given is not the one the log authorizes for new entries.
    #[error("the signing key is not the key the ledger authorizes for new entries")]
    WrongSigningKey,
    /// The pseudonym key given is not the one the ledger was created with.
    #[error("the pseudonym key is not the key the ledger was created with")]
    WrongPseudonymKey,
    /// The trusted checkpoint given to the builder is malformed, or not signed by the
    /// log's current signing key, or from another ledger; or it was given for a
    /// directory that holds no ledger yet (no checkpoint is of a ledger not yet made:
    /// nothing is created).
    #[error("the trusted checkpoint is not a valid checkpoint of this ledger")]
    UntrustedCheckpoint,
    /// Stored metadata or an index record is malformed.
    #[error("stored {0} is corrupt")]
    CorruptMetadata(&'static str),
    /// The signed log is broken.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
}

/// Appending a change failed. Unless stated otherwise nothing was appended and the
/// ledger is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WriteError {
    /// The storage engine failed before the entry was written; nothing was appended.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// An argument breaks a rule.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The subject was erased; nothing more can be recorded about it.
    #[error("the subject was erased at entry {erased_at}")]
    SubjectErased {
        /// The erasure entry.
        erased_at: u64,
    },
    /// The identifier is already recorded for another subject.
    #[error("the {kind} is already recorded for another subject")]
    HeldByAnotherSubject {
        /// Kind of the identifier.
        kind: IdentifierKind,
    },
    /// The purpose's id is not valid, so it cannot be written.
    #[error("purpose id is not valid (1 to 64 bytes of a-z, 0-9, '-', '_', '.')")]
    InvalidPurposeId,
    /// The entry would exceed the largest entry the ledger writes, 7 KiB with its
    /// signature: mostly a recipient scope listing many long names (256 recipients fit
    /// when their names average about 14 bytes; about 48 with 128-byte names). A
    /// larger page would be stored by sled in a file it never syncs (see the format
    /// docs). Nothing was written.
    #[error("entry would be {size} bytes, more than the {max} allowed")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// Maximum size.
        max: usize,
    },
    /// The entry was written but making it durable failed (a sync failed, or was
    /// refused because an earlier one had failed): it may or may not survive, and the
    /// ledger refuses further writes (reopen it to continue from what is on disk). A
    /// withdrawal, an expiry, an erasure or a key revocation is in effect all the same
    /// (denying is never wrong), and so is a grant or a collection that only narrows
    /// what is in force (a narrower scope, an earlier expiry); under
    /// [`Durability::GroupCommit`](crate::Durability::GroupCommit) every entry is (it is
    /// applied before its sync); otherwise any other collection, grant or key rotation
    /// takes effect only if a reopen finds it on disk. After a key rotation, keep
    /// both keys until a reopen shows which one the log names.
    #[error("the entry was written but could not be made durable")]
    NotDurable(#[source] StorageError),
    /// The change is recorded (its entry appended and in effect), but the work that
    /// follows it failed: for an erasure, removing the subject's secret, its index
    /// records or the state snapshot. Retrying the call, or opening the ledger again,
    /// finishes it.
    #[error("the change is recorded, but finishing it failed; retry or reopen to finish it")]
    Unfinished(#[source] StorageError),
    /// An earlier write may or may not have reached the disk (for example an fsync
    /// failed), so the ledger refuses further writes. Reopen it to continue from what
    /// is on disk. (Reopened without a restart of the machine, it reads what the
    /// operating system still caches, which the failed sync may not have written: the
    /// entries since the last successful sync are then counted durable on its next
    /// sync, though they may not be on the disk.)
    #[error("the ledger refuses writes after an earlier storage failure; reopen it")]
    Failed,
}

/// Reading from the ledger (history, entries, proofs) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The position or tree size asked for is not in the log (or not yet durable).
    #[error("position or tree size is outside the log")]
    OutOfRange,
    /// The storage engine failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A stored entry is broken.
    #[error(transparent)]
    Integrity(#[from] IntegrityError),
    /// A stored decision record does not decode or its tag does not match: it was
    /// edited, or written with another pseudonym key.
    #[error("a stored decision record is corrupt or was not written by this ledger")]
    CorruptRecord,
    /// An argument breaks a rule (such as a receipt's `how_to_withdraw` text that is
    /// too long); nothing was read.
    #[error(transparent)]
    Input(#[from] InputError),
}
