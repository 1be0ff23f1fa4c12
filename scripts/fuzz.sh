#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (native/src/fuzz.rs) for SECONDS of CPU time each
# (default 3600: the 1 CPU-hour per parser of issue 15), two at a time, keeping
# inputs with a new outcome in tests/fuzz/corpus/. The budget is CPU time, so the run may
# share the machine (`nice -n 19 scripts/fuzz.sh`) or be paused (kill -STOP / -CONT).
# Usage: scripts/fuzz.sh [SECONDS] [SEED] [PARSER...]   (e.g. scripts/fuzz.sh 3600 '' conll sst2)
# A crash prints the seed and saves the input as $TMPDIR/polytask-fuzz-PARSER-crash.
set -euo pipefail
cd "$(dirname "$0")/.."
export POLYTASK_FUZZ_SECS="${1:-3600}" POLYTASK_FUZZ_SAVE=1
[ -n "${2:-}" ] && export POLYTASK_FUZZ_SEED="$2"
shift $(( $# < 2 ? $# : 2 ))
lscpu | grep 'Model name' || true
filters=()
for p in "$@"; do filters+=("fuzz::$p"); done
[ ${#filters[@]} -gt 0 ] || filters=(fuzz::)
cargo test -p polytask-native --lib -- "${filters[@]}" --test-threads=2 --nocapture
