#!/usr/bin/env bash
# Installs the LibTorch that GPU users run: PyPI's `torch` wheel (PyTorch's own CUDA build, with the
# CUDA runtime, cuDNN and NCCL as nvidia-* wheels beside it), pinned, into a cache folder outside
# the clone (about 5 GB: kept between runs, never in the system Python). Prints, on its last line,
# the LibTorch root to build against (CMAKE_PREFIX_PATH; it holds lib/ and share/cmake/Torch).
# Configuring against it also needs a CUDA toolkit (its CMake config looks for one).
#   DISTILL_TORCH_WHEEL_VERSION  pinned torch version (default below)
#   DISTILL_WHEEL_CACHE          cache folder (default ~/.cache/distill/libtorch-wheel)
#   DISTILL_WHEEL_PYTHON         the Python whose pip installs it (default: python3 on PATH; the
#                                wheels are tagged for its CPython version)
set -euo pipefail
version=${DISTILL_TORCH_WHEEL_VERSION:-2.15.0}
cache=${DISTILL_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/distill/libtorch-wheel}
target="$cache/torch-$version"
stamp="$target/.distill-complete"
python=${DISTILL_WHEEL_PYTHON:-$(command -v python3 || true)}
if [ -z "$python" ] || ! "$python" -m pip --version >/dev/null 2>&1; then
  echo "error: installing the torch wheel needs a python3 with pip (found '${python:-no python3}');" \
    "install python3-pip or set DISTILL_WHEEL_PYTHON" >&2
  exit 2
fi
# numpy: the wheel's Python torch warns without it (torchrun, the GPU check's Python reference).
packages=("torch==$version" "numpy==2.4.6")
want="${packages[*]} for $("$python" -c 'import sys; print("cp%d%d" % sys.version_info[:2])')"
mkdir -p "$cache"
# One installer at a time (two fresh builds at once would share the side folder below).
exec 8>"$cache/.lock"
flock 8
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "installing ${packages[*]} (PyPI wheels, CUDA build, with their nvidia-* dependencies) into $target" >&2
  rm -rf "$target.partial"
  # Into a side folder first, renamed when complete: an interrupted download is never taken
  # for an installed LibTorch.
  "$python" -m pip install --quiet --no-warn-script-location --root-user-action=ignore \
    --target "$target.partial" "${packages[@]}" >&2
  "$python" -c 'import sys; print(sys.executable)' > "$target.partial/.distill-python"
  echo "$want" > "$target.partial/.distill-complete"
  rm -rf "$target"
  mv "$target.partial" "$target"
fi
prefix="$target/torch"
[ -f "$prefix/share/cmake/Torch/TorchConfig.cmake" ] || {
  echo "error: $prefix/share/cmake/Torch/TorchConfig.cmake is missing: the wheel in $target is not a LibTorch" >&2
  exit 1
}
echo "$prefix"
