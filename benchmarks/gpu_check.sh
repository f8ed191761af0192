#!/usr/bin/env bash
# GPU proof in one command (see benchmarks/gpu_check.py): paper-size steps of every method in
# fp32, bf16 and bf16 with channels-last weights, two concurrent tiny jobs through the GPU locks, the tiny workflow end to end.
# Writes benchmarks/results/gpu_check.csv, one row at a time. Ends within GPU_CHECK_LIMIT seconds
# (default 480) with the rows it has; "--dry" runs on the CPU.
#   [PYTHON=/path/to/python] bash benchmarks/gpu_check.sh [--dry] [more gpu_check.py options]
# It runs with $PYTHON, else .venv/bin/python of this checkout, else python3, and first checks
# that this Python has the project's dependencies (one line naming the missing ones).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
    if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
if ! command -v "$PY" >/dev/null 2>&1; then
    echo "gpu_check: no Python at '$PY' (set PYTHON=/path/to/python)" >&2
    exit 3
fi
LIMIT="${GPU_CHECK_LIMIT:-480}"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# the checks stop starting work 30 s before the limit; TERM at the limit, KILL 10 s later
exec timeout --signal=TERM --kill-after=10 "$LIMIT" "$PY" benchmarks/gpu_check.py \
    --budget "$((LIMIT > 60 ? LIMIT - 30 : LIMIT / 2))" "$@"
