#!/usr/bin/env bash
# `distill bench train` at the evaluation batch shapes (100 = IPC 10 full batch, 256 = protocol
# batch) for ConvNet-3 and ResNet-18; one JSON line each, appended to runs/bench/train.jsonl, and
# the README table.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/experiments/setup/build.sh" distill >/dev/null
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
out=$root/runs/bench
mkdir -p "$out"
: > "$out/train.jsonl"
# ConvNet-3 at both batches; ResNet-18 (the costliest evaluation student) at the protocol batch.
# Each run folder is scratch, redone by every invocation: --overwrite replaces the earlier one
# (distill refuses a folder holding a run without it).
for run in convnet:100 convnet:256 resnet18:256; do
  arch=${run%:*} batch=${run#*:}
  "$distill" bench train --set bench.model.arch="$arch" --set bench.batch="$batch" \
    --set bench.steps="${STEPS:-10}" --set bench.python_script="$root/experiments/bench/train_step.py" \
    --overwrite --out "$out/train_${arch}_$batch" | tail -n 1 >> "$out/train.jsonl"
done
/usr/bin/python3 "$root/experiments/bench/write_bench_table.py" "$out/train.jsonl"
