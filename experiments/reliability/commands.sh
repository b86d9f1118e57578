# The small seeded jobs the reliability scripts run (sourced; needs $distill and $work).
# Data: Fashion-MNIST (Debian's dataset-fashion-mnist), the first 2000 training images.
# One place defines each command line and the files whose bytes define its result.
common=(--seed 3 --threads 1 --no-progress --set data.train_limit=2000)

# The prerequisites the given commands read (trained once, never killed).
prepare() {  # prepare COMMAND...
  local needs=" $* "
  if [[ $needs == *" mtt"* ]] && [ ! -f "$work/prep/experts/replay_buffer_0.pt" ]; then
    "$distill" experts "${common[@]}" --set experts.num_experts=2 --set experts.train.epochs=3 \
      --set experts.model.width=16 --overwrite --out "$work/prep/experts" >/dev/null
  fi
  if [[ $needs == *" eval "* ]] && [ ! -f "$work/prep/subset/syn.pt" ]; then
    "$distill" subset "${common[@]}" --ipc 2 --overwrite --out "$work/prep/subset" >/dev/null
  fi
  if [[ $needs == *" kd "* ]] && [ ! -f "$work/prep/teacher/model.pt" ]; then
    "$distill" train "${common[@]}" --epochs 2 --set model.width=16 --overwrite \
      --out "$work/prep/teacher" >/dev/null
  fi
  if [[ $needs == *" synth-recover"* ]] && [ ! -f "$work/prep/committee/committee.toml" ]; then
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
    # Further paths of the same loops for the before/after comparison (seeded_outputs.sh).
    mtt-datm) echo "$(args_of mtt) --set mtt.matching.soft_labels=\"expert\" --set mtt.ema_decay=0.9 --set mtt.eval_every=10 --set mtt.eval_runs=1 --set mtt.eval_epochs=5 --set mtt.snapshot_every=10 --set mtt.matching.max_loss=100" ;;
    synth-recover-batches) echo "$(args_of synth-recover) --set synth.recover.batch_ipc=1 --set synth.recover.ipc=2 --set synth.recover.crops=2 --set synth.recover.init=\"real\"" ;;
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
    mtt | synth-recover | synth-recover-batches) echo "syn.pt" ;;
    mtt-datm) echo "syn.pt syn_best.pt" ;;
    eval) echo "students.jsonl" ;;
  esac
}

# The SHA-256 that stands for a result file: its bytes, or for eval's students.jsonl its rows
# without wall times, sorted, with the work folder replaced by a placeholder.
output_digest() {  # output_digest FILE
  if [ "$(basename "$1")" = students.jsonl ]; then
    /usr/bin/python3 -c '
import json, sys, hashlib
rows = [json.dumps({k: v for k, v in json.loads(l).items() if "second" not in k and "time" not in k}, sort_keys=True) for l in open(sys.argv[1])]
text = "\n".join(sorted(rows)).replace(sys.argv[2], "WORK_DIR")
print(hashlib.sha256(text.encode()).hexdigest())' "$1" "$work"
  else
    sha256sum "$1" | cut -d' ' -f1
  fi
}

same_outputs() {  # same_outputs COMMAND DIR_A DIR_B
  local file
  for file in $(outputs_of "$1"); do
    [ -f "$2/$file" ] && [ -f "$3/$file" ] || return 1
    [ "$(output_digest "$2/$file")" = "$(output_digest "$3/$file")" ] || return 1
  done
}
