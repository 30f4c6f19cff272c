//! Recipient names that read as another (review h35-f): a zero-width non-joiner after a
//! virama with no consonant after it changes nothing on screen, and a name of Braille
//! blanks shows nothing at all.
#![allow(clippy::unwrap_used, reason = "tests")]

use consent_ledger::Recipient;

/// A zero-width non-joiner after a virama keeps the virama visible instead of forming
/// a conjunct with the consonant that follows ("क्‌ष" against "क्ष"): it needs a
/// consonant after it to do anything. With none (at the end of the name, or before a
/// space, punctuation or a letter of another script) the virama is shown anyway, so
/// "क्‌" shows exactly as "क्", yet both are accepted as two different partners.
/// `Name::new` refuses a name holding an invisible character but a joiner "a word
/// needs"; this one is not needed, and the name reads as the name without it.
/// (A zero-width joiner in the same place is left alone here: after a virama it asks
/// for a half form or a chillu even at the end of a word, which shows.)
/// (Now refused: a non-joiner after a virama needs a consonant of its script after it.)
#[test]
fn a_non_joiner_after_a_virama_with_nothing_after_it_is_refused() {
    // Control: before a consonant the non-joiner changes the shape, and stays.
    assert!(Recipient::partner("\u{915}\u{94d}\u{200c}\u{937}").is_ok()); // क्‌ष
    assert!(Recipient::partner("\u{915}\u{94d}").is_ok()); // क्
    for reads_as_another in [
        "\u{915}\u{94d}\u{200c}",      // क् + ZWNJ, at the end
        "Acme \u{915}\u{94d}\u{200c}", // at the end, after a Latin word
        "\u{915}\u{94d}\u{200c} Ads",  // before a space
        "\u{915}\u{94d}\u{200c}-1",    // before punctuation
        "\u{915}\u{94d}\u{200c}Acme",  // before a Latin letter
    ] {
        assert!(
            Recipient::partner(reads_as_another).is_err(),
            "{reads_as_another:?} was accepted, and reads as the name without its non-joiner"
        );
    }
}

/// Braille's blank (U+2800) shows nothing, like a space, but is neither whitespace nor a
/// default-ignorable character: a name made of it alone passes every rule (one script,
/// Braille), so "⠀" and "⠀⠀" are two accepted partners that both read as an empty
/// name. (`RECOMMENDED` leaves Braille out for its blank, which only stops mixing it
/// with Latin.)
/// (Now refused: U+2800 counts as invisible.)
#[test]
fn a_name_of_braille_blanks_is_refused() {
    assert!(
        Recipient::partner("\u{2800}").is_err(),
        "a blank name was accepted"
    );
    assert!(
        Recipient::partner("\u{2800}\u{2800}").is_err(),
        "a blank name was accepted"
    );
    // Control: Braille with dots is a visible name.
    assert!(Recipient::partner("\u{2801}\u{2809}").is_ok());
}

/// Review h35-j: the rule of `d96b8a9` asks for "a letter of the virama's script" after
/// a non-joiner that follows a virama, but what the non-joiner changes is whether the
/// virama joins the *consonant* after it. Before an independent vowel (Devanagari
/// "अ", Bengali "অ"), the avagraha "ऽ" or "ॐ" there is no conjunct to break: the virama
/// shows either way, so "क्‌अ" reads exactly as "क्अ", yet both are accepted as two
/// different partners.
/// (Now refused: the letter after it must be a consonant.)
#[test]
fn a_non_joiner_after_a_virama_before_a_vowel_letter_is_refused() {
    // Controls: the names without the non-joiner are fine.
    assert!(Recipient::partner("\u{915}\u{94d}\u{905}").is_ok()); // क्अ
    assert!(Recipient::partner("\u{995}\u{9cd}\u{985}").is_ok()); // ক্অ
    let mut wrong = Vec::new();
    for reads_as_another in [
        "\u{915}\u{94d}\u{200c}\u{905}", // क् ZWNJ अ (independent vowel)
        "\u{915}\u{94d}\u{200c}\u{906}", // क् ZWNJ आ
        "\u{915}\u{94d}\u{200c}\u{93d}", // क् ZWNJ ऽ (avagraha)
        "\u{915}\u{94d}\u{200c}\u{950}", // क् ZWNJ ॐ
        "\u{995}\u{9cd}\u{200c}\u{985}", // ক্ ZWNJ অ (Bengali)
    ] {
        if Recipient::partner(reads_as_another).is_ok() {
            wrong.push(reads_as_another);
        }
    }
    assert!(
        wrong.is_empty(),
        "accepted, and read as the names without their non-joiner: {wrong:?}"
    );
}

/// Review h35-j: Braille's blank is not the only character that shows nothing yet is
/// neither whitespace nor default-ignorable. Khitan's small-script filler (U+16FE4, a
/// mark) makes a name of one script that shows nothing, so "\u{16FE4}" and its double
/// are two partners that read as an empty name; the musical null notehead (U+1D159,
/// Common, drawn blank) is one too, and, being Common, can be added to any name: "Acme𝅙"
/// reads as "Acme".
/// (Now refused, as U+2800 is.)
#[test]
fn names_of_other_blank_characters_are_refused() {
    assert!(Recipient::partner("Acme").is_ok());
    let mut wrong = Vec::new();
    for blank in [
        "\u{16FE4}",
        "\u{16FE4}\u{16FE4}",
        "\u{1D159}",
        "\u{1D159}\u{1D159}",
        "Acme\u{1D159}",
    ] {
        if Recipient::partner(blank).is_ok() {
            wrong.push(blank);
        }
    }
    assert!(
        wrong.is_empty(),
        "accepted, and read as a blank name or as another: {wrong:?}"
    );
}

/// Review h35-l (pre-existing, not from the non-joiner rule of this stop): Bengali
/// writes ra followed by ya-phalaa (not a reph) as ra, a joiner, the virama, ya: the
/// Unicode Standard's Bengali section gives <ra, ZWJ, virama, ya>, and Bangladeshi
/// text has <ra, ZWNJ, virama, ya>. Common names use it: "র‍্যাব" (RAB), "র‌্যাংগস"
/// (Rangs), "র‍্যাডিসন" (Radisson). Without the joiner the cluster shows as a reph over
/// ya, another spelling, so the joiner is needed; `joins_as_written` accepts a joiner
/// only after a virama (or a non-joiner between Arabic-joining letters), and refuses
/// these names as "contains an invisible character".
#[test]
fn bengali_ra_with_ya_phalaa_is_accepted() {
    let mut refused = Vec::new();
    for name in [
        "\u{9b0}\u{200d}\u{9cd}\u{9af}\u{9be}\u{9ac}", // র‍্যাব
        "\u{9b0}\u{200c}\u{9cd}\u{9af}\u{9be}\u{982}\u{997}\u{9b8}", // র‌্যাংগস
        "\u{9b0}\u{200d}\u{9cd}\u{9af}\u{9be}\u{9a1}\u{9bf}\u{9b8}\u{9a8}", // র‍্যাডিসন
    ] {
        if let Err(e) = Recipient::partner(name) {
            refused.push(format!("{name}: {e}"));
        }
    }
    assert!(refused.is_empty(), "refused: {refused:?}");
}
