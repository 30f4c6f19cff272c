//! The state snapshot and vault tests' ledgers: opened under given keys with relaxed
//! durability and a snapshot setting, and their numbered subjects and emails.

use std::path::Path;

use consent_ledger::{
    Advertising, Durability, Identifier, Ledger, LedgerBuilder, OpenError, PseudonymKey, SigningKey,
    Snapshots, SubjectId,
};

/// Writes a snapshot at every close that follows a new entry.
#[allow(dead_code, reason = "not every snapshot test writes snapshots")]
pub const EVERY_CLOSE: Snapshots = Snapshots::OnClose { min_new_entries: 1 };

/// Loads a snapshot, writes none on close.
#[allow(dead_code, reason = "not every snapshot test loads snapshots")]
pub const NEVER_WRITE: Snapshots = Snapshots::OnClose {
    min_new_entries: u64::MAX,
};

/// A builder for the ledger in `dir` under `key` and `pk`, with relaxed durability and
/// `snapshots`: for the tests that set more before opening.
pub fn builder(
    dir: &Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    snapshots: Snapshots,
) -> LedgerBuilder<SigningKey, PseudonymKey> {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .durability(Durability::Relaxed)
        .snapshots(snapshots)
}

/// Opens the ledger in `dir` under `key` and `pk` with `snapshots`, or says why not.
#[allow(dead_code, reason = "not every snapshot test expects an open to fail")]
pub fn try_open(
    dir: &Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    snapshots: Snapshots,
) -> Result<Ledger, OpenError> {
    builder(dir, key, pk, snapshots).open()
}

/// Opens the ledger in `dir` under `key` and `pk` with `snapshots`.
#[allow(dead_code, reason = "not every snapshot test expects every open to succeed")]
pub fn open(dir: &Path, key: &SigningKey, pk: &PseudonymKey, snapshots: Snapshots) -> Ledger {
    builder(dir, key, pk, snapshots).open().unwrap()
}

/// Subject number `i`: `acct-<i>`.
pub fn subject(i: u32) -> SubjectId {
    SubjectId::new(&format!("acct-{i}")).unwrap()
}

/// Subject number `i`'s email, collected for advertising: `person<i>@example.com`.
pub fn email(i: u32) -> Identifier<Advertising> {
    Identifier::<Advertising>::email(&format!("person{i}@example.com")).unwrap()
}
