//! Resources taken by caller input of attacker-chosen size (review h35-h): text a web
//! service passes through from its users must cost memory in proportion to itself, once,
//! and what the ledger keeps must not grow with changes that no longer count.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

#[global_allocator]
static ALLOC: count_alloc::Counting = count_alloc::Counting;

use consent_ledger::{
    Advertising, Analytics, Durability, Identifier, Ledger, ManualClock, PartnerSharing, Personalization,
    PseudonymKey, ReadError, Recipient, RecipientScope, SigningKey, SubjectId, Timestamp,
    MAX_HOW_TO_WITHDRAW_LEN,
};

const T0: u64 = 1_700_000_000_000;

fn open(dir: &std::path::Path) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .clock(ManualClock::new(Timestamp::from_millis(T0)))
        .open()
        .unwrap()
}

/// `Ledger::receipt` refuses a `how_to_withdraw` over 64 KiB; `export_subject` took any
/// length and copied it into every consent record of the subject (and JSON escapes a
/// control character as six bytes): 4 MiB of text became a 100 MB document for a
/// subject with four consents, and a subject's own choices multiply it.
/// (Now refused over 64 KiB, as for a receipt.)
#[test]
fn an_export_does_not_copy_an_unbounded_how_to_withdraw_into_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("s-1").unwrap();
    let id = Identifier::<Advertising>::email("a@example.org").unwrap();
    l.collect(&s, &id, RecipientScope::all_partners()).unwrap();
    l.grant::<Advertising>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    l.grant::<Analytics>(&s, RecipientScope::first_party(), None)
        .unwrap();
    l.grant::<Personalization>(&s, RecipientScope::first_party(), None)
        .unwrap();
    l.grant::<PartnerSharing>(&s, RecipientScope::all_partners(), None)
        .unwrap();
    let how = "x".repeat(16 * MAX_HOW_TO_WITHDRAW_LEN);
    match l.export_subject(&s, &how) {
        // Refused as `receipt` refuses it.
        Err(ReadError::Input(_)) => {}
        // Or stated once, whatever the number of records.
        Ok(doc) => assert!(
            doc.len() < how.len() + (64 << 10),
            "a how_to_withdraw of {} bytes gave an export of {} bytes",
            how.len(),
            doc.len()
        ),
        Err(e) => panic!("{e}"),
    }
}

/// A scope of 200 developer apps, `g` telling which (the names differ with `g`).
fn apps(g: usize) -> RecipientScope {
    RecipientScope::any_of((0..200).map(|i| Recipient::developer_app(&format!("app-{g:06}-{i:03}")).unwrap()))
        .unwrap()
}

/// Heap bytes the ledger gained over `n` grants of one subject, each replacing the
/// one before, with scopes `scope(g)`.
fn growth(n: usize, scope: impl Fn(usize) -> RecipientScope) -> isize {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let s = SubjectId::new("s-1").unwrap();
    // Warm: sled's and the state's first allocations.
    for g in 0..100 {
        l.grant::<Advertising>(&s, apps(1_000_000 + g % 2), None).unwrap();
    }
    let before = count_alloc::live_bytes();
    for g in 0..n {
        l.grant::<Advertising>(&s, scope(g), None).unwrap();
    }
    count_alloc::live_bytes() - before
}

/// The decision state interned every recipient scope ever granted or collected, twice
/// (in `scopes` and as a key of `scope_idx`), and never let one go: a subject who
/// picked another set of developer apps on every request (as a consent screen lets
/// them) grew the server's memory by about 16 KB per request, for good (snapshots and
/// replays kept them too), though only the latest grant is in force. The table is now
/// compacted as it grows (`State::compact_scopes`).
#[test]
fn grants_replaced_by_grants_with_other_scopes_do_not_stay_in_memory() {
    let n = 1000;
    // The same bytes written either way; only the number of distinct scopes differs.
    let two_scopes = growth(n, |g| apps(g % 2));
    let all_distinct = growth(n, apps);
    let per_grant = (all_distinct - two_scopes) / n as isize;
    eprintln!(
        "growth: two scopes {two_scopes} B, {n} distinct {all_distinct} B: {per_grant} B per replaced grant"
    );
    // Compacted when the table doubles (at least 32 scopes): at most about 32 of them,
    // some 480 KB, are dead at once; sled's own caches move the figure by about as
    // much either way. (Before: 15,440 bytes for each replaced grant.)
    assert!(
        per_grant < 2048,
        "each replaced grant with a scope of its own keeps {per_grant} bytes in memory"
    );
}

/// Compacting the scope table keeps every scope in force and renumbers every reference
/// to it: identifiers collected with scopes of their own, and a grant replaced many
/// times, decide as they should, in the live ledger and after reopening it (from its
/// snapshot, and by replay).
#[test]
fn compacting_the_scope_table_keeps_the_scopes_in_force() {
    use consent_ledger::{Security, Snapshots};
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let open_with = |snapshots: Snapshots| {
        Ledger::builder(dir.path())
            .signing_key(key.clone())
            .pseudonym_key(pk.clone())
            .durability(Durability::Relaxed)
            .snapshots(snapshots)
            .clock(ManualClock::new(Timestamp::from_millis(T0)))
            .open()
            .unwrap()
    };
    let partner = |i: usize| Recipient::partner(&format!("partner-{i:03}")).unwrap();
    let app = |g: usize| Recipient::developer_app(&format!("app-{g:03}")).unwrap();
    let a = SubjectId::new("a-1").unwrap();
    let b = SubjectId::new("b-1").unwrap();
    let phones: Vec<Identifier<Security>> = (0..60)
        .map(|i| Identifier::<Security>::phone(&format!("+1555010{i:04}")).unwrap())
        .collect();
    let email = Identifier::<Advertising>::email("b@example.org").unwrap();
    let check = |l: &Ledger| {
        for (i, phone) in phones.iter().enumerate() {
            assert!(
                l.authorize(phone, &partner(i)).is_ok(),
                "phone {i} for its partner"
            );
            assert!(
                l.authorize(phone, &partner(i + 1)).is_err(),
                "phone {i} for another"
            );
        }
        assert!(l.authorize(&email, &app(199)).is_ok());
        assert!(l.authorize(&email, &app(198)).is_err());
    };
    {
        let l = open_with(Snapshots::OnClose { min_new_entries: 1 });
        l.collect(&b, &email, RecipientScope::first_party()).unwrap();
        for (i, phone) in phones.iter().enumerate() {
            l.collect(&a, phone, RecipientScope::only(partner(i))).unwrap();
            // Replaced grants in between: dead scopes for the compactions to drop.
            l.grant::<Advertising>(&b, RecipientScope::only(app(i)), None)
                .unwrap();
        }
        for g in 60..200 {
            l.grant::<Advertising>(&b, RecipientScope::only(app(g)), None)
                .unwrap();
        }
        check(&l);
    }
    check(&open_with(Snapshots::OnClose { min_new_entries: 1 }));
    check(&open_with(Snapshots::Off));
}
