//! Random histories for the subject export tests (export_model, export_random): the
//! purpose types (three ids, several types per id), the identifier and recipient pools,
//! and a run of random collections, grants, withdrawals, erasures and clock steps.

use consent_ledger::{
    declare_purpose, Actor, Clock, Identifier, Ledger, LegalBasis, ManualClock, Purpose, Recipient,
    RecipientScope, SubjectId,
};

declare_purpose!(
    /// `sharing`, consent-based. (The built-in ids are reserved for their own bases,
    /// so the several types per id below use ids of their own.)
    pub Sharing,
    "sharing",
    "sharing with partners, consent",
    LegalBasis::Consent
);

declare_purpose!(
    /// `sharing` declared under legitimate interest.
    pub LiSharing,
    "sharing",
    "sharing with partners, legitimate interest",
    LegalBasis::LegitimateInterest
);

declare_purpose!(
    /// `sharing` declared under a contract.
    pub ContractSharing,
    "sharing",
    "sharing with partners, contract",
    LegalBasis::Contract
);

declare_purpose!(
    /// `login`, under legitimate interest (as the built-in `security`).
    pub Login,
    "login",
    "login checks, legitimate interest",
    LegalBasis::LegitimateInterest
);

declare_purpose!(
    /// `login` declared as consent-based.
    pub ConsentLogin,
    "login",
    "login checks, consent",
    LegalBasis::Consent
);

/// The purpose types the histories use (three ids, several types per id).
#[derive(Debug, Clone, Copy)]
pub enum T {
    Ps,
    Li,
    Ct,
    Sec,
    SecC,
    An,
}

/// Every purpose type, in the order the random draws index.
pub const TYPES: [T; 6] = [T::Ps, T::Li, T::Ct, T::Sec, T::SecC, T::An];

/// Evaluates `$body` with `$P` the purpose type `$t` names.
macro_rules! with_type {
    ($t:expr, $P:ident => $body:expr) => {
        match $t {
            $crate::random_history::T::Ps => {
                type $P = $crate::random_history::Sharing;
                $body
            }
            $crate::random_history::T::Li => {
                type $P = $crate::random_history::LiSharing;
                $body
            }
            $crate::random_history::T::Ct => {
                type $P = $crate::random_history::ContractSharing;
                $body
            }
            $crate::random_history::T::Sec => {
                type $P = $crate::random_history::Login;
                $body
            }
            $crate::random_history::T::SecC => {
                type $P = $crate::random_history::ConsentLogin;
                $body
            }
            $crate::random_history::T::An => {
                type $P = ::consent_ledger::Analytics;
                $body
            }
        }
    };
}
#[allow(unused_imports, reason = "export_random uses it only through random_ops")]
pub(crate) use with_type;

/// (kind, value) of the identifier pool: 0 email, 1 phone, 2 device id.
pub const VALUES: [(u8, &str); 5] = [
    (0, "a@example.com"),
    (0, "b@example.com"),
    (1, "+15550100001"),
    (1, "+15550100002"),
    (2, "device-0001"),
];

/// The identifier `VALUES[v]` for purpose `P`.
pub fn ident<P: Purpose>(v: usize) -> Identifier<P> {
    let (k, raw) = VALUES[v];
    match k {
        0 => Identifier::<P>::email(raw).unwrap(),
        1 => Identifier::<P>::phone(raw).unwrap(),
        _ => Identifier::<P>::device_id(raw).unwrap(),
    }
}

/// The recipients the histories share with and ask about.
pub fn recipients_pool() -> Vec<Recipient> {
    vec![
        Recipient::FirstParty,
        Recipient::partner("acme").unwrap(),
        Recipient::partner("beta").unwrap(),
    ]
}

/// One of five scopes over `recipients_pool`, by `i % 5`.
pub fn scope_pool(i: usize) -> RecipientScope {
    let r = recipients_pool();
    match i % 5 {
        0 => RecipientScope::first_party(),
        1 => RecipientScope::only(r[1].clone()),
        2 => RecipientScope::only(r[2].clone()),
        3 => RecipientScope::any_of([r[1].clone(), r[2].clone()]).unwrap(),
        _ => RecipientScope::all_partners(),
    }
}

/// A xorshift generator: the same history for the same seed.
struct Rng(u64);
impl Rng {
    /// The generator for `seed` (never zero).
    fn seeded(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// A number in `0..n`.
    fn next(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

/// How a history draws its operations, as each test file has always drawn them.
pub struct Mix {
    /// The operation is drawn from `0..draws`: 0..=4 collect, 5..=6 grant,
    /// 7 withdraw, 8 erase (sometimes), 9 clock step, 10 record expiries, the rest
    /// `rest_authorizes` or nothing.
    pub draws: usize,
    /// A drawn 8 erases when a further draw from `0..erase_one_in` is 0.
    pub erase_one_in: usize,
    /// Whether the draws past 10 authorize a random use (else they do nothing).
    pub rest_authorizes: bool,
}

/// Runs `ops` random operations of seed `seed` on `l` for `subjects`, with `clock`
/// the ledger's clock; returns the log of what was done and how it ended.
pub fn random_ops(
    l: &Ledger,
    clock: &ManualClock,
    subjects: &[SubjectId; 2],
    seed: u64,
    ops: usize,
    mix: &Mix,
) -> Vec<String> {
    let mut rng = Rng::seeded(seed);
    let mut log = Vec::new();
    for _ in 0..ops {
        let s = &subjects[rng.next(2)];
        let t = TYPES[rng.next(TYPES.len())];
        match rng.next(mix.draws) {
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
            8 if rng.next(mix.erase_one_in) == 0 => {
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
            _ if mix.rest_authorizes => {
                let v = rng.next(VALUES.len());
                let r = &recipients_pool()[rng.next(3)];
                let ok = with_type!(t, P => l.authorize(&ident::<P>(v), r).is_ok());
                log.push(format!("authorize v{v} {t:?} {r} -> {ok}"));
            }
            _ => {}
        }
    }
    log
}
