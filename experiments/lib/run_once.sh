# shellcheck shell=bash
# Sourced by the experiment scripts. Needs $distill (the binary) and the array `common` (flags
# added to every run).
# run DIR COMMAND ARGS...: one distill run into DIR unless it finished before (DIR/results.json
# exists), so an interrupted script continues where it stopped; the log goes to DIR.log. distill
# refuses an --out that holds a run unless told what to do with it, so a DIR an earlier attempt
# started (DIR/config.toml exists) gets --resume for the commands that keep a checkpoint.pt or a
# record of students (train, experts, mtt, eval, kd, committee train, synth recover, diffusion
# train/distill: they continue from it, or start over when the attempt stopped before writing
# one) and --overwrite for those that keep none and refuse --resume (subset, import, bench, report,
# synth relabel/export, diffusion sample/score, kd search: the attempt's files are removed and it
# is redone).
run() {
  local dir=$1; shift
  [ -f "$dir/results.json" ] && return 0
  mkdir -p "$(dirname "$dir")"
  local rerun=()
  if [ -f "$dir/config.toml" ]; then
    case "$1 ${2:-}" in
      "subset "* | "import "* | "bench "* | "report "* | "synth relabel" | "synth export" | \
        "diffusion sample" | "diffusion score" | "kd search") rerun=(--overwrite) ;;
      # Every other command resumes (one that cannot says so: exit 2, nothing is removed).
      *) rerun=(--resume) ;;
    esac
  fi
  echo "== $dir ${rerun[*]}" >&2
  "$distill" "$@" "${common[@]}" "${rerun[@]}" --out "$dir" >"$dir.log" 2>&1 || {
    tail -5 "$dir.log" >&2
    exit 1
  }
  tail -1 "$dir.log" >&2
}
