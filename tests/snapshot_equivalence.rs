//! A ledger opened from a snapshot (plus the entries after it) decides exactly as one
//! opened by replaying the whole log, and as the live ledger did before it was closed:
//! every identifier, purpose and recipient, with denial reasons and evidence.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

#[macro_use]
mod random_history;
mod sled_util;

use std::path::Path;
use std::time::Duration;

use random_history::{ident, random_ops, recipients_pool, Mix, TYPES, VALUES};

use consent_ledger::{
    Durability, Ledger, ManualClock, PseudonymKey, SigningKey, Snapshots, SubjectId, Timestamp,
};

const EVERY_CLOSE: Snapshots = Snapshots::OnClose { min_new_entries: 1 };
const NEVER_WRITE: Snapshots = Snapshots::OnClose {
    min_new_entries: u64::MAX,
};

fn open(
    dir: &Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    clock: &ManualClock,
    snapshots: Snapshots,
    aggregated: bool,
) -> Ledger {
    let mut b = Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .snapshots(snapshots);
    if aggregated {
        b = b.record_decisions(consent_ledger::Recording::Aggregated {
            bucket: Duration::from_secs(30),
        });
    }
    b.open().unwrap()
}

/// Every decision, as text (outcome, denial reason, evidence).
fn decisions(l: &Ledger) -> Vec<String> {
    let mut out = Vec::new();
    for v in 0..VALUES.len() {
        for t in TYPES {
            for r in recipients_pool() {
                let d = with_type!(t, P => match l.authorize(&ident::<P>(v), &r) {
                    Ok(u) => {
                        let e = u.evidence();
                        format!(
                            "ok {} {:?} pos {} by {} coll {} at {:?}",
                            e.subject(),
                            e.legal_basis(),
                            e.position(),
                            e.allowed_by(),
                            e.collected_at(),
                            e.decided_at()
                        )
                    }
                    Err(d) => format!("{d:?}"),
                });
                out.push(format!("v{v} {t:?} {r}: {d}"));
            }
        }
    }
    out
}

fn diff(a: &[String], b: &[String]) -> Vec<(String, String)> {
    a.iter()
        .zip(b)
        .filter(|(x, y)| x != y)
        .map(|(x, y)| (x.clone(), y.clone()))
        .take(5)
        .collect()
}

/// Seeded random histories, closed with a snapshot at random points, appended to, and
/// reopened with snapshots on and off.
#[test]
fn snapshot_replay_and_live_decide_alike() {
    let seeds: u64 = std::env::var("SNAP_EQ_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let mut used_snapshot = 0;
    for seed in 1..=seeds {
        let dir = tempfile::tempdir().unwrap();
        let mut key = SigningKey::generate();
        let pk = PseudonymKey::generate();
        let clock = ManualClock::new(Timestamp::from_millis(1_700_000_000_000 + seed * 1000));
        let aggregated = seed % 3 == 0;
        let mix = Mix {
            draws: 13,
            erase_one_in: 3,
            rest_authorizes: true,
        };
        let subj = |i: u64| SubjectId::new(&format!("s{i}")).unwrap();
        let phases = 2 + (seed % 3) as usize;
        for phase in 0..phases {
            let snaps = if (seed + phase as u64).is_multiple_of(2) {
                EVERY_CLOSE
            } else {
                NEVER_WRITE
            };
            let l = open(dir.path(), &key, &pk, &clock, snaps, aggregated);
            let p = phase as u64;
            let subjects = [subj(p), subj(p + 1)];
            let n = 5 + (seed * 7 + p * 13) as usize % 40;
            random_ops(&l, &clock, &subjects, seed * 100 + p, n, &mix);
            if (seed + p).is_multiple_of(5) {
                key = SigningKey::generate();
                l.rotate_key(key.clone()).unwrap();
                random_ops(&l, &clock, &subjects, seed * 1000 + p, 5, &mix);
            }
            let live = decisions(&l);
            // Sometimes let expiries lapse between the decisions and close.
            let step = (seed + p) % 4 == 1;
            if step {
                clock.advance(Duration::from_secs(61));
            }
            let live_after = decisions(&l);
            drop(l);
            let had = dir.path().join("state").is_file();
            // Replay in a copy (Off destroys the snapshot).
            let copy = tempfile::tempdir().unwrap();
            sled_util::copy_dir(dir.path(), copy.path());
            let replayed = open(copy.path(), &key, &pk, &clock, Snapshots::Off, aggregated);
            let from_replay = decisions(&replayed);
            drop(replayed);
            let snapped = open(dir.path(), &key, &pk, &clock, NEVER_WRITE, aggregated);
            let from_snap = decisions(&snapped);
            drop(snapped);
            if had && dir.path().join("state").is_file() {
                used_snapshot += 1;
            }
            assert_eq!(
                from_snap,
                from_replay,
                "seed {seed} phase {phase}: snapshot vs replay {:#?}",
                diff(&from_snap, &from_replay)
            );
            assert_eq!(
                live_after,
                from_replay,
                "seed {seed} phase {phase}: live vs replay {:#?}",
                diff(&live_after, &from_replay)
            );
            let _ = live;
        }
    }
    println!("opens that used a snapshot: {used_snapshot}");
    assert!(used_snapshot > 0);
}

/// What an open decides: every decision, and the checkpoint text.
type Decided = (Vec<String>, String);

/// Opens `dir` twice, from its snapshot and (in a copy) by replay, and returns both
/// decision lists, checkpoints and whether the snapshot was used.
fn both_ways(
    dir: &Path,
    key: &SigningKey,
    pk: &PseudonymKey,
    clock: &ManualClock,
    aggregated: bool,
) -> (Decided, Decided, bool) {
    let had = dir.join("state").is_file();
    let copy = tempfile::tempdir().unwrap();
    sled_util::copy_dir(dir, copy.path());
    let r = open(copy.path(), key, pk, clock, Snapshots::Off, aggregated);
    let replayed = (decisions(&r), r.checkpoint().unwrap().text().to_owned());
    r.verify().unwrap();
    drop(r);
    let s = open(dir, key, pk, clock, NEVER_WRITE, aggregated);
    let snapped = (decisions(&s), s.checkpoint().unwrap().text().to_owned());
    s.verify().unwrap();
    drop(s);
    (snapped, replayed, had && dir.join("state").is_file())
}

/// Edge cases: an expiry that lapses between close and reopen, a clock set back
/// between them (the time floor), an erasure after a snapshot with the identifier then
/// collected by another subject, a rotation and a revocation of the old key.
#[test]
fn edge_cases_decide_alike() {
    use consent_ledger::{Actor, Advertising, Identifier, RecipientScope};
    for aggregated in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let pk = PseudonymKey::generate();
        let t0 = Timestamp::from_millis(1_700_000_000_000);
        let clock = ManualClock::new(t0);
        let a = SubjectId::new("alice").unwrap();
        let b = SubjectId::new("bob").unwrap();
        let x = Identifier::<Advertising>::email("x@example.com").unwrap();
        let l = open(dir.path(), &key, &pk, &clock, EVERY_CLOSE, aggregated);
        l.collect(&a, &x, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(
            &a,
            RecipientScope::all_partners(),
            Some(t0.saturating_add(Duration::from_secs(60))),
        )
        .unwrap();
        let acme = consent_ledger::Recipient::partner("acme").unwrap();
        assert!(l.authorize(&x, &acme).is_ok());
        drop(l);
        // Lapses between close and reopen.
        clock.advance(Duration::from_secs(61));
        let (s, r, used) = both_ways(dir.path(), &key, &pk, &clock, aggregated);
        assert!(used);
        assert_eq!(s, r, "lapse");
        // Clock set back before the last use: the floor.
        clock.set(t0);
        let (s, r, _) = both_ways(dir.path(), &key, &pk, &clock, aggregated);
        assert_eq!(s, r, "floor");
        clock.set(t0.saturating_add(Duration::from_secs(120)));
        // Erase after the snapshot; another subject collects the identifier.
        let l = open(dir.path(), &key, &pk, &clock, NEVER_WRITE, aggregated);
        l.erase(&a, Actor::Subject).unwrap();
        l.collect(&b, &x, RecipientScope::only(acme.clone())).unwrap();
        l.grant::<Advertising>(&b, RecipientScope::all_partners(), None)
            .unwrap();
        let live = decisions(&l);
        drop(l);
        let (s, r, _) = both_ways(dir.path(), &key, &pk, &clock, aggregated);
        assert_eq!(s, r, "erase then collect, no snapshot");
        assert_eq!(s.0, live);
        // Now with a snapshot written after it, then rotation and revocation.
        let l = open(dir.path(), &key, &pk, &clock, EVERY_CLOSE, aggregated);
        l.withdraw::<Advertising>(&b).unwrap();
        drop(l);
        let (s, r, used) = both_ways(dir.path(), &key, &pk, &clock, aggregated);
        assert!(used);
        assert_eq!(s, r, "snapshot after erasure");
        let key2 = SigningKey::generate();
        let l = open(dir.path(), &key, &pk, &clock, EVERY_CLOSE, aggregated);
        l.rotate_key(key2.clone()).unwrap();
        l.revoke_key(key.verifying_key(), 3).unwrap();
        l.grant::<Advertising>(&b, RecipientScope::all_partners(), None)
            .unwrap();
        let live = decisions(&l);
        l.sync().unwrap();
        let cp = l.checkpoint().unwrap().text().to_owned();
        drop(l);
        let (s, r, used) = both_ways(dir.path(), &key2, &pk, &clock, aggregated);
        assert!(used);
        assert_eq!(s, r, "rotation");
        assert_eq!(s.0, live);
        assert_eq!(s.1, cp);
        // And a snapshot after the revocation, reopened.
        let l = open(dir.path(), &key2, &pk, &clock, EVERY_CLOSE, aggregated);
        l.withdraw::<Advertising>(&b).unwrap();
        drop(l);
        let (s, r, used) = both_ways(dir.path(), &key2, &pk, &clock, aggregated);
        assert!(used);
        assert_eq!(s, r, "after revocation");
    }
}
