#!/usr/bin/env python3
"""Writes the KD table into README.md between `<!-- table:kd -->` and `<!-- /table:kd -->`.

    experiments/write_kd_table.py "caption" RUN_ROOT ROW [ROW ...]

"{train_minutes}" in the caption becomes the summed training time of all runs under RUN_ROOT.

Each ROW is "dir|experiment|data|model|training": RUN_ROOT/dir/s*/results.json are the seeds of
that row (`distill train` or `distill kd` results). The table shows the test error (100 - test
accuracy, %) as mean ± sample std over the seeds, and for distilled rows the teacher's own test
error next to it. Numbers come only from the files; nothing is typed by hand.
"""
import json
import pathlib
import statistics
import sys

import readme_tables


def summary(values):
    if not values:
        return "n/a"
    mean = statistics.mean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {std:.2f}"


def main():
    caption, root, specs = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
    # Training time of every run under root (the last metrics line's time_s), so the caption's
    # cost does not depend on whether the script was resumed.
    seconds = 0.0
    for metrics in root.rglob("metrics.jsonl"):
        lines = metrics.read_text().strip().splitlines()
        if lines:
            seconds += json.loads(lines[-1]).get("time_s") or 0.0
    caption = caption.replace("{train_minutes}", f"{seconds / 60:.0f}")
    lines = [caption, "",
             "| experiment | student data | model | training | seeds | test error % | teacher error % |",
             "|---|---|---|---|---|---|---|"]
    for spec in specs:
        folder, experiment, data, model, training = spec.split("|")
        results = [json.loads(p.read_text()) for p in sorted((root / folder).glob("s*/results.json"))]
        errors = [100 * (1 - r["test_accuracy"]) for r in results]
        teacher = [100 * (1 - r["teacher_test_accuracy"]) for r in results if "teacher_test_accuracy" in r]
        lines.append(f"| {experiment} | {data} | {model} | {training} | {len(results)} "
                     f"| {summary(errors)} | {summary(teacher) if teacher else '—'} |")
    readme_tables.write_block("kd", lines)


if __name__ == "__main__":
    main()
