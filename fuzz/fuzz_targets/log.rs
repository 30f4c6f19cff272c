//! A whole stored log replayed as opening (last signature only) and as `verify`
//! (every signature) do, applied to the decision state; the two must agree.
//! See `consent_ledger::fuzzing::log` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::log(data) {
        panic!("{violation}");
    }
});
