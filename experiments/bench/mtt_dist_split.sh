#!/usr/bin/env bash
# Trajectory matching on 2 processes (issue 8): which split of the work to use. Runs `distill mtt`
# (ConvNet-3 w128 instancenorm on Fashion-MNIST, IPC 10, batch_syn 50, syn_steps 20, DSA,
# adjoint meta-gradient) for ITERS iterations as
#   1p x 1t        one process, one thread (the unit a process brings)
#   1p x 2t        one process, two threads (what the same cores give without c10d)
#   2p x 1t batch  two processes, every student step's batch split in contiguous halves
#   2p x 1t class  two processes, the batch split by class (class mod 2)
# and writes runs/bench/mtt_dist_split.json: median seconds per iteration (iterations 2..ITERS;
# the first warms the allocator), scaling efficiency s(1p x 1t) / (2 s(2p x 1t)), speedup over
# 1p x 2t, and the bytes each rank all-reduces per iteration (float32: the parameter gradient at
# every forward step and the Hessian-vector product at every adjoint step, then the image and lr
# gradients once). Other jobs sharing the cores skew the figures: the load average is recorded.
# EXPERTS: a folder from `distill experts` (default: the one experiments/fashion_mnist_mtt.sh
# trains; when missing, 1 expert of 4 epochs is trained here).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
[ -n "${DISTILL:-}" ] || "$root/experiments/setup/build.sh" distill >/dev/null
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
out=${OUT:-$root/runs/bench/mtt_dist_split}
experts=${EXPERTS:-$root/runs/fashion_mnist_mtt/experts}
iters=${ITERS:-6}
steps=${SYN_STEPS:-20}
port=${MASTER_PORT:-29573}
mkdir -p "$out"
if [ ! -f "$experts/replay_buffer_0.pt" ]; then
  experts=$out/experts
  # Trained once: a rerun resumes them (finished experts are skipped, an interrupted one goes on);
  # distill refuses a folder holding a run without --resume or --overwrite.
  experts_resume=()
  if [ -f "$experts/config.toml" ]; then experts_resume=(--resume); fi
  "$distill" experts --no-progress --set experts.num_experts=1 --set experts.train.epochs=4 \
    "${experts_resume[@]}" --out "$experts" >"$out/experts.log" 2>&1
fi
common=(mtt --no-progress --ipc 10 --iterations "$iters" --buffer "$experts"
        --set mtt.matching.syn_steps="$steps" --set mtt.matching.batch_syn=50
        --set mtt.matching.max_start_epoch=2 --set mtt.checkpoint_every=0)

for run in p1t1 p1t2; do rm -rf "${out:?}/$run"; done
OMP_NUM_THREADS=1 "$distill" "${common[@]}" --threads 1 --out "$out/p1t1" >"$out/p1t1.log" 2>&1
OMP_NUM_THREADS=2 "$distill" "${common[@]}" --threads 2 --out "$out/p1t2" >"$out/p1t2.log" 2>&1
for split in batch class; do
  rm -rf "${out:?}/p2t1_$split"
  # torchrun 1.13 spells its flags with underscores; `-r 1 -t 1` avoids its Python 3.11 failure
  # on the default --redirects/--tee.
  OMP_NUM_THREADS=1 /usr/bin/torchrun --nproc_per_node=2 --master_port="$port" -r 1 -t 1 \
    --no_python "$distill" "${common[@]}" --threads 1 --set mtt.dist_split="$split" \
    --out "$out/p2t1_$split" >"$out/p2t1_$split.log" 2>&1
done

# The student's parameter count: one expert epoch of the buffer (Debian's python3-torch).
params=$(/usr/bin/python3 -c "import sys, torch; e = torch.load(sys.argv[1])[0][0]; print(sum(t.numel() for t in e))" "$experts/replay_buffer_0.pt")
BENCH_DIR="$root/experiments/bench" python3 - "$out" "$steps" "$params" <<'PY'
import json, os, statistics, sys
sys.path.insert(0, os.environ['BENCH_DIR'])
import bench_result  # noqa: E402
out, steps, p = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def seconds(run):
    lines = [json.loads(l) for l in open(os.path.join(out, run, "metrics.jsonl")) if l.strip()]
    per_iter = [l["s_per_iter"] for l in lines if "s_per_iter" in l][1:]
    return statistics.median(per_iter)

s = {run: seconds(run) for run in ("p1t1", "p1t2", "p2t1_batch", "p2t1_class")}
images = 100 * 28 * 28
payload = 4 * (2 * steps * p + images + 1)
result = {
    "workload": f"distill mtt, ConvNet-3 w128 instancenorm, Fashion-MNIST IPC 10, batch_syn 50, "
                f"syn_steps {steps}, DSA, adjoint; median s/iteration over iterations 2..",
    "seconds_per_iteration": {"1 process x 1 thread": round(s["p1t1"], 3),
                              "1 process x 2 threads": round(s["p1t2"], 3),
                              "2 processes x 1 thread, batch split": round(s["p2t1_batch"], 3),
                              "2 processes x 1 thread, class split": round(s["p2t1_class"], 3)},
    "scaling_efficiency_batch_split": round(s["p1t1"] / (2 * s["p2t1_batch"]), 3),
    "scaling_efficiency_class_split": round(s["p1t1"] / (2 * s["p2t1_class"]), 3),
    "speedup_batch_split_vs_1p_2threads": round(s["p1t2"] / s["p2t1_batch"], 3),
    "parameters": p,
    "allreduce_bytes_per_rank_per_iteration": payload,
    **bench_result.machine(),
}
bench_result.write(os.path.join(out, "..", "mtt_dist_split.json"), result)
PY
