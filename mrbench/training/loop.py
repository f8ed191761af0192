"""The training harness shared by every method, so that methods differ only in the method.

A method (see :mod:`mrbench_methods.base`) owns its networks, optimisers and losses; the
:mod:`mrbench.training` package owns the rest. This module runs it (:func:`train`, the public
entry point: the step loop, ``model.pt``); its parts live beside it: the run and its seeding and
deterministic mode (:mod:`~mrbench.training.runs`), sampling of the two modalities
(:mod:`~mrbench.training.sampling`), the learning-rate schedule and EMA weights
(:mod:`~mrbench.training.schedules`), validation (:mod:`~mrbench.training.validation`) and
selection of the best weights (:mod:`~mrbench.training.selection`), checkpoints and resume
(:mod:`~mrbench.training.checkpoints`), logs (:mod:`~mrbench.training.logs`) and mixed precision
(:mod:`~mrbench.training.acceleration`).

The ``training`` section of a spec (keys of :data:`~mrbench.training.settings.TRAINING_DEFAULTS`,
which :mod:`~mrbench.training.settings` resolves):

``steps``
    number of training iterations (one :meth:`train_step` call each), at least 1 for a
    trainable method. Non-trainable methods ignore it: they are fitted once with :meth:`fit`.
``epochs``
    training length in passes over the training split, the way published recipes state it;
    when set it replaces ``steps`` at run time: ``epochs x (training slices // batch_size)``
    (e.g. CycleGAN's 200 epochs are 1.08 M steps on IXI's 5400 training slices at batch 1).
    A settings layer that sets ``steps`` without ``epochs`` clears an ``epochs`` from a lower
    layer (see :func:`~mrbench.training.settings.merge_training`).
``steps_cap``
    null, or the most steps a run takes: ``steps`` becomes ``min(steps, steps_cap)`` while
    the learning-rate schedule keeps the uncapped length (``schedule_steps`` in the resolved
    section), as an official script that breaks out of its epoch loop at an iteration cap.
    A layer that sets ``steps`` or ``epochs`` without ``steps_cap`` clears the cap.
``augment``, ``augment_resize``
    ``none``, ``resize_crop_flip`` (CycleGAN's resize to ``augment_resize`` x size, random
    crop and flip) or ``random_resized_crop_flip`` (StarGAN-v2's random resized crop with
    probability 1/2 and flip), identical for an image and its mask
    (:mod:`mrbench.training.augment`).
``batch_size``
    slices per modality per step.
``val_every_epochs``
    when set, ``val_every`` becomes this many epochs' steps at run time (the DisDiff paper
    validates every 5 epochs).
``val_every``, ``checkpoint_every``, ``log_every``
    validate / write ``checkpoints/last.pt`` / write a ``train_log.csv`` row every N steps; all
    three also happen after the last step. A log row holds the mean of each loss over its
    interval.
``val_max_slices``, ``val_batch_size``
    validation uses at most this many slices of the validation split, evenly spaced and paired
    (the same slices at every validation), translated in both directions in batches of this size.
``select``
    ``best``: ``model.pt`` holds the weights with the highest mean validation PSNR over both
    directions; ``last``: the weights after the last step.
``lr_schedule``
    applied to every parameter group of every optimiser the method lists:
    ``constant``; ``plateau`` (multiply by ``lr_factor`` (0.1) after ``lr_patience`` (2)
    validations in a row without a new best PSNR, the DisDiff paper's rule); ``linear`` (constant
    until ``lr_decay_start`` x ``steps``, then linear decay to zero at ``steps``, CycleGAN's
    rule); ``cosine`` (cosine annealing from the initial rate to ``lr_min`` at ``steps``).
    ``lr_min`` is also the floor of the plateau schedule.
``ema_decay``
    keep an exponential moving average with this decay of the modules the method lists in
    :meth:`ema_modules`, validate and export with it; ``None`` switches it off.
``amp``, ``optimizer_impl``, ``memory_format``, ``compile``
    speed switches that keep every method's function (:mod:`mrbench.training.acceleration`):
    bfloat16
    autocast around the training step (CPU and CUDA; validation and translation stay float32);
    the Adam implementation
    (``fused`` by default); the weights' layout (``contiguous`` by default);
    ``torch.compile`` of the method's networks (off by default).
``deterministic``
    deterministic algorithms (``torch.use_deterministic_algorithms(warn_only=True)``, no cuDNN
    autotuning). On the CPU a resumed run then ends with weights bitwise identical to an
    uninterrupted one. On a GPU it is not reproducible bitwise: operations without a
    deterministic CUDA kernel (e.g. the backward of ``ReflectionPad2d``, ``AdaptiveAvgPool2d``,
    bilinear interpolation) only warn (README.md, "The paper setup on GPUs").
``num_workers``
    DataLoader worker processes reading the slice store (0 = in the main process).
``pairing``
    ``unpaired`` (default): the ``a`` and ``b`` slices of a batch (the pair's two contrasts) are
    drawn by two independent
    permutations, as unsupervised methods assume; ``paired``: the same slices (voxel-aligned
    pairs, one augmentation draw for both). Methods with the ``paired`` trait always get pairs.
``gpus_per_job``
    GPUs (processes) of one training job. Above 1 the workflow launches the job with torchrun
    and :mod:`mrbench.training.distributed` splits every batch of ``batch_size`` slices into equal
    shares and averages the gradients, so the run follows the one-process run with the same
    ``batch_size``; process 0 validates and writes every file.

Precedence, lowest first: :data:`~mrbench.training.settings.TRAINING_DEFAULTS`, the method
class's ``training_defaults`` (e.g. CycleGAN suggests the linear schedule), then the spec's
``training`` section (the config's global section overlaid with the method entry's own
``training``).

Outputs in the run folder: ``spec.json`` (resolved spec, with epochs converted to steps, the
config's ``recipe`` and the number of training slices), ``train_log.csv`` (step, each loss,
lr, lr per optimiser, sec_per_step, peak_mem_mb: peak CUDA memory allocated in the interval on a
GPU, the process's peak resident memory on the CPU), ``val_log.csv`` (step, seconds_elapsed,
psnr, ssim and per direction, lr), ``checkpoints/last.pt``, ``checkpoints/best-step<N>.pt`` and,
written last, ``model.pt`` (format in :mod:`mrbench.checkpoint`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mrbench.checkpoint import save_model, set_rng_state
from mrbench.errors import InputError, TrainingError
from mrbench.finite import first_non_finite, module_non_finite
from mrbench.training import acceleration
from mrbench.training.augment import augmenter
from mrbench.training.checkpoints import Checkpoints
from mrbench.training.logs import CsvLog, NoLog, StepLog, every, val_row
from mrbench.training.runs import Progress, Run, prepare_run, write_run_files
from mrbench.training.sampling import BatchIndices, PairDataset, PairSampler, collate, to_device
from mrbench.training.schedules import EMA, LRSchedule
from mrbench.training.selection import Selection


def _check_losses(run: Run, losses: dict[str, float], step: int, ckpt: Checkpoints) -> None:
    """Stop at a non-finite loss; ``step`` is 0-based, the message names it 1-based as the
    logs do."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise TrainingError(
                f"{run.name}: loss {name!r} is {value} at step {step + 1}; {ckpt.stopped()}"
            )


def _check_batch(run: Run, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
    """A training batch with a NaN or infinite value comes from a corrupt slice store: named as
    such, not reported later as a diverged loss or non-finite weights."""
    bad = first_non_finite(batch)
    if bad is not None:
        raise InputError(
            f"{run.train_store.folder}: the training batch of step {step + 1} holds non-finite "
            f"values ({bad}); the slice store is corrupt: rebuild it (mrbench slices)"
        )
    return batch


def run_steps(
    run: Run,
    progress: Progress,
    batches: Iterator[dict[str, torch.Tensor]],
    parts: tuple[LRSchedule, EMA | None, Checkpoints, Selection, StepLog],
) -> None:
    """The step loop from ``progress.step`` to ``training.steps``: learning rate, one
    :meth:`train_step`, loss check, EMA update, then the interval events (log row,
    validation with selection, checkpoint)."""
    schedule, ema, ckpt, selection, steplog = parts
    for step in range(progress.step, run.steps):
        t0 = time.perf_counter()
        batch = _check_batch(run, next(batches), step)
        batch = to_device(batch, run.device)
        schedule.apply(step)
        with run.dist.step(), acceleration.autocast(run.device, run.amp):
            losses = run.dist.mean_losses(run.method.train_step(batch, step))
        run.dist.sync_buffers(run.method)
        _check_losses(run, losses, step, ckpt)
        if ema is not None:
            ema.update()
        progress.step = done = step + 1
        if run.device.type == "cuda" and every(done, int(run.training["log_every"]), run.steps):
            torch.cuda.synchronize()
        steplog.add(progress, losses, time.perf_counter() - t0)
        if every(done, int(run.training["val_every"]), run.steps):
            steplog.say(selection.validate(progress, losses, ckpt.stopped()))
        if every(done, int(run.training["checkpoint_every"]), run.steps):
            ckpt.save(progress, losses)


def _make_ema(run: Run) -> EMA | None:
    modules = run.method.ema_modules()
    if run.training["ema_decay"] is None:
        return None
    if not modules:
        run.log("ema_decay is set but the method lists no EMA modules; EMA off")
        return None
    return EMA(modules, float(run.training["ema_decay"]))


def _batches(run: Run, sampler: Any, start: int) -> Iterator[dict[str, torch.Tensor]]:
    workers = int(run.training["num_workers"])
    loader = DataLoader(
        PairDataset(run.train_store, augmenter(run.training, run.seed)),
        batch_sampler=BatchIndices(sampler, start),
        num_workers=workers,
        collate_fn=collate,
        pin_memory=run.device.type == "cuda",
        persistent_workers=workers > 0,
    )
    return iter(loader) if start < run.steps else iter(())


def export_model(run: Run, meta: dict[str, Any]) -> Path:
    """``model.pt`` from the weights now in the method, after :meth:`prepare_inference` on the
    training slices (under its own seed); written last, by process 0."""
    run.method.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        run.method.prepare_inference(run.training_slices())
    bad = module_non_finite(run.method)
    if bad:
        raise TrainingError(f"{run.name}: selected weights are non-finite ({bad}); no model")
    path = save_model(run.record(run.method.state_dict(), meta), run.out_dir / "model.pt")
    run.log(f"wrote {path}")
    return path


def fit_once(run: Run) -> dict[str, Any]:
    """Non-trainable methods: :meth:`fit` on the training slices, one validation; returns the
    provenance for ``model.pt``."""
    with torch.no_grad():
        run.method.fit(run.training_slices())
    scores = run.validate()
    if not math.isfinite(scores["psnr"]) or not math.isfinite(scores["ssim"]):
        raise TrainingError(
            f"{run.name}: validation after fitting is non-finite "
            f"(PSNR {scores['psnr']}, SSIM {scores['ssim']}); no model written"
        )
    val_log = CsvLog(run.out_dir / "val_log.csv")
    val_log.truncate_after(-1)
    val_log.write(val_row(0, time.perf_counter() - run.t_start, scores))
    run.log(f"fitted; validation PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    return run.meta() | {
        "step": 0,
        "selected_step": 0,
        "val_psnr": scores["psnr"],
        "val_ssim": scores["ssim"],
    }


def train(
    spec: dict[str, Any],
    data_dir: str | Path,
    out_dir: str | Path,
    seed: int,
    device: str | torch.device = "cpu",
    *,
    progress: bool | None = None,
    **options: Any,
) -> Path:
    """Train (or fit) one method on ``data_dir/{train,val}``; resume from ``out_dir`` if a
    checkpoint is there. Returns the path of ``model.pt``, which is written last.

    ``progress``: show a progress bar (``None``: when stderr is a terminal). ``options``, as for
    :func:`~mrbench.training.runs.prepare_run`: ``max_steps``, ``device_message``, ``log``,
    ``restart_on_change`` (a checkpoint of another spec or other data starts the run afresh
    instead of stopping it) and ``dist``, the process group of a data-parallel job
    (:mod:`mrbench.training.distributed`); every process calls this function, process 0 alone
    validates, logs and writes files."""
    run = prepare_run(spec, data_dir, out_dir, seed, device, **options)
    write_run_files(run)
    if not run.cls.trainable:
        return export_model(run, fit_once(run))
    # resume/restore
    ema, schedule = _make_ema(run), LRSchedule(run.method.optimizers(), run.training)
    sampler = run.dist.shard_sampler(
        PairSampler(len(run.train_store), int(run.training["batch_size"]), run.paired, run.seed)
    )
    val_log, train_log = (
        (CsvLog(run.out_dir / f"{n}_log.csv") for n in ("val", "train"))
        if run.dist.is_main
        else (NoLog(), NoLog())
    )
    ckpt = Checkpoints(run, ema, schedule, sampler)
    state = ckpt.restore((train_log, val_log))
    batches = _batches(run, sampler, state.step)  # before the RNG restore: iter() draws a seed
    if state.rng is not None:
        set_rng_state(state.rng)
    run.dist.decorrelate_rng(run.seed, state.step)
    # the step loop, with validation and checkpoint selection at its intervals
    selection = Selection(run, ema, schedule, val_log)
    steplog = StepLog(run, schedule, train_log, state.step, progress)
    run_steps(run, state, batches, (schedule, ema, ckpt, selection, steplog))
    steplog.close()
    del batches
    if not run.dist.is_main:  # process 0 selects, exports and writes the model
        run.dist.barrier()
        return run.out_dir / "model.pt"
    # export
    path = export_model(run, run.meta() | selection.load_selected(state))
    run.dist.barrier()
    return path
