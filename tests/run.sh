#!/usr/bin/env bash
# Builds distill and runs the whole GoogleTest suite through ctest (README set-up command 2).
# DISTILL_LIBTORCH=wheel builds against PyPI's torch wheel (LibTorch 2.x, CUDA build) into
# build-wheel/ instead of Debian's LibTorch 1.13 (experiments/setup/build.sh).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DISTILL_WITH_BROWSER_TEST=1 "$root/experiments/setup/install_packages.sh"
"$root/experiments/setup/build.sh"
build=$("$root/experiments/setup/build_dir.sh")
# Which LibTorch the suite runs on, in the log.
"$build/src/distill" --version
cd "$build"
ctest --output-on-failure -j "$(nproc)" "$@"
