#!/usr/bin/env bash
# Paper-size (256 px, batch 1) training steps before/after on the CPU, interleaved A B A B per
# method so that both versions see the same machine load; one process per row.
#   bash benchmarks/train_before_after.sh BEFORE_CHECKOUT [methods] [rounds]
# Rows go to benchmarks/results/train_before_after/<method>-<round>-<version>.csv; the first
# round also counts FLOPs. "before": the checkout's plugins with torch's default Adam (as its
# trainer ran them); "after": this checkout with the trainer's defaults (fused Adam,
# contiguous weights).
set -euo pipefail
before=${1:?usage: train_before_after.sh BEFORE_CHECKOUT [methods] [rounds]}
methods=${2:-cyclegan,syndiff,disdiff}
rounds=${3:-2}
here=$(cd "$(dirname "$0")/.." && pwd)
out=$here/benchmarks/results/train_before_after
mkdir -p "$out"
common=(--sizes paper --paper-steps 1 --paper-batch 1 --threads 2)
for m in ${methods//,/ }; do
    for r in $(seq 1 "$rounds"); do
        flops=(); [ "$r" = 1 ] || flops=(--no-flops)
        python "$here/benchmarks/train_throughput.py" "${common[@]}" "${flops[@]}" --methods "$m" \
            --code-root "$before" --optimizer-impl default --memory-format contiguous \
            --tag before --out "$out/$m-$r-before.csv"
        python "$here/benchmarks/train_throughput.py" "${common[@]}" "${flops[@]}" --methods "$m" \
            --tag after --out "$out/$m-$r-after.csv"
    done
done
