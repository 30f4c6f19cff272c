// The value a Use exposes is borrowed from the Use: the reference cannot be kept past a
// delivery. (A copy of it can: `Use::expose`'s docs say to send to other recipients
// through `deliver_to` or a `Channel`.)
use consent_ledger::{Recipient, Security, Use};

fn keep_then_deliver<'a>(allowed: Use<'a, Security>, app_a: &Recipient) -> &'a str {
    let kept: &str = allowed.expose();
    let _ = allowed.deliver_to(app_a, |value| value.len());
    kept
}

fn main() {
    let _ = keep_then_deliver;
}
