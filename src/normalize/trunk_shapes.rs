//! The trunk-prefix rules of +7 and of the codes that keep their 0, mixed with "(0)",
//! bare 0s and 8s and separators anywhere: every normal form is a fixed point, and the
//! one-pass path agrees with the general one (a review's tests, h34).
#![allow(clippy::unwrap_used, clippy::panic, reason = "tests")]

use super::{phone, plain_phone_agrees};
use proptest::prelude::*;

/// Normalizing a normal form gives it back (or the input is refused).
fn check_idempotent(raw: &str) {
    if let Ok(once) = phone(raw) {
        assert_eq!(
            phone(&once),
            Ok(once.clone()),
            "{raw:?} -> {once:?} is not a fixed point"
        );
    }
}

/// "+7 8 0…": dropping the 8 left a normal form starting "+70…", whose 0 is a trunk
/// prefix the next time round (now refused, as Mexico's "1" rule is guarded).
#[test]
fn seven_trunk_eight_then_zero_is_idempotent() {
    for raw in [
        "+7 8 0 12 345 67 89",
        "+7 (80) 495 123 456",
        "+7 (0) 8 0 12 345 67 89",
        "+78 0123456789",
    ] {
        check_idempotent(raw);
    }
}

/// The mixes the brief asked about: each is refused or a fixed point.
#[test]
fn mixed_trunk_shapes_are_idempotent() {
    for raw in [
        "+7 (0) 8 495 123 45 67",
        "+7 8 (0) 495 123 45 67",
        "+7 0 8 495 123 45 67",
        "+7 8 8 49 512 345 6",
        "+39 (0) 0 6 1234 5678",
        "+39 0 (0) 6 1234 5678",
        "+39 0 (0) 0 6 1234 5678",
        "+39 (0)(0)6 1234 5678",
        "+39 0 0 0 6 1234 5678",
        "+3-9-0-0-6-1-2-3-4-5-6-7-8",
        "+7-8-4-9-5-1-2-3-4-5-6-7",
        "+2-2-5-0-0-7-0-7-1-2-3-4-5-6",
        "+378 0 0549 123456",
        "+225 (0) 0 27 22 12 34 56",
        "+225 0 (0) 27 22 12 34 56",
        "+242 (0)(0)22 281 2345",
        "+2-2-5-0-2-7-2-2-1-2-3-4-5-6",
    ] {
        check_idempotent(raw);
    }
}

/// +7 and KEEP_ZERO shapes: trunk digits, "(0)", bare 0s and 8s, separators anywhere.
fn shape() -> impl Strategy<Value = String> {
    (
        prop_oneof![
            Just("7"),
            Just("39"),
            Just("378"),
            Just("225"),
            Just("229"),
            Just("242"),
            Just("370"),
            Just("375"),
            Just("992"),
            Just("993"),
            Just("55"),
            Just("36"),
            Just("1"),
            Just("52")
        ],
        "[08 ()-]{0,7}",
        "[0-9 -]{6,14}",
    )
        .prop_map(|(code, head, body)| format!("+{code}{head}{body}"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(4096))]

    /// The one-pass path agrees with the general one.
    #[test]
    fn fast_path_agrees_on_seven_and_keep_zero_shapes(raw in shape()) {
        prop_assert!(plain_phone_agrees(&raw), "fast path disagrees on {:?}", raw);
        if let Ok(once) = phone(&raw) {
            prop_assert!(plain_phone_agrees(&once), "fast path disagrees on {:?}", once);
        }
    }

    /// Every accepted input's normal form is a fixed point.
    #[test]
    fn seven_and_keep_zero_shapes_are_idempotent(raw in shape()) {
        if let Ok(once) = phone(&raw) {
            prop_assert_eq!(phone(&once), Ok(once.clone()), "{:?}", raw);
        }
    }
}
