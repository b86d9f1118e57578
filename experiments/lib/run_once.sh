# shellcheck shell=bash
# Sourced by the experiment scripts. Needs $distill (the binary) and the array `common` (flags
# added to every run).
# run DIR COMMAND ARGS...: one distill run into DIR unless it finished before (DIR/results.json
# exists), so an interrupted script continues where it stopped; the log goes to DIR.log. A run
# that stopped after writing its checkpoint.pt (train, mtt, recover, diffusion) or after recording
# a student (eval's students.jsonl) is continued with --resume.
run() {
  local dir=$1; shift
  [ -f "$dir/results.json" ] && return 0
  mkdir -p "$(dirname "$dir")"
  local resume=()
  if [ -f "$dir/checkpoint.pt" ] || [ -f "$dir/students.jsonl" ]; then resume=(--resume); fi
  echo "== $dir ${resume[*]}" >&2
  "$distill" "$@" "${common[@]}" "${resume[@]}" --out "$dir" >"$dir.log" 2>&1 || {
    tail -5 "$dir.log" >&2
    exit 1
  }
  tail -1 "$dir.log" >&2
}
