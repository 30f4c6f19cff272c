//! A built-in purpose's id on another legal basis would change what the built-in type
//! allows: a consent-based "security" type could widen two-factor numbers to partners
//! through a grant, and a legitimate-interest "advertising" type would label uses
//! without consent as advertising. On the same basis, a copy of the built-in
//! declaration would read its identifiers for another purpose (review h34). All are
//! refused.
use consent_ledger::{declare_purpose, LegalBasis};

declare_purpose!(pub SecurityByConsent, "security", "2FA numbers, widened by a grant", LegalBasis::Consent);

declare_purpose!(pub AdsWithoutConsent, "advertising", "ads on legitimate interest", LegalBasis::LegitimateInterest);

declare_purpose!(pub FraudChecks, "security", "fraud checks", LegalBasis::LegitimateInterest);

// An id of the application's own is accepted.
declare_purpose!(pub Newsletter, "newsletter", "the newsletter", LegalBasis::Consent);

fn main() {}
