// The value a Use exposes is borrowed from the Use: it cannot be kept past a delivery
// and handed to another recipient.
use consent_ledger::{Recipient, Security, Use};

fn keep_then_deliver<'a>(allowed: Use<'a, Security>, app_a: &Recipient) -> &'a str {
    let kept: &str = allowed.expose();
    let _ = allowed.deliver_to(app_a, |value| value.len());
    kept
}

fn main() {
    let _ = keep_then_deliver;
}
