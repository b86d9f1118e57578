#!/usr/bin/env bash
# Committee soft-labeling on Fashion-MNIST (issue 6) and the README table (<!-- table:synth -->):
#   1. a committee of 3 families (ConvNet-BN, LeNet, MLP; held-out accuracies weight the votes),
#      and a single-teacher committee (the ConvNet-BN member alone: the SRe2L-style ablation);
#   2. per IPC: recover with the committee (2 members drawn per step) and with the single teacher,
#      relabel each set by its committee, and relabel a random real subset by the committee;
#   3. students (ConvNet and ResNet-18 by default) on: committee set with hard labels, with soft
#      labels, single-teacher set with soft labels, random real with committee soft labels, and
#      random real with hard labels (eval's baseline), mean ± std over RUNS students.
# Every run is skipped when its results.json exists, so an interrupted script continues.
#   VIEWS > 0 adds a row: the committee set with FKD-style stored views (VIEWS crops per image,
#   each with its committee label, replayed by the students instead of DSA).
# Budget knobs: IPCS, RUNS, STUDENTS, COMMITTEE_EPOCHS, ITERATIONS, EVAL_EPOCHS, THREADS, EXTRA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/synth_fashion_mnist}}
ipcs=${IPCS:-10 50}
runs=${RUNS:-3}
students=${STUDENTS:-convnet,resnet18}
committee_epochs=${COMMITTEE_EPOCHS:-5}
iterations=${ITERATIONS:-500}
eval_epochs=${EVAL_EPOCHS:-300}
T=${T:-4}
views=${VIEWS:-0}
threads=${THREADS:-2}
common=(--no-progress --threads "$threads")
read -r -a extra <<<"${EXTRA:-}"
common+=("${extra[@]}")

# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

convnet_bn='{arch="convnet", norm="batchnorm", width=64}'
run "$out/committee" committee train --set committee.train.epochs="$committee_epochs" \
  --set "committee.members=[{model=$convnet_bn}, {model={arch=\"lenet\"}}, {model={arch=\"mlp\", hidden=[256, 256]}}]"
# The single teacher is the committee's first member, loaded (not retrained).
run "$out/single" committee train \
  --set "committee.members=[{checkpoint=\"$out/committee/member_0/model.pt\", model=$convnet_bn}]"

# Students: the DC protocol; soft labels are learned with KL at temperature T. One run folder per
# (set, student architecture), DIR/ARCH, so students can be added later (STUDENTS) without
# retraining the others; STUDENTS_IPC<N> overrides STUDENTS for one IPC (e.g. STUDENTS_IPC50=convnet).
evaluate() {  # evaluate DIR SET [extra eval flags...]
  local dir=$1 set=$2 model; shift 2
  for model in ${ipc_students//,/ }; do
    run "$dir/$model" eval --set eval.syn="$set" --set "eval.models=[\"$model\"]" \
      --set eval.runs="$runs" --set eval.train.epochs="$eval_epochs" "$@"
  done
}

for ipc in $ipcs; do
  d="$out/ipc$ipc"
  override="STUDENTS_IPC$ipc"
  ipc_students=${!override:-$students}
  run "$d/recover" synth recover --committee "$out/committee/committee.toml" --ipc "$ipc" \
    --iterations "$iterations"
  run "$d/recover_single" synth recover --committee "$out/single/committee.toml" --ipc "$ipc" \
    --iterations "$iterations" --draw 1
  run "$d/relabel" synth relabel --committee "$out/committee/committee.toml" \
    --syn "$d/recover/syn.pt" --set synth.relabel.T="$T"
  run "$d/relabel_single" synth relabel --committee "$out/single/committee.toml" \
    --syn "$d/recover_single/syn.pt" --set synth.relabel.T="$T"
  run "$d/real" subset --ipc "$ipc"
  run "$d/real_relabel" synth relabel --committee "$out/committee/committee.toml" \
    --syn "$d/real/syn.pt" --set synth.relabel.T="$T"
  # The main comparison first (committee vs single teacher vs random real, all soft), so that a
  # partly run script already answers it.
  evaluate "$d/eval_soft" "$d/relabel/syn.pt" --set eval.random_real=false \
    --set eval.train.label_temperature="$T"
  evaluate "$d/eval_single_soft" "$d/relabel_single/syn.pt" --set eval.random_real=false \
    --set eval.train.label_temperature="$T"
  evaluate "$d/eval_real_soft" "$d/real_relabel/syn.pt" --set eval.random_real=false \
    --set eval.train.label_temperature="$T"
  evaluate "$d/eval_hard" "$d/recover/syn.pt"  # also scores random real with hard labels
  if [ "$views" -gt 0 ]; then
    run "$d/relabel_views" synth relabel --committee "$out/committee/committee.toml" \
      --syn "$d/recover/syn.pt" --set synth.relabel.T="$T" --set synth.relabel.views="$views"
    evaluate "$d/eval_soft_views" "$d/relabel_views/syn.pt" --set eval.random_real=false \
      --set eval.train.label_temperature="$T"
  fi
done
python3 "$root/experiments/write_synth_table.py" "$out" $ipcs
