// One decision, one delivery: a Use cannot be delivered to a second recipient.
use consent_ledger::{Recipient, Security, Use};

fn fan_out(allowed: Use<'_, Security>, app_a: &Recipient, app_b: &Recipient) {
    let _ = allowed.deliver_to(app_a, |value| value.len());
    let _ = allowed.deliver_to(app_b, |value| value.len());
}

fn main() {
    let _ = fan_out;
}
