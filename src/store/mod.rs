//! The storage backend: the only module that touches sled.
//!
//! The ledger talks to storage through the small [`Backend`] trait, so another engine
//! can be added without touching the rest of the crate. Five keyspaces, and a file:
//!
//! | where | key | value | mutable |
//! |---|---|---|---|
//! | sled tree `entries` | sequence number, `u64` BE | signed entry bytes | append only |
//! | sled tree `meta` | name | format marker; vault digest record (`ledger/vault_digest.rs`) | yes |
//! | sled tree `decisions` | record key (see `records.rs`) | encoded decision record | aggregates grow |
//! | vault file, index slots | lookup pseudonym (32 bytes) | encoded index record | yes (erasure) |
//! | vault file, secret slots | subject id (UTF-8) | the subject's 32-byte secret | yes (erasure) |
//! | file `state` | | a state snapshot (`state/snapshot.rs`) | replaced on close; destroyed on erasure |
//!
//! What erasure must destroy lives in the vault (`vault.rs`), not in sled: sled is
//! log-structured and keeps removed values in stale segments.
//!
//! # Durability
//!
//! sled 0.34 writes to an in-memory log buffer; `flush` writes it to the `db` file with
//! `sync_file_range`, which does not flush the drive's cache or file metadata (sled
//! issue 1452). [`Backend::sync`] therefore flushes and then `fsync`s the data file
//! itself, so a synced write survives power loss as far as the drive honours fsync.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::StorageError;
use zeroize::Zeroizing;

pub(crate) mod digest;
mod vault;

use digest::{DigestKey, IndexDigest};
#[cfg(feature = "fuzzing")]
pub(crate) use vault::{header as vault_header, sample_file as sample_vault_file, scan as scan_vault};
use vault::{Kind, Vault};

/// File name of the vault inside the ledger directory.
const VAULT_FILE: &str = "vault";

/// Whether anything is at the vault's place in the ledger directory `dir`.
pub(crate) fn vault_exists(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(VAULT_FILE)).is_ok()
}
/// Whether a state snapshot file is in `dir` (not read: a used ledger's mark, whatever
/// its length).
pub(crate) fn snapshot_exists(dir: &Path) -> bool {
    std::fs::symlink_metadata(dir.join(SNAPSHOT_FILE)).is_ok_and(|m| m.is_file() && m.len() > 0)
}
/// File name of the state snapshot, and of one being written.
const SNAPSHOT_FILE: &str = "state";
const SNAPSHOT_TMP: &str = "state.tmp";
const HEAD_FILE: &str = "head";
const HEAD_TMP: &str = "head.tmp";

/// Stored bytes as read back, shared with the engine's cache rather than copied.
pub(crate) struct Bytes(sled::IVec);

impl std::ops::Deref for Bytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(any(test, feature = "fuzzing"))]
impl Bytes {
    /// Bytes not read from storage (the fuzz hooks replay logs built in memory, and
    /// the fault tests change what was read).
    pub(crate) fn from_vec(bytes: Vec<u8>) -> Self {
        Bytes(sled::IVec::from(bytes))
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

/// One stored entry as read back: its key (when it is a well-formed sequence number)
/// and its bytes.
pub(crate) type RawEntry = (Result<u64, Vec<u8>>, Bytes);

/// An iterator over stored items that may fail.
pub(crate) type Items<'a, T> = Box<dyn Iterator<Item = Result<T, StorageError>> + 'a>;

/// What the ledger needs from a storage engine.
pub(crate) trait Backend: Send + Sync + fmt::Debug {
    /// A metadata value.
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError>;
    /// Sets a metadata value.
    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StorageError>;
    /// Stores entry `seq`; fails if it exists (append only).
    fn append_entry(&self, seq: u64, bytes: &[u8]) -> Result<(), StorageError>;
    /// Entry `seq`, if stored.
    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// All stored entries from `from` on, in key order.
    fn entries_from(&self, from: u64) -> Items<'_, RawEntry>;
    /// Whether nothing at all is stored in any keyspace.
    fn is_empty(&self) -> Result<bool, StorageError>;
    /// Index record for a lookup pseudonym.
    fn put_index(&self, lookup: &[u8; 32], record: &[u8]) -> Result<(), StorageError>;
    /// Removes an index record.
    fn remove_index(&self, lookup: &[u8; 32]) -> Result<(), StorageError>;
    /// Removes an index record if `remove` says so of its bytes, atomically with respect
    /// to writes of the same record; returns whether it did.
    fn remove_index_if(
        &self,
        lookup: &[u8; 32],
        remove: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, StorageError>;
    /// The index records in part `part` of `parts` (of the records stored now, split
    /// into roughly equal parts that together hold every record once).
    fn index_records(&self, part: u64, parts: u64) -> Items<'_, (Vec<u8>, Vec<u8>)>;
    /// A subject's secret.
    fn secret(&self, subject: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StorageError>;
    /// Stores a subject's secret.
    fn put_secret(&self, subject: &str, secret: &[u8; 32]) -> Result<(), StorageError>;
    /// Destroys a subject's secret.
    fn remove_secret(&self, subject: &str) -> Result<(), StorageError>;
    /// Makes every write so far durable (flush, then fsync the data file).
    fn sync(&self) -> Result<(), StorageError>;
    /// The state snapshot's bytes, if there is one.
    fn snapshot(&self) -> Result<Option<Vec<u8>>, StorageError>;
    /// Replaces the state snapshot: written over the old one in place (whose bytes
    /// past the new end are zeroed first), then synced.
    fn put_snapshot(&self, bytes: &[u8]) -> Result<(), StorageError>;
    /// Destroys the state snapshot (and one left half-written): its bytes are
    /// overwritten with zeros in place and synced before the file is removed, as the
    /// vault does with erased records.
    fn destroy_snapshot(&self) -> Result<(), StorageError>;
    /// Opens every part of the store not opened yet (the vault opens on first use) and
    /// checks it, reporting a failure to open it; writes nothing (repairs opening found
    /// wait for [`Backend::ready`]).
    fn open_parts(&self) -> Result<(), StorageError>;
    /// Whether opening the vault found records it drops (damaged slots, conflicting or
    /// duplicate copies): what a full replay does not link any more. Opens the vault.
    fn vault_drops_records(&self) -> Result<bool, StorageError>;
    /// The key the vault computes its index digest under when it is opened: given
    /// before anything opens it (a vault opened without one has no digest).
    fn set_vault_digest_key(&self, key: DigestKey);
    /// The digest of the index records in the vault (see [`digest`]), as read when it
    /// was opened and kept up to date since; `None` if it is not known. Opens the vault.
    fn vault_index_digest(&self) -> Result<Option<IndexDigest>, StorageError>;
    /// Opens every part of the store not opened yet, as [`Backend::open_parts`], and
    /// writes the repairs opening found (until then, opening has written nothing to the
    /// vault): called once every check of an open has passed.
    fn ready(&self) -> Result<(), StorageError>;
    /// Lets the vault file be created if it is missing (or given its header if it is
    /// empty): only for a ledger being created. Otherwise a missing or emptied vault is
    /// an error, not a new empty one (which
    /// would unlink every identifier from its subject without a word).
    fn allow_vault_creation(&self);
    /// Stores a decision record (replacing one with the same key).
    fn put_decision(&self, key: &[u8], record: &[u8]) -> Result<(), StorageError>;
    /// Stores a decision record under a key that holds none; fails if one is there
    /// (a record is never written over by one with another number).
    fn put_new_decision(&self, key: &[u8], record: &[u8]) -> Result<(), StorageError>;
    /// Reads one decision record.
    fn decision(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Every decision record whose key starts with `prefix`, in key order.
    fn decisions(&self, prefix: &[u8]) -> Items<'_, (Vec<u8>, Vec<u8>)>;
    /// The greatest decision key starting with `prefix`.
    fn last_decision_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
}

/// The sled-backed store.
pub(crate) struct SledStore {
    db: sled::Db,
    entries: sled::Tree,
    meta: sled::Tree,
    decisions: sled::Tree,
    vault: LazyVault,
    /// sled's data file, kept open (for writing, though nothing is written through it)
    /// to fdatasync it on every sync.
    data_file: File,
    dir: PathBuf,
}

impl fmt::Debug for SledStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SledStore")
            .field("path", &self.dir)
            .finish_non_exhaustive()
    }
}

/// The trees this crate creates; a database with any other tree is not a ledger.
const TREES: [&str; 3] = ["entries", "meta", "decisions"];

fn err(context: &'static str) -> impl Fn(sled::Error) -> StorageError {
    move |e| StorageError::new(context, e)
}

/// Runs a call into sled, turning a panic of sled's into a storage error. sled 0.34.7
/// asserts on what its page table says (checked by a CRC-32 only): a crafted `snap.*`
/// file that maps two pages to each other's places opens, and the first read of either
/// page stops sled on an assertion (review r118). Every call into sled goes through
/// this or [`guarded_items`], so such files end in an error, not a panic. (Under
/// `panic = "abort"` nothing can catch it.)
fn sled_call<T>(context: &'static str, f: impl FnOnce() -> sled::Result<T>) -> Result<T, StorageError> {
    catch_sled(f).map_err(err(context))
}

/// Runs `f`, a call into sled, with a panic of sled's reported as corruption.
fn catch_sled<T>(f: impl FnOnce() -> sled::Result<T>) -> sled::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(sled::Error::Corruption {
            at: None,
            bt: Default::default(),
        })
    })
}

/// [`sled_call`] for each step of an iterator over sled's items; after a panic the
/// iterator ends with that error.
fn guarded_items<'a, T: 'a>(
    context: &'static str,
    mut items: impl Iterator<Item = sled::Result<T>> + 'a,
) -> impl Iterator<Item = Result<T, StorageError>> + 'a {
    let mut stopped = false;
    std::iter::from_fn(move || {
        if stopped {
            return None;
        }
        match catch_sled(|| Ok(items.next())) {
            Ok(item) => item.map(|r| r.map_err(err(context))),
            Err(e) => {
                stopped = true;
                Some(Err(StorageError::new(context, e)))
            }
        }
    })
}

/// How long opening waits for the database's file lock before reporting it held.
///
/// sled finishes some writes on its own background threads, which keep the database
/// (and its lock) alive for a moment after the last handle is dropped: reopening a
/// ledger right after closing it in the same process then found the lock still held
/// (about one time in 400 in a loop of close-and-reopen). sled itself blocks on the
/// lock in its own tests for this reason. A lock held by a ledger that is really open
/// elsewhere is still reported, after this wait.
const LOCK_WAIT: Duration = Duration::from_millis(500);

/// The vault, opened on first use: opening reads and checks every slot of its file (a
/// second per million subjects), which a ledger opening from a state snapshot does on
/// the thread that loads the snapshot while another reads the log.
struct LazyVault {
    path: PathBuf,
    /// The file may be created (the ledger is new).
    create: std::sync::atomic::AtomicBool,
    vault: std::sync::OnceLock<Vault>,
    /// Held while opening, so that only one thread opens it.
    opening: std::sync::Mutex<()>,
    /// The key of the index digest computed when it is opened.
    digest_key: std::sync::OnceLock<DigestKey>,
}

impl fmt::Debug for LazyVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LazyVault")
            .field("open", &self.vault.get().is_some())
            .finish()
    }
}

impl LazyVault {
    fn new(path: PathBuf) -> Self {
        LazyVault {
            path,
            create: std::sync::atomic::AtomicBool::new(false),
            vault: std::sync::OnceLock::new(),
            opening: std::sync::Mutex::new(()),
            digest_key: std::sync::OnceLock::new(),
        }
    }

    /// The open vault, opening it if no thread has yet (others wait for that one).
    fn get(&self) -> Result<&Vault, StorageError> {
        if let Some(v) = self.vault.get() {
            return Ok(v);
        }
        let _opening = self.opening.lock().map_err(|_| {
            StorageError::new(
                "opening the vault",
                std::io::Error::other("a thread panicked while opening the vault"),
            )
        })?;
        if let Some(v) = self.vault.get() {
            return Ok(v);
        }
        let create = self.create.load(std::sync::atomic::Ordering::Acquire);
        let v = Vault::open_deferred(&self.path, create, self.digest_key.get().copied())?;
        Ok(self.vault.get_or_init(|| v))
    }
}

/// Overwrites a file's first `written` bytes (at most: the most this code could have
/// written into it) with zeros in place, syncs, and removes it; nothing to do if it does
/// not exist. Bounded, so that a file made sparse and huge by someone else (`truncate -s
/// 1T`) does not have a terabyte of zeros written into it: past what this code wrote
/// there is nothing of ours to destroy.
fn destroy_file(path: &Path, written: u64) -> std::io::Result<()> {
    // A symbolic link put in place of the file is removed, not followed: zeroing would
    // destroy whatever file it points to.
    match std::fs::symlink_metadata(path) {
        // A link, FIFO, socket or device node holds no data here: its name is removed.
        // A directory is removed if empty, and left alone otherwise: it is not a file
        // of ours, and what is in it is not ours to destroy.
        Ok(m) if !m.file_type().is_file() => {
            if m.file_type().is_dir() {
                match std::fs::remove_dir(path) {
                    Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty => return Ok(()),
                    other => other?,
                }
            } else {
                std::fs::remove_file(path)?;
            }
            return path.parent().map_or(Ok(()), sync_dir);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        _ => {}
    }
    let mut file = match std::fs::OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len().min(written);
    write_zeros(&mut file, len)?;
    file.sync_all()?;
    drop(file);
    std::fs::remove_file(path)?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Writes `len` zero bytes at `file`'s position, a megabyte at a time at most.
fn write_zeros(file: &mut File, len: u64) -> std::io::Result<()> {
    use std::io::Write;
    let zeros = vec![0u8; usize::try_from(len.min(1 << 20)).unwrap_or(1 << 20)];
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left.min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all(zeros.get(..n).unwrap_or(&zeros))?;
        left -= n as u64;
    }
    Ok(())
}

/// Removes the name `path` of something that is not a regular file (a symbolic link, a
/// FIFO, an empty directory) without writing through it. A
/// directory that is not empty is an error: nothing can be made in its place.
fn remove_name(path: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_dir() => std::fs::remove_dir(path),
        Ok(_) => std::fs::remove_file(path),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` to read it, in a directory someone else may change between a check
/// and the open: a link in its place is not followed (an error), and a FIFO swapped in
/// does not block the open (review h35-k: the Inspector hung on one). The caller checks
/// what was opened (`File::metadata`) before reading it.
pub(crate) fn open_to_read(path: &Path) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::custom_flags(&mut options, libc::O_NONBLOCK | libc::O_NOFOLLOW);
    options.open(path)
}

/// The bytes of the regular file at `path`, at most `limit` of them; `None` if there is
/// none, or something else is in its place. A link is not followed (to /dev/zero, say,
/// it would be read without end) and a FIFO is not opened (that would block).
fn read_regular_file(path: &Path, limit: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => {}
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
    let file = match open_to_read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    // Checked again on what was opened, and read no further than its size then.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Ok(None);
    }
    let len = meta.len().min(limit);
    // Grown as bytes are read, never reserved from the length a file claims (a sparse
    // file of a terabyte claims one, and reserving it aborts the process).
    let mut bytes = Vec::with_capacity(usize::try_from(len.min(1 << 20)).unwrap_or(0));
    file.take(len).read_to_end(&mut bytes)?;
    Ok(Some(bytes))
}

/// Options for a new file only this user may read: created, never an existing file
/// or a link (`create_new`), mode 0600 on Unix.
pub(crate) fn private_file() -> std::fs::OpenOptions {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
}

/// Makes a rename or removal in `dir` durable (a no-op where directories cannot be
/// synced).
fn sync_dir(dir: &Path) -> std::io::Result<()> {
    if cfg!(unix) {
        File::open(dir)?.sync_all()
    } else {
        Ok(())
    }
}

fn open_db(config: &sled::Config) -> sled::Result<sled::Db> {
    let start = Instant::now();
    loop {
        // sled 0.34.7 decodes its page-table snapshot (`snap.*`, checked by a CRC-32
        // only) with unchecked indexing: a crafted one panics inside `open` (review
        // r117). Caught here and reported as corrupt files, as the rest of sled's
        // corruption is (see `sled_call`).
        match catch_sled(|| config.open()) {
            Err(sled::Error::Io(e)) if is_lock_held(&e) && start.elapsed() < LOCK_WAIT => {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

/// Removes page-table snapshots sled started writing but never finished, before sled
/// opens the database.
///
/// sled 0.34.7 writes a snapshot to `snap.<lsn>.generating`, syncs it and renames it
/// to `snap.<lsn>`, and it writes one during its own recovery at every open. But when
/// it reads the newest snapshot back it skips only `*.in___motion` files, not
/// `*.generating`: a process killed while one was being written leaves a database
/// that never opens again (`Corruption { at: None }`, "crc does not match"; sled
/// issues #1527 and #1533). Measured with bare sled in a loop of open, insert, flush
/// and close killed at random moments: unopenable after 21, 45, 184 and 225 kills in
/// four runs; with this removal, 600 kills without a failure. A `.generating` file
/// was never renamed, so it never was sled's snapshot: the previous one and the log
/// are intact, and removing the leftover is the recovery sled's own write protocol
/// intends.
///
/// Done only while holding the lock sled takes on its `db` file, so that no running
/// sled can be writing one; if another handle still holds it after [`LOCK_WAIT`],
/// nothing is removed (sled's open then reports the lock).
fn remove_unfinished_sled_snapshots(dir: &Path) -> std::io::Result<()> {
    screen_sled_files(dir)?;
    let db = match open_to_read(&dir.join("db")) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    // sled releases its lock from a background thread shortly after a handle is dropped
    // (see LOCK_WAIT): wait for it as `open_db` does.
    let start = Instant::now();
    while db.try_lock().is_err() {
        if start.elapsed() >= LOCK_WAIT {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut removed = false;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") && entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path())?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    // Dropping `db` releases the lock before sled takes it.
    Ok(())
}

/// The longest file of sled's `blobs/` that is read: a blob holds one page, and the
/// largest page a ledger ever made is a leaf of the entries tree, at most 17 entries of
/// at most 64 KiB each (`entry::MAX_ENTRY_LEN`), about 1.1 MiB.
const SLED_BLOB_MAX: u64 = 2 << 20;

/// The most a page-table snapshot of sled's may hold beyond twice its database file:
/// it maps pages to places in that file, and takes far less room than the pages.
const SLED_SNAPSHOT_SLACK: u64 = 1 << 20;

/// The most of sled's database file (or of the vault) that may be unallocated (a hole)
/// before it is refused (see [`mostly_a_hole`]).
const HOLE_SLACK: u64 = 64 << 20;

/// Whether a file is mostly a hole: longer than eight times its allocated size plus
/// [`HOLE_SLACK`]. Neither sled's `db` nor the vault ever leaves one, and reading one
/// costs its maker nothing. (Against eight times the allocated size: a compressing file
/// system, ZFS or btrfs, allocates less than a genuine file's length; sled's data and
/// the vault's records, full of hashes and signatures, compress far less than 8:1. A
/// hole then costs its maker at least an eighth of what it would make the ledger read
/// or write. Review r125.)
#[cfg(unix)]
pub(crate) fn mostly_a_hole(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    m.len() > m.blocks().saturating_mul(512 * 8).saturating_add(HOLE_SLACK)
}

/// Refuses, before sled reads them, files of sled's it would read without bound or
/// block on (review r117): a `snap.*` that is not a regular file (a FIFO blocks the
/// open for good, a link to `/dev/zero` reads until memory runs out) or that is larger
/// than twice the database plus [`SLED_SNAPSHOT_SLACK`], a `conf` longer than
/// [`SLED_CONF_READ`] (sled reads it whole: a sparse gigabyte aborted the process;
/// sled writes about 60 bytes), a `db` longer than eight times its allocated size
/// plus [`HOLE_SLACK`] (mostly a hole: [`mostly_a_hole`]), and a file in `blobs/` that
/// is not a regular file or is longer than [`SLED_BLOB_MAX`].
fn screen_sled_files(dir: &Path) -> std::io::Result<()> {
    let refuse = |why: &'static str| Err(std::io::Error::new(std::io::ErrorKind::InvalidData, why));
    let db = std::fs::symlink_metadata(dir.join("db")).ok();
    let db_len = db.as_ref().map_or(0, std::fs::Metadata::len);
    // sled never leaves holes in its file beyond a segment or so (it does not punch
    // them), and its recovery writes a hole out in full: a terabyte-long hole, which
    // costs its maker nothing, would fill the disk at open (and in the `Inspector`'s
    // copy; review r121).
    #[cfg(unix)]
    if db.as_ref().is_some_and(mostly_a_hole) {
        return refuse("sled's database file is mostly a hole, which sled never makes");
    }
    if let Ok(m) = std::fs::symlink_metadata(dir.join("conf")) {
        if m.len() > SLED_CONF_READ as u64 {
            return refuse("sled's configuration file is longer than sled writes it");
        }
    }
    // sled reads a file under `blobs/` whole as it recovers (a plain open, then
    // `read_to_end`): a FIFO there blocks the open for good, a link to `/dev/zero` or a
    // huge file reads until memory runs out (review h35-b). A blob holds one page
    // larger than about 128 KiB: the ledger writes none now, but a log written before
    // entries were limited to 7 KiB may hold entries of up to 64 KiB, whose pages sled
    // put there (review h35-e). So each must be a regular file no longer than
    // [`SLED_BLOB_MAX`].
    let blobs = dir.join("blobs");
    match std::fs::symlink_metadata(&blobs) {
        Ok(m) if !m.file_type().is_dir() => return refuse("sled's blobs directory is not a directory"),
        Ok(_) => {
            for blob in std::fs::read_dir(&blobs)? {
                let m = std::fs::symlink_metadata(blob?.path())?;
                if !m.file_type().is_file() {
                    return refuse("a file in sled's blobs directory is not a regular file");
                }
                if m.len() > SLED_BLOB_MAX {
                    return refuse("a file in sled's blobs directory is larger than any page of a ledger");
                }
            }
        }
        // None yet: sled makes it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Every name sled 0.34.7 reads its snapshot from: all `snap.*` but
        // `*.in___motion`, `.generating` ones included (one of those that is a regular
        // file is removed before sled opens; any other, a FIFO named
        // `snap.ffffffffffffffff.generating` say, sorts after every genuine name and
        // would be read: review r123).
        if !sled_reads_as_snapshot(&name) {
            continue;
        }
        let m = std::fs::symlink_metadata(entry.path())?;
        if !m.file_type().is_file() {
            return refuse("a file named like sled's snapshot is not a regular file");
        }
        if m.len() > db_len.saturating_mul(2).saturating_add(SLED_SNAPSHOT_SLACK) {
            return refuse("sled's snapshot file is larger than its database could need");
        }
    }
    Ok(())
}

/// Whether sled 0.34.7 may read a file of this name as its page-table snapshot: every
/// `snap.*` but `*.in___motion` (one it is still moving into place).
fn sled_reads_as_snapshot(name: &str) -> bool {
    name.starts_with("snap.") && !name.ends_with(".in___motion")
}

/// Copies the file `from` to a new file `to`, leaving out runs of zeros (a hole in `to`
/// reads back as zeros too). `std::fs::copy` writes a sparse file's holes out in full:
/// a file made with a terabyte-long hole, which costs its maker nothing, would fill the
/// disk of whoever inspects the directory (review r121). Reading a hole still takes
/// time, not disk. What was opened must be a regular file (a link swapped in since the
/// directory was listed may lead to a device; a link is not followed and a FIFO does
/// not block: [`open_to_read`]), no longer than `limit`, not mostly a hole
/// ([`mostly_a_hole`]), and is read no further than its length when opened.
fn copy_sparse(from: &Path, to: &Path, limit: u64) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    const CHUNK: usize = 1 << 20;
    let opened = open_to_read(from)?;
    let meta = opened.metadata()?;
    if !meta.file_type().is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a file to copy is not a regular file",
        ));
    }
    if meta.len() > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a file to copy is longer than sled's file of its kind can be",
        ));
    }
    #[cfg(unix)]
    if mostly_a_hole(&meta) {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "a file to copy is mostly a hole, which sled never makes",
        ));
    }
    let mut src = opened.take(meta.len());
    let mut dst = private_file().open(to)?;
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let chunk = buf.get(..n).unwrap_or_default();
        if chunk.iter().all(|b| *b == 0) {
            dst.seek(SeekFrom::Current(n as i64))?;
        } else {
            dst.write_all(chunk)?;
        }
        len = len.saturating_add(n as u64);
    }
    dst.set_len(len)?;
    Ok(())
}

/// Whether the vault file in `dir` holds a slot of an index record (its kind byte),
/// read without the key and without checking the slots: a mark that the ledger
/// collected identifiers. Read a slot at a time, stopping at the first; a missing file
/// holds none, and anything but a regular file is an error.
pub(crate) fn vault_holds_index_slot(dir: &Path) -> Result<bool, StorageError> {
    let err = |e| StorageError::new("reading the vault", e);
    let path = dir.join(VAULT_FILE);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(err(e)),
        Ok(m) if !m.file_type().is_file() => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the vault is not a regular file",
            )))
        }
        // Read slot by slot to its end otherwise (stop 32's review: a sparse 4 GiB one
        // took 1.5 s, a larger one hours); the vault's own open refuses it too.
        #[cfg(unix)]
        Ok(m) if mostly_a_hole(&m) => {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "the vault is mostly a hole, which the ledger never makes",
            )))
        }
        Ok(_) => {}
    }
    let file = open_to_read(&path).map_err(err)?;
    if !file.metadata().map_err(err)?.file_type().is_file() {
        return Ok(false);
    }
    holds_index_slot(std::io::BufReader::new(file)).map_err(err)
}

/// [`vault_holds_index_slot`] of the vault file's bytes as `read` gives them.
pub(crate) fn holds_index_slot(mut read: impl std::io::Read) -> std::io::Result<bool> {
    let mut slot = [0u8; vault::SLOT];
    let mut first = true;
    loop {
        match read.read_exact(&mut slot) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(false),
            Err(e) => return Err(e),
        }
        // (The first slot is the header.)
        if !std::mem::take(&mut first) && slot.first() == Some(&(vault::Kind::Index as u8)) {
            return Ok(true);
        }
    }
}

/// Whether `dir` holds what sled 0.34 writes when it makes a database: a `db` file and
/// a `conf` file in its own format. sled's recovery rewrites a `db` it cannot read as
/// a torn database; a file of that name that is not one is never handed to it.
fn is_sled_database(dir: &Path) -> bool {
    let regular =
        |name: &str| std::fs::symlink_metadata(dir.join(name)).is_ok_and(|m| m.file_type().is_file());
    if !regular("db") || !regular("conf") {
        return false;
    }
    read_regular_file(&dir.join("conf"), SLED_CONF_READ as u64)
        .ok()
        .flatten()
        .is_some_and(|bytes| is_sled_conf(&bytes, || holds_ledger_files(dir)))
}

/// How much of sled's `conf` file is read to tell it.
const SLED_CONF_READ: usize = 4096;

/// Whether `conf`, the bytes of a `conf` file (only the first [`SLED_CONF_READ`] are
/// looked at, as many as [`is_sled_database`] reads), is one sled 0.34 writes:
/// "segment_size: N\nuse_compression: B\nversion: 0.34\n" and a 4-byte CRC; or 8 bytes
/// at most, which sled itself reads as no configuration and writes again (a power cut
/// can leave it empty: sled never syncs it). Those few bytes count only beside a file
/// that is surely the ledger's own (a vault or a head record, by their first bytes:
/// `beside_ledger_files`, asked only then): never another program's `db`.
pub(crate) fn is_sled_conf(conf: &[u8], beside_ledger_files: impl FnOnce() -> bool) -> bool {
    let bytes = conf.get(..SLED_CONF_READ).unwrap_or(conf);
    if bytes.len() <= 8 {
        return beside_ledger_files();
    }
    let text = || {
        let text = bytes.get(..bytes.len().checked_sub(4)?)?;
        std::str::from_utf8(text).ok()
    };
    text().is_some_and(|text| text.starts_with("segment_size: ") && text.contains("\nversion: 0.34\n"))
}

/// A private copy of a ledger directory's sled files, for reading without changing
/// anything: sled's recovery, run by any open, rewrites its data file (a damaged part,
/// and everything after it, is gone from the file once it has run). Removed on drop.
///
/// Copies live in a directory of this user's own in the temporary directory
/// ([`copies_dir`]), and nowhere else. A process that ends without dropping one (killed,
/// or stopped by a signal) leaves it there, with the subject ids in the log in clear.
/// So each copy holds a lock on its `owner` file while it lives (the system releases it
/// when the process ends), and making a copy first removes every copy in that
/// directory whose owner is gone.
#[derive(Debug)]
pub(crate) struct PrivateCopy {
    path: PathBuf,
    /// Locked while the copy lives.
    _owner: File,
    /// The ledger's head record as it was throughout the copy (see [`PrivateCopy::of`]).
    head: Option<Vec<u8>>,
}

/// The name of the directory that holds this user's private copies, in the temporary
/// directory; followed by `.` and the user id on Unix, where that directory is shared.
const COPIES_DIR: &str = "consent-ledger-inspect";

/// The name every private copy started with before copies had a directory of their own
/// (up to stop 35): made directly in the temporary directory.
const LEGACY_COPY_PREFIX: &str = "consent-ledger-inspect-";

/// How many times a copy is taken before a head record that changes during every one
/// is refused.
const COPY_ATTEMPTS: u32 = 3;

/// The user id a file made in `tmp` gets (the owner every directory of private copies
/// must have): from an unnamed file on Linux (`O_TMPFILE`: nothing is left if the
/// process dies), or else from a file made under a random name and removed at once.
#[cfg(unix)]
fn owner_of_new_files(tmp: &Path) -> std::io::Result<u32> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(0o600).custom_flags(libc::O_TMPFILE);
        // (Not every file system supports it.)
        if let Ok(file) = options.open(tmp) {
            return Ok(file.metadata()?.uid());
        }
    }
    let probe = tmp.join(format!(".{COPIES_DIR}-probe-{}", random_hex()));
    let file = private_file().open(&probe)?;
    let _ = std::fs::remove_file(&probe);
    Ok(file.metadata()?.uid())
}

/// 32 random hexadecimal digits, for a name no one can guess.
fn random_hex() -> String {
    let mut name = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut name);
    name.iter().map(|b| format!("{b:02x}")).collect()
}

/// The directory of this user's private copies in the temporary directory `tmp`,
/// created (mode 0700) if missing, and this user's: on Unix `consent-ledger-inspect.<uid>`,
/// a directory (not a link to one) owned by this user that no other user may write.
/// Also whether it was made here, and the user id (on Unix).
///
/// In a shared temporary directory another user can make a directory of that name
/// first: the copy is then refused, never made in it (set `TMPDIR` to a directory of
/// your own). The check is made once, by name: another user cannot replace the
/// directory afterwards in a temporary directory with the sticky bit (as shared ones
/// have), nor reach into it (mode 0700).
fn copies_dir(tmp: &Path) -> std::io::Result<(PathBuf, bool, u32)> {
    let refuse = |why: &'static str| std::io::Error::new(std::io::ErrorKind::PermissionDenied, why);
    #[cfg(unix)]
    let uid = owner_of_new_files(tmp)?;
    #[cfg(not(unix))]
    let uid = 0;
    let path = if cfg!(unix) {
        tmp.join(format!("{COPIES_DIR}.{uid}"))
    } else {
        tmp.join(COPIES_DIR)
    };
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    let made = match builder.create(&path) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => false,
        Err(e) => return Err(e),
    };
    let meta = std::fs::symlink_metadata(&path)?;
    if !meta.file_type().is_dir() {
        return Err(refuse(
            "the directory for private copies in the temporary directory is not a directory",
        ));
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        if meta.uid() != uid {
            return Err(refuse(
                "the directory for private copies in the temporary directory belongs to another user",
            ));
        }
        if meta.mode() & 0o077 != 0 {
            return Err(refuse(
                "the directory for private copies in the temporary directory is open to other users",
            ));
        }
    }
    Ok((path, made, uid))
}

/// Whether `meta` (of a file not followed if a link) is a directory of the user `uid`
/// (on Unix; elsewhere the temporary directory is the user's own).
fn is_dir_of(meta: &std::fs::Metadata, uid: u32) -> bool {
    #[cfg(unix)]
    let ours = std::os::unix::fs::MetadataExt::uid(meta) == uid;
    #[cfg(not(unix))]
    let ours = {
        let _ = uid;
        true
    };
    meta.file_type().is_dir() && ours
}

/// Removes the copy at `path` if its owner is gone: a directory of the user `uid`
/// (not a link) whose `owner` file is a regular file that can be locked. Opening the
/// `owner` file neither follows a link nor blocks on a FIFO. Best effort.
fn remove_if_abandoned(path: &Path, uid: u32) {
    if !std::fs::symlink_metadata(path).is_ok_and(|m| is_dir_of(&m, uid)) {
        return;
    }
    let owner = path.join("owner");
    if !std::fs::symlink_metadata(&owner).is_ok_and(|m| m.file_type().is_file()) {
        return;
    }
    let Ok(owner) = open_to_read(&owner) else {
        return;
    };
    if owner.metadata().is_ok_and(|m| m.file_type().is_file()) && owner.try_lock().is_ok() {
        // Held locked until all is removed.
        remove_copy(path);
    }
}

/// Removes the copies in `copies` (the directory of this user's copies) whose owners
/// are gone, but `mine`, the copy just made. Only that directory is listed: nothing else
/// in the temporary directory is looked at. A copy's `owner` file appears only once it
/// is locked (it is locked under another name, then renamed), so a copy being made is
/// never taken for an abandoned one.
///
/// Left: a copy whose `owner` file never appeared (a process killed while it made the
/// directory, before it copied anything) and an empty directory (one killed after its
/// copy's `owner` file was removed, the last file to go: [`remove_copy`]). Neither holds
/// anything of a ledger's, and removing them could race with a copy being made.
fn remove_abandoned_copies(copies: &Path, mine: &Path, uid: u32) {
    let Ok(items) = std::fs::read_dir(copies) else {
        return;
    };
    for item in items.flatten() {
        let path = item.path();
        if path != mine {
            remove_if_abandoned(&path, uid);
        }
    }
}

/// Removes the copies that versions up to stop 35 made directly in the temporary
/// directory `tmp` (named [`LEGACY_COPY_PREFIX`]) whose owners are gone. This lists
/// the whole temporary directory, so it is done only when the directory of copies is
/// made ([`copies_dir`]): once, on a machine that ran an older version, until the
/// temporary directory is cleared. Only this user's directories are looked into: in a
/// shared temporary directory another user could plant anything (a FIFO named `owner`
/// would block the open; see [`remove_if_abandoned`]).
fn remove_legacy_copies(tmp: &Path, uid: u32) {
    let Ok(items) = std::fs::read_dir(tmp) else {
        return;
    };
    for item in items.flatten() {
        let named = item
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(LEGACY_COPY_PREFIX));
        if named {
            remove_if_abandoned(&item.path(), uid);
        }
    }
}

/// Removes a private copy's directory, its `owner` file last and only once everything
/// else in it is gone: a process that dies part-way (or a failure) leaves a directory
/// still marked as a copy, which the next [`remove_abandoned_copies`] finds, never its
/// data without its mark. Whether all of it was removed.
fn remove_copy(path: &Path) -> bool {
    remove_copy_with(path, &mut |p| match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_dir() => std::fs::remove_dir_all(p),
        Ok(_) => std::fs::remove_file(p),
        Err(e) => Err(e),
    })
}

/// [`remove_copy`], removing each file or directory in the copy with `remove`.
fn remove_copy_with(path: &Path, remove: &mut dyn FnMut(&Path) -> std::io::Result<()>) -> bool {
    let Ok(items) = std::fs::read_dir(path) else {
        return false;
    };
    // Listed first, then removed (not while the directory is read).
    let mut rest = Vec::new();
    let mut listed = true;
    for item in items {
        match item {
            Ok(item) if item.file_name() != "owner" => rest.push(item.path()),
            Ok(_) => {}
            Err(_) => listed = false,
        }
    }
    let mut rest_gone = listed;
    for p in &rest {
        rest_gone &= remove(p).is_ok();
    }
    if !rest_gone {
        return false;
    }
    match remove(&path.join("owner")) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(_) => return false,
    }
    std::fs::remove_dir(path).is_ok()
}

/// The name of the page-table snapshot that sled 0.34.7 reads as it recovers, among
/// the names in its directory, once the `*.generating` ones are gone (see
/// `remove_unfinished_sled_snapshots`; the private copy leaves them out): it lists
/// every name starting `snap.` but the `*.in___motion` ones, sorts them (as paths of
/// one directory: by their bytes) and reads the last, and only that one
/// (`pagecache::snapshot::read_snapshot`, `Config::get_snapshot_files`). One that
/// cannot be read or does not check makes the open fail; it never goes back to another.
fn snapshot_sled_reads<'a>(
    names: impl IntoIterator<Item = &'a std::ffi::OsStr>,
) -> Option<&'a std::ffi::OsStr> {
    names
        .into_iter()
        .filter(|name| {
            let text = name.to_string_lossy();
            sled_reads_as_snapshot(&text) && !text.ends_with(".generating")
        })
        .max_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()))
}

impl PrivateCopy {
    /// Copies the sled files of the database in `dir` (none of the ledger's own files),
    /// holding its lock meanwhile, with the head record as it was throughout; `None` if
    /// `dir` holds no sled database. Made in the system's temporary directory (see
    /// [`copies_dir`]).
    ///
    /// The head record is read under the lock too, before and after the copy, and must
    /// be the same both times, so that it is from the moment the sled files are from.
    /// A ledger writes it while sled holds that lock, with one exception: the ticker's
    /// thread of a ledger being closed holds the head writer, not the ledger, and may
    /// write it once more as sled lets go. And a read during a write may be torn. A
    /// record that changed is read again with a new copy, [`COPY_ATTEMPTS`] times in
    /// all, the lock held throughout.
    ///
    /// # Errors
    /// Another handle holds the lock (close any `Ledger` first); a head record that
    /// changed during every copy; the directory for copies is not this user's own;
    /// I/O failures.
    pub(crate) fn of(dir: &Path) -> Result<Option<PrivateCopy>, StorageError> {
        Self::of_in(dir, &std::env::temp_dir(), &mut |_| {})
    }

    /// [`PrivateCopy::of`], in the temporary directory `tmp`, calling `copied` after
    /// each attempt's copy (with the attempt's number) before the head record is read
    /// again.
    fn of_in(
        dir: &Path,
        tmp: &Path,
        copied: &mut dyn FnMut(u32),
    ) -> Result<Option<PrivateCopy>, StorageError> {
        let err = |e| StorageError::new("copying the database to read it", e);
        if !is_sled_database(dir) {
            return Ok(None);
        }
        // Nothing sled would refuse is copied (a huge snapshot file, say).
        screen_sled_files(dir).map_err(err)?;
        let db = open_to_read(&dir.join("db")).map_err(err)?;
        let db_meta = db.metadata().map_err(err)?;
        let db_len = db_meta.len();
        if !db_meta.file_type().is_file() {
            return Err(err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "sled's database file is not a regular file",
            )));
        }
        // As sled waits for its lock (a handle just dropped may hold it a moment).
        let start = Instant::now();
        loop {
            match db.try_lock() {
                Ok(()) => break,
                Err(std::fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => {
                    return Err(err(std::io::Error::other(
                        "could not acquire lock: a ledger has the directory open",
                    )))
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
            }
        }
        let (copies, made, uid) = copies_dir(tmp).map_err(err)?;
        if made {
            remove_legacy_copies(tmp, uid);
        }
        let head_file = HeadFile::new(dir);
        for attempt in 0..COPY_ATTEMPTS {
            let head = head_file.read()?;
            let mut copy = Self::new_in(&copies).map_err(err)?;
            if attempt == 0 {
                remove_abandoned_copies(&copies, &copy.path, uid);
            }
            copy.copy_files(dir, db_len).map_err(err)?;
            copied(attempt);
            if head_file.read()? == head {
                copy.head = head;
                // Dropping `db` releases the lock.
                drop(db);
                return Ok(Some(copy));
            }
            drop(copy);
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(StorageError::new(
            "reading the head record",
            std::io::Error::other("the head record changed while the database was copied, every time"),
        ))
    }

    /// A new, empty copy in `copies`, its `owner` file locked.
    fn new_in(copies: &Path) -> std::io::Result<PrivateCopy> {
        let path = copies.join(random_hex());
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        builder.create(&path)?;
        // Locked under another name, then renamed: an `owner` file is always locked
        // while its copy lives.
        let owner = private_file().open(path.join("owner.new")).and_then(|f| {
            f.try_lock().map_err(|e| match e {
                std::fs::TryLockError::Error(e) => e,
                std::fs::TryLockError::WouldBlock => std::io::Error::other("the copy's owner file is locked"),
            })?;
            std::fs::rename(path.join("owner.new"), path.join("owner"))?;
            Ok(f)
        });
        match owner {
            Ok(owner) => Ok(PrivateCopy {
                path,
                _owner: owner,
                head: None,
            }),
            Err(e) => {
                let _ = std::fs::remove_dir_all(&path);
                Err(e)
            }
        }
    }

    /// Copies sled's files from `dir`, whose `db` is `db_len` bytes long, into the copy:
    /// `db`, `conf`, the one page-table snapshot sled would read ([`snapshot_sled_reads`]:
    /// no other is read, however many there are) and the files in `blobs/`.
    fn copy_files(&self, dir: &Path, db_len: u64) -> std::io::Result<()> {
        let mut snapshots = Vec::new();
        for item in std::fs::read_dir(dir)? {
            let item = item?;
            let name = item.file_name();
            let kind = item.file_type()?;
            if name == "db" || name == "conf" {
                if kind.is_file() {
                    // The screen's bounds again, on what is opened: a file swapped in
                    // since the screen is held to them too (review h35-k).
                    let limit = if name == "conf" {
                        SLED_CONF_READ as u64
                    } else {
                        u64::MAX
                    };
                    copy_sparse(&item.path(), &self.path.join(&name), limit)?;
                }
            } else if name.as_encoded_bytes().starts_with(b"snap.") {
                snapshots.push(name);
            } else if name == "blobs" && kind.is_dir() {
                // Screened; what is opened is checked again (a file swapped in since
                // may be longer), as sled would read it whole in the copy.
                let blobs = self.path.join("blobs");
                let mut builder = std::fs::DirBuilder::new();
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(&blobs)?;
                for blob in std::fs::read_dir(item.path())? {
                    let blob = blob?;
                    if blob.file_type()?.is_file() {
                        copy_sparse(&blob.path(), &blobs.join(blob.file_name()), SLED_BLOB_MAX)?;
                    }
                }
            }
        }
        // Only the snapshot sled reads. Whatever is in its place is copied or refused
        // (`copy_sparse`): were a lower one copied instead, sled would read that. Not
        // copied: one sled never finished (`*.generating`: see
        // `remove_unfinished_sled_snapshots`), one it is moving into place
        // (`*.in___motion`: never read, and not bounded by `screen_sled_files`; stop
        // 32's review: a sparse one of 8 GiB took 47 s to copy), and every older one
        // (each within the screen's bound, but hundreds of sparse ones read gigabytes
        // of zeros).
        if let Some(name) = snapshot_sled_reads(snapshots.iter().map(|n| n.as_os_str())) {
            let limit = db_len.saturating_mul(2).saturating_add(SLED_SNAPSHOT_SLACK);
            copy_sparse(&dir.join(name), &self.path.join(name), limit)?;
        }
        Ok(())
    }

    /// Where the copy is.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The ledger's head record file's bytes as they were throughout the copy
    /// (as [`HeadFile::read`] gives them).
    pub(crate) fn head(&self) -> Option<&[u8]> {
        self.head.as_deref()
    }
}

impl Drop for PrivateCopy {
    fn drop(&mut self) {
        // Its `owner` file last, while this handle still holds its lock.
        remove_copy(&self.path);
    }
}

/// The head record's file (see `ledger::head`), beside sled's: kept apart from the
/// store, so that what writes it holds no part of sled (the ticker's thread does).
#[derive(Debug)]
pub(crate) struct HeadFile {
    dir: PathBuf,
    /// Opened on the first write after creation.
    file: std::sync::Mutex<Option<File>>,
}

impl HeadFile {
    /// The head record file of the ledger in `dir`.
    pub(crate) fn new(dir: &Path) -> Self {
        HeadFile {
            dir: dir.to_path_buf(),
            file: std::sync::Mutex::new(None),
        }
    }

    /// Its bytes, if there is one: at most one byte more than the file should hold.
    /// Anything but a regular file in its place is read as no bytes: a damaged record,
    /// which opening refuses.
    pub(crate) fn read(&self) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.dir.join(HEAD_FILE);
        let read = read_regular_file(&path, crate::ledger::head::FILE_LEN as u64 + 1);
        match read.map_err(|e| StorageError::new("reading the head record", e))? {
            None if std::fs::symlink_metadata(&path).is_ok() => Ok(Some(Vec::new())),
            bytes => Ok(bytes),
        }
    }

    /// Creates (or replaces) the file with `bytes`, atomically: written to a new file,
    /// synced, renamed into place, and the directory synced.
    pub(crate) fn create(&self, bytes: &[u8]) -> Result<(), StorageError> {
        let err = |e| StorageError::new("creating the head record", e);
        let tmp = self.dir.join(HEAD_TMP);
        destroy_file(&tmp, crate::ledger::head::FILE_LEN as u64).map_err(err)?;
        let mut file = private_file().open(&tmp).map_err(err)?;
        std::io::Write::write_all(&mut file, bytes).map_err(err)?;
        file.sync_all().map_err(err)?;
        drop(file);
        let mut open = self
            .file
            .lock()
            .map_err(|_| err(std::io::Error::other("lock poisoned")))?;
        std::fs::rename(&tmp, self.dir.join(HEAD_FILE)).map_err(err)?;
        *open = None;
        sync_dir(&self.dir).map_err(err)
    }

    /// Writes `bytes` at `offset` of the file, which must exist; synced if `sync`.
    pub(crate) fn put(&self, offset: u64, bytes: &[u8], sync: bool) -> Result<(), StorageError> {
        use std::io::{Seek, Write};
        let err = |e| StorageError::new("writing the head record", e);
        let mut file = self
            .file
            .lock()
            .map_err(|_| err(std::io::Error::other("lock poisoned")))?;
        let file = match &mut *file {
            Some(f) => f,
            slot => {
                let path = self.dir.join(HEAD_FILE);
                // Never through a link, nor onto anything but a regular file; never
                // created here (a half-made file would stop every open).
                if std::fs::symlink_metadata(&path).is_ok_and(|m| !m.file_type().is_file()) {
                    return Err(err(std::io::Error::other(
                        "the head record is not a regular file",
                    )));
                }
                let f = std::fs::OpenOptions::new().write(true).open(&path).map_err(err)?;
                slot.insert(f)
            }
        };
        file.seek(std::io::SeekFrom::Start(offset)).map_err(err)?;
        file.write_all(bytes).map_err(err)?;
        if sync {
            file.sync_data().map_err(err)?;
        }
        Ok(())
    }
}

/// Whether `dir` holds nothing but what a new ledger's first open, cut short before
/// sled made its data file, leaves: no `db`; at most an empty `blobs/` directory,
/// sled's `conf` (4 KiB at most) and a vault holding its header alone (the mark made
/// first, below). An empty directory too. sled's files count only beside the vault's
/// header: the mark is synced before sled makes anything, so a directory holding a
/// `conf` or `blobs/` without it is another program's, not left alone otherwise.
pub(crate) fn is_unfinished_creation(dir: &Path) -> bool {
    let Ok(listing) = std::fs::read_dir(dir) else {
        return false;
    };
    // The mark, or what a first open cut short while writing it leaves (an empty file
    // or a part of the header): the next open writes it whole before sled starts.
    let marked = read_regular_file(&dir.join(VAULT_FILE), vault::EMPTY_LEN as u64 + 1)
        .ok()
        .flatten()
        .is_some_and(|bytes| is_mark_or_part_of_it(&bytes));
    listing.into_iter().all(|item| {
        let Ok(item) = item else {
            return false;
        };
        let Ok(kind) = item.file_type() else {
            return false;
        };
        let name = item.file_name();
        let small = |limit: usize| {
            read_regular_file(&item.path(), limit as u64 + 1)
                .ok()
                .flatten()
                .filter(|bytes| bytes.len() <= limit)
        };
        if name == "blobs" {
            marked && kind.is_dir() && std::fs::read_dir(item.path()).is_ok_and(|mut d| d.next().is_none())
        } else if name == "conf" {
            marked && kind.is_file() && small(4096).is_some()
        } else if name == VAULT_FILE {
            marked
        } else {
            false
        }
    })
}

/// Whether `bytes` (a vault file's content) are a new ledger's mark, the vault's header
/// alone, or what a write of it cut short leaves (empty, or its start).
pub(crate) fn is_mark_or_part_of_it(bytes: &[u8]) -> bool {
    bytes.len() <= vault::EMPTY_LEN && (bytes.starts_with(vault::MAGIC) || vault::header().starts_with(bytes))
}

/// Marks `dir` as a new ledger's before sled makes anything there: the vault, holding
/// its header alone, synced with its directory entry. Every state a cut-short first
/// open can leave then holds it, and a later open tells the directory as the ledger's
/// by it (sled's `conf` may be empty after a power cut: sled never syncs it).
fn mark_new_ledger(dir: &Path) -> std::io::Result<()> {
    let path = dir.join(VAULT_FILE);
    let header = vault::header();
    let mut file = match read_regular_file(&path, vault::EMPTY_LEN as u64 + 1)? {
        // Made whole (by a first open that went on, or this one's own earlier call).
        Some(bytes) if bytes.len() >= header.len() || !header.starts_with(&bytes) => return Ok(()),
        // Left empty or part-written by a first open cut short: written whole now,
        // before sled makes anything (it would otherwise not be, until after genesis).
        Some(_) => std::fs::OpenOptions::new().write(true).open(&path)?,
        None if std::fs::symlink_metadata(&path).is_ok() => return Ok(()),
        None => private_file().open(&path)?,
    };
    std::io::Write::write_all(&mut file, &header)?;
    file.sync_all()?;
    sync_dir(dir)
}

/// Whether `dir` holds the vault or the head record of a ledger, told by their first
/// bytes (a file that merely has one of their names is not enough).
fn holds_ledger_files(dir: &Path) -> bool {
    let read = |name: &str, limit: usize| read_regular_file(&dir.join(name), limit as u64).ok().flatten();
    let vault = read(VAULT_FILE, vault::MAGIC.len()).is_some_and(|bytes| is_vault_start(&bytes));
    let head = read(HEAD_FILE, crate::ledger::head::FILE_LEN).is_some_and(|bytes| is_head_start(&bytes));
    vault || head
}

/// Whether a file's bytes start as a ledger's vault does: with its magic.
pub(crate) fn is_vault_start(bytes: &[u8]) -> bool {
    bytes.get(..vault::MAGIC.len()) == Some(vault::MAGIC)
}

/// Whether a file's bytes start as a ledger's head record does: either of its two slots
/// (one may be torn) starts with the head record's magic.
pub(crate) fn is_head_start(bytes: &[u8]) -> bool {
    use crate::ledger::head::{FILE_LEN, MAGIC, SLOT};
    bytes
        .get(..FILE_LEN)
        .unwrap_or(bytes)
        .chunks(SLOT)
        .any(|slot| slot.starts_with(MAGIC))
}

/// Whether sled failed to open because another handle holds the database's lock.
fn is_lock_held(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::Other && e.to_string().starts_with("could not acquire lock")
}

/// How opening the directory went, before any ledger-level checks.
pub(crate) enum Opened {
    /// A sled database with only this crate's trees (possibly all empty).
    Store(Box<SledStore>),
    /// The directory holds something else; nothing was written to it.
    Foreign,
}

impl SledStore {
    /// The most a state snapshot of this ledger can hold: its state comes from the log's
    /// entries, each larger than what it adds to the state, so four times sled's data
    /// file and a megabyte is ample. What `snapshot` reads and what destroying one
    /// zeroes are bounded by it.
    fn snapshot_bound(&self) -> u64 {
        let db = std::fs::metadata(self.dir.join("db")).map_or(0, |m| m.len());
        db.saturating_mul(4).saturating_add(1 << 20)
    }

    /// Opens (or creates) the store in `dir`. A non-empty directory without a sled
    /// database, or a sled database with foreign trees, is reported as foreign and
    /// left untouched.
    pub(crate) fn open(dir: &Path, background_flush_ms: Option<u64>) -> Result<Opened, StorageError> {
        Self::open_inner(dir, background_flush_ms, true, false)
    }

    /// Opens the store in a private copy of a directory already told to hold a sled
    /// database (the copy holds sled's files only).
    pub(crate) fn open_copy(copy: &PrivateCopy) -> Result<Opened, StorageError> {
        Self::open_inner(copy.path(), None, false, true)
    }

    fn open_inner(
        dir: &Path,
        background_flush_ms: Option<u64>,
        create: bool,
        told_sled: bool,
    ) -> Result<Opened, StorageError> {
        let fresh: bool;
        match std::fs::read_dir(dir) {
            Ok(_) => {
                // Empty, or what a first open cut short leaves (no `db` yet): a new
                // ledger's, made here. Otherwise it must hold sled's database.
                fresh = create && is_unfinished_creation(dir);
                if !fresh && !told_sled && !is_sled_database(dir) {
                    return Ok(Opened::Foreign);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !create => return Ok(Opened::Foreign),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fresh = true;
                // Ours to create: readable by this user only (it will hold subject
                // secrets and the log), and its entry in the parent made durable.
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                // Every directory this creates, the ledger's and any missing one above
                // it: each one's entry in its parent is made durable (syncing only the
                // last parent could lose the whole new tree on a file system that logs
                // each directory apart; stop 32's review).
                let created: Vec<&Path> = dir
                    .ancestors()
                    .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
                    .collect();
                builder
                    .create(dir)
                    .map_err(|e| StorageError::new("creating the ledger directory", e))?;
                for made in created.iter().rev() {
                    if let Some(parent) = made.parent().filter(|p| !p.as_os_str().is_empty()) {
                        sync_dir(parent)
                            .map_err(|e| StorageError::new("creating the ledger directory", e))?;
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(Opened::Foreign),
            Err(e) => return Err(StorageError::new("reading the ledger directory", e)),
        }
        if fresh {
            // A new ledger in a directory that existed: made readable by this user only,
            // as one created here is, before sled makes its files (with the process's
            // umask: its `db` holds the log, subject ids and decision records).
            mark_new_ledger(dir).map_err(|e| StorageError::new("creating the ledger", e))?;
            // Only if this user owns it (the owner of the vault just made here): a
            // directory another user provided, such as one shared with this user's
            // group, is left as it is, also for a process that may change any file.
            #[cfg(unix)]
            {
                use std::os::unix::fs::{MetadataExt, PermissionsExt};
                let owner = |p: &Path| std::fs::metadata(p).map(|m| m.uid());
                let ours = matches!((owner(dir), owner(&dir.join(VAULT_FILE))), (Ok(d), Ok(v)) if d == v);
                if ours {
                    match std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)) {
                        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {}
                        other => other.map_err(|e| StorageError::new("creating the ledger", e))?,
                    }
                }
            }
            // sled writes its `conf` in two writes and never syncs it: one left by a first
            // open cut short may be cut between them, which sled refuses as corrupt for
            // good. There is no database yet, and sled writes it again.
            match std::fs::symlink_metadata(dir.join("conf")) {
                Ok(m) if m.file_type().is_file() => std::fs::remove_file(dir.join("conf"))
                    .map_err(|e| StorageError::new("creating the ledger", e))?,
                _ => {}
            }
        }
        remove_unfinished_sled_snapshots(dir).map_err(|e| StorageError::new("opening the database", e))?;
        let config = sled::Config::new().path(dir).flush_every_ms(background_flush_ms);
        let db = open_db(&config).map_err(err("opening the database"))?;
        let default_name: &[u8] = b"__sled__default";
        let (names, default_empty) =
            sled_call("opening the database", || Ok((db.tree_names(), db.is_empty())))?;
        for name in names {
            let known = name.as_ref() == default_name || TREES.iter().any(|t| t.as_bytes() == name.as_ref());
            if !known {
                return Ok(Opened::Foreign);
            }
        }
        if !default_empty {
            return Ok(Opened::Foreign);
        }
        let tree = |name: &str| sled_call("opening a tree", || db.open_tree(name));
        let vault = LazyVault::new(dir.join(VAULT_FILE));
        // A database sled has just made: sled's configuration file is synced (sled never
        // does; opening tells a sled database by it). (The vault of a new ledger was made
        // first, as its mark; one missing otherwise is made only once the open knows it
        // creates a ledger: `allow_vault_creation`.)
        if !sled_call("opening the database", || Ok(db.was_recovered()))? {
            std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("conf"))
                .and_then(|f| f.sync_all())
                .and_then(|()| sync_dir(dir))
                .map_err(|e| StorageError::new("syncing the database configuration", e))?;
        }
        Ok(Opened::Store(Box::new(SledStore {
            entries: tree("entries")?,
            meta: tree("meta")?,
            decisions: tree("decisions")?,
            vault,
            // With write access: Windows flushes a file only through a handle that may
            // write it (Linux and macOS take any handle).
            data_file: std::fs::OpenOptions::new()
                .write(true)
                .open(dir.join("db"))
                .map_err(|e| StorageError::new("opening the database", e))?,
            dir: dir.to_path_buf(),
            db,
        })))
    }
}

impl Backend for SledStore {
    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(sled_call("reading metadata", || self.meta.get(key))?.map(|v| v.to_vec()))
    }

    fn set_meta(&self, key: &str, value: &[u8]) -> Result<(), StorageError> {
        sled_call("writing metadata", || self.meta.insert(key, value))?;
        Ok(())
    }

    fn append_entry(&self, seq: u64, bytes: &[u8]) -> Result<(), StorageError> {
        let previous = sled_call("appending an entry", || {
            self.entries
                .compare_and_swap(seq.to_be_bytes(), None as Option<&[u8]>, Some(bytes))
        })?;
        previous.map_err(|_| {
            StorageError::new(
                "appending an entry",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "an entry already exists at that position",
                ),
            )
        })
    }

    fn entry(&self, seq: u64) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(sled_call("reading an entry", || self.entries.get(seq.to_be_bytes()))?.map(|v| v.to_vec()))
    }

    fn entries_from(&self, from: u64) -> Items<'_, RawEntry> {
        let items = guarded_items("reading entries", self.entries.range(from.to_be_bytes()..));
        Box::new(items.map(|item| {
            let (k, v) = item?;
            let key = <[u8; 8]>::try_from(k.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| k.to_vec());
            Ok((key, Bytes(v)))
        }))
    }

    fn is_empty(&self) -> Result<bool, StorageError> {
        // A missing vault holds nothing: not opened (which could make it).
        Ok(sled_call("reading the database", || {
            Ok(self.entries.is_empty() && self.meta.is_empty())
        })? && (!vault_exists(&self.dir) || self.vault.get()?.is_empty()?))
    }

    fn put_index(&self, lookup: &[u8; 32], record: &[u8]) -> Result<(), StorageError> {
        self.vault.get()?.put(Kind::Index, lookup, record)
    }

    fn remove_index(&self, lookup: &[u8; 32]) -> Result<(), StorageError> {
        self.vault.get()?.remove(Kind::Index, lookup)
    }

    fn remove_index_if(
        &self,
        lookup: &[u8; 32],
        remove: &dyn Fn(&[u8]) -> bool,
    ) -> Result<bool, StorageError> {
        self.vault.get()?.remove_if(Kind::Index, lookup, remove)
    }

    fn index_records(&self, part: u64, parts: u64) -> Items<'_, (Vec<u8>, Vec<u8>)> {
        match self.vault.get() {
            Ok(vault) => Box::new(vault.records_in(Kind::Index, part, parts)),
            Err(e) => Box::new(std::iter::once(Err(e))),
        }
    }

    fn secret(&self, subject: &str) -> Result<Option<Zeroizing<Vec<u8>>>, StorageError> {
        self.vault.get()?.get(Kind::Secret, subject.as_bytes())
    }

    fn put_secret(&self, subject: &str, secret: &[u8; 32]) -> Result<(), StorageError> {
        self.vault.get()?.put(Kind::Secret, subject.as_bytes(), secret)
    }

    fn remove_secret(&self, subject: &str) -> Result<(), StorageError> {
        self.vault.get()?.remove(Kind::Secret, subject.as_bytes())
    }

    fn open_parts(&self) -> Result<(), StorageError> {
        self.vault.get().map(|_| ())
    }

    fn vault_drops_records(&self) -> Result<bool, StorageError> {
        self.vault.get()?.drops_records()
    }

    fn set_vault_digest_key(&self, key: DigestKey) {
        // (Only the first key counts; a vault already open keeps its unknown digest.)
        let _ = self.vault.digest_key.set(key);
    }

    fn vault_index_digest(&self) -> Result<Option<IndexDigest>, StorageError> {
        self.vault.get()?.index_digest()
    }

    fn ready(&self) -> Result<(), StorageError> {
        self.vault.get()?.finish_repair()
    }

    fn allow_vault_creation(&self) {
        self.vault
            .create
            .store(true, std::sync::atomic::Ordering::Release);
    }

    fn snapshot(&self) -> Result<Option<Vec<u8>>, StorageError> {
        // Anything but a regular file in its place is no snapshot, ignored like an
        // unusable one; writing or destroying the snapshot replaces it. Nor is a file
        // longer than any snapshot of this log can be (its state comes from the log's
        // entries, which are larger): not read, so that a huge sparse file costs
        // neither memory nor time.
        let bound = self.snapshot_bound();
        let path = self.dir.join(SNAPSHOT_FILE);
        // Nor is a file that is mostly a hole (a snapshot is written in full, never
        // sparse): within the bound, which is large for a large log (four times its
        // database), such a file would be read in full into memory (stop 32's review).
        #[cfg(unix)]
        if std::fs::symlink_metadata(&path).is_ok_and(|m| mostly_a_hole(&m)) {
            return Ok(None);
        }
        let bytes = read_regular_file(&path, bound.saturating_add(1))
            .map_err(|e| StorageError::new("reading the state snapshot", e))?;
        Ok(bytes.filter(|b| (b.len() as u64) <= bound))
    }

    fn put_snapshot(&self, bytes: &[u8]) -> Result<(), StorageError> {
        use std::io::Write;
        let err = |e| StorageError::new("writing the state snapshot", e);
        // A temporary file left by an older version of this code is destroyed.
        destroy_file(&self.dir.join(SNAPSHOT_TMP), self.snapshot_bound()).map_err(err)?;
        let target = self.dir.join(SNAPSHOT_FILE);
        // Written over the previous snapshot, in place: a new file renamed over it
        // would release the old one's blocks with its lookup pseudonyms still in them,
        // where an erasure later could not reach them. A crash part-way leaves a
        // snapshot whose tag fails, and the next open replays the log instead.
        //
        // Anything but a regular file is not written through: a symbolic link (it would
        // write wherever it points), a FIFO or a directory lose their name, and a new
        // file is made. (A second name of the file, a hard link, is the same file, as
        // for the vault: only its owner can make one.)
        let ours = std::fs::symlink_metadata(&target).map(|m| m.file_type().is_file());
        let (mut file, made) = match ours {
            Ok(true) => (
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&target)
                    .map_err(err)?,
                false,
            ),
            Ok(false) => {
                remove_name(&target).map_err(err)?;
                (private_file().open(&target).map_err(err)?, true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                (private_file().open(&target).map_err(err)?, true)
            }
            Err(e) => return Err(err(e)),
        };
        // What this code could have written before: no more than the bound (see
        // `snapshot`); past it, a file made huge by someone else holds nothing of ours.
        let old_len = file.metadata().map_err(err)?.len().min(self.snapshot_bound());
        file.write_all(bytes).map_err(err)?;
        // What the old snapshot held past the new one's end is zeroed, and the zeros
        // synced, before it is cut off, for the same reason.
        write_zeros(&mut file, old_len.saturating_sub(bytes.len() as u64)).map_err(err)?;
        file.sync_all().map_err(err)?;
        file.set_len(bytes.len() as u64).map_err(err)?;
        file.sync_all().map_err(err)?;
        // Only a new name needs its directory synced.
        if made {
            sync_dir(&self.dir).map_err(err)?;
        }
        Ok(())
    }

    fn destroy_snapshot(&self) -> Result<(), StorageError> {
        let bound = self.snapshot_bound();
        for name in [SNAPSHOT_TMP, SNAPSHOT_FILE] {
            destroy_file(&self.dir.join(name), bound)
                .map_err(|e| StorageError::new("destroying the state snapshot", e))?;
        }
        Ok(())
    }

    fn put_decision(&self, key: &[u8], record: &[u8]) -> Result<(), StorageError> {
        sled_call("writing a decision record", || self.decisions.insert(key, record))?;
        Ok(())
    }

    fn put_new_decision(&self, key: &[u8], record: &[u8]) -> Result<(), StorageError> {
        sled_call("writing a decision record", || {
            self.decisions.compare_and_swap(key, None::<&[u8]>, Some(record))
        })?
        .map_err(|_| {
            StorageError::new(
                "writing a decision record",
                std::io::Error::new(
                    std::io::ErrorKind::AlreadyExists,
                    "a record is already stored under the next record number",
                ),
            )
        })
    }

    fn decision(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(sled_call("reading a decision record", || self.decisions.get(key))?.map(|v| v.to_vec()))
    }

    fn decisions(&self, prefix: &[u8]) -> Items<'_, (Vec<u8>, Vec<u8>)> {
        let items = guarded_items("reading decision records", self.decisions.scan_prefix(prefix));
        Box::new(items.map(|item| {
            let (k, v) = item?;
            Ok((k.to_vec(), v.to_vec()))
        }))
    }

    fn last_decision_key(&self, prefix: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let last = sled_call("reading decision records", || {
            self.decisions.scan_prefix(prefix).next_back().transpose()
        })?;
        Ok(last.map(|(k, _)| k.to_vec()))
    }

    fn sync(&self) -> Result<(), StorageError> {
        // The vault first: once this returns, no entry is durable while the index record
        // it depends on is not. (Between syncs sled may write entries out first; a lost
        // index record makes its identifier unknown: fail closed. docs/format.md.)
        self.vault.get()?.sync()?;
        sled_call("flushing to disk", || self.db.flush())?;
        // sled's flush ends in sync_file_range; fsync the file so the drive cache and
        // metadata are flushed too (fdatasync reaches the inode from any handle).
        self.data_file
            .sync_data()
            .map_err(|e| StorageError::new("syncing the data file", e))
    }
}

#[cfg(test)]
#[allow(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;

    #[test]
    fn sleds_conf_is_told_by_its_text_or_beside_the_ledgers_files() {
        let mut conf = b"segment_size: 524288\nuse_compression: false\nversion: 0.34\n".to_vec();
        conf.extend_from_slice(&[1, 2, 3, 4]);
        assert!(is_sled_conf(&conf, || unreachable!("asked about a written conf")));
        // Another version, another first line, not UTF-8, the CRC cut into the text.
        let other = String::from_utf8(conf.clone())
            .unwrap_or_default()
            .replace("0.34", "0.35");
        assert!(!is_sled_conf(other.as_bytes(), || true));
        assert!(!is_sled_conf(&conf[1..], || true));
        let mut bad = conf.clone();
        bad[20] = 0xff;
        assert!(!is_sled_conf(&bad, || true));
        assert!(!is_sled_conf(&conf[..conf.len() - 4], || true));
        // Past what is read, nothing counts.
        let far = [vec![b'#'; SLED_CONF_READ], conf].concat();
        assert!(!is_sled_conf(&far, || true));
        // 8 bytes at most: as the ledger's files say.
        for short in [&b""[..], b"12345678"] {
            assert!(is_sled_conf(short, || true));
            assert!(!is_sled_conf(short, || false));
        }
    }

    /// A vault that is mostly a hole is refused before it is read for an index slot,
    /// and a private copy leaves out a sled snapshot in motion (sled never reads one;
    /// both were read to their end by `Inspector::open`: stop 32's review).
    #[cfg(unix)]
    #[test]
    fn what_inspecting_would_read_without_bound_is_refused_or_left_out() {
        let dir = tempfile::tempdir().unwrap();
        let vault = File::create(dir.path().join(VAULT_FILE)).unwrap();
        vault.set_len(4 << 30).unwrap();
        assert!(vault_holds_index_slot(dir.path()).is_err());
        drop(vault);
        std::fs::remove_file(dir.path().join(VAULT_FILE)).unwrap();
        {
            let Ok(Opened::Store(_store)) = SledStore::open(dir.path(), None) else {
                panic!("no store");
            };
        }
        let moving = "snap.0000000000000001.in___motion";
        File::create(dir.path().join(moving))
            .unwrap()
            .set_len(8 << 30)
            .unwrap();
        let copy = PrivateCopy::of(dir.path()).unwrap().unwrap();
        assert!(copy.path().join("db").is_file());
        assert!(!copy.path().join(moving).exists());
    }

    /// A closed store in a new temporary directory, and a temporary directory of its
    /// own for the private copies.
    fn store_and_tmp() -> (tempfile::TempDir, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        for _ in 0..2 {
            // Opened twice, with something written: sled writes its page-table snapshot
            // as it recovers.
            let Ok(Opened::Store(store)) = SledStore::open(dir.path(), None) else {
                panic!("no store");
            };
            store.set_meta("k", b"v").unwrap();
            store.sync().unwrap();
        }
        (dir, tempfile::tempdir().unwrap())
    }

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The copies in the directory of copies in `tmp`.
    fn copies_in(tmp: &Path) -> Vec<PathBuf> {
        let (copies, _, _) = copies_dir(tmp).unwrap();
        std::fs::read_dir(copies)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect()
    }

    /// sled reads one page-table snapshot, the last name: only that one is copied.
    /// Before, every `snap.*` was read and copied; each was within the screen's bounds
    /// (no longer than twice the database plus 1 MiB, and not mostly a hole), so a few
    /// hundred sparse ones, costing their maker no disk, made an inspection read
    /// gigabytes of zeros (here 200 of 60 MiB: 12 GiB).
    #[cfg(unix)]
    #[test]
    fn only_the_snapshot_sled_reads_is_copied() {
        let (dir, tmp) = store_and_tmp();
        let theirs: Vec<String> = names(dir.path())
            .into_iter()
            .filter(|n| n.starts_with("snap."))
            .collect();
        // sled's own, written as it recovered at the open.
        let [sleds] = &theirs[..] else {
            panic!("sled left {theirs:?}");
        };
        // A database file long enough that a snapshot of 60 MiB is within the bound,
        // its hole within what the screen allows.
        let db = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("db"))
            .unwrap();
        db.set_len(40 << 20).unwrap();
        drop(db);
        let sparse = |name: &str| {
            File::create(dir.path().join(name))
                .unwrap()
                .set_len(60 << 20)
                .unwrap();
        };
        for i in 0..200 {
            // Sorts before any name sled writes.
            sparse(&format!("snap.-{i:04}"));
        }
        // Not read by sled, so not copied either: one being moved, one unfinished.
        sparse("snap.~.in___motion");
        File::create(dir.path().join("snap.~~.generating")).unwrap();
        screen_sled_files(dir.path()).unwrap();
        let started = Instant::now();
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        eprintln!("copied in {:?}", started.elapsed());
        assert_eq!(
            names(copy.path()),
            ["blobs", "conf", "db", "owner", sleds.as_str()]
        );
        assert!(matches!(SledStore::open_copy(&copy), Ok(Opened::Store(_))));
        drop(copy);

        // One that sorts after sled's own is the one sled reads: copied (alone), and
        // the copy's open fails as sled's open of the directory would.
        sparse("snap.~");
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(names(copy.path()), ["blobs", "conf", "db", "owner", "snap.~"]);
        assert!(SledStore::open_copy(&copy).is_err());
        drop(copy);

        // What sled would read is copied or refused, never passed over for a lower one.
        std::fs::remove_file(dir.path().join("snap.~")).unwrap();
        std::os::unix::fs::symlink(dir.path().join(sleds), dir.path().join("snap.~")).unwrap();
        assert!(PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {}).is_err());
        assert!(copies_in(tmp.path()).is_empty());
    }

    /// Which name sled reads as its snapshot, among hostile ones too: by bytes, not
    /// text; never `*.in___motion`, nor `*.generating` (removed before sled opens, and
    /// not copied); nothing not named `snap.*`.
    #[test]
    fn the_snapshot_sled_reads_is_the_last_name() {
        use std::ffi::OsStr;
        let pick = |names: &[&str]| {
            snapshot_sled_reads(names.iter().map(OsStr::new)).map(|n| n.to_string_lossy().into_owned())
        };
        assert_eq!(pick(&[]), None);
        assert_eq!(
            pick(&["db", "conf", "blobs", "snap", "snapshot", "Snap.1", "state"]),
            None
        );
        assert_eq!(
            pick(&["snap.00000000000000A0", "snap.0000000000000100"]).as_deref(),
            Some("snap.0000000000000100")
        );
        // Lower case sorts after sled's hex digits; `snap.` alone counts.
        assert_eq!(
            pick(&["snap.FFFFFFFFFFFFFFFF", "snap.a"]).as_deref(),
            Some("snap.a")
        );
        assert_eq!(pick(&["snap."]).as_deref(), Some("snap."));
        assert_eq!(
            pick(&[
                "snap.0000000000000001",
                "snap.0000000000000002.generating",
                "snap.0000000000000003.in___motion"
            ])
            .as_deref(),
            Some("snap.0000000000000001")
        );
        assert_eq!(pick(&["snap.1.generating", "snap.2.in___motion"]), None);
        // A suffix only counts at the end.
        assert_eq!(
            pick(&["snap.1", "snap.1.in___motion.x"]).as_deref(),
            Some("snap.1.in___motion.x")
        );
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt;
            // Not UTF-8: ordered by its bytes (0xff after every ASCII byte).
            let odd = OsStr::from_bytes(b"snap.\xff");
            let names = [OsStr::new("snap.zzzz"), odd, OsStr::new("snap.0001")];
            assert_eq!(snapshot_sled_reads(names), Some(odd));
            let moving = OsStr::from_bytes(b"snap.\xff.in___motion");
            assert_eq!(
                snapshot_sled_reads([OsStr::new("snap.1"), moving]),
                Some(OsStr::new("snap.1"))
            );
        }
    }

    /// The head record is read under the database's lock before and after the copy: one
    /// that changed meanwhile is read again with a new copy, and refused if it changes
    /// every time; no copy is left either way.
    #[test]
    fn a_head_record_that_changes_while_copied_is_not_taken() {
        let (dir, tmp) = store_and_tmp();
        let head = dir.path().join(HEAD_FILE);
        std::fs::write(&head, [1u8; 128]).unwrap();
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(copy.head(), Some(&[1u8; 128][..]));
        drop(copy);

        // Changed once (a ledger's last write as it closed, say): read again.
        let mut attempts = Vec::new();
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |attempt| {
            attempts.push(attempt);
            if attempt == 0 {
                std::fs::write(&head, [2u8; 128]).unwrap();
            }
        })
        .unwrap()
        .unwrap();
        assert_eq!(attempts, [0, 1]);
        assert_eq!(copy.head(), Some(&[2u8; 128][..]));
        // The first attempt's copy is gone.
        assert_eq!(copies_in(tmp.path()), [copy.path().to_path_buf()]);
        drop(copy);

        // Torn, or written each time: refused.
        let mut n = 2u8;
        let refused = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {
            n += 1;
            std::fs::write(&head, [n; 128]).unwrap();
        });
        assert!(refused.is_err());
        assert_eq!(n, 2 + COPY_ATTEMPTS as u8);
        assert!(copies_in(tmp.path()).is_empty());

        // Removed, or made, while copied: a change too.
        let refused = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |attempt| {
            if attempt % 2 == 0 {
                std::fs::remove_file(&head).unwrap();
            } else {
                std::fs::write(&head, [9u8; 128]).unwrap();
            }
        });
        assert!(refused.is_err());
        // None before and after: no head record.
        let _ = std::fs::remove_file(&head);
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(copy.head(), None);
    }

    /// A copy is removed with its `owner` file last, and only once all else is gone: a
    /// removal cut short leaves a copy the next inspection recognises as abandoned
    /// (before, `remove_dir_all` took the files in the directory's order, and could
    /// leave the log in clear without the mark that gets it removed).
    #[test]
    fn a_copy_is_removed_with_its_owner_file_last() {
        let (dir, tmp) = store_and_tmp();
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        let path = copy.path().to_path_buf();
        // What the drop removes, in order (a copy of the copy, whose `owner` file is
        // not locked).
        let twin = tmp.path().join("twin");
        std::fs::create_dir(&twin).unwrap();
        for name in names(&path) {
            if name != "blobs" {
                std::fs::copy(path.join(&name), twin.join(&name)).unwrap();
            }
        }
        std::fs::create_dir(twin.join("blobs")).unwrap();
        std::fs::write(twin.join("blobs").join("1"), b"page").unwrap();
        let mut order = Vec::new();
        assert!(remove_copy_with(&twin, &mut |p| {
            order.push(p.file_name().unwrap().to_string_lossy().into_owned());
            if p.is_dir() {
                std::fs::remove_dir_all(p)
            } else {
                std::fs::remove_file(p)
            }
        }));
        assert_eq!(order.last().map(String::as_str), Some("owner"));
        assert_eq!(order.len(), names(&path).len());
        assert!(!twin.exists());
        drop(copy);
        assert!(!path.exists());

        // A removal that fails part-way leaves the `owner` file, and the next
        // inspection's clean-up removes what is left once the owner is gone (here a
        // copy whose process died with it: its `owner` file unlocked).
        let (copies, _, _) = copies_dir(tmp.path()).unwrap();
        let left = copies.join("left");
        std::fs::create_dir(&left).unwrap();
        for name in ["owner", "db", "conf", "snap.0000000000000001"] {
            std::fs::write(left.join(name), b"acct-1 in clear").unwrap();
        }
        let mut order = Vec::new();
        assert!(!remove_copy_with(&left, &mut |p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            order.push(name.clone());
            if name == "db" {
                return Err(std::io::Error::other("failed"));
            }
            std::fs::remove_file(p)
        }));
        assert!(!order.contains(&"owner".to_string()), "{order:?}");
        assert_eq!(names(&left), ["db", "owner"]);
        let next = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        assert!(!left.exists());
        assert_eq!(copies_in(tmp.path()), [next.path().to_path_buf()]);
    }

    /// Copies are made in one directory of this user's, and only it is listed to find
    /// abandoned ones: nothing else in the temporary directory is touched, but for
    /// copies of the old name, looked for once, when the directory of copies is made.
    #[test]
    fn copies_live_in_a_directory_of_their_own_and_only_it_is_cleaned() {
        let (dir, tmp) = store_and_tmp();
        // An abandoned copy of the old name and layout (its `owner` file unlocked), and
        // one without an `owner` file (not a copy), directly in the temporary directory.
        let legacy = |name: &str, owner: bool| {
            let p = tmp.path().join(format!("{LEGACY_COPY_PREFIX}{name}"));
            std::fs::create_dir(&p).unwrap();
            std::fs::write(p.join("db"), b"acct-1 in clear").unwrap();
            if owner {
                std::fs::write(p.join("owner"), b"").unwrap();
            }
            p
        };
        let old = legacy("0123", true);
        let not_a_copy = legacy("other", false);
        let copy = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        let (copies, made, _) = copies_dir(tmp.path()).unwrap();
        assert!(!made);
        assert_eq!(copy.path().parent(), Some(copies.as_path()));
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            assert_eq!(std::fs::symlink_metadata(&copies).unwrap().mode() & 0o777, 0o700);
            assert_eq!(
                std::fs::symlink_metadata(copy.path()).unwrap().mode() & 0o777,
                0o700
            );
        }
        // Made now: the old copies were looked for.
        assert!(!old.exists());
        assert!(not_a_copy.exists());
        // Once only: one of the old name left later stays (the temporary directory is
        // not listed again).
        let later = legacy("4567", true);
        // Abandoned in the directory of copies: removed; a live one, and one whose
        // `owner` file never appeared, are not.
        let abandoned = copies.join("abandoned");
        std::fs::create_dir(&abandoned).unwrap();
        std::fs::write(abandoned.join("owner"), b"").unwrap();
        std::fs::write(abandoned.join("db"), b"acct-1 in clear").unwrap();
        let unfinished = copies.join("unfinished");
        std::fs::create_dir(&unfinished).unwrap();
        std::fs::write(unfinished.join("owner.new"), b"").unwrap();
        let second = PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {})
            .unwrap()
            .unwrap();
        assert!(later.exists());
        assert!(!abandoned.exists());
        assert!(unfinished.exists());
        assert!(copy.path().join("db").exists());
        let mut expected = vec![
            copy.path().to_path_buf(),
            second.path().to_path_buf(),
            unfinished.clone(),
        ];
        expected.sort();
        let mut found = copies_in(tmp.path());
        found.sort();
        assert_eq!(found, expected);
        drop((copy, second));
        assert_eq!(copies_in(tmp.path()), [unfinished]);
    }

    /// A directory of copies that is not this user's own is refused, never used: a
    /// link (even to a directory of ours), a file, one open to others, one of another
    /// user's (checked when the tests run as root, who can make one).
    #[cfg(unix)]
    #[test]
    fn a_directory_of_copies_not_ours_alone_is_refused() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (dir, tmp) = store_and_tmp();
        let uid = owner_of_new_files(tmp.path()).unwrap();
        assert_eq!(
            uid,
            std::fs::symlink_metadata(dir.path().join("db")).unwrap().uid()
        );
        let copies = tmp.path().join(format!("{COPIES_DIR}.{uid}"));
        let refused = |why: &str| {
            assert!(copies_dir(tmp.path()).is_err(), "{why}");
            assert!(
                PrivateCopy::of_in(dir.path(), tmp.path(), &mut |_| {}).is_err(),
                "{why}"
            );
        };
        let elsewhere = tempfile::tempdir().unwrap();
        std::fs::set_permissions(elsewhere.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &copies).unwrap();
        refused("a link");
        assert!(std::fs::read_dir(elsewhere.path()).unwrap().next().is_none());
        std::fs::remove_file(&copies).unwrap();
        std::fs::write(&copies, b"").unwrap();
        refused("a file");
        std::fs::remove_file(&copies).unwrap();
        std::fs::create_dir(&copies).unwrap();
        for mode in [0o777, 0o770, 0o701, 0o1777] {
            std::fs::set_permissions(&copies, std::fs::Permissions::from_mode(mode)).unwrap();
            refused(&format!("mode {mode:o}"));
        }
        std::fs::set_permissions(&copies, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert!(copies_dir(tmp.path()).is_ok());
        if uid == 0 {
            std::os::unix::fs::chown(&copies, Some(4242), None).unwrap();
            refused("another user's");
            // Nothing made in it.
            assert!(std::fs::read_dir(&copies).unwrap().next().is_none());
        }
    }

    /// A ledger in directories that do not exist yet: all are made (and each one's
    /// entry in its parent synced: seen with strace in stop 32, not testable here).
    #[test]
    fn a_store_in_missing_directories_makes_them_all() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a").join("b").join("ledger");
        assert!(matches!(SledStore::open(&dir, None), Ok(Opened::Store(_))));
        assert!(dir.join("db").is_file());
    }

    /// A `state` file within the size bound but mostly a hole (made with `truncate -s`
    /// by anyone who can write the directory) is no snapshot: not read into memory.
    #[cfg(unix)]
    #[test]
    fn a_snapshot_file_that_is_mostly_a_hole_is_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let Ok(Opened::Store(store)) = SledStore::open(dir.path(), None) else {
            panic!("no store");
        };
        store.put_snapshot(&[7; 4096]).unwrap();
        assert_eq!(store.snapshot().unwrap().map(|b| b.len()), Some(4096));
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join(SNAPSHOT_FILE))
            .unwrap();
        // The bound grows with the database file (four times it): made to claim
        // 32 MiB, so that a file within the bound can be past the slack a hole has.
        let db = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.path().join("db"))
            .unwrap();
        db.set_len(32 << 20).unwrap();
        let bound = store.snapshot_bound();
        assert!(bound > HOLE_SLACK * 2, "{bound}");
        file.set_len(bound).unwrap();
        drop(file);
        assert_eq!(store.snapshot().unwrap(), None);
    }

    #[test]
    fn ledger_files_are_told_by_their_first_bytes() {
        let header = vault::header();
        assert!(is_vault_start(&header) && is_vault_start(vault::MAGIC));
        assert!(!is_vault_start(&vault::MAGIC[..vault::MAGIC.len() - 1]));
        assert!(!is_vault_start(&header[1..]));
        assert!(is_mark_or_part_of_it(&header) && is_mark_or_part_of_it(&header[..3]));
        assert!(is_mark_or_part_of_it(b""));
        assert!(!is_mark_or_part_of_it(&[header.as_slice(), &[0]].concat()));
        assert!(!is_mark_or_part_of_it(b"consent-ledger vault v2\n"));
        let slot = |magic: &[u8]| {
            let mut s = [0u8; crate::ledger::head::SLOT];
            s[..magic.len()].copy_from_slice(magic);
            s
        };
        let magic = crate::ledger::head::MAGIC;
        // Either slot, even torn; nowhere else.
        assert!(is_head_start(&[slot(b"junk"), slot(magic)].concat()));
        assert!(is_head_start(&[&slot(b"junk")[..], &magic[..]].concat()));
        assert!(!is_head_start(&[&slot(b"junk")[..], &magic[..4]].concat()));
        assert!(!is_head_start(&[slot(b"x"), slot(b"y"), slot(magic)].concat()));
        assert!(!is_head_start(&[&[0u8][..], &slot(magic)].concat()));
    }
}
