//! Review h36 of identifier normalization: phone spellings that still get a second
//! normal form (splits). Each test fails on the code it was written against.
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use consent_ledger::{
    Identifier, Ledger, PseudonymKey, RecipientScope, Security, SigningKey, SubjectId, WriteError,
};

/// Collects `first` for one account, then `second` for another: `second` is another
/// spelling of the same number, so it must be refused as malformed or as held by the
/// first account, never stored as a new identifier.
fn one_number_or_refused(first: &str, second: &str) {
    let dir = tempfile::tempdir().unwrap();
    let l = Ledger::builder(dir.path())
        .signing_key(SigningKey::generate())
        .pseudonym_key(PseudonymKey::generate())
        .open()
        .unwrap();
    let a = Identifier::<Security>::phone(first).unwrap();
    l.collect(
        &SubjectId::new("account-1").unwrap(),
        &a,
        RecipientScope::first_party(),
    )
    .unwrap();
    let Ok(b) = Identifier::<Security>::phone(second) else {
        return;
    };
    let r = l.collect(
        &SubjectId::new("account-2").unwrap(),
        &b,
        RecipientScope::first_party(),
    );
    assert!(
        matches!(r, Err(WriteError::HeldByAnotherSubject { .. })),
        "{first:?} and {second:?}: one number, two normal forms ({r:?})"
    );
}

/// Severity: medium (split). Lithuania's trunk prefix is 8, and every Lithuanian number
/// has 8 digits after +370: "+370 8 612 34567" (the national "8 612 34567" with "+370"
/// put before it, as "+7 8 495 …" is for +7) can only be "+370 612 34567". It is
/// accepted as `+370861234567`, a second form of the mobile that another account can
/// collect, and an upload spelled so is counted unknown rather than matched/denied.
/// (The same holds for the other trunk-8 plans: Turkmenistan "+993 8 12 …",
/// Tajikistan "+992 8 37 …".) Dropping the 8 when it makes one digit too many, or
/// refusing, would fix it.
#[test]
fn lithuanian_trunk_eight_after_plus_370_is_a_second_form() {
    one_number_or_refused("+370 612 34567", "+370 8 612 34567");
    one_number_or_refused("+370 5 212 3456", "+370 (8 5) 212 3456");
}

/// Severity: medium (split). Belarus dials "8 0" before the area code nationally
/// ("8 029 123-45-67", "8 017 …"); its numbers have 9 digits after +375.
/// "+375 8 029 123 45 67" is accepted as `+37580291234567` (11 digits after the
/// code) and "+375 8 17 123 45 67" as `+3758171234567`: second forms of
/// "+375 29 123 45 67" and "+375 17 123 45 67".
#[test]
fn belarusian_trunk_eight_after_plus_375_is_a_second_form() {
    one_number_or_refused("+375 29 123 45 67", "+375 8 029 123 45 67");
    one_number_or_refused("+375 17 123 45 67", "+375 8 17 123 45 67");
}

/// Severity: medium (split). After +378 a "(0)" then a 6 is refused (`AMBIGUOUS_TRUNK`),
/// but the same 0 written bare or inside the parentheses, "+378 0 66 12 34 56",
/// "+378 (066) 12 34 56", is kept as the number's own 0: `+378066123456`. San
/// Marino's landlines start 0549 and its mobiles 6, so no number there starts "06":
/// this is a second form of the mobile "+378 66 12 34 56" (it should be refused as
/// its "(0)" spelling is, or the 0 dropped).
#[test]
fn san_marino_bare_zero_before_a_mobile_is_a_second_form() {
    one_number_or_refused("+378 66 12 34 56", "+378 0 66 12 34 56");
    one_number_or_refused("+378 66 12 34 56", "+378 (066) 12 34 56");
}

/// Severity: low (split). Brazil's national long-distance form is "0", a two-digit
/// carrier code, then the area code ("0 21 11 91234-5678", carrier 21). With "+55"
/// put before it, the 0 is dropped as a trunk prefix but the carrier code is kept:
/// `+552111912345678`, 13 digits after +55 where no Brazilian number has more than 11
/// (a second form of "+55 11 91234 5678"; Argentina's over-long national form is
/// refused the same way this one should be).
#[test]
fn brazilian_carrier_code_after_plus_55_is_a_second_form() {
    one_number_or_refused("+55 11 91234 5678", "+55 0 21 11 91234 5678");
}
