//! Reading a ledger directory without its keys: for auditors, and for examining a
//! ledger that no longer opens because its log is broken.

use std::fmt;
use std::path::Path;

use crate::entry::{self, Body};
use crate::error::{IntegrityError, IntegrityProblem, OpenError, ReadError};
use crate::ledger::open::{check_format_marker, FORMAT_KEY};
use crate::ledger::{verify_store, VerifyReport};
use crate::signing::VerifyingKey;
use crate::store::{Backend, Opened, SledStore};

/// A keyless, read-only view of a ledger directory.
///
/// Unlike [`Ledger::builder`](crate::Ledger::builder), opening an `Inspector` checks
/// nothing but the format marker, so [`Inspector::verify`] can report where a broken
/// log breaks. It never creates or changes anything in the log. (The storage engine
/// takes its lock on the directory, so close any [`Ledger`](crate::Ledger) on it first.)
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
    store: Box<dyn Backend>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector").field("store", &self.store).finish()
    }
}

impl Inspector {
    /// Opens the ledger in `dir` for reading.
    ///
    /// # Errors
    /// [`OpenError::NotALedger`] for a missing or empty directory or one holding other
    /// data; [`OpenError::UnsupportedFormat`]; storage failures (such as a process
    /// holding the ledger open).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, OpenError> {
        let store: Box<dyn Backend> = match SledStore::open_existing(dir.as_ref())? {
            Opened::Store(s) => Box::new(s),
            Opened::Foreign => return Err(OpenError::NotALedger),
        };
        match store.meta(FORMAT_KEY)? {
            Some(marker) => check_format_marker(&marker).map(|()| Inspector { store }),
            None => Err(OpenError::NotALedger),
        }
    }

    /// The same full check as [`Ledger::verify`](crate::Ledger::verify): positions,
    /// canonical encoding, hash chain, timestamps, every signature, revocations.
    ///
    /// # Errors
    /// [`ReadError::Integrity`] naming the first bad position; storage failures.
    pub fn verify(&self) -> Result<VerifyReport, ReadError> {
        verify_store(&*self.store)
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
