// There is no conversion between purposes: not From, not Into.
use consent_ledger::{Advertising, Identifier, Security};

fn main() {
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    let _ads: Identifier<Advertising> = Identifier::from(phone);
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    let _ads: Identifier<Advertising> = phone.into();
}
