#!/usr/bin/env python3
"""PyTorch twin of `core-train bench-train`: the same work on the same synthetic batches.

- `forward`: Hugging Face `BertModel` (from the same model directory) in eval mode, no
  grad, mean-pooled, read back to the host;
- `train step`: the encoder plus a sentence head (dropout 0.1 → Linear 384 → 150) on the
  mean-pooled states and a token head (dropout 0.1 → Linear 384 → 9) on every state, both
  targets in one batch (tag `id % 9` on every piece after [CLS], class `row % 150`), the
  joint loss (ℓ_sent + ℓ_tok) / 2, backward, `clip_grad_norm_(1.0)` and
  `torch.optim.AdamW` (lr 2e-5, weight decay 0.01 except biases and LayerNorm). The three
  losses and the gradient norm are read back each step, as Polytask does.

Prints one row per mode and length; `--json FILE` writes the JSON lines that
`bench/compare.py` reads.

    pip install torch transformers
    python3 bench/torch_train.py --model ~/.cache/polytask/models/sentence-transformers__all-MiniLM-L6-v2

A benchmark aid only: the Rust project never needs Python to run.
"""
import argparse
import json
import platform
import time

import torch
from transformers import BertModel

SENTENCE_CLASSES = 150
TOKEN_TAGS = 9


def synthetic_ids(batch, seq, vocab):
    # The same 64-bit LCG as native/src/bench.rs, so both see identical batches.
    state = 0x9E3779B97F4A7C15
    mask = (1 << 64) - 1
    low = min(1000, vocab // 2)
    ids = []
    for i in range(batch * seq):
        if i % seq == 0:
            ids.append(101)
            continue
        state = (state * 6364136223846793005 + 1442695040888963407) & mask
        ids.append(low + (state >> 33) % (vocab - low))
    return torch.tensor(ids, dtype=torch.long).reshape(batch, seq)


def mean_pool(h, m):
    m = m.unsqueeze(-1).to(h.dtype)
    return (h * m).sum(1) / m.sum(1).clamp(min=1e-9)


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def timed(fn, warmup, steps, sync):
    for _ in range(warmup):
        fn()
    sync()
    ms = []
    for _ in range(steps):
        start = time.perf_counter()
        fn()
        sync()
        ms.append((time.perf_counter() - start) * 1e3)
    ms.sort()
    n = len(ms)
    median = ms[n // 2] if n % 2 else (ms[n // 2 - 1] + ms[n // 2]) / 2
    return median, ms[0], ms[-1]


class Heads(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.dropout = torch.nn.Dropout(0.1)
        self.sentence = torch.nn.Linear(hidden, SENTENCE_CLASSES)
        self.token = torch.nn.Linear(hidden, TOKEN_TAGS)
        for lin in (self.sentence, self.token):
            torch.nn.init.normal_(lin.weight, std=0.02)
            torch.nn.init.zeros_(lin.bias)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", default="64,128", help="comma-separated lengths")
    ap.add_argument("--modes", default="forward,train", help="forward, train")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--attn", default="sdpa", help="attention implementation: sdpa (PyTorch's "
                    "default, fused) or eager (matmul + softmax + matmul, as Polytask today)")
    ap.add_argument("--json")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dev = torch.device(args.device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    bert = BertModel.from_pretrained(args.model, add_pooling_layer=False,
                                     attn_implementation=args.attn).to(dev)
    vocab, hidden = bert.config.vocab_size, bert.config.hidden_size
    if dev.type == "cuda":
        backend = f"torch {torch.__version__} {torch.cuda.get_device_name(dev)}"
        machine = backend
    else:
        backend = f"torch {torch.__version__} cpu ({torch.get_num_threads()} threads, {args.attn})"
        machine = f"{cpu_model()}, {torch.get_num_threads()} threads"
    figures = []
    for seq in [int(s) for s in args.seq.split(",")]:
        ids = synthetic_ids(args.batch, seq, vocab).to(dev)
        mask = torch.ones_like(ids)
        for mode in args.modes.split(","):
            if mode == "forward":
                bert.eval()

                def step():
                    with torch.no_grad():
                        out = bert(input_ids=ids, attention_mask=mask).last_hidden_state
                        return mean_pool(out, mask).sum().item()
                label = "forward"
            elif mode == "train":
                # Fresh heads and optimizer from the pretrained encoder, as bench-train.
                model = torch.nn.ModuleDict({"bert": BertModel.from_pretrained(
                    args.model, add_pooling_layer=False, attn_implementation=args.attn),
                    "heads": Heads(hidden)}).to(dev).train()
                decay, no_decay = [], []
                for name, p in model.named_parameters():
                    (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(p)
                opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01},
                                         {"params": no_decay, "weight_decay": 0.0}],
                                        lr=2e-5, betas=(0.9, 0.999), eps=1e-8)
                ys = (torch.arange(args.batch) % SENTENCE_CLASSES).to(dev)
                yt = ids % TOKEN_TAGS
                yt[:, 0] = -100
                params = list(model.parameters())

                def step(model=model, opt=opt, ys=ys, yt=yt, params=params):
                    opt.zero_grad(set_to_none=True)
                    h = model["bert"](input_ids=ids, attention_mask=mask).last_hidden_state
                    heads = model["heads"]
                    ls = torch.nn.functional.cross_entropy(
                        heads.sentence(heads.dropout(mean_pool(h, mask))), ys)
                    lt = torch.nn.functional.cross_entropy(
                        heads.token(heads.dropout(h)).reshape(-1, TOKEN_TAGS), yt.reshape(-1),
                        ignore_index=-100)
                    joint = (ls + lt) / 2
                    losses = (ls.item(), lt.item(), joint.item())
                    joint.backward()
                    norm = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
                    opt.step()
                    return losses, norm
                label = "train step"
            else:
                raise SystemExit(f"--modes: unknown mode {mode!r} (forward, train)")
            median, lo, hi = timed(step, args.warmup, args.steps, sync)
            figures.append((label, seq, median, lo, hi))

    print(f"{args.model} · {machine} · batch {args.batch} · median of {args.steps} timed "
          f"steps after {args.warmup} warm-up")
    print(f"{'backend':<40} {'mode':<11} {'tokens':>7} {'ms/step':>10} {'(min–max)':>17} "
          f"{'tokens/s':>10}")
    for label, seq, median, lo, hi in figures:
        print(f"{backend:<40} {label:<11} {f'{args.batch}×{seq}':>7} {median:>10.1f} "
              f"{f'({lo:.1f}–{hi:.1f})':>17} {args.batch * seq / median * 1e3:>10.0f}")
    if args.json:
        with open(args.json, "w") as f:
            for label, seq, median, lo, hi in figures:
                f.write(json.dumps({
                    "impl": "pytorch", "backend": backend, "mode": label, "batch": args.batch,
                    "seq": seq, "cpu": machine, "ms_per_step": median, "ms_min": lo,
                    "ms_max": hi, "steps": args.steps,
                    "tokens_per_s": args.batch * seq / median * 1e3,
                    "examples_per_s": args.batch / median * 1e3}) + "\n")


if __name__ == "__main__":
    main()
