//! Opening a ledger's sled database directly, as the tampering tests do: sled's
//! background flusher can hold the file lock for a moment after a `Ledger` is dropped,
//! so retry for up to three seconds before failing. And copying a closed ledger's
//! directory, to restore it later or to damage a copy.

/// Opens the sled database in `dir`, waiting out a lock still held by a closed ledger.
#[allow(dead_code, reason = "not every test file opens sled directly")]
pub fn open(dir: &std::path::Path) -> sled::Db {
    for _ in 0..300 {
        match sled::open(dir) {
            Err(e) if format!("{e:?}").contains("could not acquire lock") => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.unwrap(),
        }
    }
    sled::open(dir).unwrap()
}

/// Copies the directory `from` (a closed ledger) into `to`, recursively.
#[allow(dead_code, reason = "not every test file copies ledgers")]
pub fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}
