//! Subjects: the people identifiers belong to, named by an opaque application id.

use std::fmt;
use std::sync::Arc;

use crate::error::InputError;
use crate::recipient::check_name;

/// Longest subject id accepted, in bytes.
pub const MAX_SUBJECT_ID_LEN: usize = 128;

/// The application's opaque id for a person, such as an account number or a UUID.
///
/// Subject ids are written to the signed log in clear and stay there for good, also
/// after erasure, so they must not be personal data themselves. Use a random id made
/// for this purpose (a UUIDv4 the application maps to its account), not a device or
/// advertising id, an email address, a phone number or a customer-visible number.
/// [`SubjectId::new`] refuses the obvious mistakes: anything with an '@', an email
/// address spelled out with "at" ("alice at example.com", "alice(at)example.com",
/// "alice(a)example.fi"), a WhatsApp link ("wa.me/447946095800"), a contact
/// URI (`mailto:`, `tel:`, `sms:`, `callto:`, `whatsapp:` and others, also quoted or
/// after a label), and a phone number as people write it (with '+', or with separators
/// such as "0044 20 7946 0958", also Unicode spaces and dashes, with or without an
/// extension, quoted, with a label or a note, or beside another), also typed in
/// full-width or small forms, in dingbat or keycap digits or in the digits of another
/// script, and also taken undecoded from a URL, a form post, a web page or a JSON
/// string (percent-escapes, '+' for a space, HTML character references, `\u`
/// escapes; not quoted-printable). It cannot refuse a plain run of digits, also one starting "00", which may
/// be an account number; inside a longer value it does not find a number in two groups
/// without a trunk prefix ("Mobile: 333 1234567"), one written with dots or with a
/// slash ("Mobil: 0171/1234567"), one after a "00" prefix ("Mobile: 0044 7946095800"),
/// or one glued to a label by a '+' ("id+447946095800", which cannot be told from
/// "acme+1234567"); nor JavaScript `escape()` output ("%u643A…") or a mailing-list
/// archive's "alice () example ! com". It refuses a few ordinary labels that read like contact details: a
/// '+' followed by digits after a space ("build +20261130", read as +20 261130), and
/// "at" before a name in a mail domain ("Engineer at Booking.com", "Acme (AT)
/// acme.at", read as email addresses spelled out; also "at" before a file name whose
/// extension is a mail domain, "Died at build.pl line 12"), an EAN-13 printed in its
/// groups
/// ("4 006381 333931"), and a form post whose only '+' stands before digits right after
/// an escaped mark ("%60prod%60+20261130": `encodeURI` of "`prod`+20261130" is the same)
/// or an abbreviation's dot ("Invoice+No.+12345678", read as "No.+12345678" as
/// "Tel.+15550109999" is).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SubjectId(Arc<str>);

impl SubjectId {
    /// Validates an id: 1 to 128 bytes, no control characters, no surrounding
    /// whitespace, and not an email address or phone number.
    ///
    /// The id is kept exactly as given and compared byte for byte: two spellings that
    /// read alike (a composed "é" and "e" with a combining accent, say) are two
    /// subjects. Ids are meant to be opaque (a random UUID); an application that makes
    /// them from text normalizes it first.
    ///
    /// # Errors
    /// [`InputError`] naming the rule broken; the message does not contain the id.
    pub fn new(id: &str) -> Result<Self, InputError> {
        check_name("subject id", id, MAX_SUBJECT_ID_LEN)?;
        Ok(SubjectId(Arc::from(id)))
    }

    /// An id read back from storage: only the rules of its shape, as for names (see
    /// `Name::stored`): a log holding an id that a later, stricter rule refuses still
    /// opens.
    pub(crate) fn stored(id: &str) -> Option<Self> {
        crate::recipient::check_name_shape("subject id", id, MAX_SUBJECT_ID_LEN).ok()?;
        Some(SubjectId(Arc::from(id)))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SubjectId({:?})", &*self.0)
    }
}

impl fmt::Display for SubjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn opaque_ids_only() {
        assert!(SubjectId::new("user-42").is_ok());
        assert!(SubjectId::new("0f8fad5b-d9cb-469f-a165-70867728950e").is_ok());
        assert!(SubjectId::new("12345678").is_ok());
        assert!(SubjectId::new("acct-555-0109").is_ok());
        assert!(SubjectId::new("v1.2.3").is_ok());
        // Plain digits (zero-padded account numbers too) and dates pass.
        for id in [
            "0000012345",
            "00123456789",
            "00442079460958",
            "2024-01-15",
            "1999.12.31",
            "order-12345x2",
            "+12345",
            "x123",
            "#42",
            "1920x1080",
            "ticket #12345",
        ] {
            assert!(SubjectId::new(id).is_ok(), "{id}");
        }
        for contact in [
            "alice@localhost",
            "tel:+15550109999",
            "MAILTO:a@b.c",
            "(555) 010-9999",
            "555-010-9999",
            "0044 20 7946 0958",
            "+1 555 010 9999",
            "+1\u{a0}555\u{a0}010\u{a0}9999",
            "+44\u{202f}20\u{202f}7946\u{202f}0958",
            "+1 555\u{2011}010\u{2011}9999",
            "555\u{2013}010\u{2013}9999",
            "+1 555 010 9999 ext. 12",
            "+15550109999;ext=1",
            "(555) 010-9999 x12",
            "+4420794609",
            "+1 555 010 9999, ext. 12",
            "(555) 010-9999, x12",
            "+1 555 010 9999 #12",
            "+1 555 010 9999 ext: 12",
            "+1 555 010 9999 Extension 12",
        ] {
            let e = SubjectId::new(contact).unwrap_err().to_string();
            assert!(!e.contains(contact), "{e}");
            // Recipient and operator names follow the same rule.
            assert!(crate::recipient::Name::new(contact).is_err());
        }
        assert!(SubjectId::new("").is_err());
        assert!(SubjectId::new("alice@example.com").is_err());
        assert!(SubjectId::new("+15550109999").is_err());
        assert!(SubjectId::new("a\u{0}b").is_err());
        assert!(SubjectId::new(&"x".repeat(MAX_SUBJECT_ID_LEN + 1)).is_err());
        let e = SubjectId::new("alice@example.com").unwrap_err().to_string();
        assert!(!e.contains("alice"), "{e}");
    }
}
