#!/usr/bin/env python3
"""DisWOT's training-free scores against distilled accuracy: the summary JSON and the README table
(<!-- table:kd-search -->).

    experiments/write_kd_search_table.py RUN_ROOT "SEEDS" "SCORE_SEEDS" EPOCHS TEACHER_EPOCHS
    experiments/write_kd_search_table.py --check     # README block == the JSON's table?

Collecting reads RUN_ROOT/score/s*/search.json (`distill kd search` on the listed candidates;
score_random_teacher/ the same against a random teacher),
RUN_ROOT/<candidate>/s*/results.json (`distill kd`) and RUN_ROOT/evolution/s0/search.json into
experiments/results/kd_search_fashion_mnist.json; the README table is drawn from that file only.
Spearman's rank correlation (mean ranks for ties) is computed here, independently of the C++ one."""
import datetime
import json
import pathlib
import statistics
import sys

import readme_tables

NAME = "kd-search"
RESULTS = pathlib.Path(__file__).resolve().parent / "results" / "kd_search_fashion_mnist.json"


def ranks(values):
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra)
    vb = sum((y - mb) ** 2 for y in rb)
    return cov / (va * vb) ** 0.5


def collect(root, seeds, score_seeds, epochs, teacher_epochs):
    teacher = json.loads((root / "teacher" / "s0" / "results.json").read_text())
    scores = {}  # name -> {score seed: row}
    for seed in score_seeds.split():
        for row in json.loads((root / "score" / f"s{seed}" / "search.json").read_text())["ranking"]:
            scores.setdefault(row["name"], {})[seed] = row
    rows, paths = [], []
    for name, by_seed in scores.items():
        runs = sorted((root / name).glob("s*/results.json"))
        paths += runs
        accuracies = [100 * json.loads(p.read_text())["test_accuracy"] for p in runs]
        rows.append({
            "candidate": name, "params": next(iter(by_seed.values()))["params"],
            "scores": [by_seed[s]["score"] for s in score_seeds.split()],
            "mean_score": statistics.mean(by_seed[s]["score"] for s in score_seeds.split()),
            "accuracies": accuracies, "mean_accuracy": round(statistics.mean(accuracies), 2),
            "std_accuracy": round(statistics.stdev(accuracies), 2) if len(accuracies) > 1 else 0.0})
    accuracy = [r["mean_accuracy"] for r in rows]
    correlations = {
        f"score seed {s}": round(spearman([r["scores"][i] for r in rows], accuracy), 3)
        for i, s in enumerate(score_seeds.split())}
    correlations["mean score"] = round(spearman([r["mean_score"] for r in rows], accuracy), 3)
    random_teacher = {}  # the same candidates scored against a random teacher (the code's way)
    for seed in score_seeds.split():
        path = root / "score_random_teacher" / f"s{seed}" / "search.json"
        for row in json.loads(path.read_text())["ranking"]:
            random_teacher.setdefault(row["name"], []).append(row["score"])
    for r in rows:
        r["mean_score_random_teacher"] = statistics.mean(random_teacher[r["candidate"]])
    correlations["mean score, random teacher"] = round(
        spearman([r["mean_score_random_teacher"] for r in rows], accuracy), 3)
    correlations["parameter count"] = round(spearman([r["params"] for r in rows], accuracy), 3)
    evolution = json.loads((root / "evolution" / "s0" / "search.json").read_text())
    date = datetime.date.fromtimestamp(max(p.stat().st_mtime for p in paths)).isoformat()
    return {"table": NAME, "dataset": "fashion-mnist", "metric": "test accuracy %",
            "teacher_error": round(100 * (1 - teacher["test_accuracy"]), 2),
            "budget": f"teacher ConvNet conv32-conv32 {teacher_epochs} epochs; students Hinton KD "
                      f"T 4 (.7 soft + .3 hard), 10 % of the data, {epochs} epochs, seeds {seeds}; "
                      f"scores: one batch of 64, seeds {score_seeds}",
            "rows": sorted(rows, key=lambda r: -r["mean_score"]), "spearman": correlations,
            "evolution": {"scored": evolution["scored"], "best": evolution["ranking"][0]},
            "date": date}


def table_lines(summary):
    if not summary["rows"]:
        return ["Not run yet."]
    accuracy_rank = ranks([-r["mean_accuracy"] for r in summary["rows"]])
    lines = ["DisWOT scores (`distill kd search`) against distilled accuracy on Fashion-MNIST "
             "(`experiments/kd_search_fashion_mnist.sh`, summary "
             "`experiments/results/kd_search_fashion_mnist.json`): ConvNet teacher (test error "
             f"{summary['teacher_error']:.2f} %); {summary['budget']}; ordered by mean score:", "",
             "| candidate | parameters | DisWOT score (mean of seeds) | distilled test accuracy % | "
             "rank by accuracy |", "|---|---|---|---|---|"]
    for row, rank in zip(summary["rows"], accuracy_rank):
        lines.append(f"| {row['candidate']} | {row['params']} | {row['mean_score']:.4f} | "
                     f"{row['mean_accuracy']:.2f} ± {row['std_accuracy']:.2f} | {rank:g} |")
    rho = summary["spearman"]
    lines += ["", "Spearman's rank correlation with distilled accuracy: " +
              ", ".join(f"{k} {v:+.3f}" for k, v in rho.items()) +
              f". The evolution (default space, 20 x 100 cycles) scored "
              f"{summary['evolution']['scored']} candidates; its best was "
              f"{summary['evolution']['best']['name']} ({summary['evolution']['best']['params']} "
              f"parameters, score {summary['evolution']['best']['score']:.4f}). "
              f"Measured {summary['date']}."]
    return lines


def main():
    if sys.argv[1:] == ["--check"]:
        readme_tables.check_block(NAME, table_lines(readme_tables.load_summary(RESULTS, NAME)),
                                  RESULTS.name)
        return
    summary = collect(pathlib.Path(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4],
                      sys.argv[5])
    readme_tables.write_summary(RESULTS, summary)
    readme_tables.write_block(NAME, table_lines(summary))


if __name__ == "__main__":
    main()
