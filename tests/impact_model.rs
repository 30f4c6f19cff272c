//! Audit checked against what happened: impact against `authorize` (and against a
//! ledger where voided grants were never made) on random histories, `history` against
//! the keyless `Inspector`, and decision records bound to their ledger. (From a review
//! of the audit area.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use std::time::Duration;

use consent_ledger::{
    Actor, Advertising, At, Denied, Durability, Hypothesis, Identifier, ImpactQuery, Ledger, ManualClock,
    PseudonymKey, Recipient, RecipientScope, Recording, Security, SigningKey, SubjectId, Timestamp,
};

const T0: u64 = 1_700_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    clock: ManualClock,
}

impl Fixture {
    fn new() -> Self {
        Fixture {
            dir: tempfile::tempdir().unwrap(),
            key: SigningKey::generate(),
            pk: PseudonymKey::generate(),
            clock: ManualClock::new(Timestamp::from_millis(T0)),
        }
    }

    fn open(&self, recording: Recording) -> Ledger {
        Ledger::builder(self.dir.path())
            .signing_key(self.key.clone())
            .pseudonym_key(self.pk.clone())
            .durability(Durability::Relaxed)
            .clock(self.clock.clone())
            .record_decisions(recording)
            .open()
            .unwrap()
    }

    fn tick(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }

    fn now(&self) -> Timestamp {
        consent_ledger::Clock::now(&self.clock)
    }
}

fn subject(s: &str) -> SubjectId {
    SubjectId::new(s).unwrap()
}

/// Under `GrantsVoidBetween`, a grant made before the period and never expiring stays
/// in force when the grants made in the period count as never given. The `Expired`
/// entry that `record_expiries` appended for a voided grant is replayed against that
/// older grant instead, which impact then reports as expired.
#[test]
fn a_voided_grants_lapse_does_not_expire_the_grant_before_it() {
    let f = Fixture::new();
    let l = f.open(Recording::Every);
    let s = subject("s-1");
    let acme = Recipient::partner("acme").unwrap();
    let id = Identifier::<Advertising>::email("p1@example.org").unwrap();
    l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    // Before the period: a genuine consent, no expiry.
    let g1 = l
        .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    f.tick(1_000);
    let from = f.now();
    // In the period: a pre-ticked grant that lapses soon, then another pre-ticked one.
    let lapse = Timestamp::from_millis(T0 + 1_500);
    l.grant::<Advertising>(&s, RecipientScope::all_partners(), Some(lapse))
        .unwrap();
    f.tick(1_000);
    assert_eq!(l.record_expiries().unwrap().len(), 1);
    l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    f.tick(1_000);
    let until = f.now();
    f.tick(1_000);
    // A use resting on the last (voided) grant.
    l.authorize(&id, &acme).unwrap();

    let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::GrantsVoidBetween {
        from,
        until: Some(until),
    });
    let r = l.impact(&q).unwrap();
    // With those two grants never given, the first grant (no expiry, all partners)
    // allowed this use.
    assert!(
        r.unlawful.is_empty(),
        "grant {} never expires, yet: {:?}",
        g1.seq,
        r.unlawful.iter().map(|u| &u.reason).collect::<Vec<_>>()
    );
}

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn recipients() -> Vec<Recipient> {
    vec![
        Recipient::FirstParty,
        Recipient::partner("acme").unwrap(),
        Recipient::partner("beta").unwrap(),
        Recipient::developer_app("app-1").unwrap(),
    ]
}

fn scopes() -> Vec<RecipientScope> {
    let r = recipients();
    vec![
        RecipientScope::first_party(),
        RecipientScope::all_partners(),
        RecipientScope::only(r[1].clone()),
        RecipientScope::any_of([r[0].clone(), r[2].clone()]).unwrap(),
        RecipientScope::only(r[3].clone()),
    ]
}

fn phone(i: u64) -> String {
    format!("+1555010{i:04}")
}

/// One allowed use, as the test saw it.
#[derive(Debug, Clone)]
struct SeenUse {
    step: usize,
    subject: SubjectId,
    purpose: &'static str,
    value: u64,
    recipient: Recipient,
    position: u64,
    allowed_by: u64,
}

/// What one step did.
#[derive(Debug, Clone)]
enum Op {
    Collect {
        s: u64,
        v: u64,
        ads: bool,
        scope: usize,
    },
    Grant {
        s: u64,
        scope: usize,
        expires_in: Option<u64>,
    },
    Withdraw {
        s: u64,
    },
    Erase {
        s: u64,
    },
    Expiries,
    Rotate,
    Use {
        v: u64,
        ads: bool,
        recipient: usize,
    },
}

fn script(seed: u64, steps: usize, expiries: bool, erasures: bool) -> Vec<Op> {
    let mut rng = Rng(seed | 1);
    let mut ops = Vec::new();
    for _ in 0..steps {
        let s = rng.below(3);
        let v = rng.below(4);
        let ads = rng.below(3) != 0;
        let op = match rng.below(20) {
            0..=3 => Op::Collect {
                s,
                v,
                ads,
                scope: rng.below(5) as usize,
            },
            4..=6 => Op::Grant {
                s,
                scope: rng.below(5) as usize,
                expires_in: (expiries && rng.below(2) == 0).then(|| 1 + rng.below(6)),
            },
            7..=8 => Op::Withdraw { s },
            9 if erasures && rng.below(4) == 0 => Op::Erase { s },
            10 if expiries => Op::Expiries,
            11 => Op::Rotate,
            _ => Op::Use {
                v,
                ads,
                recipient: rng.below(4) as usize,
            },
        };
        ops.push(op);
    }
    ops
}

/// What a step's use was told: `None` for a step that is not a use.
type Outcome = Option<Result<(), Denied>>;

/// Runs `ops` on `l`, one millisecond apart; grants at steps where `skip_grant`
/// says so are not made. Returns the allowed uses and, per step, the denials.
fn run(
    l: &Ledger,
    clock: &ManualClock,
    ops: &[Op],
    skip_grant: impl Fn(usize) -> bool,
) -> (Vec<SeenUse>, Vec<Outcome>) {
    let (uses, outcome, _) = run_timed(l, clock, ops, skip_grant, |_| 1);
    (uses, outcome)
}

/// [`run`], with the clock moved on by `advance(step)` milliseconds before each step
/// (0: the step shares the millisecond of the one before); also returns the log's
/// length after each step.
fn run_timed(
    l: &Ledger,
    clock: &ManualClock,
    ops: &[Op],
    skip_grant: impl Fn(usize) -> bool,
    advance: impl Fn(usize) -> u64,
) -> (Vec<SeenUse>, Vec<Outcome>, Vec<u64>) {
    let rs = recipients();
    let sc = scopes();
    let mut uses = Vec::new();
    let mut outcome = Vec::new();
    let mut lens = Vec::new();
    for (step, op) in ops.iter().enumerate() {
        clock.advance(Duration::from_millis(advance(step)));
        let now = consent_ledger::Clock::now(clock);
        let mut out = None;
        match op {
            Op::Collect { s, v, ads, scope } => {
                let sub = subject(&format!("s-{s}"));
                let _ = if *ads {
                    l.collect(
                        &sub,
                        &Identifier::<Advertising>::phone(&phone(*v)).unwrap(),
                        sc[*scope].clone(),
                    )
                } else {
                    l.collect(
                        &sub,
                        &Identifier::<Security>::phone(&phone(*v)).unwrap(),
                        sc[*scope].clone(),
                    )
                };
            }
            Op::Grant {
                s, scope, expires_in, ..
            } => {
                if !skip_grant(step) {
                    let sub = subject(&format!("s-{s}"));
                    let exp = expires_in.map(|d| now.saturating_add(Duration::from_millis(d)));
                    let _ = l.grant::<Advertising>(&sub, sc[*scope].clone(), exp);
                }
            }
            Op::Withdraw { s } => {
                let _ = l.withdraw::<Advertising>(&subject(&format!("s-{s}")));
            }
            Op::Erase { s } => {
                let _ = l.erase(&subject(&format!("s-{s}")), Actor::System);
            }
            Op::Expiries => {
                l.record_expiries().unwrap();
            }
            Op::Rotate => {
                l.rotate_key(SigningKey::from_bytes(&[step as u8 ^ 0x5a; 32]))
                    .unwrap();
            }
            Op::Use { v, ads, recipient } => {
                let r = &rs[*recipient];
                let res = if *ads {
                    let id = Identifier::<Advertising>::phone(&phone(*v)).unwrap();
                    l.authorize(&id, r).map(|u| u.evidence().clone())
                } else {
                    let id = Identifier::<Security>::phone(&phone(*v)).unwrap();
                    l.authorize(&id, r).map(|u| u.evidence().clone())
                };
                match res {
                    Ok(e) => {
                        uses.push(SeenUse {
                            step,
                            subject: e.subject().clone(),
                            purpose: e.purpose(),
                            value: *v,
                            recipient: r.clone(),
                            position: e.position(),
                            allowed_by: e.allowed_by(),
                        });
                        out = Some(Ok(()));
                    }
                    Err(d) => out = Some(Err(d)),
                }
            }
        }
        outcome.push(out);
        lens.push(l.len());
    }
    (uses, outcome, lens)
}

/// Every use `authorize` allowed is lawful to `impact` with no hypothesis, and with
/// `WithdrawalsImmediate` too when every change is a millisecond apart from every use
/// (each use was decided on the state of its time); `authorize_at` the use's position
/// allows it with the same entry; the report counts distinct subjects.
#[test]
fn impact_agrees_with_authorize_on_random_histories() {
    for seed in 1..=40u64 {
        let f = Fixture::new();
        let l = f.open(Recording::Every);
        let ops = script(seed * 7919, 120, true, true);
        let (uses, _) = run(&l, &f.clock, &ops, |_| false);
        let r = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
        assert_eq!(r.uses, uses.len() as u64, "seed {seed}");
        assert!(r.unlawful.is_empty(), "seed {seed}: {:?}\n{ops:?}", r.unlawful);
        let wi = l
            .impact(&ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::WithdrawalsImmediate))
            .unwrap();
        assert!(
            wi.unlawful.is_empty(),
            "seed {seed} (withdrawals immediate): {:?}\n{ops:?}",
            wi.unlawful
        );
        let mut subjects: Vec<_> = uses.iter().map(|u| u.subject.clone()).collect();
        subjects.sort();
        subjects.dedup();
        assert_eq!(r.subjects, subjects, "seed {seed}");
        for u in &uses {
            let past = if u.purpose == "advertising" {
                l.authorize_at(
                    &Identifier::<Advertising>::phone(&phone(u.value)).unwrap(),
                    &u.recipient,
                    At::Position(u.position),
                )
            } else {
                l.authorize_at(
                    &Identifier::<Security>::phone(&phone(u.value)).unwrap(),
                    &u.recipient,
                    At::Position(u.position),
                )
            }
            .unwrap();
            if l.history(&u.subject)
                .unwrap()
                .iter()
                .any(|h| h.change == consent_ledger::Change::Erased)
            {
                continue;
            }
            match past {
                Ok(e) => assert_eq!(e.allowed_by(), u.allowed_by, "seed {seed} step {}", u.step),
                Err(d) => panic!("seed {seed} step {}: authorize_at denies {d:?}", u.step),
            }
        }
    }
}

/// `WithdrawalsImmediate` names exactly the uses a change recorded later in the same
/// millisecond denies: here about two steps in three share the millisecond of the step
/// before, and a use is expected to be named when `authorize_at` the log position that
/// ends its millisecond denies it (no expiries or erasures, whose times and forgetting
/// `authorize_at` by position does not model). Without the hypothesis nothing is named.
#[test]
fn withdrawals_immediate_names_the_uses_a_change_in_the_same_millisecond_denies() {
    let mut named = 0;
    for seed in 1..=40u64 {
        let f = Fixture::new();
        let l = f.open(Recording::Every);
        let ops = script(seed * 104_729, 120, false, false);
        let mut rng = Rng(seed * 0x9e37_79b9 + 1);
        let advance: Vec<u64> = (0..ops.len())
            .map(|k| u64::from(k == 0 || rng.below(3) == 0))
            .collect();
        let (uses, _, lens) = run_timed(&l, &f.clock, &ops, |_| false, |k| advance[k]);
        let plain = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
        assert!(plain.unlawful.is_empty(), "seed {seed}: {:?}", plain.unlawful);

        let mut expected = Vec::new();
        for u in &uses {
            // The last step of the use's millisecond.
            let end = (u.step + 1..ops.len())
                .take_while(|&k| advance[k] == 0)
                .last()
                .unwrap_or(u.step);
            let at = At::Position(lens[end]);
            let then = if u.purpose == "advertising" {
                l.authorize_at(
                    &Identifier::<Advertising>::phone(&phone(u.value)).unwrap(),
                    &u.recipient,
                    at,
                )
            } else {
                l.authorize_at(
                    &Identifier::<Security>::phone(&phone(u.value)).unwrap(),
                    &u.recipient,
                    at,
                )
            }
            .unwrap();
            if then.is_err() {
                expected.push(u.position);
            }
        }
        let wi = l
            .impact(&ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::WithdrawalsImmediate))
            .unwrap();
        let mut got: Vec<u64> = wi
            .unlawful
            .iter()
            .map(|x| {
                assert_eq!(x.record.count(), 1);
                x.record.positions().0
            })
            .collect();
        got.sort_unstable();
        expected.sort_unstable();
        assert_eq!(got, expected, "seed {seed}\n{ops:?}\n{advance:?}");
        named += got.len();
    }
    // The histories do contain such uses (else the comparison above shows nothing).
    assert!(named >= 10, "only {named} uses named over all seeds");
}

/// `GrantsVoidBetween` against a shadow ledger where the voided grants were never
/// made: a use is unlawful exactly when the shadow denies it, with expiries (the seeds
/// include 156 and 186, where a voided grant's lapse was replayed against the grant
/// before it).
#[test]
fn grants_void_between_agrees_with_a_ledger_without_those_grants() {
    for seed in (1..=30u64).chain([156, 186]) {
        let real = Fixture::new();
        let shadow = Fixture::new();
        let lr = real.open(Recording::Every);
        let ls = shadow.open(Recording::Every);
        let ops = script(seed * 104_729, 120, true, true);
        let (a, b) = (40usize, 80usize);
        // Step k runs at T0 + k + 1 ms.
        let from = Timestamp::from_millis(T0 + a as u64 + 1);
        let until = Timestamp::from_millis(T0 + b as u64 + 1);
        let (uses, _) = run(&lr, &real.clock, &ops, |_| false);
        let (_, shadow_out) = run(&ls, &shadow.clock, &ops, |k| (a..b).contains(&k));
        let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::GrantsVoidBetween {
            from,
            until: Some(until),
        });
        let r = lr.impact(&q).unwrap();
        let mut flagged: Vec<usize> = Vec::new();
        for u in &r.unlawful {
            let step = uses
                .iter()
                .find(|s| {
                    s.position == u.record.positions().0
                        && s.subject == *u.record.subject()
                        && s.recipient == *u.record.recipient()
                        && u.record.times().0 == Timestamp::from_millis(T0 + s.step as u64 + 1)
                })
                .unwrap()
                .step;
            flagged.push(step);
        }
        flagged.sort();
        let expected: Vec<usize> = uses
            .iter()
            .filter(|u| !matches!(shadow_out[u.step], Some(Ok(()))))
            .map(|u| u.step)
            .collect();
        assert_eq!(flagged, expected, "seed {seed}\n{:?}", r.unlawful);
    }
}

/// `history` returns exactly the subject's entries of the log, in order (only the
/// erasure after an erasure), through key rotations; checked against what the keyless
/// `Inspector` reads from the log.
#[test]
fn history_is_the_subjects_entries_of_the_log() {
    for seed in 1..=15u64 {
        let f = Fixture::new();
        let l = f.open(Recording::Off);
        let ops = script(seed * 31_337, 150, true, true);
        run(&l, &f.clock, &ops, |_| false);
        let len = l.len();
        drop(l);
        let inspector = consent_ledger::Inspector::open(f.dir.path()).unwrap();
        inspector.verify().unwrap();
        let all = inspector.entries(len).unwrap();
        drop(inspector);
        let key = ops
            .iter()
            .enumerate()
            .rfind(|(_, o)| matches!(o, Op::Rotate))
            .map_or(f.key.clone(), |(step, _)| {
                SigningKey::from_bytes(&[step as u8 ^ 0x5a; 32])
            });
        let l = Ledger::builder(f.dir.path())
            .signing_key(key)
            .pseudonym_key(f.pk.clone())
            .clock(f.clock.clone())
            .open()
            .unwrap();
        for s in 0..4 {
            let sub = subject(&format!("s-{s}"));
            let mut expected: Vec<_> = all
                .iter()
                .filter(|(x, _)| *x == sub)
                .map(|(_, h)| h.clone())
                .collect();
            if let Some(e) = expected
                .iter()
                .find(|h| h.change == consent_ledger::Change::Erased)
                .cloned()
            {
                expected = vec![e];
            }
            assert_eq!(l.history(&sub).unwrap(), expected, "seed {seed} subject {s}");
        }
    }
}

/// Aggregated records: nothing `authorize` allowed is unlawful with no hypothesis or
/// with `WithdrawalsImmediate` (changes and uses a millisecond apart); `NeverConsented`
/// flags exactly the uses of a number its subject had given for security before.
#[test]
fn aggregated_impact_agrees_with_authorize() {
    for seed in 1..=30u64 {
        let f = Fixture::new();
        let l = f.open(Recording::Aggregated {
            bucket: Duration::from_millis(7),
        });
        let ops = script(seed * 65_537, 120, true, true);
        let (uses, _) = run(&l, &f.clock, &ops, |_| false);
        let r = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
        assert_eq!(r.uses, uses.len() as u64, "seed {seed}");
        assert!(r.unlawful.is_empty(), "seed {seed}: {:?}", r.unlawful);
        let wi = l
            .impact(&ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::WithdrawalsImmediate))
            .unwrap();
        assert!(
            wi.unlawful.is_empty(),
            "seed {seed} (withdrawals immediate): {:?}",
            wi.unlawful
        );
    }
    for seed in 1..=30u64 {
        let f = Fixture::new();
        let l = f.open(Recording::Every);
        let ops = script(seed * 65_537, 120, true, false);
        // Which (subject, number) were given for security, at which step.
        let (uses, _) = run(&l, &f.clock, &ops, |_| false);
        let q = ImpactQuery::since(Timestamp::EPOCH)
            .assume(Hypothesis::never_consented::<Security, Advertising>());
        let r = l.impact(&q).unwrap();
        let given_before = |u: &SeenUse| {
            ops[..u.step].iter().enumerate().any(|(k, o)| match o {
                Op::Collect { s, v, ads: false, .. } => {
                    *v == u.value
                        && subject(&format!("s-{s}")) == u.subject
                        && l.history(&u.subject).unwrap().iter().any(|h| {
                            h.timestamp == Timestamp::from_millis(T0 + k as u64 + 1)
                                && matches!(&h.change, consent_ledger::Change::Collected { purpose, .. } if purpose == "security")
                        })
                }
                _ => false,
            })
        };
        let expected = uses
            .iter()
            .filter(|u| u.purpose == "advertising" && given_before(u))
            .count();
        assert_eq!(r.unlawful.len(), expected, "seed {seed}: {:?}", r.unlawful);
    }
}

consent_ledger::declare_purpose!(pub FraudLi, "fraud", "fraud checks (legitimate interest)", consent_ledger::LegalBasis::LegitimateInterest);
consent_ledger::declare_purpose!(pub FraudConsent, "fraud", "fraud checks (on consent)", consent_ledger::LegalBasis::Consent);

/// A purpose id on two bases (`fraud`): with no hypothesis, and with
/// `WithdrawalsImmediate` when changes and uses are a millisecond apart, nothing
/// `authorize` allowed is unlawful.
#[test]
fn impact_agrees_with_authorize_for_a_purpose_on_two_bases() {
    let rs = recipients();
    let sc = scopes();
    for seed in 1..=60u64 {
        let f = Fixture::new();
        let l = f.open(Recording::Every);
        let mut rng = Rng((seed * 2_654_435_761) | 1);
        let mut allowed = 0;
        for _ in 0..150 {
            f.tick(1);
            let s = subject(&format!("s-{}", rng.below(3)));
            let v = phone(rng.below(3));
            let scope = sc[rng.below(5) as usize].clone();
            let li = rng.below(2) == 0;
            match rng.below(12) {
                0..=2 => {
                    let _ = if li {
                        l.collect(&s, &Identifier::<FraudLi>::phone(&v).unwrap(), scope)
                    } else {
                        l.collect(&s, &Identifier::<FraudConsent>::phone(&v).unwrap(), scope)
                    };
                }
                3..=4 => {
                    let _ = if li {
                        l.grant::<FraudLi>(&s, scope, None)
                    } else {
                        l.grant::<FraudConsent>(&s, scope, None)
                    };
                }
                5 => {
                    let _ = if li {
                        l.withdraw::<FraudLi>(&s)
                    } else {
                        l.withdraw::<FraudConsent>(&s)
                    };
                }
                6 if rng.below(5) == 0 => {
                    let _ = l.erase(&s, Actor::System);
                }
                _ => {
                    let r = &rs[rng.below(4) as usize];
                    let ok = if li {
                        l.authorize(&Identifier::<FraudLi>::phone(&v).unwrap(), r).is_ok()
                    } else {
                        l.authorize(&Identifier::<FraudConsent>::phone(&v).unwrap(), r)
                            .is_ok()
                    };
                    allowed += u64::from(ok);
                }
            }
        }
        let r = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
        assert_eq!(r.uses, allowed);
        assert!(r.unlawful.is_empty(), "seed {seed}: {:?}", r.unlawful);
        let wi = l
            .impact(&ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::WithdrawalsImmediate))
            .unwrap();
        assert!(wi.unlawful.is_empty(), "seed {seed}: {:?}", wi.unlawful);
    }
}

/// "an edited or inserted record ... is refused when read" (src/records.rs): a record
/// inserted from another ledger that the application opens with the same pseudonym
/// key (two regions, a rebuilt ledger) is read as this ledger's, and impact reports
/// a use of a subject this ledger never recorded anything about.
#[test]
fn a_decision_record_from_another_ledger_is_refused() {
    let a = Fixture::new();
    let mut b = Fixture::new();
    b.pk = a.pk.clone();
    drop(a.open(Recording::Every));
    {
        let l = b.open(Recording::Every);
        let s = subject("someone-else");
        let id = Identifier::<Advertising>::email("p9@example.org").unwrap();
        l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
        l.authorize(&id, &Recipient::partner("acme").unwrap()).unwrap();
        l.sync().unwrap();
    }
    {
        let from = sled_util::open(b.dir.path());
        let into = sled_util::open(a.dir.path());
        let (src, dst) = (
            from.open_tree("decisions").unwrap(),
            into.open_tree("decisions").unwrap(),
        );
        for kv in src.iter() {
            let (k, v) = kv.unwrap();
            dst.insert(k, v).unwrap();
        }
        into.flush().unwrap();
    }
    let l = a.open(Recording::Every);
    assert_eq!(l.history(&subject("someone-else")).unwrap(), vec![]);
    let records = l.decision_records();
    assert!(
        matches!(records, Err(consent_ledger::ReadError::CorruptRecord)),
        "accepted: {records:?}; impact: {:?}",
        l.impact(&ImpactQuery::since(Timestamp::EPOCH))
            .map(|r| (r.subjects, r.unlawful.len()))
    );
}
