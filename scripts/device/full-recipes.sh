#!/bin/bash
# The full recipes (5 epochs) side by side on one lent GPU, each stopped with Ctrl-C
# (checkpoint saved) after BUDGET seconds; logs, metrics and results come back in
# $OUT/runs.tgz (weights stay behind: too big to return). Packed by pack.sh; carried:
# .gl (Vulkan loader packages) and .dev (core-train, f16 weights, data).
#   RECIPES="conll2003" TRAIN_ARGS="--epochs 10" BUDGET=540 bash scripts/device/full-recipes.sh
# RESUME=1 in a second call on the still-warm machine continues the stopped runs.
# Dry run here on the CPU: LOCAL=1 OUT=/tmp/out BUDGET=60 bash scripts/device/full-recipes.sh
set -u
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/device.log") 2>&1
BUDGET=${BUDGET:-540}
RECIPES=${RECIPES:-"multitask conll2003 clinc150 snips"}
echo "rev $(cat .dev/REV) start $(date -u +%FT%TZ) budget ${BUDGET}s"
if [ -z "${LOCAL:-}" ]; then
  for f in .gl/*.deb; do dpkg -x "$f" /; done
  ldconfig
  nvidia-smi -L
  nproc; free -g | head -2
  ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d /usr/local/nvidia/share/vulkan/icd.d 2>&1
  if ! ls /usr/share/vulkan/icd.d/nvidia* /etc/vulkan/icd.d/nvidia* >/dev/null 2>&1 &&
    [ -f /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json ]; then
    export VK_DRIVER_FILES=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    export __EGL_VENDOR_LIBRARY_FILENAMES=/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json
    echo "VK_DRIVER_FILES=$VK_DRIVER_FILES"
  fi
fi
W=/tmp/pt
M=$W/pc/models/sentence-transformers__all-MiniLM-L6-v2
RESUME_ARG=()
if [ -n "${RESUME:-}" ] && [ -x $W/ct ]; then
  # A second call on the still-warm machine: continue the stopped runs in $W/runs.
  echo "resuming the runs in $W/runs"
  RESUME_ARG=(--resume)
else
rm -rf $W && mkdir -p $M $W/runs
xz -dc .dev/ct.xz >$W/ct && chmod +x $W/ct
tar -C $W/pc -xJf .dev/data.tar.xz
cp .dev/model/config.json .dev/model/tokenizer.json .dev/model/vocab.txt .dev/model/polytask-fetch.json $M/
xz -dc .dev/model/weights-f16.safetensors.xz >$W/w16.safetensors
# The weights travelled as f16 (matrices; vectors stayed f32) to fit the 64 MiB transfer:
# widen them back to f32, the dtype the model loads.
python3 - "$W/w16.safetensors" "$M/model.safetensors" <<'EOF'
import sys, numpy as np
from safetensors.numpy import load_file, save_file
t = load_file(sys.argv[1])
save_file({k: (v.astype(np.float32) if v.dtype == np.float16 else v) for k, v in t.items()}, sys.argv[2])
print("widened", len(t), "tensors")
EOF
sha256sum $M/model.safetensors
fi
mkdir -p -m 700 /tmp/xdg
export POLYTASK_CACHE=$W/pc RUST_BACKTRACE=1 XDG_RUNTIME_DIR=/tmp/xdg
if [ -z "${LOCAL:-}" ]; then
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,power.draw --format=csv -l 5 >"$OUT/gpu.csv" &
  SMI=$!
fi
echo "setup done $(date -u +%T)"
pids=()
for r in $RECIPES; do
  # shellcheck disable=SC2086 # TRAIN_ARGS is a list of words
  timeout -s INT -k 30 "$BUDGET" $W/ct train "recipes/$r.toml" --out "$W/runs/$r" "${RESUME_ARG[@]}" ${TRAIN_ARGS:-} >>"$W/runs/$r.log" 2>&1 &
  pids+=($!)
done
for i in "${!pids[@]}"; do
  wait "${pids[$i]}"
  rc=$?
  echo "$(date -u +%T) run $i of ($RECIPES): exit $rc (124: stopped at BUDGET, checkpoint saved)"
done
[ -n "${SMI:-}" ] && kill $SMI
for r in $RECIPES; do
  echo "== $r"; grep -a -m3 -i 'backend\|error\|panic' "$W/runs/$r.log"; tail -c 1500 "$W/runs/$r.log"
done
(cd $W/runs && tar czf "$OUT/runs.tgz" --exclude='*.safetensors' --exclude='*.bin' --exclude='*.mpk' \
  $(for r in $RECIPES; do echo "$r.log"; [ -d "$r" ] && echo "$r"; done))
ls -la "$OUT"
echo "end $(date -u +%T)"
