#!/usr/bin/env bash
# Classic knowledge distillation on Fashion-MNIST (issue 4), three experiments, 3 seeds each,
# and the README table (<!-- table:kd -->) from their results.json files:
#   A. the shape of Hinton et al.'s MNIST experiment: MLP teacher 2x1200 (dropout .2/.5, +-2 px
#      jitter), student 2x800 on hard labels, the same student distilled at T = 20;
#   B. a small ConvNet teacher into a 784-100-100-10 MLP at 3 %, 10 % and 100 % of the training
#      data (same number of steps as 15 full epochs, capped at 200 epochs), hard labels vs Hinton
#      KD (T = 4, weight .7) -- where ../shared/notes/fashion-mnist-facts.md saw KD pay off;
#   B'. at 3 %: other temperatures, soft-target weights, DKD and reverse KL;
#   C. the ConvNet teacher into a 4x narrower ConvNet on 10 % of the data: hard labels, Hinton KD,
#      Hinton KD + attention transfer (a feature-based loss);
#   D. schemes without an external teacher at 10 %: deep mutual learning, born-again networks.
# Every run is skipped when its results.json exists, so an interrupted script continues.
# Budget knobs (defaults fit ~30 min on 2 cores): SEEDS, EPOCHS_A, TEACHER_EPOCHS, THREADS, EXTRA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/kd_fashion_mnist}}
seeds=${SEEDS:-0 1 2}
epochs_a=${EPOCHS_A:-3}
teacher_epochs=${TEACHER_EPOCHS:-4}
threads=${THREADS:-2}
start=$(date +%s)

# Hinton's recipe (and the Python check in the facts note): common, conv, conv_as_teacher.
# shellcheck source=lib/kd_recipe.sh
source "$root/experiments/lib/kd_recipe.sh"
# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

mlp_teacher=(--set model.arch=mlp --set model.hidden=[1200,1200] --set model.dropout=0.5
             --set model.input_dropout=0.2)

# B/C teacher: one ConvNet (seed 0), shared by every student seed.
run "$out/conv_teacher/s0" train --seed 0 "${conv[@]}" --set augment.name=none \
  --epochs "$teacher_epochs"
teacher="$out/conv_teacher/s0/model.pt"

for seed in $seeds; do
  # A. Hinton shape, full data.
  run "$out/A_teacher/s$seed" train --seed "$seed" "${mlp_teacher[@]}" \
    --set augment.name=standard --set augment.standard.pad=2 --set augment.standard.flip=false \
    --epochs "$epochs_a"
  run "$out/A_hard/s$seed" kd --seed "$seed" --set model.hidden=[800,800] \
    --set 'kd.losses=[{name="ce"}]' --epochs "$epochs_a"
  run "$out/A_kd/s$seed" kd --seed "$seed" --set model.hidden=[800,800] \
    --teacher "$out/A_teacher/s$seed/model.pt" --set teacher.model.arch=mlp \
    --set teacher.model.hidden=[1200,1200] \
    --set 'kd.losses=[{name="hinton",T=20,weight=0.9},{name="ce",weight=0.1}]' --epochs "$epochs_a"

  # B. data fractions: as many steps as 15 full epochs, at most 200 epochs.
  for fraction in 0.03 0.1 1; do
    epochs=$(python3 -c "print(min(200, round(15 / $fraction)))")
    run "$out/B_hard_$fraction/s$seed" kd --seed "$seed" --set model.hidden=[100,100] \
      --set kd.data_fraction="$fraction" --set 'kd.losses=[{name="ce"}]' --epochs "$epochs"
    run "$out/B_kd_$fraction/s$seed" kd --seed "$seed" --set model.hidden=[100,100] \
      --set kd.data_fraction="$fraction" --teacher "$teacher" "${conv_as_teacher[@]}" \
      --set 'kd.losses=[{name="hinton",T=4,weight=0.7},{name="ce",weight=0.3}]' --epochs "$epochs"
  done

  # B'. at 3 %: other temperatures, soft-target weight and losses (same teacher, same steps).
  for variant in "T1|hinton|1|0.7" "T20|hinton|20|0.7" "w9|hinton|4|0.9" "dkd|dkd|4|1" "rkl|reverse_kl|4|0.7"; do
    IFS='|' read -r tag loss T w <<<"$variant"
    if [ "$loss" = dkd ]; then  # DKD's own weights (alpha 1, beta 8) next to the hard-label term
      terms="[{name=\"dkd\",T=$T,alpha=1,beta=8},{name=\"ce\"}]"
    else
      terms="[{name=\"$loss\",T=$T,weight=$w},{name=\"ce\",weight=$(python3 -c "print(round(1 - $w, 3))")}]"
    fi
    run "$out/B_${tag}_0.03/s$seed" kd --seed "$seed" --set model.hidden=[100,100] \
      --set kd.data_fraction=0.03 --teacher "$teacher" "${conv_as_teacher[@]}" \
      --set "kd.losses=$terms" --epochs 200
  done

  # D. schemes without a stronger teacher, 10 % of the data, 150 epochs: deep mutual learning of
  # two MLP 2x100 (mean member error) and born-again generations (the last one's error).
  run "$out/D_dml/s$seed" kd --seed "$seed" --set model.hidden=[100,100] --set kd.data_fraction=0.1 \
    --set kd.scheme=dml --set kd.cohort=2 --set 'kd.losses=[{name="hinton",T=1},{name="ce"}]' \
    --epochs 150
  run "$out/D_born_again/s$seed" kd --seed "$seed" --set model.hidden=[100,100] \
    --set kd.data_fraction=0.1 --set kd.scheme=born_again --set kd.generations=2 \
    --set 'kd.losses=[{name="hinton",T=4,weight=0.7},{name="ce",weight=0.3}]' --epochs 150

  # C. ConvNet -> narrower ConvNet (width 8), 10 % of the data, 30 epochs.
  small=(--set model.arch=convnet --set model.width=8 --set model.depth=2 --set model.norm=none
         --set model.pool=maxpool --set kd.data_fraction=0.1 --epochs 30)
  run "$out/C_hard/s$seed" kd --seed "$seed" "${small[@]}" --set 'kd.losses=[{name="ce"}]'
  run "$out/C_kd/s$seed" kd --seed "$seed" "${small[@]}" --teacher "$teacher" "${conv_as_teacher[@]}" \
    --set 'kd.losses=[{name="hinton",T=4,weight=0.7},{name="ce",weight=0.3}]'
  run "$out/C_kd_at/s$seed" kd --seed "$seed" "${small[@]}" --teacher "$teacher" "${conv_as_teacher[@]}" \
    --set 'kd.losses=[{name="hinton",T=4,weight=0.7},{name="ce",weight=0.3},{name="at",student_layer="block0",teacher_layer="block0",weight=1000},{name="at",student_layer="block1",teacher_layer="block1",weight=1000}]'
done

minutes=$(( ($(date +%s) - start + 59) / 60 ))
mlp_a="Adam 1e-3 cosine, $epochs_a epochs"
conv_t="ConvNet conv32-conv32 maxpool ($teacher_epochs epochs, 1 teacher)"
/usr/bin/python3 "$root/experiments/write_kd_table.py" \
  "Knowledge distillation on Fashion-MNIST (\`experiments/kd_fashion_mnist.sh\`, $(nproc) cores, $threads thread(s) per run, $(date -u +%Y-%m-%d); {train_minutes} min of training summed over runs; batch 128, Adam 1e-3, cosine; seeds: $seeds):" \
  "$out" \
  "A_teacher|A. Hinton shape|100 %|MLP 2x1200, dropout .2/.5, ±2 px jitter|teacher, hard labels, $epochs_a epochs" \
  "A_hard|A. Hinton shape|100 %|MLP 2x800|hard labels, $epochs_a epochs" \
  "A_kd|A. Hinton shape|100 %|MLP 2x800|Hinton KD T=20 (.9 soft + .1 hard) from the 2x1200 teacher" \
  "conv_teacher|B/C teacher|100 %|$conv_t|hard labels" \
  "B_hard_0.03|B. data fraction|3 % (200 epochs)|MLP 2x100|hard labels" \
  "B_kd_0.03|B. data fraction|3 % (200 epochs)|MLP 2x100|Hinton KD T=4 (.7 soft + .3 hard)" \
  "B_hard_0.1|B. data fraction|10 % (150 epochs)|MLP 2x100|hard labels" \
  "B_kd_0.1|B. data fraction|10 % (150 epochs)|MLP 2x100|Hinton KD T=4 (.7 soft + .3 hard)" \
  "B_hard_1|B. data fraction|100 % (15 epochs)|MLP 2x100|hard labels" \
  "B_kd_1|B. data fraction|100 % (15 epochs)|MLP 2x100|Hinton KD T=4 (.7 soft + .3 hard)" \
  "B_T1_0.03|B'. 3 % variants|3 % (200 epochs)|MLP 2x100|Hinton KD T=1 (.7 soft + .3 hard)" \
  "B_T20_0.03|B'. 3 % variants|3 % (200 epochs)|MLP 2x100|Hinton KD T=20 (.7 soft + .3 hard)" \
  "B_w9_0.03|B'. 3 % variants|3 % (200 epochs)|MLP 2x100|Hinton KD T=4 (.9 soft + .1 hard)" \
  "B_dkd_0.03|B'. 3 % variants|3 % (200 epochs)|MLP 2x100|DKD T=4 (alpha 1, beta 8) + hard" \
  "B_rkl_0.03|B'. 3 % variants|3 % (200 epochs)|MLP 2x100|reverse KL T=4 (.7) + .3 hard" \
  "D_dml|D. schemes|10 % (150 epochs)|MLP 2x100 (x2)|deep mutual learning, T=1 KL + hard (mean of 2 members)" \
  "D_born_again|D. schemes|10 % (150 epochs)|MLP 2x100|born-again gen 2 (gen 0 hard labels), Hinton T=4 .7/.3" \
  "C_hard|C. ConvNet to ConvNet|10 % (30 epochs)|ConvNet conv8-conv8|hard labels" \
  "C_kd|C. ConvNet to ConvNet|10 % (30 epochs)|ConvNet conv8-conv8|Hinton KD T=4 (.7 soft + .3 hard)" \
  "C_kd_at|C. ConvNet to ConvNet|10 % (30 epochs)|ConvNet conv8-conv8|Hinton KD + attention transfer (blocks 0, 1; weight 1000)"
echo "wrote the kd table to README.md (${minutes} min)" >&2
