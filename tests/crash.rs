//! Crash safety: a child process appends with a durable setting and prints every
//! acknowledged entry; the parent kills it with SIGKILL at seeded random moments,
//! reopens, verifies, and checks that every acknowledged entry is present and intact.
//!
//! A third mode kills the child while it closes: it opens the ledger, appends one
//! entry, closes it (which writes a state snapshot over the previous one, in place, and
//! syncs it), and again, so kills land inside the snapshot write, and the reopen must
//! load a whole snapshot or none (a half-written one fails its tag and is not used),
//! never a torn one. The child says when it starts and ends each close; a kill between
//! the two landed inside a close.
//!
//! The default run does a few kills per mode; the full run
//! (`cargo test --test crash -- --ignored crash_full`) does 60 per mode.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Mutex;

use consent_ledger::{
    Advertising, Analytics, Change, Denied, Durability, Identifier, Ledger, ManualClock, PseudonymKey,
    Recipient, RecipientScope, SigningKey, Snapshots, SubjectId, Timestamp,
};

const CHILD_DIR: &str = "CONSENT_LEDGER_CRASH_DIR";
const CHILD_MODE: &str = "CONSENT_LEDGER_CRASH_MODE";

fn keys() -> (SigningKey, PseudonymKey) {
    (
        SigningKey::from_bytes(&[11; 32]),
        PseudonymKey::from_bytes([12; 32]),
    )
}

fn open(dir: &Path, durability: Durability) -> Ledger {
    let (k, p) = keys();
    Ledger::builder(dir)
        .signing_key(k)
        .pseudonym_key(p)
        .durability(durability)
        // The parent's clean closes write state snapshots (and the vault digest that
        // lets the next open load one); each child loads one and is killed mid-tail,
        // which leaves no digest for the longer log, so the parent's reopen replays in
        // full (and destroys that snapshot) and its close writes another.
        .snapshots(Snapshots::OnClose { min_new_entries: 1 })
        .open()
        .unwrap()
}

fn mode(name: &str) -> Durability {
    match name {
        "immediate" | "closing" => Durability::Immediate,
        _ => Durability::GroupCommit,
    }
}

/// The content of append number `n` (a unique subject), so the parent can check it.
fn subject(n: u64) -> SubjectId {
    SubjectId::new(&format!("crash-{n}")).unwrap()
}

/// The child: appends until killed, printing `ack <seq> <n>` after each acknowledged
/// append. Ignored, so it runs only when the parent starts it.
#[test]
#[ignore = "started by the crash tests as a child process"]
fn crash_child() {
    let (Ok(dir), Ok(m)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_MODE)) else {
        return;
    };
    let durability = mode(&m);
    if m == "floor" {
        floor_child(Path::new(&dir));
        return;
    }
    if m == "closing" {
        // Open, append one, close (writing a snapshot), forever.
        loop {
            let ledger = open(Path::new(&dir), durability);
            let n = ledger.len() * 1000;
            let r = ledger
                .grant::<Analytics>(&subject(n), RecipientScope::first_party(), None)
                .unwrap();
            println!("ack {} {n}", r.seq);
            println!("closing");
            drop(ledger);
            println!("closed");
        }
    }
    let ledger = open(Path::new(&dir), durability);
    // Numbering continues from the log's length, so every append is unique across runs.
    let start = ledger.len() * 1000;
    let out = Mutex::new(std::io::stdout());
    let threads = if durability == Durability::GroupCommit {
        4
    } else {
        1
    };
    std::thread::scope(|s| {
        for t in 0..threads {
            let (ledger, out) = (&ledger, &out);
            s.spawn(move || {
                for i in 0.. {
                    let n = start + i * threads + t;
                    let r = ledger
                        .grant::<Analytics>(&subject(n), RecipientScope::first_party(), None)
                        .unwrap();
                    let mut o = out.lock().unwrap();
                    writeln!(o, "ack {} {n}", r.seq).unwrap();
                    o.flush().unwrap();
                }
            });
        }
    });
}

const T0: u64 = 1_700_000_000_000;

fn floor_ledger(dir: &Path, clock: &ManualClock) -> Ledger {
    let (k, p) = keys();
    Ledger::builder(dir)
        .signing_key(k)
        .pseudonym_key(p)
        .clock(clock.clone())
        .open()
        .unwrap()
}

fn floor_id() -> Identifier<Advertising> {
    Identifier::<Advertising>::email("floor@example.com").unwrap()
}

/// The time-floor child: a consent that expires a minute after T0, decisions just
/// before and just after (which sees the expiry), a sync, then it waits to be killed. No entry records
/// that later time: only the saved time floor does.
fn floor_child(dir: &Path) {
    let clock = ManualClock::new(Timestamp::from_millis(T0));
    let l = floor_ledger(dir, &clock);
    let s = SubjectId::new("floor-subject").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    l.collect(&s, &floor_id(), RecipientScope::only(acme.clone()))
        .unwrap();
    let until = Timestamp::from_millis(T0 + 60_000);
    l.grant::<Advertising>(&s, RecipientScope::only(acme.clone()), Some(until))
        .unwrap();
    // A decision just before the expiry (its rise of over a second is saved, unsynced,
    // as decisions save), then one just after: a rise of less than a second, which only
    // the sync saves (review r73: with a jump of an hour, the decision's own save kept
    // the floor, and the test passed without the sync's).
    clock.set(Timestamp::from_millis(T0 + 59_800));
    assert!(l.authorize(&floor_id(), &acme).is_ok());
    clock.set(Timestamp::from_millis(T0 + 60_300));
    assert!(matches!(
        l.authorize(&floor_id(), &acme),
        Err(Denied::Expired { .. })
    ));
    l.sync().unwrap();
    println!("synced");
    loop {
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// The time floor survives a crash: after a sync, the latest time a decision saw is
/// durable, so when the process is killed and the ledger reopened with the clock set
/// back (an NTP step, a restored VM snapshot) to before the expiry, the expired consent
/// stays expired. The ledger's own entries end at the grant, before the expiry.
#[test]
fn the_time_floor_survives_a_kill_after_a_sync() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(dir.path(), "floor");
    let stdout = child.stdout.take().unwrap();
    let synced = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .any(|line| line.ends_with("synced"));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(synced, "the child did not get to its sync");
    let clock = ManualClock::new(Timestamp::from_millis(T0 + 30_000));
    let l = floor_ledger(dir.path(), &clock);
    let acme = Recipient::partner("acme").unwrap();
    match l.authorize(&floor_id(), &acme) {
        Err(Denied::Expired { at, .. }) => assert_eq!(at, Timestamp::from_millis(T0 + 60_000)),
        other => panic!("the consent came back after a crash and a clock step: {other:?}"),
    }
}

/// Starts this test binary again as the child (`crash_child`) in `mode` on `dir`, its
/// standard output piped.
fn spawn_child(dir: &Path, mode: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "crash_child",
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
        .unwrap()
}

/// A small deterministic generator (xorshift), so a seed reproduces a run.
struct Rng(u64);

impl Rng {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

/// Kills a child `kills` times; returns how many kills landed inside a close (between
/// the child's "closing" and "closed"), which writes the snapshot, and also syncs and
/// closes sled: a kill counted here may have missed the snapshot write itself.
fn crash_loop(kills: u32, seed: u64, mode_name: &str) -> u32 {
    let dir = tempfile::tempdir().unwrap();
    drop(open(dir.path(), mode(mode_name)));
    let mut rng = Rng(seed | 1);
    let mut acked: HashMap<u64, u64> = HashMap::new(); // seq -> n
    let mut torn_snapshots = 0;
    for kill in 0..kills {
        let mut child = spawn_child(dir.path(), mode_name);
        let stdout = child.stdout.take().unwrap();
        let wanted = 1 + rng.next(40);
        let mut seen = 0;
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.strip_prefix("ack ") {
                let mut parts = rest.split(' ');
                let seq: u64 = parts.next().unwrap().parse().unwrap();
                let n: u64 = parts.next().unwrap().parse().unwrap();
                assert!(acked.insert(seq, n).is_none(), "seq {seq} acknowledged twice");
                seen += 1;
                if seen >= wanted {
                    // Sometimes kill at once, sometimes let it run into the next append.
                    if rng.next(2) == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(rng.next(3000)));
                    }
                    break;
                }
            }
        }
        child.kill().unwrap(); // SIGKILL on Unix
        child.wait().unwrap();
        // A child that acknowledged nothing (it failed, or never ran) checks nothing.
        assert!(
            seen > 0,
            "kill {kill} (seed {seed}): the child acknowledged no append"
        );
        // What the child printed up to its death: the last line tells whether the kill
        // landed inside a close.
        let last = lines.map_while(Result::ok).last();
        if last.as_deref() == Some("closing") {
            torn_snapshots += 1;
        }

        // Reopen: the chain verifies and every acknowledged entry is there, intact.
        let ledger = open(dir.path(), mode(mode_name));
        let report = ledger
            .verify()
            .unwrap_or_else(|e| panic!("kill {kill} (seed {seed}): {e}"));
        assert!(report.entries > acked.len() as u64);
        for (seq, n) in &acked {
            let h = ledger.history(&subject(*n)).unwrap();
            assert!(
                matches!(h.as_slice(), [e] if e.seq == *seq && matches!(e.change, Change::Granted { .. })),
                "kill {kill} (seed {seed}): acknowledged entry {seq} for append {n} missing or changed: {h:?}"
            );
        }
    }
    println!(
        "crash test ({mode_name}): {kills} kills, {} acknowledged entries checked, \
         {torn_snapshots} kills inside a close, seed {seed}",
        acked.len()
    );
    torn_snapshots
}

#[test]
fn crash_quick_immediate() {
    crash_loop(4, 0x5eed_0001, "immediate");
}

#[test]
fn crash_quick_group_commit() {
    crash_loop(4, 0x5eed_0002, "group");
}

/// What a kill during sled's own recovery leaves behind (found by the closing mode
/// below): a page-table snapshot sled began writing (`snap.<lsn>.generating`) and never
/// renamed. sled 0.34.7 then reads it as its newest snapshot, fails its checksum, and
/// the database never opens again. Opening removes such leftovers first.
#[test]
fn a_half_written_sled_snapshot_does_not_stop_the_ledger_from_opening() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path(), Durability::Immediate);
    for n in 0..5 {
        ledger
            .grant::<Analytics>(&subject(n), RecipientScope::first_party(), None)
            .unwrap();
    }
    let len = ledger.len();
    drop(ledger);
    let leftover = dir.path().join("snap.7FFFFFFFFFFFFFFF.generating");
    // The inspector reads a copy without it, and changes nothing in the directory.
    std::fs::write(&leftover, [0xAB; 100]).unwrap();
    let inspector = consent_ledger::Inspector::open(dir.path()).unwrap();
    assert_eq!(inspector.verify().unwrap().entries, len);
    drop(inspector);
    assert!(leftover.exists());
    std::fs::write(&leftover, [0xAB; 100]).unwrap();
    let ledger = open(dir.path(), Durability::Immediate);
    assert_eq!(ledger.len(), len);
    assert_eq!(ledger.verify().unwrap().entries, len);
    for n in 0..5 {
        assert_eq!(ledger.history(&subject(n)).unwrap().len(), 1);
    }
    assert!(!leftover.exists());
}

#[test]
fn crash_quick_closing() {
    crash_loop(4, 0x5eed_0003, "closing");
}

#[test]
#[ignore = "slow: 60 kills per mode"]
fn crash_full() {
    let seed = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234);
    crash_loop(60, seed, "immediate");
    crash_loop(60, seed ^ 0xffff, "group");
    let torn = crash_loop(60, seed ^ 0xff00, "closing");
    // Otherwise this run did not test what the closing mode is for.
    assert!(
        torn > 0,
        "no kill landed inside a close (where the snapshot is written)"
    );
}
