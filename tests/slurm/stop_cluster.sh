#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by tests/slurm/start_cluster.sh.
#
# Cancels the jobs still queued, stops slurmd and slurmctld by their pid files and munged by its
# own pid file. Leaves the packages, the munge key and slurm.conf in place (a restart is fast).
# MRBENCH_SLURM_DIR must match the value given to start_cluster.sh.
# MRBENCH_SLURM_KEEP_MUNGE=1 leaves munged running.
set -uo pipefail

STATE_DIR="${MRBENCH_SLURM_DIR:-/var/tmp/mrbench-slurm}"

log() { echo "stop_cluster: $*" >&2; }

stop_pidfile() {
    local name="$1" pidfile="$2" pid
    [ -s "$pidfile" ] || return 0
    pid="$(cat "$pidfile")"
    if kill -0 "$pid" 2>/dev/null; then
        log "stopping $name (pid $pid)"
        kill "$pid"
        for _ in $(seq 1 30); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.5
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name did not stop in 15 s, sending SIGKILL"
            kill -9 "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$pidfile"
}

if command -v scancel >/dev/null && [ -s "$STATE_DIR/slurmctld.pid" ]; then
    scancel --user="$(id -un)" >/dev/null 2>&1 || true
fi
stop_pidfile slurmd "$STATE_DIR/slurmd.pid"
stop_pidfile slurmctld "$STATE_DIR/slurmctld.pid"
if [ "${MRBENCH_SLURM_KEEP_MUNGE:-0}" != 1 ]; then
    stop_pidfile munged /run/munge/munged.pid
fi
exit 0
