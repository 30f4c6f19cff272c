//! Tailored audiences: an advertiser uploads a million phone numbers and emails; only
//! people who gave that identifier for advertising, and whose consent covers this
//! advertiser right now, are matched. Numbers given for two-factor authentication
//! never are.
//!
//! Run with `cargo run --release --example tailored_audiences`: the crate's own code
//! (normalizing, deciding, building the state) runs unoptimized in a debug build, and
//! the times printed are meant to be those of a release build (the dependencies are
//! optimized in both). `ACCOUNTS` (at least 5) and `UPLOAD` override the sizes.

use std::collections::HashMap;
use std::time::Instant;

use consent_ledger::*;

/// What account `i` gave, and for what.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Account {
    /// A phone number for two-factor authentication only.
    TwoFactorOnly,
    /// An email for advertising, with consent for all partners.
    AdsConsented,
    /// An email for advertising, consent later withdrawn.
    AdsWithdrawn,
    /// An email for advertising, consent never given.
    AdsNoConsent,
    /// A phone number for 2FA, and the same number for advertising with consent.
    PhoneBoth,
}

fn account(i: u64) -> Account {
    match i % 10 {
        0..=3 => Account::TwoFactorOnly,
        4..=6 => Account::AdsConsented,
        7 => Account::AdsWithdrawn,
        8 => Account::AdsNoConsent,
        _ => Account::PhoneBoth,
    }
}

fn uses_phone(a: Account) -> bool {
    matches!(a, Account::TwoFactorOnly | Account::PhoneBoth)
}

/// The account's identifier, in its canonical form.
fn identifier(i: u64) -> String {
    if uses_phone(account(i)) {
        format!("+1555{i:07}")
    } else {
        format!("member{i}@example.com")
    }
}

/// Row `r` of the advertiser's list: a tenth are our accounts' identifiers (spelled
/// the way customers typed them), a few are malformed, the rest are strangers.
fn upload_row(r: u64, accounts: u64) -> String {
    let i = r.wrapping_mul(7_919) % (accounts * 10);
    if i < accounts {
        if uses_phone(account(i)) {
            format!("+1 (555) {:03}-{:04}", i / 10_000, i % 10_000)
        } else {
            format!("  member{i}@EXAMPLE.com ")
        }
    } else if r.is_multiple_of(97) {
        format!("call me maybe {r}")
    } else if r.is_multiple_of(2) {
        format!("+44 20 {:04} {:04}", (r / 10_000) % 10_000, r % 10_000)
    } else {
        format!("customer{r}@shop.example")
    }
}

/// The canonical form of an uploaded row as a naive matcher would compute it.
fn naive_canonical(raw: &str) -> String {
    let t = raw.trim();
    if t.contains('@') {
        t.to_lowercase()
    } else {
        t.chars().filter(|c| *c == '+' || c.is_ascii_digit()).collect()
    }
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let accounts = env_or("ACCOUNTS", 100_000);
    let upload = env_or("UPLOAD", 1_000_000);
    if accounts < 5 {
        // Account 4 withdraws below, and the upload spreads over ten times the accounts.
        eprintln!("ACCOUNTS must be at least 5");
        std::process::exit(2);
    }
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()?;

    // ---- the platform's accounts --------------------------------------------------
    let start = Instant::now();
    let all = RecipientScope::all_partners();
    let mut by_kind: HashMap<Account, u64> = HashMap::new();
    for i in 0..accounts {
        let s = SubjectId::new(&format!("acct-{i}"))?;
        let a = account(i);
        *by_kind.entry(a).or_default() += 1;
        let raw = identifier(i);
        match a {
            Account::TwoFactorOnly => {
                ledger.collect(
                    &s,
                    &Identifier::<Security>::phone(&raw)?,
                    RecipientScope::first_party(),
                )?;
            }
            Account::PhoneBoth => {
                ledger.collect(
                    &s,
                    &Identifier::<Security>::phone(&raw)?,
                    RecipientScope::first_party(),
                )?;
                ledger.collect(&s, &Identifier::<Advertising>::phone(&raw)?, all.clone())?;
                ledger.grant::<Advertising>(&s, all.clone(), None)?;
            }
            Account::AdsConsented | Account::AdsWithdrawn | Account::AdsNoConsent => {
                ledger.collect(&s, &Identifier::<Advertising>::email(&raw)?, all.clone())?;
                if a != Account::AdsNoConsent {
                    ledger.grant::<Advertising>(&s, all.clone(), None)?;
                }
                if a == Account::AdsWithdrawn {
                    ledger.withdraw::<Advertising>(&s)?;
                }
            }
        }
    }
    ledger.sync()?;
    println!(
        "loaded {accounts} accounts ({} ledger entries) in {:.1?}, with Durability::Relaxed and one sync at the end",
        ledger.len(),
        start.elapsed()
    );
    println!(
        "  2FA-only phones {}, ads+consent emails {}, withdrawn {}, never consented {}, phone for 2FA and ads {}",
        by_kind.get(&Account::TwoFactorOnly).unwrap_or(&0),
        by_kind.get(&Account::AdsConsented).unwrap_or(&0),
        by_kind.get(&Account::AdsWithdrawn).unwrap_or(&0),
        by_kind.get(&Account::AdsNoConsent).unwrap_or(&0),
        by_kind.get(&Account::PhoneBoth).unwrap_or(&0),
    );

    // ---- the advertiser's upload, streamed (never held in memory) -----------------
    let advertiser = Recipient::partner("acme-ads")?;
    let rows = (0..upload).map(|r| upload_row(r, accounts));
    let start = Instant::now();
    let mut matched_2fa_only = 0u64;
    let mut first = None;
    let counts = ledger.audience::<Advertising>(&advertiser).run(rows, |m| {
        let i: u64 = m
            .subject()
            .as_str()
            .trim_start_matches("acct-")
            .parse()
            .unwrap_or(0);
        if account(i) == Account::TwoFactorOnly {
            matched_2fa_only += 1;
        }
        first.get_or_insert_with(|| m.clone());
    });
    let took = start.elapsed();
    println!(
        "\nmatched an upload of {upload} identifiers for {advertiser} in {took:.2?} ({:.0} identifiers/s)",
        upload as f64 / took.as_secs_f64()
    );
    println!("  for the platform's log: {counts}");
    // The advertiser sees only the audience's size: the other counts would tell it
    // which of its numbers are accounts' 2FA numbers, or whose holder withdrew.
    println!("  for {advertiser}: {}", counts.for_uploader(100));
    if let Some(m) = first {
        let e = m.evidence();
        println!(
            "  e.g. row {} -> {} ({}), allowed by entry {}, collected at entry {}, decided at position {}",
            m.row(),
            m.subject(),
            m.kind(),
            e.allowed_by(),
            e.collected_at(),
            e.position()
        );
    }
    println!("  2FA-only numbers matched: {matched_2fa_only}");
    assert_eq!(matched_2fa_only, 0);

    // ---- what a purpose-blind matcher would have done -----------------------------
    // "Any account with that number or email": the platform's own account table.
    let table: HashMap<String, Account> = (0..accounts).map(|i| (identifier(i), account(i))).collect();
    let mut blind: HashMap<Account, u64> = HashMap::new();
    let mut blind_seen = std::collections::HashSet::new();
    for r in 0..upload {
        let c = naive_canonical(&upload_row(r, accounts));
        if let Some(a) = table.get(&c) {
            if blind_seen.insert(c) {
                *blind.entry(*a).or_default() += 1;
            }
        }
    }
    let blind_total: u64 = blind.values().sum();
    println!(
        "\na purpose-blind matcher (any account with that identifier) would have matched {blind_total} accounts, \
         including {} phone numbers given only for two-factor authentication, {} people who withdrew consent \
         and {} who never gave it; the ledger matched {}",
        blind.get(&Account::TwoFactorOnly).unwrap_or(&0),
        blind.get(&Account::AdsWithdrawn).unwrap_or(&0),
        blind.get(&Account::AdsNoConsent).unwrap_or(&0),
        counts.matched
    );
    drop(table);

    // ---- a withdrawal takes effect for the very next match ------------------------
    // Account 4 gave its email for advertising and consented (see `account`).
    let i = 4;
    let s = SubjectId::new(&format!("acct-{i}"))?;
    ledger.withdraw::<Advertising>(&s)?;
    let again = ledger
        .audience::<Advertising>(&advertiser)
        .run((0..upload).map(|r| upload_row(r, accounts)), |_| {});
    println!(
        "\nafter {s} withdrew: matched {} (was {}), withdrawn denials {} (was {})",
        again.matched, counts.matched, again.denied.withdrawn, counts.denied.withdrawn
    );

    println!(
        "\npeak resident memory (VmHWM): {}",
        peak_rss().unwrap_or_else(|| "unknown".to_owned())
    );
    Ok(())
}

/// The process's peak resident set size, from /proc/self/status (Linux).
fn peak_rss() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_owned())
}
