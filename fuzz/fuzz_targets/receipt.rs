//! Consent receipts: `Receipt::from_json`, JSON round trip, `verify_receipt` (the first
//! byte's bit 0 builds a genuine receipt for a seed-log entry under a checkpoint whose
//! `revoked` lines the rest picks).
//! See `consent_ledger::fuzzing::receipt` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::receipt(data) {
        panic!("{violation}");
    }
});
