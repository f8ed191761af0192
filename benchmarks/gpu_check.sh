#!/usr/bin/env bash
# GPU proof in one command (see benchmarks/gpu_check.py): paper-size steps of every method in
# fp32, bf16 and bf16 with channels-last weights, two concurrent tiny jobs through the GPU locks, the tiny workflow end to end.
# Writes benchmarks/results/gpu_check.csv. Stops after 8 minutes at most; "--dry" runs on the CPU.
#   bash benchmarks/gpu_check.sh [--dry] [more gpu_check.py options]
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
exec timeout --signal=TERM 480 python benchmarks/gpu_check.py "$@"
