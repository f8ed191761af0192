"""GPU slots for concurrent training jobs on one machine.

Snakemake's local executor counts the ``gpu`` resource but never says *which* device a job may
use, so two training jobs started together would both land on GPU 0. Each job therefore takes a
free device itself: one lock file per device in a lock folder, taken with a non-blocking
``fcntl.flock`` and held by an open file descriptor for the life of the process. The kernel
releases the lock when the process ends in any way, SIGKILL included, so a crashed job never
leaves a device reserved. The lock folder is private (0700, owner checked) and lock files are
opened without following links and used only when owned by the user
(:mod:`mrbench.training.locks`), so a
link planted at a predictable path cannot make a job truncate someone's file. The chosen device
is exported as ``CUDA_VISIBLE_DEVICES`` before CUDA is initialised, so inside the job it is
``cuda:0``.

Where the scheduler already chose (SLURM sets ``CUDA_VISIBLE_DEVICES`` for each job), that choice
is respected and no lock is taken. Without a GPU, ``auto`` falls back to the CPU and says so.

``MRBENCH_GPU_SLOTS`` (default 1) lets that many jobs share each device (one lock file per slot,
``gpu<i>.lock``, ``gpu<i>-slot<k>.lock``): small jobs on one large GPU, e.g. two tiny training
jobs with ``--resources gpu=2`` on a single device.

The device count can be simulated (``n_devices=`` or the ``MRBENCH_GPU_COUNT`` environment
variable), which is how the tests exercise the locking on a machine without GPUs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path

from mrbench.training import locks

#: environment variable naming the lock folder (default: :func:`default_lock_dir`)
LOCK_DIR_ENV = "MRBENCH_GPU_LOCK_DIR"
#: environment variable overriding the detected number of GPUs (tests, or to use fewer GPUs)
COUNT_ENV = "MRBENCH_GPU_COUNT"
#: environment variable: jobs that may share one device (default 1)
SLOTS_ENV = "MRBENCH_GPU_SLOTS"

_held: list[int] = []  # descriptors of the locks this process holds (kept open on purpose)


@dataclass(frozen=True)
class DeviceSlot:
    """The device a job runs on and why."""

    device: str  #: "cpu" or "cuda"
    index: int | None  #: physical GPU index locked by this process, None otherwise
    lock_path: Path | None
    message: str  #: one line for the log and ``device.txt``


def default_lock_dir() -> Path:
    """``$MRBENCH_GPU_LOCK_DIR``, else a per-user folder in the temp dir, one path for every job
    of the user on the machine (so separate workflows share the GPUs fairly). It is created 0700
    and its owner checked before use (:func:`mrbench.training.locks.private_dir`): a folder planted
    there by someone else is refused, not used."""
    env = os.environ.get(LOCK_DIR_ENV)
    if env:
        return Path(env)
    return Path(tempfile.gettempdir()) / f"mrbench-gpu-locks-{os.getuid()}"


def count_gpus() -> int:
    """Number of physical NVIDIA GPUs, without initialising CUDA in this process.

    Initialising CUDA here would freeze the device list before ``CUDA_VISIBLE_DEVICES`` is set,
    so the count comes from ``nvidia-smi -L`` or, failing that, from the driver's entries in
    ``/proc/driver/nvidia/gpus``; without an NVIDIA driver there is no GPU.
    """
    env = os.environ.get(COUNT_ENV)
    if env is not None and env.strip() != "":
        try:
            return max(0, int(env))
        except ValueError:
            raise ValueError(f"{COUNT_ENV}={env!r}: expected an integer") from None
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30)
            if out.returncode == 0:
                return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.TimeoutExpired):
            pass
    proc = Path("/proc/driver/nvidia/gpus")
    if proc.is_dir():
        return sum(1 for _ in proc.iterdir())
    return 0  # no NVIDIA driver: no CUDA device


def _try_lock(path: Path) -> int | None:
    # no link followed, only a regular file of this user, never truncated unless locked by us
    return locks.try_lock(path)


def _holder(path: Path) -> str:
    return locks.holder(path)


def _scheduled(env: MutableMapping[str, str]) -> bool:
    """Whether a batch scheduler placed this job (SLURM): its ``CUDA_VISIBLE_DEVICES`` is the
    job's own, to respect; a list set in a workstation shell is not."""
    return any(k in env for k in ("SLURM_JOB_ID", "SLURM_JOBID", "SLURM_STEP_GPUS"))


def acquire_device(
    requested: str = "auto",
    *,
    lock_dir: str | Path | None = None,
    n_devices: int | None = None,
    wait_s: float = 0.0,
    env: MutableMapping[str, str] | None = None,
) -> DeviceSlot:
    """Choose the device for this process and, for a local GPU, lock it until the process ends.

    ``requested`` is ``auto`` (a free GPU if there is one, else the CPU), ``cuda`` (a GPU or an
    error) or ``cpu``. If every GPU is locked by other jobs, retry for ``wait_s`` seconds, then
    raise ``RuntimeError`` naming the holders. Sets ``CUDA_VISIBLE_DEVICES`` in ``env``
    (default ``os.environ``).
    """
    env = os.environ if env is None else env
    if requested not in ("auto", "cuda", "cpu"):
        raise ValueError(f"--device {requested!r}: expected auto, cuda or cpu")
    if requested == "cpu":
        return DeviceSlot("cpu", None, None, "device: cpu (requested)")
    preset = env.get("CUDA_VISIBLE_DEVICES")
    if preset is not None:
        if preset.strip() in ("", "-1"):
            if requested == "cuda":
                raise RuntimeError(f"--device cuda, but CUDA_VISIBLE_DEVICES={preset!r} hides all")
            return DeviceSlot(
                "cpu", None, None, f"device: cpu (CUDA_VISIBLE_DEVICES={preset!r} hides all GPUs)"
            )
        listed = [d.strip() for d in preset.split(",") if d.strip()]
        if len(listed) == 1 or _scheduled(env) or not all(d.isdigit() for d in listed):
            return DeviceSlot(
                "cuda",
                None,
                None,
                f"device: cuda (CUDA_VISIBLE_DEVICES={preset} chosen by the scheduler)",
            )
        ids = [int(d) for d in listed]  # a shell's list, no scheduler: lock one of those GPUs
    else:
        n = count_gpus() if n_devices is None else n_devices
        ids = list(range(n))
    if not ids:
        if requested == "cuda":
            raise RuntimeError("--device cuda, but no GPU was found")
        return DeviceSlot("cpu", None, None, "device: cpu (no GPU found; running on the CPU)")
    folder = locks.private_dir(Path(lock_dir) if lock_dir is not None else default_lock_dir())
    deadline = time.monotonic() + wait_s
    slots = max(1, int(env.get(SLOTS_ENV, "1") or 1))
    if int(env.get("WORLD_SIZE", "1") or 1) > 1:
        slots = 1  # two ranks of one data-parallel job on one GPU: NCCL refuses that
    n = len(ids)
    while True:
        for i, k in ((i, k) for k in range(slots) for i in ids):
            path = folder / (f"gpu{i}.lock" if k == 0 else f"gpu{i}-slot{k}.lock")
            fd = _try_lock(path)
            if fd is not None:
                _held.append(fd)
                env["CUDA_VISIBLE_DEVICES"] = str(i)
                return DeviceSlot(
                    "cuda",
                    i,
                    path,
                    f"device: cuda, GPU {i} of {n} (lock {path}, pid {os.getpid()})",
                )
        if time.monotonic() >= deadline:
            holders = ", ".join(f"GPU {i}: pid {_holder(folder / f'gpu{i}.lock')}" for i in ids)
            raise RuntimeError(
                f"all {n} GPU(s) are held by other jobs ({holders}; locks in {folder}); "
                "run fewer jobs at once (snakemake --resources gpu=N)"
            )
        time.sleep(min(2.0, max(0.05, deadline - time.monotonic())))
