//! Appends, each against a baseline measured in the same run:
//!
//! - group commit, 16 and 128 threads appending consent changes at once (a caller's
//!   append waits for a sync, so throughput grows with the callers in flight), against
//!   bare ed25519 signing of an entry-sized message plus a bare sled insert, one
//!   thread, no sync (so the baseline pays for no durability at all);
//! - fully durable appends (`Durability::Immediate`: flush and fsync per append), one
//!   thread, against a bare sled insert + flush + fsync of the data file per insert.
//!
//! Ledgers are copies of the 10k / 100k / 1M-subject fixtures (1.25 entries per
//! subject), so appends land in logs of those sizes; the sled baselines write to a
//! fresh database (sled's insert cost does not depend on the tree's size).
//!
//! After criterion's groups, each size also takes ours and the baselines in 9
//! alternating rounds (group commit with 128 threads, 10,240 appends a round; durable,
//! 300) and prints their medians and ratios: criterion measures one group after the
//! other, and on a shared machine the load and the disk's fsync latency drift between
//! groups by as much as the differences measured. Ours and the baseline take turns going
//! first, and the baseline's unsynced inserts are synced (untimed) before anything
//! else syncs (`APPEND_INTERLEAVED=0` skips it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench"
)]
#![allow(missing_docs, reason = "criterion macros generate undocumented items")]

mod common;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use consent_ledger::*;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ed25519_dalek::Signer;

/// Numbers of concurrent appenders for group commit (`APPEND_THREADS=16,64` overrides).
fn thread_counts() -> Vec<u64> {
    std::env::var("APPEND_THREADS")
        .ok()
        .map(|v| v.split(',').filter_map(|t| t.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![16, 128])
}
/// About the size of a signed grant entry.
const MESSAGE_LEN: usize = 180;

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("append-scratch")
        .join(name);
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn open_copy(n: u64, durability: Durability) -> (Ledger, PathBuf) {
    let dir = scratch(&format!("ledger-{n}-{durability:?}"));
    copy_dir(&common::ledger_dir(n), &dir);
    let ledger = Ledger::builder(&dir)
        .signing_key(common::signing_key())
        .pseudonym_key(common::pseudonym_key())
        .durability(durability)
        .open()
        .unwrap();
    warm_up(&ledger, n);
    (ledger, dir)
}

/// The first ~1,000 appends after opening a large ledger pay once for the open's full
/// scan: sled evicts the pages it cached and glibc consolidates the heap the replay
/// left (about 0.3 s at 1M entries, 300 µs per append for the first thousand, then the
/// same ~20 µs as at 10k). Measured separately (`after-open`) and kept out of the
/// steady-state figures, which criterion's short warm-up did not do.
fn warm_up(ledger: &Ledger, n: u64) {
    let start = Instant::now();
    for k in 0..2_000 {
        change(ledger, (k % 64) % n, k / 64);
    }
    eprintln!(
        "append: first 2000 appends after opening the {n}-subject ledger: {:?} per append",
        start.elapsed() / 2_000
    );
}

/// One consent change for subject `i` (alternating grant and withdrawal per subject).
fn change(ledger: &Ledger, i: u64, k: u64) {
    let s = common::subject(i);
    if k.is_multiple_of(2) {
        ledger
            .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    } else {
        ledger.withdraw::<Advertising>(&s).unwrap();
    }
}

/// The baselines' sled database, with what they write.
struct Baseline {
    key: ed25519_dalek::SigningKey,
    message: Vec<u8>,
    dir: PathBuf,
    db: sled::Db,
    /// sled's data file, kept open for the fsyncs (as the ledger keeps its own).
    data: File,
    tree: sled::Tree,
    seq: AtomicU64,
}

impl Baseline {
    fn new() -> Self {
        let dir = scratch("sled-baseline");
        let db = sled::Config::new().path(&dir).open().unwrap();
        let tree = db.open_tree("entries").unwrap();
        let data = File::open(dir.join("db")).unwrap();
        Baseline {
            data,
            key: ed25519_dalek::SigningKey::from_bytes(&[11; 32]),
            message: vec![0x5Au8; MESSAGE_LEN],
            dir,
            db,
            tree,
            seq: AtomicU64::new(0),
        }
    }

    fn insert(&self, value: Vec<u8>) {
        let k = self.seq.fetch_add(1, Ordering::Relaxed);
        self.tree.insert(k.to_be_bytes(), value).unwrap();
    }

    /// Bare ed25519 signing of an entry-sized message and a bare sled insert of it.
    fn sign_insert(&self) {
        let sig = self.key.sign(&self.message);
        let mut value = self.message.clone();
        value.extend_from_slice(&sig.to_bytes());
        self.insert(value);
    }

    /// Flush and fsync of the data file, as a durable append's.
    fn sync(&self) {
        self.db.flush().unwrap();
        self.data.sync_data().unwrap();
    }

    /// A bare sled insert of an entry-sized value, then flush and fsync.
    fn insert_sync(&self) {
        let mut value = self.message.clone();
        value.extend_from_slice(&[0; 64]);
        self.insert(value);
        self.sync();
    }
}

/// Rounds of ours and the baseline taken alternately (see [`interleaved`]).
const ROUNDS: usize = 9;

/// `threads` callers making `total` changes between them, each to its own subjects.
fn concurrent_changes(ledger: &Ledger, counter: &AtomicU64, n: u64, threads: u64, total: u64) {
    std::thread::scope(|s| {
        for t in 0..threads {
            let mine = total / threads + u64::from(t < total % threads);
            s.spawn(move || {
                for _ in 0..mine {
                    let k = counter.fetch_add(1, Ordering::Relaxed);
                    change(ledger, (t + threads * (k % 64)) % n, k / threads);
                }
            });
        }
    });
}

/// Times `ours` and `base`, each going first in every other round, so that neither
/// always follows the other; pushes each one's time per operation.
fn alternate(
    round: usize,
    ops: u32,
    (ours, ours_times): (&mut dyn FnMut(), &mut Vec<Duration>),
    (base, base_times): (&mut dyn FnMut(), &mut Vec<Duration>),
) {
    let timed = |f: &mut dyn FnMut(), times: &mut Vec<Duration>| {
        let t = Instant::now();
        f();
        times.push(t.elapsed() / ops);
    };
    if round.is_multiple_of(2) {
        timed(ours, ours_times);
        timed(base, base_times);
    } else {
        timed(base, base_times);
        timed(ours, ours_times);
    }
}

/// The same comparisons as the criterion groups, with ours and the baseline taken in
/// alternating rounds and compared by median: criterion measures one group after the
/// other, seconds apart, and this machine's load (and its disk's fsync latency) drifts
/// over that time by as much as the differences measured. Printed, one line per size.
fn interleaved(size: &str, n: u64, group: &Ledger, durable: &Ledger, counter: &AtomicU64, base: &Baseline) {
    let (threads, ops, durable_ops) = (128u64, 128u32 * 80, 300u32);
    let (mut ours_g, mut base_g, mut ours_d, mut base_d) = (vec![], vec![], vec![], vec![]);
    let mut k = 0u64;
    for round in 0..ROUNDS {
        alternate(
            round,
            ops,
            (
                &mut || concurrent_changes(group, counter, n, threads, u64::from(ops)),
                &mut ours_g,
            ),
            (
                &mut || {
                    for _ in 0..ops {
                        base.sign_insert();
                    }
                },
                &mut base_g,
            ),
        );
        // Untimed: the next fsync in that database must not pay for these inserts.
        base.sync();
        alternate(
            round,
            durable_ops,
            (
                &mut || {
                    for _ in 0..durable_ops {
                        change(durable, k % 64, k / 64);
                        k += 1;
                    }
                },
                &mut ours_d,
            ),
            (
                &mut || {
                    for _ in 0..durable_ops {
                        base.insert_sync();
                    }
                },
                &mut base_d,
            ),
        );
    }
    let median = common::median;
    let (og, bg, od, bd) = (median(ours_g), median(base_g), median(ours_d), median(base_d));
    println!(
        "append/{size} ({ROUNDS} alternating rounds, medians): group commit {threads} threads \
         {og:.2?} per append vs sign + sled insert {bg:.2?}: {:.0} % of the baseline's \
         throughput; durable {od:.2?} vs sled insert + fsync {bd:.2?}: {:.0} %",
        100.0 * bg.as_secs_f64() / og.as_secs_f64(),
        100.0 * bd.as_secs_f64() / od.as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    for n in common::sizes() {
        let size = common::label(n);
        let mut g = c.benchmark_group("append");
        g.throughput(Throughput::Elements(1));

        let (ledger, dir) = open_copy(n, Durability::GroupCommit);
        let counter = AtomicU64::new(0);
        for threads in thread_counts() {
            g.bench_function(
                BenchmarkId::new(format!("group-commit-{threads}-threads"), &size),
                |b| {
                    b.iter_custom(|iters| {
                        let start = Instant::now();
                        concurrent_changes(&ledger, &counter, n, threads, iters);
                        start.elapsed()
                    })
                },
            );
        }

        let base = Baseline::new();
        g.bench_function(BenchmarkId::new("baseline-sign+sled-insert", &size), |b| {
            b.iter(|| base.sign_insert())
        });

        let (durable, durable_dir) = open_copy(n, Durability::Immediate);
        let mut k = 0u64;
        g.bench_function(BenchmarkId::new("durable-append", &size), |b| {
            b.iter(|| {
                change(&durable, k % 64, k / 64);
                k += 1;
            })
        });

        g.bench_function(BenchmarkId::new("baseline-sled-insert+fsync", &size), |b| {
            b.iter(|| base.insert_sync())
        });
        g.finish();
        if std::env::var_os("APPEND_INTERLEAVED").is_none_or(|v| v != "0") {
            interleaved(&size, n, &ledger, &durable, &counter, &base);
        }
        let base_dir = base.dir.clone();
        drop((ledger, durable, base));
        let _ = std::fs::remove_dir_all(dir);
        let _ = std::fs::remove_dir_all(durable_dir);
        let _ = std::fs::remove_dir_all(base_dir);
    }
}

criterion_group! {
    name = benches;
    config = common::criterion().measurement_time(Duration::from_secs(3));
    targets = bench
}
criterion_main!(benches);
