#!/usr/bin/env bash
# Installs the LibTorch that GPU users run: PyPI's `torch` wheel (PyTorch's own CUDA build, with the
# CUDA runtime, cuDNN and NCCL as nvidia-* wheels beside it), pinned, into a cache folder outside
# the clone (several GB: kept between runs, never in the system Python). Prints, on its last line,
# the LibTorch root to build against (CMAKE_PREFIX_PATH; it holds lib/ and share/cmake/Torch).
#   DISTILL_TORCH_WHEEL_VERSION  pinned torch version (default below)
#   DISTILL_WHEEL_CACHE          cache folder (default ~/.cache/distill/libtorch-wheel)
set -euo pipefail
version=${DISTILL_TORCH_WHEEL_VERSION:-2.15.0}
cache=${DISTILL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/distill/libtorch-wheel}
target="$cache/torch-$version"
stamp="$target/.distill-complete"
# numpy: the wheel's Python torch warns without it (torchrun, the GPU check's Python reference).
packages=("torch==$version" numpy)
# The wheels are tagged for one CPython: any python3 with pip will do, the same one each time.
python=${DISTILL_WHEEL_PYTHON:-$(command -v python3)}
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "${packages[*]}" ]; then
  echo "installing ${packages[*]} (PyPI wheel, CUDA build, with its nvidia-* dependencies) into $target" >&2
  rm -rf "$target.partial"
  mkdir -p "$cache"
  # Into a side folder first, renamed when complete: an interrupted download is never taken
  # for an installed LibTorch.
  "$python" -m pip install --quiet --no-warn-script-location --root-user-action=ignore --target "$target.partial" "${packages[@]}" >&2
  rm -rf "$target"
  mv "$target.partial" "$target"
  "$python" -c 'import sys; print(sys.executable)' > "$target/.distill-python"
  echo "${packages[*]}" > "$stamp"
fi
prefix="$target/torch"
[ -f "$prefix/share/cmake/Torch/TorchConfig.cmake" ] || {
  echo "error: $prefix/share/cmake/Torch/TorchConfig.cmake is missing: the wheel in $target is not a LibTorch" >&2
  exit 1
}
echo "$prefix"
