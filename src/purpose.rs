//! Purposes: why personal data is used, and on what legal basis.
//!
//! A purpose is a zero-sized marker type implementing [`Purpose`]. The marker is a
//! type parameter of [`Identifier`](crate::Identifier), so the compiler keeps an
//! identifier collected for one purpose out of code written for another.
//!
//! Applications declare their own purposes with [`declare_purpose!`](crate::declare_purpose):
//!
//! ```
//! use consent_ledger::{declare_purpose, LegalBasis, Purpose};
//!
//! declare_purpose!(pub Newsletter, "newsletter", "sending the monthly newsletter", LegalBasis::Consent);
//!
//! assert_eq!(Newsletter::ID, "newsletter");
//! ```
//!
//! A ledger holds at most [`MAX_PURPOSE_IDS`] distinct purpose ids over its life: a
//! collection, grant or withdrawal for a new id beyond that is refused
//! ([`WriteError::Input`](crate::WriteError::Input), field `purpose`). (Code before
//! this check stored such changes and left them out of its decisions; a log holding
//! collections for more ids still replays that way, and `erase` does not find those
//! identifiers. No release of the crate wrote such a log.)

use std::fmt;

/// The most distinct purpose ids one ledger holds over its life (the decision state
/// keeps a 12-bit index per identifier record).
pub const MAX_PURPOSE_IDS: usize = 4096;

/// The legal basis a purpose relies on (GDPR Art. 6(1)).
///
/// Only [`LegalBasis::Consent`] purposes need a grant in the ledger before a use is
/// allowed; for the others, collecting the identifier for the purpose is what allows
/// its use, and only by the recipients named when it was collected. (Unless the subject
/// has a consent record for the same purpose id, given through a consent-based type
/// with that id: then that consent, and its scope, decide, so that a withdrawal always
/// takes effect.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive] // the law may grow; match with a wildcard arm
pub enum LegalBasis {
    /// The person agreed (Art. 6(1)(a)); a grant must be recorded and may be withdrawn.
    Consent,
    /// Needed to perform a contract with the person (Art. 6(1)(b)).
    Contract,
    /// A legitimate interest of the controller (Art. 6(1)(f)), such as account security.
    LegitimateInterest,
    /// Required by law (Art. 6(1)(c)).
    LegalObligation,
}

impl LegalBasis {
    /// Whether uses for a purpose with this basis need a recorded, unwithdrawn grant.
    pub const fn requires_consent(self) -> bool {
        matches!(self, LegalBasis::Consent)
    }

    /// A stable lower-case name, used in exports.
    pub const fn as_str(self) -> &'static str {
        match self {
            LegalBasis::Consent => "consent",
            LegalBasis::Contract => "contract",
            LegalBasis::LegitimateInterest => "legitimate-interest",
            LegalBasis::LegalObligation => "legal-obligation",
        }
    }
}

impl fmt::Display for LegalBasis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why personal data is used.
///
/// Implementations are zero-sized marker types; the ledger records [`Purpose::ID`],
/// so an id must never change once data was collected under it. An id is 1 to 64
/// bytes of lower-case ASCII letters, digits, `-`, `_` and `.`; the ledger refuses
/// to record anything under an invalid id. Prefer [`declare_purpose!`](crate::declare_purpose),
/// which checks the id when the program is compiled.
pub trait Purpose: 'static {
    /// The stable id written to the ledger, such as `"advertising"`.
    const ID: &'static str;
    /// A sentence a person can read, shown in histories and receipts.
    const DESCRIPTION: &'static str;
    /// The legal basis uses for this purpose rely on.
    const LEGAL_BASIS: LegalBasis;
}

/// Longest purpose id accepted, in bytes.
pub const MAX_PURPOSE_ID_LEN: usize = 64;

/// Whether `id` is a valid purpose id (see [`Purpose`]). Usable in constant expressions.
pub const fn is_valid_purpose_id(id: &str) -> bool {
    let bytes = id.as_bytes();
    if bytes.is_empty() || bytes.len() > MAX_PURPOSE_ID_LEN {
        return false;
    }
    let mut rest = bytes;
    while let [b, tail @ ..] = rest {
        let b = *b;
        if !(b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.') {
            return false;
        }
        rest = tail;
    }
    true
}

/// Declares a purpose marker type in one line.
///
/// `declare_purpose!(pub Name, "id", "description", LegalBasis::Consent);` expands to an
/// uninhabited `enum Name {}` implementing [`Purpose`]. An invalid id is a compile error:
///
/// ```compile_fail,E0080
/// use consent_ledger::{declare_purpose, LegalBasis};
/// declare_purpose!(pub Bad, "Not Valid!", "an id with spaces and capitals", LegalBasis::Consent);
/// ```
#[macro_export]
macro_rules! declare_purpose {
    ($(#[$meta:meta])* $vis:vis $name:ident, $id:expr, $description:expr, $basis:expr $(,)?) => {
        #[doc = concat!("Purpose `", $id, "`: ", $description, ".")]
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {}

        // Evaluated at compile time for every declaration, used or not.
        const _: () = assert!($crate::is_valid_purpose_id($id), "invalid purpose id");

        impl $crate::Purpose for $name {
            const ID: &'static str = $id;
            const DESCRIPTION: &'static str = $description;
            const LEGAL_BASIS: $crate::LegalBasis = $basis;
        }
    };
}

declare_purpose!(
    /// Not consent-based: collecting an identifier for security is what allows it, and
    /// only for the recipients named at collection (by default, the application itself).
    pub Security,
    "security",
    "two-factor authentication, login alerts and account recovery",
    LegalBasis::LegitimateInterest
);

declare_purpose!(
    /// Consent-based: tailored audiences and matching of advertisers' customer lists.
    pub Advertising,
    "advertising",
    "matching against advertisers' customer lists and tailored advertising",
    LegalBasis::Consent
);

declare_purpose!(
    /// Consent-based: the "share your data with business partners" setting.
    pub PartnerSharing,
    "partner-sharing",
    "sharing data with business partners",
    LegalBasis::Consent
);

declare_purpose!(
    /// Consent-based: measuring how the service is used.
    pub Analytics,
    "analytics",
    "measuring how the service is used",
    LegalBasis::Consent
);

declare_purpose!(
    /// Consent-based: tailoring content to the person.
    pub Personalization,
    "personalization",
    "tailoring content and recommendations to the person",
    LegalBasis::Consent
);

/// A purpose known only at run time: its id, description and legal basis.
///
/// Built from a [`Purpose`] type with [`PurposeInfo::of`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PurposeInfo {
    /// The stable id.
    pub id: &'static str,
    /// A sentence a person can read.
    pub description: &'static str,
    /// The legal basis.
    pub legal_basis: LegalBasis,
}

impl PurposeInfo {
    /// The run-time description of purpose `P`.
    pub const fn of<P: Purpose>() -> Self {
        PurposeInfo {
            id: P::ID,
            description: P::DESCRIPTION,
            legal_basis: P::LEGAL_BASIS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_purposes_have_valid_ids_and_bases() {
        for info in [
            PurposeInfo::of::<Security>(),
            PurposeInfo::of::<Advertising>(),
            PurposeInfo::of::<PartnerSharing>(),
            PurposeInfo::of::<Analytics>(),
            PurposeInfo::of::<Personalization>(),
        ] {
            assert!(is_valid_purpose_id(info.id), "{}", info.id);
            assert!(!info.description.is_empty());
        }
        assert!(!Security::LEGAL_BASIS.requires_consent());
        assert!(Advertising::LEGAL_BASIS.requires_consent());
        assert!(PartnerSharing::LEGAL_BASIS.requires_consent());
    }

    #[test]
    fn purpose_id_rules() {
        assert!(is_valid_purpose_id("a"));
        assert!(is_valid_purpose_id("fraud-prevention.v2_eu"));
        assert!(!is_valid_purpose_id(""));
        assert!(!is_valid_purpose_id("Ads"));
        assert!(!is_valid_purpose_id("ads now"));
        assert!(!is_valid_purpose_id("é"));
        assert!(is_valid_purpose_id(&"a".repeat(64)));
        assert!(!is_valid_purpose_id(&"a".repeat(65)));
    }

    declare_purpose!(
        Newsletter,
        "newsletter",
        "the monthly newsletter",
        LegalBasis::Consent
    );

    #[test]
    fn declared_purpose() {
        assert_eq!(Newsletter::ID, "newsletter");
        assert_eq!(Newsletter::LEGAL_BASIS, LegalBasis::Consent);
        assert_eq!(LegalBasis::LegitimateInterest.to_string(), "legitimate-interest");
    }
}
