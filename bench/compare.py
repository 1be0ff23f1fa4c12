#!/usr/bin/env python3
"""Reads the JSON lines of `core-train bench-train --json` and `bench/torch_train.py --json`
(several rounds each) and prints one Markdown table: per mode and shape, the median over
rounds of each side's median ms/step, the spread of those round medians, and the
throughput ratio Polytask / PyTorch (above 1: Polytask is faster); one row per engine that
Polytask ran on (flex, libtorch, wgpu). Used by compare.sh."""
import datetime
import json
import statistics
import subprocess
import sys
from collections import defaultdict


def main(paths):
    rows = defaultdict(list)  # (mode, batch, seq, impl, engine) -> [ms per round]
    names, machine = {}, set()
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                engine = r.get("engine", "flex") if r["impl"] == "polytask" else "pytorch"
                rows[(r["mode"], r["batch"], r["seq"], engine)].append(r["ms_per_step"])
                names[engine] = r["backend"]
                machine.add(r["cpu"])
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
        if subprocess.run(["git", "diff", "--quiet", "HEAD"]).returncode:
            commit += " + uncommitted changes"
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    print(f"machine: {'; '.join(sorted(machine))}")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC · commit {commit}")
    for engine, backend in sorted(names.items()):
        print(f"{engine}: {backend}")
    print()
    print("| mode | batch × tokens | Polytask on | Polytask ms/step | PyTorch ms/step "
          "| Polytask / PyTorch throughput |")
    print("|---|---|---|---:|---:|---:|")
    engines = sorted({k[3] for k in rows} - {"pytorch"}, key=["flex", "libtorch", "wgpu"].index)
    keys = sorted({k[:3] for k in rows}, key=lambda k: (k[0] != "forward", k[2], k[1]))

    def cell(key):
        ms = rows.get(key)
        if not ms:
            return "—", None
        spread = f" ({min(ms):.0f}–{max(ms):.0f})" if len(ms) > 1 else ""
        return f"{statistics.median(ms):.1f}{spread}", statistics.median(ms)

    for mode, batch, seq in keys:
        theirs, their_ms = cell((mode, batch, seq, "pytorch"))
        for engine in engines:
            ours, our_ms = cell((mode, batch, seq, engine))
            ratio = f"{their_ms / our_ms:.2f}×" if our_ms and their_ms else "—"
            print(f"| {mode} | {batch} × {seq} | {engine} | {ours} | {theirs} | {ratio} |")
    n = max(len(v) for v in rows.values()) if rows else 0
    print(f"\n{n} round(s); in brackets, the fastest and slowest round's median.")


if __name__ == "__main__":
    main(sys.argv[1:])
