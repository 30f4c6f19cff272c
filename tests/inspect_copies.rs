//! The private copies `Inspector` reads from, in a directory of their own in the
//! temporary directory: one left by a killed process is removed by the next inspection;
//! a live one, another user's or a planted one is not, and concurrent inspections do
//! not remove each other's. Each test points `TMPDIR` at a private directory, one test
//! at a time.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use consent_ledger::{Inspector, Ledger, PseudonymKey, RecipientScope, Security, SigningKey, SubjectId};
use std::time::Duration;

/// Tests that point TMPDIR at a private directory run one at a time.
static TMPDIR_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

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
///
/// Copies are made in a directory of this user's own in the temporary directory
/// (`consent-ledger-inspect.<uid>`), and only that directory is listed for abandoned
/// ones. Copies of the old layout (`consent-ledger-inspect-*`, directly in the temporary
/// directory) are looked for once, when that directory is made.
#[test]
fn an_abandoned_private_copy_is_removed_by_the_next_inspection() {
    let _serial = TMPDIR_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    ledger(dir.path());
    // A private temporary directory, so that no other process's copies come and go.
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = base.path().to_path_buf();
    std::env::set_var("TMPDIR", &tmp);
    assert_eq!(std::env::temp_dir(), tmp);
    // What a killed inspection leaves: the copy, with its owner file unlocked.
    let abandoned = |at: &std::path::Path| {
        std::fs::create_dir(at).unwrap();
        std::fs::write(at.join("owner"), b"").unwrap();
        std::fs::write(at.join("db"), b"acct-1 in clear").unwrap();
    };
    // One of the old layout, and a directory of that name that is not a copy (no
    // owner file).
    let old = tmp.join("consent-ledger-inspect-abandoned");
    abandoned(&old);
    let other = tmp.join("consent-ledger-inspect-other");
    std::fs::create_dir(&other).unwrap();
    let live = Inspector::open(dir.path()).unwrap();
    assert!(!old.exists(), "the abandoned copy is still there");
    assert!(other.exists());
    // The directory of copies, and nothing else, was made.
    let made: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| *p != other)
        .collect();
    let [copies] = &made[..] else {
        panic!("made in the temporary directory: {made:?}");
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::symlink_metadata(copies).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700);
        assert_eq!(
            copies.file_name().unwrap().to_string_lossy(),
            format!("consent-ledger-inspect.{}", meta.uid())
        );
    }
    let listed = || -> Vec<std::path::PathBuf> {
        std::fs::read_dir(copies)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .collect()
    };
    let live_copies = listed();
    assert_eq!(live_copies.len(), 1);
    // Abandoned since: one in the directory of copies is removed by the next
    // inspection; one of the old layout is not looked for again.
    let since = copies.join("abandoned");
    abandoned(&since);
    let old_since = tmp.join("consent-ledger-inspect-abandoned-since");
    abandoned(&old_since);
    // The live inspection's copy survives another inspection.
    let second = Inspector::open(dir.path()).unwrap();
    for p in &live_copies {
        assert!(p.exists(), "a live copy was removed: {}", p.display());
    }
    assert!(!since.exists(), "the abandoned copy is still there");
    assert!(old_since.exists());
    assert_eq!(listed().len(), 2);
    assert_eq!(live.verify().unwrap().entries, second.verify().unwrap().entries);
    drop((live, second));
    assert!(listed().is_empty());
    std::fs::remove_dir(&other).unwrap();
}

/// A directory named like a private copy, holding a FIFO called `owner`, does not stop
/// inspections (found by a review: the clean-up opened `owner`, which blocks on a FIFO
/// until a writer comes; in a shared /tmp any local user could plant one). Only this
/// user's directories are looked into, and only a regular `owner` file is opened.
#[cfg(unix)]
#[test]
fn a_fifo_named_owner_in_the_temp_dir_does_not_hang_inspections() {
    let _serial = TMPDIR_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    // A private temporary directory for this process (never the shared /tmp).
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = base.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let ledger_dir = base.path().join("ledger");
    ledger(&ledger_dir);
    std::env::set_var("TMPDIR", &tmp);
    assert_eq!(std::env::temp_dir(), tmp);
    // What a hostile local user plants (in a sticky /tmp they own it; readable by all).
    let planted = tmp.join("consent-ledger-inspect-planted");
    std::fs::create_dir(&planted).unwrap();
    let fifo = planted.join("owner");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());

    let (tx, rx) = std::sync::mpsc::channel();
    let d = ledger_dir.clone();
    std::thread::spawn(move || {
        let r = Inspector::open(&d).map(|_| ());
        let _ = tx.send(r.is_ok());
    });
    let outcome = rx.recv_timeout(Duration::from_secs(10));
    if outcome.is_err() {
        // Unblock the inspection thread (a writer opens the FIFO) before failing.
        let _w = std::fs::OpenOptions::new().write(true).open(&fifo);
        let _ = rx.recv_timeout(Duration::from_secs(10));
    }
    assert!(
        outcome.is_ok(),
        "Inspector::open did not return within 10 s: blocked opening the planted FIFO"
    );
}

/// Two inspections at once in one process (of two ledgers): one may find the other's
/// copy after its `owner` file was created but before it was locked, lock it, and remove
/// that live copy; the other's inspection then fails (its lock refused, or its copy gone
/// under it).
#[test]
fn concurrent_inspections_of_different_ledgers_do_not_fail() {
    let _serial = TMPDIR_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    let base = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let tmp = base.path().join("tmp-race");
    std::fs::create_dir(&tmp).unwrap();
    let dirs: Vec<_> = (0..4)
        .map(|i| {
            let d = base.path().join(format!("ledger{i}"));
            ledger(&d);
            d
        })
        .collect();
    std::env::set_var("TMPDIR", &tmp);
    let failures = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for d in &dirs {
            let failures = &failures;
            s.spawn(move || {
                for _ in 0..400 {
                    if let Err(e) = Inspector::open(d) {
                        failures
                            .lock()
                            .unwrap()
                            .push(format!("{e}: {:?}", std::error::Error::source(&e)));
                    }
                }
            });
        }
    });
    let f = failures.into_inner().unwrap();
    assert!(
        f.is_empty(),
        "{} of 1600 inspections failed, first: {}",
        f.len(),
        f[0]
    );
}
