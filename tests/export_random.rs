//! The subject export on random histories (from review r93): every event once, unique
//! ids, every use naming an exported event, the same bytes after a reopen; and the
//! erasure's untrusted mark, and record ids distinct between subjects.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use consent_ledger::*;
use serde_json::Value;

declare_purpose!(
    /// `partner-sharing` under legitimate interest.
    LiSharing,
    "partner-sharing",
    "sharing with partners, legitimate interest",
    LegalBasis::LegitimateInterest
);
declare_purpose!(
    /// `partner-sharing` under a contract.
    ContractSharing,
    "partner-sharing",
    "sharing with partners, contract",
    LegalBasis::Contract
);
declare_purpose!(
    /// `security` as consent-based.
    ConsentSecurity,
    "security",
    "security, consent",
    LegalBasis::Consent
);

#[derive(Clone, Copy, Debug)]
enum T {
    Ps,
    Li,
    Ct,
    Sec,
    SecC,
    An,
}
const TYPES: [T; 6] = [T::Ps, T::Li, T::Ct, T::Sec, T::SecC, T::An];

macro_rules! with_type {
    ($t:expr, $P:ident => $body:expr) => {
        match $t {
            T::Ps => {
                type $P = PartnerSharing;
                $body
            }
            T::Li => {
                type $P = LiSharing;
                $body
            }
            T::Ct => {
                type $P = ContractSharing;
                $body
            }
            T::Sec => {
                type $P = Security;
                $body
            }
            T::SecC => {
                type $P = ConsentSecurity;
                $body
            }
            T::An => {
                type $P = Analytics;
                $body
            }
        }
    };
}

const VALUES: [(u8, &str); 5] = [
    (0, "a@example.com"),
    (0, "b@example.com"),
    (1, "+15550100001"),
    (1, "+15550100002"),
    (2, "device-0001"),
];

fn ident<P: Purpose>(v: usize) -> Identifier<P> {
    let (k, raw) = VALUES[v];
    match k {
        0 => Identifier::<P>::email(raw).unwrap(),
        1 => Identifier::<P>::phone(raw).unwrap(),
        _ => Identifier::<P>::device_id(raw).unwrap(),
    }
}

fn recipients_pool() -> Vec<Recipient> {
    vec![
        Recipient::FirstParty,
        Recipient::partner("acme").unwrap(),
        Recipient::partner("beta").unwrap(),
    ]
}

fn scope_pool(i: usize) -> RecipientScope {
    let r = recipients_pool();
    match i % 5 {
        0 => RecipientScope::first_party(),
        1 => RecipientScope::only(r[1].clone()),
        2 => RecipientScope::only(r[2].clone()),
        3 => RecipientScope::any_of([r[1].clone(), r[2].clone()]).unwrap(),
        _ => RecipientScope::all_partners(),
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn events_of(doc: &Value) -> Vec<String> {
    let mut v: Vec<String> = doc["@graph"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["dct:hasPart"].as_array().unwrap().iter())
        .map(|p| p["dct:identifier"].as_str().unwrap().to_owned())
        .collect();
    v.extend(doc["erasure"]["dct:identifier"].as_str().map(str::to_owned));
    v.sort();
    v
}

/// Random histories: the export after a reopen equals the one before; every history
/// event is in exactly one record; record ids are unique; every use names an event.
fn reopen_run(seed: u64, ops: usize, snapshots: bool) -> Option<String> {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(Timestamp::from_millis(1_800_000_000_000));
    let (key, pk) = (SigningKey::generate(), PseudonymKey::generate());
    let open = || {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .durability(Durability::Relaxed)
            .record_decisions(Recording::Every)
            .snapshots(if snapshots {
                Snapshots::default()
            } else {
                Snapshots::Off
            })
            .clock(clock.clone())
            .open()
            .unwrap()
    };
    let l = open();
    let subjects = [SubjectId::new("s-1").unwrap(), SubjectId::new("s-2").unwrap()];
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut log = Vec::new();
    for _ in 0..ops {
        let s = &subjects[rng.next(2)];
        let t = TYPES[rng.next(TYPES.len())];
        match rng.next(13) {
            0..=4 => {
                let v = rng.next(VALUES.len());
                let sc = rng.next(5);
                let r = with_type!(t, P => l.collect(s, &ident::<P>(v), scope_pool(sc)));
                log.push(format!("collect {s} v{v} {t:?} scope{sc} -> {}", r.is_ok()));
            }
            5..=6 => {
                let sc = rng.next(5);
                let exp = match rng.next(3) {
                    0 => Some(clock.now().saturating_add(std::time::Duration::from_secs(60))),
                    _ => None,
                };
                let r = with_type!(t, P => l.grant::<P>(s, scope_pool(sc), exp));
                log.push(format!(
                    "grant {s} {t:?} scope{sc} exp {:?} -> {}",
                    exp.is_some(),
                    r.is_ok()
                ));
            }
            7 => {
                let r = with_type!(t, P => l.withdraw::<P>(s));
                log.push(format!("withdraw {s} {t:?} -> {}", r.is_ok()));
            }
            8 if rng.next(4) == 0 => {
                let r = l.erase(s, Actor::Subject);
                log.push(format!("erase {s} -> {}", r.is_ok()));
            }
            8 => {}
            9 => {
                clock.advance(std::time::Duration::from_secs(61));
                log.push("advance 61s".into());
            }
            10 => {
                let r = l.record_expiries();
                log.push(format!("record_expiries -> {:?}", r.map(|v| v.len())));
            }
            _ => {
                let v = rng.next(VALUES.len());
                let r = &recipients_pool()[rng.next(3)];
                let ok = with_type!(t, P => l.authorize(&ident::<P>(v), r).is_ok());
                log.push(format!("authorize v{v} {t:?} {r} -> {ok}"));
            }
        }
    }
    let before: Vec<String> = subjects
        .iter()
        .map(|s| l.export_subject(s, "-").unwrap())
        .collect();
    for (s, json) in subjects.iter().zip(&before) {
        let doc: Value = serde_json::from_str(json).unwrap();
        let origin = l.checkpoint().unwrap().origin().to_owned();
        let mut hist: Vec<String> = l
            .history(s)
            .unwrap()
            .iter()
            .map(|h| format!("{origin}#{}", h.seq))
            .collect();
        hist.sort();
        let events = events_of(&doc);
        if events != hist {
            return Some(format!(
                "seed {seed}: events {events:?} history {hist:?}\n{}\n{json}",
                log.join("\n")
            ));
        }
        let mut ids: Vec<&str> = doc["@graph"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["dpv:hasIdentifier"].as_str().unwrap())
            .collect();
        let n = ids.len();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != n {
            return Some(format!(
                "seed {seed}: duplicate record ids\n{}\n{json}",
                log.join("\n")
            ));
        }
        for u in doc["uses"].as_array().unwrap() {
            let by = u["allowed_by"].as_str().unwrap().to_owned();
            if !events.contains(&by) && doc["erased"] == false {
                return Some(format!(
                    "seed {seed}: use by {by} not in events\n{}\n{json}",
                    log.join("\n")
                ));
            }
        }
    }
    drop(l);
    let l = open();
    let after: Vec<String> = subjects
        .iter()
        .map(|s| l.export_subject(s, "-").unwrap())
        .collect();
    for (b, a) in before.iter().zip(&after) {
        if a != b {
            return Some(format!(
                "seed {seed}: differs after reopen\n{}\nBEFORE\n{b}\nAFTER\n{a}",
                log.join("\n")
            ));
        }
    }
    None
}

#[test]
fn random_histories_reopen_partition_and_uses_hold() {
    let runs: u64 = std::env::var("R93_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    for seed in 0..runs {
        for snaps in [false, true] {
            if let Some(p) = reopen_run(seed, 40, snaps) {
                panic!("snapshots {snaps}: {p}");
            }
        }
    }
}

/// An erasure signed by a key the log later revoked from that position (a stolen key:
/// its holder erased the subject). `history` marks the erasure untrusted (it walks the
/// log for this very reason: "to learn who signed the erasure"), and the export's doc
/// says every event signed by such a key carries `"untrusted"`. The export's top-level
/// `erasure` event drops the mark: the person and the operator read a forged erasure
/// as a plain one.
#[test]
fn an_erasure_signed_by_a_revoked_key_is_exported_with_its_untrusted_mark() {
    let dir = tempfile::tempdir().unwrap();
    let (k0, k1) = (SigningKey::generate(), SigningKey::generate());
    let l = Ledger::builder(dir.path())
        .signing_key(k0.clone())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap();
    let s = SubjectId::new("user-1").unwrap();
    let email = Identifier::<Security>::email("alice@example.com").unwrap();
    l.collect(&s, &email, RecipientScope::first_party()).unwrap();
    // Signed by k0, which is then found stolen from this position on.
    let erased = l.erase(&s, Actor::Subject).unwrap();
    l.rotate_key(k1).unwrap();
    l.revoke_key(k0.verifying_key(), erased.seq).unwrap();

    let history = l.history(&s).unwrap();
    assert_eq!(history.len(), 1);
    assert!(
        history[0].untrusted().is_some(),
        "history marks the erasure as signed by the revoked key"
    );
    let doc: Value = serde_json::from_str(&l.export_subject(&s, "-").unwrap()).unwrap();
    assert!(
        doc["erasure"].get("untrusted").is_some(),
        "the erasure was signed by a revoked key (history says so); the export's erasure \
         event does not:\n{:#}",
        doc["erasure"]
    );
}

/// A record's id is `<ledger>#<purpose>/<basis>`: it does not name the subject, so the
/// consent records of two different people in one ledger carry the same id. A
/// consumer keeping records by id (the point of a record identifier in ISO/IEC TS 27560
/// / DPV `hasIdentifier`) merges or overwrites one person's consent record with
/// another's. (The ids of the version before, event positions, were unique in the
/// ledger.)
#[test]
fn two_subjects_consent_records_have_distinct_ids() {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let (alice, bob) = (
        SubjectId::new("user-1").unwrap(),
        SubjectId::new("user-2").unwrap(),
    );
    l.grant::<Analytics>(&alice, RecipientScope::only(acme.clone()), None)
        .unwrap();
    l.withdraw::<Analytics>(&alice).unwrap();
    l.grant::<Analytics>(&bob, RecipientScope::all_partners(), None)
        .unwrap();
    let id = |s: &SubjectId| {
        let doc: Value = serde_json::from_str(&l.export_subject(s, "-").unwrap()).unwrap();
        let rec = doc["@graph"][0].clone();
        (rec["dpv:hasIdentifier"].as_str().unwrap().to_owned(), rec)
    };
    let ((a, ra), (b, rb)) = (id(&alice), id(&bob));
    assert_ne!(
        a, b,
        "two different records (alice's withdrawn consent, bob's given one) have one id:\n{ra:#}\n{rb:#}"
    );
}
