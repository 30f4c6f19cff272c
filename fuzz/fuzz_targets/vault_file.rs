//! The vault file as opening reads it: header, 256-byte slots, checksums, duplicates,
//! torn tails. The first input byte is a flag (fix checksums / prepend a header).
//! See `consent_ledger::fuzzing::vault_file` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::vault_file(data) {
        panic!("{violation}");
    }
});
