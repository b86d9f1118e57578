#!/usr/bin/env python3
"""README table from `distill bench mtt` JSON lines (experiments/bench/mtt.sh)."""
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

lines = [json.loads(l) for l in pathlib.Path(sys.argv[1]).read_text().splitlines() if l.strip()]
ten = next(r for r in lines if r["syn_steps"] == 10 and r["meta_grad"] == "adjoint")
rows = ["`distill bench mtt` (ConvNet-3 w128 instancenorm, 1x28x28, IPC 10, batch_syn 100, DSA; one iteration = "
        f"student run + meta-gradient + image step; {os.cpu_count()} cores, threads = {ten['threads']}; "
        "`experiments/bench/mtt.sh`). Python = the reference formulation (unrolled autograd) in the same invocation:", "",
        "| syn_steps | meta_grad | C++ s/iter | C++ peak RSS MiB | Python s/iter | Python peak RSS MiB "
        "| time vs Python | memory vs Python | memory vs 10 steps |",
        "|---|---|---|---|---|---|---|---|---|"]
for r in lines:
    p = r.get("python")
    py = (f"{p['s_per_iter']:.1f} | {p['peak_rss_mib']:.0f} | {r['time_ratio_vs_python']:.2f}x "
          f"| {r['peak_rss_ratio_vs_python']:.2f}x") if p else "not run | not run | - | -"
    rows.append(f"| {r['syn_steps']} | {r['meta_grad']} | {r['s_per_iter']:.2f} | {r['peak_rss_mib']:.0f} | {py} "
                f"| {r['peak_rss_mib'] / ten['peak_rss_mib']:.2f}x |")
readme_tables.write_block("bench-mtt", rows)
