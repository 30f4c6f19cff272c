//! Names written in clear: subject ids, recipient and operator names, purpose ids;
//! whatever they accept encodes into an entry and decodes back.
//! See `consent_ledger::fuzzing::names` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::names(data) {
        panic!("{violation}");
    }
});
