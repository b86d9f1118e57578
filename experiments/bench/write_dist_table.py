#!/usr/bin/env python3
"""README block `table:dist-bench` from the multi-process benchmarks' JSON:
runs/bench/dist_scaling.json (experiments/bench/dist_scaling.sh),
runs/bench/mtt_dist_split.json (experiments/bench/mtt_dist_split.sh) and
runs/bench/recover_dist.json (experiments/bench/recover_dist.sh).

    experiments/bench/write_dist_table.py [RUNS_BENCH_DIR]
"""
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

bench = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                     pathlib.Path(__file__).resolve().parents[2] / "runs" / "bench")
train = json.loads((bench / "dist_scaling.json").read_text())
mtt = json.loads((bench / "mtt_dist_split.json").read_text())
recover = json.loads((bench / "recover_dist.json").read_text())

loads = ", ".join(f"{b['load_average_1min_at_end']:.1f}" for b in (train, mtt, recover))
lines = [f"Measured on this machine ({train['cores']} cores; 1-minute load average at the end of "
         f"the three scripts {loads}, the benchmarks' own processes included; other jobs on the "
         "machine skew the figures):", "",
         "| workload | 1 process x 1 thread | 1 process x 2 threads | 2 processes x 1 thread | "
         "scaling efficiency (2p vs 2 x 1p) | all-reduced per rank |",
         "|---|---|---|---|---|---|"]
ips = train["images_per_s"]
lines.append(f"| `train` ({train['workload']}) | {ips['1 process x 1 thread']} img/s "
             f"| {ips['1 process x 2 threads']} img/s | {ips['2 processes x 1 thread']} img/s "
             f"| {train['scaling_efficiency_2p_vs_1p']:.2f} "
             f"| {train['allreduce_payload_bytes_per_step'] / 2**20:.2f} MiB per step |")
s = mtt["seconds_per_iteration"]
for split in ("batch", "class"):
    lines.append(f"| `mtt`, {split} split ({mtt['workload']}) | {s['1 process x 1 thread']} s/it "
                 f"| {s['1 process x 2 threads']} s/it "
                 f"| {s[f'2 processes x 1 thread, {split} split']} s/it "
                 f"| {mtt[f'scaling_efficiency_{split}_split']:.2f} "
                 f"| {mtt['allreduce_bytes_per_rank_per_iteration'] / 2**20:.1f} MiB per iteration |")
t = recover["seconds"]
lines.append(f"| `synth recover`, batches over ranks ({recover['workload']}) "
             f"| {t['1 process x 1 thread']} s | {t['1 process x 2 threads']} s "
             f"| {t['2 processes x 1 thread']} s | {recover['scaling_efficiency_2p_vs_1p']:.2f} "
             f"| {recover['allreduce_bytes_per_rank'] / 2**20:.2f} MiB once |")
readme_tables.write_block("dist-bench", lines)
