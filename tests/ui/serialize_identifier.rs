// Identifiers are not Serialize: they cannot be written out by accident.
use consent_ledger::{Identifier, Security};

fn needs_serialize<T: serde::Serialize>(_: &T) {}

fn main() {
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    needs_serialize(&phone);
}
