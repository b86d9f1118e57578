#!/usr/bin/env bash
# Data-parallel scaling of `distill train` on this machine: 1 process vs 2 processes (torchrun,
# Gloo over loopback), ConvNet-3 w128 on Fashion-MNIST, the same global batch. Writes
# runs/bench/dist_scaling.json: images/s of one epoch in the middle of the run (epoch 2 of 3, no
# test evaluation inside it) for
#   1p x 1t  one process, one thread     (the unit a process brings)
#   2p x 1t  two processes, one thread each (data-parallel)
#   1p x 2t  one process, two threads    (what the same 2 cores give without c10d)
# scaling efficiency = ips(2p x 1t) / (2 ips(1p x 1t)), and the bytes all-reduced per step (the
# Trainer's one flat tensor: gradient + running statistics + 4 bookkeeping floats, float32) and
# the seconds rank 0 spent in those all-reduces during the epoch (including waiting for rank 1).
# Other jobs sharing the cores skew the figures: the load average is recorded beside them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
"$root/experiments/setup/build.sh" distill >/dev/null
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
out=${OUT:-$root/runs/bench/dist_scaling}
limit=${TRAIN_LIMIT:-6000}
batch=${BATCH:-256}
port=${MASTER_PORT:-29571}
rm -rf "$out"
mkdir -p "$out"
common=(train --epochs 3 --no-progress --set data.train_limit="$limit" --set train.batch_size="$batch"
        --set train.eval_every=0 --set train.checkpoint_every=0 --set augment.name=none
        --set model.width=128 --set model.depth=3 --set run.report_on_checkpoint=false)

OMP_NUM_THREADS=1 "$distill" "${common[@]}" --threads 1 --out "$out/p1t1" 2>"$out/p1t1.log"
OMP_NUM_THREADS=2 "$distill" "${common[@]}" --threads 2 --out "$out/p1t2" 2>"$out/p1t2.log"
# torchrun 1.13 spells its flags with underscores; `-r 1 -t 1` avoids its Python 3.11 failure on
# the default --redirects/--tee.
OMP_NUM_THREADS=1 /usr/bin/torchrun --nproc_per_node=2 --master_port="$port" -r 1 -t 1 --no_python \
  "$distill" "${common[@]}" --threads 1 --out "$out/p2t1" >"$out/p2t1.log" 2>&1

BENCH_DIR="$root/experiments/bench" python3 - "$out" "$limit" "$batch" <<'EOF'
import json, os, sys
sys.path.insert(0, os.environ['BENCH_DIR'])
import bench_result  # noqa: E402
out, limit, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

def epoch_lines(run):
    lines = [json.loads(l) for l in open(os.path.join(out, run, "metrics.jsonl")) if l.strip()]
    return {int(l["epoch"]): l for l in lines if "epoch" in l}

def epoch_seconds(run):
    e = epoch_lines(run)
    return e[2]["time_s"] - e[1]["time_s"]

def params(log):
    for line in open(os.path.join(out, log)):
        if "parameters) on" in line:
            return int(line.split("(")[1].split()[0])
    raise SystemExit("no parameter count in " + log)

ips = {run: limit / epoch_seconds(run) for run in ("p1t1", "p2t1", "p1t2")}
p = params("p1t1.log")
payload = 4 * (p + 4)  # ConvNet with instance norm has no running statistics
steps = -(-limit // batch)
result = {
    "workload": f"distill train ConvNet-3 w128 instancenorm, Fashion-MNIST first {limit} images, "
                f"global batch {batch}, no augmentation, epoch 2 of 3",
    "images_per_s": {"1 process x 1 thread": round(ips["p1t1"], 1),
                     "2 processes x 1 thread": round(ips["p2t1"], 1),
                     "1 process x 2 threads": round(ips["p1t2"], 1)},
    "scaling_efficiency_2p_vs_1p": round(ips["p2t1"] / (2 * ips["p1t1"]), 3),
    "speedup_2p_vs_1p_2threads": round(ips["p2t1"] / ips["p1t2"], 3),
    "parameters": p,
    "allreduce_payload_bytes_per_step": payload,
    "ring_allreduce_bytes_sent_per_rank_per_step_2p": payload,  # 2 (W-1)/W x payload, W = 2
    "steps_per_epoch": steps,
    "allreduce_seconds_in_epoch_2p": round(epoch_lines("p2t1")[2]["allreduce_s"], 3),
    "epoch_seconds_2p": round(epoch_seconds("p2t1"), 3),
    **bench_result.machine(),
}
bench_result.write(os.path.join(out, "..", "dist_scaling.json"), result)
EOF
