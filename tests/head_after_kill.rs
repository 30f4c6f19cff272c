//! The head record after a kill: entries made durable by a burst of appends and then
//! left alone are recorded within a fraction of a second (by the ticker's duty), so
//! damage in sled's data file that cuts them fails the open; and a time a decision used
//! after the last save of the time floor, kept by its decision record, is not lost.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

use consent_ledger::{
    Advertising, Denied, Durability, Identifier, IntegrityProblem, Ledger, ManualClock, OpenError,
    PseudonymKey, Recipient, RecipientScope, Recording, SigningKey, SubjectId, Timestamp,
};

const CHILD_DIR: &str = "HEAD_CHILD_DIR";
const CHILD_MODE: &str = "HEAD_CHILD_MODE";

fn keys() -> (SigningKey, PseudonymKey) {
    (
        SigningKey::from_bytes(&[21; 32]),
        PseudonymKey::from_bytes([22; 32]),
    )
}

fn open(dir: &Path) -> Result<Ledger, OpenError> {
    let (k, p) = keys();
    Ledger::builder(dir)
        .signing_key(k)
        .pseudonym_key(p)
        .durability(Durability::Immediate)
        .open()
}

fn email(i: u32) -> Identifier<Advertising> {
    Identifier::<Advertising>::email(&format!("p{i}@example.org")).unwrap()
}

const T0: u64 = 1_700_000_000_000;

/// The ledger of the `floor` mode: a manual clock, relaxed durability (sled flushes
/// every 500 ms) and every use recorded.
fn open_recording(dir: &Path, clock: &ManualClock) -> Ledger {
    let (k, p) = keys();
    Ledger::builder(dir)
        .signing_key(k)
        .pseudonym_key(p)
        .durability(Durability::Relaxed)
        .clock(clock.clone())
        .record_decisions(Recording::Every)
        .open()
        .unwrap()
}

/// The child of the `floor` mode: alice's grant lapses at +10.5 s, bob's does not. A
/// use of alice's at +10 s saves the time floor; bob's at +10.9 s, under a second
/// later, does not, and alice is denied then as expired. Then idle until killed.
fn floor_child(dir: &Path) {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let l = open_recording(dir, &clock);
    let r = Recipient::FirstParty;
    for (i, lapse) in [(1, Some(Timestamp::from_millis(T0 + 10_500))), (2, None)] {
        let s = SubjectId::new(&format!("subject-{i:02}")).unwrap();
        l.collect(&s, &email(i), RecipientScope::first_party()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::first_party(), lapse)
            .unwrap();
    }
    l.sync().unwrap();
    clock.set(Timestamp::from_millis(T0 + 10_000));
    assert!(l.authorize(&email(1), &r).is_ok());
    clock.set(Timestamp::from_millis(T0 + 10_900));
    assert!(l.authorize(&email(2), &r).is_ok());
    assert!(matches!(l.authorize(&email(1), &r), Err(Denied::Expired { .. })));
    println!("done {} 0", l.len());
    std::thread::sleep(std::time::Duration::from_secs(120));
}

/// The child: makes a ledger, appends (Immediate: every append fsynced before it
/// returns), prints its length, then stays idle until killed. In the `floor` mode,
/// [`floor_child`].
#[test]
#[ignore = "started by the tests below as a child process"]
fn head_child() {
    let (Ok(dir), Ok(mode)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    if mode == "floor" {
        floor_child(Path::new(&dir));
        return;
    }
    assert_eq!(mode, "idle");
    let l = open(Path::new(&dir)).unwrap();
    for i in 0..10u32 {
        let s = SubjectId::new(&format!("subject-{i:02}")).unwrap();
        l.collect(&s, &email(i), RecipientScope::all_partners()).unwrap();
        l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
            .unwrap();
    }
    l.withdraw::<Advertising>(&SubjectId::new("subject-03").unwrap())
        .unwrap();
    let signed = l.checkpoint().unwrap().size();
    println!("done {} {signed}", l.len());
    std::thread::sleep(std::time::Duration::from_secs(120));
}

/// Starts the child on `dir` in `mode`, waits for its appends, lets `idle` pass and
/// kills it: the log length and the size of the checkpoint it signed last.
fn run_child(dir: &Path, mode: &str, idle: std::time::Duration) -> (u64, u64) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "head_child",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    let (len, signed) = loop {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "the child ended early");
        if let Some(at) = line.find("done ") {
            let mut numbers = line[at + 5..]
                .split_whitespace()
                .map(|n| n.parse::<u64>().unwrap());
            break (numbers.next().unwrap(), numbers.next().unwrap());
        }
    };
    // Every entry was fsynced before its append returned.
    std::thread::sleep(idle);
    child.kill().unwrap();
    child.wait().unwrap();
    (len, signed)
}

/// Killed right after its appends, before the head record caught up: the reopened
/// ledger counts every entry it finds durable once synced, so its checkpoint covers no
/// less than the last one signed, and a receipt for the acknowledged withdrawal is given.
#[test]
fn after_a_prompt_kill_the_checkpoint_does_not_shrink() {
    let dir = tempfile::tempdir().unwrap();
    let (len, signed) = run_child(dir.path(), "idle", std::time::Duration::ZERO);
    let l = open(dir.path()).unwrap();
    assert_eq!(l.len(), len);
    assert!(l.checkpoint().unwrap().size() >= signed);
    l.receipt(len - 1, "reply STOP").unwrap();
}

/// A child appends a burst (every append fsynced) and stays idle; three seconds later
/// it is killed, without a close. One flipped bit in each byte of a subject id in the
/// data file, in turn: sled drops what follows, and the open must refuse (the head
/// record was written after the burst), never decide from the shorter log.
#[test]
fn a_cut_of_entries_durable_seconds_before_a_kill_fails_open() {
    let dir = tempfile::tempdir().unwrap();
    let (len, _) = run_child(dir.path(), "idle", std::time::Duration::from_secs(3));

    let acme = Recipient::partner("acme-ads").unwrap();
    let db = dir.path().join("db");
    let original = std::fs::read(&db).unwrap();
    let at = original
        .windows(10)
        .position(|w| w == b"subject-09")
        .expect("the subject id in the data file");
    let mut cut = Vec::new();
    for i in at..at + 10 {
        let mut bytes = original.clone();
        bytes[i] ^= 0x01;
        std::fs::write(&db, &bytes).unwrap();
        match open(dir.path()) {
            Ok(l) => {
                if l.len() < len {
                    cut.push((i - at, l.len(), l.authorize(&email(3), &acme).is_ok()));
                }
            }
            Err(OpenError::Integrity(e)) => {
                assert!(
                    matches!(e.problem, IntegrityProblem::ShorterThanRecorded { .. }),
                    "{e:?}"
                );
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    std::fs::write(&db, &original).unwrap();
    assert!(
        cut.is_empty(),
        "entries fsynced 3 s before the kill were cut and the ledger opened ({len} entries \
         acknowledged): (byte, length opened, withdrawn use allowed again) = {cut:?}"
    );
}

/// Killed a second and a half after its last decisions (sled's background flush has
/// made their records durable; the time floor on disk is the one saved at +10 s), and
/// reopened with the clock stepped back to +10.1 s: alice's grant, denied as expired at
/// +10.9 s, stays expired, and no decision is dated before bob's recorded use.
#[test]
fn a_use_recorded_before_a_kill_keeps_its_time_as_the_floor() {
    let dir = tempfile::tempdir().unwrap();
    let (len, _) = run_child(dir.path(), "floor", std::time::Duration::from_millis(1_500));
    let l = open_recording(dir.path(), &ManualClock::new(Timestamp::from_millis(T0 + 10_100)));
    assert_eq!(l.len(), len);
    let r = Recipient::FirstParty;
    assert!(
        matches!(l.authorize(&email(1), &r), Err(Denied::Expired { .. })),
        "a grant denied as expired before the kill is allowed after it"
    );
    let bob = email(2);
    let used = l.authorize(&bob, &r).unwrap();
    assert!(used.evidence().decided_at() >= Timestamp::from_millis(T0 + 10_900));
}
