"""Data-parallel training through torchrun (gloo, 2 CPU processes) follows one process.

Both runs use the same global batch (``batch_size`` 4: 2 slices per process with torchrun), the
same seed and a deterministic method configuration (CycleGAN without its random history pool), so
the logged loss of every step must agree to float round-off: relative 1e-4 (observed differences
are about 1e-6; gradients of the two halves are summed in another order than one batch's).
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from conftest import cli_env, cyclegan_spec, mrbench_cli, run_module, tiny_training, train_cli_args

from mrbench.checkpoint import load_model

STEPS = 6
TRAINING = {"batch_size": 4, "log_every": 1, "deterministic": True, "lr_schedule": "constant"}
SPEC = cyclegan_spec("cyclegan_ddp", tiny_training(STEPS, STEPS, **TRAINING), pool_size=0)
NOT_LOSSES = {"step", "lr", "sec_per_step", "peak_mem_mb"}


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
    args_one, args = (train_cli_args(phantom_store, d, SPEC, "--seed", "5") for d in (one, two))
    single = mrbench_cli(*args_one, env=cli_env(), timeout=120)
    assert single.returncode == 0, single.stderr[-3000:]
    torchrun = ["--standalone", "--nnodes=1", "--nproc-per-node=2", "-m", "mrbench.cli"]
    ddp = run_module("torch.distributed.run", *torchrun, *args, env=cli_env(), timeout=180)
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
