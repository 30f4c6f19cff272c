//! An incident, replayed: for three hours a release of the sign-up form recorded the
//! phone number people gave for two-factor authentication as collected for
//! advertising too, with the consent box pre-ticked. Ad matching ran every hour with
//! decision recording on. After the fix, the operator asks the ledger who was
//! affected, by which uses, and under which consent entries.
//!
//! Run with `cargo run --example incident_report`.

use std::collections::BTreeMap;
use std::time::Duration;

use consent_ledger::{
    Actor, Advertising, Clock, Durability, Hypothesis, Identifier, ImpactQuery, ImpactReport, Ledger,
    ManualClock, Name, PseudonymKey, Recipient, RecipientScope, Recording, Security, SigningKey, SubjectId,
    Timestamp,
};

type Error = Box<dyn std::error::Error>;

const HOUR: Duration = Duration::from_secs(3600);
/// 2026-03-02 08:00 UTC.
const START: u64 = 1_772_438_400_000;

fn phone(i: u32) -> String {
    format!("+1 555 01{:02} {:04}", i / 10_000, i % 10_000)
}

fn email(i: u32) -> String {
    format!("person{i}@example.org")
}

fn main() -> Result<(), Error> {
    let dir = tempfile::tempdir()?;
    let clock = ManualClock::new(Timestamp::from_millis(START));
    let ledger = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::GroupCommit)
        .clock(clock.clone())
        .record_decisions(Recording::Every)
        .open()?;
    let (acme, bright) = (
        Recipient::partner("acme-ads")?,
        Recipient::partner("brightreach")?,
    );
    let form = Actor::Operator(Name::new("signup-form v41")?);

    // 08:00: 400 accounts. Every one gave a phone for 2FA; every third also opted in
    // to ads with their email.
    let mut next = 0u32;
    let mut signup = |ledger: &Ledger, buggy: bool| -> Result<(), Error> {
        let i = next;
        next += 1;
        let s = SubjectId::new(&format!("acct-{i:05}"))?;
        let two_fa = Identifier::<Security>::phone(&phone(i))?;
        ledger.collect(&s, &two_fa, RecipientScope::first_party())?;
        if buggy {
            // The bug: the same number, recorded for advertising, box pre-ticked.
            let ad = Identifier::<Advertising>::phone(&phone(i))?;
            ledger.collect_as(form.clone(), &s, &ad, RecipientScope::all_partners())?;
            ledger.grant_as::<Advertising>(form.clone(), &s, RecipientScope::all_partners(), None)?;
        } else if i.is_multiple_of(3) {
            let ad = Identifier::<Advertising>::email(&email(i))?;
            ledger.collect(&s, &ad, RecipientScope::all_partners())?;
            ledger.grant::<Advertising>(&s, RecipientScope::all_partners(), None)?;
        }
        Ok(())
    };
    for _ in 0..400 {
        signup(&ledger, false)?;
    }

    // Advertisers upload their customer lists: emails and phone numbers, including
    // many of our users' 2FA numbers.
    let upload: Vec<String> = (0..600).flat_map(|i| [email(i), phone(i)]).collect();
    let match_round = |ledger: &Ledger, partner: &Recipient| -> u64 {
        let (_, counts) = ledger.audience::<Advertising>(partner).collect(upload.iter());
        counts.matched
    };

    clock.advance(HOUR);
    let bad_from = clock.now();
    // 09:00 to 12:00: the bad release. 40 sign-ups an hour; matching every hour.
    for partner in [&acme, &bright, &acme] {
        for _ in 0..40 {
            signup(&ledger, true)?;
        }
        clock.advance(Duration::from_secs(1800));
        let matched = match_round(&ledger, partner);
        println!("{}  match for {partner}: {matched} subjects", clock.now());
        clock.advance(Duration::from_secs(1800));
    }
    let bad_until = clock.now();
    println!("{bad_until}  the bug is found and the release rolled back\n");
    ledger.sync()?;

    // The report. First: what was used, as recorded.
    let window = ImpactQuery::between(bad_from, bad_until).purpose::<Advertising>();
    let plain = ledger.impact(&window)?;
    println!("Uses for advertising between {bad_from} and {bad_until}, as recorded:");
    print_summary(&plain);

    // Then the blast radius under the two hypotheses that describe the bug.
    let q = window
        .clone()
        .assume(Hypothesis::never_consented::<Security, Advertising>())
        .assume(Hypothesis::GrantsVoidBetween {
            from: bad_from,
            until: Some(bad_until),
        });
    let report = ledger.impact(&q)?;
    println!(
        "\nUnder \"numbers given for 2FA were never consented for ads\" and \"grants made \
         during the release are void\":"
    );
    println!(
        "  {} of those uses had no valid consent, affecting {} subjects.",
        report.unlawful_uses,
        report.unlawful_subjects.len()
    );
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut per_partner: BTreeMap<String, u64> = BTreeMap::new();
    for u in &report.unlawful {
        *reasons.entry(u.reason.to_string()).or_default() += u.uses;
        *per_partner.entry(u.record.recipient().to_string()).or_default() += u.uses;
    }
    for (reason, n) in &reasons {
        println!("  reason {reason}: {n} uses");
    }
    for (partner, n) in &per_partner {
        println!("  sent to {partner}: {n} uses");
    }
    println!("  first affected subjects, with the entries each use rested on:");
    for u in report.unlawful.iter().take(5) {
        let r = &u.record;
        println!(
            "    {} ({} collected at entry {}, consent entry {}) -> {} at {}",
            r.subject(),
            u.kind.map_or_else(|| "identifier".to_string(), |k| k.to_string()),
            r.collected_at(),
            r.allowed_by(),
            r.recipient(),
            r.times().0
        );
    }
    // Sanity: the users who opted in with their email were not caught.
    assert!(report
        .unlawful_subjects
        .iter()
        .all(|s| s.as_str() >= "acct-00400"));
    assert_eq!(report.unlawful_subjects.len(), 120);
    println!(
        "\nNo identifier value appears above: subjects are the application's own ids, \
         identifiers are named by their collection entry."
    );
    Ok(())
}

fn print_summary(r: &ImpactReport) {
    println!(
        "  {} uses in {} records, {} subjects, {} identifiers",
        r.uses,
        r.records,
        r.subjects.len(),
        r.identifiers.len()
    );
    for (recipient, n) in &r.by_recipient {
        println!("  {recipient}: {n} uses");
    }
    println!("  without valid consent as recorded: {}", r.unlawful_uses);
}
