#!/usr/bin/env bash
# INFER on Fashion-MNIST (issue 21) against random real images with the same labels, and the
# README table (<!-- table:infer-fashion-mnist -->) plus experiments/results/infer_fashion_mnist.json:
#   1. the committee of the synth comparison (ConvNet-BN, LeNet, MLP; COMMITTEE_EPOCHS epochs);
#   2. per IPC: `distill synth infer` (budget IPC images per class: k real batches + 3 compensators
#      each, ITERATIONS Adam steps per compensator, labels = the committee's mean logits at T), and
#      a random real subset of IPC images per class relabelled the same way (synth relabel
#      --set synth.relabel.form=logits): the same label type on both sides;
#   3. RUNS ConvNet-3 students on each (DC protocol: SGD 0.01, 300 epochs, DSA) with Mixup on
#      both sides (INFER's linear interpolation of the logits needs the mix), and random real
#      with hard labels for the record.
# Every run is skipped when its results.json exists, so an interrupted script continues.
# Budget knobs: IPCS, RUNS, COMMITTEE_EPOCHS, ITERATIONS, EVAL_EPOCHS, T, THREADS, EXTRA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/infer_fashion_mnist}}
ipcs=${IPCS:-10 50}
runs=${RUNS:-5}
committee_epochs=${COMMITTEE_EPOCHS:-5}
iterations=${ITERATIONS:-1000}
eval_epochs=${EVAL_EPOCHS:-300}
T=${T:-30}
threads=${THREADS:-2}
common=(--no-progress --threads "$threads")
read -r -a extra <<<"${EXTRA:-}"
common+=("${extra[@]}")

# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

start=$(date +%s)
convnet_bn='{arch="convnet", norm="batchnorm", width=64}'
run "$out/committee" committee train --set committee.train.epochs="$committee_epochs" \
  --set "committee.members=[{model=$convnet_bn}, {model={arch=\"lenet\"}}, {model={arch=\"mlp\", hidden=[256, 256]}}]"

mix=(--set eval.mixup.prob=1 --set eval.mixup.alpha=0.8)
evaluate() {  # evaluate DIR SET [extra eval flags...]
  local dir=$1 set=$2; shift 2
  run "$dir" eval --set eval.syn="$set" --set 'eval.models=["convnet"]' \
    --set eval.runs="$runs" --set eval.train.epochs="$eval_epochs" "$@"
}

for ipc in $ipcs; do
  d="$out/ipc$ipc"
  run "$d/infer" synth infer --committee "$out/committee/committee.toml" --ipc "$ipc" \
    --iterations "$iterations" --set synth.infer.T="$T"
  run "$d/real" subset --ipc "$ipc"
  run "$d/real_logits" synth relabel --committee "$out/committee/committee.toml" \
    --syn "$d/real/syn.pt" --set synth.relabel.form=logits --set synth.relabel.T="$T"
  evaluate "$d/eval_infer" "$d/infer/syn.pt" --set eval.random_real=false "${mix[@]}"
  evaluate "$d/eval_real_logits" "$d/real_logits/syn.pt" --set eval.random_real=false "${mix[@]}"
  evaluate "$d/eval_real_hard" "$d/real/syn.pt" --set eval.random_real=false
done
echo "wall time: $(( $(date +%s) - start )) s" >&2
python3 "$root/experiments/write_infer_table.py" "$out" $ipcs
