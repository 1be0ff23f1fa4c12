#!/usr/bin/env bash
# kill -9 of a short training run at KILLS random moments (default 200; CI runs 20), each
# followed by a resume: every run must log the reference losses and every checkpoint must
# load. Usage: scripts/kill-test.sh [KILLS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
export POLYTASK_KILLS="${1:-200}" POLYTASK_KILL_SEED="${2:-$RANDOM}"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"
cargo test -p polytask-native --test train kill_9 -- --nocapture
