#!/usr/bin/env bash
# DisWOT's training-free student ranking (`distill kd search`, issue 23) against distilled accuracy
# on Fashion-MNIST: 8 candidate students (4 MLPs, 4 ConvNets with the teacher's no-norm, max-pool
# blocks) are each scored at random initialisation against the kd tables' ConvNet teacher
# (conv32-conv32 maxpool, 4 epochs) on one batch of 64 training images (3 scoring seeds: other
# batch, other initialisations; once more against a randomly initialised teacher of the same
# architecture, as the DisWOT code scores), and each is distilled from that teacher (Hinton KD T 4,
# .7 soft + .3 hard, 10 % of the training data, 30 epochs, 2 seeds). The evolutionary search
# (default space, 20 x 100 cycles) runs once as well. Spearman's rank correlation between score and
# distilled accuracy goes to experiments/results/kd_search_fashion_mnist.json and the README table
# (<!-- table:kd-search -->), by experiments/write_kd_search_table.py.
# Every run is skipped when its results.json exists, so an interrupted script continues.
# Budget knobs: SEEDS (training), SCORE_SEEDS, EPOCHS, TEACHER_EPOCHS, THREADS, EXTRA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/kd_search_fashion_mnist}}
seeds=${SEEDS:-0 1}
score_seeds=${SCORE_SEEDS:-0 1 2}
epochs=${EPOCHS:-30}
teacher_epochs=${TEACHER_EPOCHS:-4}
threads=${THREADS:-2}
start=$(date +%s)

# shellcheck source=lib/kd_recipe.sh
source "$root/experiments/lib/kd_recipe.sh"
# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

candidates=(mlp-32 mlp-128-64 mlp-256-256 mlp-64-64-64 convnet-w8-d1 convnet-w8-d2 convnet-w16-d2
            convnet-w32-d3)
# The student settings a candidate name stands for (the ConvNets' blocks are the teacher's kind).
model_flags() {
  case $1 in
    convnet-*)
      local width=${1#convnet-w}; width=${width%%-*}
      echo "--set model.arch=convnet --set model.width=$width --set model.depth=${1##*-d}" \
           "--set model.norm=none --set model.pool=maxpool" ;;
    mlp-*) local hidden=${1#mlp-}; echo "--set model.arch=mlp --set model.hidden=[${hidden//-/,}]" ;;
  esac
}

run "$out/teacher/s0" train --seed 0 "${conv[@]}" --set augment.name=none --epochs "$teacher_epochs"
teacher=(--teacher "$out/teacher/s0/model.pt" "${conv_as_teacher[@]}")

list=$(printf '"%s",' "${candidates[@]}")
for seed in $score_seeds; do
  run "$out/score/s$seed" kd search --seed "$seed" "${teacher[@]}" --set model.norm=none \
    --set model.pool=maxpool --set "search.candidates=[${list%,}]"
  run "$out/score_random_teacher/s$seed" kd search --seed "$seed" "${teacher[@]}" \
    --set model.norm=none --set model.pool=maxpool --set "search.candidates=[${list%,}]" \
    --set search.teacher_weights=random
done
run "$out/evolution/s0" kd search --seed 0 "${teacher[@]}" --set model.norm=none \
  --set model.pool=maxpool

for seed in $seeds; do
  for candidate in "${candidates[@]}"; do
    read -r -a flags <<<"$(model_flags "$candidate")"
    run "$out/$candidate/s$seed" kd --seed "$seed" "${flags[@]}" "${teacher[@]}" \
      --set kd.data_fraction=0.1 --epochs "$epochs" \
      --set 'kd.losses=[{name="hinton",T=4,weight=0.7},{name="ce",weight=0.3}]'
  done
done
echo "wall time: $(( $(date +%s) - start )) s" >&2
/usr/bin/python3 "$root/experiments/write_kd_search_table.py" "$out" "$seeds" "$score_seeds" \
  "$epochs" "$teacher_epochs"
