//! Review h35-k: the keyless `Inspector` on directories an adversary prepared.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod sled_util;

use std::path::Path;

use consent_ledger::{
    Advertising, Identifier, Inspector, Ledger, OpenError, PseudonymKey, RecipientScope, SigningKey,
    SubjectId,
};

/// A closed, used ledger (collections, a state snapshot, a vault with index records).
fn used_ledger(dir: &Path) -> (SigningKey, PseudonymKey) {
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let l = Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap();
    for i in 0..5u32 {
        let s = SubjectId::new(&format!("subject-{i:02}")).unwrap();
        let id = Identifier::<Advertising>::email(&format!("p{i}@example.org")).unwrap();
        l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    }
    drop(l);
    (key, pk)
}

/// An adversary empties the `entries` tree (keeping the format marker) and deletes the
/// head record. `Ledger::open` refuses the directory (`LogEmptied`: the vault, the state
/// snapshot and the decision records show the ledger was used), but the Inspector reports
/// a log of 0 entries that "checks out": `ledger_audit verify` prints "ok" and exits 0,
/// `prefix` reports an intact prefix with no problem.
/// (Now `Inspector::open` refuses it as `LogEmptied`, as `Ledger::open` does.)
#[test]
fn inspector_does_not_call_an_emptied_log_valid() {
    let dir = tempfile::tempdir().unwrap();
    let (key, pk) = used_ledger(dir.path());
    {
        let db = sled_util::open(dir.path());
        let entries = db.open_tree("entries").unwrap();
        entries.clear().unwrap();
        db.flush().unwrap();
    }
    std::fs::remove_file(dir.path().join("head")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(600));

    // The keyed open sees the tampering.
    let keyed = Ledger::builder(dir.path())
        .signing_key(key)
        .pseudonym_key(pk)
        .open();
    assert!(
        matches!(keyed, Err(OpenError::Integrity(_))),
        "Ledger::open: {keyed:?}"
    );
    drop(keyed);
    std::thread::sleep(std::time::Duration::from_millis(600));

    // The keyless audit must not call it valid.
    match Inspector::open(dir.path()) {
        Err(_) => {}
        Ok(i) => {
            let v = i.verify();
            assert!(v.is_err(), "Inspector::verify called an emptied log valid: {v:?}");
            let p = i.valid_prefix().unwrap();
            assert!(p.problem.is_some(), "valid_prefix reports no problem: {p:?}");
        }
    }
}

/// A file of sled's in the inspected directory swapped for a FIFO between the moment
/// the directory is listed (or screened) and the moment `copy_sparse` opens it: the
/// plain `File::open` blocks for good on a FIFO without a writer, so the auditor's
/// `Inspector::open` (and `ledger_audit verify`) hangs. `copy_sparse` checks the file
/// type only after the open has returned. (An adversary who controls the directory
/// swaps the name in a loop.)
/// (Now every such file is opened without blocking or following a link (`open_to_read`), then checked.)
#[cfg(unix)]
#[test]
fn a_sled_file_swapped_for_a_fifo_while_copied_does_not_hang_the_inspector() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("ledger");
    used_ledger(&dir);
    std::thread::sleep(Duration::from_millis(600));
    let stage = base.path().join("stage");
    std::fs::create_dir(&stage).unwrap();
    let fifo = stage.join("fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let regular = stage.join("regular");
    std::fs::write(&regular, [1u8; 64]).unwrap();
    // Named as sled reads its page-table snapshot (sorts after any genuine one).
    let snap = dir.join("snap.FFFFFFFFFFFFFFF0");
    let stop = AtomicBool::new(false);
    let hung = std::thread::scope(|s| {
        s.spawn(|| {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let src = if i.is_multiple_of(2) { &fifo } else { &regular };
                let t = stage.join(format!("t{i}"));
                std::fs::hard_link(src, &t).unwrap();
                std::fs::rename(&t, &snap).unwrap();
                i += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
        });
        let start = Instant::now();
        let mut hung = false;
        while start.elapsed() < Duration::from_secs(20) && !hung {
            let (tx, rx) = std::sync::mpsc::channel();
            let d = dir.clone();
            std::thread::spawn(move || {
                let _ = tx.send(Inspector::open(&d).is_ok());
            });
            if rx.recv_timeout(Duration::from_secs(5)).is_err() {
                hung = true;
                // Unblock the inspection: a writer opens the same FIFO.
                let _w = std::fs::OpenOptions::new().write(true).open(&fifo);
                let _ = rx.recv_timeout(Duration::from_secs(5));
            }
        }
        stop.store(true, Ordering::Relaxed);
        hung
    });
    assert!(
        !hung,
        "Inspector::open blocked on a FIFO swapped in for a sled file"
    );
}

/// Page-table snapshot files (`snap.*`) are screened one by one (a regular file no
/// longer than twice the database plus 1 MiB), but neither their number nor their
/// holes are bounded, and `PrivateCopy::of` copies (reads) every one of them. A few
/// hundred sparse `snap.*` files cost their maker no disk at all and make the
/// auditor's inspection read tens of gigabytes of zeros (sled only ever keeps one).
/// (Now a copied file that is mostly a hole is refused.)
#[cfg(unix)]
#[test]
fn many_sparse_snapshot_files_do_not_make_the_inspector_read_without_bound() {
    use std::time::{Duration, Instant};
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("ledger");
    used_ledger(&dir);
    std::thread::sleep(Duration::from_millis(600));
    // sled's file given a trailing hole of 60 MiB, within what the screen allows
    // (eight times its allocated size plus 64 MiB).
    let db = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("db"))
        .unwrap();
    let db_len = db.metadata().unwrap().len() + (60 << 20);
    db.set_len(db_len).unwrap();
    drop(db);
    let each = db_len * 2 + (1 << 20);
    for i in 0..200 {
        // Sorts before any name sled writes, so sled (in the copy) reads its own.
        let f = std::fs::File::create(dir.join(format!("snap.-{i:04}"))).unwrap();
        f.set_len(each).unwrap();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let d = dir.clone();
    let start = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(Inspector::open(&d).map(|_| ()).map_err(|e| e.to_string()));
    });
    let r = rx.recv_timeout(Duration::from_secs(10));
    eprintln!("{r:?} after {:?}", start.elapsed());
    assert!(
        r.is_ok(),
        "Inspector::open still copying after {:?} ({} sparse snap files of {} MiB, no disk used)",
        start.elapsed(),
        200,
        each >> 20
    );
}

/// Page-table snapshot files (`snap.*`) each within the screen's bounds (no longer than
/// twice the database plus 1 MiB, and not mostly a hole: a hole of less than 64 MiB),
/// but many: `PrivateCopy::of` read and copied every one, while sled reads one, the
/// last name. Here 200 of 60 MiB (12 GiB of zeros, costing their maker no disk).
/// (Now only the one sled reads is copied.)
#[cfg(unix)]
#[test]
fn many_sparse_snapshot_files_within_the_bounds_are_not_read() {
    use std::time::Instant;
    let base = tempfile::tempdir().unwrap();
    let dir = base.path().join("ledger");
    let (key, pk) = used_ledger(&dir);
    // Opened again: sled writes its page-table snapshot as it recovers.
    drop(
        Ledger::builder(&dir)
            .signing_key(key)
            .pseudonym_key(pk)
            .open()
            .unwrap(),
    );
    std::thread::sleep(std::time::Duration::from_millis(600));
    let sleds: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.starts_with("snap."))
        .collect();
    assert_eq!(sleds.len(), 1, "{sleds:?}");
    // sled's file made 40 MiB long (a hole within what the screen allows), so that a
    // snapshot of 60 MiB is within the bound.
    let db = std::fs::OpenOptions::new()
        .write(true)
        .open(dir.join("db"))
        .unwrap();
    db.set_len(db.metadata().unwrap().len().max(40 << 20)).unwrap();
    drop(db);
    for i in 0..200 {
        // Sorts before any name sled writes, so sled (in the copy) reads its own.
        let f = std::fs::File::create(dir.join(format!("snap.-{i:04}"))).unwrap();
        f.set_len(60 << 20).unwrap();
    }
    let start = Instant::now();
    let inspector = Inspector::open(&dir).unwrap();
    let took = start.elapsed();
    eprintln!("Inspector::open took {took:?}");
    assert!(inspector.verify().unwrap().entries > 0);
    assert!(
        took < std::time::Duration::from_secs(3),
        "Inspector::open took {took:?}: it read the 200 sparse snapshot files"
    );
}
