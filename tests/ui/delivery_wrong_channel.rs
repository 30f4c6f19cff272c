// A parcel authorized for one recipient's channel cannot be sent through another's.
use consent_ledger::{Identifier, Ledger, Recipient, Security};

fn route(ledger: &Ledger, phone: &Identifier<Security>, app_a: &Recipient, app_b: &Recipient) {
    ledger.channel(app_a, |to_a| {
        ledger.channel(app_b, |to_b| {
            if let Ok(parcel) = to_a.authorize(phone) {
                to_b.send(parcel, |value| value.len());
            }
        })
    });
}

fn main() {
    let _ = route;
}
