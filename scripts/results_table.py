#!/usr/bin/env python3
"""Markdown rows of the main test metrics of training runs (their results.json files).

usage: python3 scripts/results_table.py runs/default runs/quick-snips ...
"""
import json
import sys

MAIN = {"token": ["f1"], "sentence": ["accuracy", "macro_f1"]}

for run in sys.argv[1:]:
    r = json.load(open(f"{run}/results.json"))
    cells = []
    for task, s in sorted(r["test"].items()):
        if "in_scope_accuracy" in s:
            cells.append(f"{task}: in-scope acc {s['in_scope_accuracy']:.4f}, oos recall {s['oos_recall']:.4f}")
        elif s["kind"] == "token":
            cells.append(f"{task}: entity F1 {s['f1']:.4f}")
        else:
            cells.append(f"{task}: acc {s['accuracy']:.4f}")
        cells[-1] += f" (n={s['examples']})"
    print(f"| `{r['recipe']}` | {'; '.join(cells)} | {r['train_seconds']:.0f} s train, {r['wall_seconds_this_process']:.0f} s process | best step {r['best_step']} |")
