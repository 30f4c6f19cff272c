//! Signed notes and checkpoints: `open_note`, `SignedCheckpoint::verify`,
//! `Checkpoint::parse_body`, canonical base64, sign/open round trips.
//! See `consent_ledger::fuzzing::signed_note` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::signed_note(data) {
        panic!("{violation}");
    }
});
