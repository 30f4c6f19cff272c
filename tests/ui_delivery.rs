//! Delivery misuse that must not compile (trybuild over tests/ui/delivery_*.rs).
//!
//! Run with `TRYBUILD=overwrite cargo test --test ui_delivery` to refresh the expected
//! `.stderr` files after a compiler upgrade, and review the diff.

#[test]
fn delivery_misuse_does_not_compile() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/delivery_*.rs");
}
