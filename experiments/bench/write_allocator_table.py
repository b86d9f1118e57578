#!/usr/bin/env python3
"""README block `table:allocator` from experiments/results/bench/allocator.jsonl
(experiments/bench/allocator.sh): per LibTorch line and allocator, the median training speed and
MTT iteration time, and peak memory, relative to distill's caching allocator on the same line.

    experiments/bench/write_allocator_table.py [ALLOCATOR_JSONL]
"""
import json
import os
import pathlib
import statistics
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import readme_tables  # noqa: E402

path = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                    pathlib.Path(__file__).resolve().parents[1] / "results" / "bench" / "allocator.jsonl")
runs = [json.loads(l) for l in path.read_text().splitlines() if l.strip()]
ALLOCATORS = ["caching", "glibc", "jemalloc", "mimalloc"]
LINES = {"debian": "1.13 (Debian)", "wheel": "2.15 (PyPI wheel)"}


def median(line, allocator, benchmark, field):
    values = [r["cpp"][field] if field in r["cpp"] else r[field] for r in runs
              if r["line"] == line and r["allocator"] == allocator and r["benchmark"] == benchmark]
    return statistics.median(values) if values else None


rounds = max(r["round"] for r in runs)
loads = [r["load_average_1min"] for r in runs]
rows = [f"CPU allocators per LibTorch line (`experiments/bench/allocator.sh`: {os.cpu_count()} cores, "
        "2 threads; train = `distill bench train`, ConvNet-3 at batch 256; MTT = `distill bench mtt`, "
        f"IPC 10, 10 student steps, adjoint; medians of {rounds} alternating rounds; 1-minute load "
        f"average {min(loads):.1f}–{max(loads):.1f}; ratios against `caching` on the same line):", "",
        "| LibTorch | allocator | train img/s | vs caching | train peak RSS MiB | MTT s/iteration | vs caching "
        "| MTT peak RSS MiB | vs caching |",
        "|---|---|---|---|---|---|---|---|---|"]
for line, name in LINES.items():
    if not any(r["line"] == line for r in runs):
        continue
    base_speed = median(line, "caching", "train", "train_images_per_s")
    base_time = median(line, "caching", "mtt", "s_per_iter")
    base_rss = median(line, "caching", "mtt", "peak_rss_mib")
    for allocator in ALLOCATORS:
        speed = median(line, allocator, "train", "train_images_per_s")
        train_rss = median(line, allocator, "train", "peak_rss_mib")
        time = median(line, allocator, "mtt", "s_per_iter")
        rss = median(line, allocator, "mtt", "peak_rss_mib")
        if None in (speed, time, rss, train_rss):
            continue
        rows.append(f"| {name} | {allocator} | {speed:.0f} | {speed / base_speed:.2f}x | {train_rss:.0f} "
                    f"| {time:.2f} | {time / base_time:.2f}x | {rss:.0f} | {rss / base_rss:.2f}x |")
print("\n".join(rows))
readme_tables.write_block("allocator", rows)
