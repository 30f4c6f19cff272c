//! Audience matching and batches against one-by-one `authorize`, on inputs the other
//! audience tests do not reach: every email length (the lanes with messages of one and
//! two blocks), subjects with two identifiers, expiry reached during the hand-out.
//! (Written by review r140; they passed on the code they reviewed.)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use consent_ledger::*;

fn ledger(dir: &std::path::Path, clock: &ManualClock) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .open()
        .unwrap()
}

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

/// One-by-one reference of a whole upload (as tests/audience.rs `one_by_one`).
fn reference(l: &Ledger, rows: &[String], to: &Recipient) -> (Vec<(u64, SubjectId)>, AudienceCounts) {
    let mut counts = AudienceCounts::default();
    let mut seen = std::collections::HashSet::new();
    let mut matched = Vec::new();
    for (row, raw) in rows.iter().enumerate() {
        counts.uploaded += 1;
        let Ok(id) = Identifier::<Advertising>::parse(IdentifierKind::guess(raw), raw) else {
            counts.malformed += 1;
            continue;
        };
        match l.authorize(&id, to) {
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
            Err(other) => panic!("unexpected {other}"),
        }
    }
    (matched, counts)
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
        let (want, want_counts) = reference(&l, &rows, &acme);
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
        let batch = l.authorize_batch(&ids, &acme);
        assert_eq!(batch.len(), ids.len());
        for (k, (id, b)) in ids.iter().zip(&batch).enumerate() {
            let single = l.authorize(id, &acme);
            match (b, &single) {
                (Ok(x), Ok(y)) => assert_eq!(x.evidence(), y.evidence(), "row {k}"),
                (Err(x), Err(y)) => assert_eq!(x, y, "row {k}"),
                (x, y) => panic!(
                    "row {k}: batch {:?} vs single {:?}",
                    x.as_ref().err(),
                    y.as_ref().err()
                ),
            }
        }
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
