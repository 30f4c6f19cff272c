//! Concurrency across the API (from review r88): erasures, collections, decisions,
//! audiences, checkpoints and verification from several threads, under each durability
//! setting; and an export taken while the subject changes.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::sync::{Barrier, Mutex};

use consent_ledger::*;

/// xorshift for picking operations.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

const IDS: usize = 6;

fn open(dir: &std::path::Path, durability: Durability) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(durability)
        .open()
        .unwrap()
}

fn email(j: usize) -> String {
    format!("pool{j}@example.com")
}

/// Identifiers moving between subjects through erasure, with decisions, audiences and
/// audits running meanwhile: no allowed use of an erased subject once its erasure was
/// acknowledged; the same decisions after reopening; the log verifies.
fn erase_collect_stress(durability: Durability, recording: Recording) {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let build = |d: Durability| {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .durability(d)
            .record_decisions(recording)
            .open()
            .unwrap()
    };
    let l = build(durability);
    let erased: Mutex<std::collections::HashSet<String>> = Mutex::default();
    let acme = Recipient::partner("acme").unwrap();
    let threads = 4;
    let barrier = Barrier::new(threads);
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (l, erased, acme, barrier) = (&l, &erased, &acme, &barrier);
            scope.spawn(move || {
                let mut rng = Rng(0x9e37_79b9 ^ ((t as u64 + 1) * 0x1234_5678_9abc));
                let mut mine: Vec<SubjectId> = Vec::new();
                barrier.wait();
                for op in 0..300 {
                    match rng.below(8) {
                        0 | 1 => {
                            let s = SubjectId::new(&format!("t{t}-s{op}")).unwrap();
                            let id = Identifier::<Advertising>::email(&email(rng.below(IDS as u64) as usize))
                                .unwrap();
                            match l.collect(&s, &id, RecipientScope::all_partners()) {
                                Ok(_) => {
                                    l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                                        .unwrap();
                                    mine.push(s);
                                }
                                Err(WriteError::HeldByAnotherSubject { .. }) => {}
                                Err(e) => panic!("collect: {e}"),
                            }
                        }
                        2 if !mine.is_empty() => {
                            let s = mine.swap_remove(rng.below(mine.len() as u64) as usize);
                            l.erase(&s, Actor::System).unwrap();
                            erased.lock().unwrap().insert(s.as_str().to_owned());
                        }
                        3 => {
                            let before = erased.lock().unwrap().clone();
                            let upload: Vec<String> = (0..IDS).map(email).collect();
                            let (matches, _) = l
                                .audience::<Advertising>(acme)
                                .threads(1 + (op % 2))
                                .collect(upload);
                            for m in matches {
                                assert!(
                                    !before.contains(m.subject().as_str()),
                                    "audience matched erased {:?}",
                                    m.subject()
                                );
                            }
                        }
                        4 => {
                            let _ = l.checkpoint().unwrap();
                            if op % 10 == 0 {
                                l.verify().unwrap();
                            }
                        }
                        _ => {
                            let before = erased.lock().unwrap().clone();
                            let id = Identifier::<Advertising>::email(&email(rng.below(IDS as u64) as usize))
                                .unwrap();
                            let ids = [id];
                            let one = l.authorize(&ids[0], acme).map(|u| u.evidence().subject().clone());
                            let batch = l
                                .authorize_batch(&ids, acme)
                                .pop()
                                .unwrap()
                                .map(|u| u.evidence().subject().clone());
                            for s in [one, batch].into_iter().flatten() {
                                assert!(!before.contains(s.as_str()), "allowed use of erased {s:?}");
                            }
                        }
                    }
                }
            });
        }
    });
    let decisions = |l: &Ledger| -> Vec<Result<String, Denied>> {
        (0..IDS)
            .map(|j| {
                let id = Identifier::<Advertising>::email(&email(j)).unwrap();
                l.authorize(&id, &acme)
                    .map(|u| u.evidence().subject().as_str().to_owned())
            })
            .collect()
    };
    let before = decisions(&l);
    let len = l.len();
    assert_eq!(l.verify().unwrap().entries, len);
    println!(
        "{durability:?}: {len} entries, erased {}",
        erased.lock().unwrap().len()
    );
    let records = l.decision_records().unwrap().len();
    drop(l);
    let l = build(durability);
    assert_eq!(l.len(), len);
    assert_eq!(decisions(&l), before, "decisions changed by reopening");
    if recording != Recording::Off {
        assert!(l.decision_records().unwrap().len() >= records);
    }
}

#[test]
fn erase_collect_stress_group_commit() {
    erase_collect_stress(
        Durability::GroupCommit,
        Recording::Aggregated {
            bucket: std::time::Duration::from_secs(60),
        },
    );
}

#[test]
fn erase_collect_stress_relaxed() {
    erase_collect_stress(Durability::Relaxed, Recording::Every);
}

#[test]
fn erase_collect_stress_immediate() {
    erase_collect_stress(Durability::Immediate, Recording::Off);
}

/// `export_subject` reads the subject's events from the log (`history`, as the state
/// stood when it started) and the recipients "in force" from the state later: a
/// collection recorded while the export reads the log shows up in the recipients of a
/// record whose events do not contain it. The export claims a disclosure scope that
/// no event it lists ever granted.
#[test]
fn an_export_taken_while_the_subject_changes_holds_one_moment() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), Durability::Relaxed);
    let s = SubjectId::new("subject-a").unwrap();
    let phone = Identifier::<Security>::phone("+15550100001").unwrap();
    l.collect(&s, &phone, RecipientScope::first_party()).unwrap();
    // A log long enough that reading it takes a while.
    let filler = SubjectId::new("filler").unwrap();
    for i in 0..3000 {
        let scope = if i % 2 == 0 {
            RecipientScope::first_party()
        } else {
            RecipientScope::all_partners()
        };
        l.grant::<Analytics>(&filler, scope, None).unwrap();
    }
    let acme = Recipient::partner("acme").unwrap();
    let mut found = None;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(4);
    let mut round = 0;
    while found.is_none() && std::time::Instant::now() < deadline {
        round += 1;
        // Alternate the scope of the subject's one identifier.
        let wide = round % 2 == 1;
        let started = AtomicBool::new(false);
        let export = std::thread::scope(|scope| {
            scope.spawn(|| {
                while !started.load(SeqCst) {
                    std::hint::spin_loop();
                }
                std::thread::sleep(std::time::Duration::from_millis(2));
                let to = if wide {
                    RecipientScope::only(acme.clone())
                } else {
                    RecipientScope::first_party()
                };
                l.collect(&s, &phone, to).unwrap();
            });
            started.store(true, SeqCst);
            l.export_subject(&s, "ask us").unwrap()
        });
        let doc: serde_json::Value = serde_json::from_str(&export).unwrap();
        // The record in force, its recipients and the collection it lists (the one in
        // force: replaced ones are in a record in force for nothing).
        let record = doc["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["inForce"] == true)
            .unwrap();
        let recipients = record["dpv:hasPurpose"]["dpv:hasRecipient"].to_string();
        let parts = record["dct:hasPart"].as_array().unwrap();
        let events = parts.len();
        let seq: u64 = parts[events - 1]["dct:identifier"]
            .as_str()
            .unwrap()
            .rsplit('#')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let history = l.history(&s).unwrap();
        let listed = history.iter().find(|h| h.seq == seq).unwrap();
        let listed_scope = match &listed.change {
            Change::Collected { scope, .. } => scope.to_string(),
            other => panic!("{other:?}"),
        };
        let claims_acme = recipients.contains("acme");
        if claims_acme != listed_scope.contains("acme") {
            found = Some((round, recipients, events, listed_scope));
        }
    }
    assert!(
        found.is_none(),
        "(round, recipients claimed, events listed, scope of the last listed collection): {found:?}"
    );
}
