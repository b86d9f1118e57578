#!/usr/bin/env python3
"""Writes the README block `table:diffusion` (and prints it) from the score runs of
experiments/fashion_mnist_diffusion.sh: one row per sample set (teacher at each sampler and step
count, PD students on data and data-free, CD), with FCD, precision/recall, coverage and the
sampling throughput of `distill diffusion sample`. Numbers come only from the files.

    experiments/write_diffusion_table.py RUN_ROOT
"""
import json
import pathlib
import sys

from readme_tables import write_block

out = pathlib.Path(sys.argv[1])
LABELS = {"teacher": "teacher", "pd_dataset": "PD student", "pd_none": "PD student, data-free",
          "cd": "CD student"}


def describe(name):
    parts = name.split("_")
    if parts[0] == "teacher":
        return f"teacher ({parts[1]})", int(parts[2])
    return LABELS["_".join(parts[:-1])], int(parts[-1])


rows = []
for path in sorted((out / "scores").glob("*/results.json")):
    name = path.parent.name
    score = json.loads(path.read_text())
    sampled = json.loads((out / "samples" / name / "results.json").read_text())
    label, steps = describe(name)
    rows.append((label, steps, score, sampled))
if not rows:
    sys.exit(f"no scores/*/results.json in {out}")
rows.sort(key=lambda r: (not r[0].startswith("teacher"), r[0], r[1]))
teacher = json.loads((out / "teacher" / "results.json").read_text())
first = rows[0][2]
lines = [
    f"Teacher: U-Net trained {teacher.get('steps', '?')} steps by `distill diffusion train`; FCD "
    f"in the `{first['feature_layer']}` features of the project's ConvNet classifier (not FID); "
    f"{first['samples']} samples per row against {first['reference']['count']} "
    f"{first['reference']['split']} images; steps are sampler steps (Heun evaluates the network "
    "2 x steps - 1 times); images/s from `distill diffusion sample` on this machine.",
    "",
    "| model | steps | FCD | precision | recall | coverage | images/s |",
    "|---|---|---|---|---|---|---|",
]
for label, steps, s, sampled in rows:
    lines.append(f"| {label} | {steps} | {s['fcd']:.2f} | {s['precision']:.3f} | "
                 f"{s['recall']:.3f} | {s['coverage']:.3f} | "
                 f"{sampled['images_per_second']:.1f} |")
print("\n".join(lines))
write_block("diffusion", lines)
