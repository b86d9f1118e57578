#!/usr/bin/env python3
"""README table from `distill bench eval` JSON lines (experiments/bench/eval.sh)."""
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

lines = [json.loads(l) for l in pathlib.Path(sys.argv[1]).read_text().splitlines() if l.strip()]
first = lines[0]
rows = [f"`distill bench eval` ({first['students']} students of the DC/MTT protocol: ConvNet-3 w128 instancenorm, "
        f"1x28x28, SGD, DSA, batch min(256, 10 x IPC); {os.cpu_count()} cores, threads = {first['threads']}, "
        f"device {first['device']}; best of {len(first['cpp']['batched_rounds'])} alternating rounds; "
        "`experiments/bench/eval.sh`). Student-steps per second, K students counted K times; "
        "GFLOP/s = convolutions and classifier of the training steps:", "",
        "| IPC | sequential | batched (stacked) | ceiling (1 model, K x batch) | Python protocol "
        "| batched vs sequential | batched vs ceiling | batched vs Python | GFLOP/s seq / batched / ceiling |",
        "|---|---|---|---|---|---|---|---|---|"]
for r in lines:
    c = r["cpp"]
    py = r.get("python_steps_per_s")
    python = f"{py:.1f}" if py else "not run"
    vs_python = f"{r['batched_vs_python']:.2f}x" if py else "-"
    rows.append(f"| {r['ipc']} | {r['sequential_steps_per_s']:.1f} | {r['batched_steps_per_s']:.1f} "
                f"| {r['ceiling_steps_per_s']:.1f} | {python} "
                f"| {r['batched_vs_sequential']:.2f}x | {r['batched_vs_ceiling']:.2f}x | {vs_python} "
                f"| {c['sequential_gflops_per_s']:.0f} / {c['batched_gflops_per_s']:.0f} / {c['ceiling_gflops_per_s']:.0f} |")
readme_tables.write_block("bench-eval", rows)
