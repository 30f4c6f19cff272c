//! The keyless `Inspector` reads a ledger directory without changing anything in it,
//! even when sled's recovery would rewrite a damaged data file, and reports a log cut
//! shorter than the head record claims; a file named `db` that is not a sled database
//! is never handed to sled.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use std::collections::BTreeMap;
use std::path::Path;

use consent_ledger::{
    Advertising, Identifier, Inspector, IntegrityProblem, Ledger, OpenError, PseudonymKey, ReadError,
    RecipientScope, SigningKey, SubjectId,
};

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else {
                let name = p.strip_prefix(dir).unwrap().display().to_string();
                out.insert(name, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// A closed ledger of ten subjects, and where subject 5's id is in sled's data file.
fn ledger(dir: &Path) -> (SigningKey, PseudonymKey, u64, usize) {
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap();
    for i in 0..10u32 {
        let s = SubjectId::new(&format!("subject-{i:02}")).unwrap();
        let id = Identifier::<Advertising>::email(&format!("p{i}@example.org")).unwrap();
        l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    }
    let len = l.len();
    drop(l);
    let bytes = std::fs::read(dir.join("db")).unwrap();
    let at = bytes.windows(10).position(|w| w == b"subject-05").unwrap();
    (key, pk, len, at)
}

#[test]
fn inspecting_changes_nothing_even_a_damaged_data_file() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk, len, at) = ledger(dir.path());
    let before = files(dir.path());
    let i = Inspector::open(dir.path()).unwrap();
    assert_eq!(i.verify().unwrap().entries, len);
    drop(i);
    assert_eq!(files(dir.path()), before, "an intact ledger's files changed");

    // One flipped bit, which sled's recovery takes for a torn tail: the inspector
    // reports the cut (from the head record's claim) and leaves the file as it was,
    // so restoring the bit restores every entry.
    let mut damaged = before["db"].clone();
    damaged[at] ^= 1;
    std::fs::write(dir.path().join("db"), &damaged).unwrap();
    let before = files(dir.path());
    let i = Inspector::open(dir.path()).unwrap();
    let err = i.verify().unwrap_err();
    let prefix = i.valid_prefix().unwrap();
    drop(i);
    match err {
        ReadError::Integrity(e) => assert!(
            matches!(e.problem, IntegrityProblem::ShorterThanRecorded { recorded } if recorded == len),
            "{e:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(prefix.len < len && prefix.problem.is_some(), "{prefix:?}");
    assert_eq!(files(dir.path()), before, "a damaged ledger's files changed");
    damaged[at] ^= 1;
    std::fs::write(dir.path().join("db"), &damaged).unwrap();
    let l = Ledger::builder(dir.path())
        .signing_key(key)
        .pseudonym_key(pk)
        .open()
        .unwrap();
    assert_eq!(l.len(), len);
}

/// A file named `db` that is not a sled database (alone, or beside an empty `conf`) is
/// never handed to sled, which would rewrite it: both refuse and nothing changes.
#[test]
fn a_file_named_db_that_is_not_a_sled_database_is_never_opened() {
    let cases: [&[(&str, &[u8])]; 3] = [
        &[("notes.txt", b"hello")],
        &[("conf", b"")],
        // A file that merely has the head record's name is not one.
        &[("conf", b""), ("head", b"refs/heads/main\n")],
    ];
    for others in cases {
        let other = format!("{:?}", others.iter().map(|(n, _)| *n).collect::<Vec<_>>());
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), b"SQLite format 3\0 somebody else's data").unwrap();
        for (name, bytes) in others {
            std::fs::write(dir.path().join(name), bytes).unwrap();
        }
        let before = files(dir.path());
        assert!(matches!(Inspector::open(dir.path()), Err(OpenError::NotALedger)));
        let opened = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .open();
        assert!(
            matches!(opened, Err(OpenError::NotALedger)),
            "beside {other}: {:?}",
            opened.map(|l| l.len())
        );
        assert_eq!(files(dir.path()), before, "beside {other}");
    }
}

/// A ledger whose first key signed entries 0..=4 and was revoked from 2 after a
/// rotation, then ten more entries ("late-0".."late-9"): its length.
fn with_a_revoked_key(dir: &Path) -> u64 {
    let k1 = SigningKey::generate();
    let l = Ledger::builder(dir)
        .signing_key(k1.clone())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap();
    let collect = |name: String| {
        let id = Identifier::<Advertising>::email(&format!("{name}@example.org")).unwrap();
        l.collect(
            &SubjectId::new(&name).unwrap(),
            &id,
            RecipientScope::all_partners(),
        )
        .unwrap();
    };
    (0..4).for_each(|i| collect(format!("early-{i}")));
    l.rotate_key(SigningKey::generate()).unwrap();
    l.revoke_key(k1.verifying_key(), 2).unwrap();
    (0..10).for_each(|i| collect(format!("late-{i}")));
    l.len()
}

/// The intact prefix names the entries signed by a revoked key, as `verify` does, also
/// when sled cut the log after them.
#[test]
fn the_valid_prefix_names_entries_signed_by_a_revoked_key() {
    let dir = tempfile::tempdir().unwrap();
    with_a_revoked_key(dir.path());
    let i = Inspector::open(dir.path()).unwrap();
    let report = i.verify().unwrap();
    let prefix = i.valid_prefix().unwrap();
    drop(i);
    assert!(!report.untrusted.is_empty());
    assert_eq!((prefix.problem, &prefix.untrusted), (None, &report.untrusted));
    let db = dir.path().join("db");
    let mut bytes = std::fs::read(&db).unwrap();
    let at = bytes.windows(6).rposition(|w| w == b"late-9").unwrap();
    bytes[at] ^= 1;
    std::fs::write(&db, &bytes).unwrap();
    let prefix = Inspector::open(dir.path()).unwrap().valid_prefix().unwrap();
    assert!(prefix.problem.is_some(), "{prefix:?}");
    assert_eq!(prefix.untrusted, report.untrusted, "{prefix:?}");
}

/// sled never syncs its `conf` file, so a power cut can leave it empty beside a synced
/// database: sled reads that as no configuration, and so does the check that tells a
/// sled database.
#[test]
fn a_ledger_with_an_empty_conf_file_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk, len, _) = ledger(dir.path());
    std::fs::write(dir.path().join("conf"), b"").unwrap();
    assert_eq!(
        Inspector::open(dir.path()).unwrap().verify().unwrap().entries,
        len
    );
    std::fs::write(dir.path().join("conf"), b"").unwrap();
    let l = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap();
    assert_eq!(l.len(), len);
    drop(l);
    // Also without the head file (removed as `ShorterThanRecorded`'s docs advise, or a
    // ledger made before there was one): the vault tells the ledger's own directory.
    std::fs::write(dir.path().join("conf"), b"").unwrap();
    std::fs::remove_file(dir.path().join("head")).unwrap();
    assert_eq!(
        Inspector::open(dir.path()).unwrap().verify().unwrap().entries,
        len
    );
    std::fs::write(dir.path().join("conf"), b"").unwrap();
    let l = Ledger::builder(dir.path())
        .signing_key(key)
        .pseudonym_key(pk)
        .open()
        .unwrap();
    assert_eq!(l.len(), len);
}

/// A prefix ended by a bad signature (sled keeps the entry; the check refuses it)
/// names the revoked-key entries in it.
#[test]
fn the_valid_prefix_before_a_bad_signature_names_revoked_key_entries() {
    let dir = tempfile::tempdir().unwrap();
    let len = with_a_revoked_key(dir.path());
    let report = Inspector::open(dir.path()).unwrap().verify().unwrap();
    assert!(!report.untrusted.is_empty());
    {
        let db = sled_util::open(dir.path());
        let t = db.open_tree("entries").unwrap();
        let last = len - 1;
        let mut v = t.get(last.to_be_bytes()).unwrap().unwrap().to_vec();
        let n = v.len();
        v[n - 1] ^= 1; // the signature's last byte
        t.insert(last.to_be_bytes(), v).unwrap();
        db.flush().unwrap();
    }
    let prefix = Inspector::open(dir.path()).unwrap().valid_prefix().unwrap();
    assert_eq!(prefix.len, len - 1, "{prefix:?}");
    assert_eq!(prefix.untrusted, report.untrusted, "{prefix:?}");
}

/// An opener with new keys, a parent directory, and a new ledger made in it (closed).
fn made_ledger() -> (
    impl Fn(&Path) -> Result<Ledger, consent_ledger::OpenError>,
    tempfile::TempDir,
    std::path::PathBuf,
) {
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let open = move |dir: &Path| {
        Ledger::builder(dir)
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .open()
    };
    let parent = tempfile::tempdir().unwrap();
    let made = parent.path().join("made");
    drop(open(&made).unwrap());
    (open, parent, made)
}

/// A first open cut short (a kill or a power cut) leaves a directory that the next open
/// finishes making: the vault's mark (made first) with sled's `blobs/` alone, or with its
/// `conf`, or its `db` beside a `conf` that was never synced (empty).
#[test]
fn a_first_open_cut_short_is_finished_by_the_next() {
    let (open, parent, made) = made_ledger();
    // The mark a first open makes before sled makes anything: the vault's header alone
    // (as a new ledger's vault holds it).
    let mark = std::fs::read(made.join("vault")).unwrap();
    // Killed inside sled's own making of the database, before `db`.
    for conf in [None, Some(&b""[..])] {
        let dir = parent.path().join(format!("blobs-{}", conf.is_some()));
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::write(dir.join("vault"), &mark).unwrap();
        if let Some(c) = conf {
            std::fs::write(dir.join("conf"), c).unwrap();
        }
        assert_eq!(open(&dir).unwrap().len(), 1, "{}", dir.display());
        // Without the mark, sled's files alone are another program's.
        let bare = parent.path().join(format!("bare-{}", conf.is_some()));
        std::fs::create_dir_all(bare.join("blobs")).unwrap();
        if let Some(c) = conf {
            std::fs::write(bare.join("conf"), c).unwrap();
        }
        assert!(matches!(open(&bare), Err(consent_ledger::OpenError::NotALedger)));
    }
    // A power cut after sled made `db`, before `conf` was synced: what the first
    // open made durable by then is the vault's mark.
    let dir = parent.path().join("power-cut");
    drop(open(&dir).unwrap());
    for name in std::fs::read_dir(&dir).unwrap() {
        let name = name.unwrap().file_name();
        if name != "db" && name != "conf" && name != "vault" && name != "blobs" {
            let path = dir.join(&name);
            if path.is_dir() {
                std::fs::remove_dir_all(path).unwrap();
            } else {
                std::fs::remove_file(path).unwrap();
            }
        }
    }
    {
        // Sled's data file as made, before anything was written to it.
        std::fs::remove_file(dir.join("db")).unwrap();
        let db = sled::Config::new()
            .path(&dir)
            .flush_every_ms(None)
            .open()
            .unwrap();
        drop(db);
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
    std::fs::write(dir.join("conf"), b"").unwrap();
    std::fs::write(dir.join("vault"), {
        let mut v = b"consent-ledger vault v1\n".to_vec();
        v.resize(256, 0);
        v
    })
    .unwrap();
    assert_eq!(open(&dir).unwrap().len(), 1);
}

/// Two more states a first open killed at the wrong moment leaves, each found by
/// killing real opens at every file system call: the vault's mark left empty, then a
/// second first open killed after sled made its files (the mark is written whole
/// before sled starts now); and sled's `conf` cut between its two writes (text, then
/// checksum), which sled refuses as corrupt (it is removed: no database exists yet).
#[test]
fn a_first_open_cut_in_the_mark_or_in_sleds_conf_is_finished_by_the_next() {
    let (open, parent, made) = made_ledger();
    let mark = std::fs::read(made.join("vault")).unwrap();
    let conf = std::fs::read(made.join("conf")).unwrap();
    /// What a cut leaves: the vault's bytes and sled's `conf`, if any.
    type Left<'a> = (&'a str, &'a [u8], Option<&'a [u8]>);
    let states: [Left<'_>; 5] = [
        ("empty mark, blobs", b"", None),
        ("empty mark, blobs, conf", b"", Some(&conf)),
        ("part of the mark, blobs, empty conf", &mark[..5], Some(b"")),
        (
            "mark, blobs, conf without its checksum",
            &mark,
            Some(&conf[..conf.len() - 4]),
        ),
        (
            "empty mark, blobs, conf without its checksum",
            b"",
            Some(&conf[..conf.len() - 4]),
        ),
    ];
    for (what, vault, conf) in states {
        let dir = parent.path().join(what);
        std::fs::create_dir_all(dir.join("blobs")).unwrap();
        std::fs::write(dir.join("vault"), vault).unwrap();
        if let Some(c) = conf {
            std::fs::write(dir.join("conf"), c).unwrap();
        }
        let opened = open(&dir);
        assert_eq!(
            opened.map(|l| l.len()).map_err(|e| format!("{e:?}")),
            Ok(1),
            "{what}"
        );
        assert_eq!(open(&dir).unwrap().len(), 1, "{what}: reopened");
    }
}

/// One flipped bit near the start of sled's data file makes sled's recovery drop the
/// whole log, format marker included. The directory still holds the ledger's vault and
/// head record: both `Inspector::open` and `Ledger::open` say the log was emptied, not
/// that the directory is not a ledger ("missing or empty, or holds other data").
/// (From review r99.)
#[test]
fn a_ledger_whose_log_sled_dropped_is_reported_emptied_not_foreign() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk, ..) = ledger(dir.path());
    let db = dir.path().join("db");
    let original = std::fs::read(&db).unwrap();
    let mut dropped = 0;
    for at in 0..8usize {
        let mut bytes = original.clone();
        bytes[at] ^= 0x01;
        std::fs::write(&db, &bytes).unwrap();
        let emptied = |e: &OpenError| matches!(e, OpenError::Integrity(i) if i.problem == IntegrityProblem::LogEmptied && i.position == 0);
        match Inspector::open(dir.path()) {
            Err(e) => {
                assert!(emptied(&e), "byte {at}: Inspector::open: {e:?}");
                dropped += 1;
                // The same damage, opened with the keys (on a copy: sled's recovery
                // rewrites its file).
                let copy = tempfile::tempdir().unwrap();
                sled_util::copy_dir(dir.path(), copy.path());
                let opened = Ledger::builder(copy.path())
                    .signing_key(key.clone())
                    .pseudonym_key(pk.clone())
                    .open();
                assert!(
                    matches!(&opened, Err(e) if emptied(e)),
                    "byte {at}: {:?}",
                    opened.err()
                );
            }
            Ok(i) => assert!(i.verify().is_err() || i.len().unwrap() > 0, "byte {at}"),
        }
    }
    std::fs::write(&db, &original).unwrap();
    assert!(
        dropped > 0,
        "no flip made sled drop the log: the test checks nothing"
    );
}

/// `Inspector::entries` reads each entry at its own position: one deleted from the
/// middle of the log, or a copy of another stored in an entry's place, is an integrity
/// error, never skipped or returned twice. (From review r99.)
#[test]
fn inspector_entries_refuses_a_missing_or_copied_entry() {
    for damage in ["missing", "copied"] {
        let dir = tempfile::tempdir().unwrap();
        let (_, _, len, _) = ledger(dir.path());
        {
            let db = sled_util::open(dir.path());
            let t = db.open_tree("entries").unwrap();
            if damage == "missing" {
                t.remove(5u64.to_be_bytes()).unwrap();
            } else {
                let three = t.get(3u64.to_be_bytes()).unwrap().unwrap();
                t.insert(7u64.to_be_bytes(), three).unwrap();
            }
            db.flush().unwrap();
        }
        let inspector = Inspector::open(dir.path()).unwrap();
        match inspector.entries(len) {
            Err(ReadError::Integrity(e)) => assert_eq!(e.position, if damage == "missing" { 5 } else { 7 }),
            other => panic!("{damage}: {other:?}"),
        }
        // The prefix before the damage still reads.
        assert_eq!(inspector.entries(5).unwrap().len(), 4, "{damage}");
    }
}

/// `Inspector::entries(upto)` caps at the log's end (the crate's own callers pass
/// `u64::MAX` for all of it), so a log cut short gives a shorter list; its docs say so
/// and point to `valid_prefix`, which reports the cut against the head record.
/// (Review r140 read "missing" as covering the end; making it an error broke every
/// `entries(u64::MAX)`.)
#[test]
fn inspector_entries_stops_at_the_end_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_, _, len, _) = ledger(dir.path());
    let inspector = Inspector::open(dir.path()).unwrap();
    let all = inspector.entries(len).unwrap();
    assert_eq!(all.len(), 10);
    for upto in [len + 1, len + 5, u64::MAX] {
        assert_eq!(inspector.entries(upto).unwrap(), all, "{upto}");
    }
}
