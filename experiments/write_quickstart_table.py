#!/usr/bin/env python3
"""README quickstart table from a quickstart run folder (QUICKSTART_WRITE_README=1 experiments/quickstart.sh)."""
import datetime
import json
import os
import pathlib
import sys

import readme_tables

run = pathlib.Path(sys.argv[1])
results = json.loads((run / "eval_ipc1" / "results.json").read_text())
wall = int((run / "wall_time_s").read_text())
stamp = datetime.date.fromtimestamp((run / "wall_time_s").stat().st_mtime).isoformat()
rows = [f"Quickstart on Fashion-MNIST ({os.cpu_count()} cores, {stamp}; wall time after the build {wall // 60} min "
        f"{wall % 60} s): ConvNet-3 students, DC protocol, {results['results'][0]['runs']} students per set:", "",
        "| set | IPC | test accuracy % (mean ± std) |", "|---|---|---|"]
for r in results["results"]:
    name = "random real" if r["set"] == "random-real" else "trajectory matching (3 experts × 4 epochs, 100 iterations)"
    rows.append(f"| {name} | {r['ipc']} | {100 * r['last_mean']:.2f} ± {100 * r['last_std']:.2f} |")
readme_tables.write_block("quickstart", rows)
