#!/usr/bin/env python3
"""INFER on Fashion-MNIST: the summary JSON and the README table (<!-- table:infer-fashion-mnist -->).

    experiments/write_infer_table.py RUN_DIR IPC [IPC ...]   # collect RUN_DIR's runs, then write
    experiments/write_infer_table.py --check                  # README block == the JSON's table?

Collecting reads the run folders of experiments/fashion_mnist_infer.sh (eval results.json, synth
infer results.json, the effective configs) for the IPCs given and stores them as rows of
experiments/results/infer_fashion_mnist.json ({"table", "dataset", "rows"}; rows of other IPCs
already in the file are kept). The README table is then drawn from that file only, so it can be
checked without the runs (--check exits 1 when the README differs)."""
import datetime
import json
import pathlib
import statistics
import sys
import tomllib

import readme_tables

NAME = "infer-fashion-mnist"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "infer_fashion_mnist.json"


def eval_row(folder):
    """The one result row of an eval run folder, and the date its results were written."""
    path = folder / "results.json"
    row = json.loads(path.read_text())["results"][0]
    date = datetime.date.fromtimestamp(path.stat().st_mtime).isoformat()
    return row, date


def stats(accuracies):
    """Mean and population std in % (as distill's tables)."""
    return 100 * statistics.fmean(accuracies), 100 * statistics.pstdev(accuracies)


def collect(run, ipc):
    d = run / f"ipc{ipc}"
    infer = json.loads((d / "infer" / "results.json").read_text())
    infer_config = tomllib.loads((d / "infer" / "config.toml").read_text())["synth"]["infer"]
    committee = json.loads((run / "committee" / "results.json").read_text())["members"]
    committee_config = tomllib.loads((run / "committee" / "config.toml").read_text())["committee"]
    eval_config = tomllib.loads((d / "eval_infer" / "config.toml").read_text())["eval"]
    epochs = eval_config["train"]["epochs"]
    members = len(committee)
    budget_common = (f"committee of {members} x {committee_config['train']['epochs']} epochs; "
                     f"students: DC protocol {epochs} epochs")
    rows = []
    cases = [
        ("eval_infer", "infer", "interpolated", False, "infer/syn.pt",
         f"{infer['compensators']} compensators x {infer_config['iterations']} steps "
         f"({infer['seconds'] / 60:.1f} min); {infer['stored_images']} images stored of "
         f"{infer['budget_images']}, {infer['training_images']} trained on; Mixup"),
        ("eval_real_logits", "random-real", "interpolated", True, "real_logits/syn.pt",
         "committee mean logits of the random images; Mixup"),
        ("eval_real_hard", "random-real", "hard", True, "real/syn.pt", "hard labels, no Mixup"),
    ]
    for folder, method, labels, baseline, set_name, budget in cases:
        row, date = eval_row(d / folder)
        mean, std = stats(row["last_accuracy"])
        student_minutes = sum(row.get("seconds", [])) / 60 if row.get("seconds") else None
        rows.append({
            "set": f"ipc{ipc}/{set_name}" if method != "random-real" else "random-real",
            "method": method, "ipc": ipc, "model": row["model"], "labels": labels,
            "baseline": baseline, "runs": len(row["last_accuracy"]), "mean": round(mean, 2),
            "std": round(std, 2), "accuracies": row["last_accuracy"],
            "budget": budget_common + "; " + budget +
            (f"; students {student_minutes:.0f} min" if student_minutes else ""),
            "label_temperature": infer_config["T"] if labels == "interpolated" else None,
            "date": date})
    return rows


def load():
    return readme_tables.load_summary(RESULTS, NAME)


def table_lines(summary):
    rows = summary["rows"]
    if not rows:
        return ["Not run yet."]
    lines = [
        "INFER on Fashion-MNIST against random real images with the same labels "
        "(`experiments/fashion_mnist_infer.sh`, summary `experiments/results/infer_fashion_mnist.json`): "
        "ConvNet-3 students, last-epoch test accuracy % (mean ± std over the runs). "
        "\"interpolated\" = the committee's mean logits, blended under Mixup and softened at T:",
        "",
        "| IPC | set | labels | runs | accuracy % | beats random real (same labels) by more than the spread | budget | date |",
        "|---|---|---|---|---|---|---|---|"]
    for row in sorted(rows, key=lambda r: (r["ipc"], r["baseline"], r["labels"])):
        verdict = "—"
        if not row["baseline"]:
            base = [r for r in rows if r["baseline"] and r["ipc"] == row["ipc"]
                    and r["labels"] == row["labels"]]
            if base:
                b = base[0]
                margin = row["mean"] - b["mean"]
                verdict = (f"{'yes' if margin > max(row['std'], b['std']) else 'no'} "
                           f"({margin:+.2f} vs ±{max(row['std'], b['std']):.2f})")
        lines.append(f"| {row['ipc']} | {row['method']} | {row['labels']} | {row['runs']} | "
                     f"{row['mean']:.2f} ± {row['std']:.2f} | {verdict} | {row['budget']} | "
                     f"{row['date']} |")
    return lines


def main():
    if sys.argv[1:] == ["--check"]:
        readme_tables.check_block(NAME, table_lines(load()), RESULTS.name)
        return
    run, ipcs = pathlib.Path(sys.argv[1]), [int(i) for i in sys.argv[2:]]
    summary = load()
    summary["rows"] = [r for r in summary["rows"] if r["ipc"] not in ipcs]
    for ipc in ipcs:
        summary["rows"] += collect(run, ipc)
    readme_tables.write_summary(RESULTS, summary)
    readme_tables.write_block(NAME, table_lines(summary))


if __name__ == "__main__":
    main()
