#!/usr/bin/env bash
# `distill bench mtt` on the reference MTT workload (ConvNet-3 w128 instancenorm, 1x28x28, IPC 10,
# batch_syn 100, DSA) at syn_steps 10/30/80: one JSON line each into runs/bench/mtt.jsonl, then
# the README table. The Python reference (experiments/bench/mtt_step.py, unrolled autograd as the
# MTT code) runs in the same invocation at 10 and 30 steps; at 80 it needs ~40 GiB (it grows
# ~0.5 GiB per step), more than this machine has, so it is skipped there.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/experiments/setup/build.sh" distill >/dev/null
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
out=$root/runs/bench
mkdir -p "$out"
: > "$out/mtt.jsonl"
# Each run folder is scratch, redone by every invocation: --overwrite replaces the earlier one
# (distill refuses a folder holding a run without it).
run() {  # syn_steps meta_grad python
  "$distill" bench mtt --ipc 10 --syn-steps "$1" --batch-syn 100 --iters "${ITERS:-2}" --meta-grad "$2" \
    --set bench.python="$3" --set mtt.python_script="$root/experiments/bench/mtt_step.py" \
    --overwrite --out "$out/mtt_$1_$2" --no-progress | tail -n 1 >> "$out/mtt.jsonl"
}
run 10 adjoint /usr/bin/python3
run 10 unroll ""
run 30 adjoint /usr/bin/python3
run 80 adjoint ""
/usr/bin/python3 "$root/experiments/bench/write_mtt_table.py" "$out/mtt.jsonl"
