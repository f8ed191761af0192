"""The training harness shared by every method, so that methods differ only in the method.

A method (see :mod:`mrbench_methods.base`) owns its networks, optimisers and losses; this module
owns the rest: seeding and deterministic mode, sampling of the two modalities, the
learning-rate schedule, EMA weights, validation and selection of the best weights, checkpoints and
resume, mixed precision, logs and the final model file.

The ``training`` section of a spec (keys of :data:`TRAINING_DEFAULTS`):

``steps``
    number of training iterations (one :meth:`train_step` call each). Non-trainable methods
    ignore it: they are fitted once with :meth:`fit`.
``epochs``
    training length in passes over the training split, the way published recipes state it;
    when set it replaces ``steps`` at run time: ``epochs x (training slices // batch_size)``
    (e.g. CycleGAN's 200 epochs are 1.08 M steps on IXI's 5400 training slices at batch 1).
    A settings layer that sets ``steps`` without ``epochs`` clears an ``epochs`` from a lower
    layer (see :func:`merge_training`).
``augment``, ``augment_resize``
    ``none`` or ``resize_crop_flip`` (CycleGAN's resize to ``augment_resize`` x size, random
    crop and flip, identical for an image and its mask; :mod:`mrbench.training.augment`).
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
    autocast around the training step and translation (CPU and CUDA); the Adam implementation
    (``fused`` by default); the weights' layout (``contiguous`` by default);
    ``torch.compile`` of the method's networks (off by default).
``deterministic``
    deterministic algorithms (``torch.use_deterministic_algorithms(warn_only=True)``, no cuDNN
    autotuning). On the CPU a resumed run then ends with weights bitwise identical to an
    uninterrupted one.
``num_workers``
    DataLoader worker processes reading the slice store (0 = in the main process).
``pairing``
    ``unpaired`` (default): the T1 and T2 slices of a batch are drawn by two independent
    permutations, as unsupervised methods assume; ``paired``: the same slices. Methods with
    ``needs_pairs = True`` always get pairs.
``gpus_per_job``
    GPUs (processes) of one training job. Above 1 the workflow launches the job with torchrun
    and :mod:`mrbench.training.distributed` splits every batch of ``batch_size`` slices into equal
    shares
    and averages the gradients, so the run follows the one-process run with the same
    ``batch_size``; process 0 validates and writes every file.

Precedence, lowest first: :data:`TRAINING_DEFAULTS`, the method class's ``training_defaults``
(e.g. CycleGAN suggests the linear schedule), then the spec's ``training`` section (the config's
global section overlaid with the method entry's own ``training``).

Outputs in the run folder: ``spec.json`` (resolved spec, with epochs converted to steps, the
config's ``recipe`` and the number of training slices), ``train_log.csv`` (step, each loss,
lr, lr per optimiser, sec_per_step, peak_mem_mb: peak CUDA memory allocated in the interval on a
GPU, the process's peak resident memory on the CPU), ``val_log.csv`` (step, seconds_elapsed,
psnr, ssim and per direction, lr), ``checkpoints/last.pt``, ``checkpoints/best-step<N>.pt`` and,
written last, ``model.pt`` (format in :mod:`mrbench.checkpoint`).
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import os
import resource
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mrbench import __version__
from mrbench.checkpoint import (
    load_checkpoint,
    model_record,
    read_model,
    rng_state,
    save_checkpoint,
    save_model,
    seed_everything,
    set_rng_state,
)
from mrbench.domain import DIRECTIONS
from mrbench.finite import first_non_finite, module_non_finite
from mrbench.io import InputError, atomic_path
from mrbench.slices import SliceStore
from mrbench.training import acceleration, valmetrics
from mrbench.training.augment import Augment, augmenter
from mrbench.training.distributed import SINGLE, DistContext
from mrbench.training.settings import (
    RESUME_FREE_KEYS,
    TRAINING_DEFAULTS,
    merge_training,
    resolve_training,
    steps_for_epochs,
)


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message names the step and the loss."""


def configure_determinism(deterministic: bool, device: torch.device) -> None:
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    else:
        torch.use_deterministic_algorithms(False)
        torch.backends.cudnn.deterministic = False
        torch.backends.cudnn.benchmark = device.type == "cuda"


# ------------------------------------------------------------------------ sampling
class PairSampler:
    """Batch ``k`` of training -> list of ``(t1 row, t2 row)`` pairs, a pure function of
    ``(seed, k)``: epoch ``e`` draws one permutation of the rows for T1 and, unless paired,
    an independent one for T2 (``numpy.random.default_rng([seed, e])``). An incomplete last batch
    of an epoch is dropped. Resuming needs only the number of batches already consumed."""

    def __init__(self, n: int, batch_size: int, paired: bool, seed: int) -> None:
        if n < batch_size:
            raise InputError(f"training split has {n} slices, fewer than batch_size {batch_size}")
        self.n, self.batch_size, self.paired, self.seed = n, batch_size, paired, seed
        self.per_epoch = n // batch_size
        self._cache: tuple[int, np.ndarray, np.ndarray] | None = None

    def _perms(self, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is None or self._cache[0] != epoch:
            rng = np.random.default_rng([self.seed, epoch])
            p1 = rng.permutation(self.n)
            p2 = p1 if self.paired else rng.permutation(self.n)
            self._cache = (epoch, p1, p2)
        return self._cache[1], self._cache[2]

    def batch(self, k: int) -> list[tuple[int, int]]:
        epoch, pos = divmod(k, self.per_epoch)
        p1, p2 = self._perms(epoch)
        sl = slice(pos * self.batch_size, (pos + 1) * self.batch_size)
        return [(int(i), int(j)) for i, j in zip(p1[sl], p2[sl], strict=True)]

    def state(self, next_batch: int) -> dict[str, Any]:
        return {
            "n": self.n,
            "batch_size": self.batch_size,
            "paired": self.paired,
            "seed": self.seed,
            "next_batch": next_batch,
        }


class _BatchIndices(Sampler):
    """Batch ``k`` as ``(t1 row, t2 row, k)`` items: the batch number keys the augmentation."""

    def __init__(self, sampler: PairSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        k = self.start
        while True:
            yield [(i, j, k) for i, j in self.sampler.batch(k)]
            k += 1


class _PairDataset(Dataset):
    def __init__(self, store: SliceStore, augment: Augment | None = None) -> None:
        self.store, self.augment = store, augment

    def __len__(self) -> int:
        return len(self.store) ** 2

    def __getitem__(self, key: tuple[int, ...]) -> dict[str, torch.Tensor]:
        item = self.store.pair(key[0], key[1])
        if self.augment is not None:
            item = self.augment(item, key[2] if len(key) > 2 else 0, (key[0], key[1]))
        return item


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def _collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    # stacked by numpy: torch.stack runs on the intra-op thread pool, whose start-up cost per
    # call made batching the bottleneck of a loader in the training process (benchmarks/)
    return {k: torch.from_numpy(np.stack([it[k].numpy() for it in items])) for k in items[0]}


def one_pass(
    store: SliceStore, batch_size: int, paired: bool, seed: int, device: torch.device
) -> Iterator[dict[str, torch.Tensor]]:
    """Every slice of ``store`` once per modality, in batches (last one may be smaller);
    unpaired: T2 rows in an independent permutation."""
    n = len(store)
    rows2 = np.arange(n) if paired else np.random.default_rng([seed, 7]).permutation(n)
    for a in range(0, n, batch_size):
        items = [store.pair(i, int(rows2[i])) for i in range(a, min(n, a + batch_size))]
        yield _to(_collate(items), device)


# ---------------------------------------------------------------------- schedules
class LRSchedule:
    """One learning-rate rule for every parameter group of every optimiser (see module doc).

    Each optimiser gets a :class:`torch.optim.lr_scheduler.LambdaLR` whose per-group factor is
    the rule in closed form, a function of the step alone: :meth:`apply` sets the rate of any
    step, so a resumed run needs no replay of the steps before it. The plateau rule's
    bookkeeping (validations without a new best, the number of cuts) is kept here rather than
    in ``ReduceLROnPlateau``, which multiplies the current rates in place and so cannot share
    the closed-form factor the other rules use; its state is saved with the checkpoint.
    """

    def __init__(
        self, optimizers: dict[str, torch.optim.Optimizer], training: dict[str, Any]
    ) -> None:
        self.optimizers = optimizers
        self.kind = training["lr_schedule"]
        self.steps = max(1, int(training["steps"]))
        self.patience = int(training["lr_patience"])
        self.factor = float(training["lr_factor"])
        self.decay_start = float(training["lr_decay_start"])
        self.lr_min = float(training["lr_min"])
        self.base = {n: [float(g["lr"]) for g in o.param_groups] for n, o in optimizers.items()}
        self.reductions = 0
        self.best = -math.inf
        self.bad = 0
        self.schedulers = {
            n: torch.optim.lr_scheduler.LambdaLR(
                o, [self._factor_fn(base) for base in self.base[n]]
            )
            for n, o in optimizers.items()
        }

    def _factor_fn(self, base: float) -> Callable[[int], float]:
        """The multiplier of the initial rate ``base`` at a step, for :class:`LambdaLR`."""
        return lambda step: self.lr(base, step) / base if base else 1.0

    def lr(self, base: float, step: int) -> float:
        if self.kind == "constant":
            return base
        if self.kind == "plateau":
            return max(min(self.lr_min, base), base * self.factor**self.reductions)
        if self.kind == "linear":
            start = int(round(self.decay_start * self.steps))
            if step < start:
                return base
            return base * max(0.0, 1.0 - (step - start) / max(1, self.steps - start))
        # cosine
        floor = min(self.lr_min, base)
        return floor + (base - floor) * 0.5 * (
            1 + math.cos(math.pi * min(step, self.steps) / self.steps)
        )

    def apply(self, step: int) -> None:
        """Set the learning rates for training step ``step`` (0-based)."""
        with warnings.catch_warnings():
            # the rate of a step is set before its optimiser updates, by design (see above)
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            for scheduler in self.schedulers.values():
                scheduler.last_epoch = step - 1
                scheduler.step()  # advances to ``step`` and sets every group's rate

    def on_validation(self, metric: float) -> bool:
        """Plateau rule: record a validation metric (higher is better); True if lr was cut."""
        if self.kind != "plateau":
            return False
        if metric > self.best:
            self.best, self.bad = metric, 0
            return False
        self.bad += 1
        if self.bad >= self.patience:
            self.reductions += 1
            self.bad = 0
            return True
        return False

    def current(self) -> dict[str, float]:
        return {n: float(o.param_groups[0]["lr"]) for n, o in self.optimizers.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"reductions": self.reductions, "best": self.best, "bad": self.bad}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reductions = int(state["reductions"])
        self.best = float(state["best"])
        self.bad = int(state["bad"])


# ---------------------------------------------------------------------------- EMA
def _ema_avg_fn(decay: float) -> Callable[..., None]:
    """``multi_avg_fn`` of :class:`AveragedModel`: torch's EMA (``get_ema_multi_avg_fn``) for
    floating tensors; integer buffers (BatchNorm's step counter) are copied, not averaged."""
    ema = torch.optim.swa_utils.get_ema_multi_avg_fn(decay)

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n: Any) -> None:
        if averaged[0].is_floating_point():
            ema(averaged, current, n)
        else:
            torch._foreach_copy_(averaged, current)

    return update


class EMA:
    """Exponential moving averages of whole modules (parameters and buffers), each kept by a
    :class:`torch.optim.swa_utils.AveragedModel`.

    The average starts from the weights at construction and every :meth:`update` blends the
    live weights in (``n_averaged`` starts at 1: ``AveragedModel`` would otherwise overwrite the
    average with the first update's weights). Checkpoints hold each averaged module's
    ``state_dict``, keyed like the live module's."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.modules = modules
        self.decay = decay
        self.averaged = {
            name: torch.optim.swa_utils.AveragedModel(
                m, multi_avg_fn=_ema_avg_fn(decay), use_buffers=True
            )
            for name, m in modules.items()
        }
        for avg in self.averaged.values():
            avg.n_averaged.fill_(1)

    @torch.no_grad()
    def update(self) -> None:
        for name, m in self.modules.items():
            self.averaged[name].update_parameters(m)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: avg.module.state_dict() for name, avg in self.averaged.items()}

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, sd in state.items():
            self.averaged[name].module.load_state_dict(sd)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily load the averaged weights into the live modules."""
        backup = {
            name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in self.modules.items()
        }
        for name, m in self.modules.items():
            m.load_state_dict(self.averaged[name].module.state_dict())
        try:
            yield
        finally:
            for name, m in self.modules.items():
                m.load_state_dict(backup[name])


# ---------------------------------------------------------------------- validation
def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    return acceleration.autocast(device, amp)


def validation_rows(store: SliceStore, max_slices: int) -> np.ndarray:
    n = len(store)
    if n <= max_slices:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_slices).round().astype(int))


@torch.inference_mode()
def validate(
    method: nn.Module,
    store: SliceStore,
    rows: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp: bool = False,
    seed: int = 0,
) -> dict[str, float]:
    """Mean PSNR/SSIM of both directions on paired validation slices (images mapped to [0, 1]).

    Runs under its own fixed seed in a forked RNG, so sampling methods validate reproducibly and
    the training random stream is left untouched."""
    was_training = method.training
    method.eval()
    scores: dict[str, list[float]] = {f"{m}_{d}": [] for m in ("psnr", "ssim") for d in DIRECTIONS}
    devices = [torch.cuda.current_device()] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        for a in range(0, len(rows), batch_size):
            batch = _to(_collate([store[int(i)] for i in rows[a : a + batch_size]]), device)
            for d in DIRECTIONS:
                src, dst = d.split("_to_")
                with _autocast(device, amp):
                    pred = method.translate(batch[src], d).float()
                if not bool(torch.isfinite(pred).all()):  # scored NaN, never clamped to a score
                    pred = torch.full_like(pred, math.nan)
                pred = ((pred.clamp(-1, 1) + 1) / 2).cpu().numpy()
                target = ((batch[dst].float() + 1) / 2).cpu().numpy()
                scores[f"psnr_{d}"] += valmetrics.psnr_batch(target[:, 0], pred[:, 0]).tolist()
                scores[f"ssim_{d}"] += valmetrics.ssim_batch(target[:, 0], pred[:, 0]).tolist()
                _diagnostics(method, batch[src], batch[dst], d, scores)
    method.train(was_training)
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out["psnr"] = float(np.mean([out[f"psnr_{d}"] for d in DIRECTIONS]))
    out["ssim"] = float(np.mean([out[f"ssim_{d}"] for d in DIRECTIONS]))
    for key in [k for k in out if k.endswith("_t1_to_t2")]:
        stem = key.removesuffix("_t1_to_t2")
        if stem not in out:  # diagnostics: the mean of both directions as for psnr/ssim
            out[stem] = float(np.mean([out[f"{stem}_{d}"] for d in DIRECTIONS]))
    return out


def _diagnostics(
    method: nn.Module,
    source: torch.Tensor,
    target: torch.Tensor,
    direction: str,
    scores: dict[str, list[float]],
) -> None:
    """PSNR of the method's intermediate images against the input and the target."""
    extra = getattr(method, "validation_outputs", None)
    if extra is None:
        return
    to01 = lambda x: ((x.float().clamp(-1, 1) + 1) / 2).cpu().numpy()[:, 0]  # noqa: E731
    src, tgt = to01(source), to01(target)
    for name, images in extra(source, direction).items():
        for ref_name, ref in (("input", src), ("target", tgt)):
            key = f"psnr_{name}_vs_{ref_name}_{direction}"
            values = [valmetrics.psnr(r, p) for r, p in zip(ref, to01(images), strict=True)]
            scores.setdefault(key, []).extend(values)


# --------------------------------------------------------------------------- logs
class CsvLog:
    """Append-only CSV whose header grows if a new column appears (rewritten then)."""

    def __init__(self, path: Path, fixed: tuple[str, ...] = ("step",)) -> None:
        self.path = path
        self.fields: list[str] = list(fixed)
        if path.exists():
            with path.open(newline="") as f:
                header = next(csv.reader(f), None)
            if header:
                self.fields = header

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with self.path.open(newline="") as f:
            return list(csv.DictReader(f))

    def _rewrite(self, rows: list[dict[str, Any]]) -> None:
        with atomic_path(self.path) as tmp, tmp.open("w", newline="") as f:
            w = csv.DictWriter(f, self.fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (by a run killed before its next checkpoint)."""
        if self.path.exists():
            self._rewrite([r for r in self.rows() if int(float(r["step"])) <= step])

    def write(self, row: dict[str, Any]) -> None:
        new = [k for k in row if k not in self.fields]
        if new or not self.path.exists():
            self.fields += new
            self._rewrite(self.rows())
        with self.path.open("a", newline="") as f:
            csv.DictWriter(f, self.fields, extrasaction="ignore").writerow(row)


class _NoLog:
    """Stands in for :class:`CsvLog` on data-parallel processes other than 0."""

    def truncate_after(self, step: int) -> None:
        pass

    def write(self, row: dict[str, Any]) -> None:
        pass


def _peak_mem_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _losses_text(losses: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in losses.items()) or "none"


# ------------------------------------------------------------------------ training
def _ema_state(method: nn.Module, ema: EMA | None) -> dict[str, torch.Tensor]:
    """``method.state_dict()`` with the EMA weights in place of the averaged modules."""
    if ema is None:
        return {k: v.detach().clone() for k, v in method.state_dict().items()}
    with ema.applied():
        return {k: v.detach().clone() for k, v in method.state_dict().items()}


def _spec_mismatch(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    diffs = []
    for key in ("method", "plugin", "params", "seed", "image_size"):
        if old.get(key) != new.get(key):
            diffs.append(key)
    t_old, t_new = old.get("training", {}), new.get("training", {})
    for key in sorted(set(t_old) | set(t_new)):
        default = TRAINING_DEFAULTS.get(key)  # a key newer than the checkpoint: its default
        if key not in RESUME_FREE_KEYS and t_old.get(key, default) != t_new.get(key, default):
            diffs.append(f"training.{key}")
    return diffs


def _every(done: int, n: int, steps: int) -> bool:
    """An interval event (log, validation, checkpoint) happens every ``n`` steps and at the end."""
    return done % n == 0 or done == steps


@dataclass
class Run:
    """One training run as fixed before its first step: resolved spec, data, method, device and
    the run folder. Built by :func:`prepare_run`; the parts of :func:`train` share it."""

    spec: dict[str, Any]
    cls: type
    training: dict[str, Any]
    method: Any
    train_store: SliceStore
    val_store: SliceStore
    seed: int
    device: torch.device
    data_dir: Path
    out_dir: Path
    resolved: dict[str, Any]
    device_message: str
    log: Callable[[str], None]
    dist: DistContext
    val_rows: np.ndarray = field(default_factory=lambda: np.arange(0))
    t_start: float = field(default_factory=time.perf_counter)

    @property
    def name(self) -> str:
        return str(self.spec["method"])

    @property
    def steps(self) -> int:
        return int(self.training["steps"])

    @property
    def amp(self) -> bool:
        """bfloat16 autocast, on the CPU as on CUDA (:mod:`mrbench.training.acceleration`)."""
        return bool(self.training["amp"])

    @property
    def paired(self) -> bool:
        return self.training["pairing"] == "paired"

    @property
    def ckpt_dir(self) -> Path:
        return self.out_dir / "checkpoints"

    @property
    def image_size(self) -> int:
        return self.train_store.size

    def validate(self, ema: EMA | None = None) -> dict[str, float]:
        """Scores of the current weights (the EMA ones if given) on the validation rows."""
        with ema.applied() if ema is not None else contextlib.nullcontext():
            return validate(
                self.method,
                self.val_store,
                self.val_rows,
                int(self.training["val_batch_size"]),
                self.device,
                self.amp,
                self.seed,
            )

    def training_slices(self) -> Iterator[dict[str, torch.Tensor]]:
        """Every training slice once (for :meth:`fit` and :meth:`prepare_inference`)."""
        bs = int(self.training["val_batch_size"])
        return one_pass(self.train_store, bs, self.paired, self.seed, self.device)

    def record(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
        return model_record(
            method=self.name,
            plugin=self.spec["plugin"],
            params=self.method.params,
            image_size=self.image_size,
            state=state,
            meta=meta,
        )

    def meta(self) -> dict[str, Any]:
        """Provenance stored in ``model.pt`` (selection results are added by the caller)."""
        return {
            "seed": self.seed,
            "training": self.training,
            "device": self.device_message,
            "mrbench_version": __version__,
            "torch_version": str(torch.__version__),
            "num_parameters": self.method.num_parameters(),
            "train_slices": len(self.train_store),
            "val_slices": int(len(self.val_rows)),
            "data": str(self.data_dir),
        }


def _check_spec(spec: dict[str, Any]) -> type:
    from mrbench_methods import get_plugin

    for key in ("method", "plugin"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise InputError(f"spec: key {key!r} must be a non-empty string")
    # "label", "trainable" and "recipe" are informational keys of the workflow's resolved spec
    info = {"label", "trainable", "recipe"}
    unknown = sorted(set(spec) - {"method", "plugin", "params", "training"} - info)
    if unknown:
        raise InputError(f"spec: unknown key(s) {', '.join(unknown)}")
    try:
        return get_plugin(spec["plugin"])
    except KeyError as exc:
        raise InputError(f"spec: {exc.args[0]}") from None


def prepare_run(
    spec: dict[str, Any],
    data_dir: str | Path,
    out_dir: str | Path,
    seed: int,
    device: str | torch.device = "cpu",
    *,
    max_steps: int | None = None,
    device_message: str | None = None,
    log: Callable[[str], None] | None = None,
    dist: DistContext = SINGLE,
) -> Run:
    """Check the spec, open the slice stores, resolve the training settings (epochs become steps
    here, from the training split's size), seed and build the method; no file is written."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731
    device = torch.device(device)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cls = _check_spec(spec)
    # tissue labels only for methods that need them (validation and test never carry them)
    train_store = SliceStore(data_dir / "train", labels=bool(getattr(cls, "needs_labels", False)))
    val_store = SliceStore(data_dir / "val")
    if train_store.size != val_store.size:
        raise InputError(
            f"{data_dir}: train slices are {train_store.size} px, val slices {val_store.size} px"
        )
    training = resolve_training(cls, spec.get("training"), train_slices=len(train_store))
    if dist.enabled and not cls.trainable:
        raise InputError(
            f"{spec['plugin']} is not trainable: run it in one process, not {dist.world_size}"
        )
    if max_steps is not None:
        training["steps"] = min(training["steps"], int(max_steps))
    configure_determinism(bool(training["deterministic"]), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seed_everything(seed)
    try:
        method = cls(spec.get("params") or {}, image_size=train_store.size)
    except ValueError as exc:
        raise InputError(f"spec params: {exc}") from None
    method.to(device)
    method.train()
    acceleration.use_memory_format(method, training["memory_format"])
    dist.prepare(method)
    acceleration.use_optimizer_impl(method.optimizers(), training["optimizer_impl"])
    acceleration.compile_networks(method, training["compile"])
    resolved = {
        "method": spec["method"],
        "plugin": spec["plugin"],
        "params": method.params,
        "training": training,
        "seed": int(seed),
        "image_size": train_store.size,
    }
    device_message = device_message or f"device: {device}"
    if dist.enabled:
        device_message += f"; data-parallel over {dist.world_size} processes ({dist.backend})"
    run = Run(
        spec, cls, training, method, train_store, val_store, int(seed), device, data_dir,
        out_dir, resolved, device_message, log, dist,
    )  # fmt: skip
    run.val_rows = validation_rows(val_store, int(training["val_max_slices"]))
    return run


def write_run_files(run: Run) -> None:
    """The run folder with ``spec.json`` and ``device.txt`` (process 0), and the start message."""
    run.ckpt_dir.mkdir(parents=True, exist_ok=True)
    if run.dist.is_main:
        with atomic_path(run.out_dir / "spec.json") as tmp:
            extra = {"recipe": run.spec.get("recipe"), "train_slices": len(run.train_store)}
            text = json.dumps(
                {**run.resolved, "data": str(run.data_dir), **extra}, indent=1, default=str
            )
            tmp.write_text(text)
        (run.out_dir / "device.txt").write_text(run.device_message + "\n")
    run.log(f"{run.name} ({run.spec['plugin']}), seed {run.seed}: {run.device_message}")
    run.t_start = time.perf_counter()


def _val_row(step: int, seconds: float, scores: dict[str, float]) -> dict[str, Any]:
    return {"step": step, "seconds_elapsed": _fmt(seconds)} | {
        k: _fmt(v) for k, v in scores.items()
    }


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
    val_log.write(_val_row(0, time.perf_counter() - run.t_start, scores))
    run.log(f"fitted; validation PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
    return run.meta() | {
        "step": 0,
        "selected_step": 0,
        "val_psnr": scores["psnr"],
        "val_ssim": scores["ssim"],
    }


def _no_best() -> dict[str, Any]:
    return {"psnr": -math.inf, "ssim": math.nan, "step": -1, "file": ""}


def _no_pending() -> dict[str, Any]:
    return {"losses": {}, "seconds": 0.0, "steps": 0}


@dataclass
class Progress:
    """What a checkpoint keeps of the loop besides weights, optimisers, EMA and schedule: steps
    done, seconds trained before this process, the best validation so far, and the losses of
    steps since the last log row (so that a resumed run writes the same rows as an
    uninterrupted one)."""

    step: int = 0
    elapsed: float = 0.0
    best: dict[str, Any] = field(default_factory=_no_best)
    pending: dict[str, Any] = field(default_factory=_no_pending)
    rng: Any = None  # the RNG state to restore before the first step (resumed runs)


class Checkpoints:
    """``checkpoints/last.pt``: restore a run from it (resume) and write it; also removes
    ``best-step*.pt`` files that are no longer the best."""

    def __init__(self, run: Run, ema: EMA | None, schedule: LRSchedule, sampler: Any) -> None:
        self.run, self.ema, self.schedule, self.sampler = run, ema, schedule, sampler
        self.last = run.ckpt_dir / "last.pt"
        self.saved_step: int | None = None  # step of the newest last.pt (always a finite state)

    def stopped(self) -> str:
        """The end of a divergence message: where the last finite state is."""
        where = f"{self.last} (step {self.saved_step})" if self.saved_step is not None else "none"
        return f"stopped (last finite checkpoint: {where})"

    def restore(self, logs: tuple[Any, ...]) -> Progress:
        """Progress of the run so far: fresh (logs emptied) or loaded from ``last.pt`` (logs cut
        after its step); stops if ``last.pt`` was written for another spec."""
        if not self.last.exists():
            for lg in logs:
                lg.truncate_after(-1)
            progress = Progress()
        else:
            ck = load_checkpoint(self.last)
            diffs = _spec_mismatch(ck["spec"], self.run.resolved)
            if diffs:
                raise InputError(
                    f"{self.last}: written for a different spec ({', '.join(diffs)} differ); "
                    "delete the run folder or choose another --out"
                )
            self.run.method.load_full_state(ck["method"])
            if self.ema is not None:
                self.ema.load_state_dict(ck["ema"])
            self.schedule.load_state_dict(ck["schedule"])
            progress = Progress(
                int(ck["step"]),
                float(ck["elapsed"]),
                dict(ck["best"]),
                ck.get("log_pending", _no_pending()),
                ck["rng"],
            )
            self.saved_step = progress.step
            for lg in logs:
                lg.truncate_after(progress.step)
            self.run.log(f"resuming from {self.last} at step {progress.step} of {self.run.steps}")
        self.prune(progress.best["file"])
        return progress

    def prune(self, keep: str) -> None:
        for f in self.run.ckpt_dir.glob("best-step*.pt") if self.run.dist.is_main else ():
            if f.name != keep:
                f.unlink()

    def save(self, progress: Progress, losses: dict[str, float] | None = None) -> None:
        if not self.run.dist.is_main:
            return
        bad = module_non_finite(self.run.method) or (
            self.ema is not None and first_non_finite(self.ema.state_dict(), "ema")
        )
        if bad:  # never overwrite the last finite state with a diverged one
            raise TrainingError(
                f"{self.run.name}: weights are non-finite at step {progress.step} ({bad}); "
                f"losses at step {progress.step}: {_losses_text(losses or {})}; {self.stopped()}"
            )
        save_checkpoint(
            {
                "step": progress.step,
                "spec": self.run.resolved,
                "method": self.run.method.full_state(),
                "ema": self.ema.state_dict() if self.ema is not None else {},
                "schedule": self.schedule.state_dict(),
                "sampler": self.sampler.state(progress.step),
                "rng": rng_state(),
                "best": progress.best,
                "elapsed": progress.elapsed + time.perf_counter() - self.run.t_start,
                "log_pending": progress.pending,
            },
            self.last,
        )
        self.saved_step = progress.step
        self.prune(progress.best["file"])


class Selection:
    """Validation during training and the choice of the exported weights.

    Every validation is logged (``val_log.csv``); a new best mean PSNR writes
    ``best-step<N>.pt``. :meth:`load_selected` loads the weights ``training.select`` names:
    ``best`` (that file) or ``last`` (the weights after the last step), EMA applied either way.
    """

    def __init__(self, run: Run, ema: EMA | None, schedule: LRSchedule, val_log: Any) -> None:
        self.run, self.ema, self.schedule, self.val_log = run, ema, schedule, val_log

    def validate(
        self, progress: Progress, losses: dict[str, float] | None = None, stopped: str = ""
    ) -> str:
        """Validate after ``progress.step`` steps; returns the message for the log. Non-finite
        scores stop training (``losses`` and ``stopped`` complete the message)."""
        run, done = self.run, progress.step
        scores = run.validate(self.ema) if run.dist.is_main else None
        scores = run.dist.broadcast(scores)
        if not math.isfinite(scores["psnr"]) or not math.isfinite(scores["ssim"]):
            raise TrainingError(
                f"{run.name}: validation at step {done} is non-finite (PSNR {scores['psnr']}, "
                f"SSIM {scores['ssim']}): the weights diverged; losses at step {done}: "
                f"{_losses_text(losses or {})}; {stopped}"
            )
        cut = self.schedule.on_validation(scores["psnr"])
        now = progress.elapsed + time.perf_counter() - run.t_start
        lr = _fmt(next(iter(self.schedule.current().values()), math.nan))
        self.val_log.write(_val_row(done, now, scores) | {"lr": lr})
        msg = (
            f"step {done}/{run.steps}: val PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}"
        )
        if cut:
            msg += f"; lr x{run.training['lr_factor']} (plateau)"
        if scores["psnr"] > progress.best["psnr"]:
            name = f"best-step{done}.pt"
            meta = {"step": done, "val_psnr": scores["psnr"], "val_ssim": scores["ssim"]}
            if run.dist.is_main:
                save_model(run.record(_ema_state(run.method, self.ema), meta), run.ckpt_dir / name)
            progress.best = {"psnr": scores["psnr"], "ssim": scores["ssim"], "step": done}
            progress.best["file"] = name
            msg += " (best)"
        return msg

    def load_selected(self, progress: Progress) -> dict[str, Any]:
        """Load the selected weights into the method; returns the selection's provenance."""
        run, best = self.run, progress.best
        best_file = run.ckpt_dir / best["file"] if best["file"] else None
        if run.training["select"] == "best" and best_file is not None and best_file.exists():
            run.method.load_state_dict(read_model(best_file)["state"])
            selected = int(best["step"])
        else:
            run.method.load_state_dict(_ema_state(run.method, self.ema))
            selected = run.steps
        return {
            "step": run.steps,
            "selected_step": selected,
            "select": run.training["select"],
            "val_psnr": best["psnr"],
            "val_ssim": best["ssim"],
            "val_best_step": best["step"],
            "train_seconds": progress.elapsed + time.perf_counter() - run.t_start,
        }


class StepLog:
    """``train_log.csv`` rows (mean loss of each interval, learning rates, speed, memory) and
    the optional progress bar."""

    def __init__(
        self, run: Run, schedule: LRSchedule, log: Any, start: int, progress: bool | None
    ) -> None:
        self.run, self.schedule, self.log = run, schedule, log
        self.bar = None
        show = (sys.stderr.isatty() if progress is None else progress) and run.dist.is_main
        if show and start < run.steps:
            from tqdm import tqdm

            self.bar = tqdm(total=run.steps, initial=start, desc=run.name, dynamic_ncols=True)

    def add(self, progress: Progress, losses: dict[str, float], seconds: float) -> None:
        """Record one step's losses (``progress.step`` is the step just done)."""
        run, pending, done = self.run, progress.pending, progress.step
        for name, value in losses.items():
            pending["losses"].setdefault(name, []).append(float(value))
        pending["seconds"] += seconds
        pending["steps"] += 1
        if self.bar is not None:
            self.bar.update(1)
        if not _every(done, int(run.training["log_every"]), run.steps):
            return
        lrs = self.schedule.current()
        row: dict[str, Any] = {"step": done}
        row |= {k: _fmt(float(np.mean(v))) for k, v in pending["losses"].items()}
        row["lr"] = _fmt(next(iter(lrs.values()))) if lrs else ""
        row |= {f"lr_{k}": _fmt(v) for k, v in lrs.items()}
        row["sec_per_step"] = _fmt(pending["seconds"] / pending["steps"])
        row["peak_mem_mb"] = _fmt(_peak_mem_mb(run.device))
        self.log.write(row)
        if self.bar is not None:
            shown = dict(list(pending["losses"].items())[:4])
            self.bar.set_postfix({k: f"{np.mean(v):.3g}" for k, v in shown.items()})
        if run.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        progress.pending = _no_pending()

    def say(self, msg: str) -> None:
        if self.bar is not None:
            self.bar.write(msg)
        else:
            self.run.log(msg)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _losses_text(losses: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in losses.items()) or "none"


def _check_losses(run: Run, losses: dict[str, float], step: int, ckpt: Checkpoints) -> None:
    """Stop at a non-finite loss; ``step`` is 0-based, the message names it 1-based as the
    logs do."""
    for name, value in losses.items():
        if not math.isfinite(value):
            raise TrainingError(
                f"{run.name}: loss {name!r} is {value} at step {step + 1}; {ckpt.stopped()}"
            )


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
        batch = _to(next(batches), run.device)
        schedule.apply(step)
        with _autocast(run.device, run.amp):
            losses = run.dist.mean_losses(run.method.train_step(batch, step))
        _check_losses(run, losses, step, ckpt)
        if ema is not None:
            ema.update()
        progress.step = done = step + 1
        if run.device.type == "cuda" and _every(done, int(run.training["log_every"]), run.steps):
            torch.cuda.synchronize()
        steplog.add(progress, losses, time.perf_counter() - t0)
        if _every(done, int(run.training["val_every"]), run.steps):
            steplog.say(selection.validate(progress, losses, ckpt.stopped()))
        if _every(done, int(run.training["checkpoint_every"]), run.steps):
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
        _PairDataset(run.train_store, augmenter(run.training, run.seed)),
        batch_sampler=_BatchIndices(sampler, start),
        num_workers=workers,
        collate_fn=_collate,
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


def train(
    spec: dict[str, Any],
    data_dir: str | Path,
    out_dir: str | Path,
    seed: int,
    device: str | torch.device = "cpu",
    *,
    max_steps: int | None = None,
    progress: bool | None = None,
    device_message: str | None = None,
    log: Callable[[str], None] | None = None,
    dist: DistContext = SINGLE,
) -> Path:
    """Train (or fit) one method on ``data_dir/{train,val}``; resume from ``out_dir`` if a
    checkpoint is there. Returns the path of ``model.pt``, which is written last.

    ``dist``: the process group of a data-parallel job (:mod:`mrbench.training.distributed`); every
    process calls this function, process 0 alone validates, logs and writes files."""
    run = prepare_run(
        spec, data_dir, out_dir, seed, device,
        max_steps=max_steps, device_message=device_message, log=log, dist=dist,
    )  # fmt: skip
    write_run_files(run)
    if not run.cls.trainable:
        return export_model(run, fit_once(run))
    # resume/restore
    ema, schedule = _make_ema(run), LRSchedule(run.method.optimizers(), run.training)
    sampler = dist.shard_sampler(
        PairSampler(len(run.train_store), int(run.training["batch_size"]), run.paired, run.seed)
    )
    val_log, train_log = (
        (CsvLog(run.out_dir / f"{n}_log.csv") for n in ("val", "train"))
        if dist.is_main
        else (_NoLog(), _NoLog())
    )
    ckpt = Checkpoints(run, ema, schedule, sampler)
    state = ckpt.restore((train_log, val_log))
    batches = _batches(run, sampler, state.step)  # before the RNG restore: iter() draws a seed
    if state.rng is not None:
        set_rng_state(state.rng)
    dist.decorrelate_rng(run.seed, state.step)
    # the step loop, with validation and checkpoint selection at its intervals
    selection = Selection(run, ema, schedule, val_log)
    steplog = StepLog(run, schedule, train_log, state.step, progress)
    run_steps(run, state, batches, (schedule, ema, ckpt, selection, steplog))
    steplog.close()
    del batches
    if not dist.is_main:  # process 0 selects, exports and writes the model
        dist.barrier()
        return run.out_dir / "model.pt"
    # export
    path = export_model(run, run.meta() | selection.load_selected(state))
    dist.barrier()
    return path


__all__ = [
    "EMA",
    "LRSchedule",
    "PairSampler",
    "TRAINING_DEFAULTS",
    "TrainingError",
    "merge_training",
    "resolve_training",
    "steps_for_epochs",
    "Checkpoints",
    "Progress",
    "Run",
    "Selection",
    "StepLog",
    "export_model",
    "fit_once",
    "prepare_run",
    "run_steps",
    "train",
    "validate",
    "write_run_files",
]
