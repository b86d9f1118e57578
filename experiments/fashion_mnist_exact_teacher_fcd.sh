#!/usr/bin/env bash
# FCD of the exact finite-set teacher (`distill diffusion sample`, no network) on Fashion-MNIST at
# 1/2/4/8/16/64 steps (DDIM and Heun), scored by `distill diffusion score` in the features of a
# ConvNet trained here by `distill train`. A skeleton of issue 7's results table: it measures the
# samplers and the metric, not a learned teacher (that needs the U-Net and `diffusion train`).
# The exact teacher memorises its train_images training images, so at many steps its samples ARE
# training images: their FCD against the test split is the floor a perfect generator of that
# subset would reach, not a sign of generalisation.
# Every run is skipped when its results.json exists, so an interrupted script continues.
# Budget knobs: EPOCHS (classifier), SAMPLES, TRAIN_IMAGES, STEPS, SAMPLERS, THREADS, EXTRA.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/exact_teacher_fcd}}
epochs=${EPOCHS:-3}
samples=${SAMPLES:-1000}
train_images=${TRAIN_IMAGES:-2000}
steps_list=${STEPS:-1 2 4 8 16 64}
samplers=${SAMPLERS:-ddim heun}
threads=${THREADS:-2}

common=(--no-progress --threads "$threads")
read -r -a extra <<<"${EXTRA:-}"
common+=("${extra[@]}")
# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

# The FCD classifier: the DC/MTT ConvNet (width 64 to keep it quick), trained on the full
# training split; its test accuracy is in $out/classifier/results.json.
classifier_model=(--set model.width=64)
run "$out/classifier" train --epochs "$epochs" "${classifier_model[@]}"
score_model=(--set diffusion.score.model.width=64)

for sampler in $samplers; do
  for steps in $steps_list; do
    run "$out/${sampler}_$steps" diffusion sample --sampler "$sampler" --steps "$steps" \
      --samples "$samples" --train-images "$train_images"
    run "$out/${sampler}_${steps}_score" diffusion score "$out/${sampler}_$steps" \
      --classifier "$out/classifier/model.pt" "${score_model[@]}" \
      --set diffusion.score.cache_dir="$out/reference_cache"
  done
done
# The floor: as many real training images (class-balanced, random) scored the same way.
ipc=$((samples / 10))  # Fashion-MNIST has 10 classes
if [ ! -f "$out/real_subset/syn.pt" ]; then
  # --overwrite: an attempt that stopped before its syn.pt is redone (subset keeps no checkpoint
  # to resume; without the flag distill refuses a folder holding a run).
  "$distill" subset --ipc "$ipc" "${common[@]}" --overwrite --out "$out/real_subset" \
    >"$out/real_subset.log" 2>&1
fi
run "$out/real_subset_score" diffusion score "$out/real_subset/syn.pt" \
  --classifier "$out/classifier/model.pt" "${score_model[@]}" \
  --set diffusion.score.cache_dir="$out/reference_cache"
/usr/bin/python3 "$root/experiments/write_exact_teacher_fcd_table.py" "$out"
