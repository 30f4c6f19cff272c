//! The subject export on random histories (from review r93): every event once, unique
//! ids, every use naming an exported event, the same bytes after a reopen; and the
//! erasure's untrusted mark, and record ids distinct between subjects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod export_util;
mod random_history;

use consent_ledger::*;
use export_util::{events_with_erasure, export};
use random_history::{random_ops, Mix};
use serde_json::Value;

/// Random histories: the export after a reopen equals the one before; every history
/// event is in exactly one record; record ids are unique; every use names an event.
fn reopen_run(seed: u64, ops: usize, snapshots: bool) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .durability(Durability::Relaxed)
            .record_decisions(Recording::Every)
            .snapshots(if snapshots {
                Snapshots::default()
            } else {
                Snapshots::Off
            })
            .clock(clock.clone())
            .open()
            .unwrap()
    };
    let l = open();
    let subjects = [SubjectId::new("s-1").unwrap(), SubjectId::new("s-2").unwrap()];
    let mix = Mix {
        draws: 13,
        erase_one_in: 4,
        rest_authorizes: true,
    };
    let log = random_ops(&l, &clock, &subjects, seed, ops, &mix);
    let before: Vec<String> = subjects
        .iter()
        .map(|s| l.export_subject(s, "-").unwrap())
        .collect();
    for (s, json) in subjects.iter().zip(&before) {
        let doc: Value = serde_json::from_str(json).unwrap();
        let origin = l.checkpoint().unwrap().origin().to_owned();
        let mut hist: Vec<String> = l
            .history(s)
            .unwrap()
            .iter()
            .map(|h| format!("{origin}#{}", h.seq))
            .collect();
        hist.sort();
        let events = events_with_erasure(&doc);
        if events != hist {
            return Some(format!(
                "seed {seed}: events {events:?} history {hist:?}\n{}\n{json}",
                log.join("\n")
            ));
        }
        let mut ids: Vec<&str> = doc["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dpv:hasIdentifier"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != n {
            return Some(format!(
                "seed {seed}: duplicate record ids\n{}\n{json}",
                log.join("\n")
            ));
        }
        for u in doc["uses"].as_array().unwrap() {
            let by = u["allowed_by"].as_str().unwrap().to_owned();
            if !events.contains(&by) && doc["erased"] == false {
                return Some(format!(
                    "seed {seed}: use by {by} not in events\n{}\n{json}",
                    log.join("\n")
                ));
            }
        }
    }
    drop(l);
    let l = open();
    let after: Vec<String> = subjects
        .iter()
        .map(|s| l.export_subject(s, "-").unwrap())
        .collect();
    for (b, a) in before.iter().zip(&after) {
        if a != b {
            return Some(format!(
                "seed {seed}: differs after reopen\n{}\nBEFORE\n{b}\nAFTER\n{a}",
                log.join("\n")
            ));
        }
    }
    None
}

#[test]
fn random_histories_reopen_partition_and_uses_hold() {
    let runs: u64 = std::env::var("R93_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for seed in 0..runs {
        for snaps in [false, true] {
            if let Some(p) = reopen_run(seed, 40, snaps) {
                panic!("snapshots {snaps}: {p}");
            }
        }
    }
}

/// An erasure signed by a key the log later revoked from that position (a stolen key:
/// its holder erased the subject). `history` marks the erasure untrusted (it walks the
/// log for this very reason: "to learn who signed the erasure"), and the export's doc
/// says every event signed by such a key carries `"untrusted"`. The export's top-level
/// `erasure` event drops the mark: the person and the operator read a forged erasure
/// as a plain one.
#[test]
fn an_erasure_signed_by_a_revoked_key_is_exported_with_its_untrusted_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let l = Ledger::builder(dir.path())
        .signing_key(k0.clone())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap();
    let s = SubjectId::new("user-1").unwrap();
    let email = Identifier::<Security>::email("alice@example.com").unwrap();
    l.collect(&s, &email, RecipientScope::first_party()).unwrap();
    // Signed by k0, which is then found stolen from this position on.
    let erased = l.erase(&s, Actor::Subject).unwrap();
    l.rotate_key(k1).unwrap();
    l.revoke_key(k0.verifying_key(), erased.seq).unwrap();

    let history = l.history(&s).unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        history[0].untrusted().is_some(),
        "history marks the erasure as signed by the revoked key"
    );
    let doc = export(&l, &s);
    assert!(
        doc["erasure"].get("untrusted").is_some(),
        "the erasure was signed by a revoked key (history says so); the export's erasure \
         event does not:\n{:#}",
        doc["erasure"]
    );
}

/// A record's id is `<ledger>#<purpose>/<basis>`: it does not name the subject, so the
/// consent records of two different people in one ledger carry the same id. A
/// consumer keeping records by id (the point of a record identifier in ISO/IEC TS 27560
/// / DPV `hasIdentifier`) merges or overwrites one person's consent record with
/// another's. (The ids of the version before, event positions, were unique in the
/// ledger.)
#[test]
fn two_subjects_consent_records_have_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let (alice, bob) = (
        SubjectId::new("user-1").unwrap(),
        SubjectId::new("user-2").unwrap(),
    );
    l.grant::<Analytics>(&alice, RecipientScope::only(acme.clone()), None)
        .unwrap();
    l.withdraw::<Analytics>(&alice).unwrap();
    l.grant::<Analytics>(&bob, RecipientScope::all_partners(), None)
        .unwrap();
    let id = |s: &SubjectId| {
        let doc = export(&l, s);
        let rec = doc["@graph"][0].clone();
        (rec["dpv:hasIdentifier"].as_str().unwrap().to_owned(), rec)
    };
    let ((a, ra), (b, rb)) = (id(&alice), id(&bob));
    assert_ne!(
        a, b,
        "two different records (alice's withdrawn consent, bob's given one) have one id:\n{ra:#}\n{rb:#}"
    );
}
