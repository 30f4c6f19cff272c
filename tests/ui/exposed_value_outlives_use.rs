// The value a Use exposes is borrowed from the Use: the reference cannot be kept past a
// delivery. (`Use::expose` gives it only for a first-party use, whose value is the
// application's own to read.)
use consent_ledger::{Recipient, Security, Use};

fn keep_then_deliver<'a>(allowed: Use<'a, Security>, app_a: &Recipient) -> &'a str {
    let kept: &str = allowed.expose().unwrap_or("");
    let _ = allowed.deliver_to(app_a, |value| value.len());
    kept
}

fn main() {
    let _ = keep_then_deliver;
}
