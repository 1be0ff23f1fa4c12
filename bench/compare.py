#!/usr/bin/env python3
"""Reads the JSON lines of `core-train bench-train --json` and `bench/torch_train.py --json`
(several rounds each) and prints one Markdown table: per mode and shape, the median over
rounds of each side's median ms/step, the spread of those round medians, and the
throughput ratio Polytask / PyTorch (above 1: Polytask is faster). Used by compare.sh."""
import datetime
import json
import statistics
import subprocess
import sys
from collections import defaultdict


def main(paths):
    rows = defaultdict(list)  # (mode, batch, seq, impl) -> [ms per round]
    names, machine = {}, set()
    for path in paths:
        with open(path) as f:
            for line in f:
                if not line.strip():
                    continue
                r = json.loads(line)
                rows[(r["mode"], r["batch"], r["seq"], r["impl"])].append(r["ms_per_step"])
                names[r["impl"]] = r["backend"]
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
    for impl, backend in sorted(names.items()):
        print(f"{impl}: {backend}")
    print()
    print("| mode | batch × tokens | Polytask ms/step | PyTorch ms/step | Polytask / PyTorch throughput |")
    print("|---|---|---:|---:|---:|")
    keys = sorted({k[:3] for k in rows}, key=lambda k: (k[0] != "forward", k[2], k[1]))
    for mode, batch, seq in keys:
        cell, med = [], {}
        for impl in ("polytask", "pytorch"):
            ms = rows.get((mode, batch, seq, impl))
            if not ms:
                cell.append("—")
                continue
            med[impl] = statistics.median(ms)
            spread = f" ({min(ms):.0f}–{max(ms):.0f})" if len(ms) > 1 else ""
            cell.append(f"{med[impl]:.1f}{spread}")
        ratio = f"{med['pytorch'] / med['polytask']:.2f}×" if len(med) == 2 else "—"
        print(f"| {mode} | {batch} × {seq} | {cell[0]} | {cell[1]} | {ratio} |")
    n = max(len(v) for v in rows.values()) if rows else 0
    print(f"\n{n} round(s); in brackets, the fastest and slowest round's median.")


if __name__ == "__main__":
    main(sys.argv[1:])
