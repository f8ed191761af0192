"""GPU slots with simulated devices: concurrent jobs get distinct devices, a killed job frees its
device, the scheduler's CUDA_VISIBLE_DEVICES is respected, no GPU means the CPU."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import release_gpu_locks

from mrbench.training import gpu

ROOT = Path(__file__).resolve().parents[1]

HOLDER = """
import os, sys, time
from mrbench.training.gpu import acquire_device
try:
    slot = acquire_device("auto", lock_dir=sys.argv[1], n_devices=2)
except RuntimeError as exc:
    print("BUSY", exc, flush=True)
    sys.exit(3)
print(slot.index, os.environ["CUDA_VISIBLE_DEVICES"], flush=True)
time.sleep(120)
"""


def _start(lock_dir: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


def _first_line(proc: subprocess.Popen) -> str:
    line = proc.stdout.readline().strip()
    assert line, f"holder exited early with code {proc.wait()}"
    return line


def test_concurrent_jobs_get_distinct_devices_and_kill_frees(tmp_path: Path) -> None:
    procs = [_start(tmp_path), _start(tmp_path)]
    try:
        lines = [_first_line(p) for p in procs]
        got = sorted(int(line.split()[0]) for line in lines)
        assert got == [0, 1], lines
        for line in lines:  # CUDA_VISIBLE_DEVICES names the locked device
            index, visible = line.split()
            assert index == visible

        third = _start(tmp_path)
        assert _first_line(third).startswith("BUSY")
        assert third.wait(timeout=30) == 3

        victim = procs[0]
        freed = int(lines[0].split()[0])
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        fourth = _start(tmp_path)
        procs.append(fourth)
        assert int(_first_line(fourth).split()[0]) == freed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


def test_waits_for_a_device_to_come_free(tmp_path: Path) -> None:
    env: dict[str, str] = {}
    slot = gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=1, env=env)
    assert slot.index == 0 and env["CUDA_VISIBLE_DEVICES"] == "0"
    with pytest.raises(RuntimeError, match="held by other jobs"):
        gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=1, wait_s=0.2, env={})
    release_gpu_locks()
    again = gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=1, env={})
    assert again.index == 0
    release_gpu_locks()


def test_scheduler_choice_is_respected(tmp_path: Path) -> None:
    env = {"CUDA_VISIBLE_DEVICES": "3"}
    slot = gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=8, env=env)
    assert slot.device == "cuda" and slot.index is None and env["CUDA_VISIBLE_DEVICES"] == "3"
    assert not list(tmp_path.iterdir()), "no lock may be taken under a scheduler's choice"
    hidden = gpu.acquire_device("auto", lock_dir=tmp_path, env={"CUDA_VISIBLE_DEVICES": ""})
    assert hidden.device == "cpu"


def test_no_gpu_means_cpu_and_says_so(tmp_path: Path) -> None:
    slot = gpu.acquire_device("auto", lock_dir=tmp_path, n_devices=0, env={})
    assert slot.device == "cpu" and "no GPU" in slot.message
    with pytest.raises(RuntimeError, match="no GPU"):
        gpu.acquire_device("cuda", lock_dir=tmp_path, n_devices=0, env={})
    assert gpu.acquire_device("cpu", n_devices=4, env={}).device == "cpu"


def test_count_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(gpu.COUNT_ENV, "3")
    assert gpu.count_gpus() == 3
    monkeypatch.setenv(gpu.COUNT_ENV, "two")
    with pytest.raises(ValueError, match=gpu.COUNT_ENV):
        gpu.count_gpus()


def test_slots_share_one_device_between_two_jobs(tmp_path: Path) -> None:
    """With MRBENCH_GPU_SLOTS=2 two holders get the same single device, a third waits."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), gpu.SLOTS_ENV: "2"}
    script = HOLDER.replace("n_devices=2", "n_devices=1")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(tmp_path)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(3)
    ]
    try:
        lines = sorted(p.stdout.readline().strip() for p in procs)
        assert lines[:2] == ["0 0", "0 0"]
        assert lines[2].startswith("BUSY")
        assert sorted(f.name for f in tmp_path.iterdir()) == ["gpu0-slot1.lock", "gpu0.lock"]
    finally:
        for p in procs:
            p.kill()
            p.wait()
