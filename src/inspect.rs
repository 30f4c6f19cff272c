//! Reading a ledger directory without its keys: for auditors, and for examining a
//! ledger that no longer opens because its log is broken.

use std::fmt;
use std::path::Path;

use crate::entry::{self, Body};
use crate::error::StorageError;
use crate::error::{IntegrityError, IntegrityProblem, OpenError, ReadError};
use crate::ledger::open::{check_format_marker, FORMAT_KEY};
use crate::ledger::{verify_store, HistoryEntry, VerifyReport};
use crate::signing::VerifyingKey;
use crate::store::{Backend, Opened, PrivateCopy, SledStore};
use crate::subject::SubjectId;

/// A keyless, read-only view of a ledger directory.
///
/// Unlike [`Ledger::builder`](crate::Ledger::builder), opening an `Inspector` checks
/// nothing but the format marker, so [`Inspector::verify`] can report where a broken
/// log breaks. It never creates or changes anything in the directory: it reads a
/// private copy of the storage engine's files (as large as the database, in a directory
/// of this user's own in the system's temporary directory, removed when the `Inspector`
/// is dropped), because sled's recovery, run by any open, rewrites its data file and
/// drops a damaged part and everything after it. Close any [`Ledger`](crate::Ledger) on
/// the directory first: the copy, and the read of the head record, are taken under the
/// database's lock.
///
/// Without the pseudonym key, the head record's tag cannot be checked: a log shorter
/// than the length it claims is reported ([`IntegrityProblem::ShorterThanRecorded`]),
/// but the claim itself is taken on trust. An edited head file can raise a false alarm
/// here, and one whose length was lowered can hide a cut that an open with the key
/// refuses (a deleted or older head file hides it from both: see the `head` file in
/// `docs/format.md`).
///
/// ```
/// use consent_ledger::{Inspector, Ledger, PseudonymKey, SigningKey};
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = tempfile::tempdir()?;
/// let key = SigningKey::generate();
/// drop(Ledger::builder(dir.path()).signing_key(key.clone()).pseudonym_key(PseudonymKey::generate()).open()?);
///
/// let inspector = Inspector::open(dir.path())?;
/// assert_eq!(inspector.verify()?.entries, 1);
/// assert_eq!(inspector.genesis_key()?, key.verifying_key());
/// # Ok(()) }
/// ```
pub struct Inspector {
    /// Dropped before the copy it reads.
    store: Box<dyn Backend>,
    _copy: PrivateCopy,
    /// The durable length the head record claims (unchecked), if there is one.
    claimed_len: Option<u64>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector").field("store", &self.store).finish()
    }
}

/// The part of a log that checks out; see [`Inspector::valid_prefix`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPrefix {
    /// Entries `0..len` are intact.
    pub len: u64,
    /// What is wrong at position `len`, if anything.
    pub problem: Option<IntegrityError>,
    /// Entries of the prefix that check out but were signed by a key revoked for them
    /// (as in [`VerifyReport::untrusted`], from the revocations in the prefix).
    pub untrusted: Vec<crate::UntrustedRange>,
}

/// The valid prefix of a log whose check stopped at `problem`, from the check of the
/// prefix alone (`again`). The prefix passed as part of the whole log, so only a storage
/// failure can stop that check: reported, never an empty list of untrusted entries,
/// which would leave entries signed by a revoked key unmarked.
fn prefix_ending_at(
    problem: IntegrityError,
    again: Result<VerifyReport, ReadError>,
) -> Result<ValidPrefix, StorageError> {
    Ok(ValidPrefix {
        len: problem.position,
        untrusted: again.map_err(storage_failure)?.untrusted,
        problem: Some(problem),
    })
}

/// A failure to read the log where only a storage failure was possible.
fn storage_failure(e: ReadError) -> StorageError {
    match e {
        ReadError::Storage(e) => e,
        ReadError::Integrity(_) | ReadError::OutOfRange | ReadError::CorruptRecord | ReadError::Input(_) => {
            StorageError::new("reading the log", std::io::Error::other("unexpected read error"))
        }
    }
}

impl Inspector {
    /// Opens the ledger in `dir` for reading. It reads a private copy of the ledger's
    /// database, made in a directory of this user's own in the system's temporary
    /// directory (`consent-ledger-inspect.<uid>` on Unix, mode 0700: the copy holds the
    /// log, with its subject ids in clear) and removed when the `Inspector` is dropped.
    /// One left by a process that was killed is removed by the next `Inspector::open`
    /// by the same user on the machine. The head record is read with the copy, under
    /// the database's lock, and must not change while the copy is taken.
    ///
    /// # Errors
    /// [`OpenError::NotALedger`] for a missing or empty directory or one holding other
    /// data; [`IntegrityProblem::LogEmptied`](crate::IntegrityProblem::LogEmptied) for a
    /// ledger whose log was lost, with its format marker or without (sled's recovery of
    /// a damaged `db` may drop it all), while its other files show it was used, as
    /// [`LedgerBuilder::open`](crate::LedgerBuilder::open) says of it; [`OpenError::UnsupportedFormat`];
    /// storage failures (such as a process holding the ledger open, a head record that
    /// changed during each of three copies, or a directory of that name in a shared
    /// temporary directory that is another user's: set `TMPDIR` to a directory of your
    /// own then).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        let dir = dir.as_ref();
        let Some(copy) = PrivateCopy::of(dir)? else {
            return Err(OpenError::NotALedger);
        };
        let store: Box<dyn Backend> = match SledStore::open_copy(&copy)? {
            Opened::Store(s) => s,
            Opened::Foreign => return Err(OpenError::NotALedger),
        };
        // Read with the copy, under the database's lock (see `PrivateCopy::of`): never
        // one from another moment than the log copied, nor torn by a write.
        let claimed_len = copy.head().and_then(crate::ledger::head::claimed_len);
        match store.meta(FORMAT_KEY)? {
            Some(marker) => {
                check_format_marker(&marker)?;
                // No entries, while other files show the ledger was used: its log was
                // emptied with the marker left, as `Ledger::open` refuses it (review
                // h35-k: this reported a valid log of no entries).
                if store.entries_from(0).next().is_none() && crate::ledger::open::was_used(&*store, dir)? {
                    return Err(OpenError::Integrity(crate::error::IntegrityError {
                        position: 0,
                        problem: IntegrityProblem::LogEmptied,
                    }));
                }
                Ok(Inspector {
                    store,
                    _copy: copy,
                    claimed_len,
                })
            }
            // No marker: not a ledger, or one whose log was emptied (as `Ledger::open`
            // tells them apart).
            None => Err(crate::ledger::open::emptied_or_foreign(&*store, dir)?),
        }
    }

    /// A log of `len` entries that check out but fewer than the head record claims:
    /// the problem at its end.
    fn check_claim(&self, len: u64) -> Result<(), IntegrityError> {
        match self.claimed_len {
            Some(recorded) if recorded > len => Err(IntegrityError {
                position: len,
                problem: IntegrityProblem::ShorterThanRecorded { recorded },
            }),
            _ => Ok(()),
        }
    }

    /// The same full check as [`Ledger::verify`](crate::Ledger::verify): positions,
    /// canonical encoding, hash chain, timestamps, every signature, revocations (entries
    /// signed by a revoked key are listed in [`VerifyReport::untrusted`], not an error:
    /// see [`VerifyReport::require_trusted`]); and the log's length against the head
    /// record's claim (unchecked, see [`Inspector`]).
    ///
    /// # Errors
    /// [`ReadError::Integrity`] naming the first bad position, or the end of a log
    /// shorter than the head record claims; storage failures.
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        let report = verify_store(&*self.store)?;
        self.check_claim(report.entries)?;
        Ok(report)
    }

    /// [`Inspector::verify`], calling `progress` with the number of entries read so far
    /// (every few thousand entries and once at the end), for a progress bar.
    ///
    /// # Errors
    /// As [`Inspector::verify`].
    pub fn verify_with_progress(&self, mut progress: impl FnMut(u64)) -> Result<VerifyReport, ReadError> {
        let report = crate::ledger::verify_store_with(&*self.store, &mut progress)?;
        self.check_claim(report.entries)?;
        Ok(report)
    }

    /// The longest prefix of the log that checks out (positions, encoding, hash chain,
    /// timestamps and every signature in it), and the problem that ends it, if any.
    /// Damage past the last good entry does not hide the good ones: read them with
    /// [`Inspector::entries`] up to [`ValidPrefix::len`].
    ///
    /// # Errors
    /// Storage failures only; damage is reported in the result.
    pub fn valid_prefix(&self) -> Result<ValidPrefix, StorageError> {
        match verify_store(&*self.store) {
            Ok(report) => Ok(ValidPrefix {
                len: report.entries,
                problem: self.check_claim(report.entries).err(),
                untrusted: report.untrusted,
            }),
            Err(ReadError::Integrity(e)) => {
                // The prefix checked again on its own, for the revocations in it.
                let again = crate::ledger::verify_store_upto(&*self.store, e.position);
                prefix_ending_at(e, again)
            }
            Err(other) => Err(storage_failure(other)),
        }
    }

    /// Entries `0..upto` about subjects, decoded, with the subject each is about, for
    /// export (for example the valid prefix of a damaged log). Key-management entries
    /// are left out; each [`HistoryEntry`] keeps its position, and is marked
    /// ([`HistoryEntry::untrusted`]) when the revocations among entries `0..upto` make
    /// it untrusted.
    ///
    /// `upto` is a cap, not a claim: past the log's end (`u64::MAX` reads it all) the
    /// entries stop where the log does, so a log cut short gives a shorter list. Compare
    /// with [`Inspector::valid_prefix`], which reports a log shorter than the head record
    /// claims, before relying on one.
    ///
    /// # Errors
    /// [`ReadError::Integrity`] if an entry below `upto` and before the log's end does not
    /// decode, is missing (a later one is stored), or is stored at another position than
    /// its own; storage failures.
    pub fn entries(&self, upto: u64) -> Result<Vec<(SubjectId, HistoryEntry)>, ReadError> {
        let mut out = Vec::new();
        let mut signers = crate::ledger::replay::Signers::default();
        // Each entry at its own position: a missing one, or one stored under another
        // key, is an error, never skipped or read twice.
        let upto = usize::try_from(upto).unwrap_or(usize::MAX);
        for item in crate::ledger::decoded_entries(&*self.store).take(upto) {
            let entry = item?;
            signers.observe(&entry);
            let subject = entry.body.subject().cloned();
            if let (Some(subject), Some(h)) = (subject, crate::ledger::history_entry(entry)) {
                out.push((subject, h));
            }
        }
        if signers.any_revoked() {
            crate::ledger::mark_untrusted(out.iter_mut().map(|(_, h)| h), &signers.untrusted());
        }
        Ok(out)
    }

    /// Number of entries stored (checked or not).
    ///
    /// # Errors
    /// Storage failures.
    pub fn len(&self) -> Result<u64, ReadError> {
        let mut n = 0u64;
        for item in self.store.entries_from(0) {
            let _stored = item?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether no entry is stored.
    ///
    /// # Errors
    /// Storage failures.
    pub fn is_empty(&self) -> Result<bool, ReadError> {
        Ok(self.store.entries_from(0).next().transpose()?.is_none())
    }

    /// The key the genesis entry names: the ledger's first signing key.
    ///
    /// # Errors
    /// [`ReadError::Integrity`] at position 0 when the genesis entry is missing or broken.
    pub fn genesis_key(&self) -> Result<VerifyingKey, ReadError> {
        let broken = |problem| IntegrityError { position: 0, problem };
        let bytes = self
            .store
            .entry(0)?
            .ok_or(broken(IntegrityProblem::Missing { next: 0 }))?;
        let stored = entry::decode(&bytes).map_err(broken)?;
        match stored.entry.body {
            Body::Genesis { signing_key, .. } => Ok(VerifyingKey::from_bytes(&signing_key)
                .map_err(|_| broken(IntegrityProblem::InvalidField("signing key")))?),
            _ => Err(broken(IntegrityProblem::GenesisMisplaced).into()),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;

    /// A prefix whose second check (for the revocations in it) fails to read is a
    /// storage failure, not a prefix with nothing untrusted in it.
    #[test]
    fn a_prefix_whose_recheck_fails_is_an_error_not_an_empty_untrusted_list() {
        let problem = IntegrityError {
            position: 7,
            problem: IntegrityProblem::BadSignature,
        };
        let failed = Err(ReadError::Storage(StorageError::new(
            "reading entries",
            std::io::Error::other("injected failure"),
        )));
        match prefix_ending_at(problem.clone(), failed) {
            Err(e) => assert!(e.to_string().contains("reading entries"), "{e}"),
            Ok(p) => panic!("a failed recheck gave a prefix: {p:?}"),
        }
        let report = VerifyReport {
            entries: 7,
            head: [0; 32],
            keys: 1,
            current_key: None,
            untrusted: Vec::new(),
        };
        let p = prefix_ending_at(problem.clone(), Ok(report)).unwrap();
        assert_eq!((p.len, p.problem), (7, Some(problem)));
    }
}
