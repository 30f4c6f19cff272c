//! The whole story end to end: collect, decide, grant, withdraw, reopen, verify.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

use consent_ledger::*;

fn open(dir: &std::path::Path, key: &SigningKey, pk: &PseudonymKey) -> Ledger {
    Ledger::builder(dir)
        .signing_key(key.clone())
        .pseudonym_key(pk.clone())
        .open()
        .unwrap()
}

#[test]
fn story() {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::generate();
    let pk = PseudonymKey::generate();
    let ledger = open(dir.path(), &key, &pk);
    let alice = SubjectId::new("user-1").unwrap();
    let phone = Identifier::<Security>::phone("+1 (555) 010-9999").unwrap();
    ledger
        .collect(&alice, &phone, RecipientScope::first_party())
        .unwrap();

    let me = Recipient::FirstParty;
    let u = ledger.authorize(&phone, &me).unwrap();
    assert_eq!(u.expose(), "+15550109999");

    let ads = Identifier::<Advertising>::phone("+15550109999").unwrap();
    let acme = Recipient::partner("acme-ads").unwrap();
    assert_eq!(
        ledger.authorize(&ads, &acme).unwrap_err(),
        Denied::NotCollectedForPurpose {
            purpose: "advertising"
        }
    );

    let email = Identifier::<PartnerSharing>::email("alice@example.com").unwrap();
    ledger
        .collect(&alice, &email, RecipientScope::first_party())
        .unwrap();
    assert!(matches!(
        ledger.authorize(&email, &acme),
        Err(Denied::NoConsent { .. })
    ));
    let g = ledger
        .grant::<PartnerSharing>(&alice, RecipientScope::all_partners(), None)
        .unwrap();
    let u = ledger.authorize(&email, &acme).unwrap();
    assert_eq!(u.evidence().allowed_by(), g.seq);
    let w = ledger.withdraw::<PartnerSharing>(&alice).unwrap();
    assert_eq!(
        ledger.authorize(&email, &acme).unwrap_err(),
        Denied::Withdrawn {
            purpose: "partner-sharing",
            at: w.seq
        }
    );
    let report = ledger.verify().unwrap();
    assert_eq!(report.entries, ledger.len());
    let hist = ledger.history(&alice).unwrap();
    assert_eq!(hist.len(), 4);
    drop(u);
    drop(ledger);

    let again = open(dir.path(), &key, &pk);
    assert_eq!(again.verify().unwrap(), report);
    assert!(again.authorize(&phone, &me).is_ok());
    assert!(matches!(
        again.authorize(&email, &acme),
        Err(Denied::Withdrawn { .. })
    ));
    drop(again);
    let wrong = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(pk.clone())
        .open();
    assert!(matches!(wrong, Err(OpenError::WrongSigningKey)), "{wrong:?}");
    let wrong = Ledger::builder(dir.path())
        .signing_key(key.clone())
        .pseudonym_key(PseudonymKey::generate())
        .open();
    assert!(matches!(wrong, Err(OpenError::WrongPseudonymKey)), "{wrong:?}");
}
