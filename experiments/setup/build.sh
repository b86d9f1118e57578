#!/usr/bin/env bash
# Configures and builds distill (Release, Ninja, ccache when present) into ${BUILD_DIR}.
# Arguments name targets to build (default: everything), e.g. `build.sh distill`.
# DISTILL_LIBTORCH picks the LibTorch line, each with its own default build folder:
#   debian (default)  Debian's libtorch-dev (1.13, CPU)                  -> build/
#   wheel             PyPI's torch wheel (2.x, CUDA build), installed by
#                     experiments/setup/libtorch_wheel.sh into a cache   -> build-wheel/
#   <folder>          any LibTorch root, e.g. an unpacked official archive -> build-libtorch/
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
libtorch=${DISTILL_LIBTORCH:-debian}
cmake_args=()
case "$libtorch" in
  debian) ;;
  wheel)
    prefix=$("$root/experiments/setup/libtorch_wheel.sh" | tail -n 1)
    cmake_args+=("-DCMAKE_PREFIX_PATH=$prefix")
    ;;
  *)
    [ -f "$libtorch/share/cmake/Torch/TorchConfig.cmake" ] || {
      echo "error: DISTILL_LIBTORCH=$libtorch: expected debian, wheel or a LibTorch root holding share/cmake/Torch/TorchConfig.cmake" >&2
      exit 2
    }
    cmake_args+=("-DCMAKE_PREFIX_PATH=$(cd "$libtorch" && pwd)")
    ;;
esac
build=$("$root/experiments/setup/build_dir.sh")
export CCACHE_SLOPPINESS=pch_defines,time_macros,include_file_mtime,include_file_ctime
mkdir -p "$build"
# One build at a time per build folder: a second ninja in the same folder (an experiment script
# calling this while another build runs) can record an object compiled from an older source.
exec 9>"$build/.build.lock"
flock 9
# A build folder stays with the LibTorch it was configured for (CMake caches what it found):
# asking it for another one is an error, not a silent build against the old one.
want="${cmake_args[*]:-debian}"
stamp="$build/.distill-libtorch"
if [ -f "$build/build.ninja" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" != "$want" ]; then
  echo "error: $build was configured for LibTorch '$(cat "$stamp")', not '$want'" \
    "(DISTILL_LIBTORCH=$libtorch): remove that folder or set BUILD_DIR to another" >&2
  exit 2
fi
if [ ! -f "$build/build.ninja" ]; then
  if [ "$libtorch" != debian ] && ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
    echo "note: no CUDA toolkit (nvcc) found; a CUDA LibTorch's CMake config (the wheel's) needs" \
      "one to configure (find_package(CUDAToolkit))" >&2
  fi
  cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release "${cmake_args[@]}"
fi
echo "$want" > "$stamp"
targets=()
for t in "$@"; do targets+=(--target "$t"); done
cmake --build "$build" -j "$(nproc)" "${targets[@]}"
