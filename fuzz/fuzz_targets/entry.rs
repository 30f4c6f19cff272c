//! Stored entry bytes: `entry::decode` (version, size limit, strict bincode, trailing bytes,
//! field rules, canonical form), the receipt path's decode-and-verify, and formatting.
//! See `consent_ledger::fuzzing::entry` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::entry(data) {
        panic!("{violation}");
    }
});
