#!/usr/bin/env bash
# Packs what a lent GPU machine needs to run the full recipes (full-recipes.sh) into
# .dev/ and .gl/ (both git-ignored through .git/info/exclude): the stripped dev-profile
# core-train, the pretrained weights, the datasets, and the Vulkan loader packages.
# That machine takes 64 MiB of files per call and reaches no network, so the binary is
# xz-compressed and the weight matrices travel as f16 (full-recipes.sh widens them back
# to f32; the f32 file alone is 87 MiB).
#
#   cargo build -p polytask-native && core-train data fetch conll2003 snips clinc150
#   bash scripts/device/pack.sh
#   then, with the workplace's device tool: run `bash scripts/device/full-recipes.sh`,
#   carry [".gl", ".dev"], timeout 600 (see DEVELOPERS.md, "Runs on a lent GPU").
set -euo pipefail
cd "$(dirname "$0")/../.."
CACHE=${POLYTASK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/polytask}
MODEL=$CACHE/models/sentence-transformers__all-MiniLM-L6-v2
BIN=${CARGO_TARGET_DIR:-target}/debug/core-train
for f in "$BIN" "$MODEL/model.safetensors" "$CACHE/data/conll2003" \
  "$CACHE/data/snips" "$CACHE/data/clinc150"; do
  [ -e "$f" ] || { echo "pack.sh: $f is missing (build core-train and fetch the model and data first)" >&2; exit 1; }
done
for d in /.dev/ /.gl/; do grep -qx "$d" .git/info/exclude || echo "$d" >>.git/info/exclude; done
rm -rf .dev && mkdir -p .dev/model .gl
git rev-parse --short HEAD >.dev/REV
strip -o .dev/ct "$BIN"
xz -T0 -6 .dev/ct
cp "$MODEL/config.json" "$MODEL/tokenizer.json" "$MODEL/vocab.txt" "$MODEL/polytask-fetch.json" .dev/model/
python3 - "$MODEL/model.safetensors" .dev/model/weights-f16.safetensors <<'PY'
import sys, numpy as np
from safetensors.numpy import load_file, save_file
t = load_file(sys.argv[1])
save_file({k: v.astype(np.float16) if v.dtype == np.float32 and v.ndim >= 2 else v
           for k, v in t.items()}, sys.argv[2])
PY
xz -T0 -9 .dev/model/weights-f16.safetensors
tar -C "$CACHE" -cJf .dev/data.tar.xz data/conll2003 data/snips data/clinc150
if ! ls .gl/libvulkan1_*.deb >/dev/null 2>&1; then
  mkdir -p /tmp/amd64/partial
  o=(-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64)
  apt-get "${o[@]}" update -qq
  (cd .gl && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
fi
du -sh .dev .gl
