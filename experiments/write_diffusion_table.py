#!/usr/bin/env python3
"""Writes the README block `table:diffusion` (and prints it) from the runs of
experiments/fashion_mnist_diffusion.sh: one row per sample set (teacher at each sampler and step
count, PD students on data and data-free, CD with one- and two-step consistency sampling, hybrid
teacher-then-student sampling), with FCD, precision/recall, coverage and the sampling throughput
of `distill diffusion sample`, plus the compute each model cost. Numbers come only from the files.

    experiments/write_diffusion_table.py RUN_ROOT
"""
import json
import pathlib
import re
import sys
import tomllib

from readme_tables import write_block

out = pathlib.Path(sys.argv[1])
SAMPLERS = {"ddimvpcosine": "ddim, vp_cosine grid: PD's teacher"}
STUDENTS = {"pd_dataset": "PD student", "pd_none": "PD student, data-free", "cd": "CD student"}


def describe(name):
    """(label, steps, order) of a sample set's folder name."""
    m = re.fullmatch(r"teacher_(\w+?)_(\d+)", name)
    if m:
        return f"teacher ({SAMPLERS.get(m[1], m[1])})", int(m[2]), 0
    m = re.fullmatch(r"(hybrid_)?(pd(\d*)_dataset|pd_none|cd)_(\d+)(?:_(tau[\d.]+|rho7))?", name)
    if not m:
        sys.exit(f"unexpected sample set {name}")
    hybrid, kind, pd_from, steps, sampling = m.groups()
    label = STUDENTS[kind.replace(pd_from or "", "")]
    if pd_from:
        label += f" from {pd_from} teacher steps"
    if sampling == "rho7":
        label += ", levels on EDM's rho-7 grid from 80 to 0.5"
    elif sampling:
        label += f", re-noised to sigma {sampling[3:]}"
    if hybrid:
        label = "hybrid: teacher's first step, then " + label
    return label, int(steps), 2 if hybrid else 1


def seconds(run):
    """Wall-clock seconds of a run (metrics.jsonl's time_s is cumulative over resumes)."""
    lines = (out / run / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])["time_s"] if lines else float("nan")


def setting(run, *keys):
    value = tomllib.loads((out / run / "config.toml").read_text())
    for key in keys:
        value = value[key]
    return value


rows = []
for path in sorted((out / "scores").glob("*/results.json")):
    name = path.parent.name
    score = json.loads(path.read_text())
    sampled = json.loads((out / "samples" / name / "results.json").read_text())
    label, steps, order = describe(name)
    rows.append((order, label, steps, score, sampled))
if not rows:
    sys.exit(f"no scores/*/results.json in {out}")
rows.sort(key=lambda r: (r[0], r[1], r[2]))
teacher = json.loads((out / "teacher" / "results.json").read_text())
first = rows[0][3]

budget = [f"teacher {teacher['parameters'] / 1e6:.2f}M-parameter U-Net, {teacher['steps']} steps "
          f"of {teacher['batch']} images, {seconds('teacher') / 60:.0f} min"]
for run in sorted((p.name for p in out.iterdir() if p.is_dir() and
                  re.fullmatch(r"pd\d*_(dataset|none)_\d|cd", p.name)),
                 key=lambda name: (name.rsplit("_", 1)[0], -int(name[-1]) if name != "cd" else 0)):
    if not (out / run / "results.json").exists():
        continue
    if run == "cd":
        iterations = setting(run, "distill", "consistency", "iterations")
        batch = setting(run, "distill", "consistency", "batch")
        budget.append(f"CD {iterations} iterations of {batch}, {seconds(run) / 60:.0f} min")
        continue
    section = ("distill", "progressive")
    data = "data-free" if "_none_" in run else "data"
    budget.append(f"PD ({data}) {setting(run, *section, 'teacher_steps')} -> "
                  f"{setting(run, *section, 'student_steps')} steps, "
                  f"{setting(run, *section, 'iterations')} iterations per halving of "
                  f"{setting(run, *section, 'batch')}, {seconds(run) / 60:.0f} min")
lines = [
    f"Compute (one 2-core CPU, `experiments/fashion_mnist_diffusion.sh` defaults): "
    + "; ".join(budget) + ". "
    f"FCD in the `{first['feature_layer']}` features of the project's ConvNet classifier (not "
    f"FID); {first['samples']} samples per row against {first['reference']['count']} "
    f"{first['reference']['split']} images; steps are sampler steps (Heun evaluates the network "
    "2 x steps - 1 times); images/s from `distill diffusion sample` on this machine with 1-2 "
    "threads while other jobs ran (a rough guide, not a benchmark).",
    "",
    "| model | steps | FCD | precision | recall | coverage | images/s |",
    "|---|---|---|---|---|---|---|",
]
for _, label, steps, s, sampled in rows:
    lines.append(f"| {label} | {steps} | {s['fcd']:.2f} | {s['precision']:.3f} | "
                 f"{s['recall']:.3f} | {s['coverage']:.3f} | "
                 f"{sampled['images_per_second']:.1f} |")

# The yardsticks, computed from the rows: 4-step students against the teacher's full-step
# FCD (its most steps, best sampler), 1-step students against the teacher's own 1-step DDIM.
fcd = {(label, steps): s["fcd"] for _, label, steps, s, _ in rows}
teacher_rows = [(steps, value, label) for (label, steps), value in fcd.items()
                if label.startswith("teacher")]
most = max(steps for steps, _, _ in teacher_rows)
full, full_label = min((value, label) for steps, value, label in teacher_rows if steps == most)
one_step = fcd.get(("teacher (ddim)", 1))
checks = []
pd_labels = sorted({label for label, _ in fcd if label.startswith("PD student")})
students = sorted({label for label, _ in fcd if label.startswith(("PD", "CD"))})
for label in students:
    if (label, 4) in fcd:
        ratio = fcd[(label, 4)] / full
        checks.append(f"{label} at 4 steps: {ratio:.2f}x the teacher's {most}-step FCD "
                      f"({full_label}, {full:.2f}); goal <= 1.3x: "
                      f"{'met' if ratio <= 1.3 else 'not met'}")
pd_teachers = {steps: value for (label, steps), value in fcd.items() if "PD's teacher" in label}
for label in pd_labels:
    m = re.search(r"from (\d+) teacher steps", label)
    start = int(m[1]) if m else min(pd_teachers, default=None)
    if (label, 4) in fcd and start in pd_teachers:
        checks.append(f"{label} at 4 steps: {fcd[(label, 4)] / pd_teachers[start]:.2f}x the FCD "
                      f"of the sampler it was distilled from (the teacher's {start}-step DDIM on "
                      f"the vp_cosine grid, {pd_teachers[start]:.2f})")
for label in pd_labels + ["CD student"]:
    steps = 1
    if (label, steps) in fcd and one_step:
        checks.append(f"{label} at 1 step: FCD {one_step / fcd[(label, steps)]:.1f}x lower than "
                      f"the teacher's own 1-step DDIM ({one_step:.2f})")
if checks:
    lines += ["", "Against the issue's yardsticks (computed from the rows above):", ""]
    lines += [f"- {c}" for c in checks]
print("\n".join(lines))
write_block("diffusion", lines)
