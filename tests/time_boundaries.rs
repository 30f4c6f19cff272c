//! Time at its boundaries (from a review): at the instant a grant expires every decision path, `expiring`, `record_expiries`, the export and impact agree; the time floor survives a clean close without entries, and a crash that leaves the head record's floor behind the last recorded use.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::time::Duration;

use consent_ledger::{
    Advertising, At, Denied, Durability, Hypothesis, Identifier, ImpactQuery, Ledger, ManualClock,
    PseudonymKey, Recipient, RecipientScope, Recording, SigningKey, SubjectId, Timestamp,
};

const T0: u64 = 1_700_000_000_000;

struct Fx {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    clock: ManualClock,
}

impl Fx {
    fn new() -> Self {
        Fx {
            dir: tempfile::tempdir().unwrap(),
            key: SigningKey::generate(),
            pk: PseudonymKey::generate(),
            clock: ManualClock::new(Timestamp::from_millis(T0)),
        }
    }
    fn open(&self) -> Ledger {
        Ledger::builder(self.dir.path())
            .signing_key(self.key.clone())
            .pseudonym_key(self.pk.clone())
            .durability(Durability::Relaxed)
            .clock(self.clock.clone())
            .record_decisions(Recording::Every)
            .open()
            .unwrap()
    }
}

fn s(x: &str) -> SubjectId {
    SubjectId::new(x).unwrap()
}

#[test]
fn boundary_agrees_everywhere() {
    let fx = Fx::new();
    let l = fx.open();
    let alice = s("alice");
    let email = "alice@example.org";
    let id = Identifier::<Advertising>::email(email).unwrap();
    l.collect(&alice, &id, RecipientScope::first_party()).unwrap();
    let e = Timestamp::from_millis(T0 + 10_000);
    l.grant::<Advertising>(&alice, RecipientScope::first_party(), Some(e))
        .unwrap();
    let r = Recipient::FirstParty;
    // One ms before: allowed everywhere.
    fx.clock.set(Timestamp::from_millis(T0 + 9_999));
    assert!(l.authorize(&id, &r).is_ok());
    // At the expiry instant.
    fx.clock.set(e);
    assert!(matches!(l.authorize(&id, &r), Err(Denied::Expired { .. })));
    let ids = [Identifier::<Advertising>::email(email).unwrap()];
    assert!(matches!(
        l.authorize_batch(&ids, &r)[0],
        Err(Denied::Expired { .. })
    ));
    for threads in [1, 2] {
        let (m, c) = l.audience::<Advertising>(&r).threads(threads).collect([email]);
        assert!(m.is_empty(), "threads {threads}");
        assert_eq!(c.denied.expired, 1);
    }
    assert!(matches!(
        l.authorize_at(&id, &r, At::Time(e)).unwrap(),
        Err(Denied::Expired { .. })
    ));
    assert!(l
        .authorize_at(&id, &r, At::Time(Timestamp::from_millis(T0 + 9_999)))
        .unwrap()
        .is_ok());
    assert_eq!(l.expiring(Duration::ZERO).unwrap().len(), 1);
    let ex = l.export_subject(&alice, "x").unwrap();
    assert!(ex.contains("dpv:ConsentExpired"), "{ex}");
    // Clock back: still expired.
    fx.clock.set(Timestamp::from_millis(T0));
    assert!(matches!(l.authorize(&id, &r), Err(Denied::Expired { .. })));
    assert_eq!(l.record_expiries().unwrap().len(), 1);
    assert!(matches!(l.authorize(&id, &r), Err(Denied::Expired { .. })));
    let rep = l
        .impact(&ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::WithdrawalsImmediate))
        .unwrap();
    assert_eq!(rep.records, 1);
    assert!(rep.unlawful.is_empty(), "{rep:?}");
    drop(l);
    // Reopen with the clock back.
    let l = fx.open();
    assert!(matches!(l.authorize(&id, &r), Err(Denied::Expired { .. })));
}

#[test]
fn floor_survives_clean_close_without_entries() {
    let fx = Fx::new();
    let l = fx.open();
    let alice = s("alice");
    let id = Identifier::<Advertising>::email("alice@example.org").unwrap();
    l.collect(&alice, &id, RecipientScope::first_party()).unwrap();
    let e = Timestamp::from_millis(T0 + 10_500);
    l.grant::<Advertising>(&alice, RecipientScope::first_party(), Some(e))
        .unwrap();
    // The last rise is under a second, which decisions do not save: only the close's
    // save keeps it (review r73: with one jump of 10 s, the test passed without it).
    fx.clock.set(Timestamp::from_millis(T0 + 10_000));
    assert!(l.authorize(&id, &Recipient::FirstParty).is_ok());
    fx.clock.set(Timestamp::from_millis(T0 + 10_600));
    assert!(l.authorize(&id, &Recipient::FirstParty).is_err());
    drop(l);
    fx.clock.set(Timestamp::from_millis(T0 + 10_100));
    let l = fx.open();
    assert!(matches!(
        l.authorize(&id, &Recipient::FirstParty),
        Err(Denied::Expired { .. })
    ));
    // entry timestamps never go back
    let g = l
        .grant::<Advertising>(&alice, RecipientScope::first_party(), None)
        .unwrap();
    assert!(g.timestamp >= e, "{:?}", g.timestamp);
}

/// The head record's floor is saved each second the clock moves on, not synced: a kill
/// (or a power loss, which may lose even that write) leaves it behind the times the
/// last decisions used. A decision record sled made durable keeps such a time: the
/// next open starts no earlier. Here the floor on disk is the one saved at +10.0 s (as
/// a kill right after the use at +10.9 s leaves it, the records flushed), and the clock
/// is stepped back to +10.1 s: alice's grant, which lapsed at +10.5 s and was denied
/// as expired at +10.9 s, stays expired, and bob's evidence is not dated before his
/// recorded use.
#[test]
fn floor_covers_the_last_recorded_use_after_a_crash() {
    let fx = Fx::new();
    let (l, [a, b], used) = reopened_after_a_kill_behind_a_use(
        &fx,
        || fx.open(),
        |l, [a, b], used| {
            assert_eq!(
                l.authorize(b, &Recipient::FirstParty)
                    .unwrap()
                    .evidence()
                    .decided_at(),
                used
            );
            assert!(matches!(
                l.authorize(a, &Recipient::FirstParty),
                Err(Denied::Expired { .. })
            ));
        },
    );
    assert!(
        matches!(
            l.authorize(&a, &Recipient::FirstParty),
            Err(Denied::Expired { .. })
        ),
        "a grant denied as expired before the crash is allowed again after it"
    );
    let ev = l.authorize(&b, &Recipient::FirstParty).unwrap();
    assert!(
        ev.evidence().decided_at() >= used,
        "{:?}",
        ev.evidence().decided_at()
    );
}

/// Alice's grant lapses at +10.5 s, bob's never; alice's identifier is used at +10.0 s,
/// when the floor is saved, and `at_use` runs at +10.9 s (uses bob's, say). The ledger
/// is then dropped, its head file put back as it was at +10.0 s (as a kill leaves it:
/// the floor is saved each second, not synced), and reopened with `open` and the clock
/// at +10.1 s. Returns the reopened ledger, alice's and bob's identifiers and +10.9 s.
fn reopened_after_a_kill_behind_a_use(
    fx: &Fx,
    open: impl Fn() -> Ledger,
    at_use: impl FnOnce(&Ledger, [&Identifier<Advertising>; 2], Timestamp),
) -> (Ledger, [Identifier<Advertising>; 2], Timestamp) {
    let l = open();
    let (alice, bob) = (s("alice"), s("bob"));
    let a = Identifier::<Advertising>::email("alice@example.org").unwrap();
    let b = Identifier::<Advertising>::email("bob@example.org").unwrap();
    l.collect(&alice, &a, RecipientScope::first_party()).unwrap();
    l.collect(&bob, &b, RecipientScope::first_party()).unwrap();
    let lapse = Timestamp::from_millis(T0 + 10_500);
    l.grant::<Advertising>(&alice, RecipientScope::first_party(), Some(lapse))
        .unwrap();
    l.grant::<Advertising>(&bob, RecipientScope::first_party(), None)
        .unwrap();
    fx.clock.set(Timestamp::from_millis(T0 + 10_000));
    assert!(l.authorize(&a, &Recipient::FirstParty).is_ok());
    let head = fx.dir.path().join("head");
    let at_kill = std::fs::read(&head).unwrap();
    let used = Timestamp::from_millis(T0 + 10_900);
    fx.clock.set(used);
    at_use(&l, [&a, &b], used);
    // Under a second on: the floor was not saved again.
    assert_eq!(std::fs::read(&head).unwrap(), at_kill);
    drop(l);
    std::fs::write(&head, &at_kill).unwrap();
    fx.clock.set(Timestamp::from_millis(T0 + 10_100));
    (open(), [a, b], used)
}

/// The same with aggregated records: the aggregate of the newest bucket (alone in it,
/// with half-second buckets) holds the latest use.
#[test]
fn floor_covers_the_last_aggregated_use_after_a_crash() {
    let fx = Fx::new();
    let open = || {
        Ledger::builder(fx.dir.path())
            .signing_key(fx.key.clone())
            .pseudonym_key(fx.pk.clone())
            .durability(Durability::Relaxed)
            .clock(fx.clock.clone())
            .record_decisions(Recording::Aggregated {
                bucket: Duration::from_millis(500),
            })
            .open()
            .unwrap()
    };
    let (l, [a, _], _) = reopened_after_a_kill_behind_a_use(&fx, open, |l, [_, b], _| {
        assert!(l.authorize(b, &Recipient::FirstParty).is_ok());
        // The counts are written (as a full table, `sync` or reading them writes them).
        assert_eq!(l.decision_records().unwrap().len(), 2);
    });
    let r = Recipient::FirstParty;
    assert!(
        matches!(l.authorize(&a, &r), Err(Denied::Expired { .. })),
        "a grant that had lapsed before the crash is allowed again after it"
    );
}

/// Review h35-c: after the clock is stepped back (here: set an hour ahead by mistake,
/// then corrected), every entry and every decision is stamped with the high-water
/// time until the clock catches up, so a use and a withdrawal made ten minutes later
/// carry the same millisecond and time alone cannot order them (documented on
/// `Clock`, `At` and `Hypothesis::WithdrawalsImmediate`). Positions still do: the
/// decision replayed from its evidence is the one made, and the impact report without
/// the time-based hypothesis names nobody.
#[test]
fn after_a_clock_step_back_positions_order_a_use_and_a_later_withdrawal() {
    let fx = Fx::new();
    let l = fx.open();
    let alice = s("alice");
    let id = Identifier::<Advertising>::email("alice@example.org").unwrap();
    let r = Recipient::FirstParty;
    l.collect(&alice, &id, RecipientScope::first_party()).unwrap();
    l.grant::<Advertising>(&alice, RecipientScope::first_party(), None)
        .unwrap();
    // Set an hour ahead by mistake, read once, then corrected.
    fx.clock.set(Timestamp::from_millis(T0 + 3_600_000));
    assert!(l.authorize(&id, &r).is_ok());
    fx.clock.set(Timestamp::from_millis(T0 + 1_000));
    let used = l.authorize(&id, &r).unwrap().evidence().clone();
    // Ten minutes later (real time), the person withdraws.
    fx.clock.advance(Duration::from_secs(600));
    let w = l.withdraw::<Advertising>(&alice).unwrap();
    assert_eq!(
        w.timestamp,
        used.decided_at(),
        "one millisecond while the clock is behind"
    );
    assert!(
        used.position() <= w.seq,
        "the use was decided before the withdrawal"
    );
    assert!(matches!(l.authorize(&id, &r), Err(Denied::Withdrawn { .. })));
    assert_eq!(
        l.authorize_at(&id, &r, At::from(&used)).unwrap(),
        Ok(used.clone())
    );
    // By time alone, the withdrawal counts as made before the use.
    assert!(matches!(
        l.authorize_at(&id, &r, At::Time(used.decided_at())).unwrap(),
        Err(Denied::Withdrawn { .. })
    ));
    let rep = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
    assert_eq!(rep.records, 2);
    assert!(rep.unlawful.is_empty(), "{:?}", rep.unlawful);
}
