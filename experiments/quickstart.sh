#!/usr/bin/env bash
# README set-up command 1: dataset distillation end to end on the default data (Fashion-MNIST,
# Debian package dataset-fashion-mnist) on a CPU. Installs what is missing, builds, then:
#   1. trains 2 small expert trajectories (experiments/configs/quickstart_experts.toml),
#   2. distills 1 image per class by trajectory matching (quickstart_mtt_ipc1.toml) -> syn.pt, grid.png,
#   3. evaluates it against a random real set of the same size on the same evaluator
#      (DC/DSA/MTT protocol: 5 students x 300 epochs each, DSA; ConvNet-3 of width 64 throughout,
#      the papers' is 128: the whole demo must fit in 5 minutes on 2 cores),
#   4. prints the comparison.
# A rerun over the same folder redoes every step (--overwrite replaces the earlier run's files;
# distill refuses a folder holding a run without it), so the wall time is always the whole demo's.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/runs/quickstart}
configs=$root/experiments/configs
"$root/experiments/setup/install_packages.sh"
"$root/experiments/setup/build.sh" distill
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
build_done=$SECONDS
mkdir -p "$out"

echo "== 1/3 expert trajectories (2 ConvNet-3 w64 experts x 3 epochs on 10000 images)"
"$distill" experts --config "$configs/quickstart_experts.toml" --out "$out/experts" --seed 0 \
  --overwrite

echo "== 2/3 trajectory matching, 1 image per class"
"$distill" mtt --config "$configs/quickstart_mtt_ipc1.toml" --buffer "$out/experts" \
  --out "$out/mtt_ipc1" --seed 0 --overwrite

echo "== 3/3 evaluate it and a random real set of the same size: DC protocol, ${QUICKSTART_RUNS:=5} students each"
"$distill" eval --syn "$out/mtt_ipc1/syn.pt" --runs "$QUICKSTART_RUNS" --set eval.train.eval_every=0 \
  --set eval.model.width=64 \
  --out "$out/eval_ipc1" --seed 0 --overwrite | tee "$out/eval_table.txt"

echo
echo "== summary (Fashion-MNIST test accuracy of ConvNet-3 w64 students, mean ± std over $QUICKSTART_RUNS)"
awk -v set="$out/mtt_ipc1/syn.pt" '$1 == set {print "trajectory matching, IPC 1: " $(NF-3) " ± " $(NF-1) " %"}
  $1 == "random-real" {print "random real,         IPC 1: " $(NF-3) " ± " $(NF-1) " %"}' "$out/eval_table.txt"
echo "images: $out/mtt_ipc1/grid.png   results: $out/eval_ipc1/results.json"
echo "quickstart wall time after the build: $((SECONDS - build_done))s"
echo "$((SECONDS - build_done))" > "$out/wall_time_s"
if [ "${QUICKSTART_WRITE_README:-0}" = 1 ]; then  # how the README's quickstart table is made
  /usr/bin/python3 "$root/experiments/write_quickstart_table.py" "$out"
fi
