//! Audience matching and batch authorization agree with one-by-one `authorize`; 2FA-only
//! numbers never match; a withdrawal is seen by the very next match (and chunk).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use std::collections::HashSet;

use consent_ledger::*;
use proptest::prelude::*;

fn ledger(dir: &std::path::Path, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn phone(i: u32) -> String {
    format!("+1 555 01{i:05}")
}

fn email(i: u32) -> String {
    format!("Person{i}@Example.COM")
}

/// What a random subject holds.
#[derive(Debug, Clone)]
struct Account {
    /// Phone collected for 2FA only (`Security`).
    twofa_phone: bool,
    /// Email collected for advertising, with this consent state.
    ads_email: Option<AdsConsent>,
    /// The 2FA phone also collected for advertising (the same number, two purposes).
    phone_for_ads_too: bool,
    erased: bool,
}

#[derive(Debug, Clone, Copy)]
enum AdsConsent {
    None,
    AllPartners,
    OnlyAcme,
    Withdrawn,
    Expiring(u64),
}

fn account() -> impl Strategy<Value = Account> {
    (
        any::<bool>(),
        proptest::option::of(prop_oneof![
            Just(AdsConsent::None),
            Just(AdsConsent::AllPartners),
            Just(AdsConsent::OnlyAcme),
            Just(AdsConsent::Withdrawn),
            (0..20u64).prop_map(AdsConsent::Expiring),
        ]),
        any::<bool>(),
        proptest::bool::weighted(0.1),
    )
        .prop_map(|(twofa_phone, ads_email, phone_for_ads_too, erased)| Account {
            twofa_phone,
            ads_email,
            phone_for_ads_too,
            erased,
        })
}

fn load(ledger: &Ledger, accounts: &[Account]) {
    let acme = Recipient::partner("acme-ads").unwrap();
    for (i, a) in accounts.iter().enumerate() {
        let i = i as u32;
        let s = SubjectId::new(&format!("acct-{i}")).unwrap();
        if a.twofa_phone {
            let id = Identifier::<Security>::phone(&phone(i)).unwrap();
            ledger.collect(&s, &id, RecipientScope::first_party()).unwrap();
            if a.phone_for_ads_too {
                let id = Identifier::<Advertising>::phone(&phone(i)).unwrap();
                ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
            }
        }
        if let Some(c) = a.ads_email {
            let id = Identifier::<Advertising>::email(&email(i)).unwrap();
            ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
            let all = RecipientScope::all_partners();
            match c {
                AdsConsent::None => {}
                AdsConsent::AllPartners => {
                    ledger.grant::<Advertising>(&s, all, None).unwrap();
                }
                AdsConsent::OnlyAcme => {
                    ledger
                        .grant::<Advertising>(&s, RecipientScope::only(acme.clone()), None)
                        .unwrap();
                }
                AdsConsent::Withdrawn => {
                    ledger.grant::<Advertising>(&s, all, None).unwrap();
                    ledger.withdraw::<Advertising>(&s).unwrap();
                }
                AdsConsent::Expiring(ms) => {
                    let at = Timestamp::from_millis(1_000 + ms);
                    ledger.grant::<Advertising>(&s, all, Some(at)).unwrap();
                }
            }
        }
        if a.erased {
            ledger.erase(&s, Actor::Subject).unwrap();
        }
    }
}

/// The upload: every account's identifiers in both raw forms, strangers and garbage,
/// shuffled by `order`.
fn upload(n: u32, order: &[u32]) -> Vec<String> {
    let mut rows = Vec::new();
    for &k in order {
        let i = k % (n + 5);
        match k % 5 {
            0 | 1 => rows.push(phone(i)),
            2 | 3 => rows.push(email(i)),
            _ => rows.push(format!("garbage {k}")),
        }
    }
    rows
}

/// One-by-one decisions for the upload: (matched subjects in first-match order with
/// their rows, counts).
fn one_by_one(ledger: &Ledger, rows: &[String], to: &Recipient) -> (Vec<(u64, SubjectId)>, AudienceCounts) {
    let mut counts = AudienceCounts::default();
    let mut seen = HashSet::new();
    let mut matched = Vec::new();
    for (row, raw) in rows.iter().enumerate() {
        counts.uploaded += 1;
        let kind = IdentifierKind::guess(raw);
        let Ok(id) = Identifier::<Advertising>::parse(kind, raw) else {
            counts.malformed += 1;
            continue;
        };
        match ledger.authorize(&id, to) {
            Ok(u) => {
                if seen.insert(u.evidence().subject().clone()) {
                    counts.matched += 1;
                    matched.push((row as u64, u.evidence().subject().clone()));
                } else {
                    counts.duplicates += 1;
                }
            }
            Err(Denied::UnknownIdentifier) => counts.unknown += 1,
            Err(Denied::NotCollectedForPurpose { .. }) => counts.denied.not_collected_for_purpose += 1,
            Err(Denied::NoConsent { .. }) => counts.denied.no_consent += 1,
            Err(Denied::Withdrawn { .. }) => counts.denied.withdrawn += 1,
            Err(Denied::Expired { .. }) => counts.denied.expired += 1,
            Err(Denied::RecipientNotCovered { .. }) => counts.denied.recipient_not_covered += 1,
            Err(Denied::SubjectErased { .. }) => counts.denied.subject_erased += 1,
            Err(other) => panic!("unexpected {other}"),
        }
    }
    (matched, counts)
}

/// `authorize_batch` of `ids` gives, row by row and duplicates included, what
/// `authorize` gives for each.
fn assert_batch_agrees(ledger: &Ledger, ids: &[Identifier<Advertising>], to: &Recipient) {
    let batch = ledger.authorize_batch(ids, to);
    assert_eq!(batch.len(), ids.len());
    for (i, (id, b)) in ids.iter().zip(&batch).enumerate() {
        match (b, &ledger.authorize(id, to)) {
            (Ok(x), Ok(y)) => assert_eq!(x.evidence(), y.evidence(), "row {i}"),
            (Err(x), Err(y)) => assert_eq!(x, y, "row {i}"),
            (x, y) => panic!(
                "row {i}: batch {:?} vs single {:?}",
                x.as_ref().err(),
                y.as_ref().err()
            ),
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn matching_and_batches_agree_with_authorize(
        accounts in proptest::collection::vec(account(), 1..40),
        order in proptest::collection::vec(0..200u32, 0..300),
        chunk in 1..64usize,
        threads in 1..3usize,
        now in 990..1_030u64,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(Timestamp::from_millis(1_000));
        let ledger = ledger(dir.path(), &clock);
        load(&ledger, &accounts);
        clock.set(Timestamp::from_millis(now));
        let rows = upload(accounts.len() as u32, &order);
        for to in [Recipient::partner("acme-ads").unwrap(), Recipient::partner("other").unwrap()] {
            let (want, want_counts) = one_by_one(&ledger, &rows, &to);
            let mut got = Vec::new();
            let counts = ledger
                .audience::<Advertising>(&to)
                .chunk_size(chunk)
                .threads(threads)
                .run(&rows, |m| got.push(m));
            prop_assert_eq!(counts, want_counts);
            let got_pairs: Vec<_> = got.iter().map(|m| (m.row(), m.subject().clone())).collect();
            prop_assert_eq!(got_pairs, want);
            prop_assert_eq!(
                counts.uploaded,
                counts.malformed + counts.unknown + counts.matched + counts.duplicates + counts.denied.total()
            );
            for m in &got {
                // Same evidence as a one-by-one decision of that row.
                let raw = &rows[m.row() as usize];
                let id = Identifier::<Advertising>::parse(m.kind(), raw).unwrap();
                let single = ledger.authorize(&id, &to).unwrap();
                prop_assert_eq!(single.evidence(), m.evidence());
            }

            // Batch authorization: same answers, same order.
            let ids: Vec<Identifier<Advertising>> = rows
                .iter()
                .filter_map(|r| Identifier::parse(IdentifierKind::guess(r), r).ok())
                .collect();
            let batch = ledger.authorize_batch(&ids, &to);
            prop_assert_eq!(batch.len(), ids.len());
            for (id, b) in ids.iter().zip(batch) {
                let single = ledger.authorize(id, &to);
                match (b, single) {
                    (Ok(x), Ok(y)) => {
                        prop_assert_eq!(x.evidence(), y.evidence());
                        // The value each hands to the recipient it was decided for.
                        let (xv, yv) = (x.deliver_to(&to, str::to_owned), y.deliver_to(&to, str::to_owned));
                        prop_assert!(xv.is_ok(), "{:?}", xv);
                        prop_assert_eq!(xv, yv);
                    }
                    (Err(x), Err(y)) => prop_assert_eq!(x, y),
                    (x, y) => prop_assert!(false, "batch {:?} vs single {:?}", x.as_ref().err(), y.as_ref().err()),
                }
            }
        }
    }
}

#[test]
fn two_factor_numbers_never_match() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let accounts: Vec<Account> = (0..50)
        .map(|i| Account {
            twofa_phone: true,
            // Every account consented to advertising with its email.
            ads_email: Some(AdsConsent::AllPartners),
            phone_for_ads_too: i % 10 == 0,
            erased: false,
        })
        .collect();
    load(&ledger, &accounts);
    let acme = Recipient::partner("acme-ads").unwrap();
    // The advertiser uploads only phone numbers, in several spellings.
    let rows: Vec<String> = (0..50u32)
        .flat_map(|i| {
            [
                phone(i),
                format!("+1-555-01-{i:05}"),
                format!("  +1 (555) 01{i:05} "),
            ]
        })
        .collect();
    let (matches, counts) = ledger.audience::<Advertising>(&acme).collect(&rows);
    // Only the five numbers also collected for advertising match; 2FA-only ones never.
    let matched: HashSet<_> = matches.iter().map(|m| m.subject().as_str().to_owned()).collect();
    let want: HashSet<_> = (0..50)
        .filter(|i| i % 10 == 0)
        .map(|i| format!("acct-{i}"))
        .collect();
    assert_eq!(matched, want);
    assert_eq!(counts.matched, 5);
    assert_eq!(counts.duplicates, 10);
    assert_eq!(counts.denied.not_collected_for_purpose, 135);
    assert_eq!(counts.unknown, 0);
    // The same numbers are usable for security by the first party.
    let id = Identifier::<Security>::phone(&phone(3)).unwrap();
    assert!(ledger.authorize(&id, &Recipient::FirstParty).is_ok());
}

#[test]
fn withdrawal_drops_out_at_the_next_match_and_the_next_chunk() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let accounts: Vec<Account> = (0..8)
        .map(|_| Account {
            twofa_phone: false,
            ads_email: Some(AdsConsent::AllPartners),
            phone_for_ads_too: false,
            erased: false,
        })
        .collect();
    load(&ledger, &accounts);
    let acme = Recipient::partner("acme-ads").unwrap();
    let rows: Vec<String> = (0..8).map(email).collect();
    let (m, _) = ledger.audience::<Advertising>(&acme).collect(&rows);
    assert_eq!(m.len(), 8);

    let s3 = SubjectId::new("acct-3").unwrap();
    ledger.withdraw::<Advertising>(&s3).unwrap();
    let (m, counts) = ledger.audience::<Advertising>(&acme).collect(&rows);
    assert_eq!(m.len(), 7);
    assert!(m.iter().all(|x| x.subject() != &s3));
    assert_eq!(counts.denied.withdrawn, 1);

    // Within one run: a withdrawal made from the callback of the first chunk (rows 0-1)
    // is seen by the very next chunk (rows 2-3), which holds subject 2. (Review r82: the
    // test withdrew subject 5, in the third chunk, and would have passed had the second
    // chunk been decided, and handed out, before the first chunk's callbacks ran.)
    let s5 = SubjectId::new("acct-2").unwrap();
    let mut seen = Vec::new();
    let counts = ledger
        .audience::<Advertising>(&acme)
        .chunk_size(2)
        .threads(1)
        .run(&rows, |x| {
            if x.row() == 0 {
                ledger.withdraw::<Advertising>(&s5).unwrap();
            }
            seen.push(x.subject().clone());
        });
    assert!(!seen.contains(&s5));
    assert_eq!(counts.denied.withdrawn, 2);
    assert_eq!(counts.matched, 6);
}

/// A row type whose `AsRef` panics on one row: the hashing worker dies mid-upload.
struct Exploding(String, bool);

impl AsRef<str> for Exploding {
    fn as_ref(&self) -> &str {
        assert!(!self.1, "this row cannot be read");
        &self.0
    }
}

/// With one thread or two, the panic propagates, the match never hangs, and no match
/// of a row after the one that panicked is handed out: the run stops there (with two
/// threads it went on to the end of the upload until stop 32).
#[test]
fn a_panicking_row_reader_propagates_and_never_hangs() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    // Every row matches a subject.
    for i in 0..200u32 {
        let s = SubjectId::new(&format!("s-{i}")).unwrap();
        let id = Identifier::<Advertising>::phone(&phone(i)).unwrap();
        ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        ledger
            .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    for threads in [1, 2] {
        for at in [0usize, 5, 37, 199] {
            let rows: Vec<Exploding> = (0..200u32)
                .map(|i| Exploding(phone(i), i as usize == at))
                .collect();
            let (tx, rx) = std::sync::mpsc::channel();
            let ledger = &ledger;
            let acme = &acme;
            std::thread::scope(|s| {
                s.spawn(move || {
                    let mut handed = Vec::new();
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        ledger
                            .audience::<Advertising>(acme)
                            .chunk_size(8)
                            .threads(threads)
                            .run(rows, |m| handed.push(m.row()))
                    }));
                    tx.send((result.is_err(), handed)).unwrap();
                });
                let (panicked, handed) = rx
                    .recv_timeout(std::time::Duration::from_secs(20))
                    .expect("the match hung after the row reader panicked");
                assert!(panicked, "{threads} threads: the panic at row {at} was swallowed");
                assert!(
                    handed.iter().all(|row| *row < at as u64),
                    "{threads} threads: matches after row {at} were handed out: {handed:?}"
                );
            });
        }
    }
}

/// A chunk size is capped and its buffers grow with the rows read: a huge size does
/// not panic (capacity overflow) or reserve memory on a three-row upload.
#[test]
fn a_large_chunk_size_does_not_panic_on_a_short_upload() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    for threads in [1, 2] {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            ledger
                .audience::<Advertising>(&acme)
                .chunk_size(usize::MAX)
                .threads(threads)
                .collect(["+15550100001", "a@example.com", "x"])
        }));
        let (m, counts) = result.unwrap_or_else(|_| panic!("threads {threads}: panicked on a 3-row upload"));
        assert!(m.is_empty());
        assert_eq!((counts.uploaded, counts.unknown, counts.malformed), (3, 2, 1));
    }
}

/// The upload is streamed: when the first chunk's match is handed out, only a few
/// chunks have been read from the upload (an implementation that reads the whole
/// upload first fails this).
#[test]
fn the_upload_is_streamed_not_read_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let s = SubjectId::new("acct-0").unwrap();
    let id = Identifier::<Advertising>::email("alice@example.com").unwrap();
    ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    ledger
        .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    let acme = Recipient::partner("acme-ads").unwrap();
    const ROWS: u64 = 1_000_000;
    const CHUNK: usize = 64;
    for threads in [1, 2] {
        let pulled = std::sync::atomic::AtomicU64::new(0);
        let upload = (0..ROWS).map(|i| {
            pulled.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if i == 0 {
                "alice@example.com"
            } else {
                "x"
            }
        });
        let mut at_first_match = None;
        let counts = ledger
            .audience::<Advertising>(&acme)
            .chunk_size(CHUNK)
            .threads(threads)
            .run(upload, |_| {
                at_first_match.get_or_insert(pulled.load(std::sync::atomic::Ordering::SeqCst));
            });
        assert_eq!((counts.uploaded, counts.matched), (ROWS, 1));
        let read = at_first_match.unwrap();
        assert!(
            read <= 8 * CHUNK as u64,
            "threads {threads}: {read} rows read before the first chunk's match was handed out"
        );
    }
}

/// `authorize_batch` decides in chunks of `DEFAULT_CHUNK` (4096): across several chunk
/// boundaries it still agrees with `authorize`, answer and evidence.
#[test]
fn batches_across_chunk_boundaries_agree_with_authorize() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    const N: u32 = 9_000;
    for i in (0..N).step_by(7) {
        let s = SubjectId::new(&format!("acct-{i}")).unwrap();
        let id = Identifier::<Advertising>::email(&format!("p{i}@example.com")).unwrap();
        ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        if i % 2 == 0 {
            ledger
                .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
    }
    let ids: Vec<Identifier<Advertising>> = (0..N)
        .map(|i| Identifier::email(&format!("p{i}@example.com")).unwrap())
        .collect();
    assert_batch_agrees(&ledger, &ids, &acme);
}

/// Withdrawals and re-grants from one thread while another runs audience matches and
/// batches: each match's evidence is of one state, never a grant read before a
/// withdrawal and a position read after it (`allowed_by < w < position` for a
/// withdrawal `w`). (It catches evidence mixing two reads of the state, not a match
/// decided before a withdrawal and handed out after it: that is
/// `tests/audience_handout.rs`. Review r140 pointed out that the old name claimed both.)
#[test]
fn evidence_of_matches_racing_withdrawals_is_of_one_state() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    const N: u32 = 32;
    let subjects: Vec<SubjectId> = (0..N)
        .map(|i| SubjectId::new(&format!("acct-{i}")).unwrap())
        .collect();
    let ids: Vec<Identifier<Advertising>> = (0..N)
        .map(|i| Identifier::email(&format!("p{i}@example.com")).unwrap())
        .collect();
    for (s, id) in subjects.iter().zip(&ids) {
        ledger.collect(s, id, RecipientScope::all_partners()).unwrap();
        ledger
            .grant::<Advertising>(s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    let upload: Vec<String> = (0..N).map(|i| format!("p{i}@example.com")).collect();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (withdrawals, evidence) = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut w = Vec::new();
            for round in 0..300 {
                let s = &subjects[round % N as usize];
                w.push((s.clone(), ledger.withdraw::<Advertising>(s).unwrap().seq));
                ledger
                    .grant::<Advertising>(s, RecipientScope::all_partners(), None)
                    .unwrap();
            }
            done.store(true, std::sync::atomic::Ordering::SeqCst);
            w
        });
        let mut evidence = Vec::new();
        while !done.load(std::sync::atomic::Ordering::SeqCst) {
            for threads in [1, 2] {
                ledger
                    .audience::<Advertising>(&acme)
                    .chunk_size(3)
                    .threads(threads)
                    .run(&upload, |m| evidence.push(m.evidence().clone()));
            }
            for u in ledger.authorize_batch(&ids, &acme).into_iter().flatten() {
                evidence.push(u.evidence().clone());
            }
        }
        (writer.join().unwrap(), evidence)
    });
    assert!(!evidence.is_empty());
    for e in &evidence {
        for (s, w) in &withdrawals {
            assert!(
                !(s == e.subject() && e.allowed_by() < *w && *w < e.position()),
                "{:?} matched at position {} by grant {} after withdrawal {w}",
                s,
                e.position(),
                e.allowed_by()
            );
        }
    }
}

mod hostile {
    use super::*;

    fn variant() -> impl Strategy<Value = String> {
        let base = prop_oneof![
            Just("alice@Example.COM".to_owned()),
            Just("b@bücher.de".to_owned()),
            Just("+1 555 010 0001".to_owned()),
            Just("+44 (0)20 7946 0958".to_owned()),
        ];
        let junk = prop_oneof![
            Just("\u{0}"),
            Just("\u{a0}"),
            Just("\u{3000}"),
            Just("\u{feff}"),
            Just("\u{200b}"),
            Just("\u{2028}"),
            Just("\u{301}"),
            Just("＠"),
            Just("@"),
            Just("."),
            Just("+"),
            Just("(0)"),
            Just(" "),
            Just("\t"),
            Just("Ｂ"),
            Just("。"),
            Just("xn--"),
            Just("-"),
        ];
        (
            base,
            proptest::collection::vec((0..40usize, junk), 0..3),
            "\\PC{0,6}",
        )
            .prop_map(|(mut b, ins, tail)| {
                for (at, j) in ins {
                    let mut at = at.min(b.len());
                    while !b.is_char_boundary(at) {
                        at -= 1;
                    }
                    b.insert_str(at, j);
                }
                if tail.len() % 3 == 0 {
                    b.push_str(&tail);
                }
                b
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
        #[test]
        fn hostile_rows_are_counted_as_authorize_decides_them(
            rows in proptest::collection::vec(prop_oneof![variant(), "\\PC{0,40}", Just("9".repeat(600))], 1..40),
            threads in 1..3usize,
        ) {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(Timestamp::from_millis(1_000));
            let ledger = ledger(dir.path(), &clock);
            let acme = Recipient::partner("acme-ads").unwrap();
            for (i, raw) in ["alice@example.com", "b@xn--bcher-kva.de", "+15550100001", "+442079460958"].iter().enumerate() {
                let s = SubjectId::new(&format!("acct-{i}")).unwrap();
                let id = Identifier::<Advertising>::parse(IdentifierKind::guess(raw), raw).unwrap();
                ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
                if i % 2 == 0 {
                    ledger.grant::<Advertising>(&s, RecipientScope::all_partners(), None).unwrap();
                }
            }
            let mut want = AudienceCounts::default();
            let mut seen = std::collections::HashSet::new();
            for raw in &rows {
                want.uploaded += 1;
                match Identifier::<Advertising>::parse(IdentifierKind::guess(raw), raw) {
                    Err(e) => {
                        want.malformed += 1;
                        prop_assert!(!e.to_string().contains("alice"));
                    }
                    Ok(id) => match ledger.authorize(&id, &acme) {
                        Ok(u) => if seen.insert(u.evidence().subject().clone()) { want.matched += 1 } else { want.duplicates += 1 },
                        Err(Denied::UnknownIdentifier) => want.unknown += 1,
                        Err(Denied::NoConsent { .. }) => want.denied.no_consent += 1,
                        Err(e) => prop_assert!(false, "{e}"),
                    },
                }
            }
            let (_, got) = ledger.audience::<Advertising>(&acme).chunk_size(7).threads(threads).collect(&rows);
            prop_assert_eq!(got, want);
        }
    }
}

/// A grant "until" `at`: allowed at `at - 1`, expired at `at`, in audience, batch and
/// single decisions alike.
#[test]
fn expiry_at_the_exact_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    let s = SubjectId::new("acct-0").unwrap();
    let id = Identifier::<Advertising>::email("alice@example.com").unwrap();
    ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    ledger
        .grant::<Advertising>(
            &s,
            RecipientScope::all_partners(),
            Some(Timestamp::from_millis(2_000)),
        )
        .unwrap();
    for (t, allowed) in [(1_999, true), (2_000, false)] {
        clock.set(Timestamp::from_millis(t));
        let (m, c) = ledger
            .audience::<Advertising>(&acme)
            .collect(["alice@example.com"]);
        assert_eq!(
            (m.len() == 1, c.denied.expired),
            (allowed, u64::from(!allowed)),
            "{t}"
        );
        assert_eq!(ledger.authorize_batch([&id], &acme)[0].is_ok(), allowed);
        assert_eq!(ledger.authorize(&id, &acme).is_ok(), allowed);
        if allowed {
            assert_eq!(m[0].evidence().decided_at(), Timestamp::from_millis(t));
        }
    }
}

/// Malformed rows cost the same in one large chunk as in small ones: reading ahead
/// once walked every remaining row of the chunk for each group of rows (quadratic in
/// the chunk size, under the state's read lock; 2.9 s against 48 ms for 131,072 rows in
/// a debug build). Timed, so not run by default: `cargo test --test audience -- --ignored`.
#[test]
#[ignore = "timed; run by hand"]
fn malformed_rows_cost_linear_time_in_the_chunk_size() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let l = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme").unwrap();
    const ROWS: usize = 1 << 17;
    let rows: Vec<&str> = std::iter::once("+15550100001")
        .chain(std::iter::repeat_n("x", ROWS - 1))
        .collect();
    let time = |chunk: usize| {
        let t = std::time::Instant::now();
        let c = l
            .audience::<Advertising>(&acme)
            .threads(1)
            .chunk_size(chunk)
            .collect(&rows)
            .1;
        assert_eq!(c.malformed, ROWS as u64 - 1);
        t.elapsed()
    };
    let small = time(1 << 10);
    let large = time(ROWS);
    assert!(
        large < small * 4 + std::time::Duration::from_millis(200),
        "{ROWS} rows took {large:?} in one chunk against {small:?} in chunks of 1024"
    );
}

/// A streamed upload (rows arrive over time, as from a network upload). Alice's row is
/// the first; while the next chunk's rows are still arriving, Alice withdraws (another
/// request, served by another thread) and the withdrawal is acknowledged. Her match
/// must not be handed out (used, and recorded as a use) after that acknowledgement: a
/// decision is made from the state at the moment of use. With one thread it is not:
/// her chunk is decided and handed out as soon as it is read. With two threads (the
/// default on two cores) her already-decided chunk waits while the calling thread
/// reads further chunks from the upload, and is handed out after the withdrawal,
/// however long that reading took.
#[test]
fn a_decided_chunk_is_not_held_back_while_the_upload_is_read() {
    for threads in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let l = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .durability(Durability::Relaxed)
            .record_decisions(Recording::Every)
            .open()
            .unwrap();
        let acme = Recipient::partner("acme-ads").unwrap();
        let alice = SubjectId::new("acct-alice").unwrap();
        let email = Identifier::<Advertising>::email("alice@example.com").unwrap();
        l.collect(&alice, &email, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&alice, RecipientScope::all_partners(), None)
            .unwrap();

        const CHUNK: usize = 64;
        let withdrawn_at = std::sync::Mutex::new(None::<u64>);
        let (ask, asked) = std::sync::mpsc::channel::<()>();
        let (ack, acked) = std::sync::mpsc::channel::<u64>();
        let mut handed_out = Vec::new();
        std::thread::scope(|s| {
            // Another request: Alice withdraws while the upload is still streaming.
            let (l2, alice2) = (&l, &alice);
            s.spawn(move || {
                if asked.recv().is_ok() {
                    let w = l2.withdraw::<Advertising>(alice2).unwrap();
                    ack.send(w.seq).unwrap();
                }
            });
            let upload = (0..3 * CHUNK).map(|i| {
                if i == CHUNK + CHUNK / 2 {
                    // Rows arrive slowly; meanwhile the withdrawal is made and acknowledged.
                    std::thread::sleep(std::time::Duration::from_millis(300));
                    ask.send(()).unwrap();
                    *withdrawn_at.lock().unwrap() = Some(acked.recv().unwrap());
                }
                if i == 0 {
                    "alice@example.com".to_owned()
                } else {
                    format!("junk {i}")
                }
            });
            l.audience::<Advertising>(&acme)
                .chunk_size(CHUNK)
                .threads(threads)
                .run(upload, |m| {
                    handed_out.push((
                        m.subject().clone(),
                        *withdrawn_at.lock().unwrap(),
                        m.evidence().position(),
                    ));
                });
            drop(ask);
        });
        for (who, withdrawn, position) in &handed_out {
            assert!(
                withdrawn.is_none(),
                "threads {threads}: {who:?}'s match (decided at position {position}) was handed out \
                 after her withdrawal (entry {withdrawn:?}) had been acknowledged"
            );
        }
    }
}

// Inputs the tests above do not reach: every email length (the lanes with messages of
// one and two blocks), subjects with two identifiers, expiry reached during the
// hand-out. (Written by review r140; they passed on the code they reviewed.)

/// Emails of every normalized length from 6 to 254 bytes: each collected and consented,
/// each uploaded once (one chunk, lanes mixed with multi-block messages), each matches.
#[test]
fn every_email_length_matches_as_authorize_allows() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let l = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    let mut rows = Vec::new();
    for total in 6usize..=254 {
        // local@d{...}.com ; local up to 64.
        let local_len = (total - 5).clamp(1, 64);
        let dom_len = total - local_len - 1 - 4; // "@" and ".com"
        if dom_len == 0 {
            continue;
        }
        // labels of at most 63 chars, separated by dots
        let mut dom = String::new();
        let mut left = dom_len;
        while left > 0 {
            if !dom.is_empty() {
                if left == 1 {
                    dom.push('x');
                    break;
                }
                dom.push('.');
                left -= 1;
            }
            let n = left.min(63);
            dom.push_str(&"abcdefghij".repeat(7)[..n]);
            left -= n;
        }
        let local: String = format!("{total:03}")
            .chars()
            .chain(std::iter::repeat('q'))
            .take(local_len)
            .collect();
        let e = format!("{local}@{dom}.com");
        assert_eq!(e.len(), total, "{e}");
        rows.push(e);
    }
    let mut ok_rows = Vec::new();
    for (i, e) in rows.iter().enumerate() {
        let Ok(id) = Identifier::<Advertising>::email(e) else {
            continue;
        };
        let s = SubjectId::new(&format!("acct-{i}")).unwrap();
        l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
        assert!(l.authorize(&id, &acme).is_ok());
        ok_rows.push(e.clone());
    }
    assert!(ok_rows.len() > 150, "{}", ok_rows.len());
    for threads in [1, 2] {
        for chunk in [1, 7, 16, 17, 4096] {
            let (m, c) = l
                .audience::<Advertising>(&acme)
                .threads(threads)
                .chunk_size(chunk)
                .collect(&ok_rows);
            assert_eq!(
                (m.len() as u64, c.matched, c.uploaded),
                (ok_rows.len() as u64, ok_rows.len() as u64, ok_rows.len() as u64),
                "threads {threads} chunk {chunk}: {c}"
            );
        }
    }
}

fn ids_of(i: u32) -> (String, String) {
    (format!("p{i}@example.com"), format!("+1 555 02{i:05}"))
}

/// Subjects with two identifiers each (email and phone, both for advertising), uploaded
/// twice in interleaved orders, with erased, withdrawn, scoped and expiring subjects,
/// across thread counts and chunk sizes: the same matches and counts as one by one,
/// and decision records (Recording::Every) only for the matches.
#[test]
fn several_identifiers_per_subject_agree_with_one_by_one() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let l = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .record_decisions(Recording::Every)
        .open()
        .unwrap();
    let acme = Recipient::partner("acme-ads").unwrap();
    const N: u32 = 60;
    for i in 0..N {
        let s = SubjectId::new(&format!("acct-{i}")).unwrap();
        let (e, p) = ids_of(i);
        l.collect(
            &s,
            &Identifier::<Advertising>::email(&e).unwrap(),
            RecipientScope::all_partners(),
        )
        .unwrap();
        if i % 3 == 0 {
            l.collect(
                &s,
                &Identifier::<Security>::phone(&p).unwrap(),
                RecipientScope::first_party(),
            )
            .unwrap();
        } else {
            l.collect(
                &s,
                &Identifier::<Advertising>::phone(&p).unwrap(),
                RecipientScope::all_partners(),
            )
            .unwrap();
        }
        match i % 6 {
            0 | 1 => {
                l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                    .unwrap();
            }
            2 => {
                l.grant::<Advertising>(
                    &s,
                    RecipientScope::only(Recipient::partner("other").unwrap()),
                    None,
                )
                .unwrap();
            }
            3 => {
                l.grant::<Advertising>(
                    &s,
                    RecipientScope::all_partners(),
                    Some(Timestamp::from_millis(1_500)),
                )
                .unwrap();
            }
            4 => {
                l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                    .unwrap();
                l.withdraw::<Advertising>(&s).unwrap();
            }
            _ => {}
        }
        if i % 11 == 5 {
            l.erase(&s, Actor::Subject).unwrap();
        }
    }
    let mut rows = Vec::new();
    for round in 0..2u32 {
        for i in 0..N {
            let j = (i * 7 + round * 13) % N;
            let (e, p) = ids_of(j);
            rows.push(if (i + round) % 2 == 0 {
                e.to_uppercase()
            } else {
                p.clone()
            });
            rows.push(if (i + round) % 2 == 0 { p } else { format!(" {e} ") });
            if i % 9 == 0 {
                rows.push("not an id".to_owned());
            }
        }
    }
    for now in [1_000u64, 1_499, 1_500] {
        clock.set(Timestamp::from_millis(now));
        let (want, want_counts) = one_by_one(&l, &rows, &acme);
        for threads in [1, 2] {
            for chunk in [1, 2, 3, 5, 64, 4096] {
                let before = l.decision_records().unwrap().len();
                let mut got = Vec::new();
                let counts = l
                    .audience::<Advertising>(&acme)
                    .threads(threads)
                    .chunk_size(chunk)
                    .run(&rows, |m| got.push((m.row(), m.subject().clone())));
                assert_eq!(counts, want_counts, "now {now} threads {threads} chunk {chunk}");
                assert_eq!(got, want, "now {now} threads {threads} chunk {chunk}");
                let after = l.decision_records().unwrap().len();
                assert_eq!(
                    (after - before) as u64,
                    counts.matched,
                    "records, now {now} threads {threads} chunk {chunk}"
                );
            }
        }
        // Batch: same answers as one by one, duplicates included.
        let ids: Vec<Identifier<Advertising>> = rows
            .iter()
            .filter_map(|r| Identifier::parse(IdentifierKind::guess(r), r).ok())
            .collect();
        assert_batch_agrees(&l, &ids, &acme);
    }
}

/// The clock reaches a grant's expiry exactly while an earlier match of the same chunk
/// is handed out: the later match is not handed out (expired at `at`, as `authorize`
/// says then), for both thread counts and any chunk size.
#[test]
fn expiry_reached_exactly_during_the_hand_out() {
    for threads in [1usize, 2] {
        for chunk in [1usize, 2, 4096] {
            let dir = tempfile::tempdir().unwrap();
            let clock = ManualClock::new(Timestamp::from_millis(1_000));
            let l = ledger(dir.path(), &clock);
            let acme = Recipient::partner("acme-ads").unwrap();
            for (n, until) in [("a", None), ("b", Some(Timestamp::from_millis(2_000)))] {
                let s = SubjectId::new(&format!("acct-{n}")).unwrap();
                let id = Identifier::<Advertising>::email(&format!("{n}@example.com")).unwrap();
                l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
                l.grant::<Advertising>(&s, RecipientScope::all_partners(), until)
                    .unwrap();
            }
            let mut got = Vec::new();
            let counts = l
                .audience::<Advertising>(&acme)
                .threads(threads)
                .chunk_size(chunk)
                .run(["a@example.com", "b@example.com"], |m| {
                    if m.row() == 0 {
                        clock.set(Timestamp::from_millis(2_000));
                    }
                    got.push(m.row());
                });
            assert_eq!(got, vec![0], "threads {threads} chunk {chunk}: {counts}");
            assert_eq!((counts.matched, counts.denied.expired), (1, 1), "{counts}");
        }
    }
}

/// Rows too long to be any identifier (over 512 bytes) are buffered whole until their
/// chunk is hashed: a chunk holds `chunk` rows whatever their length, so memory is the
/// chunk size times the longest row, not bounded by the chunk size (review h35-a). Of
/// such a row nothing is ever needed but "malformed", yet with the default chunk 4096
/// of them are held at once (three chunks with two threads): 4096 rows of 100 MB, as
/// a hostile upload's CSV reader hands them out one at a time, is 400 GB held here.
/// Counted here with 1 KiB rows that say how many are alive at once.
/// (Now such a row is dropped as it is read.)
#[test]
fn rows_too_long_for_any_identifier_are_not_held_a_chunk_at_a_time() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static LIVE: AtomicUsize = AtomicUsize::new(0);
    static PEAK: AtomicUsize = AtomicUsize::new(0);
    /// An uploaded row (its text owned, as a reader's `String` is), counting the live ones.
    struct Row(String);
    impl Row {
        fn new() -> Row {
            let live = LIVE.fetch_add(1, Ordering::SeqCst) + 1;
            PEAK.fetch_max(live, Ordering::SeqCst);
            Row("9".repeat(1024))
        }
    }
    impl Drop for Row {
        fn drop(&mut self) {
            LIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
    impl AsRef<str> for Row {
        fn as_ref(&self) -> &str {
            &self.0
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_000));
    let ledger = ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme-ads").unwrap();
    let mut peaks = Vec::new();
    for threads in [1, 2] {
        PEAK.store(0, Ordering::SeqCst);
        let counts = ledger
            .audience::<Advertising>(&acme)
            .threads(threads)
            .run((0..20_000).map(|_| Row::new()), |_| {});
        assert_eq!((counts.uploaded, counts.malformed), (20_000, 20_000));
        peaks.push((threads, PEAK.load(Ordering::SeqCst)));
    }
    assert!(
        peaks.iter().all(|(_, peak)| *peak <= 64),
        "oversize rows alive at once (threads, peak): {peaks:?}"
    );
}
