#!/usr/bin/env bash
# Builds the static site into www/dist: the web crate for wasm32 in its two flavours
# (web/Cargo.toml), each with its JavaScript glue (wasm-bindgen at the lockfile's version)
# and its copy of www/worker.js; www/index.html (the placeholders replaced by the modules'
# names), www/sw.js and www/style.css. What trunk did, without building trunk (13 min of
# a cold CI run on 2 cores).
# - single-threaded, with WebGPU: stable Rust, SIMD (.cargo/config.toml), in www/dist;
# - threaded, CPU only: std rebuilt with atomics (a nightly toolchain with rust-src,
#   `-Z build-std`; scripts/setup-web.sh installs it), SIMD, in www/dist/threads, built in
#   its own target directory ($CARGO_TARGET_DIR/wasm-threads). POLYTASK_WEB_THREADS=0
#   skips it: the page then says it runs one thread because the build has no threads.
#
#   bash scripts/build-web.sh             # dev profile (optimised dependencies), as CI tests it
#   bash scripts/build-web.sh --release   # what a static host serves: release + wasm-opt -Oz
#
# The file names carry a hash of the wasm, so a static host's caches never pair a new page
# with an old module. Every URL is relative: the site works from any sub-path. It writes
# only its own files in www/dist (index.html, sw.js, style.css, polytask-web-*.js/.wasm,
# the worker's polytask-web-*.worker.js, snippets/, and the same in threads/); anything
# else there (the browser tests' bundle/) is left alone.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${POLYTASK_TOOLS:-${POLYTASK_CACHE:-$HOME/.cache/polytask}/tools}"
export PATH="$TOOLS/bin:$PATH"
profile=debug
cargo_args=()
case "${1:-}" in
  "") ;;
  --release) profile=release; cargo_args=(--release) ;;
  *) echo "build-web.sh: unknown argument '$1' (expected nothing or --release)" >&2; exit 2 ;;
esac
want=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print}' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')
if [ "$have" != "$want" ]; then
  echo "build-web.sh: wasm-bindgen $want is needed (the lockfile's), found '${have:-none}': run scripts/setup-web.sh" >&2
  exit 1
fi
NIGHTLY="${POLYTASK_NIGHTLY:-nightly}"
threads="${POLYTASK_WEB_THREADS:-1}"
if [ "$threads" != 0 ] && ! rustup +"$NIGHTLY" component list --installed 2>/dev/null | grep -q '^rust-src'; then
  echo "build-web.sh: the threaded flavour needs the $NIGHTLY toolchain with rust-src: run scripts/setup-web.sh (or POLYTASK_WEB_THREADS=0 to build without it)" >&2
  exit 1
fi
target="${CARGO_TARGET_DIR:-target}"
dist=www/dist
stage=$(mktemp -d "${TMPDIR:-/tmp}/polytask-web.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# Builds one flavour into $stage/$2 and prints its module's name.
#   flavour single|threads DIR
flavour() {
  local wasm prefix
  if [ "$1" = single ]; then
    cargo build -p polytask-web --target wasm32-unknown-unknown "${cargo_args[@]}" >&2
    wasm="$target/wasm32-unknown-unknown/$profile/polytask-web.wasm"
    prefix=polytask-web
  else
    # Shared memory: atomics (std rebuilt with them), a memory imported and shared (it may
    # grow to 4 GiB, as the single-threaded module's may), and the thread-local storage
    # hooks wasm-bindgen needs to start each thread.
    local link=""
    for a in --shared-memory --import-memory --max-memory=4294967296 --export=__wasm_init_tls \
      --export=__tls_size --export=__tls_align --export=__tls_base; do
      link="$link -C link-arg=$a"
    done
    CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128$link" \
      cargo +"$NIGHTLY" build -Z build-std=panic_abort,std -p polytask-web --target wasm32-unknown-unknown \
      --no-default-features --features threads --target-dir "$target/wasm-threads" "${cargo_args[@]}" >&2
    wasm="$target/wasm-threads/wasm32-unknown-unknown/$profile/polytask-web.wasm"
    prefix=polytask-web-threads
  fi
  local name
  name="$prefix-$(sha256sum "$wasm" | cut -c1-16)"
  mkdir -p "$stage/$2"
  wasm-bindgen --target web --no-typescript --out-dir "$stage/$2" --out-name "$name" "$wasm" >&2
  if [ "$profile" = release ]; then
    # wasm-opt reads the features rustc used from the module's target_features section.
    wasm-opt -Oz "$stage/$2/${name}_bg.wasm" -o "$stage/$2/${name}_bg.opt.wasm" >&2
    mv "$stage/$2/${name}_bg.opt.wasm" "$stage/$2/${name}_bg.wasm"
  fi
  grep -q "MODULE" www/worker.js || { echo "build-web.sh: www/worker.js names no MODULE" >&2; exit 1; }
  sed "s/MODULE/$name/g" www/worker.js > "$stage/$2/$name.worker.js"
  echo "$name"
}

# Swaps one flavour's files into DIR: its snippets, then its module files (a page loaded
# mid-build still finds the files its index.html names until that is swapped too).
#   install_flavour STAGED DIR NAME
install_flavour() {
  mkdir -p "$2"
  rm -rf "$2/snippets"
  [ -d "$1/snippets" ] && cp -r "$1/snippets" "$2/snippets"
  cp "$1/$3.js" "$1/$3.worker.js" "$1/${3}_bg.wasm" "$2/"
}

# Drops this script's older modules from DIR once index.html names the new ones.
#   drop_old DIR NAME
drop_old() {
  local f
  for f in $(cd "$1" 2>/dev/null && ls -1 polytask-web-*.js polytask-web-*_bg.wasm 2>/dev/null || true); do
    case "$f" in "$2.js" | "$2.worker.js" | "${2}_bg.wasm") ;; *) rm -f "${1:?}/$f" ;; esac
  done
}

single=$(flavour single single)
threaded=""
if [ "$threads" != 0 ]; then
  threaded=$(flavour threads threads)
fi
grep -q "@SINGLE@" www/index.html || { echo "build-web.sh: www/index.html names no @SINGLE@" >&2; exit 1; }
threads_path=""
[ -n "$threaded" ] && threads_path="threads/$threaded"
sed -e "s|@SINGLE@|$single|g" -e "s|@THREADS@|$threads_path|g" www/index.html > "$stage/index.html"
install_flavour "$stage/single" "$dist" "$single"
if [ -n "$threaded" ]; then
  install_flavour "$stage/threads" "$dist/threads" "$threaded"
fi
cp www/style.css www/sw.js "$dist/"
cp "$stage/index.html" "$dist/index.html.part" && mv "$dist/index.html.part" "$dist/index.html"
drop_old "$dist" "$single"
if [ -n "$threaded" ]; then
  drop_old "$dist/threads" "$threaded"
else
  rm -rf "$dist/threads"
fi
size=$(du -k "$dist/${single}_bg.wasm" | cut -f1)
echo "build-web.sh: $dist ($profile, ${single}_bg.wasm $((size / 1024)) MiB)"
if [ -n "$threaded" ]; then
  size=$(du -k "$dist/threads/${threaded}_bg.wasm" | cut -f1)
  echo "build-web.sh: $dist/threads ($profile, ${threaded}_bg.wasm $((size / 1024)) MiB)"
fi
