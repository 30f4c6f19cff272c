#!/usr/bin/env bash
# Alternating A/B rounds of the append bench between builds of two (or more) commits,
# as BENCHMARKS.md's "N alternating rounds against the code of ..." rows were measured.
#
#   benches/ab.sh ROUNDS SIZES COMMIT...     e.g. benches/ab.sh 7 10000 b2cd5b7 HEAD
#
# Builds `cargo bench --bench append` of each commit in a worktree under target/ab, each
# in a target directory of its own (target/ab/target-<commit>; each bench binary is
# copied out as target/ab/append-<commit>), then runs the binaries in turn, ROUNDS times,
# printing each one's "alternating" line (its medians against the baselines measured in
# the same run). On a shared machine, compare the rounds' medians, not single figures.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="$1"; sizes="$2"; shift 2
root="$(pwd)"
mkdir -p target/ab
bins=()
for commit in "$@"; do
  rev="$(git rev-parse --short "$commit")"
  wt="target/ab/wt-$rev"
  [ -d "$wt" ] || git worktree add --detach "$wt" "$rev" >/dev/null
  # One target directory per commit: cargo's unit hashes do not depend on the
  # package's path, so with one shared directory the second commit's build was found
  # fresh (its dep-info names the first worktree's files) and both binaries were the
  # first commit's (found at stop 23).
  built="$(cd "$wt" && CARGO_TARGET_DIR="$root/target/ab/target-$rev" cargo bench --bench append --no-run \
    --message-format=json 2>/dev/null | grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)"
  cp "$built" "target/ab/append-$rev"
  bins+=("$rev=$root/target/ab/append-$rev")
done
for _ in $(seq "$rounds"); do
  for entry in "${bins[@]}"; do
    printf '%s ' "${entry%%=*}"
    BENCH_SIZES="$sizes" "${entry#*=}" --bench nomatch 2>&1 | grep -E "alternating" | sed 's/.*medians)://'
  done
done
