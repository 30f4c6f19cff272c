//! Opening a ledger (hash chain recomputed, last signature verified, state loaded from
//! the snapshot written when the ledger was last closed; and, as `ledger-open-replay`,
//! without a snapshot: index authenticated, state rebuilt from every entry) against a
//! bare sled open + full scan of the same `entries` tree (and, for the breakdown, of `entries` plus a read of the vault file); and `verify()`
//! (every signature, batch-verified) against bare `ed25519_dalek::verify_batch` over
//! the same messages and signatures, prepared in memory beforehand, in batches of the
//! same size (256), on one thread and on as many threads as `verify()` checks
//! signatures on (one per core, up to four; the batches shared out in turn): `verify()`
//! uses every core, so the second baseline is the like-for-like one. Both at 10k /
//! 100k / 1M subjects (1.25 entries per subject).
//!
//! Verifying 1.25M signatures takes about half a minute, too long for criterion's 10
//! samples per figure on a shared machine: at 1M, ours and the baseline run 3 times
//! each, alternating, and the medians are printed. Opening at 1M is measured the same
//! way (7 alternating rounds of open, open without snapshot, and the bare scan): run one
//! after another, criterion's groups at 1M saw the machine's load drift by ±15 %.
//! The first checkpoint after an open (the Merkle tree built from the log, its hash
//! chain checked again) is measured in 5 alternating rounds at every size, against the
//! bare scan and a bare SHA-256 of every entry (`open/first-checkpoint`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench"
)]
#![allow(missing_docs, reason = "bench")]

mod common;

use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

use consent_ledger::{Durability, Ledger, Snapshots};
use criterion::{BenchmarkId, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey as DalekKey};
use sha2::{Digest, Sha256};

/// The context string entries are signed under (see src/signing.rs).
const ENTRY_CONTEXT: &[u8] = b"consent-ledger entry v1\n";
const BATCH: usize = 256;

/// A copy of the ledger directory `dir` without its state snapshot, made once per bench
/// run next to the fixtures.
fn copy_without_snapshot(dir: &Path, n: u64) -> std::path::PathBuf {
    let to = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("replay-copy-{n}"));
    let _ = std::fs::remove_dir_all(&to);
    let copy = |from: &Path, to: &Path| {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_file() && e.file_name() != "state" {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    };
    copy(dir, &to);
    if dir.join("blobs").is_dir() {
        copy(&dir.join("blobs"), &to.join("blobs"));
    }
    to
}

/// Opens the sled database and reads every key and value of the named trees.
fn sled_scan(dir: &Path, trees: &[&str]) -> u64 {
    let db = sled::Config::new().path(dir).open().unwrap();
    let mut bytes = 0u64;
    for name in trees {
        let tree = db.open_tree(name).unwrap();
        for item in tree.iter() {
            let (k, v) = item.unwrap();
            bytes += (k.len() + v.len()) as u64;
        }
    }
    bytes
}

/// (context || signed part, signature) of every stored entry.
fn signed_messages(dir: &Path) -> Vec<(Vec<u8>, Signature)> {
    let db = sled::Config::new().path(dir).open().unwrap();
    let tree = db.open_tree("entries").unwrap();
    tree.iter()
        .map(|item| {
            let (_, v) = item.unwrap();
            let (body, sig) = v.split_at(v.len() - 64);
            let mut msg = ENTRY_CONTEXT.to_vec();
            msg.extend_from_slice(body);
            (msg, Signature::from_slice(sig).unwrap())
        })
        .collect()
}

fn bare_verify(msgs: &[(Vec<u8>, Signature)], key: &DalekKey) {
    for chunk in msgs.chunks(BATCH) {
        let m: Vec<&[u8]> = chunk.iter().map(|(m, _)| m.as_slice()).collect();
        let s: Vec<Signature> = chunk.iter().map(|(_, s)| *s).collect();
        let k = vec![*key; chunk.len()];
        ed25519_dalek::verify_batch(&m, &s, &k).unwrap();
    }
}

/// [`bare_verify`] on `threads` threads, each taking every `threads`-th batch.
fn bare_verify_threads(msgs: &[(Vec<u8>, Signature)], key: &DalekKey, threads: usize) {
    let batches: Vec<_> = msgs.chunks(BATCH).collect();
    std::thread::scope(|s| {
        for t in 0..threads {
            let batches = &batches;
            s.spawn(move || {
                for chunk in batches.iter().skip(t).step_by(threads) {
                    bare_verify(chunk, key);
                }
            });
        }
    });
}

/// As many threads as `verify()` checks signatures on.
fn checker_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4))
}

fn main() {
    let mut c: Criterion = common::criterion().configure_from_args();
    let key = DalekKey::from_bytes(&common::signing_key().verifying_key().to_bytes()).unwrap();
    for n in common::sizes() {
        let dir = common::ledger_dir(n);
        let entries = common::entries_for(n);
        let size = common::label(n);
        // Without a snapshot: what the first open after an upgrade, or after a crash
        // that left none, costs. Measured on a copy of the fixture without its snapshot,
        // told never to write one. (Moving the fixture's snapshot aside and back, as
        // this did before, now makes every later open replay too: the vault digest
        // record written at the close names the snapshot on disk, none, so the one put
        // back is not trusted, as an older state file put back must not be.)
        let replay_dir = copy_without_snapshot(&dir, n);
        let open_replay = || {
            let l = Ledger::builder(&replay_dir)
                .signing_key(common::signing_key())
                .pseudonym_key(common::pseudonym_key())
                .durability(Durability::Relaxed)
                .snapshots(Snapshots::OnClose {
                    min_new_entries: u64::MAX,
                })
                .open()
                .unwrap();
            assert_eq!(l.len(), entries);
            drop(l);
        };
        // The first open writes the snapshot that the measured ones load.
        drop(common::open(n));
        if n < 1_000_000 {
            let mut g = c.benchmark_group("open");
            g.throughput(Throughput::Elements(entries));
            g.bench_function(BenchmarkId::new("ledger-open", &size), |b| {
                b.iter(|| {
                    let l = common::open(n);
                    assert_eq!(l.len(), entries);
                })
            });
            g.bench_function(BenchmarkId::new("ledger-open-replay", &size), |b| {
                b.iter(open_replay)
            });
            g.bench_function(BenchmarkId::new("baseline-sled-open-scan", &size), |b| {
                b.iter(|| black_box(sled_scan(&dir, &["entries"])))
            });
            // Not the target's baseline: what opening must read at least (the vault
            // file holds the index mapping identifiers to collections), for the
            // breakdown.
            g.bench_function(
                BenchmarkId::new("sled-open-scan-entries+vault-read", &size),
                |b| {
                    b.iter(|| {
                        let vault = std::fs::read(dir.join("vault")).unwrap();
                        black_box(sled_scan(&dir, &["entries"]) + vault.len() as u64)
                    })
                },
            );
            g.finish();
        } else if common::wanted(&format!("open/ledger-open/{size}")) {
            // At 1M one open takes seconds, and the machine's load drifts over the
            // minute criterion's groups take one after another: alternate ours and the
            // baseline instead, 7 rounds, and compare medians.
            let (mut ours, mut replay, mut bare) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..7 {
                let t = Instant::now();
                let l = common::open(n);
                assert_eq!(l.len(), entries);
                drop(l);
                ours.push(t.elapsed());
                let t = Instant::now();
                black_box(sled_scan(&dir, &["entries"]));
                bare.push(t.elapsed());
                let t = Instant::now();
                open_replay();
                replay.push(t.elapsed());
            }
            let (o, r, b) = (common::median(ours), common::median(replay), common::median(bare));
            println!(
                "open/{size} ({entries} entries, 7 alternating rounds, open and drop): ledger-open \
                 median {o:.2?}, ledger-open-replay median {r:.2?}, baseline-sled-open-scan \
                 median {b:.2?}; ratios {:.2} and {:.2}",
                o.as_secs_f64() / b.as_secs_f64(),
                r.as_secs_f64() / b.as_secs_f64()
            );
        }
        let msgs = signed_messages(&dir);
        assert_eq!(msgs.len() as u64, entries);
        if common::wanted(&format!("open/first-checkpoint/{size}")) {
            // The first checkpoint of a session builds the Merkle tree from the log,
            // checking the hash chain again as it reads (one more SHA-256 per entry):
            // 5 alternating rounds of a fresh open's first checkpoint, the bare scan,
            // and a bare SHA-256 of every entry's signed part held in memory (what the re-check adds
            // at most).
            let (mut ours, mut scan, mut sha) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..5 {
                let l = common::open(n);
                let t = Instant::now();
                assert_eq!(l.checkpoint().unwrap().size(), entries);
                ours.push(t.elapsed());
                drop(l);
                let t = Instant::now();
                black_box(sled_scan(&dir, &["entries"]));
                scan.push(t.elapsed());
                let t = Instant::now();
                let mut acc = 0u8;
                for (m, sig) in &msgs {
                    acc ^= Sha256::digest(m)[0] ^ sig.to_bytes()[0];
                }
                black_box(acc);
                sha.push(t.elapsed());
            }
            let (o, b, h) = (common::median(ours), common::median(scan), common::median(sha));
            println!(
                "open/first-checkpoint/{size} ({entries} entries, 5 alternating rounds): first \
                 checkpoint median {o:.2?}, baseline-sled-open-scan median {b:.2?} (ratio {:.2}), \
                 bare SHA-256 of every signed part median {h:.2?}",
                o.as_secs_f64() / b.as_secs_f64(),
            );
        }
        let ledger = common::open(n);
        if n < 1_000_000 {
            let mut g = c.benchmark_group("verify");
            g.throughput(Throughput::Elements(entries));
            g.bench_function(BenchmarkId::new("ledger-verify", &size), |b| {
                b.iter(|| assert_eq!(ledger.verify().unwrap().entries, entries))
            });
            g.bench_function(BenchmarkId::new("baseline-verify-batch", &size), |b| {
                b.iter(|| bare_verify(&msgs, &key))
            });
            let threads = checker_threads();
            g.bench_function(BenchmarkId::new("baseline-verify-batch-all-cores", &size), |b| {
                b.iter(|| bare_verify_threads(&msgs, &key, threads))
            });
            g.finish();
        } else if common::wanted(&format!("verify/ledger-verify/{size}")) {
            let (mut ours, mut bare, mut wide) = (Vec::new(), Vec::new(), Vec::new());
            let threads = checker_threads();
            for _ in 0..3 {
                let t = Instant::now();
                assert_eq!(ledger.verify().unwrap().entries, entries);
                ours.push(t.elapsed());
                let t = Instant::now();
                bare_verify(&msgs, &key);
                bare.push(t.elapsed());
                let t = Instant::now();
                bare_verify_threads(&msgs, &key, threads);
                wide.push(t.elapsed());
            }
            let (o, b, w) = (common::median(ours), common::median(bare), common::median(wide));
            println!(
                "verify/{size} ({entries} entries, 3 alternating runs): ledger-verify median {o:.2?} \
                 ({:.0} entries/s), baseline-verify-batch median {b:.2?} ({:.0} entries/s), \
                 throughput ratio {:.2}; on {threads} threads {w:.2?}, ratio {:.2}",
                entries as f64 / o.as_secs_f64(),
                entries as f64 / b.as_secs_f64(),
                b.as_secs_f64() / o.as_secs_f64(),
                w.as_secs_f64() / o.as_secs_f64()
            );
        }
    }
    c.final_summary();
}
