//! Memory: heap bytes of decision state per active grant, beyond the subject's own id,
//! measured with a counting global allocator; baseline: a bare
//! `HashMap<[u8; 32], SubjectId>` (pseudonym -> subject, purpose-blind) of the same
//! size, measured the same way in the same run.
//!
//! `cargo bench --bench memory` prints a table (no timing, so no criterion).
#![allow(clippy::unwrap_used, reason = "bench")]

use std::collections::HashMap;

use consent_ledger::bench_support::{state_memory, Grants};
use consent_ledger::SubjectId;

#[global_allocator]
static ALLOC: count_alloc::Counting = count_alloc::Counting;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` runs this too: keep it small then.
    let quick = !std::env::args().any(|a| a == "--bench");
    let sizes: Vec<u64> = if quick {
        vec![10_000]
    } else {
        vec![10_000, 100_000, 1_000_000]
    };
    println!(
        "{:>9} | {:>14} | {:>16} | {:>18} | {:>13} | {:>14} | {:>24}",
        "subjects",
        "state B/grant",
        "beyond id B/grant",
        "grant alone B",
        "hashmap B/entry",
        "ratio (beyond)",
        "beyond id, expiring B/gr"
    );
    for n in sizes {
        let ids: Vec<SubjectId> = (0..n)
            .map(|i| SubjectId::new(&format!("acct-{i:08}")).unwrap())
            .collect();
        let live = || count_alloc::live_bytes();
        let with = state_memory(&ids, Grants::Lasting, &live);
        let without = state_memory(&ids, Grants::Without, &live);
        let expiring = state_memory(&ids, Grants::Expiring, &live);
        let beyond_expiring =
            (expiring.state_bytes as f64 - expiring.id_handle_bytes as f64) / expiring.active_grants as f64;
        let per_grant = with.state_bytes as f64 / with.active_grants as f64;
        let beyond = (with.state_bytes as f64 - with.id_handle_bytes as f64) / with.active_grants as f64;
        let grant_alone = (with.state_bytes - without.state_bytes) as f64 / with.active_grants as f64;

        let before = count_alloc::live_bytes();
        let map: HashMap<[u8; 32], SubjectId> = (0..n)
            .zip(&ids)
            .map(|(i, id)| {
                let mut k = [0u8; 32];
                k[..8].copy_from_slice(&i.to_le_bytes());
                (k, id.clone())
            })
            .collect();
        let map_bytes = (count_alloc::live_bytes() - before) as f64 / n as f64;
        drop(map);
        println!(
            "{n:>9} | {per_grant:>14.1} | {beyond:>16.1} | {grant_alone:>18.1} | {map_bytes:>15.1} | {:>14.2} | \
             {beyond_expiring:>24.1}",
            beyond / map_bytes
        );
    }
    println!("target: beyond id <= 96 bytes per active grant (grants with an expiry in the last column)");
}
