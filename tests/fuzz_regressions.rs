//! Inputs the fuzzers (`fuzz/`, `tests/fuzz_smoke.rs`) found, kept so the bugs stay fixed.
//!
//! Each file under `tests/fuzz-regressions/<target>/` is fed to the fuzz entry point of
//! that name, which must neither panic nor report a broken invariant. Where the bug is
//! visible through the public API, a test below shows it there too.
#![cfg(feature = "fuzzing")]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use std::path::Path;

use consent_ledger::fuzzing::TARGETS;
use consent_ledger::{
    Inspector, IntegrityError, IntegrityProblem, Ledger, PseudonymKey, ReadError, SigningKey,
};

fn regressions() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz-regressions")
}

#[test]
fn every_kept_input_passes_its_target() {
    let mut ran = 0;
    for dir in std::fs::read_dir(regressions()).unwrap() {
        let dir = dir.unwrap().path();
        let name = dir.file_name().unwrap().to_str().unwrap().to_owned();
        let (_, target) = TARGETS
            .iter()
            .find(|(t, _)| *t == name)
            .unwrap_or_else(|| panic!("no fuzz target named {name}"));
        for file in std::fs::read_dir(&dir).unwrap() {
            let file = file.unwrap().path();
            let input = std::fs::read(&file).unwrap();
            if let Err(v) = target(&input) {
                panic!("{}: {v}", file.display());
            }
            ran += 1;
        }
    }
    assert!(ran >= 2, "regression inputs are missing");
}

/// Found by the `log` target: a genesis entry naming a small-order public key (all
/// zeros) with an all-zero signature. Strict verification (opening, receipts) rejected
/// it, but batch verification (`verify`, the inspector) accepted it, depending on the
/// entry's hash. Such a key is now refused on both paths.
#[test]
fn small_order_signing_key_is_refused_by_verify_too() {
    let kept = std::fs::read(regressions().join("log/small-order-genesis-key")).unwrap();
    // The input's first item is the forged genesis entry: mode (1), length (2), bytes.
    let len = usize::from(u16::from_be_bytes([kept[1], kept[2]]));
    let genesis = &kept[3..3 + len];
    assert!(genesis.ends_with(&[0; 64]), "expected the all-zero signature");

    let dir = tempfile::tempdir().unwrap();
    drop(
        Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .open()
            .unwrap(),
    );
    {
        let db = sled_util::open(dir.path());
        let entries = db.open_tree("entries").unwrap();
        entries.insert(0u64.to_be_bytes(), genesis).unwrap();
        db.flush().unwrap();
    }
    let inspector = Inspector::open(dir.path()).unwrap();
    match inspector.verify() {
        Err(ReadError::Integrity(e)) => assert_eq!(
            e,
            IntegrityError {
                position: 0,
                problem: IntegrityProblem::InvalidField("signing key")
            }
        ),
        other => panic!("a log signed under a small-order key must not verify: {other:?}"),
    }
}
