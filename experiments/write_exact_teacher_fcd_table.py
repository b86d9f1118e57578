"""Writes the README block `table:exact-teacher-fcd` (and prints it) from the score runs of
experiments/fashion_mnist_exact_teacher_fcd.sh: one row per sampler and step count, plus the
real-image floor (as many random real training images, scored the same way)."""
import json
import pathlib
import sys

from readme_tables import write_block

out = pathlib.Path(sys.argv[1])
classifier = json.loads((out / "classifier" / "results.json").read_text())
rows = []
for path in sorted(out.glob("*_score/results.json")):
    r = json.loads(path.read_text())
    rows.append((r.get("sampler", "real images"), r.get("steps", 0), r))
if not rows:
    sys.exit(f"no */results.json score runs in {out}")
order = {"real images": 0}
rows.sort(key=lambda x: (order.get(x[0], 1), x[0], x[1]))
first = rows[0][2]
lines = [
    f"FCD classifier: ConvNet width 64, test accuracy {100 * classifier['test_accuracy']:.2f} %; "
    f"features `{first['feature_layer']}` ({first['feature_dim']} dims); reference "
    f"{first['reference']['count']} {first['reference']['split']} images; {first['samples']} "
    f"samples per row; k-NN metrics with k = {first['k']} on {first['reference']['manifold_count']} "
    "real images.",
    "",
    "| sampler | steps | FCD | precision | recall | density | coverage | classes covered |",
    "|---|---|---|---|---|---|---|---|",
]
for sampler, steps, r in rows:
    lines.append(
        f"| {sampler} | {steps if steps else '-'} | {r['fcd']:.2f} | {r['precision']:.3f} | "
        f"{r['recall']:.3f} | {r['density']:.3f} | {r['coverage']:.3f} | "
        f"{r['class_coverage']['covered']:.1f} |")
print("\n".join(lines))
write_block("exact-teacher-fcd", lines)
