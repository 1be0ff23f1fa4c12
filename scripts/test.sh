#!/usr/bin/env bash
# The whole test suite: formatting and lints, Rust unit and integration tests (CPU and
# wgpu backends, the real all-MiniLM-L6-v2 against a numpy reference), the web app built
# for wasm, and browser end-to-end tests in headless Chromium (WebGPU and CPU).
# Needs what scripts/setup.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
export POLYTASK_CACHE="${POLYTASK_CACHE:-$HOME/.cache/polytask}"
TOOLS="${POLYTASK_TOOLS:-$POLYTASK_CACHE/tools}"
export PATH="$TOOLS/bin:$PATH"
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp/xdg-$(id -u)}"
mkdir -p -m 700 "$XDG_RUNTIME_DIR"

step() { printf '\n=== %s\n' "$*"; }

step "format"
cargo fmt --all --check
if [ -n "${CI:-}" ]; then
  # A cold clippy pass re-checks every dependency (~10 min on 2 cores): developers run it
  # before each commit (`cargo clippy --all-targets -- -D warnings`), CI saves the time.
  step "clippy: skipped in CI"
else
  step "clippy"
  cargo clippy --all-targets -- -D warnings
fi
step "fetch the pretrained model (idempotent)"
cargo run --quiet --bin core-train -- fetch-model
step "rust tests"
cargo test
step "web app for wasm"
bash scripts/build-web.sh
step "browser tests"
POLYTASK_MODEL_DIR="${POLYTASK_MODEL_DIR:-$POLYTASK_CACHE/models/sentence-transformers__all-MiniLM-L6-v2}" \
  NODE_PATH="$TOOLS/node_modules" node --test --test-concurrency=1 tests/browser/
