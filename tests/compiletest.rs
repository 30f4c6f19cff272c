//! Misuse that must not compile: each case in tests/ui has its expected compiler output.
//! Regenerate with `TRYBUILD=overwrite cargo test --test compiletest` and review the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
