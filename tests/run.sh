#!/usr/bin/env bash
# Builds distill and runs the whole GoogleTest suite through ctest (README set-up command 2).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
DISTILL_WITH_BROWSER_TEST=1 "$root/experiments/setup/install_packages.sh"
"$root/experiments/setup/build.sh"
cd "${BUILD_DIR:-$root/build}"
ctest --output-on-failure -j "$(nproc)" "$@"
