//! The subject export tests' ledgers and JSON-LD readers: a ledger that records every
//! decision, the export parsed, its records by purpose and basis, its event ids.

use std::path::Path;

use consent_ledger::{Durability, Ledger, PseudonymKey, Recording, SigningKey, Snapshots, SubjectId};
use serde_json::Value;

/// A ledger in `dir` with fresh keys, relaxed durability and every decision recorded:
/// what most export tests start from.
#[allow(dead_code, reason = "export_random builds its ledgers itself")]
pub fn open(dir: &Path) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .record_decisions(Recording::Every)
        .open()
        .unwrap()
}

/// The ledger in `dir` under `key` and `pk`, without state snapshots (every open
/// replays the log in full): for the tests that damage the vault and reopen.
#[allow(dead_code, reason = "only the tests that reopen a damaged vault use it")]
pub fn open_without_snapshots(dir: &Path, key: &SigningKey, pk: &PseudonymKey) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .snapshots(Snapshots::Off)
        .open()
        .unwrap()
}

/// Flips one bit of the first index record's slot in the closed ledger `dir`'s vault:
/// its checksum fails and the next open drops the record.
#[allow(dead_code, reason = "only the tests that reopen a damaged vault use it")]
pub fn damage_index_slot(dir: &Path) {
    const SLOT: usize = 256;
    let path = dir.join("vault");
    let mut vault = std::fs::read(&path).unwrap();
    let slot = vault.chunks_exact(SLOT).position(|v| v[0] == 2).unwrap();
    vault[slot * SLOT + 100] ^= 1;
    std::fs::write(&path, &vault).unwrap();
}

/// The export of subject `s` (settings address `-`), parsed.
pub fn export(l: &Ledger, s: &SubjectId) -> Value {
    serde_json::from_str(&l.export_subject(s, "-").unwrap()).unwrap()
}

/// The position ids' prefix: the ledger's origin.
#[allow(dead_code, reason = "not every export test names events")]
pub fn origin(l: &Ledger) -> String {
    l.checkpoint().unwrap().origin().to_owned()
}

/// The export's records (`@graph`) for purpose id `purpose`.
#[allow(dead_code, reason = "not every export test reads records by purpose")]
pub fn records_for<'a>(doc: &'a Value, purpose: &str) -> Vec<&'a Value> {
    doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["dpv:hasPurpose"]["dct:identifier"] == purpose)
        .collect()
}

/// The export's first record for purpose id `purpose`.
#[allow(dead_code, reason = "not every export test reads one record by purpose")]
pub fn record_for<'a>(doc: &'a Value, purpose: &str) -> &'a Value {
    doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["dpv:hasPurpose"]["dct:identifier"] == purpose)
        .unwrap()
}

/// The export's record for purpose id `purpose` on the legal basis term `basis`.
#[allow(dead_code, reason = "not every export test reads records by basis")]
pub fn record_with_basis<'a>(doc: &'a Value, purpose: &str, basis: &str) -> &'a Value {
    records_for(doc, purpose)
        .into_iter()
        .find(|r| r["dpv:hasPurpose"]["dpv:hasLegalBasis"] == basis)
        .unwrap_or_else(|| panic!("no {basis} record for {purpose}: {doc:#}"))
}

/// The ids of the events (`dct:hasPart`) of all the export's records, sorted.
#[allow(dead_code, reason = "not every export test lists events")]
pub fn exported_events(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["dct:hasPart"].as_array().unwrap().iter())
        .map(|p| p["dct:identifier"].as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}

/// `exported_events` and the top-level `erasure` event, if any, sorted.
#[allow(dead_code, reason = "not every export test lists events")]
pub fn events_with_erasure(doc: &Value) -> Vec<String> {
    let mut v = exported_events(doc);
    v.extend(doc["erasure"]["dct:identifier"].as_str().map(str::to_owned));
    v.sort();
    v
}
