"""The training harness: resume after SIGKILL is bitwise identical, a NaN loss stops training
with the step and the loss named, learning-rate schedules, sampling, settings precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import RESUME_CYCLEGAN, kill_and_resume, poison_train_step, train_cli_args

from mrbench.checkpoint import load_checkpoint, load_model
from mrbench.io import InputError
from mrbench.training import loop, sampling, schedules
from mrbench.training.settings import TRAINING_DEFAULTS, resolve_training
from mrbench_methods import get_plugin


def test_resume_after_sigkill_is_bitwise_identical(phantom_store: Path, tmp_path: Path) -> None:
    full, resumed, _ = kill_and_resume(phantom_store, tmp_path, RESUME_CYCLEGAN, "--seed", "3")
    ca = load_checkpoint(full / "checkpoints/last.pt")
    cb = load_checkpoint(resumed / "checkpoints/last.pt")
    for key, value in ca["method"]["model"].items():
        assert torch.equal(value, cb["method"]["model"][key]), f"last weights: {key} differs"
    assert ca["method"]["optimizers"]["G"]["state"][0]["exp_avg"].equal(
        cb["method"]["optimizers"]["G"]["state"][0]["exp_avg"]
    )
    # the logs of the resumed run hold each step once, with the same losses
    log_a = (full / "train_log.csv").read_text().splitlines()
    log_b = (resumed / "train_log.csv").read_text().splitlines()
    cols = log_a[0].split(",")
    keep = [i for i, c in enumerate(cols) if c not in ("sec_per_step", "peak_mem_mb")]
    assert [[r.split(",")[i] for i in keep] for r in log_a] == [
        [r.split(",")[i] for i in keep] for r in log_b
    ]
    # and the exported model loads for evaluation
    model = load_model(full / "model.pt", "cpu")
    assert model.model_info["method"] == "cyclegan_tiny"
    assert model.model_info["meta"]["selected_step"] % 8 == 0


def test_nan_loss_stops_with_step_and_loss_named(
    phantom_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    poison_train_step(monkeypatch, 3, loss="cycle_a")
    from mrbench.cli import main

    rc = main(train_cli_args(phantom_store, tmp_path / "nan", RESUME_CYCLEGAN, "--seed", "3"))
    err = capsys.readouterr().err
    assert rc == 1
    line = [x for x in err.splitlines() if "error" in x][0]
    assert "'cycle_a'" in line and "nan" in line and "step 4" in line  # 1-based, as logged
    assert not (tmp_path / "nan" / "model.pt").exists()


def _opt(lr: float = 1.0) -> dict[str, torch.optim.Optimizer]:
    return {"G": torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)}


def _sched(kind: str, **kw) -> schedules.LRSchedule:
    t = {**TRAINING_DEFAULTS, "steps": 100, "lr_schedule": kind, **kw}
    return schedules.LRSchedule(_opt(), t)


def _lrs(s: schedules.LRSchedule, steps: int = 100) -> list[float]:
    out = []
    for step in range(steps):
        s.apply(step)
        out.append(s.current()["G"])
    return out


def test_linear_schedule_is_constant_then_decays_to_zero() -> None:
    lrs = _lrs(_sched("linear", lr_decay_start=0.5))
    assert lrs[:51] == [1.0] * 51
    assert all(a > b for a, b in zip(lrs[50:], lrs[51:], strict=False))
    assert lrs[99] == pytest.approx(1 / 50)
    assert lrs[75] == pytest.approx(0.5)


def test_cosine_schedule_anneals_to_lr_min() -> None:
    s = _sched("cosine", lr_min=0.1)
    lrs = _lrs(s)
    assert lrs[0] == 1.0 and lrs[50] == pytest.approx(0.55)
    s.apply(100)
    assert s.current()["G"] == pytest.approx(0.1)
    assert all(a >= b for a, b in zip(lrs, lrs[1:], strict=False))


def test_plateau_cuts_by_ten_after_two_bad_validations() -> None:
    s = _sched("plateau")
    s.apply(0)
    assert not s.on_validation(20.0)
    assert not s.on_validation(21.0)
    assert not s.on_validation(20.5)  # one validation without improvement: keep
    assert s.on_validation(21.0)  # second in a row (equal is no improvement): cut
    s.apply(1)
    assert s.current()["G"] == pytest.approx(0.1)
    assert not s.on_validation(22.0)
    assert not s.on_validation(21.0)
    s.load_state_dict(s.state_dict())
    assert s.on_validation(21.0)
    s.apply(2)
    assert s.current()["G"] == pytest.approx(0.01)


def test_constant_schedule_keeps_lr() -> None:
    assert set(_lrs(_sched("constant"))) == {1.0}


def test_unpaired_sampler_draws_independent_permutations() -> None:
    s = sampling.PairSampler(20, 4, paired=False, seed=0)
    epoch = [p for k in range(5) for p in s.batch(k)]
    assert sorted(i for i, _ in epoch) == list(range(20))
    assert sorted(j for _, j in epoch) == list(range(20))
    assert sum(i == j for i, j in epoch) < 10
    assert s.batch(5) != s.batch(0)  # a new epoch, a new permutation
    assert sampling.PairSampler(20, 4, paired=False, seed=0).batch(7) == s.batch(7)
    paired = sampling.PairSampler(20, 4, paired=True, seed=0)
    assert all(i == j for k in range(5) for i, j in paired.batch(k))


def test_training_settings_precedence_and_validation() -> None:
    cyc = get_plugin("cyclegan")
    t = resolve_training(cyc, {})
    assert t["lr_schedule"] == "linear"  # the method's suggestion over the global default
    assert resolve_training(cyc, {"lr_schedule": "cosine"})["lr_schedule"] == "cosine"
    assert resolve_training(get_plugin("intensity_map"), {})["pairing"] == "paired"
    with pytest.raises(InputError, match="unknown key.*stepz"):
        resolve_training(cyc, {"stepz": 3})
    with pytest.raises(InputError, match="training.lr_schedule"):
        resolve_training(cyc, {"lr_schedule": "step"})
    with pytest.raises(InputError, match="training.ema_decay"):
        resolve_training(cyc, {"ema_decay": 1.5})


def test_ema_tracks_and_applies_average() -> None:
    net = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(0.0)
    ema = schedules.EMA({"net": net}, decay=0.5)
    with torch.no_grad():
        net.weight.fill_(1.0)
    ema.update()
    ema.update()
    with ema.applied():
        assert net.weight.item() == pytest.approx(0.75)
    assert net.weight.item() == 1.0


def test_ema_averages_float_buffers_and_copies_counters() -> None:
    """BatchNorm statistics are averaged like weights; its integer step counter is copied."""
    net = torch.nn.BatchNorm1d(2)
    ema = schedules.EMA({"bn": net}, decay=0.9)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    net.train()
    net(torch.tensor([[1.0, 3.0], [3.0, 5.0]]))  # running mean 0.1 * (2, 4), one batch
    with torch.no_grad():
        net.weight.fill_(2.0)
    ema.update()
    avg = ema.state_dict()["bn"]
    now = net.state_dict()
    for key in ("weight", "bias", "running_mean", "running_var"):
        assert torch.allclose(avg[key], 0.9 * start[key] + 0.1 * now[key]), key
    assert avg["num_batches_tracked"].item() == 1
    again = schedules.EMA({"bn": torch.nn.BatchNorm1d(2)}, decay=0.9)
    again.load_state_dict(ema.state_dict())
    assert all(torch.equal(again.state_dict()["bn"][k], v) for k, v in avg.items())


def test_schedules_run_through_torch_lambda_lr() -> None:
    s = _sched("linear", lr_decay_start=0.5)
    lrs = _lrs(s)
    (scheduler,) = s.schedulers.values()
    assert isinstance(scheduler, torch.optim.lr_scheduler.LambdaLR)
    assert scheduler.get_last_lr() == [lrs[-1]] and scheduler.last_epoch == 99
    s.apply(10)  # any step, also backwards (a resumed run starts mid-schedule)
    assert s.current()["G"] == 1.0


def test_non_trainable_method_is_fitted(phantom_store: Path, tmp_path: Path) -> None:
    spec = {"method": "intensity_map", "plugin": "intensity_map"}
    path = loop.train(spec, phantom_store, tmp_path / "im", seed=0, log=lambda m: None)
    model = load_model(path)
    val = (tmp_path / "im" / "val_log.csv").read_text().splitlines()
    assert len(val) == 2 and float(val[1].split(",")[val[0].split(",").index("psnr")]) > 15
    assert not torch.equal(model.lut_a_to_b, torch.linspace(-1, 1, 128))
