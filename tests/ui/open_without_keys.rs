// Opening needs both keys: forgetting the signing key is a compile error.
use consent_ledger::{Ledger, PseudonymKey};

fn main() {
    let _ledger = Ledger::builder("/tmp/never").pseudonym_key(PseudonymKey::generate()).open();
}
