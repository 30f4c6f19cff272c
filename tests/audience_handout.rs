//! Audience matches are decided again at hand-out when anything changed since their
//! decision (from reviews r86 and r88): a consent that lapsed, a withdrawal or an erasure
//! acknowledged while earlier matches were being handed out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use consent_ledger::{
    Actor, Advertising, Denied, Durability, Identifier, Ledger, ManualClock, PseudonymKey, Recipient,
    RecipientScope, SigningKey, SubjectId, Timestamp,
};

fn open(dir: &Path, durability: Durability) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(durability)
        .open()
        .unwrap()
}

const T0: u64 = 1_700_000_000_000;

/// (1) A consent that expires while an already-decided chunk waits to be handed out.
///
/// Alice's row is the first of a streamed upload; her consent expires at T0 + 60 s. The
/// next chunk's rows arrive slowly; meanwhile the clock passes her expiry. With one
/// thread her chunk is decided and handed out before that. With two threads (the
/// default on two cores) the worker decides her chunk at T0 and it waits while the
/// calling thread reads the next chunk; when it is merged, `decide_again_if_changed`
/// compares only the state's length (no entry was applied: an expiry is no entry), so
/// her match is handed out, and recorded as a use, after her consent expired: at that
/// moment `authorize` says `Expired`. The two paths disagree, and the 2-thread one
/// disagrees with `authorize` at the moment of use.
#[test]
fn a_match_is_not_handed_out_after_its_consent_expired() {
    let mut failures = Vec::new();
    for threads in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let l = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .durability(Durability::Relaxed)
            .clock(clock.clone())
            .open()
            .unwrap();
        let acme = Recipient::partner("acme-ads").unwrap();
        let alice = SubjectId::new("acct-alice").unwrap();
        let email = Identifier::<Advertising>::email("alice@example.com").unwrap();
        l.collect(&alice, &email, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(
            &alice,
            RecipientScope::all_partners(),
            Some(Timestamp::from_millis(T0 + 60_000)),
        )
        .unwrap();

        const CHUNK: usize = 64;
        let upload = (0..3 * CHUNK).map(|i| {
            if i == CHUNK + CHUNK / 2 {
                // Rows arrive slowly; meanwhile the consent expires.
                std::thread::sleep(Duration::from_millis(300));
                clock.set(Timestamp::from_millis(T0 + 120_000));
            }
            if i == 0 {
                "alice@example.com".to_owned()
            } else {
                format!("junk {i}")
            }
        });
        let mut handed_out = Vec::new();
        let counts = l
            .audience::<Advertising>(&acme)
            .chunk_size(CHUNK)
            .threads(threads)
            .run(upload, |m| {
                // What a decision at the moment of use says.
                let now = l
                    .authorize(&email, &acme)
                    .map(|_| ())
                    .map_err(|d| format!("{d:?}"));
                handed_out.push((m.evidence().position(), now));
            });
        for (position, now) in &handed_out {
            if let Err(reason) = now {
                failures.push(format!(
                    "threads {threads}: alice's match (decided at position {position}) was handed out \
                     while authorize at that moment says {reason}; counts: {counts}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// (1) A withdrawal acknowledged while a chunk's matches are being handed out.
///
/// The module doc now promises "no match is handed out after a withdrawal was
/// acknowledged". `merge` decides a chunk again (if the state changed) once, before its
/// first match is handed out; the callback then runs for every match of the chunk (up
/// to 4096 by default) with nothing checked between them. A consumer that takes time
/// per match (it sends each to the advertiser) gives another request all that time:
/// Bob withdraws, the withdrawal is acknowledged, and Bob's match, later in the same
/// chunk, is still handed out and recorded as a use. Both thread counts.
#[test]
fn a_match_is_not_handed_out_after_a_withdrawal_acknowledged_during_the_hand_out() {
    let mut failures = Vec::new();
    for threads in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .durability(Durability::Relaxed)
            .open()
            .unwrap();
        let acme = Recipient::partner("acme-ads").unwrap();
        let alice = SubjectId::new("acct-alice").unwrap();
        let bob = SubjectId::new("acct-bob").unwrap();
        for (s, e) in [(&alice, "alice@example.com"), (&bob, "bob@example.com")] {
            let id = Identifier::<Advertising>::email(e).unwrap();
            l.collect(s, &id, RecipientScope::all_partners()).unwrap();
            l.grant::<Advertising>(s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        let withdrawn_at = Mutex::new(None::<u64>);
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (ack, acked) = std::sync::mpsc::channel::<u64>();
        let mut handed_out = Vec::new();
        std::thread::scope(|s| {
            // Another request: Bob withdraws while the matches are being sent.
            let (l2, bob2) = (&l, &bob);
            s.spawn(move || {
                if asked.recv().is_ok() {
                    let w = l2.withdraw::<Advertising>(bob2).unwrap();
                    ack.send(w.seq).unwrap();
                }
            });
            l.audience::<Advertising>(&acme).threads(threads).run(
                ["alice@example.com", "bob@example.com"],
                |m| {
                    let at = *withdrawn_at.lock().unwrap();
                    handed_out.push((m.subject().clone(), at, m.evidence().position()));
                    if m.subject() == &alice {
                        // Sending alice's match takes a while; meanwhile Bob withdraws.
                        ask.send(()).unwrap();
                        *withdrawn_at.lock().unwrap() = Some(acked.recv().unwrap());
                    }
                },
            );
            drop(ask);
        });
        for (who, withdrawn, position) in &handed_out {
            if who == &bob && withdrawn.is_some() {
                failures.push(format!(
                    "threads {threads}: bob's match (decided at position {position}) was handed out \
                     after his withdrawal (entry {withdrawn:?}) had been acknowledged"
                ));
            }
        }
        assert!(matches!(
            l.authorize(
                &Identifier::<Advertising>::email("bob@example.com").unwrap(),
                &acme
            ),
            Err(Denied::Withdrawn { .. })
        ));
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Two subjects whose advertising emails are collected and consented for all partners.
fn two_consenting(l: &Ledger) -> (SubjectId, SubjectId) {
    let a = SubjectId::new("subject-a").unwrap();
    let b = SubjectId::new("subject-b").unwrap();
    for (s, e) in [(&a, "a@example.com"), (&b, "b@example.com")] {
        let id = Identifier::<Advertising>::email(e).unwrap();
        l.collect(s, &id, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    (a, b)
}

/// The audience module promises: "if the ledger recorded any change since its
/// decisions, its matches are decided again when they are handed out, so no match is
/// handed out after a withdrawal was acknowledged". A chunk is decided again once, at
/// the start of its merge, and then its matches are handed to `on_match` one by one: a
/// withdrawal acknowledged while the first match is being handled (here, by the
/// callback itself; in production, by any other thread) does not stop the second.
#[test]
fn audience_hands_out_no_match_after_its_withdrawal_was_acknowledged() {
    for threads in [1, 2] {
        let dir = tempfile::tempdir().unwrap();
        let l = open(dir.path(), Durability::Relaxed);
        let (a, b) = two_consenting(&l);
        let acme = Recipient::partner("acme").unwrap();
        let mut withdrawn_at = None;
        let mut late = Vec::new();
        l.audience::<Advertising>(&acme)
            .threads(threads)
            .run(["a@example.com", "b@example.com"], |m| {
                if withdrawn_at.is_some() {
                    late.push(m.subject().clone());
                    return;
                }
                // Handling the first match: the other subject withdraws, and the
                // withdrawal is acknowledged (returns Ok) before the next match.
                let other = if *m.subject() == a { &b } else { &a };
                withdrawn_at = Some((other.clone(), l.withdraw::<Advertising>(other).unwrap().seq));
            });
        let (other, at) = withdrawn_at.unwrap();
        assert!(
            late.is_empty(),
            "threads({threads}): {late:?} handed out after its withdrawal (entry {at}) was acknowledged; \
             authorize now says {:?}",
            l.authorize(
                &Identifier::<Advertising>::email(if other == a {
                    "a@example.com"
                } else {
                    "b@example.com"
                })
                .unwrap(),
                &acme
            )
            .map(|u| u.evidence().allowed_by())
        );
    }
}

/// The same window with an erasure from another thread: erasure is complete once
/// acknowledged, yet the erased subject is still handed out to the advertiser.
#[test]
fn audience_hands_out_no_erased_subject_after_the_erasure_was_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path(), Durability::Immediate);
    let (a, b) = two_consenting(&l);
    let acme = Recipient::partner("acme").unwrap();
    let go = Arc::new(Barrier::new(2));
    let erased: Arc<Mutex<Option<SubjectId>>> = Arc::default();
    let mut late = Vec::new();
    std::thread::scope(|scope| {
        let (l2, go2, erased2) = (l.clone(), go.clone(), erased.clone());
        let (a2, b2) = (a.clone(), b.clone());
        let eraser = scope.spawn(move || {
            go2.wait(); // the first match is being handled
                        // Erase whichever subject was not handed out first (told through `erased`).
            let who = erased2.lock().unwrap().clone().unwrap();
            let who = if who == a2 { b2 } else { a2 };
            l2.erase(&who, Actor::System).unwrap();
            go2.wait(); // acknowledged
        });
        let mut first = true;
        l.audience::<Advertising>(&acme)
            .threads(1)
            .run(["a@example.com", "b@example.com"], |m| {
                if first {
                    first = false;
                    *erased.lock().unwrap() = Some(m.subject().clone());
                    go.wait();
                    go.wait();
                } else {
                    late.push(m.subject().clone());
                }
            });
        eraser.join().unwrap();
    });
    assert!(
        late.is_empty(),
        "{late:?} handed to the advertiser after its erasure was acknowledged"
    );
}

/// (Review r89.) `merge` moved its length on to the one a re-decision read, and then
/// treated every later candidate of the chunk as if decided at that length. Upload
/// [x, a, b] (one chunk): the callback for x's match makes a change about b (a
/// withdrawal, or an erasure) and it is acknowledged; a's check sees the length moved
/// and decides a again (seen_len := new length); b's check then compares the applied
/// length with that *new* seen_len, finds them equal, and hands b out on its decision
/// from before the change: a withdrawal/erasure acknowledged before b's hand-out is not
/// seen, contrary to the module doc ("no match is handed out after a withdrawal or an
/// erasure was acknowledged") and to `authorize` at that moment.
#[test]
fn a_redecision_of_one_match_does_not_vouch_for_the_later_ones() {
    let mut failures = Vec::new();
    for threads in [1usize, 2] {
        for erase in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let l = open(dir.path(), Durability::Relaxed);
            let acme = Recipient::partner("acme-ads").unwrap();
            let names = ["x", "a", "b"];
            let mut ids = Vec::new();
            for n in names {
                let s = SubjectId::new(&format!("acct-{n}")).unwrap();
                let id = Identifier::<Advertising>::email(&format!("{n}@example.com")).unwrap();
                l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
                l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                    .unwrap();
                ids.push((s, id));
            }
            let (bob, bob_email) = (&ids[2].0, &ids[2].1);
            let upload = ["x@example.com", "a@example.com", "b@example.com"];
            let mut handed = Vec::new();
            let mut b_then = Vec::new();
            let counts = l
                .audience::<Advertising>(&acme)
                .threads(threads)
                .run(upload, |m| {
                    if m.row() == 0 {
                        // Another request, acknowledged before b's hand-out.
                        if erase {
                            l.erase(bob, Actor::Subject).unwrap();
                        } else {
                            l.withdraw::<Advertising>(bob).unwrap();
                        }
                    }
                    if m.row() == 2 {
                        b_then.push(format!("{:?}", l.authorize(bob_email, &acme).map(|_| ())));
                    }
                    handed.push(m.row());
                });
            let total = counts.malformed
                + counts.unknown
                + counts.matched
                + counts.duplicates
                + counts.denied.total();
            assert_eq!(counts.uploaded, total, "{counts}");
            if handed.contains(&2) {
                failures.push(format!(
                    "threads {threads}, {}: b's match handed out after the change was acknowledged; \
                     authorize then: {b_then:?}; counts: {counts}",
                    if erase { "erasure" } else { "withdrawal" }
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
