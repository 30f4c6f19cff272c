//! The private copies `Inspector` reads from: one left by a killed process is removed
//! by the next inspection, a live one is not. Its own test binary, so that no other
//! test's inspections come and go in the temporary directory meanwhile.
#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests")]

use consent_ledger::{Inspector, Ledger, PseudonymKey, RecipientScope, Security, SigningKey, SubjectId};

fn ledger(dir: &std::path::Path) {
    let l = Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap();
    let id = consent_ledger::Identifier::<Security>::phone("+15550100001").unwrap();
    l.collect(
        &SubjectId::new("acct-1").unwrap(),
        &id,
        RecipientScope::first_party(),
    )
    .unwrap();
}

/// A process killed while it inspected (Ctrl-C during `ledger_audit verify`, say) left
/// its private copy of the database, subject ids in clear, in the temporary directory
/// for good (found by a review). Inspecting now removes every copy whose owner is gone;
/// a live copy, and a directory that is not a copy of ours, are left alone.
#[test]
fn an_abandoned_private_copy_is_removed_by_the_next_inspection() {
    let dir = tempfile::tempdir().unwrap();
    ledger(dir.path());
    let tmp = std::env::temp_dir();
    let unique = format!(
        "{}-{}",
        std::process::id(),
        dir.path().file_name().unwrap().to_string_lossy()
    );
    // What a killed inspection leaves: the copy, with its owner file unlocked.
    let abandoned = tmp.join(format!("consent-ledger-inspect-abandoned-{unique}"));
    std::fs::create_dir(&abandoned).unwrap();
    std::fs::write(abandoned.join("owner"), b"").unwrap();
    std::fs::write(abandoned.join("db"), b"acct-1 in clear").unwrap();
    // Not a copy: no owner file.
    let other = tmp.join(format!("consent-ledger-inspect-other-{unique}"));
    std::fs::create_dir(&other).unwrap();
    let live = Inspector::open(dir.path()).unwrap();
    assert!(!abandoned.exists(), "the abandoned copy is still there");
    assert!(other.exists());
    // The live inspection's copy survives another inspection.
    let copies = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(&tmp)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("consent-ledger-inspect-")
            })
            .collect()
    };
    let live_copies: Vec<_> = copies()
        .into_iter()
        .filter(|p| p.join("owner").exists())
        .collect();
    assert!(!live_copies.is_empty());
    let second = Inspector::open(dir.path()).unwrap();
    for p in &live_copies {
        assert!(p.exists(), "a live copy was removed: {}", p.display());
    }
    assert_eq!(live.verify().unwrap().entries, second.verify().unwrap().entries);
    std::fs::remove_dir(&other).unwrap();
}
