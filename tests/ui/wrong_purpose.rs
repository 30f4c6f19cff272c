// An identifier collected for security cannot be handed to advertising code.
use consent_ledger::{Advertising, Identifier, Security};

fn match_audience(_phone: &Identifier<Advertising>) {}

fn main() {
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    match_audience(&phone);
}
