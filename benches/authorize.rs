//! `authorize` of an allowed and of a denied use with 10k / 100k / 1M subjects in the
//! state, against a bare `HashMap<[u8; 32], u32>` lookup of a present key in a map of
//! the same size, measured in the same run: with std's default hasher (SipHash-1-3),
//! and with a hasher that takes the key's first eight bytes as its hash, as the state's
//! own index does with the pseudonym (an HMAC output needs no hashing).
//!
//! The `allowed` and `denied` rows decide one `Identifier` over and over: it keeps its
//! lookup pseudonym after the first decision, so they are the cost of a decision on an
//! identifier already decided once. `allowed-fresh-identifier` parses the raw value and
//! decides it each time (normalization and one HMAC-SHA256 included), beside
//! `parse-only`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

mod common;

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::hint::black_box;

use consent_ledger::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn key(i: u64) -> [u8; 32] {
    // Distinct, spread keys; SipHash cost does not depend on the values.
    let mut k = [0u8; 32];
    for (j, chunk) in k.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(i.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ j as u64).to_le_bytes());
    }
    k
}

/// The key's first eight bytes as its hash (a `[u8; 32]` key is hashed as its length,
/// then its bytes: the length is ignored).
#[derive(Default)]
struct FirstBytes(u64);

impl Hasher for FirstBytes {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        }
    }

    fn write_usize(&mut self, _: usize) {}
}

fn bench(c: &mut Criterion) {
    for n in common::sizes() {
        let ledger = common::open(n);
        let acme = Recipient::partner("acme-ads").unwrap();
        // Subject 0 gave an email for advertising and consented; subject 2 gave a phone
        // number for two-factor authentication only.
        let allowed = Identifier::<Advertising>::email(&common::raw_identifier(0)).unwrap();
        let denied = Identifier::<Advertising>::phone(&common::raw_identifier(2)).unwrap();
        assert!(ledger.authorize(&allowed, &acme).is_ok());
        assert!(matches!(
            ledger.authorize(&denied, &acme),
            Err(Denied::NotCollectedForPurpose { .. })
        ));
        let map: HashMap<[u8; 32], u32> = (0..n).map(|i| (key(i), i as u32)).collect();
        let unhashed: HashMap<[u8; 32], u32, BuildHasherDefault<FirstBytes>> =
            (0..n).map(|i| (key(i), i as u32)).collect();
        let present = key(n / 2);
        let raw_allowed = common::raw_identifier(0);

        let mut g = c.benchmark_group("authorize");
        let size = common::label(n);
        g.bench_function(BenchmarkId::new("allowed", &size), |b| {
            b.iter(|| black_box(ledger.authorize(black_box(&allowed), &acme)).is_ok())
        });
        g.bench_function(BenchmarkId::new("denied", &size), |b| {
            b.iter(|| black_box(ledger.authorize(black_box(&denied), &acme)).is_ok())
        });
        g.bench_function(BenchmarkId::new("baseline-hashmap-get", &size), |b| {
            b.iter(|| black_box(map.get(black_box(&present))).is_some())
        });
        g.bench_function(BenchmarkId::new("baseline-hashmap-get-first-bytes", &size), |b| {
            b.iter(|| black_box(unhashed.get(black_box(&present))).is_some())
        });
        g.bench_function(BenchmarkId::new("allowed-fresh-identifier", &size), |b| {
            b.iter(|| {
                let id = Identifier::<Advertising>::email(black_box(&raw_allowed)).unwrap();
                black_box(ledger.authorize(&id, &acme)).is_ok()
            })
        });
        g.bench_function(BenchmarkId::new("parse-only", &size), |b| {
            b.iter(|| black_box(Identifier::<Advertising>::email(black_box(&raw_allowed)).unwrap()))
        });
        drop(ledger);
        // Breakdown: the same decision with a clock that costs an atomic load, and the
        // system clock read alone.
        let ledger = Ledger::builder(common::ledger_dir(n))
            .signing_key(common::signing_key())
            .pseudonym_key(common::pseudonym_key())
            .clock(ManualClock::new(Timestamp::from_millis(1_800_000_000_000)))
            .open()
            .unwrap();
        g.bench_function(BenchmarkId::new("allowed-fixed-clock", &size), |b| {
            b.iter(|| black_box(ledger.authorize(black_box(&allowed), &acme)).is_ok())
        });
        g.bench_function(BenchmarkId::new("system-clock-read", &size), |b| {
            b.iter(|| black_box(SystemClock.now()))
        });
        g.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
