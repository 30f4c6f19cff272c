// Identifiers are not Clone: copies are exfiltration paths.
use consent_ledger::{Identifier, Security};

fn main() {
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    let _copy = phone.clone();
}
