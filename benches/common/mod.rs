//! Shared bench fixtures: ledgers of synthetic accounts, built once and kept under
//! `CARGO_TARGET_TMPDIR` so later bench runs (and other bench binaries) reuse them.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    reason = "bench support"
)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use consent_ledger::*;

/// Bump when the fixture profile or the ledger format changes.
const FIXTURE_VERSION: u32 = 3;

pub fn signing_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

pub fn pseudonym_key() -> PseudonymKey {
    PseudonymKey::from_bytes([22; 32])
}

/// Criterion settings for a shared 2-core machine: few samples, short measurements.
pub fn criterion() -> criterion::Criterion {
    criterion::Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2))
        .without_plots()
}

/// What subject `i` of a fixture holds.
///
/// - `i % 4 == 0`: an email collected for advertising (all partners) and a grant for it:
///   matchable;
/// - `i % 4 == 1`: an email collected for advertising, no consent given;
/// - `i % 4 == 2 | 3`: a phone number collected for two-factor authentication only.
///
/// 1.25 entries per subject (plus the genesis entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    AdsConsented,
    AdsNoConsent,
    TwoFactorOnly,
}

pub fn profile(i: u64) -> Profile {
    match i % 4 {
        0 => Profile::AdsConsented,
        1 => Profile::AdsNoConsent,
        _ => Profile::TwoFactorOnly,
    }
}

pub fn subject(i: u64) -> SubjectId {
    SubjectId::new(&format!("acct-{i:08}")).unwrap()
}

/// The raw identifier subject `i` gave (as an uploader might have it too).
pub fn raw_identifier(i: u64) -> String {
    match profile(i) {
        Profile::TwoFactorOnly => format!("+1 555 {:03} {:04}", (i / 10_000) % 1000, i % 10_000),
        _ => format!("user{i}@example.com"),
    }
}

/// A raw identifier nobody in any fixture holds.
pub fn unknown_identifier(i: u64) -> String {
    if i.is_multiple_of(2) {
        format!("+44 20 {:04} {:04}", (i / 10_000) % 10_000, i % 10_000)
    } else {
        format!("stranger{i}@elsewhere.org")
    }
}

pub fn entries_for(subjects: u64) -> u64 {
    1 + subjects + subjects.div_ceil(4)
}

/// The fixture ledger directory for `subjects` subjects, built if missing.
pub fn fixture(subjects: u64) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("fixtures")
        .join(format!("v{FIXTURE_VERSION}-{subjects}"));
    let done = dir.join("complete");
    if done.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ledger_dir = dir.join("ledger");
    eprintln!(
        "building fixture: {subjects} subjects ({} entries) ...",
        entries_for(subjects)
    );
    let start = Instant::now();
    let ledger = Ledger::builder(&ledger_dir)
        .signing_key(signing_key())
        .pseudonym_key(pseudonym_key())
        .durability(Durability::Relaxed)
        .open()
        .unwrap();
    for i in 0..subjects {
        load_subject(&ledger, i);
    }
    ledger.sync().unwrap();
    assert_eq!(ledger.len(), entries_for(subjects));
    drop(ledger);
    std::fs::write(&done, b"ok").unwrap();
    eprintln!("built in {:.1?}", start.elapsed());
    dir
}

pub fn ledger_dir(subjects: u64) -> PathBuf {
    fixture(subjects).join("ledger")
}

pub fn load_subject(ledger: &Ledger, i: u64) {
    let s = subject(i);
    let raw = raw_identifier(i);
    match profile(i) {
        Profile::AdsConsented | Profile::AdsNoConsent => {
            let id = Identifier::<Advertising>::email(&raw).unwrap();
            ledger.collect(&s, &id, RecipientScope::all_partners()).unwrap();
            if profile(i) == Profile::AdsConsented {
                ledger
                    .grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                    .unwrap();
            }
        }
        Profile::TwoFactorOnly => {
            let id = Identifier::<Security>::phone(&raw).unwrap();
            ledger.collect(&s, &id, RecipientScope::first_party()).unwrap();
        }
    }
}

pub fn open(subjects: u64) -> Ledger {
    Ledger::builder(ledger_dir(subjects))
        .signing_key(signing_key())
        .pseudonym_key(pseudonym_key())
        .durability(Durability::Relaxed)
        .open()
        .unwrap()
}

/// Sizes for growth figures; `BENCH_SIZES=10000,100000` overrides.
pub fn sizes() -> Vec<u64> {
    match std::env::var("BENCH_SIZES") {
        Ok(s) => s.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![10_000, 100_000, 1_000_000],
    }
}

pub fn label(n: u64) -> String {
    match n {
        n if n >= 1_000_000 && n % 1_000_000 == 0 => format!("{}M", n / 1_000_000),
        n if n >= 1_000 && n % 1_000 == 0 => format!("{}k", n / 1_000),
        n => n.to_string(),
    }
}

/// The median of some timings.
pub fn median(mut v: Vec<Duration>) -> Duration {
    v.sort_unstable();
    v[v.len() / 2]
}

/// Whether a criterion-style name filter given on the command line (if any) selects
/// `name`: for the rounds a bench runs outside criterion.
pub fn wanted(name: &str) -> bool {
    let mut filters = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .peekable();
    filters.peek().is_none() || filters.any(|f| name.contains(&f))
}
