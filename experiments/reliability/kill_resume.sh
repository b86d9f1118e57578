#!/usr/bin/env bash
# Crash consistency under SIGKILL (issue 24). For each command: one straight run, then the same
# command line with --resume started again and again, each attempt killed with SIGKILL at a random
# moment, until an attempt finishes; repeated in fresh folders until KILLS kills were made. The
# final outputs must be byte-identical to the straight run's (CPU, one thread, same seed).
#
#   experiments/reliability/kill_resume.sh [WORK_DIR]      # KILLS=20 COMMANDS="train mtt ..."
#
# Prints one table row per command: kills, resumed attempts, finished cycles, identical, lost
# (a cycle whose attempt failed with an error instead of finishing, or whose outputs differ), and
# writes WORK_DIR/kill_resume.json. The data is Fashion-MNIST (train_limit keeps runs a few
# seconds long, so kills land in every phase: start-up, training, checkpoint writes, the end).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
work=${1:-$root/runs/kill_resume}
kills_wanted=${KILLS:-20}
commands=${COMMANDS:-"train experts mtt eval kd synth-recover diffusion-distill"}
"$root/experiments/setup/build.sh" distill >&2
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
mkdir -p "$work"
common=(--seed 3 --threads 1 --no-progress --set data.train_limit=2000)
RANDOM=$(( ${SEED:-1} ))

# The prerequisites some commands read (trained once, never killed).
prepare() {
  if [ ! -f "$work/prep/experts/replay_buffer_0.pt" ]; then
    "$distill" experts "${common[@]}" --set experts.num_experts=2 --set experts.train.epochs=3 \
      --set experts.model.width=16 --overwrite --out "$work/prep/experts" >/dev/null
  fi
  if [ ! -f "$work/prep/subset/syn.pt" ]; then
    "$distill" subset "${common[@]}" --ipc 2 --overwrite --out "$work/prep/subset" >/dev/null
  fi
  if [ ! -f "$work/prep/teacher/model.pt" ]; then
    "$distill" train "${common[@]}" --epochs 2 --set model.width=16 --overwrite \
      --out "$work/prep/teacher" >/dev/null
  fi
  if [ ! -f "$work/prep/committee/committee.toml" ]; then
    "$distill" committee train "${common[@]}" --set committee.val_per_class=20 \
      --set committee.train.epochs=2 \
      --set 'committee.members=[{model={arch="convnet", width=16}}, {model={arch="mlp", hidden=[64]}}]' \
      --overwrite --out "$work/prep/committee" >/dev/null
  fi
}

# The command line of each command under test (without --out / --resume).
args_of() {
  case $1 in
    train) echo "train --epochs 4 --set model.width=16" ;;
    experts) echo "experts --set experts.num_experts=2 --set experts.train.epochs=3 --set experts.model.width=16" ;;
    mtt) echo "mtt --buffer $work/prep/experts --ipc 1 --iterations 30 --set mtt.model.width=16 --set mtt.checkpoint_every=3 --set mtt.matching.syn_steps=5 --set mtt.matching.max_start_epoch=1 --set mtt.matching.expert_epochs=1" ;;
    eval) echo "eval --syn $work/prep/subset/syn.pt --runs 4 --epochs 40 --set eval.random_real=false" ;;
    kd) echo "kd --teacher $work/prep/teacher/model.pt --set teacher.model.width=16 --epochs 3 --set model.arch=mlp --set model.hidden=[64]" ;;
    synth-recover) echo "synth recover --committee $work/prep/committee/committee.toml --ipc 1 --iterations 60 --set synth.recover.checkpoint_every=5" ;;
    diffusion-distill) echo "diffusion distill --method progressive --train-images 200 --arch mlp --set distill.checkpoint_every=5 --set distill.progressive.teacher_steps=8 --set distill.progressive.student_steps=2 --set distill.progressive.iterations=40 --set distill.progressive.batch=32" ;;
    *) echo "unknown command $1" >&2; exit 2 ;;
  esac
}

# The files whose bytes must match the straight run's (JSON without wall times).
outputs_of() {
  case $1 in
    train | kd | diffusion-distill) echo "model.pt" ;;
    experts) echo "replay_buffer_0.pt" ;;
    mtt | synth-recover) echo "syn.pt" ;;
    eval) echo "students.jsonl" ;;
  esac
}

same_outputs() {  # same_outputs COMMAND DIR_A DIR_B
  local file
  for file in $(outputs_of "$1"); do
    if [ "$file" = students.jsonl ]; then
      /usr/bin/python3 - "$2/$file" "$3/$file" <<'PY' || return 1
import json, sys
def rows(path):
    out = []
    for line in open(path):
        row = json.loads(line)
        out.append({k: v for k, v in row.items() if "second" not in k and "time" not in k})
    return sorted(out, key=json.dumps)
sys.exit(0 if rows(sys.argv[1]) == rows(sys.argv[2]) else 1)
PY
    else
      cmp -s "$2/$file" "$3/$file" || return 1
    fi
  done
}

prepare
results=()
printf '| command | kills | resumed | cycles | identical | lost |\n|---|---|---|---|---|---|\n'
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
  kills=0 resumed=0 cycles=0 identical=0 lost=0
  # A command whose attempts fail on their own would never be killed: stop it after KILLS losses.
  while [ "$kills" -lt "$kills_wanted" ] && [ "$lost" -lt "$kills_wanted" ]; do
    cycles=$((cycles + 1))
    dir=$work/$command/cycle_$cycles
    rm -rf "$dir"
    while :; do
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
  printf '| %s | %d | %d | %d | %d | %d |\n' "$command" "$kills" "$resumed" "$cycles" "$identical" "$lost"
  results+=("{\"command\": \"$command\", \"kills\": $kills, \"resumed\": $resumed, \"cycles\": $cycles, \"identical\": $identical, \"lost\": $lost, \"straight_ms\": $duration_ms}")
done
(IFS=,; printf '{"kills_per_command": %d, "rows": [%s]}\n' "$kills_wanted" "${results[*]}") \
  >"$work/kill_resume.json.tmp" && mv "$work/kill_resume.json.tmp" "$work/kill_resume.json"
