//! Stored decision records: the tag check and the canonical decoder
//! (`records::open_record`, `DecisionFields::decode`).
//! See `consent_ledger::fuzzing::decision_record` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::decision_record(data) {
        panic!("{violation}");
    }
});
