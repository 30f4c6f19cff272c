//! Not part of the API: hooks for the crate's own benchmarks (`benches/memory.rs`,
//! which needs to build the private decision state directly, and `benches/audience.rs`,
//! which measures the crate's hashing alone). May change at any time.
#![doc(hidden)]
#![allow(missing_docs, reason = "hidden bench hooks")]

use crate::entry::{Actor, Body, Entry};
use crate::identifier::{IdentifierKind, Pseudonym, PseudonymKey};
use crate::purpose::LegalBasis;
use crate::recipient::RecipientScope;
use crate::state::State;
use crate::subject::SubjectId;
use crate::time::Timestamp;

/// Heap bytes of a decision state built from synthetic subjects.
#[derive(Debug, Clone, Copy)]
pub struct StateMemory {
    pub subjects: u64,
    pub active_grants: u64,
    /// Heap bytes held by the state (the subject ids' own allocations excluded: they
    /// were allocated before the state was built and it only shares them).
    pub state_bytes: i64,
    /// `size_of::<SubjectId>()` per subject: the id handle the state stores for each.
    pub id_handle_bytes: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn pseudonym(i: u64) -> Pseudonym {
    let mut p = [0u8; 32];
    for (j, chunk) in p.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix(i.wrapping_mul(4).wrapping_add(j as u64)).to_le_bytes());
    }
    Pseudonym(p)
}

/// Which grants the synthetic subjects of [`state_memory`] have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grants {
    /// No grant: only the collection.
    Without,
    /// An active advertising grant without an expiry.
    Lasting,
    /// An active advertising grant with an expiry (its time is part of the consent record).
    Expiring,
}

/// Builds a state of `ids.len()` subjects, each with one email collected for
/// advertising (all partners) and the advertising grant `grants` says; returns the heap
/// bytes the state holds, measured with `live_bytes` (a counting allocator's reading)
/// before and after, once every temporary is dropped.
pub fn state_memory(ids: &[SubjectId], grants: Grants, live_bytes: &dyn Fn() -> isize) -> StateMemory {
    let grant = grants != Grants::Without;
    let expires_at = (grants == Grants::Expiring).then(|| Timestamp::from_millis(1_900_000_000_000));
    let before = live_bytes();
    let mut state = State::default();
    let mut seq = 0u64;
    let mut apply = |state: &mut State, body: Body, lookup: Option<Pseudonym>| {
        let entry = Entry {
            seq,
            timestamp: Timestamp::from_millis(1_800_000_000_000),
            actor: Actor::Subject,
            prev_hash: [0; 32],
            salt: [0; 16],
            body,
        };
        state.apply(&entry, lookup);
        seq += 1;
    };
    for (i, id) in (0u64..).zip(ids) {
        apply(
            &mut state,
            Body::Collected {
                subject: id.clone(),
                kind: IdentifierKind::Email,
                pseudonym: Pseudonym([0; 32]),
                purpose: "advertising".into(),
                basis: LegalBasis::Consent,
                scope: RecipientScope::all_partners(),
            },
            Some(pseudonym(i)),
        );
        if grant {
            apply(
                &mut state,
                Body::Granted {
                    subject: id.clone(),
                    purpose: "advertising".into(),
                    scope: RecipientScope::all_partners(),
                    expires_at,
                },
                None,
            );
        }
    }
    let after = live_bytes();
    let report = StateMemory {
        subjects: ids.len() as u64,
        active_grants: if grant { ids.len() as u64 } else { 0 },
        state_bytes: (after - before) as i64,
        id_handle_bytes: std::mem::size_of_val(ids) as u64,
    };
    drop(state);
    report
}

/// The lookup pseudonyms of already normalized values (emails where they hold '@',
/// phone numbers elsewhere), computed as audience matching computes them: sixteen at a
/// time in lanes if `in_lanes`, one by one through `sha2` otherwise. The hashing alone,
/// without normalizing or deciding. Returns the first byte of every pseudonym, folded,
/// for `black_box`.
pub fn lookup_hashing(key: &PseudonymKey, normalized: &[String], in_lanes: bool) -> u8 {
    let values = normalized
        .iter()
        .map(|v| (IdentifierKind::guess(v), v.as_bytes()));
    key.lookup_hasher()
        .of_normalized_many(values, in_lanes)
        .iter()
        .flatten()
        .fold(0, |acc, (_, p)| acc ^ p.0.first().copied().unwrap_or(0))
}

/// The lookup pseudonyms of raw identifiers, each guessed, normalized and hashed as
/// audience matching does it, without deciding: what matching spends before it reads
/// the state. Returns the first byte of every pseudonym, folded, for `black_box`.
pub fn raw_lookup_hashing(key: &PseudonymKey, raws: &[String]) -> u8 {
    let rows = raws.iter().map(|r| (IdentifierKind::guess(r), r.as_str()));
    key.lookup_hasher()
        .of_raws(rows)
        .iter()
        .flatten()
        .fold(0, |acc, (_, p)| acc ^ p.0.first().copied().unwrap_or(0))
}

/// Whether audience matching computes lookup pseudonyms in lanes on this CPU (on
/// x86-64: in SHA instructions, four blocks side by side, where it has them; in AVX2 or
/// SSE2 registers elsewhere).
pub fn hashes_in_lanes() -> bool {
    crate::lanes::worthwhile()
}
