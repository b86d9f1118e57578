#!/usr/bin/env bash
# Diffusion step distillation on Fashion-MNIST (issue 7's results table, <!-- table:diffusion -->):
#   1. the FCD classifier (`distill train`, ConvNet width 64; CLASSIFIER=path/model.pt reuses one);
#   2. the teacher: a U-Net trained by `distill diffusion train` (TRAIN_STEPS, EMA weights);
#   3. the teacher sampled with DDIM and Heun at TEACHER_STEPS steps;
#   4. progressive distillation from PD_FROM teacher steps down to 4, then 2, then 1 (each run's
#      teacher is the previous student, so the 4-, 2- and 1-step students all exist), on data and
#      data-free (`--data none`, points of the teacher's own trajectories);
#   5. consistency distillation (one-step sampling: CD's student at sigma_max);
#   6. two-step consistency sampling (re-noised to each of CD_TAUS) and four-step;
#   7. hybrid sampling: the teacher takes the first step, the PD/CD student the rest;
#   8. PD from PD_LONG_FROM teacher steps;
#   9. every sample set scored by `distill diffusion score` (FCD, precision/recall, coverage) and
#      the table written by experiments/write_diffusion_table.py.
# Every run is skipped when its results.json exists, so an interrupted script continues; the
# teacher and the distillation runs also continue mid-run from their checkpoint.pt.
# Budget knobs: EPOCHS, UNET_CHANNELS, TRAIN_STEPS, BATCH, SAMPLES, TEACHER_STEPS, PD_FROM,
# PD_ITERATIONS, PD_BATCH, PD_LONG_FROM, CD_ITERATIONS, CD_BATCH, CD_TAUS, TRAJECTORY_STEPS (Heun
# steps to each data-free point: every point costs 2 x TRAJECTORY_STEPS - 1 teacher
# evaluations), THREADS, EXTRA (flags added to every run).
# The defaults are the budget of the README table, sized for a 2-core CPU (about two hours): a
# 16-channel U-Net (0.28M parameters) and short distillation runs. Papers train 35M-parameter
# networks for 100k+ steps on GPUs; the table compares students with their own teacher, not with
# published numbers.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${1:-${OUT:-$root/runs/diffusion_fashion_mnist}}
epochs=${EPOCHS:-3}
unet_channels=${UNET_CHANNELS:-16}
train_steps=${TRAIN_STEPS:-12000}
batch=${BATCH:-64}
samples=${SAMPLES:-1000}
teacher_steps=${TEACHER_STEPS:-1 2 4 8 16 64}
pd_from=${PD_FROM:-16}
pd_iterations=${PD_ITERATIONS:-600}
pd_batch=${PD_BATCH:-128}
pd_long_from=${PD_LONG_FROM-64}
cd_iterations=${CD_ITERATIONS:-2000}
cd_batch=${CD_BATCH:-128}
cd_taus=${CD_TAUS:-0.5 1 2 5}
trajectory_steps=${TRAJECTORY_STEPS:-4}
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
score() {  # score NAME SAMPLES_DIR
  run "$out/scores/$1" diffusion score "$2" --classifier "$classifier" \
    --set diffusion.score.model.width=64 --set diffusion.score.cache_dir="$out/reference_cache"
}

# 2. The teacher.
run "$out/teacher" diffusion train --train-steps "$train_steps" --batch "$batch" \
  --set diffusion.model.unet.channels="$unet_channels"

# 3. The teacher's own few-step samples: the baseline every student must beat.
for sampler in ddim heun; do
  for steps in $teacher_steps; do
    run "$out/samples/teacher_${sampler}_$steps" diffusion sample --teacher "$out/teacher" \
      --sampler "$sampler" --steps "$steps" --samples "$samples"
    score "teacher_${sampler}_$steps" "$out/samples/teacher_${sampler}_$steps"
  done
done

# PD's own teacher: DDIM on the vp_cosine grid at PD_FROM steps (what the first PD stage matches).
pd_teacher_row() {  # pd_teacher_row STEPS
  run "$out/samples/teacher_ddimvpcosine_$1" diffusion sample --teacher "$out/teacher" \
    --sampler ddim --steps "$1" --samples "$samples" --set diffusion.sampler.schedule.name=vp_cosine
  score "teacher_ddimvpcosine_$1" "$out/samples/teacher_ddimvpcosine_$1"
}
pd_teacher_row "$pd_from"

# 4. Progressive distillation, in three runs so that the 4-, 2- and 1-step students are kept. PD
# works on the VP-cosine grid, so its students are sampled with DDIM on that grid.
pd() {  # pd NAME TEACHER FROM TO DATA
  run "$out/$1" diffusion distill --method progressive --teacher "$2" --data "$5" \
    --set distill.progressive.teacher_steps="$3" --set distill.progressive.student_steps="$4" \
    --set distill.progressive.iterations="$pd_iterations" --set distill.progressive.batch="$pd_batch" \
    --set distill.trajectory_steps="$trajectory_steps"
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
  --set distill.consistency.iterations="$cd_iterations" --set distill.consistency.batch="$cd_batch"
run "$out/samples/cd_1" diffusion sample --teacher "$out/cd" --sampler ddim --steps 1 \
  --samples "$samples"
score cd_1 "$out/samples/cd_1"

# 6. Multistep consistency sampling, 2 steps: f at sigma_max, re-noised to tau, f again. The
# Consistency Models paper picks tau by a search as well; every tau tried is a row of the table.
for tau in $cd_taus; do
  run "$out/samples/cd_2_tau$tau" diffusion sample --teacher "$out/cd" --sampler consistency \
    --steps 2 --set "diffusion.sampler.sigmas=[80,$tau]" --samples "$samples"
  score "cd_2_tau$tau" "$out/samples/cd_2_tau$tau"
done

# Four steps: levels spaced as EDM's rho-7 grid from 80 down to 0.5 (the 2-step rows show where
# re-noising to small levels stops helping).
cd4_levels=$(awk 'BEGIN { hi = 80 ^ (1 / 7); lo = 0.5 ^ (1 / 7);
  for (i = 0; i < 4; i++) printf "%s%.4g", (i ? "," : ""), (hi + i / 3 * (lo - hi)) ^ 7 }')
run "$out/samples/cd_4_rho7" diffusion sample --teacher "$out/cd" --sampler consistency \
  --steps 4 --set "diffusion.sampler.sigmas=[$cd4_levels]" --samples "$samples"
score cd_4_rho7 "$out/samples/cd_4_rho7"

# 7. Hybrid sampling ("distilling diversity"): the teacher takes the first step of the student's
# grid (DDIM), the student the rest.
hybrid() {  # hybrid NAME STUDENT STEPS SAMPLER FLAGS...
  local name=$1 student=$2 steps=$3 sampler=$4; shift 4
  run "$out/samples/$name" diffusion sample --teacher "$student" --sampler "$sampler" \
    --steps "$steps" --samples "$samples" --set diffusion.hybrid.base="$out/teacher" "$@"
  score "$name" "$out/samples/$name"
}
for data in dataset none; do
  for steps in 2 4; do
    hybrid "hybrid_pd_${data}_$steps" "$out/pd_${data}_$steps" "$steps" ddim \
      --set diffusion.sampler.schedule.name=vp_cosine
  done
done
for tau in $cd_taus; do
  hybrid "hybrid_cd_2_tau$tau" "$out/cd" 2 consistency --set "diffusion.sampler.sigmas=[80,$tau]"
done
hybrid hybrid_cd_4_rho7 "$out/cd" 4 consistency --set "diffusion.sampler.sigmas=[$cd4_levels]"

# 8. The same from PD_LONG_FROM teacher steps (on data; empty = skip): PD_FROM's teacher is itself
# above the teacher's full-step FCD, a floor for its students; more halvings start lower.
for from in $pd_long_from; do
  pd_teacher_row "$from"
  pd "pd${from}_dataset_4" "$out/teacher" "$from" 4 dataset
  pd "pd${from}_dataset_2" "$out/pd${from}_dataset_4" 4 2 dataset
  pd "pd${from}_dataset_1" "$out/pd${from}_dataset_2" 2 1 dataset
done

/usr/bin/python3 "$root/experiments/write_diffusion_table.py" "$out"
