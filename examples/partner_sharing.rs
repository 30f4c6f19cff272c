//! The "share your data with business partners" setting takes effect at once.
//!
//! A platform once said such a switch "may take some time to take effect". Here the
//! switch is a grant or a withdrawal in the ledger, and every decision reads the
//! current state: the very next decision, in any thread, reflects it.
//!
//! Run with `cargo run --example partner_sharing`.

use consent_ledger::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Immediate)
        .open()?;
    let alice = SubjectId::new("user-1")?;
    let email = Identifier::<PartnerSharing>::email("alice@example.com")?;
    ledger.collect(&alice, &email, RecipientScope::first_party())?;
    let partner = Recipient::partner("acme-analytics")?;

    let show = |label: &str| {
        // Decide in another thread too: the setting is the same everywhere.
        let here = describe(ledger.authorize(&email, &partner).map(|_| ()));
        let there = std::thread::scope(|s| {
            s.spawn(|| describe(ledger.authorize(&email, &partner).map(|_| ())))
                .join()
                .unwrap_or_else(|_| "thread failed".to_owned())
        });
        println!("{label}\n    this thread:  {here}\n    other thread: {there}");
    };

    show("setting never touched:");
    let on = ledger.grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)?;
    show(&format!("switched ON  (entry {}):", on.seq));
    let off = ledger.withdraw::<PartnerSharing>(&alice)?;
    show(&format!("switched OFF (entry {}):", off.seq));
    let on = ledger.grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)?;
    show(&format!("switched ON again (entry {}):", on.seq));
    let off = ledger.withdraw::<PartnerSharing>(&alice)?;
    show(&format!("switched OFF again (entry {}):", off.seq));

    println!("\nalice's history:");
    for h in ledger.history(&alice)? {
        println!("  #{:<3} {} {}", h.seq, h.timestamp, h.change);
    }
    Ok(())
}

fn describe(d: Result<(), Denied>) -> String {
    match d {
        Ok(()) => "allowed".to_owned(),
        Err(denied) => format!("denied: {denied}"),
    }
}
