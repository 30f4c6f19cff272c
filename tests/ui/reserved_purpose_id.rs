//! A built-in purpose's id on another legal basis would change what the built-in type
//! allows: a consent-based "security" type could widen two-factor numbers to partners
//! through a grant, and a legitimate-interest "advertising" type would label uses
//! without consent as advertising. Both declarations are refused.
use consent_ledger::{declare_purpose, LegalBasis};

declare_purpose!(pub SecurityByConsent, "security", "2FA numbers, widened by a grant", LegalBasis::Consent);

declare_purpose!(pub AdsWithoutConsent, "advertising", "ads on legitimate interest", LegalBasis::LegitimateInterest);

// The same id on the built-in's own basis is an alias, and is accepted.
declare_purpose!(pub Ads, "advertising", "ads", LegalBasis::Consent);

fn main() {}
