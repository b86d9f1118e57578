#!/usr/bin/env bash
# Builds distill and runs the whole GoogleTest suite through ctest (README set-up command 2), one
# ctest entry per test case, then prints how many cases ran, passed, failed and were skipped.
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
# Every tool the suite compares against (python3-torch, chromium, torchrun) was installed above:
# a case that finds one missing fails instead of skipping.
export DISTILL_TESTS_NEED_TOOLS=1
junit="$build/Testing/cases.xml"
status=0
ctest --output-on-failure --output-junit "$junit" -j "$(nproc)" "$@" || status=$?
/usr/bin/python3 "$root/tests/summarize_cases.py" "$junit" || status=$((status == 0 ? 1 : status))
exit "$status"
