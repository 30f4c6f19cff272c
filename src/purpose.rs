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
/// takes effect. The built-in purposes' ids are reserved for their own bases, so this
/// never happens to them: see [`reserved_basis`].)
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
///
/// A built-in purpose's id is that purpose's alone ([`reserved_basis`]). A hand-written
/// implementation that reuses one does not build once it is used with the ledger:
///
/// ```compile_fail,E0080
/// use consent_ledger::{Ledger, LegalBasis, Purpose, RecipientScope, SubjectId};
///
/// enum SecurityByConsent {}
/// impl Purpose for SecurityByConsent {
///     const ID: &'static str = "security";
///     const DESCRIPTION: &'static str = "2FA numbers, widened to partners by a grant";
///     const LEGAL_BASIS: LegalBasis = LegalBasis::Consent;
/// }
///
/// fn widen(ledger: &Ledger, alice: &SubjectId) {
///     let _ = ledger.grant::<SecurityByConsent>(alice, RecipientScope::all_partners(), None);
/// }
/// let _compiled: fn(&Ledger, &SubjectId) = widen;
/// ```
///
/// nor one on the built-in's own basis (copied from a template: it would read two-factor
/// numbers for another purpose, recorded as `"security"`):
///
/// ```compile_fail,E0080
/// use consent_ledger::{Identifier, Ledger, LegalBasis, Purpose, Recipient};
///
/// enum AdAudience {}
/// impl Purpose for AdAudience {
///     const ID: &'static str = "security";
///     const DESCRIPTION: &'static str = "matching advertisers' lists";
///     const LEGAL_BASIS: LegalBasis = LegalBasis::LegitimateInterest;
/// }
///
/// fn matched(ledger: &Ledger, id: &Identifier<AdAudience>) -> bool {
///     ledger.authorize(id, &Recipient::FirstParty).is_ok()
/// }
/// let _compiled: fn(&Ledger, &Identifier<AdAudience>) -> bool = matched;
/// ```
pub trait Purpose: 'static {
    /// The stable id written to the ledger, such as `"advertising"`.
    const ID: &'static str;
    /// A sentence a person can read (for the application's own notices and forms: the
    /// ledger records only the id).
    const DESCRIPTION: &'static str;
    /// The legal basis uses for this purpose rely on.
    const LEGAL_BASIS: LegalBasis;
    /// Set only by this crate's own purposes ([`Security`], [`Advertising`], …), whose
    /// ids are theirs alone (see [`reserved_basis`]). Not for implementations outside
    /// the crate.
    #[doc(hidden)]
    const BUILT_IN: bool = false;
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

/// The built-in purposes, in one place: their ids are reserved for their legal bases
/// (see [`reserved_basis`]).
const BUILT_IN: [PurposeInfo; 5] = [
    PurposeInfo::of::<Security>(),
    PurposeInfo::of::<Advertising>(),
    PurposeInfo::of::<PartnerSharing>(),
    PurposeInfo::of::<Analytics>(),
    PurposeInfo::of::<Personalization>(),
];

/// `a == b`, usable in constant expressions.
const fn same_str(a: &str, b: &str) -> bool {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a, b) {
            ([], []) => return true,
            ([x, a_rest @ ..], [y, b_rest @ ..]) if *x == *y => {
                a = a_rest;
                b = b_rest;
            }
            _ => return false,
        }
    }
}

/// The legal basis a built-in purpose's id is reserved for, or `None` for an id that
/// no built-in purpose uses. Usable in constant expressions.
///
/// Decisions about an identifier follow its collection and the subject's consent
/// records for the *id*, whichever type wrote them. A type reusing a built-in id on
/// another basis would therefore change what the built-in type allows: a consent-based
/// `"security"` type could widen two-factor numbers to partners through a grant, and a
/// legitimate-interest `"advertising"` type would label uses without consent as
/// advertising; and a type on the same basis (a copy of the built-in declaration, its
/// name changed but not its id) would read the built-in's identifiers for another
/// purpose, recorded as the built-in's. So a built-in id is the built-in type's alone:
/// [`declare_purpose!`](crate::declare_purpose) refuses it when the program is
/// compiled, and so does a build that uses a hand-written [`Purpose`] implementation
/// with the ledger. A log written before this reservation may hold
/// consent records for `"security"` or collections for it on another basis: decisions
/// for `"security"` ignore both (the collection on another basis is not one for the
/// purpose), and a grant or withdrawal for it is refused.
///
/// ```
/// use consent_ledger::{reserved_basis, LegalBasis};
///
/// assert_eq!(reserved_basis("security"), Some(LegalBasis::LegitimateInterest));
/// assert_eq!(reserved_basis("advertising"), Some(LegalBasis::Consent));
/// assert_eq!(reserved_basis("newsletter"), None);
/// ```
pub const fn reserved_basis(id: &str) -> Option<LegalBasis> {
    let mut rest: &[PurposeInfo] = &BUILT_IN;
    while let [info, tail @ ..] = rest {
        if same_str(info.id, id) {
            return Some(info.legal_basis);
        }
        rest = tail;
    }
    None
}

/// Whether a purpose type may declare `id` with `basis`: false only for a built-in
/// purpose's id on another legal basis (see [`reserved_basis`]). Usable in constant
/// expressions.
pub const fn id_allows_basis(id: &str, basis: LegalBasis) -> bool {
    match reserved_basis(id) {
        Some(reserved) => reserved as u8 == basis as u8,
        None => true,
    }
}

/// For a built-in id reserved for a basis that is not consent (`security`), that basis:
/// decisions for it rest on a collection on that basis alone, never on consent records
/// or on a collection on another basis. The current code writes neither (the id is
/// reserved, and a grant or withdrawal for it is refused), but a log written before the
/// reservation may hold them: a consent record given through a consent-based type with
/// the id would otherwise widen a two-factor number to the partners it names.
pub(crate) const fn lone_basis(id: &str) -> Option<LegalBasis> {
    match reserved_basis(id) {
        Some(b) if !b.requires_consent() => Some(b),
        _ => None,
    }
}

/// Stops the build of any use of the ledger with `P` when `P` reuses a built-in id and
/// is not that built-in purpose (a hand-written implementation: `declare_purpose!`
/// already refuses it). Evaluated once per purpose type, when the code using it is
/// compiled.
pub(crate) const fn keeps_reserved_ids<P: Purpose>() {
    const {
        assert!(
            reserved_basis(P::ID).is_none() || (P::BUILT_IN && id_allows_basis(P::ID, P::LEGAL_BASIS)),
            "this purpose id is a built-in purpose's: use that type, or an id of your own"
        );
    }
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
///
/// So is a built-in purpose's id (see [`reserved_basis`]), on another legal basis:
///
/// ```compile_fail,E0080
/// use consent_ledger::{declare_purpose, LegalBasis};
/// declare_purpose!(pub SecurityByConsent, "security", "2FA numbers, widened by a grant", LegalBasis::Consent);
/// ```
///
/// or on its own (a declaration copied from the built-in one, its name changed but not
/// its id, would read two-factor numbers for another purpose and be recorded as
/// `"security"`):
///
/// ```compile_fail,E0080
/// use consent_ledger::{declare_purpose, LegalBasis};
/// declare_purpose!(pub FraudChecks, "security", "fraud checks", LegalBasis::LegitimateInterest);
/// ```
///
/// while an id of the application's own may be declared by several types, on
/// different bases (say, a purpose that moved from legitimate interest to consent;
/// its subjects' consent records then decide for both types, so that a withdrawal
/// always takes effect):
///
/// ```
/// use consent_ledger::{declare_purpose, LegalBasis};
/// declare_purpose!(pub FraudChecks, "fraud", "fraud checks", LegalBasis::LegitimateInterest);
/// declare_purpose!(pub FraudChecksByConsent, "fraud", "fraud checks, now on consent", LegalBasis::Consent);
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
        const _: () = assert!(
            $crate::reserved_basis($id).is_none(),
            "this purpose id is a built-in purpose's: use that type, or an id of your own"
        );

        impl $crate::Purpose for $name {
            const ID: &'static str = $id;
            const DESCRIPTION: &'static str = $description;
            const LEGAL_BASIS: $crate::LegalBasis = $basis;
        }
    };
}

/// The crate's own purposes: [`declare_purpose!`] without the refusal of built-in ids,
/// marked as built in.
macro_rules! declare_built_in_purpose {
    ($(#[$meta:meta])* $vis:vis $name:ident, $id:expr, $description:expr, $basis:expr $(,)?) => {
        #[doc = concat!("Purpose `", $id, "`: ", $description, ".")]
        $(#[$meta])*
        #[derive(Debug)]
        $vis enum $name {}

        const _: () = assert!($crate::is_valid_purpose_id($id) && $crate::id_allows_basis($id, $basis));

        impl $crate::Purpose for $name {
            const ID: &'static str = $id;
            const DESCRIPTION: &'static str = $description;
            const LEGAL_BASIS: $crate::LegalBasis = $basis;
            const BUILT_IN: bool = true;
        }
    };
}

declare_built_in_purpose!(
    /// Not consent-based: collecting an identifier for security is what allows it, and
    /// only for the recipients named at collection (usually the application itself,
    /// [`RecipientScope::first_party`](crate::RecipientScope::first_party)).
    pub Security,
    "security",
    "two-factor authentication, login alerts and account recovery",
    LegalBasis::LegitimateInterest
);

declare_built_in_purpose!(
    /// Consent-based: tailored audiences and matching of advertisers' customer lists.
    pub Advertising,
    "advertising",
    "matching against advertisers' customer lists and tailored advertising",
    LegalBasis::Consent
);

declare_built_in_purpose!(
    /// Consent-based: the "share your data with business partners" setting.
    pub PartnerSharing,
    "partner-sharing",
    "sharing data with business partners",
    LegalBasis::Consent
);

declare_built_in_purpose!(
    /// Consent-based: measuring how the service is used.
    pub Analytics,
    "analytics",
    "measuring how the service is used",
    LegalBasis::Consent
);

declare_built_in_purpose!(
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
    fn built_in_ids_are_reserved_for_their_bases() {
        const BASES: [LegalBasis; 4] = [
            LegalBasis::Consent,
            LegalBasis::Contract,
            LegalBasis::LegitimateInterest,
            LegalBasis::LegalObligation,
        ];
        for info in BUILT_IN {
            assert_eq!(reserved_basis(info.id), Some(info.legal_basis), "{}", info.id);
            for basis in BASES {
                assert_eq!(
                    id_allows_basis(info.id, basis),
                    basis == info.legal_basis,
                    "{} {basis}",
                    info.id
                );
            }
        }
        assert_eq!(reserved_basis("security"), Some(LegalBasis::LegitimateInterest));
        assert_eq!(reserved_basis("partner-sharing"), Some(LegalBasis::Consent));
        // Only the exact id is reserved: not a prefix, an extension or a look-alike.
        for id in [
            "securit",
            "security2",
            "security.v2",
            "advertisin",
            "sharing",
            "",
            "fraud",
        ] {
            assert_eq!(reserved_basis(id), None, "{id}");
            for basis in BASES {
                assert!(id_allows_basis(id, basis), "{id} {basis}");
            }
        }
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
