//! Messages meant for one registered developer app never reach another.
//!
//! The incident: an API bug handed people's private data, meant for the developer app
//! they had connected, to a different registered app. Here a `Use` is bound to the
//! recipient it was decided for: delivering it anywhere else through the crate is
//! refused at run time, and with a `Channel` the mix-up does not even compile.
//! `Use::expose`, which gives the value to the application's own code, refuses a use
//! decided for an app: an app's data leaves only through `deliver_to` or a `Channel`.
//!
//! Run with `cargo run --example developer_recipients`.

use consent_ledger::*;

declare_purpose!(
    ApiSharing,
    "developer-api",
    "sharing with the developer apps the person connected",
    LegalBasis::Consent
);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let ledger = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()?;

    let app_a = Recipient::developer_app("app-1001-photos")?;
    let app_b = Recipient::developer_app("app-2002-quiz")?;

    // Alice connected only the photo app; Bob connected both.
    let alice = SubjectId::new("user-1")?;
    let bob = SubjectId::new("user-2")?;
    let alice_email = Identifier::<ApiSharing>::email("alice@example.com")?;
    let bob_email = Identifier::<ApiSharing>::email("bob@example.com")?;
    let both = RecipientScope::any_of([app_a.clone(), app_b.clone()])?;
    ledger.collect(&alice, &alice_email, RecipientScope::only(app_a.clone()))?;
    ledger.grant::<ApiSharing>(&alice, RecipientScope::only(app_a.clone()), None)?;
    ledger.collect(&bob, &bob_email, both.clone())?;
    ledger.grant::<ApiSharing>(&bob, both, None)?;
    println!("registered apps: {app_a}, {app_b}");
    println!("alice connected {app_a} only; bob connected both\n");

    // The API builds a response for app A ...
    let for_a = ledger.authorize(&alice_email, &app_a)?;
    println!(
        "decided: alice's email may go to {} (allowed by entry {})",
        for_a.recipient(),
        for_a.evidence().allowed_by()
    );
    // ... and a routing bug hands it to app B's connection.
    match for_a.deliver_to(&app_b, |email| format!("POST {app_b}: {email}")) {
        Ok(sent) => println!("DELIVERED (this must not happen): {sent}"),
        Err(refused) => println!("refused: {refused}"),
    }

    // App B asking for alice's email itself is denied: she never connected it.
    match ledger.authorize(&alice_email, &app_b) {
        Ok(_) => println!("app B may read alice's email (this must not happen)"),
        Err(denied) => println!("app B asking for alice's email: denied ({denied})"),
    }

    // Correct routing delivers.
    let for_a = ledger.authorize(&alice_email, &app_a)?;
    let sent = for_a.deliver_to(&app_a, |email| format!("POST {app_a}: {} bytes", email.len()))?;
    println!("delivered: {sent}");

    // With channels the recipient is part of the type: a parcel authorized on A's
    // channel can only be sent on A's channel (sending it on B's does not compile:
    // see tests/ui/delivery_wrong_channel.rs).
    let delivered = ledger.channel(&app_b, |to_b| {
        [&alice_email, &bob_email]
            .into_iter()
            .filter_map(|id| to_b.authorize(id).ok())
            .map(|parcel| {
                let who = parcel.evidence().subject().to_string();
                to_b.send(parcel, |email| {
                    format!("{who} -> {} ({} bytes)", to_b.recipient(), email.len())
                })
            })
            .collect::<Vec<_>>()
    });
    println!("\nchannel to {app_b} delivered {} message(s):", delivered.len());
    for d in &delivered {
        println!("  {d}");
    }
    assert_eq!(delivered.len(), 1, "only bob connected app B");
    Ok(())
}
