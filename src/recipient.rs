//! Recipients (who receives data) and recipient scopes (whom a consent covers).

use icu_properties::props::{GeneralCategory, Script};
use std::fmt;
use std::sync::Arc;

use crate::error::InputError;

/// Longest recipient name accepted, in bytes.
pub const MAX_RECIPIENT_NAME_LEN: usize = 128;

/// Who receives personal data.
///
/// Names are not personal data: they identify companies and registered apps. They are
/// written to the ledger as given.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Recipient {
    /// The application that collected the data, itself.
    FirstParty,
    /// A named business partner, such as an advertiser.
    Partner(Name),
    /// A third-party developer app registered with the platform, by its registration id.
    DeveloperApp(Name),
}

/// A validated recipient name: 1 to 128 bytes, no control characters, no leading or
/// trailing whitespace, no contact details (names stay in the log in clear for good,
/// so one that holds an email address, a phone number or a contact URI is refused), and
/// not readable as another name (see [`Name::new`]).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Name(Arc<str>);

impl Name {
    /// Validates `name`.
    ///
    /// # Errors
    /// [`InputError`] naming the problem when the name is empty, longer than
    /// [`MAX_RECIPIENT_NAME_LEN`], contains a control character, is padded with
    /// whitespace, or holds contact details (an `@`, an email address spelled out with
    /// "at", a contact URI or a phone number); and when it could be read as another
    /// name (see below).
    ///
    /// Recipients are told apart by their exact names, but people read them: in an
    /// audit of who received data, a partner registered as "аcme" (with a Cyrillic
    /// "а") or "ａｃｍｅ" (full-width) reads as "acme". So a name must be in Unicode's
    /// NFKC form (no full-width or other compatibility forms, no decomposed accents),
    /// hold no invisible character (Unicode's Default_Ignorable_Code_Point, such as a
    /// zero-width space, or the variation selector and the joiner that phones put in
    /// emoji: "❤️", "👨‍👩‍👧") but a joiner a word needs where UAX #31 allows it (after a
    /// virama, or a zero-width non-joiner between two Persian letters that join), no
    /// unassigned or private-use character, and not mix scripts beyond what Unicode's
    /// "moderately restrictive" level allows (UTS #39 §5.2): one script, or Latin with
    /// Han and Japanese kana, with Han and Bopomofo, with Han and Hangul, or with one
    /// other script that UAX #31 recommends, except Cyrillic and Greek. ASCII digits,
    /// spaces, punctuation and emoji belong to every script; the digits of a script
    /// count as that script ("Москва ٣" mixes Cyrillic and Arabic). Not caught: a name
    /// written wholly in another script that looks like a Latin one ("асе" in
    /// Cyrillic), Latin letters that look like others (small capitals "ᴀᴄᴍᴇ"), symbols
    /// shaped like letters ("🅰", regional indicators), a digit of an allowed script
    /// that looks like another ("৪" and "8"), punctuation that looks like ASCII's
    /// ("acme‐ads" with U+2010 or "acme−ads" with U+2212 beside "acme-ads", "ʼ" beside
    /// "'"), runs of spaces ("Acme  Ads" beside "Acme Ads"), and a zero-width joiner
    /// after a virama in a script that draws no half form there (Tamil "க்‍" beside
    /// "க்", Thai, Myanmar): compare names in full where it matters. Stricter than
    /// UAX #31, a non-joiner after a virama passes only before a consonant of its
    /// script, so a word-final one (older Malayalam input) is refused.
    pub fn new(name: &str) -> Result<Self, InputError> {
        check_name("recipient name", name, MAX_RECIPIENT_NAME_LEN)?;
        refuse_lookalike("recipient name", name)?;
        Ok(Name(Arc::from(name)))
    }

    /// A name read back from storage: only the rules of its shape (`check_name_shape`).
    /// The rule against contact details judges names when they are written; were it
    /// applied to names already in the log, each time it grows stricter a log holding a
    /// name it now refuses would no longer open.
    pub(crate) fn stored(name: &str) -> Option<Self> {
        check_name_shape("recipient name", name, MAX_RECIPIENT_NAME_LEN).ok()?;
        Some(Name(Arc::from(name)))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Refuses a name that could be read as another (see [`Name::new`]).
fn refuse_lookalike(field: &'static str, value: &str) -> Result<(), InputError> {
    if value.is_ascii() {
        return Ok(());
    }
    if !icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().is_normalized(value) {
        return Err(InputError::new(
            field,
            "is not in Unicode's NFKC form (a full-width letter, a ligature or a \
             decomposed accent, say): write it in that form",
        ));
    }
    let invisible =
        icu_properties::CodePointSetData::new::<icu_properties::props::DefaultIgnorableCodePoint>();
    let scripts = icu_properties::script::ScriptWithExtensions::new();
    let chars: Vec<char> = value.chars().collect();
    let mut sets = Vec::new();
    for (i, &c) in chars.iter().enumerate() {
        // Characters drawn blank that are neither whitespace (which the shape rules
        // trim) nor default-ignorable: Braille's blank, the Khitan filler, the musical
        // null notehead (reviews h35-f and h35-j: "⠀" and "⠀⠀" were two partners that
        // both read as an empty name, "Acme𝅙" one beside "Acme").
        let blank = matches!(c, '\u{2800}' | '\u{16FE4}' | '\u{1D159}');
        if (invisible.contains(c) || blank) && !joins_as_written(&chars, i) {
            return Err(InputError::new(field, "contains an invisible character"));
        }
        let extensions = scripts.get_script_extensions_val(c);
        if extensions.contains(&Script::Unknown) {
            return Err(InputError::new(
                field,
                "contains an unassigned or private-use character",
            ));
        }
        if !(extensions.contains(&Script::Common) || extensions.contains(&Script::Inherited)) {
            sets.push(writing_systems(extensions.iter()));
        }
    }
    if !moderately_restrictive(&sets) {
        return Err(InputError::new(
            field,
            "mixes scripts whose letters look alike (Latin with Cyrillic or Greek, say)",
        ));
    }
    Ok(())
}

/// Whether the invisible character at `at` in `chars` is one that the written word
/// needs, in the contexts UAX #31 §2.3 allows for identifiers (one of them narrowed)
/// and one more: a zero-width joiner right after a virama (Sinhala "ශ්‍රී", Devanagari
/// half forms); a non-joiner right after a virama when a consonant of the virama's
/// script follows ("क्‌ष"); either joiner between Bengali ra and a virama before ya
/// ("র‍্যাব"); or a zero-width non-joiner between two letters that would otherwise join (Arabic-script
/// joining: a left- or dual-joining letter before it, a right- or dual-joining one after
/// it, marks between skipped: Persian "دیجی‌کالا"). Nothing else invisible passes: a
/// joiner between letters that do not join ("株‌式"), a variation selector or a joiner
/// between emoji ("🚀️", "🚀‍🚀") would read as the same name without it.
fn joins_as_written(chars: &[char], at: usize) -> bool {
    use icu_properties::props::{CanonicalCombiningClass, JoiningType};
    let joining = icu_properties::CodePointMapData::<JoiningType>::new();
    let class = icu_properties::CodePointMapData::<CanonicalCombiningClass>::new();
    let (Some(c), Some(before)) = (chars.get(at), at.checked_sub(1).and_then(|i| chars.get(i))) else {
        return false;
    };
    if !matches!(c, '\u{200C}' | '\u{200D}') {
        return false;
    }
    // Bengali ra with ya-phalaa: <ra, ZWJ or ZWNJ, virama, ya> ("র‍্যাব"), as the
    // Unicode Standard (and Bangladeshi usage) writes it; without the joiner the ra is
    // drawn as a reph, another spelling (review h35-l).
    if *before == '\u{09B0}' && chars.get(at + 1..at + 3) == Some(&['\u{09CD}', '\u{09AF}'][..]) {
        return true;
    }
    if class.get(*before) == CanonicalCombiningClass::Virama {
        if *c == '\u{200D}' {
            // A half form or a chillu, which shows even at the end of a word.
            return true;
        }
        // A non-joiner keeps the virama from joining the consonant after it: with no
        // consonant of the virama's script after it (marks between skipped), it
        // changes nothing on screen (reviews h35-f and h35-j: "क्‌" read as "क्", and
        // "क्‌अ" as "क्अ").
        use icu_properties::props::IndicSyllabicCategory as Isc;
        let script = icu_properties::CodePointMapData::<Script>::new();
        let category = icu_properties::CodePointMapData::<icu_properties::props::GeneralCategory>::new();
        let syllabic = icu_properties::CodePointMapData::<Isc>::new();
        let next = chars.get(at + 1..).and_then(|a| {
            a.iter()
                .find(|c| !icu_properties::props::GeneralCategoryGroup::Mark.contains(category.get(**c)))
        });
        return next.is_some_and(|n| {
            matches!(
                syllabic.get(*n),
                Isc::Consonant
                    | Isc::ConsonantDead
                    | Isc::ConsonantHeadLetter
                    | Isc::ConsonantMedial
                    | Isc::ConsonantPrecedingRepha
                    | Isc::ConsonantPrefixed
                    | Isc::ConsonantSubjoined
                    | Isc::ConsonantWithStacker
            ) && script.get(*n) == script.get(*before)
        });
    }
    if *c != '\u{200C}' {
        return false;
    }
    let transparent = |c: &&char| joining.get(**c) == JoiningType::Transparent;
    let left = chars
        .get(..at)
        .and_then(|b| b.iter().rev().find(|c| !transparent(c)));
    let right = chars
        .get(at + 1..)
        .and_then(|a| a.iter().find(|c| !transparent(c)));
    left.is_some_and(|c| {
        matches!(
            joining.get(*c),
            JoiningType::LeftJoining | JoiningType::DualJoining
        )
    }) && right.is_some_and(|c| {
        matches!(
            joining.get(*c),
            JoiningType::RightJoining | JoiningType::DualJoining
        )
    })
}

/// The scripts UAX #31 recommends for identifiers (its Table 5), besides Common and
/// Inherited: the only ones UTS #39's moderately restrictive level lets Latin mix with
/// (Cyrillic and Greek excepted). Others (Cherokee "Ꭺ", Lisu "ꓮ", Coptic "ⲉ", Braille's
/// blank) hold letters made to look like Latin ones, or are not in modern use.
const RECOMMENDED: [Script; 29] = [
    Script::Arabic,
    Script::Armenian,
    Script::Bengali,
    Script::Bopomofo,
    Script::Cyrillic,
    Script::Devanagari,
    Script::Ethiopic,
    Script::Georgian,
    Script::Greek,
    Script::Gujarati,
    Script::Gurmukhi,
    Script::Han,
    Script::Hangul,
    Script::Hebrew,
    Script::Hiragana,
    Script::Kannada,
    Script::Katakana,
    Script::Khmer,
    Script::Lao,
    Script::Latin,
    Script::Malayalam,
    Script::Myanmar,
    Script::Oriya,
    Script::Sinhala,
    Script::Tamil,
    Script::Telugu,
    Script::Thaana,
    Script::Thai,
    Script::Tibetan,
];

/// A script, or one of the writing systems that combine scripts (UTS #39 §5.1's
/// augmented script sets: Japanese, Korean, and Han with Bopomofo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writing {
    Script(Script),
    Japanese,
    Korean,
    HanWithBopomofo,
}

/// The writing systems a character with `scripts` (its Script_Extensions) can belong
/// to: its scripts, and those that combine them.
fn writing_systems(scripts: impl Iterator<Item = Script>) -> Vec<Writing> {
    let mut out: Vec<Writing> = Vec::new();
    let mut add = |w: Writing| {
        if !out.contains(&w) {
            out.push(w);
        }
    };
    for script in scripts {
        add(Writing::Script(script));
        if script == Script::Han {
            add(Writing::Japanese);
            add(Writing::Korean);
            add(Writing::HanWithBopomofo);
        } else if script == Script::Hiragana || script == Script::Katakana {
            add(Writing::Japanese);
        } else if script == Script::Hangul {
            add(Writing::Korean);
        } else if script == Script::Bopomofo {
            add(Writing::HanWithBopomofo);
        }
    }
    out
}

/// UTS #39 §5.2's moderately restrictive level, on the writing systems of each
/// character that belongs to some script (digits, spaces and punctuation left out):
/// all characters share one (single script), or those that are not Latin share one that
/// is not Cyrillic or Greek (Latin with Japanese, Korean or Han with Bopomofo, which is
/// the highly restrictive level, or with one other recommended script).
fn moderately_restrictive(sets: &[Vec<Writing>]) -> bool {
    fn shared<'s>(mut sets: impl Iterator<Item = &'s Vec<Writing>>) -> Option<Vec<Writing>> {
        let first = sets.next()?.clone();
        Some(sets.fold(first, |mut common, set| {
            common.retain(|w| set.contains(w));
            common
        }))
    }
    let Some(all) = shared(sets.iter()) else {
        return true;
    };
    if !all.is_empty() {
        return true;
    }
    let latin = Writing::Script(Script::Latin);
    let Some(rest) = shared(sets.iter().filter(|set| !set.contains(&latin))) else {
        return true;
    };
    rest.iter().any(|w| match w {
        Writing::Script(s) => RECOMMENDED.contains(s) && !matches!(*s, Script::Cyrillic | Script::Greek),
        _ => true,
    })
}

/// Shared rule for names written to the ledger in clear: recipient names, operator ids,
/// subject ids. Their shape (`check_name_shape`), and no contact details.
pub(crate) fn check_name(field: &'static str, value: &str, max: usize) -> Result<(), InputError> {
    check_name_shape(field, value, max)?;
    refuse_contact_details(field, value)
}

/// The shape of a name: 1 to `max` bytes, no control characters, no leading or
/// trailing whitespace. What a name read back from storage must have.
pub(crate) fn check_name_shape(field: &'static str, value: &str, max: usize) -> Result<(), InputError> {
    if value.is_empty() {
        return Err(InputError::new(field, "is empty"));
    }
    if value.len() > max {
        return Err(InputError::new(field, "is too long"));
    }
    if value.chars().any(char::is_control) {
        return Err(InputError::new(field, "contains a control character"));
    }
    if value.trim() != value {
        return Err(InputError::new(field, "has leading or trailing whitespace"));
    }
    Ok(())
}

/// Names are written to the signed log in clear and can never be removed: refuses what
/// looks like a way to reach a person. A guard against the obvious mistakes (an email
/// address, a phone number as people write it, also quoted, with a label or a note, or
/// beside another, a contact URI of any of [`CONTACT_SCHEMES`]), not a proof: a plain run
/// of digits cannot be told from an account number, nor a device's advertising id from
/// a random UUID. The messages never contain the value.
///
/// A value taken undecoded from a URL, a form post, a web page or a JSON string
/// ("alice%40example.com", "555+010+9999", "alice&#64;example.com",
/// "alice\u0040example.com") is judged decoded too: it is still a way to reach the
/// person.
fn refuse_contact_details(field: &'static str, value: &str) -> Result<(), InputError> {
    refuse_contact_details_as_written(field, value)?;
    if value.contains(['%', '&', '\\', '+']) {
        for reading in decoded_readings(value) {
            refuse_contact_details_as_written(field, &reading)?;
        }
        // Each level of an encoding applied twice is read as its own value too: a form
        // post encoded again ("%252B44%2B7946%2B095800", a query string put in a
        // redirect) is a form post once decoded once (review r127).
        let mut level = value.to_owned();
        for _ in 0..2 {
            let next = decode_once(&level);
            if next == level {
                break;
            }
            level = next;
            if level.contains(['%', '&', '\\', '+']) {
                for reading in decoded_readings(&level) {
                    refuse_contact_details_as_written(field, &reading)?;
                }
            }
        }
    }
    Ok(())
}

/// The readings of `value` a URL, a form post, a web page or a JSON string would give
/// it (those that differ from it): percent-escapes, HTML character references and JSON
/// escapes decoded ([`url_and_html_decoded`]), and, for a form post, '+' read as a
/// space. A value with percent-escapes and no bare '%' that holds a '+' reads as a form
/// post only ("Chrome+%28stable%29+120.0" is "Chrome (stable) 120.0", never
/// "…)+120.0"); one without escapes is also read so when a '+' stands between two
/// digits ("555+010+9999").
fn decoded_readings(value: &str) -> Vec<String> {
    let bytes = value.as_bytes();
    let escape_at = |i: usize| {
        bytes.get(i) == Some(&b'%')
            && bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
            && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit)
    };
    let percents = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .map(|(i, _)| i);
    let (mut escapes, mut bare) = (false, false);
    for i in percents {
        if escape_at(i) {
            escapes = true;
        } else {
            bare = true;
        }
    }
    let plus_between_digits = bytes
        .windows(3)
        .any(|w| matches!(w, [a, b'+', c] if a.is_ascii_digit() && c.is_ascii_digit()));
    let form = escapes && !bare && value.contains('+');
    // Which encoder wrote it. A form post (`URLSearchParams`, `quote_plus`) writes a
    // space as '+' and escapes what a URL keeps (`: / ? # [ ] @ ! $ & ' ( ) * , ; =`);
    // a URL encoder (`encodeURI`) keeps '+' and those, and writes a space as `%20`.
    // So a value is read as a form post only when something shows it is one: a '+'
    // that is no number's (not followed by a digit: "Summer+Sale", "Report+%7C+…"), or
    // an escape of a character a URL keeps ("Order%3A+12345678" is "Order: 12345678"),
    // and no `%20` or raw non-ASCII character (which a form post never writes). A
    // value with nothing to tell, such as "Mobile%7C+447946095800", is also read as a
    // URL, where its '+' is a number's (reviews r119 and r122: "Mobile:+91%20…",
    // "%E6%90%BA%E5%B8%AF%EF%BC%9A+819012345678"). (`[` and `]` are not among those
    // characters: `encodeURI` escapes them too, "%5BMobile%5D+44…": review r124.)
    let reserved_escape = |i: usize| {
        escape_at(i)
            && matches!(
                bytes.get(i + 1..i + 3).map(<[u8]>::to_ascii_uppercase).as_deref(),
                Some(
                    b"3A"
                        | b"2F"
                        | b"3F"
                        | b"23"
                        | b"40"
                        | b"21"
                        | b"24"
                        | b"26"
                        | b"27"
                        | b"28"
                        | b"29"
                        | b"2A"
                        | b"2C"
                        | b"3B"
                        | b"3D"
                )
            )
    };
    let form_evidence = bytes.iter().enumerate().any(|(i, b)| {
        (*b == b'+' && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) || reserved_escape(i)
    });
    let url_encoder = value.contains("%20") || !value.is_ascii() || !form_evidence;
    let mut out = Vec::new();
    if !form || url_encoder {
        let decoded = url_and_html_decoded(value);
        if decoded != value {
            out.push(decoded);
        }
    }
    if form || plus_between_digits {
        let decoded = url_and_html_decoded(&value.replace('+', " "));
        if decoded != value {
            out.push(decoded);
        }
    }
    out
}

/// `value` with its percent-escapes (`%40`), HTML character references (`&#64;`,
/// `&#x40;`, `&commat;`: see [`character_reference`]) and JSON escapes (`\u0040`,
/// `\x40`) decoded, three times at most (a value encoded twice over, "%2540", decodes
/// to '@' too). Escapes that do not decode are left as they are.
fn url_and_html_decoded(value: &str) -> String {
    let mut current = value.to_owned();
    for _ in 0..3 {
        let next = decode_once(&current);
        if next == current {
            break;
        }
        current = next;
    }
    current
}

fn decode_once(value: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = value.as_bytes();
    let mut out: Vec<u8> = Vec::with_capacity(bytes.len());
    let push = |out: &mut Vec<u8>, c: char| out.extend_from_slice(c.encode_utf8(&mut [0u8; 4]).as_bytes());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let decoded = match b {
            b'%' => match (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                    continue;
                }
                _ => None,
            },
            b'&' => value.get(i..).and_then(character_reference),
            b'\\' => value.get(i..).and_then(json_escape),
            _ => None,
        };
        match decoded {
            Some((c, len)) => {
                push(&mut out, c);
                i += len;
            }
            None => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The character a JSON (or C-like) escape at the start of `s` stands for, and the
/// escape's length: `\uXXXX` (a surrogate pair as one), `\xXX`.
fn json_escape(s: &str) -> Option<(char, usize)> {
    let hex_at = |from: usize, n: usize| u32::from_str_radix(s.get(from..from + n)?, 16).ok();
    let digits_ok = |from: usize, n: usize| {
        s.get(from..from + n)
            .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    match s.as_bytes().get(1)? {
        b'x' if digits_ok(2, 2) => Some((char::from_u32(hex_at(2, 2)?)?, 4)),
        b'u' if digits_ok(2, 4) => {
            let unit = hex_at(2, 4)?;
            if (0xD800..0xDC00).contains(&unit) {
                // A high surrogate: with its low one, one character.
                let low = (s.get(6..8) == Some("\\u") && digits_ok(8, 4))
                    .then(|| hex_at(8, 4))
                    .flatten()?;
                let c = 0x10000 + ((unit - 0xD800) << 10) + low.checked_sub(0xDC00).filter(|l| *l < 0x400)?;
                Some((char::from_u32(c)?, 12))
            } else {
                Some((char::from_u32(unit)?, 6))
            }
        }
        // JSON's short escapes of printable characters (PHP's `json_encode` writes every
        // '/' as `\/`): "0171\/1234567" is "0171/1234567" (review r119).
        b'/' => Some(('/', 2)),
        b'"' => Some(('"', 2)),
        b'\\' => Some(('\\', 2)),
        // And of line breaks and tabs, as `json.dumps` and `JSON.stringify` write them:
        // "Alice Smith\n+447946095800" (review r122).
        b'n' => Some(('\n', 2)),
        b't' => Some(('\t', 2)),
        b'r' => Some(('\r', 2)),
        _ => None,
    }
}

/// The character an HTML character reference at the start of `s` stands for, and the
/// reference's length in bytes, as a browser reads it in text: numeric (`&#64;`,
/// `&#x40;`, also without the ';' and with leading zeros; 128 to 159 through the
/// Windows-1252 table, as HTML does), or a named one (case-sensitive) whose character
/// can spell a contact detail: spaces, dashes, the minus sign, `+ @ : . ( ) / #`, quotes,
/// and `&` (so that text escaped twice decodes too); `&nbsp`, `&amp`, `&AMP` and
/// `&quot` also without the ';'.
fn character_reference(s: &str) -> Option<(char, usize)> {
    let rest = s.strip_prefix('&')?;
    if let Some(num) = rest.strip_prefix('#') {
        let (radix, digits) = match num.strip_prefix(['x', 'X']) {
            Some(h) => (16, h),
            None => (10, num),
        };
        let len = digits
            .bytes()
            .take_while(|b| char::from(*b).is_digit(radix))
            .count();
        let significant = digits.get(..len)?.trim_start_matches('0');
        if len == 0 || significant.len() > 8 {
            return None;
        }
        let value = if significant.is_empty() {
            0
        } else {
            u32::from_str_radix(significant, radix).ok()?
        };
        let c = windows_1252(value).or_else(|| char::from_u32(value))?;
        let semicolon = usize::from(digits.get(len..).is_some_and(|r| r.starts_with(';')));
        return Some((c, 2 + (num.len() - digits.len()) + len + semicolon));
    }
    let name_len = rest.bytes().take_while(u8::is_ascii_alphanumeric).count();
    let name = rest.get(..name_len)?;
    if !rest.get(name_len..).is_some_and(|r| r.starts_with(';')) {
        // The legacy names a browser also reads without ';', even followed by more
        // letters or digits ("&nbsp555").
        return [
            ("nbsp", '\u{A0}'),
            ("amp", '&'),
            ("AMP", '&'),
            ("quot", '"'),
            ("QUOT", '"'),
        ]
        .into_iter()
        .find(|(legacy, _)| rest.starts_with(legacy))
        .map(|(legacy, c)| (c, 1 + legacy.len()));
    }
    let c = match name {
        "nbsp" | "NonBreakingSpace" => '\u{A0}',
        "ensp" => '\u{2002}',
        "emsp" => '\u{2003}',
        "emsp13" => '\u{2004}',
        "emsp14" => '\u{2005}',
        "numsp" => '\u{2007}',
        "puncsp" => '\u{2008}',
        "thinsp" | "ThinSpace" => '\u{2009}',
        "hairsp" | "VeryThinSpace" => '\u{200A}',
        "MediumSpace" => '\u{205F}',
        "hyphen" | "dash" => '\u{2010}',
        "ndash" => '\u{2013}',
        "mdash" => '\u{2014}',
        "horbar" => '\u{2015}',
        "minus" => '\u{2212}',
        "commat" => '@',
        "plus" => '+',
        "colon" => ':',
        "period" => '.',
        "lpar" => '(',
        "rpar" => ')',
        "sol" => '/',
        "num" => '#',
        "amp" | "AMP" => '&',
        "quot" | "QUOT" => '"',
        "apos" => '\'',
        "lsquo" => '\u{2018}',
        "rsquo" => '\u{2019}',
        "ldquo" => '\u{201C}',
        "rdquo" => '\u{201D}',
        _ => return None,
    };
    Some((c, 1 + name_len + 1))
}

/// What HTML reads a numeric character reference of 128 to 159 as (the Windows-1252
/// characters there), if it maps one.
fn windows_1252(value: u32) -> Option<char> {
    Some(match value {
        0x80 => '€',
        0x82 => '‚',
        0x83 => 'ƒ',
        0x84 => '„',
        0x85 => '…',
        0x86 => '†',
        0x87 => '‡',
        0x88 => 'ˆ',
        0x89 => '‰',
        0x8A => 'Š',
        0x8B => '‹',
        0x8C => 'Œ',
        0x8E => 'Ž',
        0x91 => '‘',
        0x92 => '’',
        0x93 => '“',
        0x94 => '”',
        0x95 => '•',
        0x96 => '–',
        0x97 => '—',
        0x98 => '˜',
        0x99 => '™',
        0x9A => 'š',
        0x9B => '›',
        0x9C => 'œ',
        0x9E => 'ž',
        0x9F => 'Ÿ',
        _ => return None,
    })
}

fn refuse_contact_details_as_written(field: &'static str, value: &str) -> Result<(), InputError> {
    // Judged as it reads: input methods write full-width and small forms ("０９０‐１２３４",
    // "＠", "﹢"), and other scripts have digits of their own.
    let folded = fold_lookalikes(value);
    let value: &str = &folded;
    if value.contains('@') {
        return Err(InputError::new(
            field,
            "contains '@', like an email address; use an opaque id",
        ));
    }
    if spelled_out_email_inside(value) {
        return Err(InputError::new(
            field,
            "spells out an email address ('at' for '@'); use an opaque id",
        ));
    }
    // (Every scheme ends in ':'.)
    if value.contains(':') && contact_uri_inside(value) {
        return Err(InputError::new(field, "is a contact address; use an opaque id"));
    }
    // WhatsApp's click-to-chat link holds the number ("https://wa.me/447946095800"):
    // review r127.
    if value.to_ascii_lowercase().match_indices("wa.me/").any(|(at, m)| {
        let before = value.get(..at).and_then(|b| b.chars().next_back());
        !before.is_some_and(char::is_alphanumeric)
            && value
                .get(at + m.len()..)
                .is_some_and(|rest| rest.starts_with(|c: char| c.is_ascii_digit() || c == '+'))
    }) {
        return Err(InputError::new(field, "is a contact address; use an opaque id"));
    }
    // The rules below need digits: 7 after a '+', 9 without (in one run, for a number
    // inside a value). Most names have fewer, and are judged without the work (a name
    // is judged each time a subject id is made: on every request that names one).
    let digits = value.chars().filter(char::is_ascii_digit).count();
    let plus = value.contains('+');
    let enough = digits >= 9 || (plus && digits >= 7);
    // (Dates written in full are set aside: "30.11.2026 12.00" is no number.)
    // (A whole value written like a number holds digits, separators, a '+' and an
    // extension's marker only: a letter outside those rules it out without the work.)
    let marks_only = |v: &str| {
        v.chars().all(|c| {
            c.is_ascii_digit()
                || phone_separator(c)
                || matches!(c, '+' | '#' | ';' | '=' | ',' | ':')
                || "extnsioEXTNSIO".contains(c)
        })
    };
    let phone = |v: &str| {
        (v.starts_with('+') && crate::normalize::phone_into(v, &mut crate::normalize::Scratch::new()).is_ok())
            || (enough && marks_only(v) && written_like_a_phone_number(&without_dates(v)))
    };
    // The whole value, also in quotes or brackets (as a CSV file or a text quotes it),
    // or a number anywhere in it, with a label, a note or beside another.
    let unquoted = value.trim_matches(|c: char| {
        matches!(c, '"' | '\'' | '`' | '<' | '>')
            || matches!(
                icu_properties::CodePointMapData::<GeneralCategory>::new().get(c),
                GeneralCategory::InitialPunctuation
                    | GeneralCategory::FinalPunctuation
                    | GeneralCategory::OpenPunctuation
                    | GeneralCategory::ClosePunctuation
            )
    });
    if phone(value)
        || phone(unquoted)
        || (plus && enough && international_number_inside(value))
        || (digits >= 9 && longest_run_digits(value) >= 9 && national_number_inside(value))
    {
        return Err(InputError::new(
            field,
            "looks like a phone number; use an opaque id",
        ));
    }
    Ok(())
}

/// Whether `value` holds one of [`CONTACT_SCHEMES`] (without case) that does not follow
/// a letter or digit: at its start, or after an opening mark (`< " ' ( [ { « “ ‘ 「`),
/// whatever follows it ("<skype:alice.smith>"); after a label, unless it is one of the
/// schemes that are also words (`tel:`, `fax:`, `modem:`, `sms:`, `mms:`), which count
/// there only when followed by a digit, a '+' or "//" ("Acme fax: sales" is not one).
fn contact_uri_inside(value: &str) -> bool {
    let lower = value.to_ascii_lowercase(); // same byte offsets as `value`
    CONTACT_SCHEMES.into_iter().any(|scheme| {
        lower.match_indices(scheme).any(|(at, _)| {
            let before = lower.get(..at).and_then(|b| b.chars().next_back());
            let after = lower.get(at + scheme.len()..).unwrap_or_default();
            let a_word = matches!(scheme, "tel:" | "fax:" | "modem:" | "sms:" | "mms:");
            match before {
                None => true,
                Some(c) if c.is_alphanumeric() => false,
                Some(c) if opening(c) || !a_word => true,
                Some(_) => {
                    after.starts_with(|c: char| c.is_ascii_digit() || c == '+') || after.starts_with("//")
                }
            }
        })
    })
}

/// URI schemes that reach a person (compared without case): the standard ones for mail,
/// calls, texts and faxes, and those of common calling and messaging apps.
const CONTACT_SCHEMES: [&str; 17] = [
    "mailto:",
    "tel:",
    "sms:",
    "smsto:",
    "mms:",
    "mmsto:",
    "fax:",
    "modem:",
    "callto:",
    "facetime:",
    "facetime-audio:",
    "sip:",
    "sips:",
    "skype:",
    "whatsapp:",
    "viber:",
    "wtai:",
];

/// Whether `value` spells out an email address with "at" for '@': "alice(at)example.com",
/// "alice [at] example [dot] com", and, as mailing-list archives write it, "alice at
/// example.com" or "alice at example dot com". A word of a local part's characters
/// (after any opening mark or "label:" glued to it), "at" alone or in brackets, then a
/// host name of two or more labels: for a bracketed "at", any last label of two or more
/// letters; for a bare "at", one of the top-level domains most addresses end in
/// ([`GENERIC_MAIL_TLDS`], [`country_domain`]), so that "Frontend at Next.js", "Import at users.csv" and
/// "Hotel at St.Moritz" pass. ("Lunch at noon" and "v2 at 12.30" are not addresses
/// either. Not found: "alice+at+example.com", a form post of the spaced form.)
fn spelled_out_email_inside(value: &str) -> bool {
    let lower = value.to_lowercase();
    let marks = [
        " at ", "(at)", "[at]", "{at}", "<at>", " at)", " at]", " at}", " at>", "(at ", "[at ", "{at ",
        "<at ", "(a)", "[a]", "{a}", "( a )", "[ a ]", "{ a }",
    ];
    if !marks.iter().any(|m| lower.contains(m)) {
        return false;
    }
    let mut v = lower;
    // Also with spaces inside the brackets ("[ at ]"), and the defanged "[.]" (review
    // r119).
    for (open, close) in [('[', ']'), ('{', '}'), ('<', '>'), ('(', ')')] {
        // ("(a)" too: Finnish, Swedish and German organisations print every address
        // as "etunimi.sukunimi(a)yritys.fi"; review r127. Not "<a>", an HTML tag.)
        let short = if open == '<' { "at" } else { "a" };
        for (word, to) in [("at", " (at) "), (short, " (at) "), ("dot", " . "), (".", " . ")] {
            for (a, b) in [("", ""), (" ", " "), (" ", ""), ("", " ")] {
                v = v.replace(&format!("{open}{a}{word}{b}{close}"), to);
            }
        }
    }
    let words: Vec<&str> = v.split_whitespace().collect();
    // The local part: the word before "at", without an opening mark or a "label:"
    // glued to its start ("<alice", "Email:alice").
    let local_part = |w: &str| {
        let w = w.rsplit([':', '=']).next().unwrap_or(w);
        let w = w.trim_start_matches(opening);
        w.chars().any(char::is_alphanumeric) && w.chars().all(|c| c.is_alphanumeric() || "._-+'".contains(c))
    };
    words.iter().enumerate().any(|(i, w)| {
        let bracketed = *w == "(at)";
        if !(bracketed || *w == "at")
            || !i
                .checked_sub(1)
                .and_then(|p| words.get(p))
                .is_some_and(|l| local_part(l))
        {
            return false;
        }
        // The host: the next word, and ". word" or "dot word" after it.
        let Some(first) = words.get(i + 1) else {
            return false;
        };
        let mut host = (*first).to_owned();
        let mut j = i + 2;
        while let (Some(&("." | "dot")), Some(next)) = (words.get(j), words.get(j + 1)) {
            host.push('.');
            host.push_str(next);
            j += 2;
        }
        host_name_like(&host, bracketed)
    })
}

/// Whether `tld` is a country's top-level domain ([`COUNTRY_DOMAINS`]: not one that is
/// also a common file extension, "README.md", "lib.rs", "main.py"): a bare "at"
/// followed by a host in a country domain reads as '@' (review r119: "alice at
/// yahoo.co.id", "abv.bg").
fn country_domain(tld: &str) -> bool {
    COUNTRY_DOMAINS.binary_search(&tld).is_ok()
}

/// The country-code top-level domains, sorted, less those that are also common file
/// extensions (md, rs, py, sh, so, cc, mk, pm, tf, ml, am, ac, mm, ps, sc, cr, ai: "README.md",
/// "lib.rs", "main.tf"...): review r122 found "Crash at MainActivity.kt" refused when any
/// two letters counted.
const COUNTRY_DOMAINS: [&str; 228] = [
    "ad", "ae", "af", "ag", "al", "ao", "aq", "ar", "as", "at", "au", "aw", "ax", "az", "ba", "bb", "bd",
    "be", "bf", "bg", "bh", "bi", "bj", "bm", "bn", "bo", "br", "bs", "bt", "bw", "by", "bz", "ca", "cd",
    "cf", "cg", "ch", "ci", "ck", "cl", "cm", "cn", "co", "cu", "cv", "cw", "cx", "cy", "cz", "de", "dj",
    "dk", "dm", "do", "dz", "ec", "ee", "eg", "er", "es", "et", "eu", "fi", "fj", "fk", "fm", "fo", "fr",
    "ga", "gd", "ge", "gf", "gg", "gh", "gi", "gl", "gm", "gn", "gp", "gq", "gr", "gs", "gt", "gu", "gw",
    "gy", "hk", "hm", "hn", "hr", "ht", "hu", "id", "ie", "il", "im", "in", "io", "iq", "ir", "is", "it",
    "je", "jm", "jo", "jp", "ke", "kg", "kh", "ki", "km", "kn", "kp", "kr", "kw", "ky", "kz", "la", "lb",
    "lc", "li", "lk", "lr", "ls", "lt", "lu", "lv", "ly", "ma", "mc", "me", "mg", "mh", "mn", "mo", "mp",
    "mq", "mr", "ms", "mt", "mu", "mv", "mw", "mx", "my", "mz", "na", "nc", "ne", "nf", "ng", "ni", "nl",
    "no", "np", "nr", "nu", "nz", "om", "pa", "pe", "pf", "pg", "ph", "pk", "pl", "pn", "pr", "pt", "pw",
    "qa", "re", "ro", "ru", "rw", "sa", "sb", "sd", "se", "sg", "si", "sk", "sl", "sm", "sn", "sr", "ss",
    "st", "su", "sv", "sx", "sy", "sz", "tc", "td", "tg", "th", "tj", "tk", "tl", "tm", "tn", "to", "tr",
    "tt", "tv", "tw", "tz", "ua", "ug", "uk", "us", "uy", "uz", "va", "vc", "ve", "vg", "vi", "vn", "vu",
    "wf", "ws", "ye", "yt", "za", "zm", "zw",
];

/// Generic top-level domains most email addresses end in: with the country-code ones
/// ([`country_domain`]), what a bare "at" must be followed by to be read as '@' (see
/// [`spelled_out_email_inside`]).
const GENERIC_MAIL_TLDS: [&str; 11] = [
    "biz", "com", "dev", "edu", "email", "gov", "info", "int", "mil", "net", "org",
];

/// Whether `host` starts with a host name: two or more labels of letters, digits and
/// '-' (what follows it, a quote, a comma, is set aside), the last of two or more
/// letters and, unless `any_tld`, a mail domain ([`GENERIC_MAIL_TLDS`],
/// [`country_domain`]).
fn host_name_like(host: &str, any_tld: bool) -> bool {
    let end = host
        .char_indices()
        .find(|(_, c)| !(c.is_alphanumeric() || *c == '.' || *c == '-'))
        .map_or(host.len(), |(i, _)| i);
    let host = host.get(..end).unwrap_or_default().trim_end_matches('.');
    let labels: Vec<&str> = host.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && labels.last().is_some_and(|t| {
            t.chars().count() >= 2
                && t.chars().all(char::is_alphabetic)
                && (any_tld || GENERIC_MAIL_TLDS.contains(t) || country_domain(t))
        })
}

/// A mark that opens a quoted or bracketed value.
fn opening(c: char) -> bool {
    matches!(
        c,
        '<' | '"' | '\'' | '(' | '[' | '{' | '«' | '“' | '‘' | '「' | '‹'
    )
}

/// Whether `value` holds, anywhere, a '+' that does not follow a letter, a digit or
/// a '+' that follows one, followed at once by a digit and then by at least 7 digits in all, with
/// or without separators (dates written in full are not counted): an international
/// number with a label, a note, or beside another ("Tel.+15550109999", "+1 555 010 9999
/// / 555 010 8888"). "acme+1234567", "C++ 2026-11-30", "Acme + 2026-11-30" and
/// "GMT +1 2026-11-30" are not one; "build +20261130" is (it reads as +20 261130).
fn international_number_inside(value: &str) -> bool {
    let masked = without_dates(value);
    let mut previous: Option<char> = None;
    // Whether the run of '+' that `previous` ends does not follow a letter or digit:
    // its last '+' may start a number ("++447946095800", written by a program adding a
    // '+' to a value that had one), where "C++ …" holds none.
    let mut free_run = false;
    // The character before `previous`: "+-+1234567" is a form post's " - 1234567"
    // (`quote_plus` and `URLSearchParams` keep `-~._*`), no number (review r119).
    let mut before: Option<char> = None;
    for (at, c) in masked.char_indices() {
        let form_separator = before == Some('+') && matches!(previous, Some('-' | '~' | '.' | '_' | '*'));
        let starts = c == '+'
            && !form_separator
            && match previous {
                Some('+') => free_run,
                Some(p) => !p.is_alphanumeric(),
                None => true,
            };
        if c == '+' {
            free_run = starts;
        }
        before = previous;
        previous = Some(c);
        if !starts {
            continue;
        }
        // Spaces or one '(' may come between the '+' and the country code: "+ 44 …",
        // "+(44) …".
        let rest = masked.get(at + c.len_utf8()..).unwrap_or_default();
        let rest = rest.trim_start_matches(' ');
        let rest = rest.strip_prefix('(').unwrap_or(rest);
        if !rest.starts_with(|c: char| c.is_ascii_digit()) {
            continue;
        }
        let digits = rest
            .chars()
            .take_while(|c| c.is_ascii_digit() || phone_separator(*c))
            .filter(char::is_ascii_digit)
            .count();
        if digits >= 7 {
            return true;
        }
    }
    false
}

/// Whether `value` holds a national number with a label, a note, or beside another
/// ("Mobile: (555) 010-9999", "555-010-9999 mobile", "555-010-9999, 555-010-8888"): a run
/// of digits and the separators of `phone_separator` but dots and slashes, with 9 to 15
/// digits in three or more groups (the first of 1 to 5 digits, the others of 2 to 6), or
/// in two after a trunk prefix (a leading 0 or a parenthesised area code: "07700 900123",
/// "(0171) 1234567", 10 to 12 digits), standing apart from the words
/// around it (at the value's start or end, beside a character that is not a letter or
/// digit, or with a space or a parenthesis between). Left alone: a run joined to letters
/// by a dash (the digit groups of a UUID), runs with a group of one digit after the first
/// or of more than six (an ISBN, "20261130 1200"), dots and slashes (versions, dates, IP
/// addresses, which the whole-value rule judges), and dates written in full. (A first
/// group of one digit is a country code, "1 555 010 9999": so an EAN-13 printed in its
/// groups, "EAN 4 006381 333931", is refused.) Not found: dotted national
/// numbers inside a longer value ("tel. 555.010.9999"), and numbers in two groups with
/// no trunk prefix ("Mobile: 333 1234567"), which cannot be told from other codes.
fn national_number_inside(value: &str) -> bool {
    let masked = without_dates(value);
    let chars: Vec<char> = masked.chars().collect();
    let in_run = |c: char| c.is_ascii_digit() || (phone_separator(c) && !matches!(c, '.' | '/'));
    let mut i = 0;
    while i < chars.len() {
        if !chars.get(i).is_some_and(|c| in_run(*c)) {
            i += 1;
            continue;
        }
        let start = i;
        while chars.get(i).is_some_and(|c| in_run(*c)) {
            i += 1;
        }
        let run = chars.get(start..i).unwrap_or_default();
        let (Some(first), Some(last)) = (
            run.iter().position(char::is_ascii_digit),
            run.iter().rposition(char::is_ascii_digit),
        ) else {
            continue;
        };
        let apart = |outside: Option<&char>, gap: &[char]| {
            outside.is_none_or(|c| !c.is_alphanumeric())
                || gap.iter().any(|c| c.is_whitespace() || matches!(c, '(' | ')'))
        };
        let before = start.checked_sub(1).and_then(|b| chars.get(b));
        let left = apart(before, run.get(..first).unwrap_or_default());
        let right = apart(chars.get(i), run.get(last + 1..).unwrap_or_default());
        let core: String = run.get(first..=last).unwrap_or_default().iter().collect();
        let groups: Vec<usize> = core
            .split(|c: char| !c.is_ascii_digit())
            .filter(|g| !g.is_empty())
            .map(str::len)
            .collect();
        let digits: usize = groups.iter().sum();
        // Three or more groups (the first of 1 to 5 digits, the others of 2 to 6); or two
        // after a trunk prefix, a leading 0 or a parenthesised area code ("07700 900123",
        // "(0171) 1234567"), 10 to 12 digits in all.
        let trunk = core.starts_with('0') || run.get(..first).is_some_and(|gap| gap.contains(&'('));
        let grouped = match groups.as_slice() {
            [first, rest @ ..] if rest.len() >= 2 => {
                (1..=5).contains(first) && rest.iter().all(|g| (2..=6).contains(g))
            }
            [first, second] => {
                trunk && (2..=5).contains(first) && (5..=8).contains(second) && (10..=12).contains(&digits)
            }
            _ => false,
        };
        if left && right && (9..=15).contains(&digits) && grouped {
            return true;
        }
    }
    false
}

/// The most digits in one run of digits and the separators `national_number_inside`
/// takes (without allocating): an upper bound of what that rule counts.
fn longest_run_digits(value: &str) -> usize {
    let (mut longest, mut run) = (0, 0);
    for c in value.chars() {
        if c.is_ascii_digit() {
            run += 1;
            longest = longest.max(run);
        } else if !phone_separator(c) || matches!(c, '.' | '/') {
            run = 0;
        }
    }
    longest
}

/// Whether `c` is a Unicode dash (category Pd) or a minus sign.
fn is_dash(c: char) -> bool {
    c == '\u{2212}'
        || (!c.is_ascii()
            && icu_properties::CodePointMapData::<GeneralCategory>::new().get(c)
                == GeneralCategory::DashPunctuation)
}

/// `value` with every date written in full replaced by the letter 'D': year first
/// ("2026-11-30") or last ("30.11.2026", "11/30/2026"), its parts joined by the same
/// '-', '.' or '/', the day and month of one or two digits.
fn without_dates(value: &str) -> String {
    let chars: Vec<char> = value.chars().collect();
    let digits_at = |i: usize| {
        chars
            .get(i..)
            .unwrap_or_default()
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count()
    };
    // The length of a date starting at `i`, if one does.
    let date_at = |i: usize| -> Option<usize> {
        if i > 0 && chars.get(i - 1).is_some_and(char::is_ascii_digit) {
            return None;
        }
        let a = digits_at(i);
        let sep = *chars.get(i + a)?;
        if !(matches!(sep, '-' | '.' | '/') || is_dash(sep)) {
            return None;
        }
        let b = digits_at(i + a + 1);
        if chars.get(i + a + 1 + b).copied() != Some(sep) {
            return None;
        }
        let c = digits_at(i + a + 2 + b);
        let fits = (a == 4 && (1..=2).contains(&b) && (1..=2).contains(&c))
            || ((1..=2).contains(&a) && (1..=2).contains(&b) && c == 4);
        fits.then_some(a + b + c + 2)
    };
    let mut out = String::with_capacity(value.len());
    let mut i = 0;
    while i < chars.len() {
        match date_at(i) {
            Some(len) => {
                out.push('D');
                i += len;
            }
            None => {
                if let Some(c) = chars.get(i) {
                    out.push(*c);
                }
                i += 1;
            }
        }
    }
    out
}

/// A character people write between the digits of a phone number: the ASCII ones
/// (space, '-', '.', '(', ')', '/'), any Unicode space (a no-break space, say), any
/// Unicode dash (category Pd), the minus sign and the katakana prolonged sound mark
/// (`ー`, which Japanese input writes for a dash).
fn phone_separator(c: char) -> bool {
    c.is_whitespace() || matches!(c, '-' | '.' | '(' | ')' | '/' | '\u{30FC}') || is_dash(c)
}

/// `value` as it reads: in NFKC (full-width and small forms, circled and superscript
/// digits become their plain characters, so "０９０", "﹢" and "﹫" read as "090", "+"
/// and "@"; a Roman numeral becomes letters), without invisible characters (Unicode's
/// Default_Ignorable_Code_Point: zero-width spaces, bidi marks, a byte-order mark),
/// without marks drawn on characters (categories Mn and Me: a keycap), with every digit
/// of any script or dress (categories Nd and No: "٤٤", "➀", "❶") written as the ASCII
/// digit `5` (which digit does not matter here, only that it is one).
fn fold_lookalikes(value: &str) -> std::borrow::Cow<'_, str> {
    // ASCII is its own NFKC and has only ASCII digits: nothing to do (every name decoded
    // from the log comes through here).
    if value.is_ascii() {
        return std::borrow::Cow::Borrowed(value);
    }
    let nfkc = icu_normalizer::ComposingNormalizerBorrowed::new_nfkc().normalize(value);
    let category = icu_properties::CodePointMapData::<GeneralCategory>::new();
    // Invisible marks (zero-width spaces, bidi marks and isolates, a byte-order mark:
    // what a number copied from a screen or a CSV file carries) are left out.
    let invisible =
        icu_properties::CodePointSetData::new::<icu_properties::props::DefaultIgnorableCodePoint>();
    nfkc.chars()
        .filter(|c| !invisible.contains(*c))
        .filter_map(|c| match category.get(c) {
            // Digits in other dress that NFKC leaves (dingbat circled digits "➀", "❶",
            // "⓿") count as digits too.
            GeneralCategory::DecimalNumber | GeneralCategory::OtherNumber if !c.is_ascii() => Some('5'),
            // Marks drawn on a character (the keycap of "5️⃣") leave it as it reads.
            GeneralCategory::NonspacingMark | GeneralCategory::EnclosingMark => None,
            // Plus signs NFKC leaves: the emoji "➕", the modifier letter "˖".
            _ if matches!(c, '\u{2795}' | '\u{02D6}') => Some('+'),
            _ => Some(c),
        })
        .collect::<String>()
        .into()
}

/// A phone number as people write it, after an extension ("ext. 12", "x12",
/// ";ext=12") is set aside: a '+' and 7 to 15 digits, with or without separators; or
/// 9 to 15 digits with at least one separator: "(555) 010-9999", "0044 20 7946 0958".
/// Separators: see `phone_separator`. The value is judged as it reads (see
/// `fold_lookalikes`): full-width and small forms as their plain characters, and the
/// digits of every script as digits. (Numbers written that way that are not phone numbers, an
/// address like "192.168.100.200", are refused too; dates and digits without
/// separators pass, also with a leading "00", since they may be account numbers.)
fn written_like_a_phone_number(value: &str) -> bool {
    let separator = phone_separator;
    let number = without_extension(value);
    let (plus, digits_part) = match number.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, number),
    };
    if !digits_part.chars().all(|c| c.is_ascii_digit() || separator(c)) {
        return false;
    }
    let digits = digits_part.chars().filter(char::is_ascii_digit).count();
    if plus {
        (7..=15).contains(&digits)
    } else {
        (9..=15).contains(&digits) && digits_part.chars().any(separator)
    }
}

/// `value` without a trailing phone extension: a marker (";ext=", "extension",
/// "ext.", "ext:", "ext", "x" or "#", any case) followed by 1 to 6 digits, and the
/// commas and spaces before it.
fn without_extension(value: &str) -> &str {
    let lower = value.to_ascii_lowercase(); // same byte offsets as `value`
    for marker in [";ext=", "extension", "ext.", "ext:", "ext", "x", "#"] {
        let Some(at) = lower.rfind(marker) else {
            continue;
        };
        let rest = lower.get(at + marker.len()..).unwrap_or_default().trim();
        if (1..=6).contains(&rest.len()) && rest.bytes().all(|b| b.is_ascii_digit()) {
            let number = value.get(..at).unwrap_or(value);
            return number.trim_end_matches(|c: char| c == ',' || c.is_whitespace());
        }
    }
    value
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl Recipient {
    /// A named business partner.
    ///
    /// # Errors
    /// [`InputError`] when the name is not valid (see [`Name::new`]).
    pub fn partner(name: &str) -> Result<Self, InputError> {
        Ok(Recipient::Partner(Name::new(name)?))
    }

    /// A registered developer app, by its registration id.
    ///
    /// # Errors
    /// [`InputError`] when the id is not a valid name (see [`Name::new`]).
    pub fn developer_app(app_id: &str) -> Result<Self, InputError> {
        Ok(Recipient::DeveloperApp(Name::new(app_id)?))
    }
}

impl fmt::Debug for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Recipient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Recipient::FirstParty => f.write_str("first party"),
            Recipient::Partner(n) => write!(f, "partner {n:?}"),
            Recipient::DeveloperApp(n) => write!(f, "developer app {n:?}"),
        }
    }
}

/// Whom a consent (or a non-consent collection) covers.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RecipientScope(pub(crate) ScopeRepr);

/// The representation; kept private so that every value upholds "sorted, unique, non-empty".
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum ScopeRepr {
    /// Exactly these recipients: sorted, without duplicates, never empty.
    Recipients(Vec<Recipient>),
    /// Every [`Recipient::Partner`] (not the first party, not developer apps).
    AllPartners,
}

impl RecipientScope {
    /// Only the application itself.
    pub fn first_party() -> Self {
        RecipientScope(ScopeRepr::Recipients(vec![Recipient::FirstParty]))
    }

    /// Exactly one recipient.
    pub fn only(recipient: Recipient) -> Self {
        RecipientScope(ScopeRepr::Recipients(vec![recipient]))
    }

    /// A set of recipients; order and duplicates do not matter.
    ///
    /// Recording a scope takes one ledger entry, so it is bounded when written: at most
    /// 256 recipients ([`WriteError::Input`](crate::WriteError::Input)), in an entry of
    /// at most 7 KiB ([`WriteError::TooLarge`](crate::WriteError::TooLarge): 256
    /// recipients fit when their names average about 14 bytes, about 48 with 128-byte
    /// names).
    ///
    /// # Errors
    /// [`InputError`] when the set is empty (a consent for nobody is a withdrawal: record that instead).
    pub fn any_of(recipients: impl IntoIterator<Item = Recipient>) -> Result<Self, InputError> {
        let mut list: Vec<Recipient> = recipients.into_iter().collect();
        list.sort();
        list.dedup();
        if list.is_empty() {
            return Err(InputError::new("recipient scope", "is empty"));
        }
        Ok(RecipientScope(ScopeRepr::Recipients(list)))
    }

    /// Every business partner, present and future (the "share with business partners" setting).
    pub fn all_partners() -> Self {
        RecipientScope(ScopeRepr::AllPartners)
    }

    /// Whether this scope covers `recipient`.
    pub fn covers(&self, recipient: &Recipient) -> bool {
        match &self.0 {
            ScopeRepr::AllPartners => matches!(recipient, Recipient::Partner(_)),
            ScopeRepr::Recipients(list) => {
                // Short lists are the norm; a linear scan beats binary search there.
                if list.len() <= 8 {
                    list.iter().any(|r| r == recipient)
                } else {
                    list.binary_search(recipient).is_ok()
                }
            }
        }
    }

    /// Whether this scope covers every recipient `other` covers.
    pub(crate) fn holds(&self, other: &RecipientScope) -> bool {
        match &other.0 {
            ScopeRepr::AllPartners => matches!(self.0, ScopeRepr::AllPartners),
            ScopeRepr::Recipients(list) => list.iter().all(|r| self.covers(r)),
        }
    }

    /// The listed recipients, or `None` for [`RecipientScope::all_partners`].
    pub fn recipients(&self) -> Option<&[Recipient]> {
        match &self.0 {
            ScopeRepr::Recipients(list) => Some(list),
            ScopeRepr::AllPartners => None,
        }
    }

    /// Whether this is the all-partners scope.
    pub fn is_all_partners(&self) -> bool {
        matches!(self.0, ScopeRepr::AllPartners)
    }
}

impl fmt::Debug for RecipientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for RecipientScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            ScopeRepr::AllPartners => f.write_str("all business partners"),
            ScopeRepr::Recipients(list) => {
                for (i, r) in list.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    fmt::Display::fmt(r, f)?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn scopes_cover_what_they_say() {
        let acme = Recipient::partner("acme-ads").unwrap();
        let other = Recipient::partner("other").unwrap();
        let app = Recipient::developer_app("app-123").unwrap();
        assert!(RecipientScope::all_partners().covers(&acme));
        assert!(!RecipientScope::all_partners().covers(&Recipient::FirstParty));
        assert!(!RecipientScope::all_partners().covers(&app));
        let s = RecipientScope::any_of([acme.clone(), acme.clone(), Recipient::FirstParty]).unwrap();
        assert_eq!(s.recipients().unwrap().len(), 2);
        assert!(s.covers(&acme) && s.covers(&Recipient::FirstParty) && !s.covers(&other));
        assert!(RecipientScope::any_of([]).is_err());
        let many =
            RecipientScope::any_of((0..20).map(|i| Recipient::partner(&format!("p{i}")).unwrap())).unwrap();
        assert!(many.covers(&Recipient::partner("p13").unwrap()));
        assert!(!many.covers(&other));
    }

    #[test]
    fn names_are_validated() {
        assert!(Name::new("").is_err());
        assert!(Name::new(" x").is_err());
        assert!(Name::new("a\nb").is_err());
        assert!(Name::new(&"x".repeat(129)).is_err());
        assert!(Name::new("Acme Ads GmbH").is_ok());
    }

    /// Names that read as another are refused: mixed Latin and Cyrillic or Greek,
    /// compatibility forms, invisible, unassigned and private-use characters. Names in
    /// one script, and Latin with Japanese, Korean, Chinese or one other script, pass.
    #[test]
    fn names_that_read_as_another_are_refused() {
        for lookalike in [
            "\u{430}cme",                                      // Cyrillic а, then Latin
            "Acme \u{3bf}ds",                                  // a Greek ο among Latin
            "\u{ff41}\u{ff43}\u{ff4d}\u{ff45}",                // full-width "acme"
            "ac\u{200b}me",                                    // a zero-width space
            "acme\u{feff}",                                    // a byte-order mark
            "acme\u{e000}",                                    // private use
            "acme\u{378}",                                     // unassigned
            "Mu\u{308}ller",                                   // a decomposed accent
            "\u{fb01}nance",                                   // the "fi" ligature
            "Acme \u{41c}\u{43e}\u{441}\u{43a}\u{432}\u{430}", // Latin and a Cyrillic word
            "\u{41c}\u{43e}\u{441}\u{3ba}\u{3b1}",             // Cyrillic and Greek
            "\u{627}\u{644}\u{5d0}",                           // Arabic and Hebrew
            // Found by review h34: Latin with a script UAX #31 does not recommend
            // (Cherokee, Lisu, Coptic letters made like Latin ones; Braille's blank),
            // and joiners or variation selectors that no word needs.
            "\u{13aa}cme",
            "\u{a4ee}cme",
            "Acm\u{2c89}",
            "\u{13df}ola",
            "acme\u{2800}",
            "ac\u{200d}me",
            "ac\u{200c}me",
            "acme\u{fe0f}",
            "\u{200d}\u{1f680}",
            "\u{5d0}\u{200d}\u{627}",
            // Found by the next review: joiners between letters that do not join,
            // and the variation selectors and joiners of emoji, read as the same
            // name without them; a joiner beside a mark that Latin shares.
            "\u{5d0}\u{200d}\u{5dc} \u{5e2}\u{5dc} El Al",
            "\u{682a}\u{200c}\u{5f0f}\u{4f1a}\u{793e}",
            "\u{c0bc}\u{200d}\u{c131} Galaxy S24",
            "Acme \u{30bd}\u{200d}\u{30cb}\u{30fc}",
            "7-Eleven \u{e40}\u{e0b}\u{200c}\u{e40}\u{e27}",
            "\u{627}\u{200c}\u{644}\u{639}",
            "Acme \u{1f680}\u{fe0f}",
            "Acme \u{1f680}\u{fe0e}",
            "Acme \u{1f680}\u{200d}\u{1f680}",
            "Acme \u{2764}\u{fe0f}",
            "Acme \u{1f468}\u{200d}\u{1f469}\u{200d}\u{1f467}",
            "Acme\u{951}\u{200d}\u{915}",
            "Ac\u{951}\u{200d}\u{951}me",
        ] {
            let refused = Name::new(lookalike).map(|_| ()).unwrap_err();
            assert!(!refused.to_string().contains(lookalike), "{refused}");
        }
        for fine in [
            "acme",
            "M\u{fc}ller Werbung",                           // composed ü
            "\u{41c}\u{43e}\u{441}\u{43a}\u{432}\u{430} 24", // Cyrillic and digits
            "\u{3a9}\u{3bc}\u{3ad}\u{3b3}\u{3b1}",           // Greek
            "\u{30a2}\u{30af}\u{30e1}\u{5e83}\u{544a}",      // Katakana and Han
            "Acme \u{5e83}\u{544a}",                         // Latin and Han
            "Acme \u{ad11}\u{ace0}",                         // Latin and Hangul
            "Acme \u{5e7f}\u{544a} \u{3105}",                // Latin, Han and Bopomofo
            "Acme \u{627}\u{644}\u{639}\u{631}\u{628}",      // Latin and Arabic
            "Acme \u{2013} Ads",                             // a dash: common to all scripts
            "Caf\u{e9} 7",
            // Found by review h34: joiners that words and emoji need, and names in the
            // scripts of real brands.
            "\u{62f}\u{6cc}\u{62c}\u{6cc}\u{200c}\u{6a9}\u{627}\u{644}\u{627}", // دیجی‌کالا
            "\u{dc1}\u{dca}\u{200d}\u{dbb}\u{dd3} \u{dbd}\u{d82}\u{d9a}\u{dcf}", // ශ්‍රී ලංකා
            "Acme \u{1f680}",
            "\u{30bd}\u{30cb}\u{30fc}\u{682a}\u{5f0f}\u{4f1a}\u{793e}", // ソニー株式会社
            "\u{c0bc}\u{c131} Galaxy S24",
            "\u{623}\u{631}\u{627}\u{645}\u{643}\u{648} Aramco \u{661}\u{662}",
            "\u{5d0}\u{5dc} \u{5e2}\u{5dc} El Al",
            "Tata \u{91f}\u{93e}\u{91f}\u{93e} 1868",
            "7-Eleven \u{e40}\u{e0b}\u{e40}\u{e27}\u{e48}\u{e19}",
        ] {
            assert!(Name::new(fine).is_ok(), "{fine}");
        }
        // Names read back from the log keep only the shape rules: a log holding a name
        // written before this rule still opens.
        assert!(Name::stored("\u{430}cme").is_some());
        // Such a name from an old log stays another recipient than the one it reads as.
        let nfd = Name::stored("cafe\u{301}").unwrap();
        assert_ne!(nfd, Name::new("caf\u{e9}").unwrap());
        assert_ne!(
            Recipient::Partner(nfd.clone()),
            Recipient::partner("caf\u{e9}").unwrap()
        );
    }

    /// Contact details taken from a URL or a web page undecoded are refused as their
    /// decoded spelling is (found by a review: "alice%40example.com" passed, and was
    /// written to the log in clear, for good); ordinary values with '%' or '&' pass.
    #[test]
    fn percent_and_html_encoded_contact_details_are_refused() {
        for written in [
            "alice%40example.com",
            "mailto%3Aalice%40example.com",
            "%2B15550109999",
            "tel%3A%2B15550109999",
            "+1%20555%20010%209999",
            "alice%2540example.com",
            "alice&#64;example.com",
            "alice&#x40;example.com",
            "alice&commat;example.com",
            "&plus;15550109999",
            // Found by the review of the decoding: named spaces, a form post's '+',
            // a reference without its ';', text escaped twice.
            "+1&nbsp;555&nbsp;010&nbsp;9999",
            "%2B1+555+010+9999",
            "alice&#64example.com",
            "alice&amp;#64;example.com",
            "alice&amp;commat;example.com",
            // Found by the next review: more named references, legacy ones without ';',
            // Windows-1252 numbers, zero-padded numbers, form posts without escapes,
            // JSON escapes.
            "+1&ndash;555&ndash;010&ndash;9999",
            "555&ndash;010&ndash;9999",
            "555&minus;010&minus;9999",
            "06&thinsp;12&thinsp;34&thinsp;56&thinsp;78",
            "+33&ensp;6&ensp;12&ensp;34&ensp;56&ensp;78",
            "+1&NonBreakingSpace;555&NonBreakingSpace;010&NonBreakingSpace;9999",
            "+1&nbsp555&nbsp010&nbsp9999",
            "555&#150;010&#150;9999",
            "alice&#0000000064;example.com",
            "alice&AMP;commat;example.com",
            "555+010+9999",
            "07700+900123",
            "020+7946+0958",
            "alice\\u0040example.com",
            "+1\\u00a0555\\u00a0010\\u00a09999",
            "\\u002B15550109999",
            "alice\\x40example.com",
        ] {
            assert!(Name::new(written).is_err(), "{written}");
            assert!(crate::SubjectId::new(written).is_err(), "{written}");
        }
        for fine in [
            "Acme & Sons",
            "50% off",
            "R&D team 7",
            "100%",
            "a%zz",
            "&#xZZ;",
            "Q&A &amp; more",
            // A form post of an ordinary label, a plain '%' beside a '+', C++, a
            // version with build metadata, a Windows path.
            "Chrome+%28stable%29+120.0.6099.109",
            "Windows+%28x64%29+10.0.19045.3693",
            "Order 12345 67890 +15%",
            "C++ 2026-11-30",
            "release 1.2.3+20261130",
            "C:\\Users\\x\\u2019s",
        ] {
            assert!(Name::new(fine).is_ok(), "{fine}");
        }
        // Ordinary labels holding '+', '%', '&' or '\\', as they come from forms, URLs,
        // pages and paths (random versions, percentages, counts).
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let (a, b, c, d) = (next(200), next(100), next(10_000), next(100_000_000));
            for fine in [
                format!("Chrome+%28stable%29+{a}.{b}.{c}.{d}"),
                format!("release {a}.{b}.{c}+{d}"),
                format!("{b}% off until {c}"),
                format!("R&D {a}&amp;{b} team {c}"),
                format!("Order {c} {d} +{b}%"),
                format!("C:\\builds\\{a}\\{c}"),
                format!("sale+{b}%25+off+{c}"),
            ] {
                assert!(Name::new(&fine).is_ok(), "{fine}");
            }
        }
        assert_eq!(json_escape("\\ud83d\\ude00"), Some(('😀', 12)));
        assert_eq!(json_escape("\\ud83d"), None);
        assert_eq!(json_escape("\\u12"), None);
        assert_eq!(url_and_html_decoded("%E2%82%AC &#8364; &#x20AC;"), "€ € €");
        assert_eq!(url_and_html_decoded("%"), "%");
        assert_eq!(
            url_and_html_decoded("&#;&#x;&#99999999;&#1234567890;"),
            "&#;&#x;&#99999999;&#1234567890;"
        );
        assert_eq!(
            url_and_html_decoded("&#64&#x40 &amp;amp; &nope; &"),
            "@@ & &nope; &"
        );
    }

    /// From review r110: an international number after an escaped separator (as
    /// `encodeURI` writes "Mobile: +44…"), a number with its '+' doubled, and an email
    /// address spelled out with "at" passed. Labels that merely look alike still pass.
    #[test]
    fn escaped_doubled_and_spelled_out_contact_details_are_refused() {
        for refused in [
            "Mobile:%20+447946095800",
            "Tel.%20+15550109999",
            "whatsapp%20+447946095800",
            "tel%3A+15550109999",
            "++447946095800",
            "++15550109999",
            "++1 5550109999",
            "x ++44 7946 095800",
            "alice at example.com",
            "Alice AT Example.COM",
            "alice(at)example.com",
            "alice [at] example [dot] com",
            "contact: alice {at} mail.example.org.",
            "bob.smith at mail.example.co.uk",
            // From review r116: more of what programs and people write.
            "Mobile:%20%22+447946095800%22",
            "%7B%22phone%22:%22+447946095800%22%7D",
            "Mobile:%20%3C+447946095800%3E",
            "Mobil:%C2%A0+491711234567",
            "alice at example dot com",
            "bob.smith AT mail DOT example DOT org",
            "Alice Smith <alice at example.com>",
            "\"alice at example.com\",2026-11-30",
            "Email:alice at example.com",
            "alice at bücher.de",
            "alice(at)example.travel",
            // From review r119: encodeURI output, JSON's "\/", spaced and defanged
            // brackets, country domains.
            "Mobile:+91%209876543210",
            "Mobile:+44%207946095800",
            "+91%209876543210%20(mobile)",
            "Mobile%20(+91)%209876543210",
            "Alice%20Smith,+91%209876543210",
            "phone=+91%209876543210",
            "%E6%90%BA%E5%B8%AF%EF%BC%9A+81%209012345678",
            "0171\\/1234567",
            "555\\/010\\/9999",
            "+49 171\\/1234567",
            "alice [ at ] example [ dot ] com",
            "alice ( at ) example.com",
            "alice { at } example { dot } com",
            "alice[at]example[.]com",
            "alice (at) example[.]com",
            "alice [at] example [.] com",
            "alice(at)example(.)com",
            "alice at yahoo.co.id",
            "alice at yahoo.com.my",
            "alice at yahoo.com.ph",
            "alice at abv.bg",
            "alice at mail.ee",
            "alice at example.vn",
            // From review r122: encodeURI of a label glued to an E.164 number, and
            // JSON's escaped line breaks and tabs.
            "%E6%90%BA%E5%B8%AF%EF%BC%9A+819012345678",
            "%E9%9B%BB%E8%A9%B1%EF%BC%9A+81312345678",
            "Mobile%C2%A0+447946095800",
            "Mobile%7C+447946095800",
            "Mobile%E2%80%93+447946095800",
            "Handy%E2%86%92+491711234567",
            "Tel.%C2%A0+4930123456",
            "Alice Smith\\n+447946095800",
            "Acme Ltd\\n0171 1234567",
            "Alice Smith\\nalice at example.com",
            "Alice\\t+447946095800",
            "Mobile:\\t07946 095800",
            "Acme\\r\\n07946 095800",
            // From review r124: encodeURI escapes `[` and `]` too.
            "%5BMobile%5D+447946095800",
            "Alice%5B+447946095800%5D",
            "%5B%22Mobile%22,%22+447946095800%22%5D",
            "%7B%22phones%22:%5B%22+447946095800%22%5D%7D",
            // From review r127: a form post encoded again, "(a)" for '@', wa.me links.
            "%252B44%2B7946%2B095800",
            "07946%2B095800",
            "Mobile%253A%2B07946%2B095800",
            "t%3D%252B44%2B7946%2B095800",
            "etunimi.sukunimi(a)yritys.fi",
            "alice(a)gmail.com",
            "alice [a] example.com",
            "https://wa.me/447946095800",
            "wa.me/447946095800",
        ] {
            assert!(crate::SubjectId::new(refused).is_err(), "subject id {refused:?}");
            assert!(Name::new(refused).is_err(), "name {refused:?}");
        }
        for passes in [
            "Chrome+%28stable%29+120.0",
            "C++ 2026-11-30",
            "C++",
            "a++b",
            "Lunch at noon",
            "meet at 12.30",
            "Meeting (at) HQ",
            "at example.com",
            "build at v2.1",
            "acme%20+%20partners",
            "alice at localhost",
            // From review r116: form posts of labelled numbers, and "at" before a
            // dotted word that is no mail domain.
            "Order%3A+12345678",
            "Ticket%3A+2026001234",
            "Invoices+2026001%2C+2026002",
            "Ref%3B+1234567",
            "Frontend at Next.js",
            "Rendered at Node.js",
            "Import at users.csv",
            "Hotel at St.Moritz",
            "Notes at README.md",
            // From review r119: form posts (URLSearchParams, quote_plus) of labels.
            "Report+%7C+20261130",
            "Batch+%7C+1234567",
            "%22Summer+Sale%22+20260601",
            "Order+%22ABC%22+12345678",
            "Customer+%5B+1234567+%5D",
            "Batch+%7B+1234567+%7D",
            "Acme+-+12345678",
            "Acme+~+12345678",
            "Invoice+-+2026001234",
            "Built at lib.rs",
            "Run at main.py",
            // From review r122: form posts with key=value pairs or kept parentheses,
            // and "at" before a file name.
            "campaign=Report+%7C+20261130",
            "utm_source=mail&utm_campaign=Spring+Sale+%E2%80%93+20260315",
            "label=Report+%22Q4%22+20261130",
            "Report+(Q4)+%7C+20261130",
            "Summer+Sale+(EU)+%7C+20261130",
            "Crash at MainActivity.kt",
            "Error at init.el",
            "Backup at dump.gz",
            "Stored at cache.db",
            "Resource at main.tf",
            "Run at script.jl",
            "C:\\new folder",
            "Export at logo.ai",
            "Launch at Safari.app",
            "Section (a) 2.1",
            "Plan (a) v2.1",
            "Award (a) example",
        ] {
            assert!(crate::SubjectId::new(passes).is_ok(), "subject id {passes:?}");
        }
    }

    /// Contact details typed with an input method's full-width forms, or in the digits
    /// of another script, are refused as their ASCII spelling is (found by a review:
    /// they were written to the log in clear, for good).
    #[test]
    fn contact_details_in_full_width_or_other_digits_are_refused() {
        for written in [
            "090-1234-5678",
            "０９０‐１２３４‐５６７８",
            "０９０ー１２３４ー５６７８",
            "＋８１ ９０ １２３４ ５６７８",
            "０９０ １２３４ ５６７８",
            "+٤٤ ٢٠ ٧٩٤٦ ٠٩٥٨",
            "someone＠example.com",
            "ｍａｉｌｔｏ：x",
            // Found by the next reviews: small and half-width forms, and every dash.
            "090\u{FF70}1234\u{FF70}5678",
            "090\u{FE63}1234\u{FE63}5678",
            "\u{FE62}81 90 1234 5678",
            "\u{FE62}819012345678",
            "someone\u{FE6B}example.com",
            "①⑤⑤⑤ ⓪①⓪ ⑨⑨⑨⑨ ①②",
            // Found by a later review: wrapped in invisible marks, as numbers copied
            // from a phone's screen or a CSV file are.
            "\u{202A}+1 (555) 010-9999\u{202C}",
            "\u{2066}+1 (555) 010-9999\u{2069}",
            "+1 (555) 010-9999\u{200E}",
            "\u{FEFF}+1 (555) 010-9999",
            "(555) 010-9999\u{200B}",
            "+1 (555) 010\u{00AD}-9999",
        ] {
            assert!(crate::SubjectId::new(written).is_err(), "{written}");
            assert!(Name::new(written).is_err(), "{written}");
        }
        // Every Unicode dash (category Pd) separates.
        for dash in [
            '\u{058A}', '\u{05BE}', '\u{1400}', '\u{1806}', '\u{2E17}', '\u{2E3A}', '\u{2E40}', '\u{301C}',
            '\u{3030}', '\u{30A0}', '\u{FE58}', '\u{FE63}', '\u{FF0D}',
        ] {
            for written in [
                format!("555{dash}010{dash}9999"),
                format!("+1{dash}555{dash}010{dash}9999"),
            ] {
                assert!(crate::SubjectId::new(&written).is_err(), "{written}");
                assert!(Name::new(&written).is_err(), "{written}");
            }
        }
        // Numeric symbols that are not digits stay what they are: a Roman numeral reads
        // as letters.
        for fine in [
            "Zoë",
            "用户-12345",
            "ｕｓｅｒ-42",
            "２０２６-１１-３０",
            "Ⅻ-2026",
            "Ⅻ-2026-11-30",
            "acct ４２",
        ] {
            assert!(crate::SubjectId::new(fine).is_ok(), "{fine}");
        }
    }

    /// Found by two reviews: a number with a label, quoted, in a list, after any
    /// scheme that reaches a person, with its country code in parentheses, or typed in
    /// dingbat digits or keycaps, passed and was written to the log in clear, for good.
    #[test]
    fn phone_numbers_with_labels_quotes_schemes_or_other_dress_are_refused() {
        for written in [
            "callto:+15550109999",
            "fax:+15550109999",
            "modem:+15550109999",
            "SMSTO:+15550109999",
            "mms:+15550109999",
            "facetime:+15550109999",
            "whatsapp://send?phone=15550109999",
            "<tel:+15550109999>",
            "\"+1 555 010 9999\"",
            "\"(555) 010-9999\"",
            "+1 555 010 9999 (mobile)",
            "+1 (555) 010-9999, +1 (555) 010-8888",
            "mobile: +1 555 010 9999",
            // Found by review r75: national numbers with a label, a note or beside
            // another; international ones followed by more digits; URIs quoted or after
            // a label; the emoji plus sign.
            "Mobile: (555) 010-9999",
            "tel. 555-010-9999",
            "phone 0044 20 7946 0958",
            "(555) 010-9999 (mobile)",
            "555-010-9999 mobile",
            "555-010-9999, 555-010-8888",
            "+1 555 010 9999 / 555 010 8888",
            "+15550109999-12345",
            "+1 555 010 9999 (2026-11-30)",
            "+44 20 7946 0958 / 020 7946 0959",
            "\"tel:5550109999\"",
            "'sms:5550109999'",
            "(tel:5550109999)",
            "\u{ab}tel:5550109999\u{bb}",
            "Phone: tel:5550109999",
            "contact callto:5550109999",
            "\u{2795}1 555 010 9999",
            "\u{2795}15550109999",
            "\u{2795}44 20 7946 0958",
            // Ambiguous, refused: "+20 261130" as written.
            "release 1.2.3 (build +20261130)",
            // Found by reviews r79 and r84 of the second version: URIs with a user name
            // quoted or bracketed, numbers with a label joined without a space or in
            // other quotes and braces.
            "<skype:john.doe?call>",
            "<callto:john.doe>",
            "\"skype:john.doe\"",
            "Contact: skype:john.doe",
            "[facetime:alice.smith]",
            "\"sip:alice.smith\"",
            "Tel.+15550109999",
            "mobile-+15550109999",
            "phone=>+15550109999",
            "{+15550109999}",
            "\u{2018}+15550109999\u{2019}",
            "\u{300c}+15550109999\u{300d}",
            "(home)+15550109999",
            "(555) 010-9999(home)",
            "Mobile(555) 010-9999",
            "Mobile/555-010-9999",
            "555-010-9999/home",
            // Found by review r85 of the third version.
            "Mobile: 07700 900123",
            "07700 900123 (mobile)",
            "Alice Smith, 07700 900 123",
            "Mobile: \"01632 960123\"",
            "0171 1234567, 0171 1234567",
            "Mobile: 0664 1234567",
            "Mobile: 06-12345678",
            "Mobile: (0171) 1234567",
            "Mobile: 0044 7700 900123",
            "Mobile: +(44) 7700 900123",
            "+ 44 7700 900123 (mobile)",
            "Alice Smith, +(49) 171 1234567",
            "携帯: 090ー1234ー5678",
            "電話 ０９０ー１２３４ー５６７８",
            "03ー1234ー5678 / 03ー1234ー5678",
            "Mobile: 090\u{FF70}1234\u{FF70}5678",
            "\u{201E}555.010.9999\u{201C}",
            "\u{201A}0171/1234567\u{2018}",
            "\u{300E}555.010.9999\u{300F}",
            "\u{3010}555.010.9999\u{3011}",
            "`555.010.9999`",
            "(+44) 20 7946 0958",
            "(+1) 555-010-9999",
            "(+34) 912 345 678",
            "(+63) 917 123 4567",
            "➀➄➄➄ ➀➁➂ ➈➈➈➈",
            "❶❺❺❺ ⓿❶⓿ ❾❾❾❾",
            "+1\u{fe0f}\u{20e3} 5\u{fe0f}\u{20e3}5\u{fe0f}\u{20e3}5\u{fe0f}\u{20e3} 0\u{fe0f}\u{20e3}1\u{fe0f}\u{20e3}0\u{fe0f}\u{20e3} 9\u{fe0f}\u{20e3}9\u{fe0f}\u{20e3}9\u{fe0f}\u{20e3}9\u{fe0f}\u{20e3}",
        ] {
            assert!(crate::SubjectId::new(written).is_err(), "{written}");
            assert!(Name::new(written).is_err(), "{written}");
        }
        // What the new rules must leave alone: a '+' inside a word, a date or a time
        // after a label, random UUIDs with all-digit groups, plain digit runs.
        for fine in [
            "acme+1234567",
            "c++",
            "build 2026-11-30 12:00",
            "12345678-1234-4234-8234-123456789012",
            "account:1234567890",
            "order #12345678",
            "v2.1+build.7",
            // Found by review r75 to be refused by the first version of these rules.
            "C++ 2026-11-30",
            "Notepad++ 2023.11.30",
            "Acme + 2026-11-30",
            "Office + 365 2026-11-30",
            "release 1.2.3+20261130",
            "Acme fax: sales",
            "build 2026-11-30 12:00:00",
            "report 2026/11/30 1200",
            "order 12345678",
            // Found by review r79 to be refused by the second version.
            "Chrome 120.0.6099.109",
            "Edge 120.0.2210.91",
            "Windows 10.0.19045.3693",
            "build 20261130.1",
            "Meeting 11/30/2026 2:00 PM",
            "Backup 30.11.2026 12:00",
            "report 30/11/2026 1200",
            "backup 20261130 1200",
            "event 1764504000.123",
            "GMT +1 2026-11-30 12:00",
            "Campaign 2026-11 / 2026-12",
            "ISBN 978-3-16-148410-0",
            // Found by review r85 to be refused by the third version.
            "Backup 2026\u{2011}11\u{2011}30 12:00",
            "Backup 2026\u{2013}11\u{2013}30 12:00",
            "Meeting 30\u{2010}11\u{2010}2026 14:00",
            "GMT +1 2026\u{2011}11\u{2011}30",
            "30.11.2026 12.00",
            "2026-11-30 12.00.00",
            "2026-11-30 1200",
            "11/30/2026 1200",
            "Order 12345 67890",
            "backup 20261130 1200",
        ] {
            assert!(crate::SubjectId::new(fine).is_ok(), "{fine}");
            // (A recipient name with the non-breaking hyphen U+2011 is refused for not
            // being in NFKC form: it reads as the hyphen U+2010.)
            let name = fine.replace('\u{2011}', "\u{2010}");
            assert!(Name::new(&name).is_ok(), "{name}");
        }
    }

    /// The rules that look inside a value never refuse a random UUID (the form
    /// `SubjectId` recommends), also one with all-digit groups, nor a date and time.
    #[test]
    fn random_uuids_and_timestamps_pass() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for i in 0..50_000u32 {
            // Digits four times as likely as letters, to make all-digit groups common.
            let mut hex: Vec<char> = (0..32)
                .map(|_| {
                    let r = next();
                    if r % 5 == 0 {
                        char::from(b'a' + (r >> 8) as u8 % 6)
                    } else {
                        char::from(b'0' + (r >> 8) as u8 % 10)
                    }
                })
                .collect();
            hex[12] = '4';
            hex[16] = ['8', '9', 'a', 'b'][(next() % 4) as usize];
            let h: String = hex.iter().collect();
            let uuid = format!(
                "{}-{}-{}-{}-{}",
                &h[..8],
                &h[8..12],
                &h[12..16],
                &h[16..20],
                &h[20..]
            );
            assert!(crate::SubjectId::new(&uuid).is_ok(), "{uuid}");
            let r = next();
            let stamp = format!(
                "run {:04}-{:02}-{:02} {:02}:{:02}:{:02} #{i}",
                2000 + r % 100,
                1 + (r >> 8) % 12,
                1 + (r >> 16) % 28,
                (r >> 24) % 24,
                (r >> 32) % 60,
                (r >> 40) % 60
            );
            assert!(Name::new(&stamp).is_ok(), "{stamp}");
        }
    }

    /// Names read back from storage are judged by their shape only: a name that a later,
    /// stricter rule refuses as new input still reads back (the log that holds it opens).
    #[test]
    fn stored_names_are_judged_by_shape_only() {
        let refused_now = "callto:+15550109999";
        assert!(Name::new(refused_now).is_err());
        assert!(Name::stored(refused_now).is_some());
        assert!(crate::SubjectId::stored(refused_now).is_some());
        for bad in ["", " x", "a\nb"] {
            assert!(Name::stored(bad).is_none() && crate::SubjectId::stored(bad).is_none());
        }
        assert!(Name::stored(&"x".repeat(129)).is_none());
    }
}
