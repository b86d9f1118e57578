#!/usr/bin/env python3
"""Writes the committee soft-labeling table into README.md (<!-- table:synth -->).

    experiments/write_synth_table.py RUN_ROOT IPC [IPC ...]

RUN_ROOT is the folder of experiments/fashion_mnist_synth.sh. Rows per IPC: the committee set
(hard and soft labels), the single-teacher set (soft labels), random real with committee soft
labels and random real with hard labels; one column per student architecture (the run folders FOLDER/ARCH), last-epoch test
accuracy as mean ± std over the students (eval's results.json). Committee members' held-out and
test accuracies go in the caption. Numbers come only from the files.
"""
import json
import pathlib
import re
import sys

import readme_tables

ROWS = [("eval_hard", "syn.pt", "committee recover, hard labels"),
        ("eval_soft", "syn.pt", "committee recover + committee soft labels"),
        ("eval_soft_views", "syn.pt", "committee recover + committee soft labels of stored views (FKD-style)"),
        ("eval_single_soft", "syn.pt", "single-teacher recover + its soft labels (SRe2L-style)"),
        ("eval_real_soft", "syn.pt", "random real + committee soft labels"),
        ("eval_hard", "random-real", "random real, hard labels")]


def cell(row):
    return f"{100 * row['last_mean']:.2f} ± {100 * row['last_std']:.2f}"


def partial_cell(last, planned, _):
    mean = sum(last) / len(last)
    return f"{100 * mean:.2f} ({len(last)} of {planned} students so far)"


def unfinished(folder, set_name):
    """{model: (last accuracies so far, planned runs, wall times)} of evaluations still running or
    stopped: their students.jsonl without a results.json."""
    cells = {}
    for log in sorted(folder.glob("*/students.jsonl")):
        if (log.parent / "results.json").exists():
            continue
        header, *students = [json.loads(line) for line in log.read_text().splitlines()
                             if line.endswith("}")]
        planned = re.search(r"^\s*runs = (\d+)$", header["settings"], re.M)
        mine = [s for s in students if s["set"].endswith(set_name) and s["last"] is not None]
        if mine and planned:
            cells[mine[0]["model"]] = ([s["last"] for s in mine], int(planned.group(1)),
                                       [s.get("seconds") for s in mine])
    return cells


def main():
    root, ipcs = pathlib.Path(sys.argv[1]), sys.argv[2:]
    committee = json.loads((root / "committee" / "results.json").read_text())["members"]
    members = ", ".join(f"{m['arch']} {100 * m['val_accuracy']:.1f} / {100 * m['test_accuracy']:.1f}"
                        for m in committee)
    models, table, partial = [], {}, {}
    for ipc in ipcs:
        for folder, set_name, label in ROWS:
            paths = sorted((root / f"ipc{ipc}" / folder).glob("*/results.json"))
            for r in (r for path in paths for r in json.loads(path.read_text())["results"]):
                if not r["set"].endswith(set_name):
                    continue
                if r["model"] not in models:
                    models.append(r["model"])
                table.setdefault((ipc, label), {})[r["model"]] = r
            for model, found in unfinished(root / f"ipc{ipc}" / folder, set_name).items():
                if model not in models:
                    models.append(model)
                partial.setdefault((ipc, label), {})[model] = found
    runs = {r["runs"] for cells in table.values() for r in cells.values()}
    lines = [f"Committee soft-labeling on Fashion-MNIST (`experiments/fashion_mnist_synth.sh`): "
             f"committee members (held-out / test accuracy %): {members}; last-epoch test accuracy "
             f"% of {'/'.join(map(str, sorted(runs)))} students per cell (mean ± std):", "",
             "| IPC | set | " + " | ".join(models) + " |", "|---|---|" + "---|" * len(models)]
    for ipc in ipcs:
        for _, _, label in ROWS:
            cells, running = table.get((ipc, label), {}), partial.get((ipc, label), {})
            if cells or running:
                lines.append(f"| {ipc} | {label} | " +
                             " | ".join(cell(cells[m]) if m in cells else
                                        partial_cell(*running[m]) if m in running else "—"
                                        for m in models) + " |")
    # Students' wall time, from the runs that record it (results.json "seconds", newer binaries).
    times = {}
    for (ipc, _), cells in table.items():
        for model, r in cells.items():
            times.setdefault((ipc, model), []).extend(t for t in r.get("seconds", []) if t)
    for (ipc, _), cells in partial.items():
        for model, (_, _, seconds) in cells.items():
            times.setdefault((ipc, model), []).extend(t for t in seconds if t)
    timed = [f"{model} at IPC {ipc}: {sum(t) / len(t) / 60:.1f} min "
             f"({len(t)} student{'' if len(t) == 1 else 's'})"
             for (ipc, model), t in sorted(times.items(), key=lambda kv: (int(kv[0][0]), kv[0][1]))
             if t]
    if timed:
        lines += ["", "Wall time per student on this machine (mean over the students that record it; "
                  "the script's THREADS, other jobs sharing the cores): " + "; ".join(timed) + "."]
    if any(m not in cells for cells in table.values() for m in models):
        lines += ["", "— : not run yet; \"k of 3 students so far\": the mean of the students an "
                  "unfinished evaluation has recorded (the script continues where it stopped)."]
    missing = [ipc for ipc in ipcs if not any((ipc, label) in table for _, _, label in ROWS)]
    if missing:
        lines += ["", f"Not run yet: IPC {', '.join(missing)}. Columns are the student "
                  "architectures with finished runs (the script's default adds ResNet-18)."]
    readme_tables.write_block("synth", lines)


if __name__ == "__main__":
    main()
