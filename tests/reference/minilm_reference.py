#!/usr/bin/env python3
"""Independent reference for the Rust encoder: BERT forward in numpy (float64) over the
same model.safetensors, tokenized by the Python `tokenizers` package from the same
tokenizer.json. Prints JSON: {"ids": [[...]], "embeddings": [[...]]} with mean-pooled,
L2-normalised sentence vectors, one sentence at a time (no padding).

    python3 tests/reference/minilm_reference.py --model DIR < sentences.txt

Needs: numpy, safetensors, tokenizers (pip install numpy safetensors tokenizers).
"""
import argparse
import json
import math
import sys

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer


def erf(x):
    # numpy has no erf; math.erf per element is exact enough and fast for these sizes.
    return np.vectorize(math.erf)(x)


def layer_norm(x, w, b, eps):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * w + b


def forward(weights, config, ids):
    g = lambda k: weights[k].astype(np.float64)  # noqa: E731
    n = len(ids)
    x = g("embeddings.word_embeddings.weight")[ids]
    x = x + g("embeddings.position_embeddings.weight")[:n]
    x = x + g("embeddings.token_type_embeddings.weight")[np.zeros(n, dtype=int)]
    eps = config.get("layer_norm_eps", 1e-12)
    x = layer_norm(x, g("embeddings.LayerNorm.weight"), g("embeddings.LayerNorm.bias"), eps)
    heads = config["num_attention_heads"]
    hd = config["hidden_size"] // heads
    lin = lambda h, p: h @ g(p + ".weight").T + g(p + ".bias")  # noqa: E731
    for i in range(config["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        q = lin(x, p + "attention.self.query").reshape(n, heads, hd).transpose(1, 0, 2)
        k = lin(x, p + "attention.self.key").reshape(n, heads, hd).transpose(1, 0, 2)
        v = lin(x, p + "attention.self.value").reshape(n, heads, hd).transpose(1, 0, 2)
        s = q @ k.transpose(0, 2, 1) / math.sqrt(hd)
        s = np.exp(s - s.max(-1, keepdims=True))
        a = s / s.sum(-1, keepdims=True)
        ctx = (a @ v).transpose(1, 0, 2).reshape(n, heads * hd)
        x = layer_norm(lin(ctx, p + "attention.output.dense") + x,
                       g(p + "attention.output.LayerNorm.weight"),
                       g(p + "attention.output.LayerNorm.bias"), eps)
        h = lin(x, p + "intermediate.dense")
        h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
        x = layer_norm(lin(h, p + "output.dense") + x,
                       g(p + "output.LayerNorm.weight"), g(p + "output.LayerNorm.bias"), eps)
    v = x.mean(0)
    return v / max(np.linalg.norm(v), 1e-12)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--max-len", type=int, default=256)
    args = ap.parse_args()
    sentences = [line.rstrip("\n") for line in sys.stdin if line.strip()]
    config = json.load(open(f"{args.model}/config.json"))
    weights = load_file(f"{args.model}/model.safetensors")
    weights = {k[5:] if k.startswith("bert.") else k: v for k, v in weights.items()}
    tok = Tokenizer.from_file(f"{args.model}/tokenizer.json")
    tok.no_padding()
    tok.enable_truncation(args.max_len)
    ids, embs = [], []
    for s in sentences:
        e = tok.encode(s)
        ids.append(e.ids)
        embs.append(forward(weights, config, np.array(e.ids)).tolist())
    json.dump({"ids": ids, "embeddings": embs}, sys.stdout)


if __name__ == "__main__":
    main()
