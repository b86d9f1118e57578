#!/usr/bin/env bash
# `distill bench eval` at IPC 1, 10 and 50 (ConvNet-3 w128 instancenorm, 1x28x28, K = 5
# students of the DC/MTT protocol with DSA): student-steps/s one at a time, stacked
# (eval.batch_students), one model on a K-times larger batch (the ceiling) and the Python
# reference protocol (experiments/bench/eval_step.py) in the same invocation. One JSON line each
# into experiments/results/bench/eval.jsonl (committed), then the README table.
# Measure on a quiet machine (load < 1): the script says when it is not.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/experiments/setup/build.sh" distill >/dev/null
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
out=$root/runs/bench
results=$root/experiments/results/bench
mkdir -p "$out" "$results"
load=$(cut -d' ' -f1 /proc/loadavg)
awk -v l="$load" 'BEGIN { exit !(l >= 1) }' && echo "warning: load average $load >= 1: figures will be noisy" >&2
: > "$out/eval.jsonl"
# Steps per student: whole epochs of the protocol's batch 256 (IPC 50 = 2 steps per epoch).
for run in 1:${STEPS_IPC1:-60} 10:${STEPS_IPC10:-20} 50:${STEPS_IPC50:-6}; do
  ipc=${run%:*} steps=${run#*:}
  # Scratch run folders, redone by every invocation (--overwrite).
  "$distill" bench eval --ipc "$ipc" --students "${STUDENTS:-5}" --steps "$steps" \
    --set eval.rounds="${ROUNDS:-3}" --set eval.python_script="$root/experiments/bench/eval_step.py" \
    --overwrite --out "$out/eval_$ipc" --no-progress | tail -n 1 >> "$out/eval.jsonl"
done
cp "$out/eval.jsonl" "$results/eval.jsonl.tmp" && mv "$results/eval.jsonl.tmp" "$results/eval.jsonl"
/usr/bin/python3 "$root/experiments/bench/write_eval_table.py" "$results/eval.jsonl"
