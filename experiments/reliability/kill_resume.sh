#!/usr/bin/env bash
# Crash consistency under SIGKILL (issue 24). For each command: one straight run, then the same
# command line with --resume started again and again, each attempt killed with SIGKILL at a random
# moment, until an attempt finishes; repeated in fresh folders until KILLS kills were made. The
# final outputs must be byte-identical to the straight run's (CPU, one thread, same seed).
#
#   experiments/reliability/kill_resume.sh [WORK_DIR [RESULT_JSON]]  # KILLS=20 COMMANDS="train mtt ..."
#
# Prints one table row per command: kills, resumed attempts, finished cycles, identical, lost
# (a cycle whose attempt failed with an error instead of finishing, or whose outputs differ), and
# writes RESULT_JSON (default WORK_DIR/kill_resume.json; the README's table reads
# experiments/results/reliability/kill_resume.json through experiments/reliability/write_tables.py). The data is Fashion-MNIST (train_limit keeps runs a few
# seconds long, so kills land in every phase: start-up, training, checkpoint writes, the end).
# A kill that left a NAME.tmp.PID behind landed inside an atomic write: the table counts those
# ("in a write"); the next attempt removes the file. So that some kills find a write, the killed
# attempts hold every atomic write for WRITE_DELAY_MS (default 100) halfway through its temporary
# (DISTILL_FAULT_WRITE_DELAY_MS; the straight run and the outputs are not affected).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$root/runs/kill_resume}
result_json=${2:-$work/kill_resume.json}
kills_wanted=${KILLS:-20}
commands=${COMMANDS:-"train experts mtt eval kd synth-recover diffusion-distill"}
# DISTILL names a built binary (ctest passes its own; MADE_BY then names the commit it was built
# from for the JSON); otherwise the script builds one.
if [ -z "${DISTILL:-}" ]; then "$root/experiments/setup/build.sh" distill >&2; fi
distill=${DISTILL:-"$("$root/experiments/setup/build_dir.sh")/src/distill"}
mkdir -p "$work"
source "$root/experiments/reliability/commands.sh"
RANDOM=$(( ${SEED:-1} ))

prepare $commands
results=()
failed=0
printf '| command | kills | in a write | resumed | cycles | identical | lost |\n|---|---|---|---|---|---|---|\n'
for command in $commands; do
  # shellcheck disable=SC2207
  args=($(args_of "$command"))
  straight=$work/$command/straight
  mkdir -p "$work/$command"
  start=$(date +%s%N)
  "$distill" "${args[@]}" "${common[@]}" --overwrite --out "$straight" >"$straight.log" 2>&1 || {
    echo "$command: the straight run failed (see $straight.log)" >&2
    exit 1
  }
  # Kills land anywhere in (0, the straight run's duration]: start-up, work, checkpoints, end.
  duration_ms=$(( ($(date +%s%N) - start) / 1000000 ))
  kills=0 in_write=0 resumed=0 cycles=0 identical=0 lost=0
  # A command whose attempts fail on their own would never be killed: stop it after KILLS losses.
  while [ "$kills" -lt "$kills_wanted" ] && [ "$lost" -lt "$kills_wanted" ]; do
    cycles=$((cycles + 1))
    dir=$work/$command/cycle_$cycles
    rm -rf "$dir"
    while :; do
      DISTILL_FAULT_WRITE_DELAY_MS=${WRITE_DELAY_MS:-100} \
        "$distill" "${args[@]}" "${common[@]}" --resume --out "$dir" >>"$dir.log" 2>&1 &
      pid=$!
      delay_ms=$(( (RANDOM * 32768 + RANDOM) % (duration_ms + 1) ))
      sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
      kill -9 "$pid" 2>/dev/null || true
      status=0
      wait "$pid" 2>/dev/null || status=$?
      # 128 + 9: the kill landed; anything else: the attempt ended on its own first.
      if [ "$status" -eq 137 ]; then
        kills=$((kills + 1))
        if [ -n "$(find "$dir" -name '*.tmp.*' -print -quit 2>/dev/null)" ]; then
          in_write=$((in_write + 1))
        fi
        resumed=$((resumed + 1))
        continue
      fi
      if [ "$status" -ne 0 ]; then
        lost=$((lost + 1))
        echo "$command cycle $cycles: an attempt failed with exit $status (see $dir.log)" >&2
      elif same_outputs "$command" "$straight" "$dir"; then
        identical=$((identical + 1))
      else
        lost=$((lost + 1))
        echo "$command cycle $cycles: outputs differ from the straight run" >&2
      fi
      break
    done
  done
  if [ "$lost" -gt 0 ] || [ "$kills" -lt "$kills_wanted" ]; then failed=1; fi
  printf '| %s | %d | %d | %d | %d | %d | %d |\n' "$command" "$kills" "$in_write" "$resumed" "$cycles" "$identical" "$lost"
  results+=("{\"command\": \"$command\", \"kills\": $kills, \"in_write\": $in_write, \"resumed\": $resumed, \"cycles\": $cycles, \"identical\": $identical, \"lost\": $lost, \"straight_ms\": $duration_ms}")
done
mkdir -p "$(dirname "$result_json")"
(IFS=,; printf '{"kills_per_command": %d, "commit": "%s", "torch": "%s", "date": "%s", "rows": [%s]}\n' \
  "$kills_wanted" "${MADE_BY:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}" \
  "$("$distill" --version 2>/dev/null | sed -n 2p)" "$(date -u +%Y-%m-%dT%H:%MZ)" "${results[*]}") \
  >"$result_json.tmp" && mv "$result_json.tmp" "$result_json"
# Fails when any cycle lost work or differed, or a command made fewer kills than asked.
[ "$failed" -eq 0 ]
