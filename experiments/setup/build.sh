#!/usr/bin/env bash
# Configures and builds distill (Release, Ninja, ccache when present) into ${BUILD_DIR:-build}.
# Arguments name targets to build (default: everything), e.g. `build.sh distill`.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${BUILD_DIR:-$root/build}
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
mkdir -p "$build"
# One build at a time per build folder: a second ninja in the same folder (an experiment script
# calling this while another build runs) can record an object compiled from an older source.
exec 9>"$build/.build.lock"
flock 9
if [ ! -f "$build/build.ninja" ]; then
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
