// A `Use` cannot be built outside the crate: holding one means the ledger said yes.
use consent_ledger::{Evidence, Identifier, Recipient, Security, Use};

fn forge<'a>(id: &'a Identifier<Security>, r: &'a Recipient, evidence: Evidence) -> Use<'a, Security> {
    Use { identifier: id, recipient: r, evidence }
}

fn main() {}
