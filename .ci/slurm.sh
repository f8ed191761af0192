#!/usr/bin/env bash
# CI step: the workflow on a real one-node SLURM cluster (a few minutes).
#
# Starts slurmctld/slurmd/munged on localhost (installing slurm-wlm and munge if missing; needs
# root), runs the SLURM test through the slurm profile and stops the cluster again, also when the
# test fails. Exit status is the test's.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"

if [ "$(id -u)" -ne 0 ]; then
    echo "slurm.sh: needs root to start a local SLURM cluster; skipped" >&2
    exit 0
fi
# the SLURM executor plugin must be the pinned version (2.8+ needs numpy >= 2.4.5, antspyx < 2.4)
"$PY" -c "import snakemake_executor_plugin_slurm" 2>/dev/null || \
    "$PY" -m pip install -q -c envs/constraints.txt snakemake-executor-plugin-slurm

bash tests/slurm/start_cluster.sh
trap 'bash tests/slurm/stop_cluster.sh' EXIT
MRBENCH_REQUIRE_SLURM=1 "$PY" -m pytest -m slurm -p no:cacheprovider -q tests/test_slurm.py -rs
