#!/usr/bin/env bash
# Builds the static site into www/dist: the web crate for wasm32 (with SIMD: see
# .cargo/config.toml), its JavaScript glue (wasm-bindgen at the lockfile's version),
# www/index.html and www/worker.js (MODULE replaced by the module's name) and
# www/style.css: what trunk did, without building trunk (13 min of a cold CI run on 2 cores).
#
#   bash scripts/build-web.sh             # dev profile (optimised dependencies), as CI tests it
#   bash scripts/build-web.sh --release   # what a static host serves: release + wasm-opt -Oz
#
# The file names carry a hash of the wasm, so a static host's caches never pair a new page
# with an old module. Every URL is relative: the site works from any sub-path. It writes
# only its own files in www/dist (index.html, style.css, polytask-web-*.js/.wasm, the
# worker's polytask-web-*.worker.js, snippets/); anything else there (the browser tests'
# bundle/) is left alone.
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
cargo build -p polytask-web --target wasm32-unknown-unknown "${cargo_args[@]}"
wasm="${CARGO_TARGET_DIR:-target}/wasm32-unknown-unknown/$profile/polytask-web.wasm"
dist=www/dist
stage=$(mktemp -d "${TMPDIR:-/tmp}/polytask-web.XXXXXX")
trap 'rm -rf "$stage"' EXIT
hash=$(sha256sum "$wasm" | cut -c1-16)
name="polytask-web-$hash"
wasm-bindgen --target web --no-typescript --out-dir "$stage" --out-name "$name" "$wasm"
if [ "$profile" = release ]; then
  # wasm-opt reads the features rustc used from the module's target_features section.
  wasm-opt -Oz "$stage/${name}_bg.wasm" -o "$stage/${name}_bg.opt.wasm"
  mv "$stage/${name}_bg.opt.wasm" "$stage/${name}_bg.wasm"
fi
cp www/style.css "$stage/"
grep -q "MODULE" www/index.html || { echo "build-web.sh: www/index.html names no MODULE" >&2; exit 1; }
sed "s/MODULE/$name/g" www/index.html > "$stage/index.html"
grep -q "MODULE" www/worker.js || { echo "build-web.sh: www/worker.js names no MODULE" >&2; exit 1; }
sed "s/MODULE/$name/g" www/worker.js > "$stage/$name.worker.js"
# Swap in: first the new module files, then index.html (a page loaded mid-build still
# finds the files it names), then drop this script's older modules.
mkdir -p "$dist"
old=$(cd "$dist" && ls -1 polytask-web-*.js polytask-web-*_bg.wasm 2>/dev/null || true)
rm -rf "$dist/snippets"
[ -d "$stage/snippets" ] && cp -r "$stage/snippets" "$dist/snippets"
cp "$stage/$name.js" "$stage/$name.worker.js" "$stage/${name}_bg.wasm" "$stage/style.css" "$dist/"
cp "$stage/index.html" "$dist/index.html.part" && mv "$dist/index.html.part" "$dist/index.html"
for f in $old; do
  case "$f" in "$name.js" | "$name.worker.js" | "${name}_bg.wasm") ;; *) rm -f "$dist/$f" ;; esac
done
size=$(du -k "$dist/${name}_bg.wasm" | cut -f1)
echo "build-web.sh: $dist ($profile, ${name}_bg.wasm $((size / 1024)) MiB)"
