#!/usr/bin/env bash
# What a fresh machine pays for README command 2, per LibTorch line: a clean build of everything
# (no ccache) plus the whole test suite. Clones the committed HEAD into a temporary folder
# (uncommitted changes are not measured), builds it with ccache disabled
# (experiments/setup/build.sh: Release, Ninja, precompiled headers) against the line
# DISTILL_LIBTORCH names (debian, the default, or wheel), runs ctest as tests/run.sh does, and
# writes ${OUT:-experiments/results/bench}/clean_build_<line>.json: commit, LibTorch line and
# version, cores, build and test wall seconds, ctest's tally and the load averages (another job on
# the cores slows both). The wheel line's one-time download (cached outside the clone) is timed
# apart as install_s. WRITE_README=1 also writes the README block `table:clean-build`
# (experiments/bench/write_clean_build_table.py, from every line's JSON).
#   experiments/bench/clean_build.sh
#   DISTILL_LIBTORCH=wheel experiments/bench/clean_build.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/experiments/results/bench}
line=${DISTILL_LIBTORCH:-debian}
case "$line" in
  debian | wheel) ;;
  *) echo "error: DISTILL_LIBTORCH=$line: this benchmark knows debian and wheel" >&2; exit 2 ;;
esac
mkdir -p "$out"
work=$(mktemp -d "${TMPDIR:-/tmp}/distill-clean-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
# Packages first, outside the timing (tests/run.sh installs the browser test's too).
DISTILL_WITH_BROWSER_TEST=1 "$root/experiments/setup/install_packages.sh"
install_s=0
if [ "$line" = wheel ]; then
  # The wheels' download and unpacking (a cache hit when already installed), outside the build.
  install_start=$(date +%s.%N)
  "$root/experiments/setup/libtorch_wheel.sh" >/dev/null
  install_s=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$install_start" "$(date +%s.%N)")
fi
git clone -q "$root" "$work/src"
commit=$(git -C "$work/src" rev-parse --short HEAD)
load_at_start=$(cut -d' ' -f1 /proc/loadavg)
start=$(date +%s.%N)
if ! CCACHE_DISABLE=1 BUILD_DIR="$work/build" "$work/src/experiments/setup/build.sh" \
  >"$work/build.log" 2>&1; then
  tail -20 "$work/build.log" >&2
  exit 1
fi
built=$(date +%s.%N)
torch_version=$("$work/build/src/distill" --version | sed -n 's/^LibTorch: built against \([^,]*\),.*/\1/p')
if ! (cd "$work/build" && ctest -j "$(nproc)" >"$work/ctest.log" 2>&1); then
  tail -20 "$work/ctest.log" >&2
  exit 1
fi
finished=$(date +%s.%N)
tally=$(grep -E "tests passed" "$work/ctest.log" | tail -1)
cd "$root/experiments/bench"
python3 - "$out/clean_build_$line.json" "$commit" "$start" "$built" "$finished" "$tally" \
  "$load_at_start" "$line" "$torch_version" "$install_s" <<'PY'
import sys
import bench_result
path, commit, start, built, finished, tally, load_at_start, line, torch_version, install_s = sys.argv[1:]
result = {"commit": commit, "ccache": False, "libtorch_line": line, "libtorch": torch_version,
          "install_s": float(install_s),
          "build_s": float(built) - float(start), "test_s": float(finished) - float(built),
          "total_s": float(finished) - float(start), "ctest": tally,
          "load_average_1min_at_start": float(load_at_start)}
result.update(bench_result.machine())
bench_result.write(path, result)
PY
if [ "${WRITE_README:-0}" = 1 ]; then
  python3 "$root/experiments/bench/write_clean_build_table.py" "$out"
fi
