// A parcel cannot leave its channel's scope to be delivered later, elsewhere.
use consent_ledger::{Identifier, Ledger, Recipient, Security};

fn keep(ledger: &Ledger, phone: &Identifier<Security>, app_a: &Recipient) {
    let parcel = ledger.channel(app_a, |to_a| to_a.authorize(phone).ok());
    drop(parcel);
}

fn main() {
    let _ = keep;
}
