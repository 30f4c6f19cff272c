//! Opening a ledger's sled database directly, as the tampering tests do: sled's
//! background flusher can hold the file lock for a moment after a `Ledger` is dropped,
//! so retry for up to three seconds before failing.

/// Opens the sled database in `dir`, waiting out a lock still held by a closed ledger.
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
