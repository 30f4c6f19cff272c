// An identifier (or a Use) for one purpose must not become one for another through
// subtyping: two instances of one user-declared generic marker, over a higher-ranked
// and a 'static fn pointer type, are subtypes of each other, so a type covariant in its
// purpose would convert silently (no From, no `as`). Identifier<P> is invariant in P.
#![allow(coherence_leak_check)]
use consent_ledger::{Identifier, LegalBasis, Purpose, Use};

pub struct Tagged<T>(T);
impl Purpose for Tagged<for<'x> fn(&'x ())> {
    const ID: &'static str = "security";
    const DESCRIPTION: &'static str = "two-factor authentication";
    const LEGAL_BASIS: LegalBasis = LegalBasis::LegitimateInterest;
}
impl Purpose for Tagged<fn(&'static ())> {
    const ID: &'static str = "advertising";
    const DESCRIPTION: &'static str = "tailored advertising";
    const LEGAL_BASIS: LegalBasis = LegalBasis::Consent;
}
type TwoFactor = Tagged<for<'x> fn(&'x ())>;
type Ads = Tagged<fn(&'static ())>;

fn match_audience(_phone: &Identifier<Ads>) {}
fn ad_code(_allowed: Use<'_, Ads>) {}

fn main() {
    let phone = Identifier::<TwoFactor>::phone("+15550109999").unwrap();
    match_audience(&phone); // must be E0308, as for Identifier<Security>
    let _ = |allowed: Use<'_, TwoFactor>| ad_code(allowed); // a 2FA decision as an ads one
}
