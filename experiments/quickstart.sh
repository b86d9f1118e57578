#!/usr/bin/env bash
# README set-up command 1: the main job on the default data (Fashion-MNIST, Debian package
# dataset-fashion-mnist) on a CPU. Installs what is missing, builds, then:
#   1. trains a ConvNet-3 on the full training set (short: the full-data reference point),
#   2. draws a class-balanced random real set at IPC 10 and writes it as syn.pt + grid.png,
#   3. evaluates that set with the DC/DSA/MTT protocol (5 students x 300 epochs, DSA),
#   4. prints the comparison.
# Trajectory matching (issue 5) will put a distilled set in step 2; until then the quickstart
# shows the yardstick every distilled set is compared with.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/runs/quickstart}
"$root/experiments/setup/install_packages.sh"
"$root/experiments/setup/build.sh" distill
distill="${BUILD_DIR:-$root/build}/src/distill"
build_done=$SECONDS
mkdir -p "$out"

echo "== 1/3 ConvNet-3 on all 60000 training images (${QUICKSTART_EPOCHS:=1} epoch(s))"
"$distill" train --out "$out/full_data" --epochs "$QUICKSTART_EPOCHS" --seed 0 | tee "$out/train.txt"

echo "== 2/3 random real set, 10 images per class"
"$distill" subset --ipc 10 --out "$out/real_ipc10" --seed 0

echo "== 3/3 evaluate it: DC protocol, ${QUICKSTART_RUNS:=5} students"
"$distill" eval --syn "$out/real_ipc10/syn.pt" --set eval.random_real=false \
  --runs "$QUICKSTART_RUNS" --out "$out/eval_real_ipc10" --seed 0 | tee "$out/eval_table.txt"

full=$(sed -n 's/^test accuracy \([0-9.]*\) %.*/\1/p' "$out/train.txt")
echo
echo "== summary (Fashion-MNIST test accuracy, ConvNet-3)"
echo "full training set, $QUICKSTART_EPOCHS epoch(s):  $full %"
grep -E "^$out/real_ipc10/syn.pt " "$out/eval_table.txt" |
  awk '{print "random real IPC 10 (DC protocol): " $(NF-3) " ± " $(NF-1) " % (mean ± std over " $(NF-4) " students)"}'
echo "images: $out/real_ipc10/grid.png   results: $out/eval_real_ipc10/results.json"
echo "quickstart wall time after the build: $((SECONDS - build_done))s"
