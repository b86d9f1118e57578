#!/usr/bin/env python3
"""README block `table:synth-bench` from runs/bench/synth_recover_sizes.json
(experiments/bench/synth_recover_sizes.sh): recovery speed and peak RSS per image size, IPC and
members drawn per step.

    experiments/bench/write_synth_bench_table.py [RUNS_BENCH_DIR] [RECOVERY_ITERATIONS]
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

bench = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                     pathlib.Path(__file__).resolve().parents[2] / "runs" / "bench")
iterations = int(sys.argv[2]) if len(sys.argv) > 2 else 500  # fashion_mnist_synth.sh's default
result = json.loads((bench / "synth_recover_sizes.json").read_text())
runs = result["runs"]
lines = [f"`experiments/bench/synth_recover_sizes.sh` on this machine ({result['cores']} cores, "
         f"1-minute load average {result['load_average_1min_at_end']:.1f} at the end), "
         f"{runs[0]['steps']} optimisation steps per run (all images in one batch), committee "
         f"of {runs[0]['committee']} (ConvNet-BN, LeNet, MLP); images/s assumes a "
         f"{iterations}-step recovery; speed relative to drawing 1 member in the same invocation; "
         "peak RSS includes the loaded data (all 60000 Fashion-MNIST training images at 28x28, "
         "the 3000-image folder at 32x32):",
         "",
         "| image | IPC | members drawn | s/step | image-steps/s | images/s | vs 1 member | "
         "peak RSS |",
         "|---|---|---|---|---|---|---|---|"]
for r in sorted(runs, key=lambda r: (r["image"], r["ipc"], r["draw"])):
    lines.append(f"| {r['image']} | {r['ipc']} | {r['draw']} | {r['seconds_per_step']:.2f} | "
                 f"{r['image_steps_per_s']:.0f} | {r['image_steps_per_s'] / iterations:.2f} | "
                 f"{r['speed_vs_draw_1']:.2f} | {r['peak_rss_mib']:.0f} MiB |")
print("\n".join(lines))
readme_tables.write_block("synth-bench", lines)
