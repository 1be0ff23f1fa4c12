#!/usr/bin/env bash
# Polytask against PyTorch on the same machine, in one invocation: `core-train bench-train`
# and `bench/torch_train.py` take turns (REPS rounds, each side a fresh process), then
# bench/compare.py prints one table: the median over rounds of each side's per-round
# median ms/step, the spread over rounds, and the throughput ratio Polytask / PyTorch
# (above 1: Polytask is faster).
#
#   bash bench/compare.sh                      # CPU: flex against torch, every core
#   BACKEND=wgpu DEVICE=cuda bash bench/compare.sh   # a GPU: wgpu against torch on CUDA
#   REPS=3 STEPS=5 WARMUP=2 SEQ=64,128 THREADS=2 bash bench/compare.sh
#
# It builds nothing new: the dev-profile core-train that `cargo run` and the tests build
# (cargo checks it is fresh), and PyTorch from `pip install torch transformers`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3} STEPS=${STEPS:-5} WARMUP=${WARMUP:-2} SEQ=${SEQ:-64,128} BATCH=${BATCH:-32}
MODES=${MODES:-forward,train} BACKEND=${BACKEND:-cpu} DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-$(nproc)}
BIN=${BIN:-}
if [ -z "$BIN" ]; then
  cargo build -q -p polytask-native --bin core-train
  BIN=${CARGO_TARGET_DIR:-target}/debug/core-train
fi
python3 -c 'import torch, transformers' 2>/dev/null ||
  { echo "compare.sh: PyTorch is missing: pip install torch transformers" >&2; exit 1; }
CACHE=${POLYTASK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/polytask}
MODEL=${MODEL:-$CACHE/models/sentence-transformers__all-MiniLM-L6-v2}
[ -f "$MODEL/model.safetensors" ] || "$BIN" fetch-model --dir "$MODEL" >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--batch "$BATCH" --seq "$SEQ" --modes "$MODES" --steps "$STEPS" --warmup "$WARMUP")
for r in $(seq "$REPS"); do
  echo "round $r/$REPS: polytask" >&2
  RAYON_NUM_THREADS=$THREADS "$BIN" bench-train --model "$MODEL" --backends "$BACKEND" \
    "${common[@]}" --json "$out/polytask-$r.jsonl" >/dev/null
  echo "round $r/$REPS: pytorch" >&2
  python3 bench/torch_train.py --model "$MODEL" --threads "$THREADS" --device "$DEVICE" \
    "${common[@]}" --json "$out/pytorch-$r.jsonl" >/dev/null
done
python3 bench/compare.py "$out"/*.jsonl
