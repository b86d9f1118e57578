#!/usr/bin/env bash
# Recovery throughput (`distill synth recover`): images recovered per second and peak RSS at
# IPC 10 and 50 for 1..M members drawn per step, one JSON line each into
# ${OUT:-runs/bench}/synth_recover.jsonl (read from each run's results.json).
#   experiments/bench/synth_recover.sh COMMITTEE_TOML [distill data flags...]
# The committee fixes the image size (its data's); for 32x32 pass a committee trained on 32x32
# data and the same data flags. ITERS (default 20) steps per batch keep it short; images/s counts
# every image of the set once per full optimisation, scaled to the steps actually run, so it depends
# on ITERS; image_steps_per_s (images x steps / s) does not.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
distill="${DISTILL:-$("$root/experiments/setup/build_dir.sh")/src/distill}"
[ -x "$distill" ] || "$root/experiments/setup/build.sh" distill >/dev/null
committee=$1; shift
out=${OUT:-$root/runs/bench}
mkdir -p "$out"
: > "$out/synth_recover.jsonl"
members=$(grep -c '^\[\[members\]\]' "$committee")
for ipc in ${IPCS:-10 50}; do
  for draw in $(seq 1 "$members"); do
    dir="$out/synth_recover_ipc${ipc}_draw${draw}"
    rm -rf "$dir"
    "$distill" synth recover --committee "$committee" --ipc "$ipc" --draw "$draw" \
      --iterations "${ITERS:-20}" --set synth.recover.checkpoint_every=0 --no-progress \
      --threads "${THREADS:-2}" --out "$dir" "$@" >"$dir.log" 2>&1
    /usr/bin/python3 - "$dir/results.json" "$ipc" "$draw" "$members" >>"$out/synth_recover.jsonl" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"benchmark": "synth_recover", "ipc": int(sys.argv[2]), "draw": int(sys.argv[3]),
                  "committee": int(sys.argv[4]), "steps": r["steps"], "seconds": r["seconds"],
                  "seconds_per_step": r["seconds"] / max(1, r["steps"]),
                  "images": r["images"], "images_per_s": r["images_per_s"],
                  "image_steps_per_s": r["images"] * r["steps"] / r["seconds"],
                  "peak_rss_mib": r["peak_rss_mib"]}))
PY
    tail -n 1 "$out/synth_recover.jsonl"
  done
done
