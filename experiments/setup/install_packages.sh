#!/usr/bin/env bash
# Installs the Debian packages distill needs, only those missing (idempotent; needs root or sudo).
set -euo pipefail
packages=(
  cmake ninja-build g++ ccache pkg-config
  libtorch-dev libgloo-dev libopenblas0-openmp
  libboost-program-options-dev libtomlplusplus-dev libstb-dev libgtest-dev
  nlohmann-json3-dev zlib1g-dev
  dataset-fashion-mnist
)
if [ "${DISTILL_WITH_PYTHON_REFERENCE:-1}" = 1 ]; then
  # Test-only references for parity checks and .pt interop (never used by the library).
  packages+=(python3-torch python3-torchvision)
fi
if [ "${DISTILL_WITH_BROWSER_TEST:-0}" = 1 ]; then
  # Test-only: the `distill report` end-to-end test opens a report in headless Chromium.
  packages+=(chromium)
fi
if [ "${DISTILL_WITH_ALLOCATOR_BENCH:-0}" = 1 ]; then
  # Benchmark-only: the allocators experiments/bench/allocator.sh compares with distill's own.
  packages+=(libjemalloc2 libmimalloc2.0)
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}" >&2
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi
