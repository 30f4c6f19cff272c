//! Merkle inclusion and consistency proofs: true proofs verify, changed ones do not,
//! arbitrary sizes and hashes fail cleanly.
//! See `consent_ledger::fuzzing::proofs` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::proofs(data) {
        panic!("{violation}");
    }
});
