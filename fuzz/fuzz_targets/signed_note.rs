//! Signed notes and checkpoints: `open_note`, `SignedCheckpoint::verify` (with the
//! checks on its `revoked` lines: the first byte's bit 0 signs the rest as a checkpoint
//! body under the seed key), `Checkpoint::parse_body`, canonical base64, sign/open round
//! trips.
//! See `consent_ledger::fuzzing::signed_note` and fuzz/README.md.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = consent_ledger::fuzzing::signed_note(data) {
        panic!("{violation}");
    }
});
