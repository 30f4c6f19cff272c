//! Model-based property test: random sequences of collections, grants (with scopes and
//! expiry), withdrawals, erasures, clock moves, expiry recording, key rotations,
//! reopenings, decisions now and decisions at a past position or time, run through the
//! public `Ledger` API and through a small reference model written plainly below. Every
//! result (sequence numbers, timestamps, errors, decisions and their evidence) must be
//! the model's, and reopening the ledger at any point must change nothing. Each subject's
//! history (`Ledger::history`, read from the log) must be the model's too: checked
//! after each erasure, around each reopening and at the end.
//!
//! `PROPTEST_CASES` sets the number of sequences (default 256).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

use consent_ledger::{
    Actor, Advertising, At, Change, Denied, Durability, Identifier, IdentifierKind, Ledger, LegalBasis,
    ManualClock, PartnerSharing, PseudonymKey, Purpose, Recipient, RecipientScope, Security, SigningKey,
    Snapshots, SubjectId, Timestamp, Use, WriteError,
};
use proptest::prelude::*;

const SUBJECTS: usize = 3;
const IDENTS: usize = 4;
const T0: u64 = 1_700_000_000_000;

// ---- the world the operations pick from ------------------------------------------------

/// 0: Security (not consent-based), 1: Advertising, 2: PartnerSharing.
const PURPOSES: usize = 3;

fn purpose_id(p: usize) -> &'static str {
    [Security::ID, Advertising::ID, PartnerSharing::ID][p]
}

fn needs_consent(p: usize) -> bool {
    p != 0
}

fn legal_basis(p: usize) -> LegalBasis {
    [
        Security::LEGAL_BASIS,
        Advertising::LEGAL_BASIS,
        PartnerSharing::LEGAL_BASIS,
    ][p]
}

/// 0: first party, 1: partner acme, 2: partner beta, 3: developer app.
const RECIPIENTS: usize = 4;

fn recipient(r: usize) -> Recipient {
    match r {
        0 => Recipient::FirstParty,
        1 => Recipient::partner("acme").unwrap(),
        2 => Recipient::partner("beta").unwrap(),
        _ => Recipient::developer_app("app-1").unwrap(),
    }
}

/// Scopes as plain sets of recipient indexes, or "all partners".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MScope {
    Set(&'static [usize]),
    AllPartners,
}

const SCOPES: [MScope; 6] = [
    MScope::Set(&[0]),
    MScope::Set(&[1]),
    MScope::Set(&[3]),
    MScope::Set(&[1, 2]),
    MScope::Set(&[0, 3]),
    MScope::AllPartners,
];

impl MScope {
    fn covers(self, r: usize) -> bool {
        match self {
            MScope::Set(list) => list.contains(&r),
            MScope::AllPartners => r == 1 || r == 2,
        }
    }
    fn real(self) -> RecipientScope {
        match self {
            MScope::Set(list) => RecipientScope::any_of(list.iter().map(|r| recipient(*r))).unwrap(),
            MScope::AllPartners => RecipientScope::all_partners(),
        }
    }
}

fn phone(i: usize) -> String {
    format!("+1 (555) 010-{:04}", 1000 + i)
}

fn subject(s: usize) -> SubjectId {
    SubjectId::new(&format!("subject-{s}")).unwrap()
}

// ---- operations ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Collect {
        subject: usize,
        ident: usize,
        purpose: usize,
        scope: usize,
    },
    Grant {
        subject: usize,
        purpose: usize,
        scope: usize,
        expires_in: Option<u64>,
    },
    Withdraw {
        subject: usize,
        purpose: usize,
    },
    Erase {
        subject: usize,
    },
    Clock {
        delta: i64,
    },
    Authorize {
        ident: usize,
        purpose: usize,
        recipient: usize,
    },
    /// A point-in-time decision: at position `len - back % len`, or at that entry's
    /// time plus `offset` ms (`by_time`).
    AuthorizeAt {
        ident: usize,
        purpose: usize,
        recipient: usize,
        back: u64,
        by_time: bool,
        offset: i64,
    },
    /// Append an `Expired` entry for every lapsed grant.
    RecordExpiries,
    /// Rotate the signing key (decisions unchanged; reopening needs the new key).
    RotateKey,
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SUBJECTS;
    let p = 0..PURPOSES;
    prop_oneof![
        4 => (s.clone(), 0..IDENTS, p.clone(), 0..SCOPES.len())
            .prop_map(|(subject, ident, purpose, scope)| Op::Collect { subject, ident, purpose, scope }),
        3 => (s.clone(), p.clone(), 0..SCOPES.len(), proptest::option::of((0u64..10).prop_map(|k| k * 500)))
            .prop_map(|(subject, purpose, scope, expires_in)| Op::Grant { subject, purpose, scope, expires_in }),
        2 => (s.clone(), p.clone()).prop_map(|(subject, purpose)| Op::Withdraw { subject, purpose }),
        1 => s.prop_map(|subject| Op::Erase { subject }),
        // Whole half-seconds, so that decisions often fall exactly on an expiry time.
        2 => (-6i64..12).prop_map(|k| Op::Clock { delta: k * 500 }),
        8 => (0..IDENTS, p, 0..RECIPIENTS)
            .prop_map(|(ident, purpose, recipient)| Op::Authorize { ident, purpose, recipient }),
        2 => (0..IDENTS, 0..PURPOSES, 0..RECIPIENTS, 0u64..40, any::<bool>(), prop_oneof![Just(-1i64), Just(0), Just(1), Just(250)])
            .prop_map(|(ident, purpose, recipient, back, by_time, offset)| Op::AuthorizeAt { ident, purpose, recipient, back, by_time, offset }),
        1 => Just(Op::RecordExpiries),
        1 => Just(Op::RotateKey),
        1 => Just(Op::Reopen),
    ]
}

// ---- the reference model --------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MConsent {
    Granted {
        seq: u64,
        scope: MScope,
        expires: Option<u64>,
    },
    Withdrawn {
        seq: u64,
    },
    /// The grant `grant` lapsed at `at` and an `Expired` entry recorded it.
    Expired {
        grant: u64,
        at: u64,
    },
}

#[derive(Debug, Clone, Default)]
struct MIdent {
    /// The live (not erased) subject holding the identifier.
    holder: Option<usize>,
    /// Per purpose: the latest collection entry and its scope.
    collected: [Option<(u64, MScope)>; PURPOSES],
}

/// What an entry about a subject changed, as its history shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MChange {
    Collected {
        purpose: usize,
        scope: MScope,
    },
    Granted {
        purpose: usize,
        scope: MScope,
        expires: Option<u64>,
    },
    Withdrawn {
        purpose: usize,
    },
    Expired {
        purpose: usize,
    },
    Erased,
}

impl MChange {
    fn real(self) -> Change {
        match self {
            MChange::Collected { purpose, scope } => Change::Collected {
                kind: IdentifierKind::Phone,
                purpose: purpose_id(purpose).into(),
                legal_basis: legal_basis(purpose),
                scope: scope.real(),
            },
            MChange::Granted {
                purpose,
                scope,
                expires,
            } => Change::Granted {
                purpose: purpose_id(purpose).into(),
                scope: scope.real(),
                expires_at: expires.map(Timestamp::from_millis),
            },
            MChange::Withdrawn { purpose } => Change::Withdrawn {
                purpose: purpose_id(purpose).into(),
            },
            MChange::Expired { purpose } => Change::Expired {
                purpose: purpose_id(purpose).into(),
            },
            MChange::Erased => Change::Erased,
        }
    }
}

#[derive(Debug, Clone, Default)]
struct MSubject {
    erased: Option<u64>,
    consent: [Option<MConsent>; PURPOSES],
    /// The entries about the subject, oldest first: (position, time, change); after an
    /// erasure only the erasure.
    history: Vec<(u64, u64, MChange)>,
}

#[derive(Debug, Clone)]
struct Model {
    clock: u64,
    /// The latest time the ledger has read or written (time never runs backwards).
    seen: u64,
    last_ts: u64,
    len: u64,
    idents: Vec<MIdent>,
    subjects: Vec<MSubject>,
    /// `past[n]`: the model as it was after the first `n` entries (for point-in-time
    /// decisions); filled as entries are appended.
    past: Vec<Option<Snapshot>>,
}

/// The model after some prefix of the log.
#[derive(Debug, Clone)]
struct Snapshot {
    len: u64,
    last_ts: u64,
    idents: Vec<MIdent>,
    subjects: Vec<MSubject>,
}

/// A write's outcome: the entry (new or already there) and its time, or the error kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MWrite {
    Appended { seq: u64, ts: u64 },
    Already { seq: u64 },
    Erased { at: u64 },
    HeldByAnother,
    NotConsentBased,
}

/// A decision's outcome, with the evidence that matters.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MDecision {
    Allowed {
        subject: usize,
        allowed_by: u64,
        collected_at: u64,
        basis: LegalBasis,
        position: u64,
    },
    Denied(Denied),
}

impl Model {
    /// A model of a new ledger holding `len` entries made at `T0` (the genesis entry).
    fn new(len: u64) -> Self {
        Model {
            clock: T0,
            seen: T0,
            last_ts: T0,
            len,
            idents: vec![MIdent::default(); IDENTS],
            subjects: vec![MSubject::default(); SUBJECTS],
            past: Vec::new(),
        }
    }

    /// Records the entry `w` appended (if it did) in subject `s`'s history.
    fn note(&mut self, s: usize, w: &MWrite, change: MChange) {
        if let MWrite::Appended { seq, ts } = *w {
            self.subjects[s].history.push((seq, ts, change));
        }
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot {
            len: self.len,
            last_ts: self.last_ts,
            idents: self.idents.clone(),
            subjects: self.subjects.clone(),
        }
    }

    /// The decision at a past moment: the state after the first `n` entries, at time
    /// `now`, with the identifiers of subjects erased *since* unlinked (erasure removes
    /// the link from the past too).
    fn authorize_past(&self, n: u64, now: u64, i: usize, p: usize, r: usize) -> MDecision {
        if n == 0 {
            // Before the genesis entry nothing is known.
            return MDecision::Denied(Denied::UnknownIdentifier);
        }
        let snap = match self.past.get(n as usize) {
            Some(Some(snap)) if n < self.len => snap.clone(),
            _ => self.snapshot(),
        };
        let mut then = Model {
            clock: now,
            seen: now,
            last_ts: snap.last_ts,
            len: snap.len,
            idents: snap.idents,
            subjects: snap.subjects,
            past: Vec::new(),
        };
        for ident in &mut then.idents {
            if ident.holder.is_some_and(|h| self.subjects[h].erased.is_some()) {
                *ident = MIdent::default();
            }
        }
        then.authorize(i, p, r)
    }

    /// How many entries have a timestamp at or before `t` (timestamps never decrease).
    fn entries_until(&self, t: u64) -> u64 {
        (1..=self.len)
            .rev()
            .find(|n| self.timestamp_of_prefix(*n) <= t)
            .unwrap_or(0)
    }

    /// The timestamp of entry `n - 1`.
    fn timestamp_of_prefix(&self, n: u64) -> u64 {
        match self.past.get(n as usize) {
            Some(Some(snap)) if n < self.len => snap.last_ts,
            _ => self.last_ts,
        }
    }

    fn now(&mut self) -> u64 {
        self.seen = self.seen.max(self.clock);
        self.seen
    }

    fn append(&mut self) -> MWrite {
        let n = self.len as usize;
        if self.past.len() <= n {
            self.past.resize(n + 1, None);
        }
        self.past[n] = Some(self.snapshot());
        let ts = self.now().max(self.last_ts);
        self.last_ts = ts;
        let seq = self.len;
        self.len += 1;
        MWrite::Appended { seq, ts }
    }

    fn collect(&mut self, s: usize, i: usize, p: usize, scope: MScope) -> MWrite {
        if let Some(at) = self.subjects[s].erased {
            return MWrite::Erased { at };
        }
        if self.idents[i].holder.is_some_and(|h| h != s) {
            return MWrite::HeldByAnother;
        }
        if let Some((seq, sc)) = self.idents[i].collected[p] {
            if sc == scope {
                return MWrite::Already { seq };
            }
        }
        let w = self.append();
        if let MWrite::Appended { seq, .. } = w {
            self.idents[i].holder = Some(s);
            self.idents[i].collected[p] = Some((seq, scope));
        }
        self.note(s, &w, MChange::Collected { purpose: p, scope });
        w
    }

    fn grant(&mut self, s: usize, p: usize, scope: MScope, expires: Option<u64>) -> MWrite {
        if !needs_consent(p) {
            return MWrite::NotConsentBased;
        }
        if let Some(at) = self.subjects[s].erased {
            return MWrite::Erased { at };
        }
        let w = self.append();
        if let MWrite::Appended { seq, .. } = w {
            self.subjects[s].consent[p] = Some(MConsent::Granted { seq, scope, expires });
        }
        self.note(
            s,
            &w,
            MChange::Granted {
                purpose: p,
                scope,
                expires,
            },
        );
        w
    }

    fn withdraw(&mut self, s: usize, p: usize) -> MWrite {
        if !needs_consent(p) {
            return MWrite::NotConsentBased;
        }
        if let Some(at) = self.subjects[s].erased {
            return MWrite::Erased { at };
        }
        let w = self.append();
        if let MWrite::Appended { seq, .. } = w {
            self.subjects[s].consent[p] = Some(MConsent::Withdrawn { seq });
        }
        self.note(s, &w, MChange::Withdrawn { purpose: p });
        w
    }

    fn erase(&mut self, s: usize) -> MWrite {
        if let Some(seq) = self.subjects[s].erased {
            return MWrite::Already { seq };
        }
        let w = self.append();
        if let MWrite::Appended { seq, ts } = w {
            self.subjects[s].erased = Some(seq);
            self.subjects[s].history = vec![(seq, ts, MChange::Erased)];
            for ident in &mut self.idents {
                if ident.holder == Some(s) {
                    *ident = MIdent::default();
                }
            }
        }
        w
    }

    fn authorize(&mut self, i: usize, p: usize, r: usize) -> MDecision {
        let purpose = purpose_id(p);
        let ident = &self.idents[i];
        let Some(holder) = ident.holder else {
            return MDecision::Denied(Denied::UnknownIdentifier);
        };
        let Some((collected_at, collection_scope)) = ident.collected[p] else {
            return MDecision::Denied(Denied::NotCollectedForPurpose { purpose });
        };
        let allowed = |allowed_by, basis, position| MDecision::Allowed {
            subject: holder,
            allowed_by,
            collected_at,
            basis,
            position,
        };
        if !needs_consent(p) {
            if !collection_scope.covers(r) {
                return MDecision::Denied(Denied::RecipientNotCovered {
                    recipient: recipient(r),
                    entry: collected_at,
                });
            }
            self.now(); // the evidence's time is a time the ledger has seen
            return allowed(collected_at, LegalBasis::LegitimateInterest, self.len);
        }
        match self.subjects[holder].consent[p] {
            None => MDecision::Denied(Denied::NoConsent { purpose }),
            Some(MConsent::Withdrawn { seq }) => MDecision::Denied(Denied::Withdrawn { purpose, at: seq }),
            Some(MConsent::Expired { grant, at }) => MDecision::Denied(Denied::Expired {
                purpose,
                grant,
                at: Timestamp::from_millis(at),
            }),
            Some(MConsent::Granted { seq, scope, expires }) => {
                if let Some(at) = expires {
                    if self.now() >= at {
                        return MDecision::Denied(Denied::Expired {
                            purpose,
                            grant: seq,
                            at: Timestamp::from_millis(at),
                        });
                    }
                }
                if !scope.covers(r) {
                    return MDecision::Denied(Denied::RecipientNotCovered {
                        recipient: recipient(r),
                        entry: seq,
                    });
                }
                self.now();
                allowed(seq, LegalBasis::Consent, self.len)
            }
        }
    }

    /// Every live subject's lapsed grant becomes `Expired`, one entry each; returns the
    /// (subject, purpose) of each entry appended. Not in the ledger's order, which is its
    /// own: the caller adds the entries to the subjects' histories.
    fn record_expiries(&mut self) -> Vec<(usize, usize)> {
        let now = self.now();
        let mut appended = Vec::new();
        for s in 0..SUBJECTS {
            if self.subjects[s].erased.is_some() {
                continue;
            }
            for p in 0..PURPOSES {
                if let Some(MConsent::Granted {
                    seq,
                    expires: Some(at),
                    ..
                }) = self.subjects[s].consent[p]
                {
                    if at <= now {
                        self.append();
                        appended.push((s, p));
                        self.subjects[s].consent[p] = Some(MConsent::Expired { grant: seq, at });
                    }
                }
            }
        }
        appended
    }

    fn rotate_key(&mut self) -> MWrite {
        self.append()
    }

    /// Closing saves the latest time seen, so reopening changes nothing.
    fn reopen(&mut self) {}
}

// ---- the real ledger, driven the same way -------------------------------------------------

struct Real {
    dir: tempfile::TempDir,
    key: SigningKey,
    pk: PseudonymKey,
    clock: ManualClock,
    ledger: Option<Ledger>,
    reopens: usize,
}

impl Real {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut r = Real {
            dir,
            key: SigningKey::generate(),
            pk: PseudonymKey::generate(),
            clock: ManualClock::new(Timestamp::from_millis(T0)),
            ledger: None,
            reopens: 0,
        };
        r.reopen();
        r
    }

    fn reopen(&mut self) {
        drop(self.ledger.take());
        // Closing writes a state snapshot when 1, 3 or 10 entries are new (in turn), so
        // that reopening loads one and replays a tail of zero or more entries after it.
        let min_new_entries = [1, 3, 10][self.reopens % 3];
        self.reopens += 1;
        self.ledger = Some(
            Ledger::builder(self.dir.path())
                .signing_key(self.key.clone())
                .pseudonym_key(self.pk.clone())
                .durability(Durability::Relaxed)
                .clock(self.clock.clone())
                .snapshots(Snapshots::OnClose { min_new_entries })
                .open()
                .unwrap(),
        );
    }

    fn l(&self) -> &Ledger {
        self.ledger.as_ref().unwrap()
    }
}

fn write_outcome(r: Result<consent_ledger::Recorded, WriteError>, len_before: u64) -> MWrite {
    match r {
        Ok(rec) if rec.seq >= len_before => MWrite::Appended {
            seq: rec.seq,
            ts: rec.timestamp.as_millis(),
        },
        Ok(rec) => MWrite::Already { seq: rec.seq },
        Err(WriteError::SubjectErased { erased_at }) => MWrite::Erased { at: erased_at },
        Err(WriteError::HeldByAnotherSubject { .. }) => MWrite::HeldByAnother,
        Err(WriteError::Input(e)) if e.field() == "purpose" => MWrite::NotConsentBased,
        Err(e) => panic!("unexpected write error: {e}"),
    }
}

fn decision<P: Purpose>(r: Result<Use<'_, P>, Denied>) -> MDecision {
    match r {
        Ok(u) => {
            let e = u.evidence();
            let subject = e
                .subject()
                .as_str()
                .strip_prefix("subject-")
                .and_then(|n| n.parse().ok())
                .unwrap();
            MDecision::Allowed {
                subject,
                allowed_by: e.allowed_by(),
                collected_at: e.collected_at(),
                basis: e.legal_basis(),
                position: e.position(),
            }
        }
        Err(d) => MDecision::Denied(d),
    }
}

/// One decision through `authorize` and through `authorize_batch`; both must agree.
fn decide_as<P: Purpose>(l: &Ledger, ident: usize, r: usize) -> MDecision {
    let id = Identifier::<P>::phone(&phone(ident)).unwrap();
    let rec = recipient(r);
    let one = decision(l.authorize(&id, &rec));
    let batch = decision(l.authorize_batch([&id], &rec).pop().unwrap());
    assert_eq!(one, batch, "authorize and authorize_batch disagree");
    one
}

fn past_decision(
    r: Result<Result<consent_ledger::Evidence, Denied>, consent_ledger::ReadError>,
) -> MDecision {
    match r.unwrap() {
        Ok(e) => MDecision::Allowed {
            subject: e
                .subject()
                .as_str()
                .strip_prefix("subject-")
                .and_then(|n| n.parse().ok())
                .unwrap(),
            allowed_by: e.allowed_by(),
            collected_at: e.collected_at(),
            basis: e.legal_basis(),
            position: e.position(),
        },
        Err(d) => MDecision::Denied(d),
    }
}

fn decide_at(l: &Ledger, ident: usize, p: usize, r: usize, at: At) -> MDecision {
    let rec = recipient(r);
    match p {
        0 => past_decision(l.authorize_at(&Identifier::<Security>::phone(&phone(ident)).unwrap(), &rec, at)),
        1 => past_decision(l.authorize_at(
            &Identifier::<Advertising>::phone(&phone(ident)).unwrap(),
            &rec,
            at,
        )),
        _ => past_decision(l.authorize_at(
            &Identifier::<PartnerSharing>::phone(&phone(ident)).unwrap(),
            &rec,
            at,
        )),
    }
}

fn decide(l: &Ledger, ident: usize, p: usize, r: usize) -> MDecision {
    match p {
        0 => decide_as::<Security>(l, ident, r),
        1 => decide_as::<Advertising>(l, ident, r),
        _ => decide_as::<PartnerSharing>(l, ident, r),
    }
}

fn collect_as<P: Purpose>(
    l: &Ledger,
    s: usize,
    ident: usize,
    scope: MScope,
) -> Result<consent_ledger::Recorded, WriteError> {
    let id = Identifier::<P>::phone(&phone(ident)).unwrap();
    l.collect(&subject(s), &id, scope.real())
}

fn apply(op: &Op, m: &mut Model, real: &mut Real) -> Result<(), TestCaseError> {
    match *op {
        Op::Collect {
            subject: s,
            ident,
            purpose,
            scope,
        } => {
            let sc = SCOPES[scope];
            let len = real.l().len();
            let got = write_outcome(
                match purpose {
                    0 => collect_as::<Security>(real.l(), s, ident, sc),
                    1 => collect_as::<Advertising>(real.l(), s, ident, sc),
                    _ => collect_as::<PartnerSharing>(real.l(), s, ident, sc),
                },
                len,
            );
            prop_assert_eq!(got, m.collect(s, ident, purpose, sc), "{:?}", op);
        }
        Op::Grant {
            subject: s,
            purpose,
            scope,
            expires_in,
        } => {
            let sc = SCOPES[scope].real();
            let expires = expires_in.map(|d| m.clock + d);
            let at = expires.map(Timestamp::from_millis);
            let len = real.l().len();
            let got = write_outcome(
                match purpose {
                    0 => real.l().grant::<Security>(&subject(s), sc, at),
                    1 => real.l().grant::<Advertising>(&subject(s), sc, at),
                    _ => real.l().grant::<PartnerSharing>(&subject(s), sc, at),
                },
                len,
            );
            prop_assert_eq!(got, m.grant(s, purpose, SCOPES[scope], expires), "{:?}", op);
        }
        Op::Withdraw { subject: s, purpose } => {
            let len = real.l().len();
            let got = write_outcome(
                match purpose {
                    0 => real.l().withdraw::<Security>(&subject(s)),
                    1 => real.l().withdraw::<Advertising>(&subject(s)),
                    _ => real.l().withdraw::<PartnerSharing>(&subject(s)),
                },
                len,
            );
            prop_assert_eq!(got, m.withdraw(s, purpose), "{:?}", op);
        }
        Op::Erase { subject: s } => {
            let len = real.l().len();
            let got = write_outcome(real.l().erase(&subject(s), Actor::Subject), len);
            prop_assert_eq!(got, m.erase(s), "{:?}", op);
            check_histories(real.l(), m)?;
        }
        Op::Clock { delta } => {
            m.clock = m.clock.saturating_add_signed(delta);
            real.clock.set(Timestamp::from_millis(m.clock));
        }
        Op::Authorize {
            ident,
            purpose,
            recipient,
        } => {
            let got = decide(real.l(), ident, purpose, recipient);
            prop_assert_eq!(got, m.authorize(ident, purpose, recipient), "{:?}", op);
        }
        Op::AuthorizeAt {
            ident,
            purpose,
            recipient,
            back,
            by_time,
            offset,
        } => {
            // Positions 1..=len (the genesis entry is always there).
            let n = m.len - back % m.len;
            let (at, want) = if by_time {
                let t = m.timestamp_of_prefix(n).saturating_add_signed(offset);
                let n = m.entries_until(t);
                (
                    At::Time(Timestamp::from_millis(t)),
                    m.authorize_past(n, t, ident, purpose, recipient),
                )
            } else {
                let t = m.timestamp_of_prefix(n);
                (At::Position(n), m.authorize_past(n, t, ident, purpose, recipient))
            };
            let got = decide_at(real.l(), ident, purpose, recipient, at);
            prop_assert_eq!(got, want, "{:?} ({:?})", op, at);
        }
        Op::RecordExpiries => {
            let len = real.l().len();
            let recorded = real.l().record_expiries().unwrap();
            let mut due = m.record_expiries();
            prop_assert_eq!(recorded.len(), due.len(), "entries appended");
            if !recorded.is_empty() {
                // Receipts are given for durable entries only.
                real.l().sync().unwrap();
            }
            for (i, r) in recorded.iter().enumerate() {
                prop_assert_eq!(r.seq, len + i as u64);
                prop_assert_eq!(r.timestamp.as_millis(), m.last_ts);
                // Which lapse the entry records, read from the entry itself (a receipt).
                let receipt = real.l().receipt(r.seq, "settings").unwrap();
                let s = receipt
                    .subject()
                    .strip_prefix("subject-")
                    .and_then(|n| n.parse::<usize>().ok())
                    .unwrap();
                let p = (0..PURPOSES)
                    .find(|p| receipt.purpose() == Some(purpose_id(*p)))
                    .unwrap();
                let k = due.iter().position(|d| *d == (s, p));
                prop_assert!(
                    k.is_some(),
                    "entry {} records a lapse the model has not: {:?}",
                    r.seq,
                    (s, p)
                );
                due.retain(|d| *d != (s, p));
                m.subjects[s]
                    .history
                    .push((r.seq, r.timestamp.as_millis(), MChange::Expired { purpose: p }));
            }
            // Running it again appends nothing.
            prop_assert!(real.l().record_expiries().unwrap().is_empty());
        }
        Op::RotateKey => {
            let next = SigningKey::generate();
            let len = real.l().len();
            let got = write_outcome(real.l().rotate_key(next.clone()), len);
            real.key = next;
            prop_assert_eq!(got, m.rotate_key(), "{:?}", op);
        }
        Op::Reopen => {
            // Every decision before and after reopening is the same, and the log verifies.
            let before = every_decision(real.l());
            prop_assert_eq!(&before, &every_model_decision(m));
            check_histories(real.l(), m)?;
            real.reopen();
            m.reopen();
            prop_assert_eq!(real.l().len(), m.len);
            check_histories(real.l(), m)?;
            let report = real.l().verify().unwrap();
            prop_assert_eq!(report.entries, m.len);
            prop_assert_eq!(every_decision(real.l()), before);
        }
    }
    prop_assert_eq!(real.l().len(), m.len, "length after {:?}", op);
    Ok(())
}

/// Every subject's history, read from the ledger, is the model's.
fn check_histories(l: &Ledger, m: &Model) -> Result<(), TestCaseError> {
    for (s, ms) in m.subjects.iter().enumerate() {
        let got: Vec<(u64, u64, Change)> = l
            .history(&subject(s))
            .unwrap()
            .into_iter()
            .map(|h| (h.seq, h.timestamp.as_millis(), h.change))
            .collect();
        let want: Vec<(u64, u64, Change)> = ms
            .history
            .iter()
            .map(|(seq, ts, c)| (*seq, *ts, c.real()))
            .collect();
        prop_assert_eq!(got, want, "history of subject {}", s);
    }
    Ok(())
}

/// Every decision of the model, in the order of [`every_decision`].
fn every_model_decision(m: &mut Model) -> Vec<MDecision> {
    let mut out = Vec::new();
    for i in 0..IDENTS {
        for p in 0..PURPOSES {
            for r in 0..RECIPIENTS {
                out.push(m.authorize(i, p, r));
            }
        }
    }
    out
}

/// Every decision in the small world, in a fixed order.
fn every_decision(l: &Ledger) -> Vec<MDecision> {
    let mut out = Vec::new();
    for i in 0..IDENTS {
        for p in 0..PURPOSES {
            for r in 0..RECIPIENTS {
                out.push(decide(l, i, p, r));
            }
        }
    }
    out
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(256)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), ..ProptestConfig::default() })]

    #[test]
    fn the_ledger_decides_as_the_model_does(ops in proptest::collection::vec(op(), 1..120)) {
        let mut real = Real::new();
        let mut m = Model::new(real.l().len());
        for op in &ops {
            apply(op, &mut m, &mut real)?;
        }
        // The whole world once more, from a reopened ledger, against the model.
        check_histories(real.l(), &m)?;
        real.reopen();
        m.reopen();
        prop_assert_eq!(every_decision(real.l()), every_model_decision(&mut m));
        check_histories(real.l(), &m)?;
    }
}

/// A fixed sequence through each rule once, so that a change of semantics fails here
/// with a readable trace even before proptest finds it.
#[test]
fn a_fixed_walk_through_every_rule() {
    let ops = vec![
        Op::Collect {
            subject: 0,
            ident: 0,
            purpose: 0,
            scope: 0,
        },
        Op::Authorize {
            ident: 0,
            purpose: 0,
            recipient: 0,
        },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 1,
        },
        Op::Collect {
            subject: 0,
            ident: 0,
            purpose: 1,
            scope: 5,
        },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 1,
        },
        Op::Grant {
            subject: 0,
            purpose: 1,
            scope: 3,
            expires_in: Some(1_000),
        },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 2,
        },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 3,
        },
        Op::Clock { delta: 999 },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 2,
        },
        Op::Clock { delta: 1 },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 2,
        },
        Op::Clock { delta: 1_000 },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 2,
        },
        Op::Clock { delta: -3_000 },
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 2,
        },
        Op::Reopen,
        Op::Authorize {
            ident: 0,
            purpose: 1,
            recipient: 2,
        },
        Op::Grant {
            subject: 0,
            purpose: 0,
            scope: 0,
            expires_in: None,
        },
        Op::Grant {
            subject: 0,
            purpose: 2,
            scope: 5,
            expires_in: None,
        },
        Op::Collect {
            subject: 1,
            ident: 0,
            purpose: 2,
            scope: 5,
        },
        Op::Collect {
            subject: 0,
            ident: 0,
            purpose: 2,
            scope: 5,
        },
        Op::Collect {
            subject: 0,
            ident: 0,
            purpose: 2,
            scope: 5,
        },
        Op::Authorize {
            ident: 0,
            purpose: 2,
            recipient: 1,
        },
        Op::Withdraw {
            subject: 0,
            purpose: 2,
        },
        Op::Authorize {
            ident: 0,
            purpose: 2,
            recipient: 1,
        },
        Op::Erase { subject: 0 },
        Op::Erase { subject: 0 },
        Op::Authorize {
            ident: 0,
            purpose: 0,
            recipient: 0,
        },
        Op::Grant {
            subject: 0,
            purpose: 1,
            scope: 5,
            expires_in: None,
        },
        Op::Collect {
            subject: 1,
            ident: 0,
            purpose: 0,
            scope: 4,
        },
        Op::Authorize {
            ident: 0,
            purpose: 0,
            recipient: 3,
        },
        Op::Reopen,
        Op::Authorize {
            ident: 0,
            purpose: 0,
            recipient: 3,
        },
    ];
    let mut real = Real::new();
    let mut m = Model::new(real.l().len());
    for op in &ops {
        apply(op, &mut m, &mut real).unwrap();
    }
    check_histories(real.l(), &m).unwrap();
    // The walk really went through the rules it names.
    assert!(m.subjects[0].erased.is_some());
    assert_eq!(
        real.l().history(&subject(0)).unwrap().len(),
        1,
        "only the erasure"
    );
    assert!(!real.l().history(&subject(1)).unwrap().is_empty());
    assert!(matches!(
        m.authorize(0, 0, 3),
        MDecision::Allowed { subject: 1, .. }
    ));
}
