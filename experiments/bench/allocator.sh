#!/usr/bin/env bash
# Is distill's own caching CPU allocator (src/core/caching_allocator.h) still worth having, on
# each LibTorch line, against the general-purpose allocators Debian ships? For each line
# (LINES, default "debian wheel") it runs `distill bench train` (ConvNet-3, batch 256) and
# `distill bench mtt` (IPC 10, 10 student steps, adjoint) with four allocators:
#   caching   distill's default (caching allocator for large blocks, glibc with raised thresholds)
#   glibc     DISTILL_CACHING_ALLOCATOR=0: glibc alone, thresholds still raised
#   jemalloc  DISTILL_CACHING_ALLOCATOR=0 + LD_PRELOAD of Debian's libjemalloc2
#   mimalloc  DISTILL_CACHING_ALLOCATOR=0 + LD_PRELOAD of Debian's libmimalloc2.0
# The allocators alternate within each of ROUNDS (default 2) rounds, so a change in the machine's
# load hits all of them alike. One JSON line per run in experiments/results/bench/allocator.jsonl;
# experiments/bench/write_allocator_table.py writes the README block `table:allocator` (medians,
# speed and peak memory relative to `caching` on the same line). Wants a quiet machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
DISTILL_WITH_ALLOCATOR_BENCH=1 "$root/experiments/setup/install_packages.sh"
out=$root/experiments/results/bench
mkdir -p "$out"
results=$out/allocator.jsonl
: > "$results.tmp"
work=$(mktemp -d "${TMPDIR:-/tmp}/distill-allocator.XXXXXX")
trap 'rm -rf "$work"' EXIT
lib=/usr/lib/x86_64-linux-gnu
declare -A preload=([caching]="" [glibc]="" [jemalloc]="$lib/libjemalloc.so.2" [mimalloc]="$lib/libmimalloc.so.2")
for line in ${LINES:-debian wheel}; do
  DISTILL_LIBTORCH=$line "$root/experiments/setup/build.sh" distill >/dev/null
done
for round in $(seq 1 "${ROUNDS:-2}"); do
  for line in ${LINES:-debian wheel}; do
    distill="$(DISTILL_LIBTORCH=$line "$root/experiments/setup/build_dir.sh")/src/distill"
    for allocator in caching glibc jemalloc mimalloc; do
      caching=1
      [ "$allocator" = caching ] || caching=0
      for workload in train mtt; do
        if [ "$workload" = train ]; then
          args=(bench train --set bench.python= --set bench.batch=256 --set bench.steps="${STEPS:-20}")
        else
          args=(bench mtt --set bench.python= --ipc 10 --syn-steps 10 --batch-syn 100 --iters "${ITERS:-3}" --meta-grad adjoint)
        fi
        # Every run reuses one scratch folder: --overwrite replaces the previous one's (distill
        # refuses a folder holding a run without it).
        json=$(env DISTILL_CACHING_ALLOCATOR=$caching LD_PRELOAD="${preload[$allocator]}" \
          "$distill" "${args[@]}" --threads 2 --overwrite --out "$work/run" | tail -n 1)
        python3 -c 'import json, sys; r = json.loads(sys.argv[1]); r.update(line=sys.argv[2], allocator=sys.argv[3], round=int(sys.argv[4]), load_average_1min=float(open("/proc/loadavg").read().split()[0])); print(json.dumps(r))' \
          "$json" "$line" "$allocator" "$round" >> "$results.tmp"
        echo "round $round $line $allocator $workload done" >&2
      done
    done
  done
done
mv "$results.tmp" "$results"
python3 "$root/experiments/bench/write_allocator_table.py" "$results"
