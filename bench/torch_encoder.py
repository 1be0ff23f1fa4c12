#!/usr/bin/env python3
"""PyTorch reference for `core-train bench-encoder`: the same encoder (Hugging Face
`transformers.BertModel` from the same model directory), the same batch shape, the same
work: forward (eval, no grad) and forward+backward (train mode, dropout on) of a
mean-pooled loss. Prints the same table; `--json FILE` writes the same JSON lines.

    pip install torch transformers safetensors tokenizers
    python3 bench/torch_encoder.py --model ~/.cache/polytask/models/sentence-transformers__all-MiniLM-L6-v2

A benchmark aid only: the Rust project never needs Python to run.
"""
import argparse
import json
import time

import torch
from transformers import BertModel


def synthetic_ids(batch, seq, vocab):
    # The same 64-bit LCG as native/src/bench.rs, so both see identical batches.
    state = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    ids = []
    for i in range(batch * seq):
        if i % seq == 0:
            ids.append(101)
            continue
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        ids.append(1000 + (state >> 33) % (vocab - 1000))
    return torch.tensor(ids, dtype=torch.long).reshape(batch, seq)


def mean_pool(h, m):
    m = m.unsqueeze(-1).float()
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def timed(fn, warmup, steps):
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - start) * 1e3 / steps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=64)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    model = BertModel.from_pretrained(args.model, add_pooling_layer=True, attn_implementation="eager")
    ids = synthetic_ids(args.batch, args.seq, model.config.vocab_size)
    mask = torch.ones_like(ids)
    tokens = args.batch * args.seq
    name = f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads)"
    figures = []

    model.eval()

    def fwd():
        with torch.no_grad():
            out = model(input_ids=ids, attention_mask=mask).last_hidden_state
            return mean_pool(out, mask).sum().item()

    ms = timed(fwd, args.warmup, args.steps)
    figures.append((name, "forward", ms, tokens / ms * 1e3))

    model.train()

    def fwd_bwd():
        model.zero_grad(set_to_none=True)
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
        mean_pool(out, mask).pow(2).mean().backward()

    ms = timed(fwd_bwd, args.warmup, args.steps)
    figures.append((name, "forward+backward", ms, tokens / ms * 1e3))

    print(f"encoder {args.model} · batch {args.batch} × {args.seq} tokens · "
          f"{args.steps} timed steps after {args.warmup} warm-up")
    print(f"{'backend':<56} {'mode':<17} {'ms/step':>10} {'tokens/s':>12}")
    for b, mode, ms, tps in figures:
        print(f"{b:<56} {mode:<17} {ms:>10.1f} {tps:>12.0f}")
    if args.json:
        with open(args.json, "w") as f:
            for b, mode, ms, tps in figures:
                f.write(json.dumps({"impl": "torch", "backend": b, "mode": mode, "batch": args.batch,
                                    "seq": args.seq, "ms_per_step": ms, "tokens_per_s": tps}) + "\n")


if __name__ == "__main__":
    main()
