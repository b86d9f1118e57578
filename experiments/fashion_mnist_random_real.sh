#!/usr/bin/env bash
# Random-real baselines on Fashion-MNIST with the DC/DSA/MTT evaluation protocol (ConvNet-3,
# 300 epochs, DSA, 5 students, a fresh random subset per student), IPC 1/10/50, and the README
# table from their results.json. Compare with ../shared/notes/fashion-mnist-facts.md
# (Python reference: 51.8 ± 2.4 / 76.5 ± 1.2 / 83.8 ± 0.6).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/experiments/setup/build.sh" distill >/dev/null
distill="$("$root/experiments/setup/build_dir.sh")/src/distill"
out=${OUT:-$root/runs/fashion_mnist_random_real}
runs=${RUNS:-5}
results=()
for ipc in ${IPCS:-1 10 50}; do
  # A rerun redoes the baselines (the table is rewritten from fresh students): --overwrite
  # replaces an earlier run in the folder, which distill otherwise refuses to write over.
  "$distill" eval --ipc "$ipc" --runs "$runs" --seed 0 --no-progress --overwrite \
    --out "$out/ipc$ipc"
  results+=("$out/ipc$ipc/results.json")
done
/usr/bin/python3 "$root/experiments/write_table.py" random-real \
  "Random real images per class, Fashion-MNIST, ConvNet-3 students (\`experiments/fashion_mnist_random_real.sh\`, $(nproc) cores, $(date -u +%Y-%m-%d)):" \
  "${results[@]}"
