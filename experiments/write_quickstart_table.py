#!/usr/bin/env python3
"""README quickstart table from a quickstart run folder (QUICKSTART_WRITE_README=1 experiments/quickstart.sh).

The rows are the evaluation table of RUN/eval_ipc1/results.json as write_table.py (and run reports)
draw it; the caption adds the wall time the quickstart recorded."""
import datetime
import json
import os
import pathlib
import sys

import readme_tables
import write_table

run = pathlib.Path(sys.argv[1])
results_file = run / "eval_ipc1" / "results.json"
runs = json.loads(results_file.read_text())["results"][0]["runs"]
wall = int((run / "wall_time_s").read_text())
stamp = datetime.date.fromtimestamp((run / "wall_time_s").stat().st_mtime).isoformat()
caption = (f"Quickstart on Fashion-MNIST ({os.cpu_count()} cores, {stamp}; wall time after the build "
           f"{wall // 60} min {wall % 60} s): trajectory matching (3 experts × 4 epochs, 100 "
           f"iterations, `mtt_ipc1/syn.pt`) against random real images of the same size, ConvNet-3 "
           f"students, DC protocol, {runs} students per set:")
readme_tables.write_block("quickstart", [caption, ""] + write_table.eval_table([results_file]))
