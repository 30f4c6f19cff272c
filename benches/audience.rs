//! Audience matching of 1,000,000 uploaded identifiers (half held by fixture subjects,
//! in the spellings customers type; half strangers) against 10k / 100k / 1M subjects,
//! on 1 and 2 hashing threads, against bare HMAC-SHA256 (pre-keyed, cloned per item)
//! over the same inputs already normalized, on one thread and on two (each hashing
//! half), in the same run: compare like with like. Also the crate's own hashing alone
//! (its lookup pseudonyms of the same normalized inputs; sixteen at a time in lanes on
//! x86-64, in SHA instructions where the CPU has them, as matching computes them): the
//! stricter baseline where the lanes beat bare HMAC.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

mod common;

use std::hint::black_box;
use std::time::{Duration, Instant};

use consent_ledger::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hmac::{Hmac, Mac};
use sha2::Sha256;

const UPLOAD: u64 = 1_000_000;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn upload(subjects: u64) -> Vec<String> {
    (0..UPLOAD)
        .map(|r| {
            let h = splitmix(r);
            if r % 2 == 0 {
                common::raw_identifier(h % subjects)
            } else {
                common::unknown_identifier(h % 10_000_000)
            }
        })
        .collect()
}

/// What the crate's normalization makes of the rows above (their spellings are simple:
/// phones lose spaces, emails are already lower-case).
fn normalized(raw: &str) -> String {
    if raw.contains('@') {
        raw.trim().to_owned()
    } else {
        raw.chars().filter(|c| *c == '+' || c.is_ascii_digit()).collect()
    }
}

fn bench(c: &mut Criterion) {
    for n in common::sizes() {
        let ledger = common::open(n);
        let acme = Recipient::partner("acme-ads").unwrap();
        let rows = upload(n);
        let norm: Vec<String> = rows.iter().map(|r| normalized(r)).collect();
        // Sanity: the normalization above is the crate's (same pseudonyms, same matches).
        let (m, counts) = ledger
            .audience::<Advertising>(&acme)
            .collect(rows.iter().take(1000));
        assert!(!m.is_empty() && counts.malformed == 0, "{counts}");
        let mac = Hmac::<Sha256>::new_from_slice(&[22; 32]).unwrap();

        let mut g = c.benchmark_group("audience");
        g.throughput(Throughput::Elements(UPLOAD));
        let size = common::label(n);
        for threads in [1usize, 2] {
            g.bench_function(BenchmarkId::new(format!("match-{threads}-thread"), &size), |b| {
                b.iter(|| {
                    let mut matched = 0u64;
                    let counts = ledger
                        .audience::<Advertising>(&acme)
                        .threads(threads)
                        .run(&rows, |m| {
                            black_box(m);
                            matched += 1;
                        });
                    assert_eq!(counts.uploaded, UPLOAD);
                    matched
                })
            });
        }
        let hmac_all = |rows: &[String]| {
            let mut acc = 0u8;
            for s in rows {
                let mut m = mac.clone();
                m.update(s.as_bytes());
                acc ^= m.finalize().into_bytes()[0];
            }
            acc
        };
        g.bench_function(BenchmarkId::new("baseline-hmac-sha256", &size), |b| {
            b.iter(|| black_box(hmac_all(&norm)))
        });
        // The crate's own hashing alone (its lookup pseudonyms of the same normalized
        // inputs, with its domain prefix): in lanes where matching uses them.
        let key = common::pseudonym_key();
        let lanes = consent_ledger::bench_support::hashes_in_lanes();
        g.bench_function(BenchmarkId::new("baseline-lookup-hashing", &size), |b| {
            b.iter(|| black_box(consent_ledger::bench_support::lookup_hashing(&key, &norm, lanes)))
        });
        g.bench_function(BenchmarkId::new("baseline-hmac-sha256-2-threads", &size), |b| {
            b.iter(|| {
                let (first, second) = norm.split_at(norm.len() / 2);
                std::thread::scope(|s| {
                    let other = s.spawn(|| hmac_all(second));
                    black_box(hmac_all(first) ^ other.join().unwrap())
                })
            })
        });
        g.finish();
        if common::wanted(&format!("audience/alternating/{size}")) {
            // criterion measures one function after another, about 15 s each here, and
            // a shared machine's speed drifts over a minute by more than the differences
            // to see: also 7 rounds that alternate ours and both baselines, compared by
            // their medians and by the median of each round's own ratio.
            let (mut ours, mut lookups, mut bare, mut raw) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            for _ in 0..7 {
                let t = Instant::now();
                let counts = ledger.audience::<Advertising>(&acme).threads(1).run(&rows, |m| {
                    black_box(m);
                });
                assert_eq!(counts.uploaded, UPLOAD);
                ours.push(t.elapsed());
                let t = Instant::now();
                black_box(consent_ledger::bench_support::lookup_hashing(&key, &norm, lanes));
                lookups.push(t.elapsed());
                let t = Instant::now();
                black_box(hmac_all(&norm));
                bare.push(t.elapsed());
                let t = Instant::now();
                black_box(consent_ledger::bench_support::raw_lookup_hashing(&key, &rows));
                raw.push(t.elapsed());
            }
            let ratio = |base: &[Duration]| {
                let mut r: Vec<f64> = base
                    .iter()
                    .zip(&ours)
                    .map(|(b, o)| b.as_secs_f64() / o.as_secs_f64())
                    .collect();
                r.sort_by(f64::total_cmp);
                r.get(r.len() / 2).copied().unwrap_or_default() * 100.0
            };
            let (rl, rb) = (ratio(&lookups), ratio(&bare));
            let r = common::median(raw);
            let (o, l, b) = (
                common::median(ours),
                common::median(lookups),
                common::median(bare),
            );
            println!(
                "audience/alternating/{size} (1 thread, 7 rounds; lookups in lanes: {lanes}): match median \
                 {o:.2?}, the crate's lookup hashing alone {l:.2?}, bare HMAC-SHA256 {b:.2?}; throughput \
                 {:.0} % of the lookup hashing and {:.0} % of bare HMAC (medians of the rounds' own \
                 ratios: {rl:.0} % and {rb:.0} %); normalizing and hashing the raw rows alone {r:.2?}",
                100.0 * l.as_secs_f64() / o.as_secs_f64(),
                100.0 * b.as_secs_f64() / o.as_secs_f64(),
            );
        }
    }
}

criterion_group! {
    name = benches;
    config = common::criterion();
    targets = bench
}
criterion_main!(benches);
