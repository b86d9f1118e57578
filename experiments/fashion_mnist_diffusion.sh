#!/usr/bin/env bash
# Diffusion step distillation on Fashion-MNIST (issue 7's results table, <!-- table:diffusion -->):
#   1. the FCD classifier (`distill train`, ConvNet width 64; CLASSIFIER=path/model.pt reuses one);
#   2. the teacher: a U-Net trained by `distill diffusion train` (TRAIN_STEPS, EMA weights);
#   3. the teacher sampled with DDIM and Heun at TEACHER_STEPS steps;
#   4. progressive distillation from PD_FROM teacher steps down to 4, then 2, then 1 (each run's
#      teacher is the previous student, so the 4-, 2- and 1-step students all exist), on data and
#      data-free (`--data none`, points of the teacher's own trajectories);
#   5. consistency distillation (one-step sampling: CD's student at sigma_max);
#   6. every sample set scored by `distill diffusion score` (FCD, precision/recall, coverage) and
#      the table written by experiments/write_diffusion_table.py.
# Every run is skipped when its results.json exists, so an interrupted script continues; the
# teacher and the distillation runs also continue mid-run from their checkpoint.pt.
# Budget knobs: EPOCHS, TRAIN_STEPS, BATCH, SAMPLES, TEACHER_STEPS, PD_FROM, PD_ITERATIONS,
# CD_ITERATIONS, THREADS, EXTRA (flags added to every run, e.g. a smaller U-Net).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-${BUILD_DIR:-$root/build}/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/diffusion_fashion_mnist}}
epochs=${EPOCHS:-3}
train_steps=${TRAIN_STEPS:-20000}
batch=${BATCH:-128}
samples=${SAMPLES:-1000}
teacher_steps=${TEACHER_STEPS:-1 2 4 8 16 64}
pd_from=${PD_FROM:-64}
pd_iterations=${PD_ITERATIONS:-2000}
cd_iterations=${CD_ITERATIONS:-4000}
threads=${THREADS:-2}
common=(--no-progress --threads "$threads")
read -r -a extra <<<"${EXTRA:-}"
common+=("${extra[@]}")
# shellcheck source=lib/run_once.sh
source "$root/experiments/lib/run_once.sh"

# 1. The classifier whose features FCD compares.
if [ -n "${CLASSIFIER:-}" ]; then
  classifier=$CLASSIFIER
else
  run "$out/classifier" train --epochs "$epochs" --set model.width=64
  classifier=$out/classifier/model.pt
fi
# --resume for a long run that stopped after writing a checkpoint (and before its results.json).
resume_flag() { [ -f "$1/checkpoint.pt" ] && [ ! -f "$1/results.json" ] && echo --resume || true; }
score() {  # score NAME SAMPLES_DIR
  run "$out/scores/$1" diffusion score "$2" --classifier "$classifier" \
    --set diffusion.score.model.width=64 --set diffusion.score.cache_dir="$out/reference_cache"
}

# 2. The teacher.
run "$out/teacher" diffusion train --train-steps "$train_steps" --batch "$batch" \
  $(resume_flag "$out/teacher")

# 3. The teacher's own few-step samples: the baseline every student must beat.
for sampler in ddim heun; do
  for steps in $teacher_steps; do
    run "$out/samples/teacher_${sampler}_$steps" diffusion sample --teacher "$out/teacher" \
      --sampler "$sampler" --steps "$steps" --samples "$samples"
    score "teacher_${sampler}_$steps" "$out/samples/teacher_${sampler}_$steps"
  done
done

# 4. Progressive distillation, in three runs so that the 4-, 2- and 1-step students are kept. PD
# works on the VP-cosine grid, so its students are sampled with DDIM on that grid.
pd() {  # pd NAME TEACHER FROM TO DATA
  run "$out/$1" diffusion distill --method progressive --teacher "$2" --data "$5" \
    $(resume_flag "$out/$1") \
    --set distill.progressive.teacher_steps="$3" --set distill.progressive.student_steps="$4" \
    --set distill.progressive.iterations="$pd_iterations"
  run "$out/samples/$1" diffusion sample --teacher "$out/$1" --sampler ddim --steps "$4" \
    --samples "$samples" --set diffusion.sampler.schedule.name=vp_cosine
  score "$1" "$out/samples/$1"
}
for data in dataset none; do
  pd "pd_${data}_4" "$out/teacher" "$pd_from" 4 "$data"
  pd "pd_${data}_2" "$out/pd_${data}_4" 4 2 "$data"
  pd "pd_${data}_1" "$out/pd_${data}_2" 2 1 "$data"
done

# 5. Consistency distillation: one step from sigma_max.
run "$out/cd" diffusion distill --method consistency --teacher "$out/teacher" \
  $(resume_flag "$out/cd") \
  --set distill.consistency.iterations="$cd_iterations"
run "$out/samples/cd_1" diffusion sample --teacher "$out/cd" --sampler ddim --steps 1 \
  --samples "$samples"
score cd_1 "$out/samples/cd_1"

/usr/bin/python3 "$root/experiments/write_diffusion_table.py" "$out"
