//! The subject export states the basis and recipients decisions use (from review r78):
//! the latest collection, and consent whenever the subject has a consent record.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    reason = "tests"
)]

mod export_util;

use consent_ledger::*;
use export_util::{export, open, record_for};

declare_purpose!(
    /// An application's own consent-based sharing purpose. (A built-in id is reserved
    /// for its own basis, so the legacy type below could not reuse `partner-sharing`.)
    Sharing,
    "sharing",
    "sharing with partners",
    LegalBasis::Consent
);

declare_purpose!(
    /// `sharing` as declared before it relied on consent.
    LegacySharing,
    "sharing",
    "sharing with partners, declared without consent",
    LegalBasis::LegitimateInterest
);

/// A purpose moved from legitimate interest to consent (collected again through the
/// consent-based type, the migration `tests/decisions_agree.rs` supports): every use
/// now needs consent, and none was given. The export still describes the purpose as
/// processing under legitimate interest, shared with acme, with no consent status.
#[test]
fn export_states_the_basis_in_force_not_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let alice = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let scope = RecipientScope::only(acme.clone());
    let old = Identifier::<LegacySharing>::email("alice@example.com").unwrap();
    let new = Identifier::<Sharing>::email("alice@example.com").unwrap();
    l.collect(&alice, &old, scope.clone()).unwrap();
    l.collect(&alice, &new, scope).unwrap();
    // Decisions: consent decides, and there is none.
    assert!(matches!(l.authorize(&new, &acme), Err(Denied::NoConsent { .. })));
    assert!(matches!(l.authorize(&old, &acme), Err(Denied::NoConsent { .. })));

    let doc: serde_json::Value =
        serde_json::from_str(&l.export_subject(&alice, "https://example.com/settings").unwrap()).unwrap();
    let rec = record_for(&doc, "sharing");
    assert_eq!(
        (
            rec["@type"].as_str(),
            rec["dpv:hasPurpose"]["dpv:hasLegalBasis"].as_str(),
            rec["dpv:hasConsentStatus"].as_str(),
        ),
        (
            Some("dpv:ConsentRecord"),
            Some("dpv:Consent"),
            Some("dpv:ConsentUnknown")
        ),
        "the export tells the person something else than the decisions do:\n{rec:#}"
    );
}

/// The other way round: collected on a consent basis first (never granted), then again
/// on legitimate interest. Uses are now allowed, and recorded, under legitimate interest;
/// the export calls the purpose a consent record whose status is unknown, and lists no
/// recipient, while its own `uses` list a disclosure to acme under legitimate interest.
#[test]
fn export_names_a_legitimate_interest_purpose_in_use_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let bob = SubjectId::new("user-2").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let scope = RecipientScope::only(acme.clone());
    let consent_type = Identifier::<Sharing>::email("bob@example.com").unwrap();
    let li_type = Identifier::<LegacySharing>::email("bob@example.com").unwrap();
    l.collect(&bob, &consent_type, scope.clone()).unwrap();
    l.collect(&bob, &li_type, scope).unwrap();
    let used = l.authorize(&li_type, &acme).unwrap();
    assert_eq!(used.evidence().legal_basis(), LegalBasis::LegitimateInterest);

    let doc = export(&l, &bob);
    let rec = record_for(&doc, "sharing");
    assert_eq!(doc["uses"][0]["dpv:hasLegalBasis"], "dpv:LegitimateInterest");
    assert_eq!(
        (
            rec["@type"].as_str(),
            rec["dpv:hasPurpose"]["dpv:hasLegalBasis"].as_str(),
            rec["dpv:hasPurpose"]["dpv:hasRecipient"].clone(),
        ),
        (
            Some("dpv:PersonalDataHandling"),
            Some("dpv:LegitimateInterest"),
            serde_json::json!(["partner \"acme\""]),
        ),
        "the export's record contradicts the decisions and its own uses:\n{rec:#}"
    );
}

/// Decisions judge each identifier by its own collection. A subject with two
/// identifiers collected for `security` (legitimate interest) for two partners: each
/// is used by its partner. The export lists only the latest collection's recipients,
/// so the person is not told that acme receives their email address.
#[test]
fn export_lists_the_recipients_of_every_identifiers_collection() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let alice = SubjectId::new("user-1").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let beta = Recipient::partner("beta").unwrap();
    let email = Identifier::<Security>::email("alice@example.com").unwrap();
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    l.collect(&alice, &email, RecipientScope::only(acme.clone()))
        .unwrap();
    l.collect(&alice, &phone, RecipientScope::only(beta.clone()))
        .unwrap();
    // Decisions: both uses allowed, under legitimate interest.
    assert!(l.authorize(&email, &acme).is_ok());
    assert!(l.authorize(&phone, &beta).is_ok());

    let doc = export(&l, &alice);
    let rec = record_for(&doc, "security");
    let recipients = rec["dpv:hasPurpose"]["dpv:hasRecipient"].clone();
    assert!(
        recipients
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "partner \"acme\""),
        "acme receives the email under legitimate interest (uses: {:#}), the export's \
         recipients are {recipients}",
        doc["uses"]
    );
}

/// Two identifiers for one purpose id on two bases: the email through the legitimate
/// interest type (allowed, used), then the phone through the consent type (no grant).
/// The export's record follows the latest collection only: a consent record with an
/// unknown status and no recipient, while the email is disclosed to acme under
/// legitimate interest (its own `uses` say so).
#[test]
fn export_names_a_legitimate_interest_purpose_in_use_as_such_with_two_identifiers() {
    let dir = tempfile::tempdir().unwrap();
    let l = open(dir.path());
    let bob = SubjectId::new("user-2").unwrap();
    let acme = Recipient::partner("acme").unwrap();
    let scope = RecipientScope::only(acme.clone());
    let email = Identifier::<LegacySharing>::email("bob@example.com").unwrap();
    let phone = Identifier::<Sharing>::phone("+15550108888").unwrap();
    l.collect(&bob, &email, scope.clone()).unwrap();
    l.collect(&bob, &phone, scope).unwrap();
    let used = l.authorize(&email, &acme).unwrap();
    assert_eq!(used.evidence().legal_basis(), LegalBasis::LegitimateInterest);
    drop(used);
    assert!(matches!(
        l.authorize(&phone, &acme),
        Err(Denied::NoConsent { .. })
    ));

    let doc = export(&l, &bob);
    let rec = record_for(&doc, "sharing");
    assert_eq!(doc["uses"][0]["dpv:hasLegalBasis"], "dpv:LegitimateInterest");
    let recipients = rec["dpv:hasPurpose"]["dpv:hasRecipient"].clone();
    assert!(
        recipients
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r == "partner \"acme\""),
        "the email is disclosed to acme under legitimate interest ({:#}); the export's \
         record says:\n{rec:#}",
        doc["uses"]
    );
}
