#!/usr/bin/env bash
# Seeded outputs before/after a change (issue 24: refactors must not change a run's results).
# Runs each small job of commands.sh once (CPU, one thread, seed 3) and writes the SHA-256 of the
# files that define its result, with the commit it ran on:
#
#   experiments/reliability/seeded_outputs.sh OUT.json [WORK_DIR]          # record
#   COMPARE=BEFORE.json experiments/reliability/seeded_outputs.sh OUT.json  # record, then compare
#
# With COMPARE the script exits 1 unless every file's hash equals the one recorded in BEFORE.json
# (eval's students.jsonl is compared without its wall times and with WORK_DIR replaced by a
# placeholder). HASH_ONLY=1 hashes the outputs already in WORK_DIR without running anything;
# MADE_BY=<commit> then says which (clean) commit made them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: seeded_outputs.sh OUT.json [WORK_DIR]}
work=${2:-$root/runs/seeded_outputs}
commands=${COMMANDS:-"train experts mtt mtt-datm eval kd synth-recover synth-recover-batches diffusion-distill"}
# DISTILL names a built binary; otherwise the script builds one.
if [ -z "${DISTILL:-}" ] && [ -z "${HASH_ONLY:-}" ]; then
  "$root/experiments/setup/build.sh" distill >&2
fi
distill=${DISTILL:-"$("$root/experiments/setup/build_dir.sh")/src/distill"}
mkdir -p "$work"
source "$root/experiments/reliability/commands.sh"

[ -n "${HASH_ONLY:-}" ] || prepare $commands
rows=()
for command in $commands; do
  # shellcheck disable=SC2207
  args=($(args_of "$command"))
  dir=$work/$command
  [ -n "${HASH_ONLY:-}" ] || "$distill" "${args[@]}" "${common[@]}" --overwrite --out "$dir" \
    >"$dir.log" 2>&1 || {
    echo "$command failed (see $dir.log)" >&2
    exit 1
  }
  for file in $(outputs_of "$command"); do
    hash=$(output_digest "$dir/$file")
    rows+=("{\"command\": \"$command\", \"file\": \"$file\", \"sha256\": \"$hash\"}")
    echo "$command $file $hash" >&2
  done
done
commit=$(git -C "$root" rev-parse --short HEAD)
dirty=$([ -z "$(git -C "$root" status --porcelain -- src trajectories synth diffusion)" ] && echo false || echo true)
if [ -n "${MADE_BY:-}" ]; then commit=$MADE_BY dirty=false; fi
mkdir -p "$(dirname "$out")"
(IFS=,; printf '{"commit": "%s", "sources_modified": %s, "torch": "%s", "outputs": [%s]}\n' \
  "$commit" "$dirty" "$("$distill" --version 2>/dev/null | sed -n 2p)" "${rows[*]}") >"$out.tmp"
mv "$out.tmp" "$out"
if [ -n "${COMPARE:-}" ]; then
  /usr/bin/python3 - "$COMPARE" "$out" <<'PY'
import json, sys
before, after = (json.load(open(p)) for p in sys.argv[1:3])
key = lambda r: (r["command"], r["file"])
b = {key(r): r["sha256"] for r in before["outputs"]}
a = {key(r): r["sha256"] for r in after["outputs"]}
differ = [k for k in b if k in a and a[k] != b[k]]
missing = [k for k in b if k not in a]
print(f"{len(b) - len(differ) - len(missing)} of {len(b)} outputs identical to {before['commit']}"
      f" (now {after['commit']}{', modified' if after['sources_modified'] else ''})")
for k in differ: print("  differs:", *k)
for k in missing: print("  not produced:", *k)
sys.exit(1 if differ or missing else 0)
PY
fi
