#!/usr/bin/env python3
"""README quickstart table from a quickstart run folder (QUICKSTART_WRITE_README=1 experiments/quickstart.sh).

The rows are the evaluation table of RUN/eval_ipc1/results.json as write_table.py (and run reports)
draw it; the caption adds the wall time the quickstart recorded. Both are first copied to
experiments/results/quickstart/ (results.json, summary.json), which the table is then made from, so
the README's figures stay with the repository."""
import datetime
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tomllib

import readme_tables
import write_table

run = pathlib.Path(sys.argv[1])
kept = pathlib.Path(__file__).resolve().parent / "results" / "quickstart"
kept.mkdir(parents=True, exist_ok=True)
wall_file = run / "wall_time_s"
summary = {
    "wall_time_after_build_s": int(wall_file.read_text()),
    "date": datetime.date.fromtimestamp(wall_file.stat().st_mtime).isoformat(),
    "cores": os.cpu_count(),
    "commit": subprocess.run(["git", "-C", str(kept), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip(),
}
shutil.copyfile(run / "eval_ipc1" / "results.json", kept / "results.json.tmp")
os.replace(kept / "results.json.tmp", kept / "results.json")
(kept / "summary.json.tmp").write_text(json.dumps(summary, indent=2) + "\n")
os.replace(kept / "summary.json.tmp", kept / "summary.json")

results_file = kept / "results.json"
runs = json.loads(results_file.read_text())["results"][0]["runs"]
wall = summary["wall_time_after_build_s"]
# The budget as the run folders' effective configs record it.
experts = tomllib.loads((run / "experts" / "config.toml").read_text())["experts"]
mtt = tomllib.loads((run / "mtt_ipc1" / "config.toml").read_text())["mtt"]
students = tomllib.loads((run / "eval_ipc1" / "config.toml").read_text())["eval"]["model"]
caption = (f"Quickstart on Fashion-MNIST ({summary['cores']} cores, {summary['date']}, commit "
           f"{summary['commit']}; wall time after the build {wall // 60} min {wall % 60} s): "
           f"trajectory matching ({experts['num_experts']} experts × {experts['train']['epochs']} "
           f"epochs, width {experts['model']['width']}; {mtt['iterations']} iterations, "
           f"`mtt_ipc1/syn.pt`) against random real images of the same size, ConvNet-3 students of "
           f"width {students['width']}, DC protocol, {runs} students per set:")
readme_tables.write_block("quickstart", [caption, ""] + write_table.eval_table([results_file]))
