//! A sparse file in a ledger directory (a hole of a gigabyte in sled's `db` or in a
//! blob, which costs its maker nothing) must not make `Inspector::open` write its full
//! length to the temporary directory (from review r121: `std::fs::copy` wrote the holes
//! out). Alone in its test binary: it points `TMPDIR` at a directory it watches.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use consent_ledger::*;

fn open(dir: &Path) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap()
}

/// Bytes of disk a file or directory tree takes (allocated blocks, not its length).
#[cfg(unix)]
fn allocated(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    // (Something may vanish while the tree is walked: counted as nothing.)
    let Ok(m) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    let mut total = m.blocks() * 512;
    if m.is_dir() {
        for e in std::fs::read_dir(path).into_iter().flatten().flatten() {
            total += allocated(&e.path());
        }
    }
    total
}

/// The most disk the temporary directory `tmp` held while `Inspector::open(dir)` ran
/// (it copies the database there), and the inspector.
#[cfg(unix)]
fn inspect_watching(dir: &Path, tmp: &Path) -> (Result<Inspector, OpenError>, u64) {
    std::env::set_var("TMPDIR", tmp);
    let done = std::sync::atomic::AtomicBool::new(false);
    let got = std::thread::scope(|s| {
        let watcher = s.spawn(|| {
            let mut peak = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                peak = peak.max(allocated(tmp));
                std::thread::sleep(Duration::from_millis(5));
            }
            peak
        });
        let started = Instant::now();
        let inspector = Inspector::open(dir);
        eprintln!("Inspector::open took {:?}", started.elapsed());
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        (inspector, watcher.join().unwrap())
    });
    std::env::remove_var("TMPDIR");
    got
}

/// A hostile ledger directory made with a sparse file (1 GiB long, costing its maker no
/// disk): in sled's `blobs/` directory, or as sled's `db` with a hole at its end.
/// `Inspector::open` copies both to the temporary directory with `std::fs::copy`, which
/// writes holes out as zeros (`copy_file_range` on ext4): the auditor's disk receives
/// the file's length, whatever its maker spent, and a 1 TiB file fills it (and takes
/// hours) before anything is checked. (`a_huge_sparse_snapshot_file_does_not_abort_open`
/// and `destroying_a_sparse_snapshot_writes_no_more_than_a_snapshot_can_hold` guard
/// the same kind of file elsewhere.)
#[cfg(unix)]
#[test]
fn inspector_copies_a_sparse_file_at_its_full_length() {
    for (what, make) in [
        ("a sparse blob in blobs/", 0),
        ("sled's db with a hole at its end", 1),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let tmp = tempfile::tempdir().unwrap();
        drop(open(dir.path()));
        if make == 0 {
            std::fs::create_dir_all(dir.path().join("blobs")).unwrap();
            let blob = std::fs::File::create(dir.path().join("blobs").join("12345")).unwrap();
            blob.set_len(1 << 30).unwrap();
        } else {
            let db = std::fs::OpenOptions::new()
                .write(true)
                .open(dir.path().join("db"))
                .unwrap();
            db.set_len(db.metadata().unwrap().len() + (1 << 30)).unwrap();
        }
        let made = allocated(dir.path());
        let (inspector, peak) = inspect_watching(dir.path(), tmp.path());
        // A blob longer than any page of a ledger (sled reads a blob whole) or a db
        // whose hole sled's recovery would write out in full: refused before sled runs,
        // by Ledger::open too.
        assert!(matches!(inspector, Err(OpenError::Storage(_))), "{what}");
        let refused = Ledger::builder(dir.path())
            .signing_key(SigningKey::generate())
            .pseudonym_key(PseudonymKey::generate())
            .open();
        assert!(matches!(refused, Err(OpenError::Storage(_))), "{what}");
        assert!(
            peak < made + (64 << 20),
            "{what}: a ledger directory taking {} KiB of disk made Inspector::open write {} KiB \
             to the temporary directory",
            made >> 10,
            peak >> 10
        );
    }
}
