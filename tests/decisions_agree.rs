//! Use-time decisions agree however they are asked (one by one, in a batch, in the
//! past, after a reopen), a purpose's change of legal basis is recorded, and
//! look-alike recipients stay apart. (From a review of decisions and delivery;
//! `DECISION_CASES` sets the proptest's number of cases.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use consent_ledger::*;

declare_purpose!(
    /// An application's own consent-based sharing purpose. (A built-in id is reserved
    /// for its own basis, so the legacy type below could not reuse `partner-sharing`.)
    Sharing,
    "sharing",
    "sharing with partners",
    LegalBasis::Consent
);

declare_purpose!(
    /// `sharing` as it was declared before it relied on consent.
    LegacySharing,
    "sharing",
    "sharing with partners, declared without consent",
    LegalBasis::LegitimateInterest
);

fn open(dir: &std::path::Path) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap()
}

/// Purpose `sharing` moved from legitimate interest to consent: the
/// application records the collection again through the consent-based type, with the
/// same scope. That is a change, and is recorded: a decision through the old type then
/// needs consent. (It was once taken for the same collection: `collect` returned the
/// old entry and recorded nothing, so the old type still allowed the use without any
/// consent, and the subject could not withdraw through it.)
#[test]
fn collecting_again_on_a_consent_basis_is_not_swallowed_by_the_old_basis() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let alice = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let scope = RecipientScope::only(acme.clone());

    let old = Identifier::<LegacySharing>::email("alice@example.com").unwrap();
    let first = l.collect(&alice, &old, scope.clone()).unwrap();
    let new = Identifier::<Sharing>::email("alice@example.com").unwrap();
    let again = l.collect(&alice, &new, scope.clone()).unwrap();

    // Control: the consent-based type needs consent (the query's own basis).
    assert_eq!(
        l.authorize(&new, &acme).unwrap_err(),
        Denied::NoConsent { purpose: "sharing" }
    );
    // The collection on a consent basis was acknowledged, so consent must decide:
    // no consent was ever given.
    let d = l
        .authorize(&old, &acme)
        .map(|u| (u.evidence().legal_basis(), u.evidence().allowed_by()));
    assert_eq!(
        d,
        Err(Denied::NoConsent { purpose: "sharing" }),
        "allowed without consent; collect returned the old entry {} for the new one {}",
        first.seq,
        again.seq
    );
}

// ---- batch, one by one, the past at "now", and a reopened ledger all agree --------------

mod agree {
    use super::*;
    use proptest::prelude::*;
    use std::time::Duration;

    const T0: u64 = 1_700_000_000_000;

    fn recipients() -> Vec<Recipient> {
        vec![
            Recipient::FirstParty,
            Recipient::partner("acme").unwrap(),
            Recipient::partner("Acme").unwrap(),
            Recipient::developer_app("acme").unwrap(),
            Recipient::partner("caf\u{e9}").unwrap(),
            Recipient::partner("CAF\u{c9}").unwrap(),
        ]
    }

    fn scope(i: usize) -> RecipientScope {
        let r = recipients();
        match i % 6 {
            0 => RecipientScope::first_party(),
            1 => RecipientScope::only(r[1].clone()),
            2 => RecipientScope::all_partners(),
            3 => RecipientScope::any_of([r[3].clone(), r[4].clone()]).unwrap(),
            4 => RecipientScope::any_of(r.clone()).unwrap(),
            _ => RecipientScope::any_of(
                (0..12)
                    .map(|k| Recipient::partner(&format!("p{k}")).unwrap())
                    .chain([r[2].clone()]),
            )
            .unwrap(),
        }
    }

    fn subject(s: usize) -> SubjectId {
        SubjectId::new(&format!("subject-{s}")).unwrap()
    }

    /// Identifier `i`: phone, email or device id.
    fn ident<P: Purpose>(i: usize) -> Identifier<P> {
        match i % 3 {
            0 => Identifier::phone(&format!("+1555010{:04}", i)).unwrap(),
            1 => Identifier::email(&format!("u{i}@example.com")).unwrap(),
            _ => Identifier::device_id(&format!("dev-{i}")).unwrap(),
        }
    }

    const IDENTS: usize = 6;

    #[derive(Debug, Clone)]
    pub(super) enum Op {
        Collect {
            s: usize,
            i: usize,
            p: usize,
            sc: usize,
        },
        Grant {
            s: usize,
            p: usize,
            sc: usize,
            exp: Option<u64>,
        },
        Withdraw {
            s: usize,
            p: usize,
        },
        Erase {
            s: usize,
        },
        Clock(u64),
        RecordExpiries,
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..3usize, 0..IDENTS, 0..4usize, 0..6usize).prop_map(|(s, i, p, sc)| Op::Collect { s, i, p, sc }),
            3 => (0..3usize, 0..4usize, 0..6usize, proptest::option::of(0u64..4)).prop_map(|(s, p, sc, exp)| Op::Grant { s, p, sc, exp: exp.map(|k| k * 500) }),
            2 => (0..3usize, 0..4usize).prop_map(|(s, p)| Op::Withdraw { s, p }),
            1 => (0..3usize).prop_map(|s| Op::Erase { s }),
            2 => (0u64..4).prop_map(|k| Op::Clock(k * 250)),
            1 => Just(Op::RecordExpiries),
            1 => Just(Op::Reopen),
        ]
    }

    type D = Result<(String, &'static str, LegalBasis, u64, u64, u64, u64, Recipient), Denied>;

    fn d<P: Purpose>(u: Result<Use<'_, P>, Denied>) -> D {
        u.map(|u| {
            let e = u.evidence();
            (
                e.subject().as_str().to_owned(),
                e.purpose(),
                e.legal_basis(),
                e.position(),
                e.allowed_by(),
                e.collected_at(),
                e.decided_at().as_millis(),
                u.recipient().clone(),
            )
        })
    }

    fn ev(e: Result<Evidence, Denied>, r: &Recipient) -> D {
        e.map(|e| {
            (
                e.subject().as_str().to_owned(),
                e.purpose(),
                e.legal_basis(),
                e.position(),
                e.allowed_by(),
                e.collected_at(),
                e.decided_at().as_millis(),
                r.clone(),
            )
        })
    }

    /// Every decision for purpose `P`: one by one, and the batch (every identifier
    /// twice, interleaved) checked against it, and the decision at the current time.
    fn all_for<P: Purpose>(l: &Ledger, now: u64) -> Vec<D> {
        let ids: Vec<Identifier<P>> = (0..IDENTS).map(ident::<P>).collect();
        let mut out = Vec::new();
        for r in &recipients() {
            let one: Vec<D> = ids.iter().map(|id| d(l.authorize(id, r))).collect();
            let twice: Vec<&Identifier<P>> = ids.iter().chain(ids.iter().rev()).collect();
            let batch: Vec<D> = l.authorize_batch(twice, r).into_iter().map(d).collect();
            let mut want = one.clone();
            want.extend(one.iter().rev().cloned());
            assert_eq!(batch, want, "batch and one by one disagree for {} {r}", P::ID);
            for o in one.iter().flatten() {
                check_grounds::<P>(l, o, r);
            }
            for (id, o) in ids.iter().zip(&one) {
                let past = ev(
                    l.authorize_at(id, r, At::Time(Timestamp::from_millis(now)))
                        .unwrap(),
                    r,
                );
                assert_eq!(
                    &past,
                    o,
                    "authorize_at(now) and authorize disagree for {} {r}",
                    P::ID
                );
                // A use replayed from its evidence is the use.
                if let Ok(u) = l.authorize(id, r) {
                    assert_eq!(
                        l.authorize_at(id, r, At::from(u.evidence())).unwrap(),
                        Ok(u.evidence().clone()),
                        "a use replayed from its evidence for {} {r}",
                        P::ID
                    );
                }
            }
            out.extend(one);
        }
        out
    }

    /// An allowed use must rest on what the subject's history says: the entry that
    /// allowed it covers the recipient, and for consent it is the latest consent
    /// change for the purpose and has not lapsed.
    fn check_grounds<P: Purpose>(
        l: &Ledger,
        o: &(String, &'static str, LegalBasis, u64, u64, u64, u64, Recipient),
        r: &Recipient,
    ) {
        let (s, purpose, basis, _pos, by, collected, at, _) = o;
        let h = l.history(&SubjectId::new(s).unwrap()).unwrap();
        let entry = |seq: u64| {
            h.iter()
                .find(|e| e.seq == seq)
                .unwrap_or_else(|| panic!("entry {seq} not in {s}'s history"))
        };
        assert!(matches!(&entry(*collected).change, Change::Collected { purpose: p, .. } if p == purpose));
        let consent_changes: Vec<&HistoryEntry> = h
            .iter()
            .filter(|e| matches!(&e.change, Change::Granted { purpose: p, .. } | Change::Withdrawn { purpose: p } | Change::Expired { purpose: p } if p == purpose))
            .collect();
        let by_entry = entry(*by);
        match (&by_entry.change, basis) {
            (
                Change::Granted {
                    scope, expires_at, ..
                },
                LegalBasis::Consent,
            ) => {
                assert!(scope.covers(r), "grant {by} does not cover {r}");
                assert_eq!(
                    consent_changes.last().map(|e| e.seq),
                    Some(*by),
                    "a later consent change for {purpose}"
                );
                assert!(
                    expires_at.is_none_or(|t| t.as_millis() > *at),
                    "lapsed grant {by} allowed a use at {at}"
                );
            }
            (
                Change::Collected {
                    scope, legal_basis, ..
                },
                b,
            ) => {
                assert_eq!(legal_basis, b);
                assert!(
                    !P::LEGAL_BASIS.requires_consent() && !b.requires_consent(),
                    "{purpose} allowed without consent"
                );
                assert!(
                    consent_changes.is_empty(),
                    "consent changes for {purpose} exist but the collection decided"
                );
                assert!(scope.covers(r), "collection {by} does not cover {r}");
            }
            other => panic!("allowed by {other:?}"),
        }
    }

    fn all(l: &Ledger, now: u64) -> Vec<D> {
        let mut v = all_for::<Security>(l, now);
        v.extend(all_for::<Advertising>(l, now));
        v.extend(all_for::<Sharing>(l, now));
        v.extend(all_for::<LegacySharing>(l, now));
        v
    }

    fn collect(l: &Ledger, s: usize, i: usize, p: usize, sc: usize) {
        let s = subject(s);
        let _ = match p {
            0 => l.collect(&s, &ident::<Security>(i), scope(sc)),
            1 => l.collect(&s, &ident::<Advertising>(i), scope(sc)),
            2 => l.collect(&s, &ident::<Sharing>(i), scope(sc)),
            _ => l.collect(&s, &ident::<LegacySharing>(i), scope(sc)),
        };
    }

    fn grant(l: &Ledger, s: usize, p: usize, sc: usize, exp: Option<Timestamp>) {
        let s = subject(s);
        let _ = match p {
            0 => l.grant::<Security>(&s, scope(sc), exp),
            1 => l.grant::<Advertising>(&s, scope(sc), exp),
            2 => l.grant::<Sharing>(&s, scope(sc), exp),
            _ => l.grant::<LegacySharing>(&s, scope(sc), exp),
        };
    }

    fn withdraw(l: &Ledger, s: usize, p: usize) {
        let s = subject(s);
        let _ = match p {
            0 => l.withdraw::<Security>(&s),
            1 => l.withdraw::<Advertising>(&s),
            2 => l.withdraw::<Sharing>(&s),
            _ => l.withdraw::<LegacySharing>(&s),
        };
    }

    pub(super) fn run(ops: &[Op]) {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::generate();
        let pk = PseudonymKey::generate();
        let clock = ManualClock::new(Timestamp::from_millis(T0));
        let mk = || {
            Ledger::builder(dir.path())
                .signing_key(key.clone())
                .pseudonym_key(pk.clone())
                .durability(Durability::Relaxed)
                .clock(clock.clone())
                .snapshots(Snapshots::OnClose { min_new_entries: 1 })
                .open()
                .unwrap()
        };
        let mut l = mk();
        let mut now = T0;
        for op in ops {
            match *op {
                Op::Collect { s, i, p, sc } => collect(&l, s, i, p, sc),
                Op::Grant { s, p, sc, exp } => {
                    grant(&l, s, p, sc, exp.map(|e| Timestamp::from_millis(now + e)))
                }
                Op::Withdraw { s, p } => withdraw(&l, s, p),
                Op::Erase { s } => {
                    let _ = l.erase(&subject(s), Actor::Subject);
                }
                Op::Clock(ms) => {
                    clock.advance(Duration::from_millis(ms));
                    now += ms;
                }
                Op::RecordExpiries => {
                    l.record_expiries().unwrap();
                }
                Op::Reopen => {
                    let before = all(&l, now);
                    drop(l);
                    l = mk();
                    let after = all(&l, now);
                    assert_eq!(before, after, "reopening changed a decision");
                }
            }
            all(&l, now);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: std::env::var("DECISION_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64), ..ProptestConfig::default() })]
        #[test]
        fn batch_one_past_and_reopened_agree(ops in proptest::collection::vec(op(), 1..40)) {
            run(&ops);
        }
    }
}

/// (Sound, kept as a check.) A use decided for one partner reaches no recipient that
/// only looks like it: another kind with the same name, another case; nor does a grant
/// for one cover the others. Another Unicode normalization, or a letter of another
/// script, cannot even be a recipient's name.
#[test]
fn look_alike_recipients_are_other_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let alice = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("caf\u{e9}").unwrap();
    let others = [
        Recipient::developer_app("caf\u{e9}").unwrap(),
        Recipient::partner("CAF\u{c9}").unwrap(),
    ];
    for unwritable in ["cafe\u{301}", "\u{441}af\u{e9}", "\u{ff43}af\u{e9}"] {
        assert!(Recipient::partner(unwritable).is_err(), "{unwritable}");
    }
    let id = Identifier::<Advertising>::email("alice@example.com").unwrap();
    l.collect(&alice, &id, RecipientScope::all_partners()).unwrap();
    l.grant::<Advertising>(&alice, RecipientScope::only(acme.clone()), None)
        .unwrap();
    for o in &others {
        assert!(
            matches!(l.authorize(&id, o), Err(Denied::RecipientNotCovered { .. })),
            "{o}"
        );
        let u = l.authorize(&id, &acme).unwrap();
        assert!(u.deliver_to(o, |_| ()).is_err(), "{o}");
    }
    let b = l.authorize_batch([&id, &id], &acme);
    assert!(b
        .into_iter()
        .all(|u| u.unwrap().deliver_to(&others[0], |_| ()).is_err()));
}

/// The docs accept a withdrawal through the old type once the subject "holds an
/// identifier collected for the purpose's id on a consent basis": also when that
/// collection only changed the basis.
#[test]
fn withdrawal_through_the_old_type_after_a_consent_basis_collection() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let alice = SubjectId::new("user-1").unwrap();
    let scope = RecipientScope::first_party();
    l.collect(
        &alice,
        &Identifier::<LegacySharing>::phone("+15550100001").unwrap(),
        scope.clone(),
    )
    .unwrap();
    l.collect(
        &alice,
        &Identifier::<Sharing>::phone("+15550100001").unwrap(),
        scope,
    )
    .unwrap();
    let w = l.withdraw::<LegacySharing>(&alice);
    assert!(w.is_ok(), "{w:?}");
}
