# Sourced by the experiment scripts. Needs $distill (the binary) and the array `common` (flags
# added to every run).
# run DIR COMMAND ARGS...: one distill run into DIR unless it finished before (DIR/results.json
# exists), so an interrupted script continues where it stopped; the log goes to DIR.log.
run() {
  local dir=$1; shift
  [ -f "$dir/results.json" ] && return 0
  mkdir -p "$(dirname "$dir")"
  echo "== $dir" >&2
  "$distill" "$@" "${common[@]}" --out "$dir" >"$dir.log" 2>&1 || { tail -5 "$dir.log" >&2; exit 1; }
  tail -1 "$dir.log" >&2
}
