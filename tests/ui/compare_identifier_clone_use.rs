// An Identifier cannot be compared, ordered or hashed (each would let code test a value
// it may not read against one it may), and neither a Use nor a Parcel can be cloned
// (one decision, one delivery).
use consent_ledger::{Identifier, Parcel, Security, Use};

fn compare(a: &Identifier<Security>, b: &Identifier<Security>) -> bool {
    a == b
}

fn order(a: &Identifier<Security>, b: &Identifier<Security>) -> bool {
    a < b
}

fn hash(a: &Identifier<Security>) -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(a)
}

fn copy_use<'a>(u: &Use<'a, Security>) -> Use<'a, Security> {
    <Use<'a, Security> as Clone>::clone(u)
}

fn copy_parcel<'a, 'c>(p: &Parcel<'a, 'c, Security>) -> Parcel<'a, 'c, Security> {
    <Parcel<'a, 'c, Security> as Clone>::clone(p)
}

fn main() {
    let _ = (compare, order, hash, copy_use, copy_parcel);
}
