#!/usr/bin/env bash
# `distill synth recover` on 2 processes (issue 8): rank r recovers batches r, r+W, ... (no
# communication until one all-reduce of the set). Runs recovery of IPC 10 in 2 batches
# (batch_ipc 5) for ITERS steps per batch as 1 process x 1 thread, 1 process x 2 threads and
# 2 processes x 1 thread, and writes runs/bench/recover_dist.json: seconds of recovery
# (results.json's own timer, model loading excluded), scaling efficiency and the bytes
# all-reduced (the set, once, float32).
#   experiments/bench/recover_dist.sh COMMITTEE_TOML [distill data flags...]
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "${DISTILL:-}" ] || "$root/experiments/setup/build.sh" distill >/dev/null
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
committee=$1; shift
out=${OUT:-$root/runs/bench/recover_dist}
port=${MASTER_PORT:-29575}
mkdir -p "$out"
common=(synth recover --committee "$committee" --ipc 10 --iterations "${ITERS:-200}"
        --set synth.recover.batch_ipc=5 --set synth.recover.checkpoint_every=0 --no-progress "$@")
for run in p1t1 p1t2 p2t1; do rm -rf "${out:?}/$run"; done
OMP_NUM_THREADS=1 "$distill" "${common[@]}" --threads 1 --out "$out/p1t1" >"$out/p1t1.log" 2>&1
OMP_NUM_THREADS=2 "$distill" "${common[@]}" --threads 2 --out "$out/p1t2" >"$out/p1t2.log" 2>&1
OMP_NUM_THREADS=1 /usr/bin/torchrun --nproc_per_node=2 --master_port="$port" -r 1 -t 1 \
  --no_python "$distill" "${common[@]}" --threads 1 --out "$out/p2t1" >"$out/p2t1.log" 2>&1
BENCH_DIR="$root/experiments/bench" /usr/bin/python3 - "$out" <<'PY'
import json, os, sys
sys.path.insert(0, os.environ['BENCH_DIR'])
import bench_result  # noqa: E402
import torch
out = sys.argv[1]
r = {run: json.load(open(os.path.join(out, run, "results.json"))) for run in ("p1t1", "p1t2", "p2t1")}
s = {run: r[run]["seconds"] for run in r}
pixels = torch.load(os.path.join(out, "p1t1", "syn.pt"))["images"].numel()
result = {
    "workload": f"distill synth recover, IPC 10 in 2 batches of 5 images per class, "
                f"{r['p1t1']['steps']} steps in all",
    "seconds": {"1 process x 1 thread": round(s["p1t1"], 2),
                "1 process x 2 threads": round(s["p1t2"], 2),
                "2 processes x 1 thread": round(s["p2t1"], 2)},
    "scaling_efficiency_2p_vs_1p": round(s["p1t1"] / (2 * s["p2t1"]), 3),
    "speedup_2p_vs_1p_2threads": round(s["p1t2"] / s["p2t1"], 3),
    "allreduce_bytes_per_rank": 4 * pixels,
    **bench_result.machine(),
}
bench_result.write(os.path.join(out, "..", "recover_dist.json"), result)
PY
