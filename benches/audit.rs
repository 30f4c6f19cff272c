//! Audit costs: decision recording in each mode against `authorize` without
//! recording (same ledger contents, same run), and Merkle proof generation and
//! verification against a bare SHA-256 of the entry (the leaf hash every proof check
//! starts with) measured in the same run; a consent receipt against a bare ed25519
//! sign and verify (a receipt signs a checkpoint and checks the entry's signature).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

use std::hint::black_box;
use std::time::Duration;

use consent_ledger::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ed25519_dalek::Signer;
use sha2::{Digest, Sha256};

fn ledger(dir: &std::path::Path, recording: Recording, subjects: u64) -> (Ledger, Identifier<Advertising>) {
    let l = Ledger::builder(dir)
        .signing_key(SigningKey::from_bytes(&[1; 32]))
        .pseudonym_key(PseudonymKey::from_bytes([2; 32]))
        .durability(Durability::Relaxed)
        .record_decisions(recording)
        .open()
        .unwrap();
    if l.len() == 1 {
        for i in 0..subjects {
            let s = SubjectId::new(&format!("acct-{i:08}")).unwrap();
            let id = Identifier::<Advertising>::email(&format!("user{i}@example.com")).unwrap();
            l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
            l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        l.sync().unwrap();
    }
    let id = Identifier::<Advertising>::email("user0@example.com").unwrap();
    (l, id)
}

fn recording(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let acme = Recipient::partner("acme-ads").unwrap();
    // Build once, reopen in each mode.
    drop(ledger(dir.path(), Recording::Off, 10_000));
    let mut g = c.benchmark_group("record");
    for (name, mode) in [
        ("authorize-no-recording", Recording::Off),
        (
            "authorize-aggregated-1s",
            Recording::Aggregated {
                bucket: Duration::from_secs(1),
            },
        ),
        ("authorize-every", Recording::Every),
    ] {
        let (l, id) = ledger(dir.path(), mode, 10_000);
        g.bench_function(name, |b| {
            b.iter(|| black_box(l.authorize(&id, &acme).unwrap().evidence().position()))
        });
        drop(l);
    }
    g.finish();
}

fn proofs(c: &mut Criterion) {
    for n in [10_000u64, 100_000] {
        let dir = tempfile::tempdir().unwrap();
        let (l, _) = ledger(dir.path(), Recording::Off, n / 2);
        let size = l.len();
        let cp = l.checkpoint().unwrap();
        let key = l.verifying_key().unwrap();
        let seq = size / 3;
        let bytes = l.entry_bytes(seq).unwrap();
        let label = format!("{}k", n / 1000);
        // The tree is built lazily on first use; build it outside the timing.
        let _ = l.inclusion_proof(seq, size).unwrap();
        let proof = l.inclusion_proof(seq, size).unwrap();
        let older = size / 2;
        let cproof = l.consistency_proof(older, size).unwrap();
        let mut g = c.benchmark_group("proofs");
        g.bench_function(BenchmarkId::new("inclusion-proof", &label), |b| {
            b.iter(|| black_box(l.inclusion_proof(seq, size).unwrap()))
        });
        g.bench_function(BenchmarkId::new("verify-inclusion", &label), |b| {
            b.iter(|| verify_inclusion(&bytes, &proof, &cp).unwrap())
        });
        g.bench_function(BenchmarkId::new("consistency-proof", &label), |b| {
            b.iter(|| black_box(l.consistency_proof(older, size).unwrap()))
        });
        g.bench_function(BenchmarkId::new("checkpoint-sign", &label), |b| {
            b.iter(|| black_box(l.checkpoint().unwrap()))
        });
        g.bench_function(BenchmarkId::new("checkpoint-verify", &label), |b| {
            b.iter(|| SignedCheckpoint::verify(cp.text(), &key).unwrap())
        });
        g.bench_function(BenchmarkId::new("baseline-sha256-of-entry", &label), |b| {
            b.iter(|| black_box(Sha256::digest(&bytes)))
        });
        // A receipt: a checkpoint signed, the proof, the entry's signer from the key
        // history (kept since the open, not read from the log), its signature checked.
        let subject_entry = (seq..size).find(|s| l.receipt(*s, "x").is_ok()).unwrap();
        g.bench_function(BenchmarkId::new("receipt", &label), |b| {
            b.iter(|| black_box(l.receipt(subject_entry, "settings page").unwrap()))
        });
        let dalek = ed25519_dalek::SigningKey::from_bytes(&[11; 32]);
        let public = dalek.verifying_key();
        let entry_sig = dalek.sign(&bytes);
        g.bench_function(
            BenchmarkId::new("baseline-ed25519-sign-and-verify", &label),
            |b| {
                b.iter(|| {
                    let sig = dalek.sign(cp.text().as_bytes());
                    public.verify_strict(&bytes, &entry_sig).unwrap();
                    black_box(sig)
                })
            },
        );
        g.finish();
        let _ = cproof;
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

criterion_group! { name = benches; config = config(); targets = recording, proofs }
criterion_main!(benches);
