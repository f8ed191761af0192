"""The trainer's parts one by one: run preparation, resume/restore, the step loop, validation
with checkpoint selection, and export (``train()`` is their sequence; test_trainer.py runs it
whole)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import cyclegan_spec, tiny_training

from mrbench.checkpoint import read_model
from mrbench.io import InputError
from mrbench.training import checkpoints, loop, runs, sampling, schedules
from mrbench.training.logs import CsvLog, StepLog
from mrbench.training.selection import Selection

TRAINING = tiny_training(6, 3, checkpoint_every=2, log_every=2)
SPEC = cyclegan_spec("cyc", TRAINING, n_layers_d=1, pool_size=2)


def _run(store: Path, out: Path, **training) -> runs.Run:
    spec = {**SPEC, "training": {**SPEC["training"], **training}}
    run = runs.prepare_run(spec, store, out, seed=1, log=lambda m: None)
    runs.write_run_files(run)
    return run


def _parts(run: runs.Run):
    ema = loop._make_ema(run)
    schedule = schedules.LRSchedule(run.method.optimizers(), run.training)
    sampler = sampling.PairSampler(len(run.train_store), 2, run.paired, run.seed)
    logs = (CsvLog(run.out_dir / "train_log.csv"), CsvLog(run.out_dir / "v.csv"))
    ckpt = checkpoints.Checkpoints(run, ema, schedule, sampler)
    return ema, schedule, sampler, logs, ckpt


def test_prepare_run_checks_spec_and_writes_nothing(phantom_store: Path, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="spec: unknown key"):
        runs.prepare_run({**SPEC, "lr": 1}, phantom_store, tmp_path / "x", seed=0)
    with pytest.raises(InputError, match="unknown method plugin 'nope'"):
        runs.prepare_run({**SPEC, "plugin": "nope"}, phantom_store, tmp_path / "x", seed=0)
    run = runs.prepare_run(SPEC, phantom_store, tmp_path / "x", seed=0, max_steps=4)
    assert run.steps == 4 and run.image_size == 16 and len(run.val_rows) == 4
    assert run.resolved["params"]["ngf"] == 4 and run.resolved["training"]["steps"] == 4
    assert not (tmp_path / "x").exists()
    runs.write_run_files(run)
    assert (tmp_path / "x" / "spec.json").exists() and (tmp_path / "x" / "checkpoints").is_dir()


def test_checkpoints_restore_what_they_saved(phantom_store: Path, tmp_path: Path) -> None:
    run = _run(phantom_store, tmp_path / "r")
    ema, schedule, sampler, logs, ckpt = _parts(run)
    fresh = ckpt.restore(logs)
    assert (fresh.step, fresh.best["file"], fresh.rng) == (0, "", None)
    schedule.reductions = 2
    with torch.no_grad():
        next(run.method.parameters()).add_(1.0)
    weights = {k: v.clone() for k, v in run.method.state_dict().items()}
    saved = runs.Progress(step=4, best={"psnr": 9.0, "ssim": 0.5, "step": 3, "file": ""})
    saved.pending["losses"] = {"g": [1.0]}
    ckpt.save(saved)

    again = _run(phantom_store, tmp_path / "r")  # a new process: fresh weights from the seed
    _, schedule2, _, logs2, ckpt2 = _parts(again)
    assert not torch.equal(next(again.method.parameters()), next(iter(weights.values())))
    restored = ckpt2.restore(logs2)
    assert (restored.step, restored.best["psnr"], restored.pending["losses"]) == (
        4,
        9.0,
        {"g": [1.0]},
    )
    assert restored.rng is not None and schedule2.reductions == 2
    for k, v in again.method.state_dict().items():
        assert torch.equal(v, weights[k]), k

    other = _run(phantom_store, tmp_path / "r", lr_schedule="cosine")
    with pytest.raises(InputError, match=r"different spec \(training.lr_schedule differ"):
        _parts(other)[-1].restore(logs2)


def test_step_loop_logs_validates_and_checkpoints_at_intervals(
    phantom_store: Path, tmp_path: Path
) -> None:
    run = _run(phantom_store, tmp_path / "loop")
    ema, schedule, sampler, (train_log, val_log), ckpt = _parts(run)
    progress = ckpt.restore((train_log, val_log))
    selection = Selection(run, ema, schedule, val_log)
    steplog = StepLog(run, schedule, train_log, 0, False)
    seen: list[int] = []
    saves: list[int] = []
    original = run.method.train_step
    run.method.train_step = lambda b, s: seen.append(s) or original(b, s)  # type: ignore[method-assign]
    ckpt.save = lambda p, *_: saves.append(p.step)  # type: ignore[method-assign]
    batches = loop._batches(run, sampler, 0)
    loop.run_steps(run, progress, batches, (schedule, ema, ckpt, selection, steplog))
    assert seen == list(range(6)) and progress.step == 6 and saves == [2, 4, 6]
    assert [r["step"] for r in train_log.rows()] == ["2", "4", "6"]
    assert [r["step"] for r in val_log.rows()] == ["3", "6"]
    assert progress.best["step"] in (3, 6) and progress.pending["steps"] == 0


def test_selection_exports_best_or_last_weights(phantom_store: Path, tmp_path: Path) -> None:
    run = _run(phantom_store, tmp_path / "sel")
    ema, schedule, _, (_, val_log), _ = _parts(run)
    selection = Selection(run, ema, schedule, val_log)
    scores = iter([20.0, 18.0])
    run.validate = lambda ema=None: {"psnr": next(scores), "ssim": 0.5}  # type: ignore[method-assign]
    progress = runs.Progress(step=3)
    assert "(best)" in selection.validate(progress)
    best_weights = {k: v.clone() for k, v in run.method.state_dict().items()}
    assert progress.best["file"] == "best-step3.pt"
    assert (run.ckpt_dir / "best-step3.pt").exists()
    with torch.no_grad():
        for p in run.method.parameters():
            p.mul_(0.0)
    progress.step = 6  # a worse validation: no new best
    assert "(best)" not in selection.validate(progress)
    assert progress.best["step"] == 3 and len(val_log.rows()) == 2

    meta = selection.load_selected(progress)
    assert meta["selected_step"] == 3 and meta["select"] == "best"
    for k, v in run.method.state_dict().items():
        assert torch.equal(v, best_weights[k]), k

    run.training["select"] = "last"
    with torch.no_grad():
        for p in run.method.parameters():
            p.fill_(0.25)
    meta = selection.load_selected(progress)
    assert meta["selected_step"] == 6 and meta["select"] == "last"
    assert all(torch.all(p == 0.25) for p in run.method.parameters())


def test_export_writes_model_after_prepare_inference(phantom_store: Path, tmp_path: Path) -> None:
    run = _run(phantom_store, tmp_path / "exp")
    calls: list[int] = []
    run.method.prepare_inference = lambda slices: calls.append(sum(len(b["a"]) for b in slices))  # type: ignore[method-assign]
    path = loop.export_model(run, run.meta() | {"selected_step": 0})
    assert calls == [len(run.train_store)]
    rec = read_model(path)
    assert rec["method"] == "cyc" and rec["meta"]["train_slices"] == len(run.train_store)
    assert rec["state"].keys() == run.method.state_dict().keys()


def test_fit_once_fits_and_validates(phantom_store: Path, tmp_path: Path) -> None:
    spec = {"method": "im", "plugin": "intensity_map"}
    run = runs.prepare_run(spec, phantom_store, tmp_path / "im", seed=0, log=lambda m: None)
    runs.write_run_files(run)
    meta = run.meta() and loop.fit_once(run)
    assert meta["step"] == 0 and meta["val_psnr"] > 15
    assert len((tmp_path / "im" / "val_log.csv").read_text().splitlines()) == 2
