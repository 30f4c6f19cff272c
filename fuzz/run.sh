#!/usr/bin/env bash
# Runs the cargo-fuzz targets one after another, each for a bounded time.
#
#   fuzz/run.sh                 # every target, 60 s each
#   fuzz/run.sh 300 entry log   # these targets, 300 s each
#
# Seeds the corpora from consent_ledger::fuzzing::seeds() first. Crashes land in
# fuzz/artifacts/<target>/; logs in fuzz/logs/<target>.log. Needs cargo-fuzz
# (`cargo install cargo-fuzz`) and a C++ compiler; on a stable toolchain the -Z flags
# cargo-fuzz passes are allowed through RUSTC_BOOTSTRAP=1.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
shift || true
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

cargo test --quiet --features fuzzing --test fuzz_smoke -- --ignored write_seed_corpus
cargo fuzz build
if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

mkdir -p fuzz/logs
status=0
for target in "${targets[@]}"; do
  printf '\n==> %s (%s s)\n' "$target" "$seconds"
  if cargo fuzz run "$target" -- -max_total_time="$seconds" -print_final_stats=1 \
    >"fuzz/logs/$target.log" 2>&1; then
    grep -E '^(#[0-9]+.*DONE|Done|stat::number_of_executed_units|stat::peak_rss_mb)' "fuzz/logs/$target.log" || true
  else
    status=1
    echo "$target: CRASH, see fuzz/logs/$target.log and fuzz/artifacts/$target/"
  fi
done
exit "$status"
