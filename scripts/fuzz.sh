#!/usr/bin/env bash
# Fuzzes every parser of untrusted input (native/src/fuzz.rs) for SECONDS each (default
# 3600: the 1 CPU-hour per parser of issue 15), two at a time, keeping
# inputs with a new outcome in tests/fuzz/corpus/. Usage: scripts/fuzz.sh [SECONDS] [SEED]
# A crash prints the seed and saves the input as $TMPDIR/polytask-fuzz-PARSER-crash.
set -euo pipefail
cd "$(dirname "$0")/.."
export POLYTASK_FUZZ_SECS="${1:-3600}" POLYTASK_FUZZ_SAVE=1
[ -n "${2:-}" ] && export POLYTASK_FUZZ_SEED="$2"
lscpu | grep 'Model name' || true
cargo test -p polytask-native --lib fuzz:: -- --test-threads=2 --nocapture
