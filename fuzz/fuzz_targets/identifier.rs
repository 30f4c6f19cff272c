//! Identifier parsing (phone, email, device id): idempotent normalization, agreement
//! with the bulk matching path, bounded error messages.
//! See `consent_ledger::fuzzing::identifier` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::identifier(data) {
        panic!("{violation}");
    }
});
