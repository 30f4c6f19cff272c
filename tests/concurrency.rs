//! Many threads granting, withdrawing and authorizing at once, checked by an oracle.
//!
//! Every thread mixes grants, withdrawals and decisions on a small set of shared
//! subjects, so that the same subject is changed and decided on from several threads at
//! the same moment. After each acknowledged change a thread publishes its sequence
//! number ("ticket") for that subject and purpose. A decision reads the tickets before
//! it starts and must rest on an entry at least as new as every change acknowledged by
//! then: an allowed use after an acknowledged withdrawal, or a refusal that ignores an
//! acknowledged grant, fails the test. At the end every acknowledged append must be in
//! the log exactly once, in a chain that verifies, before and after reopening.
//!
//! The default run does 100,000 operations on 8 threads with `Relaxed` durability and a
//! few thousand with each setting that fsyncs; the full run of 100,000 operations with
//! group commit (and 20,000 with a sync per append) is behind `#[ignore]`:
//!
//! ```text
//! cargo test --release --test concurrency -- --ignored --nocapture
//! ```
//!
//! `CONSENT_LEDGER_SEED` picks the seed (it is printed, so a failure can be replayed as
//! far as thread scheduling allows).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Barrier;

use consent_ledger::{
    Advertising, Change, Denied, Durability, Identifier, Ledger, PartnerSharing, PseudonymKey, Purpose,
    Recipient, RecipientScope, SigningKey, SubjectId,
};

const THREADS: usize = 8;
const SUBJECTS: usize = 24;
/// Purposes changed and decided on; index into the per-subject ticket table.
const PURPOSES: usize = 2;

fn seed() -> u64 {
    std::env::var("CONSENT_LEDGER_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_c0de)
}

/// xorshift64*: small, seeded, good enough to pick operations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// What a thread appended and had acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Grant,
    Withdraw,
}

#[derive(Debug, Clone, Copy)]
struct Acked {
    seq: u64,
    subject: usize,
    purpose: usize,
    kind: Kind,
}

/// A decision that was allowed: which grant it rested on, for the final check.
#[derive(Debug, Clone, Copy)]
struct Allowed {
    subject: usize,
    purpose: usize,
    by: u64,
}

struct Shared {
    ledger: Ledger,
    ids_ads: Vec<Identifier<Advertising>>,
    ids_share: Vec<Identifier<PartnerSharing>>,
    subjects: Vec<SubjectId>,
    /// Per subject and purpose: 1 + the newest acknowledged change's sequence number
    /// (0: none yet).
    tickets: Vec<AtomicU64>,
    recipients: [Recipient; 3],
}

impl Shared {
    fn ticket(&self, subject: usize, purpose: usize) -> &AtomicU64 {
        &self.tickets[subject * PURPOSES + purpose]
    }
}

#[derive(Default)]
struct ThreadLog {
    acked: Vec<Acked>,
    allowed: Vec<Allowed>,
    decisions: u64,
    denied: u64,
}

/// Checks one decision against the tickets read before it started. Returns the entry it
/// rested on when it was allowed.
fn check_decision(
    outcome: Result<u64, Denied>,
    newest_acked_before: u64,
    purpose_id: &str,
    what: &str,
) -> Option<u64> {
    // `newest_acked_before` is 1 + seq, or 0 when nothing was acknowledged yet.
    let rested_on = match &outcome {
        Ok(by) => *by,
        Err(Denied::Withdrawn { at, purpose }) => {
            assert_eq!(*purpose, purpose_id, "{what}");
            *at
        }
        Err(Denied::RecipientNotCovered { entry, .. }) => *entry,
        Err(Denied::NoConsent { purpose }) => {
            assert_eq!(*purpose, purpose_id, "{what}");
            assert_eq!(
                newest_acked_before,
                0,
                "{what}: no consent reported although change {} was acknowledged before the decision",
                newest_acked_before.saturating_sub(1)
            );
            return None;
        }
        Err(other) => panic!("{what}: unexpected refusal {other:?}"),
    };
    assert!(
        rested_on + 1 >= newest_acked_before,
        "{what}: decision {outcome:?} rests on entry {rested_on}, older than change {} acknowledged before it started",
        newest_acked_before - 1
    );
    outcome.ok()
}

fn worker(shared: &Shared, barrier: &Barrier, thread: usize, ops: usize, seed: u64) -> ThreadLog {
    let mut rng = Rng::new(seed ^ (thread as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let mut log = ThreadLog::default();
    let l = &shared.ledger;
    barrier.wait();
    for op in 0..ops {
        let subject = rng.below(SUBJECTS as u64) as usize;
        let purpose = rng.below(PURPOSES as u64) as usize;
        let s = &shared.subjects[subject];
        let what = format!("thread {thread} op {op} subject {subject} purpose {purpose}");
        let change = match rng.below(10) {
            0..=2 => {
                let scope = if rng.below(3) == 0 {
                    RecipientScope::only(shared.recipients[0].clone())
                } else {
                    RecipientScope::all_partners()
                };
                let r = match purpose {
                    0 => l.grant::<Advertising>(s, scope, None),
                    _ => l.grant::<PartnerSharing>(s, scope, None),
                }
                .unwrap_or_else(|e| panic!("{what}: grant failed: {e}"));
                Some((r.seq, Kind::Grant))
            }
            3..=4 => {
                let r = match purpose {
                    0 => l.withdraw::<Advertising>(s),
                    _ => l.withdraw::<PartnerSharing>(s),
                }
                .unwrap_or_else(|e| panic!("{what}: withdraw failed: {e}"));
                Some((r.seq, Kind::Withdraw))
            }
            n => {
                let recipient = &shared.recipients[rng.below(3) as usize];
                let before = shared.ticket(subject, purpose).load(Ordering::SeqCst);
                let batch = n == 9;
                let outcome = match (purpose, batch) {
                    (0, false) => l
                        .authorize(&shared.ids_ads[subject], recipient)
                        .map(|u| u.evidence().allowed_by()),
                    (0, true) => l
                        .authorize_batch([&shared.ids_ads[subject]], recipient)
                        .pop()
                        .unwrap()
                        .map(|u| u.evidence().allowed_by()),
                    (_, false) => l
                        .authorize(&shared.ids_share[subject], recipient)
                        .map(|u| u.evidence().allowed_by()),
                    (_, true) => l
                        .authorize_batch([&shared.ids_share[subject]], recipient)
                        .pop()
                        .unwrap()
                        .map(|u| u.evidence().allowed_by()),
                };
                let purpose_id = if purpose == 0 {
                    Advertising::ID
                } else {
                    PartnerSharing::ID
                };
                log.decisions += 1;
                match check_decision(outcome, before, purpose_id, &what) {
                    Some(by) => log.allowed.push(Allowed { subject, purpose, by }),
                    None => log.denied += 1,
                }
                None
            }
        };
        // An acknowledged change: publish its ticket, remember it for the final checks.
        if let Some((seq, kind)) = change {
            shared
                .ticket(subject, purpose)
                .fetch_max(seq + 1, Ordering::SeqCst);
            log.acked.push(Acked {
                seq,
                subject,
                purpose,
                kind,
            });
        }
    }
    log
}

fn open(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey, durability: Durability) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .durability(durability)
        .open()
        .unwrap()
}

/// Every (subject, purpose, recipient) decision, as the entry it rested on or the refusal.
fn all_decisions(shared: &Shared, l: &Ledger) -> Vec<Result<u64, Denied>> {
    let mut out = Vec::new();
    for subject in 0..SUBJECTS {
        for r in &shared.recipients {
            out.push(
                l.authorize(&shared.ids_ads[subject], r)
                    .map(|u| u.evidence().allowed_by()),
            );
            out.push(
                l.authorize(&shared.ids_share[subject], r)
                    .map(|u| u.evidence().allowed_by()),
            );
        }
    }
    out
}

fn run(ops_per_thread: usize, durability: Durability) {
    let seed = seed();
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let ledger = open(dir.path(), &key, &pk, durability);
    let subjects: Vec<SubjectId> = (0..SUBJECTS)
        .map(|i| SubjectId::new(&format!("subject-{i}")).unwrap())
        .collect();
    let ids_ads: Vec<Identifier<Advertising>> = (0..SUBJECTS)
        .map(|i| Identifier::email(&format!("person{i}@example.com")).unwrap())
        .collect();
    let ids_share: Vec<Identifier<PartnerSharing>> = (0..SUBJECTS)
        .map(|i| Identifier::email(&format!("person{i}@example.com")).unwrap())
        .collect();
    for i in 0..SUBJECTS {
        ledger
            .collect(&subjects[i], &ids_ads[i], RecipientScope::all_partners())
            .unwrap();
        ledger
            .collect(&subjects[i], &ids_share[i], RecipientScope::all_partners())
            .unwrap();
    }
    let setup_len = ledger.len();
    let shared = Shared {
        ledger,
        ids_ads,
        ids_share,
        subjects,
        tickets: (0..SUBJECTS * PURPOSES).map(|_| AtomicU64::new(0)).collect(),
        recipients: [
            Recipient::partner("acme").unwrap(),
            Recipient::partner("beta").unwrap(),
            Recipient::FirstParty,
        ],
    };
    let barrier = Barrier::new(THREADS);
    let started = std::time::Instant::now();
    let logs: Vec<ThreadLog> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let shared = &shared;
                let barrier = &barrier;
                scope.spawn(move || worker(shared, barrier, t, ops_per_thread, seed))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();

    // No acknowledged append lost or duplicated: the acknowledged sequence numbers are
    // exactly the entries appended after the setup, each once.
    let mut acked: Vec<Acked> = logs.iter().flat_map(|l| l.acked.iter().copied()).collect();
    acked.sort_by_key(|a| a.seq);
    let l = &shared.ledger;
    assert_eq!(
        l.len(),
        setup_len + acked.len() as u64,
        "appends lost or invented"
    );
    for (i, a) in acked.iter().enumerate() {
        assert_eq!(
            a.seq,
            setup_len + i as u64,
            "sequence numbers duplicated or skipped"
        );
    }
    // Every allowed decision rested on an acknowledged grant of that subject and purpose.
    let grants: HashSet<(usize, usize, u64)> = acked
        .iter()
        .filter(|a| a.kind == Kind::Grant)
        .map(|a| (a.subject, a.purpose, a.seq))
        .collect();
    let allowed: Vec<Allowed> = logs.iter().flat_map(|l| l.allowed.iter().copied()).collect();
    for a in &allowed {
        assert!(
            grants.contains(&(a.subject, a.purpose, a.by)),
            "{a:?} rests on an entry that is not a grant of that subject and purpose"
        );
    }

    let report = l.verify().unwrap();
    assert_eq!(report.entries, l.len());
    report.require_trusted().unwrap();
    let before = all_decisions(&shared, l);

    // The same after reopening: every acknowledged change is in each subject's history,
    // in order, and decisions are unchanged.
    let Shared {
        ledger,
        ids_ads,
        ids_share,
        subjects,
        tickets,
        recipients,
    } = shared;
    drop(ledger);
    let reopened = open(dir.path(), &key, &pk, durability);
    assert_eq!(reopened.len(), setup_len + acked.len() as u64);
    let report = reopened.verify().unwrap();
    assert_eq!(report.entries, reopened.len());
    report.require_trusted().unwrap();
    let mut per_subject: BTreeMap<usize, Vec<Acked>> = BTreeMap::new();
    for a in &acked {
        per_subject.entry(a.subject).or_default().push(*a);
    }
    for (i, s) in subjects.iter().enumerate() {
        let changes: Vec<(u64, usize, Kind)> = reopened
            .history(s)
            .unwrap()
            .into_iter()
            .filter_map(|h| match h.change {
                Change::Granted { purpose, .. } => Some((h.seq, purpose, Kind::Grant)),
                Change::Withdrawn { purpose } => Some((h.seq, purpose, Kind::Withdraw)),
                _ => None,
            })
            .map(|(seq, p, k)| (seq, usize::from(p != Advertising::ID), k))
            .collect();
        let expected: Vec<(u64, usize, Kind)> = per_subject
            .get(&i)
            .map(|v| v.iter().map(|a| (a.seq, a.purpose, a.kind)).collect())
            .unwrap_or_default();
        assert_eq!(changes, expected, "history of subject {i}");
    }
    let shared = Shared {
        ledger: reopened,
        ids_ads,
        ids_share,
        subjects,
        tickets,
        recipients,
    };
    assert_eq!(all_decisions(&shared, &shared.ledger), before);

    let decisions: u64 = logs.iter().map(|l| l.decisions).sum();
    let denied: u64 = logs.iter().map(|l| l.denied).sum();
    println!(
        "concurrency ({durability:?}, seed {seed}): {THREADS} threads, {} operations in {elapsed:?}: \
         {} acknowledged appends, {decisions} decisions ({} allowed, {denied} refused), all checked",
        THREADS * ops_per_thread,
        acked.len(),
        allowed.len(),
    );
}

/// 100,000 operations: the writer and the state are shared exactly as with the other
/// settings, only the fsync is left to sled's background flush.
#[test]
fn concurrent_changes_and_decisions_relaxed() {
    run(100_000 / THREADS, Durability::Relaxed);
}

#[test]
fn concurrent_changes_and_decisions_group_commit() {
    run(250, Durability::GroupCommit);
}

#[test]
fn concurrent_changes_and_decisions_immediate() {
    run(50, Durability::Immediate);
}

#[test]
#[ignore = "full run: 100,000 operations with fsync; run with --ignored"]
fn concurrent_changes_and_decisions_full() {
    run(100_000 / THREADS, Durability::GroupCommit);
    run(20_000 / THREADS, Durability::Immediate);
}

/// Under group commit, concurrent grants and withdrawals are appended in batches by
/// whichever caller leads; each caller still gets its own result, refusals included.
#[test]
fn batched_callers_each_get_their_own_result() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::GroupCommit);
    let gone = SubjectId::new("erased-subject").unwrap();
    let erased_at = l.erase(&gone, consent_ledger::Actor::Subject).unwrap().seq;
    let barrier = Barrier::new(16);
    let results: Vec<(usize, Vec<Result<u64, String>>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let (l, gone, barrier) = (&l, &gone, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mine = SubjectId::new(&format!("caller-{t}")).unwrap();
                    let out = (0..50)
                        .map(|i| {
                            let r = match (t % 2, i % 2) {
                                (0, _) => {
                                    l.grant::<PartnerSharing>(gone, RecipientScope::all_partners(), None)
                                }
                                (_, 0) => {
                                    l.grant::<PartnerSharing>(&mine, RecipientScope::all_partners(), None)
                                }
                                _ => l.withdraw::<PartnerSharing>(&mine),
                            };
                            r.map(|r| r.seq).map_err(|e| e.to_string())
                        })
                        .collect();
                    (t, out)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut seqs = Vec::new();
    for (t, out) in results {
        for r in out {
            if t % 2 == 0 {
                assert_eq!(r, Err(format!("the subject was erased at entry {erased_at}")));
            } else {
                seqs.push(r.unwrap());
            }
        }
    }
    seqs.sort_unstable();
    let first = erased_at + 1;
    assert_eq!(
        seqs,
        (first..first + 400).collect::<Vec<_>>(),
        "each append once, no gaps"
    );
    assert_eq!(l.len(), first + 400);
    for t in (1..16).step_by(2) {
        let h = l
            .history(&SubjectId::new(&format!("caller-{t}")).unwrap())
            .unwrap();
        assert_eq!(h.len(), 50, "caller {t}");
    }
    l.verify().unwrap().require_trusted().unwrap();
}

/// Grants (batched under group commit) racing an erasure (appended directly) of the
/// same subjects: every grant is either in the log before the erasure or refused as
/// erased at exactly that entry; nothing about a subject is appended after its erasure.
#[test]
fn grants_racing_an_erasure_never_land_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = open(dir.path(), &key, &pk, Durability::GroupCommit);
    let subjects: Vec<SubjectId> = (0..8)
        .map(|i| SubjectId::new(&format!("racer-{i}")).unwrap())
        .collect();
    let barrier = Barrier::new(9);
    let (grants, erasures) = std::thread::scope(|scope| {
        let granters: Vec<_> = (0..8)
            .map(|t| {
                let (l, subjects, barrier) = (&l, &subjects, &barrier);
                scope.spawn(move || {
                    barrier.wait();
                    let mut out = Vec::new();
                    for i in 0..200 {
                        let s = (t + i) % subjects.len();
                        let r = l.grant::<PartnerSharing>(&subjects[s], RecipientScope::all_partners(), None);
                        out.push((s, r.map(|r| r.seq).map_err(|e| e.to_string())));
                    }
                    out
                })
            })
            .collect();
        let eraser = {
            let (l, subjects, barrier) = (&l, &subjects, &barrier);
            scope.spawn(move || {
                barrier.wait();
                subjects
                    .iter()
                    .map(|s| {
                        std::thread::sleep(std::time::Duration::from_millis(2));
                        l.erase(s, consent_ledger::Actor::Subject).unwrap().seq
                    })
                    .collect::<Vec<u64>>()
            })
        };
        let grants: Vec<(usize, Result<u64, String>)> =
            granters.into_iter().flat_map(|h| h.join().unwrap()).collect();
        (grants, eraser.join().unwrap())
    });
    let (mut before, mut refused) = (0, 0);
    for (s, r) in grants {
        match r {
            Ok(seq) => {
                assert!(
                    seq < erasures[s],
                    "grant at {seq} after erasure at {}",
                    erasures[s]
                );
                before += 1;
            }
            Err(e) => {
                assert_eq!(e, format!("the subject was erased at entry {}", erasures[s]));
                refused += 1;
            }
        }
    }
    assert_eq!(before + refused, 1600);
    assert!(refused > 0, "the erasures came too late to race anything");
    l.verify().unwrap().require_trusted().unwrap();
    for s in &subjects {
        let h = l.history(s).unwrap();
        assert!(matches!(h.last().unwrap().change, Change::Erased), "{h:?}");
    }
}

/// Checkpoints, proofs and receipts taken while grants and withdrawals are committed in
/// groups (signed by one leader while the batch before is stored by another): every
/// checkpoint verifies, covers every append acknowledged before it was asked for, and
/// extends the one before by a consistency proof; a receipt for the newest acknowledged
/// entry verifies offline. The Merkle tree is built on first use, so each of several
/// openings takes its first checkpoint in the middle of the appends, from what is stored
/// while batches are being stored.
#[test]
fn checkpoints_and_receipts_during_group_commit() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    for session in 0..12 {
        let l = open(dir.path(), &key, &pk, Durability::GroupCommit);
        let rounds = if session == 0 { 20 } else { 2 };
        audit_during_appends(&l, &key.verifying_key(), rounds);
    }
}

/// Eight threads append until an auditor has taken `rounds` checkpoints (the first once
/// at least 64 appends are acknowledged), each checked as above.
fn audit_during_appends(l: &Ledger, public: &consent_ledger::VerifyingKey, rounds: usize) {
    use consent_ledger::{verify_consistency, verify_inclusion, verify_receipt, SignedCheckpoint};
    use std::sync::atomic::AtomicBool;

    const APPENDERS: usize = 8;
    let start = l.len();
    // The length that every append acknowledged so far fits in.
    let acked = AtomicU64::new(start);
    let enough = AtomicBool::new(false);
    let barrier = Barrier::new(APPENDERS + 1);
    let (appended, checkpoints) = std::thread::scope(|scope| {
        let appenders: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let (acked, enough, barrier) = (&acked, &enough, &barrier);
                scope.spawn(move || {
                    let mine = SubjectId::new(&format!("appender-{start}-{t}")).unwrap();
                    barrier.wait();
                    let mut n = 0u64;
                    while !enough.load(Ordering::Acquire) {
                        let r = if n.is_multiple_of(2) {
                            l.grant::<PartnerSharing>(&mine, RecipientScope::all_partners(), None)
                        } else {
                            l.withdraw::<PartnerSharing>(&mine)
                        };
                        acked.fetch_max(r.unwrap().seq + 1, Ordering::AcqRel);
                        n += 1;
                    }
                    n
                })
            })
            .collect();
        let auditor = {
            let (acked, enough, barrier) = (&acked, &enough, &barrier);
            scope.spawn(move || {
                // Stops the appenders however the auditor ends, a failed check included.
                struct Stop<'a>(&'a AtomicBool);
                impl Drop for Stop<'_> {
                    fn drop(&mut self) {
                        self.0.store(true, Ordering::Release);
                    }
                }
                let _stop = Stop(enough);
                barrier.wait();
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
                while acked.load(Ordering::Acquire) < start + 64 {
                    assert!(std::time::Instant::now() < deadline, "the appenders stalled");
                    std::thread::yield_now();
                }
                let mut taken: Vec<SignedCheckpoint> = Vec::new();
                while taken.len() < rounds {
                    let covered = acked.load(Ordering::Acquire);
                    let cp = l.checkpoint().unwrap();
                    assert_eq!(SignedCheckpoint::verify(cp.text(), public).unwrap(), cp);
                    assert!(
                        cp.size() >= covered,
                        "checkpoint of {} entries misses acknowledged ones up to {covered}",
                        cp.size()
                    );
                    if let Some(prev) = taken.last() {
                        assert!(cp.size() >= prev.size());
                        let proof = l.consistency_proof(prev.size(), cp.size()).unwrap();
                        verify_consistency(prev, &cp, &proof).unwrap();
                    }
                    let seq = covered - 1;
                    let proof = l.inclusion_proof(seq, cp.size()).unwrap();
                    verify_inclusion(&l.entry_bytes(seq).unwrap(), &proof, &cp).unwrap();
                    let receipt = l.receipt(seq, "https://example.com/withdraw").unwrap();
                    assert_eq!(verify_receipt(&receipt, public).unwrap().entry_seq, seq);
                    taken.push(cp);
                }
                taken
            })
        };
        let appended: u64 = appenders.into_iter().map(|h| h.join().unwrap()).sum();
        (appended, auditor.join().unwrap())
    });
    assert_eq!(l.len(), start + appended);
    let end = l.checkpoint().unwrap();
    assert_eq!(end.size(), l.len());
    let proof = l.consistency_proof(checkpoints[0].size(), end.size()).unwrap();
    verify_consistency(&checkpoints[0], &end, &proof).unwrap();
    l.verify().unwrap().require_trusted().unwrap();
}

/// `Immediate` ("every append is flushed and fsynced before it returns"): a repeated
/// collection answered from the entry another thread has just stored and synced
/// (`Prepared::Already`) was acknowledged before that thread had marked the entry
/// durable (`make_durable`, run after the writer lock is released), so a checkpoint
/// taken after the acknowledgement did not cover it and a receipt for it was refused
/// as "not yet durable" (review r88). Runs for up to three seconds.
#[test]
fn immediate_already_recorded_is_covered_by_the_next_checkpoint() {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let l = open(
        dir.path(),
        &SigningKey::generate(),
        &PseudonymKey::generate(),
        Durability::Immediate,
    );
    let s = SubjectId::new("subject-a").unwrap();
    let stop = AtomicBool::new(false);
    let next = AtomicU64::new(0);
    let misses = Mutex::new(Vec::new());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    std::thread::scope(|scope| {
        // The first collector of each identifier.
        scope.spawn(|| {
            let mut i = 0u64;
            while std::time::Instant::now() < deadline && misses.lock().unwrap().len() < 5 {
                let id = Identifier::<consent_ledger::Security>::email(&format!("x{i}@example.com")).unwrap();
                next.store(i, SeqCst);
                l.collect(&s, &id, RecipientScope::first_party()).unwrap();
                i += 1;
            }
            stop.store(true, SeqCst);
        });
        // Collect the same identifier again; once acknowledged, ask for its receipt.
        for _ in 0..2 {
            scope.spawn(|| {
                while !stop.load(SeqCst) {
                    let i = next.load(SeqCst);
                    let id =
                        Identifier::<consent_ledger::Security>::email(&format!("x{i}@example.com")).unwrap();
                    let r = l.collect(&s, &id, RecipientScope::first_party()).unwrap();
                    let size = l.checkpoint().unwrap().size();
                    let receipt = l.receipt(r.seq, "https://example.com/withdraw");
                    let mut misses = misses.lock().unwrap();
                    if (size <= r.seq || receipt.is_err()) && misses.len() < 5 {
                        misses.push((r.seq, size, receipt.err()));
                    }
                }
            });
        }
    });
    let misses = misses.into_inner().unwrap();
    assert!(
        misses.is_empty(),
        "acknowledged (fsynced) collections, then (seq, checkpoint size, receipt error): {misses:?}"
    );
}
