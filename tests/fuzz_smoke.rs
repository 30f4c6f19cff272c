//! A seeded, dependency-free stand-in for the cargo-fuzz targets in `fuzz/`, so every
//! decoder gets hostile input on every CI run: for each target, random byte strings and
//! mutations of valid encodings (the same seeds the fuzzers start from) go through the
//! same entry points as the fuzz targets (`consent_ledger::fuzzing`). An input that
//! breaks an invariant fails the test and is printed in hex, ready to be added to
//! `tests/fuzz_regressions.rs`; a panic fails it too.
//!
//! `FUZZ_SMOKE_ITERATIONS` scales the number of inputs (default: a few seconds per
//! target in a debug build); `FUZZ_SMOKE_SEED` changes the seed.
#![cfg(feature = "fuzzing")]
#![allow(
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use consent_ledger::fuzzing::{self, Outcome, TARGETS};

/// SplitMix64: small, seeded, good enough to drive mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }

    fn byte(&mut self) -> u8 {
        self.next() as u8
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    0x7F,
    0x80,
    0xFF,
    0x100,
    0xFFFF,
    0x1_0000,
    64 * 1024,
    0x7FFF_FFFF,
    0xFFFF_FFFF,
    1 << 40,
    u64::MAX - 1,
    u64::MAX,
];

/// One libFuzzer-style mutation of `input`.
fn mutate(rng: &mut Rng, input: &mut Vec<u8>, others: &[&[u8]]) {
    let len = input.len();
    match rng.below(10) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = rng.byte();
        }
        2 => {
            let i = rng.below(len + 1);
            let n = 1 + rng.below(8);
            for _ in 0..n {
                input.insert(i, rng.byte());
            }
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(64));
            input.drain(i..i + n);
        }
        4 if len > 0 => {
            // Duplicate a chunk elsewhere.
            let i = rng.below(len);
            let n = 1 + rng.below((len - i).min(300));
            let chunk = input[i..i + n].to_vec();
            let at = rng.below(input.len() + 1);
            input.splice(at..at, chunk);
        }
        5 => input.truncate(rng.below(len + 1)),
        6 if !others.is_empty() => {
            // Splice: our head, another seed's tail.
            let other = others[rng.below(others.len())];
            let cut = rng.below(len + 1);
            let from = rng.below(other.len() + 1);
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        7 if len > 0 => {
            // An interesting big-endian integer of 1, 2, 4 or 8 bytes.
            let value = INTERESTING[rng.below(INTERESTING.len())];
            let width = [1usize, 2, 4, 8][rng.below(4)];
            let bytes = value.to_be_bytes();
            let i = rng.below(len);
            for (k, b) in bytes[8 - width..].iter().enumerate() {
                if let Some(slot) = input.get_mut(i + k) {
                    *slot = *b;
                }
            }
        }
        8 if len > 0 => {
            // An interesting character: multi-byte UTF-8, controls, separators, what an
            // email address's local part may not hold unquoted, a trunk prefix.
            let s = [
                "\u{2014} ",
                "\n",
                "\n\n",
                "@",
                "+",
                ".",
                " ",
                "\u{0}",
                "é",
                "\u{200f}",
                "=",
                "\"",
                "0",
                "(",
                ":",
                ",",
                "<",
                "[",
                "\\",
                "(0)",
            ][rng.below(20)];
            let mut i = rng.below(len + 1);
            while i > 0 && i < input.len() && (input[i] & 0xC0) == 0x80 {
                i -= 1;
            }
            input.splice(i..i, s.bytes());
        }
        _ => {
            let i = rng.below(len + 1);
            input.insert(i, rng.byte());
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn check(name: &str, target: fn(&[u8]) -> Outcome, input: &[u8], accepted: &mut u64) {
    let result = std::panic::catch_unwind(|| target(input));
    match result {
        Ok(Ok(true)) => *accepted += 1,
        Ok(Ok(false)) => {}
        Ok(Err(v)) => panic!("{name}: {v}\ninput: {}", hex(input)),
        Err(_) => panic!("{name}: panicked\ninput: {}", hex(input)),
    }
}

/// Inputs per target: the expensive ones (every accepted entry is signature-checked,
/// every proof rebuilt) get fewer. About five seconds in all with the test profile's
/// optimized dependencies.
fn budget(name: &str) -> usize {
    let scale: f64 = std::env::var("FUZZ_SMOKE_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1.0);
    let base = match name {
        "log" => 3_000,
        "receipt" | "signed_note" => 7_500,
        "proofs" => 5_000,
        "entry" | "vault_file" => 25_000,
        _ => 100_000,
    };
    ((base as f64) * scale) as usize
}

#[test]
fn every_target_survives_random_and_mutated_input() {
    let seed: u64 = std::env::var("FUZZ_SMOKE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5EED);
    let seeds = fuzzing::seeds();
    for (name, target) in TARGETS {
        let mine: Vec<&[u8]> = seeds
            .iter()
            .filter(|(t, _)| t == name)
            .map(|(_, b)| b.as_slice())
            .collect();
        assert!(!mine.is_empty(), "{name} has no seeds");
        let mut accepted = 0u64;
        // The seeds themselves: the valid encodings among them are accepted.
        for s in &mine {
            check(name, *target, s, &mut accepted);
        }
        assert!(accepted > 0, "{name}: every seed is rejected");
        // The seed logs are genuine (a key rotation with its acceptance among them): a
        // check that refused something genuine would show here, where fuzzing, which
        // compares the replays with each other, cannot see it.
        if *name == "log" {
            assert_eq!(
                accepted,
                mine.len() as u64,
                "{name}: a genuine seed log is rejected"
            );
        }
        let mut rng = Rng(seed ^ name.bytes().fold(0u64, |h, b| h.rotate_left(5) ^ u64::from(b)));
        let n = budget(name);
        let start = std::time::Instant::now();
        for k in 0..n {
            let input = if k % 8 == 0 {
                // Random bytes.
                let len = rng.below(600);
                (0..len).map(|_| rng.byte()).collect()
            } else {
                let mut input = mine[rng.below(mine.len())].to_vec();
                for _ in 0..1 + rng.below(4) {
                    mutate(&mut rng, &mut input, &mine);
                }
                input
            };
            check(name, *target, &input, &mut accepted);
        }
        eprintln!(
            "{name}: {n} inputs in {:.1?}, {accepted} accepted",
            start.elapsed()
        );
    }
}

/// Writes the seeds as starting corpora for the cargo-fuzz targets:
/// `cargo test --features fuzzing --test fuzz_smoke -- --ignored write_seed_corpus`
/// (the `fuzz/run.sh` script does this first).
#[test]
#[ignore = "writes files under fuzz/corpus; run by fuzz/run.sh"]
fn write_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (k, (name, bytes)) in fuzzing::seeds().iter().enumerate() {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{k:02}")), bytes).unwrap();
    }
}

/// The key the fuzzing seeds are signed with (`fuzzing::signing_key`).
fn seed_key() -> consent_ledger::VerifyingKey {
    consent_ledger::SigningKey::from_bytes(&[0x42; 32]).verifying_key()
}

fn seeds_of(target: &str) -> Vec<Vec<u8>> {
    fuzzing::seeds()
        .into_iter()
        .filter(|(t, _)| *t == target)
        .map(|(_, b)| b)
        .collect()
}

/// The `signed_note` target gets past the note's signature to the checks on a
/// checkpoint's `revoked` lines (the target's flag byte signs a checkpoint body for
/// it): its seeds reach every refusal of those lines and the acceptance of good ones,
/// and most one-byte changes of its small seeds with the flag set are still well signed
/// and checked beyond the signature, each passing the target. (Before the flag, only the seed
/// texts themselves got past the signature.)
#[test]
fn signed_note_inputs_reach_the_checks_on_revoked_lines() {
    use consent_ledger::{AuditError, SignedCheckpoint};
    let key = seed_key();
    let seeds = seeds_of("signed_note");
    let verify = |input: &[u8]| {
        let text = fuzzing::signed_note_text(input)?;
        Some(SignedCheckpoint::verify(&text, &key))
    };
    let results: Vec<_> = seeds.iter().filter_map(|s| verify(s)).collect();
    let reached = |what: &dyn Fn(&Result<SignedCheckpoint, AuditError>) -> bool| results.iter().any(what);
    assert!(reached(&|r| r
        .as_ref()
        .is_ok_and(|cp| !cp.revocations().is_empty())));
    for refusal in [
        AuditError::Malformed("checkpoint extension line"),
        AuditError::Malformed("checkpoint: too many revocation lines"),
        AuditError::Malformed("checkpoint: revocation lines out of order or repeated"),
        AuditError::Mismatch("checkpoint is signed by a key it lists as revoked"),
    ] {
        assert!(
            reached(&|r| r.as_ref().err() == Some(&refusal)),
            "no seed of the signed_note target is refused with {refusal:?}"
        );
    }
    let (mut tried, mut past_signature) = (0u64, 0u64);
    for seed in seeds.iter().filter(|s| s.len() < 1024 && s[0] & 1 == 1) {
        for at in 0..seed.len() {
            for x in [0x01u8, 0x20] {
                let mut m = seed.clone();
                m[at] ^= x;
                let mut ignored = 0;
                check("signed_note", fuzzing::signed_note, &m, &mut ignored);
                tried += 1;
                if let Some(r) = verify(&m) {
                    if !matches!(
                        r,
                        Err(AuditError::Checkpoint(_)
                            | AuditError::Mismatch("checkpoint origin is not a consent ledger"))
                    ) {
                        past_signature += 1;
                    }
                }
            }
        }
    }
    assert!(
        past_signature * 2 > tried,
        "{past_signature} of {tried} one-byte changes of the seeds get past the signature"
    );
}

/// The `receipt` target reaches `AuditError::RevokedSigner`: its seeds hold receipts
/// for an entry signed by the key the seed log rotates to, which a seed checkpoint
/// revokes before that entry, both as JSON and built for the input (flag byte set);
/// and the same entry under a checkpoint that does not revoke its signer verifies.
#[test]
fn receipt_inputs_reach_the_revoked_signer_refusal() {
    use consent_ledger::{verify_receipt, AuditError, Receipt};
    let key = seed_key();
    let rotated = consent_ledger::SigningKey::from_bytes(&[0x43; 32]).verifying_key();
    let mut revoked = [0u32; 2];
    let mut rotated_verified = 0;
    for seed in seeds_of("receipt") {
        let mut ignored = 0;
        check("receipt", fuzzing::receipt, &seed, &mut ignored);
        let json = fuzzing::receipt_json(&seed).unwrap();
        let r = Receipt::from_json(&json).unwrap();
        match verify_receipt(&r, &key) {
            Err(AuditError::RevokedSigner { .. }) => revoked[usize::from(seed[0] & 1)] += 1,
            Ok(_) if r.entry_signer().unwrap() == rotated => rotated_verified += 1,
            _ => {}
        }
    }
    assert!(
        revoked[0] > 0 && revoked[1] > 0,
        "receipt seeds refused as RevokedSigner (JSON, built): {revoked:?}"
    );
    assert!(
        rotated_verified > 0,
        "no receipt seed of an entry signed after the rotation verifies"
    );
}

/// Every decoder of the bytes opening reads from a ledger directory beside sled's
/// trees is fed by a fuzz target (all of them go through `src/fuzzing.rs`): the keyless
/// head read the inspector does, sled's `conf`, the vault's and head record's first
/// bytes (how a directory is told as a ledger's, or as a new one cut short), and the
/// record number read back from the greatest decision-record key.
#[test]
fn every_decoder_of_a_ledger_directorys_files_is_fuzzed() {
    let source =
        |path: &str| std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let fuzzing_rs = source("src/fuzzing.rs");
    let decoders = [
        "head::claimed_len(",
        "store::is_sled_conf(",
        "store::is_vault_start(",
        "store::is_head_start(",
        "store::is_mark_or_part_of_it(",
        "records::next_record_number(",
    ];
    let unreached: Vec<&str> = decoders
        .iter()
        .copied()
        .filter(|d| !fuzzing_rs.contains(d))
        .collect();
    assert!(
        unreached.is_empty(),
        "decoders no fuzz target calls: {unreached:?}"
    );
    // And the readers of those files decode with them, not with a copy of their own.
    let store_rs = source("src/store/mod.rs");
    for call in [
        "is_sled_conf(&bytes",
        "is_vault_start(&bytes)",
        "is_head_start(&bytes)",
        "is_mark_or_part_of_it(&bytes)",
    ] {
        assert!(
            store_rs.contains(call),
            "src/store/mod.rs does not read with {call}"
        );
    }
    assert!(source("src/records.rs").contains("next_record_number(&k)"));
    let mut accepted = 0;
    for seed in seeds_of("stored_metadata") {
        check("stored_metadata", fuzzing::stored_metadata, &seed, &mut accepted);
    }
}
