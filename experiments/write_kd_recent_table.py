#!/usr/bin/env python3
"""Recent KD methods on Fashion-MNIST: the summary JSON and the README table (<!-- table:kd-recent -->).

    experiments/write_kd_recent_table.py RUN_ROOT "SEEDS" TEACHER_EPOCHS   # collect, write
    experiments/write_kd_recent_table.py --check        # README block == the JSON's table?

Collecting reads RUN_ROOT/<method>_<fraction>/s*/results.json (`distill kd`) into
experiments/results/kd_recent_fashion_mnist.json ({"table", "dataset", "rows"}); the README table is
drawn from that file only. Test error = 100 - test accuracy (%), mean ± sample std over seeds; the threads per run are the
runs' own run.threads (config.toml)."""
import datetime
import json
import pathlib
import statistics
import sys

import readme_tables

NAME = "kd-recent"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "kd_recent_fashion_mnist.json"
METHODS = [("hard", "hard labels (ce)"),
           ("hinton", "Hinton KD T 4 (.7 soft + .3 hard)"),
           ("pld", "PLD T 4 (alone)"),
           ("dhkd", "DHKD: ce + BinaryKL-Norm T 2 on an auxiliary head (hidden1)"),
           ("nd", "KD + ND: ce + Hinton T 4 + ND (hidden1 vs the teacher's embedding class means)"),
           ("ofa", "OFA eps 1.5, T 1: ce + OFA on the output and on branches from hidden0, hidden1"),
           ("ofa_output", "OFA eps 1.5, T 1 on the output only (no branches): ce + OFA"),
           ("self_derived", "self-distillation, no teacher: 2 generations, alpha derived per "
                            "generation (10 % held out)"),
           ("self_fixed", "self-distillation, no teacher: 2 generations, alpha fixed at 0.6"),
           ("tgeo", "TGeo-KD T 4: per-example Hinton KD / ce ratios from the fusion network "
                    "(10 % held out)")]


def run_threads(paths):
    """The run.threads each run recorded in its effective config (config.toml beside results)."""
    import tomllib  # Python 3.11: only collecting needs it, not --check
    threads = sorted({tomllib.loads((p.parent / "config.toml").read_text())["run"]["threads"]
                      for p in paths})
    return "/".join(str(t) for t in threads)


def collect(root, seeds, teacher_epochs):
    teacher = json.loads((root / "teacher" / "s0" / "results.json").read_text())
    rows = []
    for fraction in ("0.03", "0.1"):
        for method, training in METHODS:
            paths = sorted((root / f"{method}_{fraction}").glob("s*/results.json"))
            if not paths:  # a method the run did not include
                continue
            results = [json.loads(p.read_text()) for p in paths]
            errors = [100 * (1 - r["test_accuracy"]) for r in results]
            date = datetime.date.fromtimestamp(max(p.stat().st_mtime for p in paths)).isoformat()
            rows.append({
                "set": f"{method}_{fraction}", "method": method, "training": training,
                "data_fraction": float(fraction), "model": "mlp 2x100", "baseline": method == "hard",
                "runs": len(errors), "mean": round(statistics.mean(errors), 2),
                "std": round(statistics.stdev(errors), 2) if len(errors) > 1 else 0.0,
                "errors": errors, "teacher_error": round(100 * (1 - teacher["test_accuracy"]), 2),
                "budget": f"teacher ConvNet conv32-conv32 {teacher_epochs} epochs; student "
                          f"{200 if fraction == '0.03' else 150} epochs; seeds {seeds}; "
                          f"{run_threads(paths)} thread(s) per run",
                "date": date})
            if method == "tgeo":  # the fusion network's mean ratio over the last epoch, per seed
                rows[-1]["mean_ratios"] = [
                    json.loads((p.parent / "metrics.jsonl").read_text().splitlines()[-1])
                    ["tgeo_mean_ratio"] for p in paths]
            if method.startswith("self_"):  # the ground-truth weight of generations 1, 2 per seed
                rows[-1]["ground_truth_weights"] = [
                    [r[f"gen{g}_ground_truth_weight"] for g in (1, 2)] for r in results]
    return {"table": NAME, "dataset": "fashion-mnist", "metric": "test error %", "rows": rows}


def table_lines(summary):
    if not summary["rows"]:
        return ["Not run yet."]
    rows = summary["rows"]
    lines = ["Recent KD methods on Fashion-MNIST (`experiments/kd_recent_fashion_mnist.sh`, summary "
             "`experiments/results/kd_recent_fashion_mnist.json`): ConvNet teacher (test error "
             f"{rows[0]['teacher_error']:.2f} %) into an MLP 2x100, test error % (mean ± std over "
             "seeds); lower is better:", "",
             "| data | method | seeds | test error % | vs hard labels | vs Hinton KD | date |",
             "|---|---|---|---|---|---|---|"]
    for row in rows:
        same = {r["method"]: r for r in rows if r["data_fraction"] == row["data_fraction"]}
        def delta(other):
            if other not in same or other == row["method"]:
                return "—"
            return f"{row['mean'] - same[other]['mean']:+.2f}"
        lines.append(f"| {100 * row['data_fraction']:g} % | {row['training']} | {row['runs']} | "
                     f"{row['mean']:.2f} ± {row['std']:.2f} | {delta('hard')} | {delta('hinton')} | "
                     f"{row['date']} |")
    return lines


def load():
    return readme_tables.load_summary(RESULTS, NAME)


def main():
    if sys.argv[1:] == ["--check"]:
        readme_tables.check_block(NAME, table_lines(load()), RESULTS.name)
        return
    summary = collect(pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3])
    readme_tables.write_summary(RESULTS, summary)
    readme_tables.write_block(NAME, table_lines(summary))


if __name__ == "__main__":
    main()
