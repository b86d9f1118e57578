#!/usr/bin/env python3
"""Writes a results table from distill `results.json` files into README.md between markers.

    experiments/write_table.py NAME "caption" results1.json [results2.json ...]

replaces the block between `<!-- table:NAME -->` and `<!-- /table:NAME -->` in README.md with a
Markdown table (one row per set x model: mean ± std of last-epoch test accuracy, best-epoch mean,
runs). Numbers come only from the files given; nothing is typed by hand.
"""
import json
import pathlib
import sys

import readme_tables


def rows(paths):
    for path in paths:
        data = json.loads(pathlib.Path(path).read_text())
        for r in data["results"]:
            yield data, r


def best(data, r):
    # Runs with eval_every = 0 (or from before it was recorded) score the test set only at the end.
    if data.get("eval_every", 0) <= 0:
        return "n/a (end only)"
    return f"{100 * r['best_mean']:.2f}"


def main():
    name, caption, paths = sys.argv[1], sys.argv[2], sys.argv[3:]
    lines = [caption, "", "| set | model | IPC | runs | protocol | last-epoch acc % | best acc % |",
             "|---|---|---|---|---|---|---|"]
    for data, r in rows(paths):
        protocol = data.get("protocol", "?")
        ipc = r["ipc"] if r["ipc"] > 0 else "all"
        set_name = r["set"]
        if set_name.endswith(".pt"):  # the run folder names the set: mtt_ipc10/syn.pt
            set_name = "/".join(pathlib.Path(set_name).parts[-2:])
        lines.append(f"| {set_name} "
                     f"| {r['model']} | {ipc} | {r['runs']} | {protocol} "
                     f"| {100 * r['last_mean']:.2f} ± {100 * r['last_std']:.2f} "
                     f"| {best(data, r)} |")
    readme_tables.write_block(name, lines)


if __name__ == "__main__":
    main()
