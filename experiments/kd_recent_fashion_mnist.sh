#!/usr/bin/env bash
# Recent KD methods on Fashion-MNIST (issue 23) where KD pays off: a ConvNet teacher (conv32-conv32
# maxpool, 4 epochs, the kd table's B/C teacher) into a 784-100-100-10 MLP with 3 % and 10 % of
# the training data (200 / 150 epochs), 3 seeds: hard labels, Hinton KD (T 4, .7 soft + .3 hard),
# PLD (T 4, one term in place of both; PLD's CIFAR-100 temperature), DHKD (ce on the MLP's own
# classifier + BinaryKL-Norm T 2 weight 1 on an auxiliary head reading hidden1, DHKD's CIFAR-100
# values) and KD + ND (ce 1 + Hinton T 4 weight 1 + ND weight 1 on hidden1 against the teacher's
# embedding class means, through a linear map: the ND code's defaults), OFA (ce 1 + the OFA loss,
# eps 1.5, T 1, on the MLP's output and on a branch from each hidden layer, weight 1: OFA's code
# defaults for MLP students with its ImageNet eps; a ConvNet teacher and an MLP student are the
# heterogeneous pair OFA is for; once more on the output alone, to see what the branches add), and
# self-distillation with weighted ground truth (no teacher: 2 generations of the MLP on
# alpha y + (1 - alpha) p_previous; alpha derived per generation on a 10 % held-out split, or fixed
# at the paper code's 0.6), and TGeo-KD (per-example ratios of Hinton KD and ce from its fusion
# network, learned on a 10 % held-out split through a one-step unrolled hypergradient; T 4 as the
# Hinton row, so the two differ only in fixed .7/.3 against learned ratios; the network at 100 x
# the student's learning rate, the TGeo code's Adam 0.1).
# Writes experiments/results/kd_recent_fashion_mnist.json and the README table
# (<!-- table:kd-recent -->) with experiments/write_kd_recent_table.py.
# Every run is skipped when its results.json exists, so an interrupted script continues.
# Budget knobs: SEEDS, TEACHER_EPOCHS, THREADS, EXTRA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/kd_recent_fashion_mnist}}
seeds=${SEEDS:-0 1 2}
teacher_epochs=${TEACHER_EPOCHS:-4}
threads=${THREADS:-2}
start=$(date +%s)

# The kd table's recipe and ConvNet teacher (common, conv, conv_as_teacher).
# shellcheck source=lib/kd_recipe.sh
source "$root/experiments/lib/kd_recipe.sh"
# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

run "$out/teacher/s0" train --seed 0 "${conv[@]}" --set augment.name=none --epochs "$teacher_epochs"
teacher="$out/teacher/s0/model.pt"

for seed in $seeds; do
  for fraction in 0.03 0.1; do
    epochs=$(python3 -c "print(min(200, round(15 / $fraction)))")
    student=(kd --seed "$seed" --set model.hidden=[100,100] --set kd.data_fraction="$fraction"
             --epochs "$epochs")
    with_teacher=(--teacher "$teacher" "${conv_as_teacher[@]}")
    run "$out/hard_$fraction/s$seed" "${student[@]}" --set 'kd.losses=[{name="ce"}]'
    run "$out/hinton_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="hinton",T=4,weight=0.7},{name="ce",weight=0.3}]'
    run "$out/pld_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="pld",T=4}]'
    run "$out/dhkd_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="ce"},{name="dhkd",T=2,weight=1,student_layer="hidden1"}]'
    run "$out/nd_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="ce"},{name="hinton",T=4,weight=1},{name="nd",weight=1,student_layer="hidden1",teacher_layer="embedding"}]'
    run "$out/ofa_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="ce"},{name="ofa",T=1,eps=1.5},{name="ofa",T=1,eps=1.5,student_layer="hidden0"},{name="ofa",T=1,eps=1.5,student_layer="hidden1"}]'
    run "$out/ofa_output_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="ce"},{name="ofa",T=1,eps=1.5}]'
    run "$out/self_derived_$fraction/s$seed" "${student[@]}" --set kd.scheme=self_distillation \
      --set kd.generations=2
    run "$out/self_fixed_$fraction/s$seed" "${student[@]}" --set kd.scheme=self_distillation \
      --set kd.generations=2 --set kd.ground_truth_weight_rule=fixed
    run "$out/tgeo_$fraction/s$seed" "${student[@]}" "${with_teacher[@]}" \
      --set 'kd.losses=[{name="tgeo",T=4}]'
  done
done
echo "wall time: $(( $(date +%s) - start )) s" >&2
/usr/bin/python3 "$root/experiments/write_kd_recent_table.py" "$out" "$seeds" "$teacher_epochs"
