#!/usr/bin/env bash
# Issue 6's recovery benchmark: images recovered per second and peak RSS of `distill synth
# recover` at IPC 10 and 50, at 28x28 (Fashion-MNIST, 1 channel) and at 32x32 x 3 channels (CIFAR's
# shape: Fashion-MNIST images exported as an image folder and read back at 32x32 RGB), for 1, 2
# and 3 committee members drawn per step. Each size gets a committee (ConvNet-BN, LeNet, MLP)
# trained 1 epoch on a few thousand images: throughput does not depend on how well members are
# trained. Writes ${OUT:-runs/bench}/synth_recover_sizes.json: every run's figures plus each
# draw's speed as a ratio to drawing 1 member in the same invocation (the machine is shared).
#   experiments/bench/synth_recover_sizes.sh        (ITERS, IPCS, THREADS as in synth_recover.sh)
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
distill="${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}"
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
out=${OUT:-$root/runs/bench}
work="$out/synth_sizes"
mkdir -p "$work"
threads=${THREADS:-2}
members='[{model={arch="convnet", norm="batchnorm", width=64}}, {model={arch="lenet"}}, {model={arch="mlp", hidden=[256, 256]}}]'
committee() {  # committee DIR [data flags...]
  local dir=$1; shift
  [ -f "$dir/committee.toml" ] && return 0
  # Trained once: an interrupted attempt is resumed (distill refuses a folder holding a run
  # without --resume or --overwrite).
  local resume=()
  if [ -f "$dir/config.toml" ]; then resume=(--resume); fi
  "$distill" committee train --set "committee.members=$members" --set committee.train.epochs=1 \
    --set committee.val_per_class=50 --set committee.stats_images=2000 --no-progress \
    --threads "$threads" "${resume[@]}" --out "$dir" "$@" >"$dir.log" 2>&1
}
# 28x28: 6000 Fashion-MNIST training images.
flags28=(--set data.train_limit=6000)
committee "$work/committee28" "${flags28[@]}"
# 32x32 RGB: 300 images per class exported as PNGs, read back resized and as 3 channels.
if [ ! -d "$work/folder32/train" ]; then
  # Redone after an interrupted attempt: neither command keeps a checkpoint, and --overwrite
  # replaces what the attempt left (distill refuses a folder holding a run without it).
  "$distill" subset --ipc 300 --no-progress --overwrite --out "$work/subset32" \
    >"$work/subset32.log" 2>&1
  "$distill" synth export --set synth.export.syn="$work/subset32/syn.pt" --overwrite \
    --out "$work/folder32" >"$work/folder32.log" 2>&1
fi
flags32=(--set data.format=image-folder --set data.path="$work/folder32" --set data.name=fmnist32
         --set data.image_size=32 --set data.channels=3)
committee "$work/committee32" "${flags32[@]}"

OUT="$work/28" THREADS=$threads "$root/experiments/bench/synth_recover.sh" \
  "$work/committee28/committee.toml" "${flags28[@]}"
OUT="$work/32" THREADS=$threads "$root/experiments/bench/synth_recover.sh" \
  "$work/committee32/committee.toml" "${flags32[@]}"

/usr/bin/python3 - "$work" "$out/synth_recover_sizes.json" <<'PY'
import json, os, pathlib, sys
work, target = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
runs = []
for size in ("28", "32"):
    for line in (work / size / "synth_recover.jsonl").read_text().splitlines():
        run = json.loads(line)
        run["image"] = "1x28x28" if size == "28" else "3x32x32"
        runs.append(run)
for run in runs:
    one = next(r for r in runs if r["image"] == run["image"] and r["ipc"] == run["ipc"]
               and r["draw"] == 1)
    run["speed_vs_draw_1"] = round(run["images_per_s"] / one["images_per_s"], 3)
result = {"benchmark": "synth_recover_sizes", "cores": os.cpu_count(),
          "load_average_1min_at_end": os.getloadavg()[0], "runs": runs}
temporary = target.with_name(target.name + ".tmp")
temporary.write_text(json.dumps(result, indent=2) + "\n")
os.replace(temporary, target)
print(json.dumps(result))
PY
