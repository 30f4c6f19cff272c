//! A `Use` is delivered only to the recipient it was decided for.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use consent_ledger::*;

declare_purpose!(
    ApiSharing,
    "developer-api",
    "sharing with developer apps the person connected",
    LegalBasis::Consent
);

fn open(dir: &std::path::Path) -> Ledger {
    Ledger::builder(dir)
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .durability(Durability::Relaxed)
        .open()
        .unwrap()
}

#[test]
fn a_use_is_refused_for_any_other_recipient() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let app_a = Recipient::developer_app("app-a").unwrap();
    let app_b = Recipient::developer_app("app-b").unwrap();
    let alice = SubjectId::new("user-1").unwrap();
    let email = Identifier::<ApiSharing>::email("alice@example.com").unwrap();
    ledger
        .collect(&alice, &email, RecipientScope::only(app_a.clone()))
        .unwrap();
    ledger
        .grant::<ApiSharing>(&alice, RecipientScope::only(app_a.clone()), None)
        .unwrap();

    // B is not covered at all.
    assert!(matches!(
        ledger.authorize(&email, &app_b),
        Err(Denied::RecipientNotCovered { .. })
    ));

    // A use decided for A, routed to B: refused, and the closure never runs.
    let for_a = ledger.authorize(&email, &app_a).unwrap();
    let mut ran = false;
    let refused = for_a.deliver_to(&app_b, |_| ran = true).unwrap_err();
    assert!(!ran);
    assert_eq!(refused.intended, app_a);
    assert_eq!(refused.attempted, app_b);
    let msg = refused.to_string();
    assert!(
        msg.contains("app-a") && msg.contains("app-b") && !msg.contains("alice"),
        "{msg}"
    );

    // Routed to A: delivered.
    let for_a = ledger.authorize(&email, &app_a).unwrap();
    assert_eq!(
        for_a.deliver_to(&app_a, str::to_owned).unwrap(),
        "alice@example.com"
    );
    // An equal recipient value (not the same reference) is the same recipient.
    let for_a = ledger.authorize(&email, &app_a).unwrap();
    let again = Recipient::developer_app("app-a").unwrap();
    assert!(for_a.deliver_to(&again, |_| ()).is_ok());

    // Through a channel: the parcel carries the evidence and reaches A.
    let delivered = ledger.channel(&app_a, |to_a| {
        let parcel = to_a.authorize(&email).unwrap();
        assert_eq!(parcel.evidence().subject(), &alice);
        to_a.send(parcel, str::len)
    });
    assert_eq!(delivered, "alice@example.com".len());
    // A channel to B cannot even produce a parcel.
    let denied = ledger.channel(&app_b, |to_b| to_b.authorize(&email).err());
    assert!(matches!(denied, Some(Denied::RecipientNotCovered { .. })));

    // After withdrawal, no new use for A either.
    ledger.withdraw::<ApiSharing>(&alice).unwrap();
    assert!(matches!(
        ledger.authorize(&email, &app_a),
        Err(Denied::Withdrawn { .. })
    ));
}

/// `Use::expose` reads the value only for the first party's own use: a use decided for
/// a developer app is not exposed (its value leaves only through `deliver_to` or a
/// `Channel`, where the recipient is checked), and refusing to expose it does not
/// spend the use.
#[test]
fn expose_is_for_the_first_party_only() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = open(dir.path());
    let app_a = Recipient::developer_app("app-a").unwrap();
    let alice = SubjectId::new("user-1").unwrap();
    let email = Identifier::<ApiSharing>::email("alice@example.com").unwrap();
    let both = RecipientScope::any_of([Recipient::FirstParty, app_a.clone()]).unwrap();
    ledger.collect(&alice, &email, both.clone()).unwrap();
    ledger.grant::<ApiSharing>(&alice, both, None).unwrap();

    let own = ledger.authorize(&email, &Recipient::FirstParty).unwrap();
    assert_eq!(own.expose(), Ok("alice@example.com"));

    let for_a = ledger.authorize(&email, &app_a).unwrap();
    let refused = for_a.expose().unwrap_err();
    assert_eq!(
        (&refused.intended, &refused.attempted),
        (&app_a, &Recipient::FirstParty)
    );
    assert!(!refused.to_string().contains("alice"), "{refused}");
    assert_eq!(
        for_a.deliver_to(&app_a, str::to_owned).unwrap(),
        "alice@example.com"
    );

    // The same for a partner.
    let acme = Recipient::partner("acme").unwrap();
    let phone = Identifier::<PartnerSharing>::phone("+15550100001").unwrap();
    ledger
        .collect(&alice, &phone, RecipientScope::only(acme.clone()))
        .unwrap();
    ledger
        .grant::<PartnerSharing>(&alice, RecipientScope::only(acme.clone()), None)
        .unwrap();
    assert!(ledger.authorize(&phone, &acme).unwrap().expose().is_err());
}
