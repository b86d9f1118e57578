#!/usr/bin/env python3
"""README table from `distill bench train` JSON lines (experiments/bench/train.sh)."""
import json
import os
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

lines = [json.loads(l) for l in pathlib.Path(sys.argv[1]).read_text().splitlines() if l.strip()]
names = {"convnet": "ConvNet-3 w128 instancenorm", "resnet18": "ResNet-18 instancenorm (cifar stem)",
         "resnet18bn": "ResNet-18 batchnorm (cifar stem)"}
rows = ["`distill bench train` (1x28x28, 10 classes, SGD step = forward + backward + "
        f"update; {os.cpu_count()} cores, threads = {lines[0]['threads']}, "
        f"{lines[0]['steps']} timed steps; `experiments/bench/train.sh`):", "",
        "| model | batch | C++ train img/s | C++ eval img/s | Python train img/s (default malloc / tuned malloc) "
        "| train speed-up vs Python (default / tuned) | eval speed-up (default / tuned) | peak RSS MiB C++ / Python |",
        "|---|---|---|---|---|---|---|---|"]
for r in lines:
    c, p, t = r["cpp"], r["python"], r["python_tuned_malloc"]
    rows.append(f"| {names.get(r['arch'], r['arch'])} | {r['batch']} | {c['train_images_per_s']:.0f} | {c['eval_images_per_s']:.0f} "
                f"| {p['train_images_per_s']:.0f} / {t['train_images_per_s']:.0f} "
                f"| {r['train_speedup_vs_python']:.2f}x / {r['train_speedup_vs_python_tuned_malloc']:.2f}x "
                f"| {r['eval_speedup_vs_python']:.2f}x / {r['eval_speedup_vs_python_tuned_malloc']:.2f}x "
                f"| {c['peak_rss_mib']:.0f} / {p['peak_rss_mib']:.0f} |")
readme_tables.write_block("bench-train", rows)
