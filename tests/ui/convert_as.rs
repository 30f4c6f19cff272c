// Casting between purposes with `as` is not possible either.
use consent_ledger::{Advertising, Identifier, Security};

fn main() {
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    let _ads = phone as Identifier<Advertising>;
}
