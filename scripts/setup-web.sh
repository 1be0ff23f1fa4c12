#!/usr/bin/env bash
# Installs the web tool chain where the project finds it ($POLYTASK_TOOLS, default
# ~/.cache/polytask/tools): the wasm target; a nightly toolchain with rust-src (the
# threaded flavour rebuilds std with atomics; $POLYTASK_NIGHTLY, default `nightly`: one
# already installed is kept as it is); wasm-bindgen-cli at the lockfile's version,
# wasm-opt from npm binaryen@132, and playwright-core for the browser tests
# (scripts/build-web.sh builds the site with them). Idempotent: what is there already is
# kept.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${POLYTASK_TOOLS:-${POLYTASK_CACHE:-$HOME/.cache/polytask}/tools}"
mkdir -p "$TOOLS/bin"
rustup target add wasm32-unknown-unknown >/dev/null
NIGHTLY="${POLYTASK_NIGHTLY:-nightly}"
if [ "${POLYTASK_WEB_THREADS:-1}" != 0 ]; then
  if ! rustup run "$NIGHTLY" rustc --version >/dev/null 2>&1; then
    rustup toolchain install "$NIGHTLY" --profile minimal --component rust-src
  fi
  rustup component add rust-src --toolchain "$NIGHTLY" >/dev/null
fi
WB_VERSION=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print}' Cargo.lock)
if ! "$TOOLS/bin/wasm-bindgen" --version 2>/dev/null | grep -q "$WB_VERSION"; then
  # Not --locked: one of its locked dependencies was yanked.
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --root "$TOOLS"
fi
if [ ! -x "$TOOLS/node_modules/.bin/wasm-opt" ] || [ ! -d "$TOOLS/node_modules/playwright-core" ]; then
  cp tests/browser/package.json tests/browser/package-lock.json "$TOOLS/" 2>/dev/null || cp tests/browser/package.json "$TOOLS/"
  (cd "$TOOLS" && npm install --no-audit --no-fund --loglevel=error)
fi
ln -sf "$TOOLS/node_modules/.bin/wasm-opt" "$TOOLS/bin/wasm-opt"
echo "web tools ready in $TOOLS/bin"
