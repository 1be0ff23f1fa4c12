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
#   BACKEND=cpu,torch bash bench/compare.sh        # + Polytask on LibTorch (burn-tch)
#
# `torch` in BACKEND also builds core-train with the `torch` feature (LibTorch from the
# `torch` wheel that python3 imports, which must be the version tch wants: 2.9.0) and
# keeps it as core-train-torch beside the default binary; TORCH_BIN names one instead.
#
# It builds nothing new: the dev-profile core-train that `cargo run` and the tests build
# (cargo checks it is fresh), and PyTorch from `pip install torch transformers`.
set -euo pipefail
cd "$(dirname "$0")/.."
REPS=${REPS:-3} STEPS=${STEPS:-5} WARMUP=${WARMUP:-2} SEQ=${SEQ:-64,128} BATCH=${BATCH:-32}
MODES=${MODES:-forward,train} BACKEND=${BACKEND:-cpu} DEVICE=${DEVICE:-cpu}
THREADS=${THREADS:-$(nproc)}
BIN=${BIN:-} TORCH_BIN=${TORCH_BIN:-}
python3 -c 'import torch, transformers' 2>/dev/null ||
  { echo "compare.sh: PyTorch is missing: pip install torch transformers" >&2; exit 1; }
# The engines Polytask runs on: torch (its own binary) apart from the others.
others=$(tr ',' '\n' <<<"$BACKEND" | grep -vx torch | paste -sd, || true)
torch=$(tr ',' '\n' <<<"$BACKEND" | grep -cx torch || true)
target=${CARGO_TARGET_DIR:-target}
if [ "$torch" != 0 ] && [ -z "$TORCH_BIN" ]; then
  LIBTORCH_USE_PYTORCH=1 cargo build -q -p polytask-native --bin core-train --features torch
  TORCH_BIN=$target/debug/core-train-torch
  cp "$target/debug/core-train" "$TORCH_BIN"
fi
if [ -z "$BIN" ]; then
  cargo build -q -p polytask-native --bin core-train
  BIN=$target/debug/core-train
fi
# LibTorch's libraries, for the torch binary (they are not on its rpath).
torch_lib=$(python3 -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))')
CACHE=${POLYTASK_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/polytask}
MODEL=${MODEL:-$CACHE/models/sentence-transformers__all-MiniLM-L6-v2}
[ -f "$MODEL/model.safetensors" ] || "$BIN" fetch-model --dir "$MODEL" >&2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--batch "$BATCH" --seq "$SEQ" --modes "$MODES" --steps "$STEPS" --warmup "$WARMUP")
for r in $(seq "$REPS"); do
  if [ -n "$others" ]; then
    echo "round $r/$REPS: polytask ($others)" >&2
    RAYON_NUM_THREADS=$THREADS "$BIN" bench-train --model "$MODEL" --backends "$others" \
      "${common[@]}" --json "$out/polytask-$r.jsonl" >/dev/null
  fi
  if [ "$torch" != 0 ]; then
    echo "round $r/$REPS: polytask (torch)" >&2
    RAYON_NUM_THREADS=$THREADS LD_LIBRARY_PATH=$torch_lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} \
      "$TORCH_BIN" bench-train --model "$MODEL" --backends torch \
      "${common[@]}" --json "$out/polytask-torch-$r.jsonl" >/dev/null
  fi
  echo "round $r/$REPS: pytorch" >&2
  python3 bench/torch_train.py --model "$MODEL" --threads "$THREADS" --device "$DEVICE" \
    "${common[@]}" --json "$out/pytorch-$r.jsonl" >/dev/null
done
python3 bench/compare.py "$out"/*.jsonl
