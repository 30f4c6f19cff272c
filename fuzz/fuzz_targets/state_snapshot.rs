//! State snapshot files: the tag check and the body decoder
//! (`state::snapshot::open`, `decode_body`).
//! See `consent_ledger::fuzzing::state_snapshot` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::state_snapshot(data) {
        panic!("{violation}");
    }
});
