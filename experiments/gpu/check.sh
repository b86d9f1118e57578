#!/usr/bin/env bash
# The GPU check (issue 19), for a machine with a GPU: builds the wheel line (PyPI's torch, CUDA
# build), runs the CPU-vs-CUDA agreement cases and the CUDA cases of the suite, then `distill bench
# train` and `bench mtt` on the GPU against the Python reference on the same GPU (the wheel's own
# Python torch). Prints one JSON document on its last line. Aim: under 10 minutes on one GPU.
#   experiments/gpu/check.sh            on a GPU machine (fails when no GPU is visible)
#   experiments/gpu/check.sh --dry-run  anywhere: checks the script itself (the build it would
#                                       run, the cases it would call exist, the commands it would
#                                       run parse), runs nothing on a GPU
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
dry_run=0
case "${1:-}" in
  --dry-run) dry_run=1 ;;
  "") ;;
  *) echo "usage: experiments/gpu/check.sh [--dry-run]" >&2; exit 2 ;;
esac
export DISTILL_LIBTORCH=wheel
build=$("$root/experiments/setup/build_dir.sh")

# The cases the check runs: every CPU-vs-CUDA agreement case, and the CUDA cases elsewhere in
# the suite (each skips without a GPU; here a skip is a failure).
agreement_cases=(
  CudaAgreement.EveryModelForwardAndBackward
  CudaAgreement.DsaAugmentation
  CudaAgreement.MttMetaGradientAdjointEqualsUnroll
  CudaAgreement.EverySampler
  CudaAgreement.ProgressiveAndConsistencyDistillationStep
  CudaAgreement.EvalOfATinySet
)
other_cases=(
  "cli_test:Cli.CudaRunsMatchTheCpuRuns"
  "diffusion_test:Noise.ACudaTensorGetsTheCpuGeneratorsDraw"
)
bench_train=(bench train --device cuda --set bench.steps=50 --set bench.batch=256)
bench_mtt=(bench mtt --device cuda --ipc 10 --syn-steps 20 --batch-syn 100 --iters 5
           --meta-grad adjoint)
# K = 5 evaluation students at IPC 10: issue 20's GPU target is batched >= 3x sequential.
bench_eval=(bench eval --device cuda --ipc 10 --students 5 --steps 60)

# The build: the wheel line, as tests/run.sh builds it (the wheel is downloaded once, cached).
echo "build: DISTILL_LIBTORCH=wheel experiments/setup/build.sh distill cuda_test cli_test diffusion_test -> $build" >&2
"$root/experiments/setup/build.sh" distill cuda_test cli_test diffusion_test >&2
distill="$build/src/distill"
wheel_root=$(dirname "$("$root/experiments/setup/libtorch_wheel.sh" | tail -n 1)")
python=$(cat "$wheel_root/.distill-python")
# A command prefix (bench.python is run through the shell): the wheel's torch for its Python.
reference_python="env PYTHONPATH=$wheel_root $python"
export DISTILL_BIN="$distill" DISTILL_SOURCE_DIR="$root" DISTILL_TORCHRUN="$build/torchrun"

# Every named case must exist in its binary: a renamed test would otherwise be skipped silently.
listed=$("$build/tests/cuda_test" --gtest_list_tests)
for name in "${agreement_cases[@]}"; do
  grep -q "^  ${name#*.}\$" <<<"$listed" || { echo "error: $name is not in cuda_test" >&2; exit 1; }
done
for entry in "${other_cases[@]}"; do
  binary=${entry%%:*} name=${entry#*:}
  "$build/tests/$binary" --gtest_list_tests | grep -q "^  ${name#*.}\$" ||
    { echo "error: $name is not in $binary" >&2; exit 1; }
done
"$distill" --version >&2
# The benchmarks' settings parse as given (every --set key and value is checked; the device is
# only resolved when a benchmark runs).
for args in "${bench_train[*]:2}" "${bench_mtt[*]:2}" "${bench_eval[*]:2}"; do
  # shellcheck disable=SC2086  # the flags are plain words
  "$distill" config --dump bench $args --set "bench.python=$reference_python" >/dev/null
done
$reference_python -c 'import torch; print("reference: python torch", torch.__version__, "cuda", torch.version.cuda)' >&2
for script in train_step.py mtt_step.py eval_step.py; do
  $reference_python "$root/experiments/bench/$script" --help | grep -q -- "--device" ||
    { echo "error: experiments/bench/$script takes no --device" >&2; exit 1; }
done

if [ "$dry_run" = 1 ]; then
  cases_json=$(printf '"%s",' "${agreement_cases[@]}" "${other_cases[@]#*:}")
  echo "{\"dry_run\": true, \"ok\": true, \"build\": \"$build\", \"cases\": [${cases_json%,}]}"
  exit 0
fi

"$distill" --version | grep -q "cuda:0" || {
  echo "error: no GPU visible to distill (distill --version above); this check needs one" >&2
  exit 1
}
start=$(date +%s)
results=()
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
run_case() {  # binary, filter: passes only when every selected case ran and passed
  local log="$logs/$2.log"
  # Full float32 on both devices: Ampere and later run float32 convolutions in TF32 by default,
  # whose 1e-3 rounding would swamp the CPU-vs-CUDA bounds.
  if ! NVIDIA_TF32_OVERRIDE=0 "$build/tests/$1" --gtest_filter="$2" >"$log" 2>&1 ||
    grep -q "SKIPPED" "$log"; then
    cat "$log" >&2
    results+=("\"$2\": \"failed or skipped\"")
    return 1
  fi
  results+=("\"$2\": \"passed\"")
}
failed=0
for name in "${agreement_cases[@]}"; do run_case cuda_test "$name" || failed=1; done
for entry in "${other_cases[@]}"; do run_case "${entry%%:*}" "${entry#*:}" || failed=1; done
# The benchmarks' run folders are scratch, redone by every check: --overwrite replaces the
# previous check's (distill refuses a folder holding a run without it).
train_json=$("$distill" "${bench_train[@]}" --set "bench.python=$reference_python" --overwrite --out "$build/gpu-check/train" | tail -n 1)
mtt_json=$("$distill" "${bench_mtt[@]}" --set "bench.python=$reference_python" --overwrite --out "$build/gpu-check/mtt" | tail -n 1)
eval_json=$("$distill" "${bench_eval[@]}" --set "bench.python=$reference_python" --overwrite --out "$build/gpu-check/eval" | tail -n 1)
printf '{"dry_run": false, "ok": %s, "seconds": %d, "cases": {%s}, "bench_train": %s, "bench_mtt": %s, "bench_eval": %s}\n' \
  "$([ $failed = 0 ] && echo true || echo false)" "$(($(date +%s) - start))" \
  "$(IFS=,; echo "${results[*]}")" "$train_json" "$mtt_json" "$eval_json"
exit $failed
