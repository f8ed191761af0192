"""Data-parallel training through torchrun (gloo, 2 CPU processes) follows one process.

Both runs use the same global batch (``batch_size`` 4: 2 slices per process with torchrun), the
same seed and a deterministic method configuration (CycleGAN without its random history pool), so
the logged loss of every step must agree to float round-off: relative 1e-4 (observed differences
are about 1e-6; gradients of the two halves are summed in another order than one batch's).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mrbench.checkpoint import load_model

ROOT = Path(__file__).resolve().parents[1]
STEPS = 6
SPEC = {
    "method": "cyclegan_ddp",
    "plugin": "cyclegan",
    "params": {"ngf": 4, "ndf": 4, "n_blocks": 1, "n_layers_d": 2, "pool_size": 0},
    "training": {
        "steps": STEPS,
        "batch_size": 4,
        "log_every": 1,
        "val_every": STEPS,
        "checkpoint_every": STEPS,
        "val_max_slices": 4,
        "deterministic": True,
        "lr_schedule": "constant",
    },
}
NOT_LOSSES = {"step", "lr", "sec_per_step", "peak_mem_mb"}


def _train_args(data: Path, out: Path) -> list[str]:
    return [
        "train",
        "--spec",
        json.dumps(SPEC),
        "--data",
        str(data),
        "--out",
        str(out),
        "--seed",
        "5",
        "--device",
        "cpu",
        "--threads",
        "1",
        "--no-progress",
    ]


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(var, None)
    return env


def _losses(run: Path) -> list[dict[str, float]]:
    with (run / "train_log.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        {k: float(v) for k, v in r.items() if k not in NOT_LOSSES and not k.startswith("lr_")}
        for r in rows
    ]


def test_two_gloo_processes_give_the_one_process_loss_curve(
    phantom_store: Path, tmp_path: Path
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    single = subprocess.run(
        [sys.executable, "-m", "mrbench.cli", *_train_args(phantom_store, one)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        "--nproc-per-node=2",
        "-m",
        "mrbench.cli",
    ]
    ddp = subprocess.run(
        [*torchrun, *_train_args(phantom_store, two)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    ref, got = _losses(one), _losses(two)
    assert len(ref) == len(got) == STEPS, "one log row per step, written by process 0 only"
    assert ref[0].keys() == got[0].keys() and len(ref[0]) >= 4
    # the curve moves, so agreement is not trivial
    assert any(abs(ref[0][k] - ref[-1][k]) > 1e-3 for k in ref[0])
    for step, (a, b) in enumerate(zip(ref, got, strict=True), start=1):
        for k in a:
            assert b[k] == pytest.approx(a[k], rel=1e-4, abs=1e-6), f"step {step}, loss {k}"

    assert "data-parallel over 2 processes (gloo)" in (two / "device.txt").read_text()
    model = load_model(two / "model.pt", device="cpu")
    assert model is not None
    assert not list(two.glob("**/*rank*")), "processes other than 0 wrote files"
