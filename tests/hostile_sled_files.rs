//! Hostile files in a ledger directory (from reviews r117 and r118): sled files crafted
//! to panic, block or exhaust memory (a snap.* file, a FIFO or a link to /dev/zero named
//! like one, a sparse huge conf), and a creation cut short seen by the Inspector. (An
//! older state file put back is in tests/snapshot_vault.rs.) Each must give a typed error or the
//! answers of a full replay, never a panic, a hang or an abort.
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

use consent_ledger::{Advertising, Ledger, PseudonymKey, RecipientScope, SigningKey, Snapshots};
use snapshot_util::{email, subject};

const SLOT: usize = 256;

struct Keys {
    sk: SigningKey,
    pk: PseudonymKey,
}

fn open(dir: &Path, k: &Keys, snapshots: Snapshots) -> Result<Ledger, consent_ledger::OpenError> {
    snapshot_util::try_open(dir, &k.sk, &k.pk, snapshots)
}

fn populate(l: &Ledger, from: u32, to: u32) {
    for i in from..to {
        l.collect(&subject(i), &email(i), RecipientScope::all_partners())
            .unwrap();
        l.grant::<Advertising>(&subject(i), RecipientScope::all_partners(), None)
            .unwrap();
    }
}

/// CRC-32 (IEEE), as sled 0.34 checks its files with (no key: anyone can compute it).
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for b in bytes {
        crc ^= u32::from(*b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// A sled page-table snapshot file with a valid CRC around `payload`, as sled 0.34.7
/// reads one: payload, its length (u64 LE), CRC-32 of the payload (u32 LE).
fn sled_snapshot_file(payload: &[u8]) -> Vec<u8> {
    let mut out = payload.to_vec();
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32(payload).to_le_bytes());
    out
}

fn small_ledger() -> (tempfile::TempDir, Keys) {
    let dir = tempfile::tempdir().unwrap();
    let k = Keys {
        sk: SigningKey::generate(),
        pk: PseudonymKey::generate(),
    };
    let l = open(dir.path(), &k, Snapshots::default()).unwrap();
    populate(&l, 0, 2);
    drop(l);
    (dir, k)
}

/// A hostile `snap.*` file (9 bytes of payload and a correct CRC-32, which needs no
/// key): sled 0.34.7 reads the newest one at every open and indexes past the end of
/// its buffer (`u64::deserialize` of a 2-byte varint whose second byte is missing).
/// `Ledger::open` and `Inspector::open` panic instead of returning a typed error.
#[test]
fn a_crafted_sled_snapshot_file_does_not_panic_open() {
    // stable_lsn: i64 (8 bytes); active_segment: a varint whose first byte (241)
    // announces a second byte that is not there.
    let payload = [0, 0, 0, 0, 0, 0, 0, 0, 241];
    let (dir, k) = small_ledger();
    std::fs::write(
        dir.path().join("snap.7fffffffffffffff"),
        sled_snapshot_file(&payload),
    )
    .unwrap();

    let inspected = std::panic::catch_unwind(|| consent_ledger::Inspector::open(dir.path()).map(|_| ()));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        open(dir.path(), &k, Snapshots::default()).map(|_| ())
    }));
    assert!(
        inspected.is_ok(),
        "Inspector::open panicked on a hostile snap file"
    );
    assert!(opened.is_ok(), "Ledger::open panicked on a hostile snap file");
}

/// A FIFO named like a sled snapshot: sled opens the newest `snap.*` for reading,
/// which blocks until a writer comes: `Ledger::open` hangs (the ledger's own files are
/// all guarded against this; sled's snapshot files are not).
#[cfg(unix)]
#[test]
fn a_fifo_named_like_a_sled_snapshot_does_not_hang_open() {
    let got = open_beside_a_fifo("snap.7fffffffffffffff");
    assert!(
        got.is_ok(),
        "Ledger::open still blocked after 10 s on a FIFO named snap.*"
    );
}

/// Opens a small ledger with a FIFO named `name` beside its files, on another thread:
/// what the open returned (its `Debug`), or an error if it was still blocked after
/// 10 s (the FIFO is then opened for writing, without waiting, to unblock it so that
/// the test process can end).
#[cfg(unix)]
fn open_beside_a_fifo(name: &str) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
    let (dir, k) = small_ledger();
    let fifo = dir.path().join(name);
    let status = std::process::Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(status.success());
    let path = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = open(&path, &k, Snapshots::default()).map(|_| ());
        let _ = tx.send(format!("{r:?}"));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(10));
    if got.is_err() {
        // O_NONBLOCK: never waits.
        use std::os::unix::fs::OpenOptionsExt;
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(0o4000)
            .open(&fifo);
    }
    got
}

/// Opens the ledger (fixed keys) in `dir` in a child process limited to 1.5 GB of
/// address space; returns what the open returned (its `Debug`), or the child's failure.
#[cfg(unix)]
/// The peak memory a child of [`open_in_a_limited_child`] reported, in kB (the
/// largest value when it reported none).
fn peak_kb(got: &Result<String, String>) -> u64 {
    got.as_deref()
        .ok()
        .and_then(|r| r.split("peak memory ").nth(1))
        .and_then(|p| p.trim_end_matches(" kB").parse().ok())
        .unwrap_or(u64::MAX)
}

fn open_in_a_limited_child(test: &str, dir: &Path) -> Result<String, String> {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "ulimit -v 1500000; exec \"$0\" --exact {test} --nocapture --test-threads 1"
        ))
        .arg(exe)
        .env("HOSTILE_SLED_CHILD_DIR", dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout
        .lines()
        .find_map(|l| l.split_once("HOSTILE_SLED open returned "))
    {
        Some((_, r)) if out.status.success() => Ok(r.to_string()),
        _ => Err(format!(
            "{:?}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )),
    }
}

fn fixed_keys() -> Keys {
    Keys {
        sk: SigningKey::from_bytes(&[7; 32]),
        pk: PseudonymKey::from_bytes([8; 32]),
    }
}

/// In the child: opens the directory it was given, prints what that returned; `true`.
fn child_open() -> bool {
    let Ok(dir) = std::env::var("HOSTILE_SLED_CHILD_DIR") else {
        return false;
    };
    let r = open(Path::new(&dir), &fixed_keys(), Snapshots::default()).map(|_| ());
    // The peak resident memory of this process, in kB.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let peak = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .unwrap_or_default()
        .trim()
        .to_string();
    println!("\nHOSTILE_SLED open returned {r:?}; peak memory {peak}");
    true
}

/// A symbolic link named like a sled snapshot, pointing at `/dev/zero`: sled reads the
/// newest `snap.*` with `read_to_end`, without end. Limited to 1.5 GB, opening a ledger
/// of one entry fails with `OutOfMemory` after taking all of it; without a limit it
/// takes the machine's memory. (The ledger's own files are read through
/// `read_regular_file`, which does not follow links, for this very case.)
#[cfg(unix)]
#[test]
fn a_link_to_dev_zero_named_like_a_sled_snapshot_does_not_exhaust_memory() {
    if child_open() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), &fixed_keys(), Snapshots::default()).unwrap());
    std::os::unix::fs::symlink("/dev/zero", dir.path().join("snap.7fffffffffffffff")).unwrap();
    let got = open_in_a_limited_child(
        "a_link_to_dev_zero_named_like_a_sled_snapshot_does_not_exhaust_memory",
        dir.path(),
    );
    assert!(matches!(&got, Ok(r) if !r.contains("OutOfMemory")), "{got:?}");
}

/// sled's `conf` made sparse and large (1 GiB, no disk space; its text kept at the
/// start, so that it is still told as sled's): sled's `read_config` reads all of it
/// with `read_to_end`, and the open's peak memory is the file's length.
#[cfg(unix)]
#[test]
fn a_sparse_huge_sled_conf_does_not_exhaust_memory() {
    if child_open() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), &fixed_keys(), Snapshots::default()).unwrap());
    // sled's text, and four bytes of ASCII where its CRC was (a CRC that fails is
    // only a warning to sled; bytes that are UTF-8 keep it told as sled's), then a hole.
    let path = dir.path().join("conf");
    let text = std::fs::read(&path).unwrap();
    let mut conf = text[..text.len() - 4].to_vec();
    conf.extend_from_slice(b"AAAA");
    std::fs::write(&path, &conf).unwrap();
    let conf = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    conf.set_len(1 << 30).unwrap();
    drop(conf);
    let got = open_in_a_limited_child("a_sparse_huge_sled_conf_does_not_exhaust_memory", dir.path());
    // Opening a ledger of one entry needs a few MB; sled read the gigabyte of the hole.
    assert!(peak_kb(&got) < 256 * 1024, "{got:?}");
}

/// A first open cut short after sled made its files and before the format marker: the
/// vault holds its header alone (the new ledger's mark), sled's database is empty, no
/// head record, no snapshot. `Ledger::open` finishes the creation (nothing shows the
/// ledger was used); `Inspector::open` reports `LogEmptied` ("a ledger whose log was
/// lost ... while its other files show it was used", its doc says, "as
/// LedgerBuilder::open says of it"): it asks its private copy, which holds no vault,
/// for index records, and counts the error reading it as a record.
#[test]
fn inspector_does_not_report_a_creation_cut_short_as_an_emptied_log() {
    let made = tempfile::tempdir().unwrap();
    drop(open(made.path(), &fixed_keys(), Snapshots::default()).unwrap());
    let mark = std::fs::read(made.path().join("vault")).unwrap()[..SLOT].to_vec();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("vault"), &mark).unwrap();
    {
        // sled makes its files (db, conf, blobs/), then the process is gone.
        let db = sled_util::open(dir.path());
        db.flush().unwrap();
    }
    let inspected = consent_ledger::Inspector::open(dir.path()).map(|_| ());
    let inspected = format!("{inspected:?}");
    // The keyed open, on a copy, sees a creation to finish.
    let copy = tempfile::tempdir().unwrap();
    sled_util::copy_dir(dir.path(), copy.path());
    let opened = open(copy.path(), &fixed_keys(), Snapshots::default()).map(|l| l.len());
    assert!(matches!(opened, Ok(1)), "{opened:?}");
    assert!(
        !inspected.contains("LogEmptied"),
        "Inspector::open: {inspected}, while Ledger::open creates the ledger"
    );
}

/// Bytes of one of sled 0.34's varints starting at `b`.
fn varint_len(b: &[u8]) -> usize {
    match b[0] {
        0..=240 => 1,
        241..=248 => 2,
        249 => 3,
        o => o as usize - 247 + 1,
    }
}

/// Bytes of a sled `DiskPtr` starting at `b`.
fn disk_ptr_len(b: &[u8]) -> usize {
    1 + varint_len(&b[1..]) + if b[0] == 0 { 0 } else { 8 }
}

/// Splits a sled 0.34.7 page-table snapshot payload into its header (stable lsn,
/// active segment) and one byte range per page (`PageState`), as sled serializes them.
fn sled_pages(payload: &[u8]) -> (usize, Vec<std::ops::Range<usize>>) {
    let head = 8 + varint_len(&payload[8..]);
    let mut at = head;
    let mut out = vec![];
    while at < payload.len() {
        let start = at;
        let d = payload[at];
        at += 1;
        if d == 0 {
            at += 8;
            at += disk_ptr_len(&payload[at..]);
        } else {
            for _ in 0..d {
                at += 8;
                at += disk_ptr_len(&payload[at..]);
                at += varint_len(&payload[at..]);
            }
        }
        out.push(start..at);
    }
    (head, out)
}

fn sled_snapshot_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("snap."))
        .collect()
}

/// A `snap.*` that decodes (two pages' entries swapped, CRC-32 recomputed: no key
/// needed) passes sled's open, and sled's `assert_eq!` ("expected pid 3 on pull of
/// pointer ..., but got 2") fires at the ledger's first read of the tree: every call
/// into sled is now guarded, so `Inspector::open` and `Ledger::open` return an error.
/// (From review r118: the catch was around sled's open only.)
#[test]
fn a_sled_snapshot_with_two_pages_swapped_does_not_panic_open() {
    let dir = tempfile::tempdir().unwrap();
    let k = Keys {
        sk: SigningKey::generate(),
        pk: PseudonymKey::generate(),
    };
    {
        let l = open(dir.path(), &k, Snapshots::Off).unwrap();
        for i in 0..300 {
            l.collect(&subject(i), &email(i), RecipientScope::all_partners())
                .unwrap();
        }
    }
    // sled writes its snapshot while it recovers at an open.
    drop(open(dir.path(), &k, Snapshots::Off).unwrap());
    std::thread::sleep(std::time::Duration::from_millis(300));
    let snaps = sled_snapshot_files(dir.path());
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let bytes = std::fs::read(&snaps[0]).unwrap();
    let payload = &bytes[..bytes.len() - 12];
    let (head, pages) = sled_pages(payload);
    assert!(pages.len() > 3);
    // Pages 2 and 3 (sled's first tree pages) swapped.
    let mut p = payload[..head].to_vec();
    for i in 0..pages.len() {
        let j = match i {
            2 => 3,
            3 => 2,
            i => i,
        };
        p.extend_from_slice(&payload[pages[j].clone()]);
    }
    let mut file = p.clone();
    file.extend_from_slice(&(p.len() as u64).to_le_bytes());
    file.extend_from_slice(&crc32(&p).to_le_bytes());
    std::fs::write(&snaps[0], &file).unwrap();

    let copy = tempfile::tempdir().unwrap();
    sled_util::copy_dir(dir.path(), copy.path());
    let inspected = std::panic::catch_unwind(|| consent_ledger::Inspector::open(copy.path()).map(|_| ()));
    let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        open(dir.path(), &k, Snapshots::Off).map(|_| ())
    }));
    assert!(
        inspected.is_ok(),
        "Inspector::open panicked on a crafted snap file"
    );
    assert!(opened.is_ok(), "Ledger::open panicked on a crafted snap file");
}

/// The same hostile files named like a snapshot sled never finished
/// (`snap.<lsn>.generating`): sled reads those names too, and one that is not a
/// regular file was neither screened nor removed (from review r123).
#[cfg(unix)]
#[test]
fn a_fifo_named_like_an_unfinished_sled_snapshot_does_not_hang_open() {
    let got = open_beside_a_fifo("snap.ffffffffffffffff.generating");
    assert!(
        got.is_ok_and(|r| r.contains("Storage")),
        "blocked, or not refused"
    );
}

/// Makes sled keep a page of the `meta` tree as a blob (a file of its own under
/// `blobs/`): a value larger than sled's blob threshold under a key of its own, put
/// through sled's API (as anyone can craft: sled's files carry a CRC-32 and no key).
/// Returns the blob files' paths.
fn ledger_with_a_blob(dir: &Path) -> Vec<std::path::PathBuf> {
    drop(open(dir, &fixed_keys(), Snapshots::default()).unwrap());
    {
        let db = sled_util::open(dir);
        let meta = db.open_tree("meta").unwrap();
        meta.insert("format-padding", vec![0x5Au8; 400 * 1024]).unwrap();
        db.flush().unwrap();
    }
    std::thread::sleep(std::time::Duration::from_millis(100));
    let blobs: Vec<_> = std::fs::read_dir(dir.join("blobs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(!blobs.is_empty(), "sled made no blob");
    blobs
}

/// A FIFO in place of one of sled's blob files (`blobs/<lsn>`): sled 0.34.7 opens a
/// blob it reads with a plain `open` and reads it with `read_to_end`
/// (`pagecache/blob_io.rs`), so opening the ledger blocks until a writer comes, as it
/// did for a FIFO named `snap.*` before those were screened (review h35-b). Now each
/// file there must be a regular file of at most the largest page a ledger made.
#[cfg(unix)]
#[test]
fn a_fifo_in_place_of_a_sled_blob_does_not_hang_open() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = ledger_with_a_blob(dir.path());
    // A blob sled made itself opens (a log written before entries were limited to
    // 7 KiB may have some).
    assert!(open(dir.path(), &fixed_keys(), Snapshots::default()).is_ok());
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
        let status = std::process::Command::new("mkfifo").arg(b).status().unwrap();
        assert!(status.success());
    }
    let path = dir.path().to_path_buf();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = open(&path, &fixed_keys(), Snapshots::default()).map(|_| ());
        let _ = tx.send(format!("{r:?}"));
    });
    let got = rx.recv_timeout(std::time::Duration::from_secs(10));
    if got.is_err() {
        use std::os::unix::fs::OpenOptionsExt;
        for b in &blobs {
            let _ = std::fs::OpenOptions::new()
                .write(true)
                .custom_flags(0o4000)
                .open(b);
        }
    }
    assert!(
        got.as_ref()
            .is_ok_and(|r| r.starts_with("Err") && r.contains("not a regular file")),
        "Ledger::open still blocked after 10 s on a FIFO in place of a sled blob, or opened: {got:?}"
    );
}

/// A symbolic link to `/dev/zero` in place of one of sled's blob files: sled reads the
/// blob with `read_to_end`, without end. In a child limited to 1.5 GB, opening a
/// ledger of one entry took about 530 MB (until an allocation failed; the open then
/// succeeded); without a limit it takes what the machine has.
/// (Now a blob that is not a regular file is refused before sled runs.)
#[cfg(unix)]
#[test]
fn a_link_to_dev_zero_in_place_of_a_sled_blob_does_not_exhaust_memory() {
    if child_open() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let blobs = ledger_with_a_blob(dir.path());
    for b in &blobs {
        std::fs::remove_file(b).unwrap();
        std::os::unix::fs::symlink("/dev/zero", b).unwrap();
    }
    let got = open_in_a_limited_child(
        "a_link_to_dev_zero_in_place_of_a_sled_blob_does_not_exhaust_memory",
        dir.path(),
    );
    // Opening a ledger of one entry needs a few MB; sled read /dev/zero until an
    // allocation failed (about 0.5 GB under the child's limit; unbounded without one).
    assert!(peak_kb(&got) < 256 * 1024, "{got:?}");
}

/// A regular file in sled's `blobs/` longer than any page of a ledger (a blob holds one
/// page: at most 17 entries of at most 64 KiB) is refused before sled reads it whole,
/// by the open and by the Inspector.
#[test]
fn a_blob_longer_than_any_page_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = ledger_with_a_blob(dir.path());
    std::fs::write(&blobs[0], vec![0x5Au8; 3 << 20]).unwrap();
    let refused = open(dir.path(), &fixed_keys(), Snapshots::default()).map(|_| ());
    assert!(
        format!("{refused:?}").contains("larger than any page of a ledger"),
        "{refused:?}"
    );
    let inspected = consent_ledger::Inspector::open(dir.path()).map(|_| ());
    assert!(
        format!("{inspected:?}").contains("larger than any page of a ledger"),
        "{inspected:?}"
    );
}
