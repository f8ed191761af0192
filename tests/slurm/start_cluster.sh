#!/usr/bin/env bash
# Start a one-node SLURM cluster on localhost (slurmctld + slurmd, no GPUs) for the SLURM tests.
#
# Works without systemd and without cgroups (containers, CI runners): installs Debian's slurm-wlm and
# munge when missing, creates a munge key when absent, starts munged as the munge user, writes
# /etc/slurm/slurm.conf (jobs and job steps read it from there, an exported SLURM_CONF is not seen by
# srun inside a job), starts slurmctld and slurmd as root and waits until the node is idle.
# There is no accounting database, so jobs stay visible to squeue for MinJobAge seconds: Snakemake's
# SLURM executor must be run with `--slurm-status-command squeue`.
#
# Idempotent: running it again on a running cluster only checks that the node is idle.
# Needs root. Environment:
#   MRBENCH_SLURM_DIR      state, spool, pid and log files (default /var/tmp/mrbench-slurm)
#   MRBENCH_SLURM_MEM_MARGIN_MB  memory kept back from the node's RealMemory (default 1024)
#   MRBENCH_SLURM_PARTITION      partition name (default debug)
#   MRBENCH_SLURM_TIMEOUT        seconds to wait for the node to become idle (default 60)
set -euo pipefail

STATE_DIR="${MRBENCH_SLURM_DIR:-/var/tmp/mrbench-slurm}"
MARGIN_MB="${MRBENCH_SLURM_MEM_MARGIN_MB:-1024}"
PARTITION="${MRBENCH_SLURM_PARTITION:-debug}"
TIMEOUT="${MRBENCH_SLURM_TIMEOUT:-60}"
CONF=/etc/slurm/slurm.conf

log() { echo "start_cluster: $*" >&2; }
die() { log "error: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (installs packages, starts slurmctld/slurmd/munged)"

# --- packages ---------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
    command -v apt-get >/dev/null || die "slurm-wlm/munge missing and apt-get not available"
    log "installing slurm-wlm and munge"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        slurm-wlm munge >/dev/null
fi

# --- munge ------------------------------------------------------------------------------------
install -d -o munge -g munge -m 0700 /etc/munge /var/lib/munge /var/log/munge
install -d -o munge -g munge -m 0755 /run/munge
if [ ! -s /etc/munge/munge.key ]; then
    log "creating munge key"
    if command -v mungekey >/dev/null; then
        mungekey --create --keyfile=/etc/munge/munge.key --force
    else
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged
    for _ in $(seq 1 20); do
        munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
        sleep 0.5
    done
    munge -n | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
fi

# --- slurm.conf -------------------------------------------------------------------------------
install -d -m 0755 "$STATE_DIR" "$STATE_DIR/ctld" "$STATE_DIR/spool" "$STATE_DIR/log" /etc/slurm
CPUS="$(nproc)"
TOTAL_MB="$(free -m | awk '/^Mem:/ {print $2}')"
REAL_MB=$((TOTAL_MB - MARGIN_MB))
[ "$REAL_MB" -ge 256 ] || REAL_MB=$((TOTAL_MB / 2))

NEW_CONF="$(mktemp)"
cat >"$NEW_CONF" <<EOF
# One-node cluster on localhost written by tests/slurm/start_cluster.sh (mrbench).
ClusterName=mrbench
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
ReturnToService=2
# no accounting database: finished jobs must stay visible to squeue (snakemake --slurm-status-command squeue)
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
KillWait=10
Waittime=0
StateSaveLocation=$STATE_DIR/ctld
SlurmdSpoolDir=$STATE_DIR/spool
SlurmctldPidFile=$STATE_DIR/slurmctld.pid
SlurmdPidFile=$STATE_DIR/slurmd.pid
SlurmctldLogFile=$STATE_DIR/log/slurmctld.log
SlurmdLogFile=$STATE_DIR/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
NodeName=localhost CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF

running() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

if [ -f "$CONF" ] && cmp -s "$NEW_CONF" "$CONF"; then
    rm -f "$NEW_CONF"
else
    if [ -f "$CONF" ] && ! grep -q 'tests/slurm/start_cluster.sh' "$CONF"; then
        cp "$CONF" "$CONF.before-mrbench"
        log "kept the previous slurm.conf as $CONF.before-mrbench"
    fi
    mv "$NEW_CONF" "$CONF"
    chmod 0644 "$CONF"
    # daemons started with an older configuration must be restarted to read this one
    for pidfile in "$STATE_DIR/slurmd.pid" "$STATE_DIR/slurmctld.pid"; do
        if running "$pidfile"; then
            log "restarting $(basename "$pidfile" .pid) for the new slurm.conf"
            kill "$(cat "$pidfile")"
            for _ in $(seq 1 20); do running "$pidfile" || break; sleep 0.5; done
        fi
    done
fi

# --- daemons ----------------------------------------------------------------------------------
if ! running "$STATE_DIR/slurmctld.pid"; then
    log "starting slurmctld"
    /usr/sbin/slurmctld -f "$CONF"
fi
if ! running "$STATE_DIR/slurmd.pid"; then
    log "starting slurmd"
    /usr/sbin/slurmd -f "$CONF" -N localhost
fi

# --- wait for an idle node --------------------------------------------------------------------
deadline=$((SECONDS + TIMEOUT))
state=""
while [ "$SECONDS" -lt "$deadline" ]; do
    state="$(sinfo -h -N -n localhost -o '%t' 2>/dev/null | head -n1 || true)"
    case "$state" in
        idle | mix | alloc) break ;;
        drain* | drng | down*)
            # a node left down by an earlier run (e.g. after a memory change) is brought back
            scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
            ;;
    esac
    sleep 1
done
case "$state" in
    idle | mix | alloc) ;;
    *)
        tail -n 20 "$STATE_DIR/log/slurmctld.log" "$STATE_DIR/log/slurmd.log" >&2 || true
        die "node localhost is '${state:-not reported}' after ${TIMEOUT}s (logs in $STATE_DIR/log)"
        ;;
esac
log "cluster up: node localhost $state, CPUs=$CPUS RealMemory=${REAL_MB}MB, partition $PARTITION"
sinfo
