//! State snapshots: written on close, used on open, and never trusted beyond what they
//! prove: a damaged, foreign or stale snapshot changes no decision, only how much of the
//! log is replayed.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;
mod snapshot_util;

use std::path::Path;

use snapshot_util::{email, open, subject, EVERY_CLOSE, NEVER_WRITE};

use consent_ledger::{
    Actor, Advertising, Denied, Identifier, IntegrityError, IntegrityProblem, Ledger, OpenError,
    PseudonymKey, Recipient, RecipientScope, Security, SigningKey, Snapshots,
};

/// Subjects `from..to` give an email for ads and a 2FA phone; even ones consent.
fn populate(l: &Ledger, from: u32, to: u32) {
    for i in from..to {
        let s = subject(i);
        l.collect(&s, &email(i), RecipientScope::all_partners()).unwrap();
        let phone = Identifier::<Security>::phone(&format!("+1555{i:07}")).unwrap();
        l.collect(&s, &phone, RecipientScope::first_party()).unwrap();
        if i % 2 == 0 {
            l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
                .unwrap();
        }
    }
}

/// Every decision about subjects `0..n` for a partner, as text.
fn decisions(l: &Ledger, n: u32) -> Vec<String> {
    let acme = Recipient::partner("acme").unwrap();
    (0..n + 2)
        .map(|i| match l.authorize(&email(i), &acme) {
            Ok(u) => format!("allowed by {}", u.evidence().allowed_by()),
            Err(d) => format!("{d:?}"),
        })
        .collect()
}

/// A closed ledger of `n` subjects, with a snapshot written when it was closed, and its
/// decisions.
struct Closed {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    decisions: Vec<String>,
}

fn closed(n: u32, snapshots: Snapshots) -> Closed {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let l = open(dir.path(), &key, &pk, snapshots);
    populate(&l, 0, n);
    let decisions = decisions(&l, n);
    drop(l);
    Closed {
        dir,
        key,
        pk,
        decisions,
    }
}

#[test]
fn a_snapshot_is_written_on_close_and_reopening_decides_the_same() {
    let Closed {
        dir,
        key,
        pk,
        decisions: before,
    } = closed(40, EVERY_CLOSE);
    assert!(dir.path().join("state").is_file());
    let l = open(dir.path(), &key, &pk, EVERY_CLOSE);
    assert_eq!(decisions(&l, 40), before);
    // More after the snapshot, not closed with a new one: a tail is replayed.
    populate(&l, 40, 50);
    l.withdraw::<Advertising>(&subject(2)).unwrap();
    let later = decisions(&l, 50);
    drop(l);
    let l = open(
        dir.path(),
        &key,
        &pk,
        Snapshots::OnClose {
            min_new_entries: 1_000,
        },
    );
    assert_eq!(decisions(&l, 50), later);
    assert!(matches!(
        l.authorize(&email(2), &Recipient::partner("acme").unwrap()),
        Err(Denied::Withdrawn { .. })
    ));
    l.verify().unwrap();
}

#[test]
fn a_damaged_or_foreign_snapshot_is_ignored_and_decides_nothing() {
    let Closed {
        dir,
        key,
        pk,
        decisions: expected,
    } = closed(30, EVERY_CLOSE);
    let state = dir.path().join("state");
    let good = std::fs::read(&state).unwrap();

    // Another ledger under the same keys, in another state: its snapshot is authentic
    // but belongs to another log.
    let other = tempfile::tempdir().unwrap();
    let o = open(other.path(), &key, &pk, EVERY_CLOSE);
    populate(&o, 0, 30);
    for i in 0..30 {
        o.withdraw::<Advertising>(&subject(i)).unwrap();
    }
    drop(o);
    let foreign = std::fs::read(other.path().join("state")).unwrap();

    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"not a snapshot".to_vec()),
        ("empty", Vec::new()),
        ("truncated", good[..good.len() - 1].to_vec()),
        ("one bit flipped", flipped),
        ("another ledger's", foreign),
    ];
    // And a bit flipped at 100 places spread over the file, header to last byte.
    let mut cases = cases;
    let step = (good.len() / 100).max(1);
    for (n, at) in (0..good.len()).step_by(step).enumerate() {
        let mut b = good.clone();
        b[at] ^= 1 << (n % 8);
        cases.push(("a bit flipped somewhere", b));
    }
    for (what, bytes) in cases {
        std::fs::write(&state, &bytes).unwrap();
        // Not closed with a new snapshot, so each case starts from its bytes.
        let l = open(dir.path(), &key, &pk, NEVER_WRITE);
        assert_eq!(decisions(&l, 30), expected, "{what} snapshot");
        // Unusable, so destroyed: a damaged one may still hold lookups (an erasure
        // killed while zeroing it leaves its start zeroed and the rest intact).
        assert!(!state.exists(), "{what} snapshot left in place");
    }
}

#[test]
fn turning_snapshots_off_destroys_the_one_left_behind() {
    let Closed { dir, key, pk, .. } = closed(10, EVERY_CLOSE);
    assert!(dir.path().join("state").is_file());
    let l = open(dir.path(), &key, &pk, Snapshots::Off);
    assert!(!dir.path().join("state").exists());
    populate(&l, 10, 20);
    drop(l);
    assert!(
        !dir.path().join("state").exists(),
        "closing with snapshots off wrote one"
    );
}

#[test]
fn a_small_ledger_writes_no_snapshot_by_default() {
    let c = closed(10, Snapshots::default());
    assert!(!c.dir.path().join("state").exists());
}

/// The rollback the snapshot can catch: a withdrawal is recorded and the ledger closed
/// (its snapshot covers the withdrawal); then the log is cut back to before it, as
/// restoring an older copy of the database, or a careless "fix", would. Replaying the
/// shorter log would quietly make the consent valid again; opening refuses instead,
/// naming the first missing position. Without the snapshot the cut cannot be seen
/// (only a trusted checkpoint could), and the shorter log opens.
#[test]
fn a_log_cut_below_the_last_snapshot_fails_open() {
    let c = closed(20, EVERY_CLOSE);
    let acme = Recipient::partner("acme").unwrap();
    let l = open(c.dir.path(), &c.key, &c.pk, EVERY_CLOSE);
    assert!(l.authorize(&email(0), &acme).is_ok());
    let withdrawal = l.withdraw::<Advertising>(&subject(0)).unwrap().seq;
    let len = l.len();
    assert_eq!(withdrawal, len - 1);
    drop(l);
    {
        let db = sled_util::open(c.dir.path());
        let entries = db.open_tree("entries").unwrap();
        entries.remove(withdrawal.to_be_bytes()).unwrap();
        db.flush().unwrap();
    }
    let e = refused_open(c.dir.path(), &c);
    assert_eq!(
        e,
        IntegrityError {
            position: withdrawal,
            problem: IntegrityProblem::ShorterThanSnapshot { snapshot_len: len },
        }
    );
    assert!(e.to_string().contains("state snapshot"), "{e}");
    // Nothing was changed by the refusal; removing the snapshot and the head record
    // (which notices the cut too) is the documented way to open the shorter log
    // anyway, and then the withdrawal is gone.
    assert!(c.dir.path().join("state").exists());
    std::fs::remove_file(c.dir.path().join("state")).unwrap();
    let e = refused_open(c.dir.path(), &c);
    assert_eq!(e.problem, IntegrityProblem::ShorterThanRecorded { recorded: len });
    std::fs::remove_file(c.dir.path().join("head")).unwrap();
    let l = open(c.dir.path(), &c.key, &c.pk, NEVER_WRITE);
    assert_eq!(l.len(), withdrawal);
    assert!(l.authorize(&email(0), &acme).is_ok());
}

/// The integrity error opening the ledger in `dir` with `c`'s keys must give.
fn refused_open(dir: &Path, c: &Closed) -> IntegrityError {
    let opened = Ledger::builder(dir)
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .open();
    match opened {
        Err(OpenError::Integrity(e)) => e,
        other => panic!("opened, or failed otherwise: {other:?}"),
    }
}

/// The other rollback the snapshot can catch: an older copy of the database is
/// restored and written to since, so the log is as long as (or longer than) the last
/// snapshot, holds together, but is another history: the withdrawal the snapshot covers
/// was replaced by another entry. Opening refuses, naming the last entry the snapshot
/// covers; a damaged log is still reported as damaged; removing `state` opens the log as
/// it is.
#[test]
fn a_log_replaced_below_the_last_snapshot_fails_open() {
    for extra in [0u32, 3] {
        let c = closed(20, EVERY_CLOSE);
        let acme = Recipient::partner("acme").unwrap();
        let backup = tempfile::tempdir().unwrap();
        sled_util::copy_dir(c.dir.path(), backup.path());
        let l = open(c.dir.path(), &c.key, &c.pk, EVERY_CLOSE);
        let withdrawal = l.withdraw::<Advertising>(&subject(0)).unwrap().seq;
        let len = l.len();
        drop(l);
        let newer_snapshot = std::fs::read(c.dir.path().join("state")).unwrap();

        // The backup comes back and takes other changes: as many entries as the lost
        // ones (the log's length is the snapshot's), or more.
        std::fs::remove_dir_all(c.dir.path()).unwrap();
        sled_util::copy_dir(backup.path(), c.dir.path());
        let l = open(c.dir.path(), &c.key, &c.pk, NEVER_WRITE);
        l.withdraw::<Advertising>(&subject(1)).unwrap();
        for i in 0..extra {
            l.withdraw::<Advertising>(&subject(2 + i)).unwrap();
        }
        assert_eq!(l.len(), len + u64::from(extra));
        drop(l);
        std::fs::write(c.dir.path().join("state"), &newer_snapshot).unwrap();

        let e = refused_open(c.dir.path(), &c);
        assert_eq!(
            e,
            IntegrityError {
                position: withdrawal,
                problem: IntegrityProblem::DivergesFromSnapshot { snapshot_len: len },
            },
            "{extra} entries after"
        );
        assert!(e.to_string().contains("state snapshot"), "{e}");

        // A damaged log (a flipped byte in the entry the snapshot names) is reported as
        // damaged, not as replaced.
        let damaged = tempfile::tempdir().unwrap();
        sled_util::copy_dir(c.dir.path(), damaged.path());
        {
            let db = sled_util::open(damaged.path());
            let entries = db.open_tree("entries").unwrap();
            let mut bytes = entries.get(withdrawal.to_be_bytes()).unwrap().unwrap().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            entries.insert(withdrawal.to_be_bytes(), bytes).unwrap();
            db.flush().unwrap();
        }
        let e = refused_open(damaged.path(), &c);
        assert!(
            !matches!(e.problem, IntegrityProblem::DivergesFromSnapshot { .. }),
            "{e:?}"
        );

        // Nothing was changed by the refusal; without the snapshot the log opens as it
        // is, and the withdrawal it replaced is not in it.
        std::fs::remove_file(c.dir.path().join("state")).unwrap();
        let l = open(c.dir.path(), &c.key, &c.pk, NEVER_WRITE);
        assert_eq!(l.len(), len + u64::from(extra));
        assert!(l.authorize(&email(0), &acme).is_ok());
        assert!(l.authorize(&email(1), &acme).is_err());
    }
}

/// Every entry removed (the `entries` tree emptied, everything else kept): opening
/// refuses, rather than starting a new ledger over the old one's files.
#[test]
fn a_log_cut_to_nothing_fails_open() {
    let c = closed(20, EVERY_CLOSE);
    let acme = Recipient::partner("acme").unwrap();
    let l = open(c.dir.path(), &c.key, &c.pk, EVERY_CLOSE);
    assert!(l.authorize(&email(0), &acme).is_ok());
    let len = l.len();
    drop(l);
    {
        let db = sled_util::open(c.dir.path());
        db.open_tree("entries").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    let opened = Ledger::builder(c.dir.path())
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .open();
    match opened {
        Err(OpenError::Integrity(e)) => {
            assert!(matches!(e.problem, IntegrityProblem::LogEmptied), "{e:?}")
        }
        Ok(l) => panic!(
            "opened a log of {} entries although the snapshot covers {len}; ads for acct-0: {:?}",
            l.len(),
            l.authorize(&email(0), &acme).map(|_| ())
        ),
        Err(other) => panic!("{other:?}"),
    }
}

/// The same cut, opened with a trusted checkpoint: refused as emptied, and the refused
/// open writes nothing (no new genesis entry).
#[test]
fn a_log_cut_to_nothing_with_a_checkpoint_fails_open_and_writes_nothing() {
    let c = closed(5, EVERY_CLOSE);
    let l = open(c.dir.path(), &c.key, &c.pk, EVERY_CLOSE);
    l.sync().unwrap();
    let cp = l.checkpoint().unwrap().text().to_owned();
    drop(l);
    {
        let db = sled_util::open(c.dir.path());
        db.open_tree("entries").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    let opened = Ledger::builder(c.dir.path())
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .trusted_checkpoint(cp)
        .open();
    let err = opened.expect_err("opened");
    let db = sled_util::open(c.dir.path());
    let written = db.open_tree("entries").unwrap().len();
    drop(db);
    assert!(
        matches!(&err, OpenError::Integrity(e) if matches!(e.problem, IntegrityProblem::LogEmptied))
            && written == 0,
        "error {err:?}; entries written by the failed open: {written}"
    );
}

/// A failed open (here, a damaged head record) writes nothing: the state snapshot it
/// would have destroyed (snapshots off) is still there.
#[test]
fn a_failed_open_keeps_the_snapshot() {
    let c = closed(5, EVERY_CLOSE);
    assert!(c.dir.path().join("state").is_file());
    std::fs::write(c.dir.path().join("head"), [1u8, 2, 3]).unwrap();
    let opened = Ledger::builder(c.dir.path())
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .snapshots(Snapshots::Off)
        .open();
    assert!(matches!(opened, Err(OpenError::CorruptMetadata("head record"))));
    assert!(
        c.dir.path().join("state").is_file(),
        "the failed open destroyed the state snapshot"
    );
}

/// A creation that stopped after the format marker, before the genesis entry (nothing
/// else written yet), still opens as a new ledger.
#[test]
fn a_creation_stopped_before_the_genesis_entry_opens() {
    let c = closed(0, Snapshots::Off);
    {
        let db = sled_util::open(c.dir.path());
        db.open_tree("entries").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    // Creation stopped before the head record was written; maybe before the vault was.
    std::fs::remove_file(c.dir.path().join("head")).unwrap();
    std::fs::remove_file(c.dir.path().join("vault")).unwrap();
    let l = open(c.dir.path(), &c.key, &c.pk, Snapshots::Off);
    assert_eq!(l.len(), 1);
    l.verify().unwrap();
}

/// A used ledger whose vault file is gone does not open: a new empty vault would
/// unlink every identifier from its subject (every one unknown, every secret gone)
/// without a word. The open creates nothing.
#[test]
fn a_used_ledger_without_its_vault_fails_open() {
    let c = closed(5, Snapshots::Off);
    let vault = c.dir.path().join("vault");
    std::fs::remove_file(&vault).unwrap();
    let opened = Ledger::builder(c.dir.path())
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .open();
    assert!(
        matches!(opened, Err(OpenError::Storage(_))),
        "{:?}",
        opened.map(|l| l.len())
    );
    assert!(!vault.exists());
}

/// Nor does one whose vault file was emptied, or cut inside its header (found by a
/// review: it was taken for a new vault, given a fresh header, and every identifier was
/// unknown from then on). The open writes nothing.
#[test]
fn a_used_ledger_with_an_emptied_vault_fails_open() {
    for keep in [0usize, 10] {
        for snapshots in [Snapshots::Off, EVERY_CLOSE] {
            let c = closed(5, snapshots);
            let vault = c.dir.path().join("vault");
            let bytes = std::fs::read(&vault).unwrap();
            std::fs::write(&vault, &bytes[..keep]).unwrap();
            let opened = Ledger::builder(c.dir.path())
                .signing_key(c.key.clone())
                .pseudonym_key(c.pk.clone())
                .snapshots(snapshots)
                .open();
            assert!(
                matches!(opened, Err(OpenError::Storage(_))),
                "{keep} bytes, {snapshots:?}: {:?}",
                opened.map(|l| l.len())
            );
            assert_eq!(std::fs::read(&vault).unwrap(), &bytes[..keep]);
        }
    }
}

/// A vault needing repair (here a partial slot at its end, as a crash while it grew
/// leaves) is repaired only by an open that passes every check: one refused for a
/// wrong signing key (with a state snapshot or without), a damaged head record or a
/// log shorter than the head record says leaves the file as it was.
#[test]
fn a_failed_open_leaves_the_vault_unrepaired() {
    type Spoil = fn(&Path);
    let refusals: [(&str, Snapshots, bool, Spoil); 4] = [
        ("wrong signing key", Snapshots::Off, true, |_| {}),
        ("wrong signing key, with a snapshot", EVERY_CLOSE, true, |_| {}),
        ("damaged head record", Snapshots::Off, false, |dir| {
            std::fs::write(dir.join("head"), [1u8, 2, 3]).unwrap()
        }),
        ("log cut short", Snapshots::Off, false, |dir| {
            let db = sled_util::open(dir);
            let entries = db.open_tree("entries").unwrap();
            let (last, _) = entries.last().unwrap().unwrap();
            entries.remove(last).unwrap();
            db.flush().unwrap();
        }),
    ];
    for (what, snapshots, wrong_key, spoil) in refusals {
        let c = closed(5, snapshots);
        let vault = c.dir.path().join("vault");
        let mut bytes = std::fs::read(&vault).unwrap();
        bytes.extend_from_slice(&[7u8; 10]);
        std::fs::write(&vault, &bytes).unwrap();
        let (head, state) = (c.dir.path().join("head"), c.dir.path().join("state"));
        let kept = (std::fs::read(&head).unwrap(), std::fs::read(&state).ok());
        spoil(c.dir.path());
        let key = if wrong_key {
            SigningKey::generate()
        } else {
            c.key.clone()
        };
        let refused = Ledger::builder(c.dir.path())
            .signing_key(key)
            .pseudonym_key(c.pk.clone())
            .snapshots(snapshots)
            .open();
        assert!(refused.is_err(), "{what}: {:?}", refused.map(|l| l.len()));
        let after = std::fs::read(&vault).unwrap();
        assert!(
            after == bytes,
            "{what}: the refused open wrote to the vault ({} bytes before, {} after)",
            bytes.len(),
            after.len()
        );
        // Once what was spoiled is put back (nothing, for a wrong key), the right key
        // opens it, and repairs it then. (A log cut short stays cut.)
        if what == "damaged head record" {
            std::fs::write(&head, &kept.0).unwrap();
        }
        if what != "log cut short" {
            let l = open(c.dir.path(), &c.key, &c.pk, snapshots);
            assert_eq!(
                std::fs::read(&vault).unwrap().len(),
                bytes.len() - 10,
                "{what}: repaired once open"
            );
            assert_eq!(decisions(&l, 5), c.decisions, "{what}");
        }
        drop(kept.1);
    }
}

/// What is in the snapshot's place and is not a regular file (a directory, a FIFO, a
/// link to an endless device) is no snapshot: opening ignores it, without blocking or
/// reading without end, decides as before, and closing writes a real one in its place.
#[cfg(unix)]
#[test]
fn a_snapshot_that_is_not_a_regular_file_is_ignored() {
    let fifo = |p: &Path| {
        assert!(std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    let dir_in_place = |p: &Path| std::fs::create_dir(p).unwrap();
    let endless = |p: &Path| std::os::unix::fs::symlink("/dev/zero", p).unwrap();
    type Make<'a> = &'a dyn Fn(&Path);
    let cases: [(&str, Make<'_>); 3] = [("fifo", &fifo), ("directory", &dir_in_place), ("link", &endless)];
    for (what, make) in cases {
        let c = closed(4, EVERY_CLOSE);
        let state = c.dir.path().join("state");
        std::fs::remove_file(&state).unwrap();
        make(&state);
        let (tx, rx) = std::sync::mpsc::channel();
        let (path, key, pk) = (c.dir.path().to_path_buf(), c.key.clone(), c.pk.clone());
        std::thread::spawn(move || {
            let l = open(&path, &key, &pk, EVERY_CLOSE);
            let _ = tx.send(decisions(&l, 4));
        });
        let got = rx.recv_timeout(std::time::Duration::from_secs(20));
        if got.is_err() && what == "fifo" {
            // Unblock the reader so that the thread ends.
            let _ = std::fs::OpenOptions::new().write(true).open(&state);
        }
        assert_eq!(got.expect(what), c.decisions, "{what}");
        // The thread's ledger was closed: a real snapshot is in place now.
        let mut waited = 0;
        while !std::fs::symlink_metadata(&state).is_ok_and(|m| m.file_type().is_file()) && waited < 200 {
            std::thread::sleep(std::time::Duration::from_millis(10));
            waited += 1;
        }
        assert!(
            std::fs::symlink_metadata(&state).unwrap().file_type().is_file(),
            "{what}"
        );
    }
}

/// A directory with files in the snapshot's place is not ours: erasure and opening
/// leave it alone instead of failing (an erasure that failed after its entry was
/// appended would tell the caller it did not happen).
#[test]
fn a_directory_with_files_in_the_snapshots_place_is_left_alone() {
    let c = closed(4, EVERY_CLOSE);
    let state = c.dir.path().join("state");
    std::fs::remove_file(&state).unwrap();
    std::fs::create_dir(&state).unwrap();
    std::fs::write(state.join("junk"), b"x").unwrap();
    let l = open(c.dir.path(), &c.key, &c.pk, EVERY_CLOSE);
    let len = l.len();
    l.erase(&subject(1), consent_ledger::Actor::Subject).unwrap();
    assert_eq!(l.len(), len + 1);
    drop(l);
    let l = open(c.dir.path(), &c.key, &c.pk, Snapshots::Off);
    assert!(l
        .authorize(&email(1), &Recipient::partner("acme").unwrap())
        .is_err());
    assert!(state.join("junk").exists());
}

/// A vault slot written by hand (docs/format.md): kind | key length | key | value
/// length | value | zeros | checksum.
fn forge_slot(kind: u8, key: &[u8], value: &[u8]) -> [u8; 256] {
    use sha2::{Digest, Sha256};
    let mut slot = [0u8; 256];
    slot[0] = kind;
    slot[1] = key.len() as u8;
    slot[2..2 + key.len()].copy_from_slice(key);
    slot[2 + key.len()] = value.len() as u8;
    slot[3 + key.len()..3 + key.len() + value.len()].copy_from_slice(value);
    let d = Sha256::digest(&slot[..240]);
    slot[240..].copy_from_slice(&d[..16]);
    slot
}

/// From a snapshot, an erasure left unfinished makes open read and authenticate the
/// index after all: an open refused there (an index record whose tag fails) has not
/// written the vault's repairs either.
#[test]
fn an_open_refused_for_an_index_record_leaves_the_vault_unrepaired() {
    const SLOT: usize = 256;
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let builder = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .snapshots(EVERY_CLOSE)
    };
    let (a, x) = (subject(1), subject(2));
    let l = builder().open().unwrap();
    l.collect(&a, &email(1), RecipientScope::all_partners()).unwrap();
    l.collect(&x, &email(2), RecipientScope::all_partners()).unwrap();
    l.erase(&x, consent_ledger::Actor::System).unwrap();
    drop(l);
    assert!(dir.path().join("state").exists());
    let path = dir.path().join("vault");
    let mut vault = std::fs::read(&path).unwrap();
    // A repair to write: one bit of a's secret slot flipped.
    let name = a.as_str().as_bytes();
    let a_slot = vault
        .chunks_exact(SLOT)
        .position(|v| v[0] == 1 && usize::from(v[1]) == name.len() && &v[2..2 + name.len()] == name)
        .unwrap();
    vault[a_slot * SLOT + 20] ^= 1;
    // An index record with one value byte changed and a valid slot checksum.
    let idx = vault.chunks_exact(SLOT).position(|v| v[0] == 2).unwrap();
    let s = vault[idx * SLOT..(idx + 1) * SLOT].to_vec();
    let klen = usize::from(s[1]);
    let vlen = usize::from(s[2 + klen]);
    let mut v = s[3 + klen..3 + klen + vlen].to_vec();
    *v.last_mut().unwrap() ^= 1;
    vault[idx * SLOT..(idx + 1) * SLOT].copy_from_slice(&forge_slot(2, &s[2..2 + klen], &v));
    // The erased subject's secret back in the vault (an erasure cut short): the index
    // must be read.
    vault.extend_from_slice(&forge_slot(1, x.as_str().as_bytes(), &[9u8; 32]));
    std::fs::write(&path, &vault).unwrap();
    let refused = builder().open();
    assert!(
        matches!(refused, Err(OpenError::CorruptMetadata("index record"))),
        "{:?}",
        refused.map(|l| l.len())
    );
    assert!(
        std::fs::read(&path).unwrap() == vault,
        "the refused open wrote to the vault"
    );
}

/// An emptied log is refused (`LogEmptied`) without the refused open writing first:
/// not sled's format marker (when its `meta` tree was emptied too), and not a vault
/// file (when the vault was removed and only the decision records show the ledger
/// was used).
#[test]
fn an_open_refused_as_emptied_writes_nothing_first() {
    type Spoil = fn(&Path);
    let cases: [(&str, consent_ledger::Recording, Spoil); 2] = [
        (
            "entries and meta emptied",
            consent_ledger::Recording::Off,
            |dir| {
                let db = sled_util::open(dir);
                db.open_tree("entries").unwrap().clear().unwrap();
                db.open_tree("meta").unwrap().clear().unwrap();
                db.flush().unwrap();
            },
        ),
        (
            "entries emptied, vault, head and snapshot removed",
            consent_ledger::Recording::Every,
            |dir| {
                let db = sled_util::open(dir);
                db.open_tree("entries").unwrap().clear().unwrap();
                db.flush().unwrap();
                drop(db);
                for name in ["vault", "head", "state"] {
                    let _ = std::fs::remove_file(dir.join(name));
                }
            },
        ),
    ];
    for (what, recording, spoil) in cases {
        let dir = tempfile::tempdir().unwrap();
        let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
        {
            let l = Ledger::builder(dir.path())
                .signing_key(key.clone())
                .pseudonym_key(pk.clone())
                .record_decisions(recording)
                .open()
                .unwrap();
            let id = Identifier::<Security>::email("person1@example.com").unwrap();
            if recording == consent_ledger::Recording::Every {
                l.collect(&subject(0), &id, RecipientScope::first_party())
                    .unwrap();
                l.authorize(&id, &Recipient::FirstParty).unwrap();
            } else {
                l.grant::<Advertising>(&subject(0), RecipientScope::all_partners(), None)
                    .unwrap();
            }
            l.sync().unwrap();
        }
        spoil(dir.path());
        let vault_before = dir.path().join("vault").exists();
        let refused = Ledger::builder(dir.path())
            .signing_key(key)
            .pseudonym_key(pk)
            .open();
        assert!(
            matches!(&refused, Err(OpenError::Integrity(e)) if e.problem == IntegrityProblem::LogEmptied),
            "{what}: {:?}",
            refused.map(|l| l.len())
        );
        let db = sled_util::open(dir.path());
        let meta: Vec<_> = db.open_tree("meta").unwrap().iter().map(Result::unwrap).collect();
        let entries = db.open_tree("entries").unwrap().len();
        drop(db);
        if what.starts_with("entries and meta") {
            assert!(
                meta.is_empty(),
                "{what}: the refused open wrote {} meta keys",
                meta.len()
            );
        }
        assert_eq!(entries, 0, "{what}");
        assert_eq!(
            dir.path().join("vault").exists(),
            vault_before,
            "{what}: the refused open made a vault"
        );
    }
}

/// More refused opens that write nothing first: a creation cut short before its genesis
/// entry opened with a trusted checkpoint (no marker, no genesis written); a used
/// ledger whose sled data file and vault are gone (`LogEmptied`, no vault made); and an
/// open that fails making the head record (its close does not run: no snapshot).
#[test]
fn more_refused_opens_write_nothing() {
    // A creation cut short before the genesis entry (sled's trees, no entries), and a
    // checkpoint of another ledger.
    let other = closed(1, Snapshots::Off);
    let l = open(other.dir.path(), &other.key, &other.pk, Snapshots::Off);
    let cp = l.checkpoint().unwrap().text().to_owned();
    drop(l);
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), &other.key, &other.pk, Snapshots::Off));
    {
        let db = sled_util::open(dir.path());
        db.open_tree("entries").unwrap().clear().unwrap();
        db.open_tree("meta").unwrap().clear().unwrap();
        db.flush().unwrap();
    }
    std::fs::remove_file(dir.path().join("head")).unwrap();
    let refused = Ledger::builder(dir.path())
        .signing_key(other.key.clone())
        .pseudonym_key(other.pk.clone())
        .trusted_checkpoint(cp)
        .open();
    assert!(
        matches!(refused, Err(OpenError::UntrustedCheckpoint)),
        "{:?}",
        refused.map(|l| l.len())
    );
    let db = sled_util::open(dir.path());
    let (entries, meta) = (
        db.open_tree("entries").unwrap().len(),
        db.open_tree("meta").unwrap().len(),
    );
    drop(db);
    assert_eq!((entries, meta), (0, 0), "the refused open wrote");

    // sled's data file emptied (sled makes a new database) and the vault gone.
    let c = closed(3, Snapshots::Off);
    std::fs::write(c.dir.path().join("db"), b"").unwrap();
    for f in std::fs::read_dir(c.dir.path()).unwrap() {
        let f = f.unwrap();
        if f.file_name().to_string_lossy().starts_with("snap.") {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    std::fs::remove_file(c.dir.path().join("vault")).unwrap();
    let refused = Ledger::builder(c.dir.path())
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .open();
    assert!(
        matches!(&refused, Err(OpenError::Integrity(e)) if e.problem == IntegrityProblem::LogEmptied),
        "{:?}",
        refused.map(|l| l.len())
    );
    assert!(
        !c.dir.path().join("vault").exists(),
        "the refused open made a vault"
    );

    // The head record cannot be made (a directory holds its temporary name).
    let c = closed(3, Snapshots::Off);
    std::fs::remove_file(c.dir.path().join("head")).unwrap();
    std::fs::create_dir(c.dir.path().join("head.tmp")).unwrap();
    std::fs::write(c.dir.path().join("head.tmp").join("keep"), b"x").unwrap();
    let refused = Ledger::builder(c.dir.path())
        .signing_key(c.key.clone())
        .pseudonym_key(c.pk.clone())
        .snapshots(EVERY_CLOSE)
        .open();
    assert!(refused.is_err(), "{:?}", refused.map(|l| l.len()));
    assert!(
        !c.dir.path().join("state").exists(),
        "the refused open wrote a snapshot"
    );
}

/// Index records in the vault file `dir` whose key is subject id `id` (a record's value
/// names its subject, length first).
fn vault_links(dir: &Path, id: &str) -> usize {
    const SLOT: usize = 256;
    let vault = std::fs::read(dir.join("vault")).unwrap();
    vault
        .chunks_exact(SLOT)
        .filter(|s| {
            s[0] == 2
                && s.windows(id.len() + 1)
                    .any(|w| &w[1..] == id.as_bytes() && usize::from(w[0]) == id.len())
        })
        .count()
}

/// An index record that no entry names (what a crash between a collection's index
/// record and its entry leaves: made here by putting another copy's vault, with one more
/// collection, under the log) is removed by the next open, which replays in full since
/// the vault is not the one the last close recorded. It used to stay: erasure removes
/// only the records of the collections the log holds, and only a full replay removed an
/// erased subject's other records, so it outlived the subject's erasure for as long as
/// opens used the snapshot. (Review r140.)
#[test]
fn an_index_record_no_entry_names_does_not_outlive_its_subjects_erasure() {
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let l = open(d, &key, &pk, EVERY_CLOSE);
    for i in 0..5 {
        l.collect(&subject(i), &email(i), RecipientScope::all_partners())
            .unwrap();
    }
    drop(l);
    let other = tempfile::tempdir().unwrap();
    sled_util::copy_dir(d, other.path());
    let l = open(other.path(), &key, &pk, EVERY_CLOSE);
    let phone = Identifier::<Security>::phone("+15550000001").unwrap();
    l.collect(&subject(0), &phone, RecipientScope::first_party())
        .unwrap();
    drop(l);
    std::fs::copy(other.path().join("vault"), d.join("vault")).unwrap();
    assert_eq!(vault_links(d, "acct-0"), 2);
    // The open after the "crash" removes the record no entry names.
    let l = open(d, &key, &pk, EVERY_CLOSE);
    assert_eq!(l.history(&subject(0)).unwrap().len(), 1);
    l.erase(&subject(0), Actor::System).unwrap();
    drop(l);
    assert!(d.join("state").is_file());
    let (full, snap) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    sled_util::copy_dir(d, full.path());
    sled_util::copy_dir(d, snap.path());
    assert_eq!(vault_links(d, "acct-0"), 0, "after the erasure");
    drop(open(full.path(), &key, &pk, Snapshots::Off));
    drop(open(snap.path(), &key, &pk, NEVER_WRITE));
    assert!(snap.path().join("state").is_file(), "the snapshot was not used");
    for (how, d) in [("full replay", full.path()), ("from the snapshot", snap.path())] {
        assert_eq!(vault_links(d, "acct-0"), 0, "{how}");
    }
}
