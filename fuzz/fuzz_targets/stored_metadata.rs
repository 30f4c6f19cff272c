//! Stored metadata: the ledger's format marker, the head record, the vault digest
//! record and the vault's index records (decode, canonical re-encoding, tag check).
//! See `consent_ledger::fuzzing::stored_metadata` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::stored_metadata(data) {
        panic!("{violation}");
    }
});
