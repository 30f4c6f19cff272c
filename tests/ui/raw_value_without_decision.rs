// The raw value is private: only a `Use` from `authorize` exposes it.
use consent_ledger::{Identifier, Security};

fn main() {
    let phone = Identifier::<Security>::phone("+15550109999").unwrap();
    let _a = &phone.value;
    let _b = phone.normalized();
    let _c = phone.expose();
}
