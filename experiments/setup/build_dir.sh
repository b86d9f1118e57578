#!/usr/bin/env bash
# Prints the build folder of the LibTorch line DISTILL_LIBTORCH names (see build.sh):
# BUILD_DIR when set, else build/ (debian), build-wheel/ (wheel) or build-libtorch/ (a folder).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
case "${DISTILL_LIBTORCH:-debian}" in
  debian) default=$root/build ;;
  wheel) default=$root/build-wheel ;;
  *) default=$root/build-libtorch ;;
esac
echo "${BUILD_DIR:-$default}"
