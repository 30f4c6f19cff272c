//! Decision records (off, every decision, aggregated) and impact queries.
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
    Advertising, Clock, Denied, Durability, Hypothesis, Identifier, ImpactQuery, Ledger, ManualClock,
    PartnerSharing, PseudonymKey, ReadError, Recipient, RecipientScope, Recording, Security, SigningKey,
    SubjectId, Timestamp, Unlawful,
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

    fn open(&self, recording: Recording) -> Result<Ledger, consent_ledger::OpenError> {
        Ledger::builder(self.dir.path())
            .signing_key(self.key.clone())
            .pseudonym_key(self.pk.clone())
            .durability(Durability::Relaxed)
            .clock(self.clock.clone())
            .record_decisions(recording)
            .open()
    }

    fn tick(&self, ms: u64) {
        self.clock.advance(Duration::from_millis(ms));
    }
}

fn subject(s: &str) -> SubjectId {
    SubjectId::new(s).unwrap()
}

fn email(i: u32) -> String {
    format!("person{i}@example.org")
}

#[test]
fn off_records_nothing_every_records_each_allowed_use() {
    let f = Fixture::new();
    let acme = Recipient::partner("acme").unwrap();
    {
        let l = f.open(Recording::Off).unwrap();
        let id = Identifier::<Advertising>::email(&email(1)).unwrap();
        l.collect(&subject("s-1"), &id, RecipientScope::all_partners())
            .unwrap();
        l.grant::<Advertising>(&subject("s-1"), RecipientScope::all_partners(), None)
            .unwrap();
        l.authorize(&id, &acme).unwrap();
        assert!(l.decision_records().unwrap().is_empty());
    }
    let l = f.open(Recording::Every).unwrap();
    let id = Identifier::<Advertising>::email(&email(1)).unwrap();
    let stranger = Identifier::<Advertising>::email(&email(2)).unwrap();
    let u1 = l.authorize(&id, &acme).unwrap();
    f.tick(10);
    let u2 = l.authorize(&id, &acme).unwrap();
    // Denied uses are not recorded.
    assert_eq!(
        l.authorize(&stranger, &acme).unwrap_err(),
        Denied::UnknownIdentifier
    );
    let recs = l.decision_records().unwrap();
    assert_eq!(recs.len(), 2);
    for (r, u) in recs.iter().zip([&u1, &u2]) {
        let e = u.evidence();
        assert_eq!(r.subject(), e.subject());
        assert_eq!(r.purpose(), "advertising");
        assert_eq!(r.recipient(), &acme);
        assert_eq!(r.allowed_by(), e.allowed_by());
        assert_eq!(r.collected_at(), e.collected_at());
        assert_eq!(r.positions(), (e.position(), e.position()));
        assert_eq!(r.times(), (e.decided_at(), e.decided_at()));
        assert_eq!(r.count(), 1);
    }
    drop((u1, u2));
    drop(l);
    // Records survive reopening, and numbering continues after them.
    let l = f.open(Recording::Every).unwrap();
    l.authorize(&id, &acme).unwrap();
    assert_eq!(l.decision_records().unwrap().len(), 3);
}

#[test]
fn batch_and_audience_matches_are_recorded_too() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let mut ids = Vec::new();
    for i in 0..6 {
        let s = subject(&format!("s-{i}"));
        let id = Identifier::<Advertising>::email(&email(i)).unwrap();
        l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        if i % 2 == 0 {
            l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
        ids.push(id);
    }
    let batch = l.authorize_batch(&ids, &acme);
    assert_eq!(batch.iter().filter(|d| d.is_ok()).count(), 3);
    assert_eq!(l.decision_records().unwrap().len(), 3);
    let upload: Vec<String> = (0..6).map(email).collect();
    let (matches, counts) = l.audience::<Advertising>(&acme).collect(upload);
    assert_eq!(counts.matched, 3);
    assert_eq!(matches.len(), 3);
    assert_eq!(l.decision_records().unwrap().len(), 6);
}

#[test]
fn aggregated_counts_per_bucket_and_survive_drop() {
    let f = Fixture::new();
    let acme = Recipient::partner("acme").unwrap();
    let beta = Recipient::partner("beta").unwrap();
    let bucket = Recording::Aggregated {
        bucket: Duration::from_secs(60),
    };
    let id = Identifier::<Advertising>::email(&email(1)).unwrap();
    {
        let l = f.open(bucket).unwrap();
        l.collect(&subject("s-1"), &id, RecipientScope::all_partners())
            .unwrap();
        l.grant::<Advertising>(&subject("s-1"), RecipientScope::all_partners(), None)
            .unwrap();
        for _ in 0..100 {
            l.authorize(&id, &acme).unwrap();
        }
        l.authorize(&id, &beta).unwrap();
        f.tick(60_000);
        for _ in 0..5 {
            l.authorize(&id, &acme).unwrap();
        }
        // Dropped without sync: the counts are written on drop.
    }
    let l = f.open(bucket).unwrap();
    let mut recs = l.decision_records().unwrap();
    recs.sort_by_key(|r| (r.times().0, r.recipient().to_string()));
    let summary: Vec<(String, u64)> = recs
        .iter()
        .map(|r| (r.recipient().to_string(), r.count()))
        .collect();
    assert_eq!(
        summary,
        vec![
            ("partner \"acme\"".to_string(), 100),
            ("partner \"beta\"".to_string(), 1),
            ("partner \"acme\"".to_string(), 5),
        ]
    );
    // Flushing twice merges into the same record instead of adding another.
    for _ in 0..3 {
        l.authorize(&id, &acme).unwrap();
    }
    l.sync().unwrap();
    l.authorize(&id, &acme).unwrap();
    let recs = l.decision_records().unwrap();
    assert_eq!(recs.len(), 3);
    assert_eq!(recs.iter().map(|r| r.count()).sum::<u64>(), 110);
}

#[test]
fn edited_records_are_refused() {
    let f = Fixture::new();
    {
        let l = f.open(Recording::Every).unwrap();
        let id = Identifier::<Security>::phone("+15550100001").unwrap();
        l.collect(&subject("s-1"), &id, RecipientScope::first_party())
            .unwrap();
        l.authorize(&id, &Recipient::FirstParty).unwrap();
        l.sync().unwrap();
    }
    // Edit the stored record in place: flip one byte of its value.
    {
        let db = sled_util::open(f.dir.path());
        let tree = db.open_tree("decisions").unwrap();
        let (k, v) = tree.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        v[10] ^= 1;
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let l = f.open(Recording::Every).unwrap();
    assert!(matches!(l.decision_records(), Err(ReadError::CorruptRecord)));
    // The ledger itself is untouched.
    l.verify().unwrap();
}

#[test]
fn records_hold_no_identifier_values() {
    let f = Fixture::new();
    let phone = "+15550109999";
    let mail = "secret.person@example.org";
    {
        let l = f.open(Recording::Every).unwrap();
        let p = Identifier::<Security>::phone(phone).unwrap();
        let m = Identifier::<Advertising>::email(mail).unwrap();
        l.collect(&subject("s-1"), &p, RecipientScope::first_party())
            .unwrap();
        l.collect(&subject("s-1"), &m, RecipientScope::all_partners())
            .unwrap();
        l.grant::<Advertising>(&subject("s-1"), RecipientScope::all_partners(), None)
            .unwrap();
        l.authorize(&p, &Recipient::FirstParty).unwrap();
        l.authorize(&m, &Recipient::partner("acme").unwrap()).unwrap();
        let recs = l.decision_records().unwrap();
        let shown = format!("{recs:?}");
        assert!(!shown.contains(phone) && !shown.contains("5550109999") && !shown.contains(mail));
        l.sync().unwrap();
    }
    let db = sled_util::open(f.dir.path());
    let tree = db.open_tree("decisions").unwrap();
    assert_eq!(tree.len(), 2);
    for item in tree.iter() {
        let (_, v) = item.unwrap();
        let v = String::from_utf8_lossy(&v);
        assert!(!v.contains("5550109999") && !v.contains("secret.person"));
    }
}

/// The incident: for a period, a sign-up form recorded 2FA numbers as collected for
/// advertising with consent pre-ticked. The impact query finds exactly the subjects
/// whose numbers were matched then, and the blast radius under the hypotheses.
#[test]
fn impact_query_finds_the_misconfigured_period() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let beta = Recipient::partner("beta").unwrap();

    // Before the bad release: 4 people opted in to ads with their email, 4 gave a
    // phone for 2FA only.
    for i in 0..4 {
        let s = subject(&format!("ok-{i}"));
        let id = Identifier::<Advertising>::email(&email(i)).unwrap();
        l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
        let phone = Identifier::<Security>::phone(&format!("+1555010{i:04}")).unwrap();
        l.collect(&s, &phone, RecipientScope::first_party()).unwrap();
    }
    f.tick(1000);
    let bad_from = f.clock.now();
    // The bad release: 3 people enrolling in 2FA also get their number recorded for
    // advertising, with a pre-ticked grant.
    for i in 0..3 {
        let s = subject(&format!("victim-{i}"));
        let raw = format!("+1555020{i:04}");
        let phone = Identifier::<Security>::phone(&raw).unwrap();
        l.collect(&s, &phone, RecipientScope::first_party()).unwrap();
        let ad = Identifier::<Advertising>::phone(&raw).unwrap();
        l.collect(&s, &ad, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    // Ad matching during the period: everyone advertising-collected is matched.
    f.tick(1000);
    let mut upload: Vec<String> = (0..4).map(email).collect();
    upload.extend((0..3).map(|i| format!("+1555020{i:04}")));
    upload.extend((0..4).map(|i| format!("+1555010{i:04}")));
    let (m, _) = l.audience::<Advertising>(&acme).collect(upload.clone());
    assert_eq!(
        m.len(),
        7,
        "4 opted in, 3 victims; the 2FA-only numbers never match"
    );
    f.tick(1000);
    let bad_until = f.clock.now();
    // After the fix: one victim withdraws; a later match to beta.
    l.withdraw::<Advertising>(&subject("victim-0")).unwrap();
    f.tick(1000);
    let (m2, _) = l.audience::<Advertising>(&beta).collect(upload);
    assert_eq!(m2.len(), 6);
    let end = Timestamp::from_millis(T0 + 1_000_000);

    // Plain query over the bad period: 7 subjects used, all lawful as recorded.
    let plain = l
        .impact(&ImpactQuery::between(bad_from, bad_until).purpose::<Advertising>())
        .unwrap();
    assert_eq!(plain.subjects.len(), 7);
    assert_eq!(plain.uses, 7);
    assert!(plain.unlawful.is_empty());

    // Hypothesis: numbers given for 2FA never consented for ads.
    let q = ImpactQuery::between(bad_from, bad_until)
        .purpose::<Advertising>()
        .assume(Hypothesis::never_consented::<Security, Advertising>());
    let r = l.impact(&q).unwrap();
    let names: Vec<&str> = r.unlawful_subjects.iter().map(|s| s.as_str()).collect();
    assert_eq!(names, ["victim-0", "victim-1", "victim-2"]);
    assert!(r.unlawful.iter().all(|u| u.reason
        == Unlawful::GivenFor {
            purpose: "security".into()
        }));
    assert_eq!(
        r.unlawful[0].reason.to_string(),
        "the identifier was given for \"security\""
    );

    // Hypothesis: grants made during the bad period are void. Over the whole time,
    // the victims' uses lack consent (both matches); the opted-in people are fine.
    let q = ImpactQuery::between(Timestamp::from_millis(T0), end)
        .purpose::<Advertising>()
        .assume(Hypothesis::GrantsVoidBetween {
            from: bad_from,
            until: Some(bad_until),
        });
    let r = l.impact(&q).unwrap();
    assert_eq!(r.uses, 13);
    assert_eq!(r.unlawful_uses, 5, "3 victims matched for acme, 2 for beta");
    assert!(r.unlawful.iter().all(|u| u.reason == Unlawful::NoConsent));
    assert_eq!(r.unlawful_subjects.len(), 3);

    // Only one recipient.
    let r = l
        .impact(&ImpactQuery::between(Timestamp::from_millis(T0), end).recipient(beta.clone()))
        .unwrap();
    assert_eq!(r.by_recipient, vec![(beta, 6)]);
    // Another purpose: nothing.
    let r = l
        .impact(&ImpactQuery::between(Timestamp::from_millis(T0), end).purpose::<PartnerSharing>())
        .unwrap();
    assert_eq!(r.records, 0);
}

/// "Treat withdrawals as effective immediately": a `Use` decided before a withdrawal
/// and used after it (recorded at the later time by an aggregate) is caught only
/// under the hypothesis.
#[test]
fn withdrawals_immediate_catches_uses_decided_on_an_older_state() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let s = subject("s-1");
    let id = Identifier::<Advertising>::email(&email(1)).unwrap();
    l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    let acme = Recipient::partner("acme").unwrap();
    // A use decided now ...
    l.authorize(&id, &acme).unwrap();
    // ... and a withdrawal recorded at the same millisecond: the decision was made on
    // the state before it.
    l.withdraw::<Advertising>(&s).unwrap();
    let all = ImpactQuery::between(Timestamp::from_millis(T0), Timestamp::from_millis(T0 + 1));
    assert!(l.impact(&all).unwrap().unlawful.is_empty());
    let r = l.impact(&all.assume(Hypothesis::WithdrawalsImmediate)).unwrap();
    assert_eq!(r.unlawful.len(), 1);
    assert!(matches!(r.unlawful[0].reason, Unlawful::Withdrawn { .. }));
}

fn s1() -> SubjectId {
    subject("s-1")
}

fn id() -> Identifier<Advertising> {
    Identifier::<Advertising>::email("person1@example.org").unwrap()
}

/// `s1()` gives `id()` for ads, to all partners, and consents: the grant.
fn consent_to_ads(l: &Ledger) -> consent_ledger::Recorded {
    l.collect(&s1(), &id(), RecipientScope::all_partners()).unwrap();
    l.grant::<Advertising>(&s1(), RecipientScope::all_partners(), None)
        .unwrap()
}

/// A valid record copied under another key (to count a use twice) is refused: its
/// tag covers its storage key.
#[test]
fn a_copied_decision_record_is_refused() {
    let f = Fixture::new();
    {
        let l = f.open(Recording::Every).unwrap();
        consent_to_ads(&l);
        l.authorize(&id(), &Recipient::partner("acme").unwrap()).unwrap();
        l.sync().unwrap();
    }
    {
        let db = sled_util::open(f.dir.path());
        let tree = db.open_tree("decisions").unwrap();
        let (_, v) = tree.iter().next().unwrap().unwrap();
        let mut k = vec![1u8];
        k.extend_from_slice(&7u64.to_be_bytes());
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let l = f.open(Recording::Every).unwrap();
    let r = l.impact(&ImpactQuery::between(
        Timestamp::EPOCH,
        Timestamp::from_millis(u64::MAX),
    ));
    assert!(
        matches!(r, Err(ReadError::CorruptRecord)),
        "inserted copy accepted: {:?}",
        r.map(|r| (r.records, r.uses))
    );
}

/// The latest recorded use raises the time floor at open, but only from a record whose
/// tag checks: one edited to a later time raises nothing (a raised floor would expire a
/// valid grant), and the open is not refused for it (reading the records reports it).
#[test]
fn an_edited_record_does_not_raise_the_time_floor() {
    let f = Fixture::new();
    let acme = Recipient::partner("acme").unwrap();
    {
        let l = f.open(Recording::Every).unwrap();
        l.collect(&s1(), &id(), RecipientScope::all_partners()).unwrap();
        let lapse = Timestamp::from_millis(T0 + 10_000);
        l.grant::<Advertising>(&s1(), RecipientScope::all_partners(), Some(lapse))
            .unwrap();
        l.authorize(&id(), &acme).unwrap();
    }
    {
        let db = sled_util::open(f.dir.path());
        let tree = db.open_tree("decisions").unwrap();
        let (k, v) = tree.iter().next_back().unwrap().unwrap();
        let mut v = v.to_vec();
        // `last_at`: before the count and the tag (docs/format.md).
        let at = v.len() - 32 - 8 - 8;
        v[at..at + 8].copy_from_slice(&(T0 + 20_000).to_be_bytes());
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    f.tick(1_000);
    let l = f.open(Recording::Every).unwrap();
    let alice = id();
    let used = l.authorize(&alice, &acme).unwrap();
    assert_eq!(used.evidence().decided_at(), Timestamp::from_millis(T0 + 1_000));
    assert!(matches!(l.decision_records(), Err(ReadError::CorruptRecord)));
}

/// A stored aggregate that was edited is reported, never written over (which would
/// hide the edit and lose its counts).
#[test]
fn an_edited_aggregate_is_refused_not_overwritten() {
    let f = Fixture::new();
    let agg = Recording::Aggregated {
        bucket: Duration::from_secs(60),
    };
    let acme = Recipient::partner("acme").unwrap();
    {
        let l = f.open(agg).unwrap();
        consent_to_ads(&l);
        for _ in 0..10 {
            l.authorize(&id(), &acme).unwrap();
        }
        l.sync().unwrap();
    }
    {
        let db = sled_util::open(f.dir.path());
        let tree = db.open_tree("decisions").unwrap();
        let (k, v) = tree.iter().next().unwrap().unwrap();
        let mut v = v.to_vec();
        let last = v.len() - 1;
        v[last] ^= 1; // one bit of the tag
        tree.insert(k, v).unwrap();
        db.flush().unwrap();
    }
    let l = f.open(agg).unwrap();
    l.authorize(&id(), &acme).unwrap(); // same group, same bucket
    let r = l.decision_records();
    assert!(
        matches!(r, Err(ReadError::CorruptRecord)),
        "edited aggregate replaced silently: {:?}",
        r.map(|v| v.iter().map(|r| r.count()).collect::<Vec<_>>())
    );
}

/// A grant that has lapsed is exported as expired, as decisions treat it, before its
/// expiry is written to the log.
#[test]
fn the_export_reports_a_lapsed_consent_as_expired() {
    let f = Fixture::new();
    let l = f.open(Recording::Off).unwrap();
    let acme = Recipient::partner("acme").unwrap();
    l.collect(&s1(), &id(), RecipientScope::all_partners()).unwrap();
    let until = f.clock.now().saturating_add(Duration::from_secs(3600));
    l.grant::<Advertising>(&s1(), RecipientScope::all_partners(), Some(until))
        .unwrap();
    f.clock.advance(Duration::from_secs(7200));
    assert!(matches!(l.authorize(&id(), &acme), Err(Denied::Expired { .. })));
    let doc: serde_json::Value = serde_json::from_str(&l.export_subject(&s1(), "-").unwrap()).unwrap();
    let rec = &doc["@graph"][0];
    assert_eq!(rec["dpv:hasConsentStatus"], "dpv:ConsentExpired", "{rec:#}");
}

/// The export lists the recorded uses: to whom the data was disclosed.
#[test]
fn the_export_names_recipients_the_data_was_disclosed_to() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    consent_to_ads(&l);
    l.authorize(&id(), &Recipient::partner("acme").unwrap()).unwrap();
    assert_eq!(l.decision_records().unwrap().len(), 1);
    let doc: serde_json::Value = serde_json::from_str(&l.export_subject(&s1(), "-").unwrap()).unwrap();
    let uses = doc["uses"].as_array().unwrap();
    assert_eq!(uses.len(), 1, "{doc:#}");
    assert_eq!(
        uses[0]["dpv:hasRecipient"],
        Recipient::partner("acme").unwrap().to_string()
    );
    assert_eq!(uses[0]["dpv:hasPurpose"], "advertising");
    assert_eq!(uses[0]["count"], 1);
    // Another subject's uses are not in it.
    let s2 = SubjectId::new("s-2").unwrap();
    let other = Identifier::<Advertising>::email("person2@example.org").unwrap();
    l.collect(&s2, &other, RecipientScope::all_partners()).unwrap();
    l.grant::<Advertising>(&s2, RecipientScope::all_partners(), None)
        .unwrap();
    l.authorize(&other, &Recipient::partner("zeta").unwrap()).unwrap();
    let json = l.export_subject(&s1(), "-").unwrap();
    assert!(!json.contains("zeta") && !json.contains("s-2"), "{json}");
    // A handle that does not record (a tool answering an access request) still lists
    // the uses stored.
    l.sync().unwrap();
    drop(l);
    let l = f.open(Recording::Off).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&l.export_subject(&s1(), "-").unwrap()).unwrap();
    assert_eq!(doc["uses"].as_array().unwrap().len(), 1, "{doc:#}");
}

/// A decision is never stamped before a time the ledger has seen: after the clock
/// steps back, the evidence still does not say the use came before the grant.
#[test]
fn a_decision_is_never_stamped_before_the_entry_that_allowed_it() {
    let f = Fixture::new();
    f.tick(60_000);
    let l = f.open(Recording::Every).unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let g = consent_to_ads(&l);
    f.clock.set(Timestamp::from_millis(T0)); // the clock steps back a minute
    let ident = id();
    let u = l.authorize(&ident, &acme).unwrap();
    assert_eq!(u.evidence().allowed_by(), g.seq);
    assert!(u.evidence().decided_at() >= g.timestamp);
    let (first, _) = l.decision_records().unwrap()[0].times();
    assert!(first >= g.timestamp);
}

/// One address or number written two common ways is one identifier: the second
/// subject to collect it is refused, whichever spelling it uses.
#[test]
fn one_identifier_written_two_ways_has_one_holder() {
    let f = Fixture::new();
    let l = f.open(Recording::Off).unwrap();
    let (a, b) = (subject("a"), subject("b"));
    let first = Identifier::<Security>::email("bob@b\u{fc}cher.de").unwrap();
    l.collect(&a, &first, RecipientScope::first_party()).unwrap();
    for other in [
        "bob@bu\u{308}cher.de",
        "bob@xn--bcher-kva.de",
        "bob@B\u{dc}CHER.DE",
    ] {
        let id = Identifier::<Security>::email(other).unwrap();
        let r = l.collect(&b, &id, RecipientScope::first_party());
        assert!(
            matches!(r, Err(consent_ledger::WriteError::HeldByAnotherSubject { .. })),
            "{r:?}"
        );
    }
    let phone = Identifier::<Security>::phone("+44 20 7946 0958").unwrap();
    l.collect(&a, &phone, RecipientScope::first_party()).unwrap();
    let same = Identifier::<Security>::phone("+44 (0)20 7946 0958").unwrap();
    let r = l.collect(&b, &same, RecipientScope::first_party());
    assert!(
        matches!(r, Err(consent_ledger::WriteError::HeldByAnotherSubject { .. })),
        "{r:?}"
    );
}

/// A time that evidence carries is a time the ledger has seen: a consent that lapsed
/// before it stays lapsed when the clock steps back, also when only decisions that do
/// not depend on the time read the clock past the expiry.
#[test]
fn a_lapsed_consent_stays_lapsed_after_a_time_independent_decision_and_a_step_back() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let (a, b) = (subject("s-a"), subject("s-b"));
    let ida = Identifier::<Advertising>::email("a@example.org").unwrap();
    let idb = Identifier::<Advertising>::email("b@example.org").unwrap();
    l.collect(&a, &ida, RecipientScope::all_partners()).unwrap();
    l.collect(&b, &idb, RecipientScope::all_partners()).unwrap();
    let lapse = Timestamp::from_millis(T0 + 20_000);
    l.grant::<Advertising>(&a, RecipientScope::all_partners(), Some(lapse))
        .unwrap();
    l.grant::<Advertising>(&b, RecipientScope::all_partners(), None)
        .unwrap();
    f.clock.set(Timestamp::from_millis(T0 + 30_000));
    let seen = l.authorize(&idb, &acme).unwrap().evidence().decided_at();
    assert_eq!(seen, Timestamp::from_millis(T0 + 30_000));
    f.clock.set(Timestamp::from_millis(T0 + 10_000)); // the clock steps back
    let r = l.authorize(&ida, &acme);
    assert!(
        matches!(r, Err(Denied::Expired { .. })),
        "allowed at {:?} after the ledger had seen {seen:?}",
        r.as_ref().map(|u| u.evidence().decided_at())
    );
    // And the floor outlives a reopening.
    drop(r);
    drop(l);
    let l = f.open(Recording::Every).unwrap();
    assert!(matches!(l.authorize(&ida, &acme), Err(Denied::Expired { .. })));
}

/// A use is judged by the collections made before it: a number given for ads, used,
/// and only later also given for 2FA was not "given for 2FA" when it was used.
#[test]
fn never_consented_ignores_collections_made_after_the_use() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let s = s1();
    let ad = Identifier::<Advertising>::phone("+15550100077").unwrap();
    l.collect(&s, &ad, RecipientScope::all_partners()).unwrap();
    l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    f.tick(1_000);
    drop(l.authorize(&ad, &acme).unwrap());
    f.tick(30 * 24 * 3600 * 1000);
    let tfa = Identifier::<Security>::phone("+15550100077").unwrap();
    l.collect(&s, &tfa, RecipientScope::first_party()).unwrap();
    // A second use, after the 2FA collection, is judged by it.
    drop(l.authorize(&ad, &acme).unwrap());
    let q = |until| {
        ImpactQuery::between(Timestamp::from_millis(T0), Timestamp::from_millis(until))
            .purpose::<Advertising>()
            .assume(Hypothesis::never_consented::<Security, Advertising>())
    };
    let before = l.impact(&q(T0 + 2_000)).unwrap();
    assert_eq!(before.uses, 1);
    assert!(before.unlawful.is_empty(), "{:?}", before.unlawful);
    let all = l.impact(&q(u64::MAX)).unwrap();
    assert_eq!((all.uses, all.unlawful_uses), (2, 1));
    assert_eq!(
        all.unlawful[0].reason,
        Unlawful::GivenFor {
            purpose: "security".into()
        }
    );
}

/// An aggregate keeps only its first and last uses' positions. One whose first use
/// came before the number was given for 2FA and whose later uses came after is judged
/// differently at its two ends: one use counts as without a valid basis and the uses
/// in between as of unknown verdict, never all of them (with `Every`, each use is
/// judged). An aggregate judged alike at both ends counts all its uses. (From review
/// r99: the aggregate counted (4, 4) where every use recorded gave (4, 3).)
#[test]
fn an_aggregate_judged_differently_at_its_ends_counts_what_is_known() {
    let answer = |recording: Recording| {
        let f = Fixture::new();
        let l = f.open(recording).unwrap();
        let acme = Recipient::partner("acme").unwrap();
        let s = s1();
        let ad = Identifier::<Advertising>::phone("+15550100077").unwrap();
        l.collect(&s, &ad, RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
        f.tick(1_000);
        drop(l.authorize(&ad, &acme).unwrap());
        f.tick(1_000);
        let tfa = Identifier::<Security>::phone("+15550100077").unwrap();
        l.collect(&s, &tfa, RecipientScope::first_party()).unwrap();
        for _ in 0..3 {
            f.tick(1_000);
            drop(l.authorize(&ad, &acme).unwrap());
        }
        let q = ImpactQuery::since(Timestamp::EPOCH)
            .assume(Hypothesis::never_consented::<Security, Advertising>());
        let r = l.impact(&q).unwrap();
        let known: u64 = r.unlawful.iter().map(|u| u.uses).sum();
        assert_eq!(known, r.unlawful_uses);
        (r.uses, r.unlawful_uses, r.uses_of_unknown_verdict)
    };
    assert_eq!(answer(Recording::Every), (4, 3, 0));
    let hour = Duration::from_secs(3600);
    assert_eq!(answer(Recording::Aggregated { bucket: hour }), (4, 1, 2));
    // In buckets of 1.5 s: the first use alone, then two buckets after the collection.
    let short = Duration::from_millis(1_500);
    let (uses, unlawful, unknown) = answer(Recording::Aggregated { bucket: short });
    assert_eq!((uses, unknown), (4, 0));
    assert!(unlawful == 3, "{unlawful}");
}

/// One identifier collected again with a wider scope is still one identifier used.
#[test]
fn an_identifier_collected_again_is_counted_once() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let s = s1();
    let phone = Identifier::<Security>::phone("+15550100088").unwrap();
    let first = l.collect(&s, &phone, RecipientScope::first_party()).unwrap();
    drop(l.authorize(&phone, &Recipient::FirstParty).unwrap());
    let wider =
        RecipientScope::any_of([Recipient::FirstParty, Recipient::partner("sms-gateway").unwrap()]).unwrap();
    let second = l.collect(&s, &phone, wider).unwrap();
    assert_ne!(first.seq, second.seq);
    drop(l.authorize(&phone, &Recipient::FirstParty).unwrap());
    let other = Identifier::<Security>::email("other@example.org").unwrap();
    l.collect(&s, &other, RecipientScope::first_party()).unwrap();
    drop(l.authorize(&other, &Recipient::FirstParty).unwrap());
    let r = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
    assert_eq!((r.uses, r.subjects.len()), (3, 1));
    assert_eq!(r.identifiers.len(), 2, "{:?}", r.identifiers);
    assert_eq!(r.identifiers[0].1, first.seq);
}

/// A use stamped at the largest time is found by an open-ended query (a window's end
/// is exclusive, so no window holds it).
#[test]
fn a_use_at_the_largest_time_is_found_since_a_time() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let phone = Identifier::<Security>::phone("+15550100099").unwrap();
    l.collect(&s1(), &phone, RecipientScope::first_party()).unwrap();
    drop(l.authorize(&phone, &Recipient::FirstParty).unwrap());
    f.clock.set(Timestamp::from_millis(u64::MAX));
    drop(l.authorize(&phone, &Recipient::FirstParty).unwrap());
    let window = ImpactQuery::between(Timestamp::EPOCH, Timestamp::from_millis(u64::MAX));
    assert_eq!(l.impact(&window).unwrap().uses, 1);
    assert_eq!(l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap().uses, 2);
    let late = ImpactQuery::since(Timestamp::from_millis(u64::MAX));
    assert_eq!(l.impact(&late).unwrap().uses, 1);
}

/// A grant recorded at the largest time can be voided by a period with no end.
#[test]
fn a_grant_at_the_largest_time_is_void_in_a_period_with_no_end() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    l.collect(&s1(), &id(), RecipientScope::all_partners()).unwrap();
    f.clock.set(Timestamp::from_millis(u64::MAX));
    l.grant::<Advertising>(&s1(), RecipientScope::all_partners(), None)
        .unwrap();
    drop(l.authorize(&id(), &Recipient::partner("acme").unwrap()).unwrap());
    let void = |until| {
        let q = ImpactQuery::since(Timestamp::EPOCH).assume(Hypothesis::GrantsVoidBetween {
            from: Timestamp::EPOCH,
            until,
        });
        l.impact(&q).unwrap().unlawful_uses
    };
    assert_eq!(
        void(Some(Timestamp::from_millis(u64::MAX))),
        0,
        "the end is exclusive"
    );
    assert_eq!(void(None), 1);
}

/// A key planted in the decision tree cannot steer the record numbers: a junk key or a
/// number no ledger reaches (2^63 or more) fails opening with every decision recorded
/// (once, they reset the numbering to 0, wrapped it around so that the next records
/// were written over the first ones, or used it up so that every use was denied), and
/// a planted record is never written over.
#[test]
fn a_planted_decision_key_never_makes_records_be_written_over() {
    let ident = id();
    let acme = Recipient::partner("acme").unwrap();
    let plant = |f: &Fixture, key: &[u8]| {
        let db = sled_util::open(f.dir.path());
        db.open_tree("decisions")
            .unwrap()
            .insert(key, &b"junk"[..])
            .unwrap();
        db.flush().unwrap();
    };
    let uses = |f: &Fixture, n: usize| {
        let l = f.open(Recording::Every).unwrap();
        if l.len() == 1 {
            l.collect(&s1(), &ident, RecipientScope::all_partners()).unwrap();
            l.grant::<Advertising>(&s1(), RecipientScope::all_partners(), None)
                .unwrap();
        }
        for _ in 0..n {
            f.tick(1);
            drop(l.authorize(&ident, &acme).unwrap());
        }
    };
    for planted in [
        [&[1u8][..], &u64::MAX.to_be_bytes()].concat(),
        // Found by a review: just below the last number, the numbering was used up at
        // once and every use was denied as unavailable.
        [&[1u8][..], &(u64::MAX - 1).to_be_bytes()].concat(),
        [&[1u8][..], &(1u64 << 63).to_be_bytes()].concat(),
        vec![1u8],
        vec![1u8; 12],
    ] {
        let f = Fixture::new();
        uses(&f, 0);
        plant(&f, &planted);
        let r = f.open(Recording::Every);
        assert!(
            matches!(
                r,
                Err(consent_ledger::OpenError::CorruptMetadata("decision record"))
            ),
            "{planted:?}: {:?}",
            r.map(|l| l.len())
        );
        // Without recording every use the numbers are not used: it opens, and reading
        // the records reports the planted one.
        let l = f.open(Recording::Off).unwrap();
        assert!(matches!(l.decision_records(), Err(ReadError::CorruptRecord)));
    }
    // A record planted past the last one: the numbering goes on after it, and the
    // records written before stay as they were.
    let f = Fixture::new();
    uses(&f, 3);
    plant(&f, &[&[1u8][..], &7u64.to_be_bytes()].concat());
    uses(&f, 2);
    let db = sled_util::open(f.dir.path());
    let keys: Vec<u64> = db
        .open_tree("decisions")
        .unwrap()
        .iter()
        .map(|kv| u64::from_be_bytes(kv.unwrap().0[1..9].try_into().unwrap()))
        .collect();
    assert_eq!(keys, [0, 1, 2, 7, 8, 9]);
}

/// `WithdrawalsImmediate` judges a use that did not rest on consent by the collection
/// in force at its time, as a decision would: a partner's use decided on the old, wider
/// scope in the millisecond the identifier was collected again for first-party use
/// only is caught.
#[test]
fn withdrawals_immediate_catches_a_use_after_a_narrowed_collection() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let s = subject("s-1");
    let id = Identifier::<Security>::email(&email(1)).unwrap();
    let narrowed = l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    assert_eq!(narrowed.seq, 1);
    f.tick(1);
    let acme = Recipient::partner("acme").unwrap();
    l.authorize(&id, &acme).unwrap(); // decided on the wide scope
    let narrow = l.collect(&s, &id, RecipientScope::first_party()).unwrap(); // same millisecond
    assert!(matches!(
        l.authorize(&id, &acme),
        Err(Denied::RecipientNotCovered { .. })
    ));
    let all = ImpactQuery::since(Timestamp::EPOCH);
    assert!(l.impact(&all).unwrap().unlawful.is_empty());
    let r = l.impact(&all.assume(Hypothesis::WithdrawalsImmediate)).unwrap();
    assert_eq!(r.unlawful.len(), 1, "{r:?}");
    assert_eq!(
        r.unlawful[0].reason,
        Unlawful::CollectionNotCovering {
            collection: narrow.seq
        }
    );
}

/// A decision record's count comes from the store: totals saturate, never overflow
/// (records with the largest counts are forged here with the pseudonym key, which
/// tags them).
#[test]
fn impact_totals_saturate() {
    use hmac::{Mac, SimpleHmac};
    let f = Fixture::new();
    let ledger_id = {
        let l = f.open(Recording::Every).unwrap();
        let id = Identifier::<Security>::email(&email(1)).unwrap();
        l.collect(&subject("s-1"), &id, RecipientScope::all_partners())
            .unwrap();
        let acme = Recipient::partner("acme").unwrap();
        l.authorize(&id, &acme).unwrap();
        l.authorize(&id, &acme).unwrap();
        l.sync().unwrap();
        l.id()
    };
    {
        let db = sled_util::open(f.dir.path());
        let t = db.open_tree("decisions").unwrap();
        let items: Vec<_> = t.iter().map(Result::unwrap).collect();
        assert_eq!(items.len(), 2);
        for (k, v) in items {
            // The count is the body's last 8 bytes, before the 32-byte tag.
            let mut body = v[..v.len() - 32].to_vec();
            let n = body.len();
            body[n - 8..].copy_from_slice(&(1u64 << 63).to_be_bytes());
            let mut mac = <SimpleHmac<sha2::Sha256> as Mac>::new_from_slice(f.pk.expose_bytes()).unwrap();
            mac.update(b"consent-ledger/v1/index-record\0");
            for part in [
                &b"consent-ledger decision record v3"[..],
                &ledger_id[..],
                &k,
                &body,
            ] {
                mac.update(&(part.len() as u64).to_be_bytes());
                mac.update(part);
            }
            body.extend_from_slice(&mac.finalize().into_bytes());
            t.insert(&k, body).unwrap();
        }
        db.flush().unwrap();
    }
    let l = f.open(Recording::Every).unwrap();
    assert!(l.decision_records().unwrap().iter().all(|r| r.count() == 1 << 63));
    let report = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
    assert_eq!(report.uses, u64::MAX);
    assert_eq!(report.by_recipient[0].1, u64::MAX);
}

consent_ledger::declare_purpose!(pub FraudLi, "fraud", "fraud checks (legitimate interest)", consent_ledger::LegalBasis::LegitimateInterest);
consent_ledger::declare_purpose!(pub FraudConsent, "fraud", "fraud checks (now on consent)", consent_ledger::LegalBasis::Consent);

/// `WithdrawalsImmediate` also follows the legal basis of the collection in force: an
/// identifier collected again on consent (the purpose's basis changed) needs consent
/// from then on, so a use decided on the older collection in that millisecond, with no
/// consent given, is caught.
#[test]
fn withdrawals_immediate_follows_a_collection_now_on_consent() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let s = subject("s-1");
    let acme = Recipient::partner("acme").unwrap();
    let li = Identifier::<FraudLi>::email(&email(1)).unwrap();
    l.collect(&s, &li, RecipientScope::all_partners()).unwrap();
    f.tick(1);
    l.authorize(&li, &acme).unwrap(); // rests on the collection
    let on_consent = Identifier::<FraudConsent>::email(&email(1)).unwrap();
    let again = l
        .collect(&s, &on_consent, RecipientScope::only(acme.clone()))
        .unwrap();
    assert!(matches!(l.authorize(&li, &acme), Err(Denied::NoConsent { .. })));
    let all = ImpactQuery::since(Timestamp::EPOCH);
    assert!(l.impact(&all).unwrap().unlawful.is_empty());
    let r = l.impact(&all.assume(Hypothesis::WithdrawalsImmediate)).unwrap();
    assert_eq!(r.unlawful.len(), 1, "collection {}: {r:?}", again.seq);
    assert_eq!(r.unlawful[0].reason, Unlawful::NoConsent);
}

/// After a key is revoked, the impact report lists the uses that rested on an entry
/// signed by it from the revoked position on (a consent the thief may have forged),
/// and no other: the verdicts still take such entries as recorded.
#[test]
fn impact_lists_the_uses_that_rested_on_an_untrusted_entry() {
    let f = Fixture::new();
    let l = f.open(Recording::Every).unwrap();
    let acme = Recipient::partner("acme-ads").unwrap();
    let ids: Vec<Identifier<Advertising>> = (0..2)
        .map(|i| Identifier::<Advertising>::email(&email(i)).unwrap())
        .collect();
    let (a, b) = (subject("a"), subject("b"));
    l.collect(&a, &ids[0], RecipientScope::first_party()).unwrap();
    l.collect(&b, &ids[1], RecipientScope::first_party()).unwrap();
    l.grant::<Advertising>(&a, RecipientScope::all_partners(), None)
        .unwrap();
    // From here on the key is taken to be stolen: b's grant may be forged.
    let forged = l
        .grant::<Advertising>(&b, RecipientScope::all_partners(), None)
        .unwrap();
    f.tick(1);
    for id in &ids {
        l.authorize(id, &acme).unwrap();
    }
    let old = l.verifying_key().unwrap();
    l.rotate_key(SigningKey::generate()).unwrap();
    let revoked = l.revoke_key(old, forged.seq).unwrap();
    let report = l.impact(&ImpactQuery::since(Timestamp::EPOCH)).unwrap();
    assert_eq!(report.records, 2);
    assert!(report.unlawful.is_empty());
    assert_eq!(report.untrusted.len(), 1, "{:?}", report.untrusted);
    let u = &report.untrusted[0];
    assert_eq!(u.record.subject(), &b);
    assert_eq!(u.entry, forged.seq);
    assert_eq!((u.range.from, u.range.revoked_by), (forged.seq, revoked.seq));
    assert_eq!(l.verify().unwrap().untrusted, vec![u.range]);
}
