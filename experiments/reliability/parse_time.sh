#!/usr/bin/env bash
# Issue 24's parse-time check: every bad setting of tests/src/cli/data/bad_settings.tsv, run on
# the full Fashion-MNIST configuration (the default data, Debian dataset-fashion-mnist), must exit
# 2 with its message within a second and create no run folder. Writes
# experiments/results/reliability/parse_time.json (one row per case: seconds, exit code, message
# found) and the README table; exits 1 when a case fails or takes a second or more.
#   experiments/reliability/parse_time.sh [WORK]     DISTILL=path/to/distill to skip the build
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
if [ -z "${DISTILL:-}" ]; then
  "$root/experiments/setup/build.sh" distill >/dev/null
  DISTILL="$("$root/experiments/setup/build_dir.sh")/src/distill"
fi
[ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ] ||
  { echo "error: Fashion-MNIST is missing (apt-get install dataset-fashion-mnist)" >&2; exit 1; }
work=${1:-$(mktemp -d)}
mkdir -p "$work"
rows=()
failed=0
while IFS=$'\t' read -r args message; do
  case "$args" in ''|'#'*) continue ;; esac
  rm -rf "$work/o"
  start=$(date +%s.%N)
  set +e
  # shellcheck disable=SC2086  # the case's arguments are plain words
  output=$("$DISTILL" $args --no-progress --out "$work/o" 2>&1)
  code=$?
  set -e
  seconds=$(echo "$(date +%s.%N) - $start" | bc)
  found=false
  grep -qF -- "$message" <<<"$output" && found=true
  created=false
  [ -e "$work/o" ] && created=true
  if [ "$code" != 2 ] || [ "$found" != true ] || [ "$created" = true ] ||
    [ "$(echo "$seconds >= 1" | bc)" = 1 ]; then
    failed=1
    echo "FAILED: distill $args (exit $code, ${seconds}s, message found: $found, folder made: $created)" >&2
  fi
  rows+=("$(/usr/bin/python3 -c 'import json,sys; print(json.dumps({"args": sys.argv[1], "seconds": float(sys.argv[2]), "exit_code": int(sys.argv[3]), "message_found": sys.argv[4] == "true", "folder_created": sys.argv[5] == "true"}))' \
    "$args" "$seconds" "$code" "$found" "$created")")
done < "$root/tests/src/cli/data/bad_settings.tsv"
results=$root/experiments/results/reliability
mkdir -p "$results"
printf '%s\n' "${rows[@]}" | /usr/bin/python3 -c '
import json, subprocess, sys
rows = [json.loads(l) for l in sys.stdin if l.strip()]
commit = subprocess.run(["git", "-C", sys.argv[1], "rev-parse", "--short", "HEAD"],
                        capture_output=True, text=True).stdout.strip()
version = subprocess.run([sys.argv[2], "--version"], capture_output=True, text=True).stdout.strip()
out = {"commit": commit, "distill": version, "load": open("/proc/loadavg").read().split()[0],
       "rows": rows}
path = sys.argv[3]
open(path + ".tmp", "w").write(json.dumps(out, indent=1) + "\n")
import os; os.replace(path + ".tmp", path)
' "$root" "$DISTILL" "$results/parse_time.json"
/usr/bin/python3 "$root/experiments/reliability/write_tables.py"
exit $failed
