"""The training harness shared by every method, so that methods differ only in the method.

A method (see :mod:`methods.base`) owns its networks, optimisers and losses; this module owns the
rest: seeding and deterministic mode, sampling of the two modalities, the learning-rate schedule,
EMA weights, validation and selection of the best weights, checkpoints and resume, mixed
precision, logs and the final model file.

The ``training`` section of a spec (keys of :data:`TRAINING_DEFAULTS`):

``steps``
    number of training iterations (one :meth:`train_step` call each). Non-trainable methods
    ignore it: they are fitted once with :meth:`fit`.
``batch_size``
    slices per modality per step.
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
``amp``, ``optimizer_impl``, ``compile``
    speed switches that keep every method's function (:mod:`mrbench.acceleration`): bfloat16
    autocast around the training step and translation (CPU and CUDA); the Adam implementation
    (``fused`` by default); ``torch.compile`` of the method's networks (off by default).
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
    and :mod:`mrbench.distributed` splits every batch of ``batch_size`` slices into equal shares
    and averages the gradients, so the run follows the one-process run with the same
    ``batch_size``; process 0 validates and writes every file.

Precedence, lowest first: :data:`TRAINING_DEFAULTS`, the method class's ``training_defaults``
(e.g. CycleGAN suggests the linear schedule), then the spec's ``training`` section (the config's
global section overlaid with the method entry's own ``training``).

Outputs in the run folder: ``spec.json`` (resolved spec), ``train_log.csv`` (step, each loss,
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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from mrbench import __version__, acceleration, valmetrics
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
from mrbench.distributed import SINGLE, DistContext
from mrbench.io import InputError, atomic_path
from mrbench.slices import SliceStore

TRAINING_DEFAULTS: dict[str, Any] = {
    "steps": 10000,
    "batch_size": 1,
    "val_every": 1000,
    "checkpoint_every": 1000,
    "log_every": 10,
    "val_max_slices": 64,
    "val_batch_size": 8,
    "select": "best",
    "lr_schedule": "constant",
    "lr_patience": 2,
    "lr_factor": 0.1,
    "lr_decay_start": 0.5,
    "lr_min": 0.0,
    "ema_decay": None,
    "amp": False,
    "optimizer_impl": "fused",
    "compile": False,
    "deterministic": True,
    "num_workers": 0,
    "pairing": "unpaired",
    "gpus_per_job": 1,
}
LR_SCHEDULES = ("constant", "plateau", "linear", "cosine")
DIRECTIONS = ("t1_to_t2", "t2_to_t1")
#: training keys that may change between a run and its resumption
RESUME_FREE_KEYS = ("num_workers", "log_every", "val_batch_size", "gpus_per_job", "compile")


class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a loss became NaN); the message names the step and the loss."""


# ------------------------------------------------------------------ configuration
def _check(cond: bool, key: str, value: Any, expected: str) -> None:
    if not cond:
        raise InputError(f"training.{key}: {value!r} is invalid; expected {expected}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def resolve_training(method_cls: type, training: dict[str, Any] | None) -> dict[str, Any]:
    """Merge defaults, the method's suggestions and ``training``; validate every value."""
    suggested = dict(getattr(method_cls, "training_defaults", {}) or {})
    for source, section in (("method training_defaults", suggested), ("training", training or {})):
        unknown = sorted(set(section) - set(TRAINING_DEFAULTS))
        if unknown:
            raise InputError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(TRAINING_DEFAULTS))}"
            )
    t = {**TRAINING_DEFAULTS, **suggested, **(training or {})}
    for key in ("steps", "num_workers"):
        _check(_is_int(t[key]) and t[key] >= 0, key, t[key], "an integer >= 0")
    for key in (
        "batch_size",
        "val_every",
        "checkpoint_every",
        "log_every",
        "val_max_slices",
        "val_batch_size",
        "lr_patience",
        "gpus_per_job",
    ):
        _check(_is_int(t[key]) and t[key] >= 1, key, t[key], "an integer >= 1")
    _check(t["lr_schedule"] in LR_SCHEDULES, "lr_schedule", t["lr_schedule"], str(LR_SCHEDULES))
    _check(t["pairing"] in ("unpaired", "paired"), "pairing", t["pairing"], "unpaired|paired")
    _check(t["select"] in ("best", "last"), "select", t["select"], "best|last")
    _check(
        isinstance(t["lr_factor"], int | float) and 0 < t["lr_factor"] <= 1,
        "lr_factor",
        t["lr_factor"],
        "a number in (0, 1]",
    )
    _check(
        isinstance(t["lr_decay_start"], int | float) and 0 <= t["lr_decay_start"] <= 1,
        "lr_decay_start",
        t["lr_decay_start"],
        "a fraction in [0, 1]",
    )
    _check(isinstance(t["lr_min"], int | float) and t["lr_min"] >= 0, "lr_min", t["lr_min"], ">= 0")
    ema = t["ema_decay"]
    _check(
        ema is None or (isinstance(ema, int | float) and 0 < ema < 1),
        "ema_decay",
        ema,
        "null or a number in (0, 1)",
    )
    for key in ("amp", "deterministic"):
        _check(isinstance(t[key], bool), key, t[key], "true or false")
    impls = acceleration.OPTIMIZER_IMPLS
    _check(t["optimizer_impl"] in impls, "optimizer_impl", t["optimizer_impl"], "|".join(impls))
    _check(isinstance(t["compile"], bool | str), "compile", t["compile"], "a bool or a backend")
    if getattr(method_cls, "needs_pairs", False):
        t["pairing"] = "paired"
    return t


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
    def __init__(self, sampler: PairSampler, start: int) -> None:
        self.sampler, self.start = sampler, start

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        k = self.start
        while True:
            yield self.sampler.batch(k)
            k += 1


class _PairDataset(Dataset):
    def __init__(self, store: SliceStore) -> None:
        self.store = store

    def __len__(self) -> int:
        return len(self.store) ** 2

    def __getitem__(self, ij: tuple[int, int]) -> dict[str, torch.Tensor]:
        return self.store.pair(*ij)


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
    """One learning-rate rule for every parameter group of every optimiser (see module doc)."""

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
        for name, opt in self.optimizers.items():
            for group, base in zip(opt.param_groups, self.base[name], strict=True):
                group["lr"] = self.lr(base, step)

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
class EMA:
    """Exponential moving averages of whole modules: parameters averaged, buffers copied."""

    def __init__(self, modules: dict[str, nn.Module], decay: float) -> None:
        self.modules = modules
        self.decay = decay
        self.shadow = {
            name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in modules.items()
        }

    @torch.no_grad()
    def update(self) -> None:
        for name, m in self.modules.items():
            shadow = self.shadow[name]
            for k, v in m.state_dict().items():
                if v.dtype.is_floating_point:
                    shadow[k].lerp_(v.detach(), 1.0 - self.decay)
                else:
                    shadow[k].copy_(v)

    def state_dict(self) -> dict[str, dict[str, torch.Tensor]]:
        return self.shadow

    def load_state_dict(self, state: dict[str, dict[str, torch.Tensor]]) -> None:
        for name, sd in state.items():
            for k, v in sd.items():
                self.shadow[name][k].copy_(v)

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Temporarily load the averaged weights into the live modules."""
        backup = {
            name: {k: v.detach().clone() for k, v in m.state_dict().items()}
            for name, m in self.modules.items()
        }
        for name, m in self.modules.items():
            m.load_state_dict(self.shadow[name])
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
                    pred = method.translate(batch[src], d)
                pred = ((pred.float().clamp(-1, 1) + 1) / 2).cpu().numpy()
                target = ((batch[dst].float() + 1) / 2).cpu().numpy()
                scores[f"psnr_{d}"] += valmetrics.psnr_batch(target[:, 0], pred[:, 0]).tolist()
                scores[f"ssim_{d}"] += valmetrics.ssim_batch(target[:, 0], pred[:, 0]).tolist()
    method.train(was_training)
    out = {k: float(np.mean(v)) for k, v in scores.items()}
    out["psnr"] = float(np.mean([out[f"psnr_{d}"] for d in DIRECTIONS]))
    out["ssim"] = float(np.mean([out[f"ssim_{d}"] for d in DIRECTIONS]))
    return out


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

    ``dist``: the process group of a data-parallel job (:mod:`mrbench.distributed`); every
    process calls this function, process 0 alone validates, logs and writes files."""
    from methods import get_plugin

    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731
    device = torch.device(device)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    for key in ("method", "plugin"):
        if not isinstance(spec.get(key), str) or not spec[key]:
            raise InputError(f"spec: key {key!r} must be a non-empty string")
    # "label" and "trainable" are informational keys of the workflow's resolved spec
    unknown = sorted(set(spec) - {"method", "plugin", "params", "training", "label", "trainable"})
    if unknown:
        raise InputError(f"spec: unknown key(s) {', '.join(unknown)}")
    try:
        cls = get_plugin(spec["plugin"])
    except KeyError as exc:
        raise InputError(f"spec: {exc.args[0]}") from None
    training = resolve_training(cls, spec.get("training"))
    if dist.enabled and not cls.trainable:
        raise InputError(
            f"{spec['plugin']} is not trainable: run it in one process, not {dist.world_size}"
        )
    if max_steps is not None:
        training["steps"] = min(training["steps"], int(max_steps))
    steps = int(training["steps"])

    train_store = SliceStore(data_dir / "train")
    val_store = SliceStore(data_dir / "val")
    if train_store.size != val_store.size:
        raise InputError(
            f"{data_dir}: train slices are {train_store.size} px, val slices {val_store.size} px"
        )
    image_size = train_store.size

    configure_determinism(bool(training["deterministic"]), device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    seed_everything(seed)
    try:
        method = cls(spec.get("params") or {}, image_size=image_size)
    except ValueError as exc:
        raise InputError(f"spec params: {exc}") from None
    method.to(device)
    method.train()
    dist.prepare(method)
    resolved = {
        "method": spec["method"],
        "plugin": spec["plugin"],
        "params": method.params,
        "training": training,
        "seed": int(seed),
        "image_size": image_size,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_dir.mkdir(exist_ok=True)
    device_message = device_message or f"device: {device}"
    if dist.enabled:
        device_message += f"; data-parallel over {dist.world_size} processes ({dist.backend})"
    if dist.is_main:
        with atomic_path(out_dir / "spec.json") as tmp:
            tmp.write_text(json.dumps({**resolved, "data": str(data_dir)}, indent=1, default=str))
        (out_dir / "device.txt").write_text(device_message + "\n")
    log(f"{spec['method']} ({spec['plugin']}), seed {seed}: {device_message}")

    amp = bool(training["amp"])
    acceleration.use_optimizer_impl(method.optimizers(), training["optimizer_impl"])
    acceleration.compile_networks(method, training["compile"])
    val_rows = validation_rows(val_store, int(training["val_max_slices"]))
    val_log = CsvLog(out_dir / "val_log.csv") if dist.is_main else _NoLog()
    train_log = CsvLog(out_dir / "train_log.csv") if dist.is_main else _NoLog()
    paired = training["pairing"] == "paired"
    bs = int(training["batch_size"])
    val_bs = int(training["val_batch_size"])
    t_start = time.perf_counter()
    meta: dict[str, Any] = {
        "seed": int(seed),
        "training": training,
        "device": device_message,
        "mrbench_version": __version__,
        "torch_version": str(torch.__version__),
        "num_parameters": method.num_parameters(),
        "train_slices": len(train_store),
        "val_slices": int(len(val_rows)),
        "data": str(data_dir),
    }

    if not cls.trainable:
        with torch.no_grad():
            method.fit(one_pass(train_store, val_bs, paired, seed, device))
        scores = validate(method, val_store, val_rows, val_bs, device, amp, seed)
        val_log.truncate_after(-1)
        val_log.write(
            {"step": 0, "seconds_elapsed": _fmt(time.perf_counter() - t_start)}
            | {k: _fmt(v) for k, v in scores.items()}
        )
        log(f"fitted; validation PSNR {scores['psnr']:.2f} dB, SSIM {scores['ssim']:.4f}")
        meta |= {
            "step": 0,
            "selected_step": 0,
            "val_psnr": scores["psnr"],
            "val_ssim": scores["ssim"],
        }
        ema = None
    else:
        ema_modules = method.ema_modules()
        ema = None
        if training["ema_decay"] is not None:
            if ema_modules:
                ema = EMA(ema_modules, float(training["ema_decay"]))
            else:
                log("ema_decay is set but the method lists no EMA modules; EMA off")
        schedule = LRSchedule(method.optimizers(), training)
        sampler = dist.shard_sampler(PairSampler(len(train_store), bs, paired, seed))
        start, elapsed = 0, 0.0
        best: dict[str, Any] = {"psnr": -math.inf, "ssim": math.nan, "step": -1, "file": ""}
        last = ckpt_dir / "last.pt"
        rng_to_restore = None
        # losses of steps since the last log row: kept in checkpoints so that a resumed run
        # writes the same log rows as an uninterrupted one
        pending: dict[str, Any] = {"losses": {}, "seconds": 0.0, "steps": 0}
        if last.exists():
            ck = load_checkpoint(last)
            diffs = _spec_mismatch(ck["spec"], resolved)
            if diffs:
                raise InputError(
                    f"{last}: written for a different spec ({', '.join(diffs)} differ); "
                    "delete the run folder or choose another --out"
                )
            method.load_full_state(ck["method"])
            if ema is not None:
                ema.load_state_dict(ck["ema"])
            schedule.load_state_dict(ck["schedule"])
            start, elapsed, best = int(ck["step"]), float(ck["elapsed"]), dict(ck["best"])
            rng_to_restore = ck["rng"]
            pending = ck.get("log_pending", pending)
            train_log.truncate_after(start)
            val_log.truncate_after(start)
            log(f"resuming from {last} at step {start} of {steps}")
        else:
            for lg in (train_log, val_log):
                lg.truncate_after(-1)
        for f in ckpt_dir.glob("best-step*.pt") if dist.is_main else ():
            if f.name != best["file"]:
                f.unlink()

        def checkpoint(step_done: int) -> None:
            if not dist.is_main:
                return
            save_checkpoint(
                {
                    "step": step_done,
                    "spec": resolved,
                    "method": method.full_state(),
                    "ema": ema.state_dict() if ema is not None else {},
                    "schedule": schedule.state_dict(),
                    "sampler": sampler.state(step_done),
                    "rng": rng_state(),
                    "best": best,
                    "elapsed": elapsed + time.perf_counter() - t_start,
                    "log_pending": pending,
                },
                last,
            )
            for f in ckpt_dir.glob("best-step*.pt"):
                if f.name != best["file"]:
                    f.unlink()

        loader = DataLoader(
            _PairDataset(train_store),
            batch_sampler=_BatchIndices(sampler, start),
            num_workers=int(training["num_workers"]),
            collate_fn=_collate,
            pin_memory=device.type == "cuda",
            persistent_workers=int(training["num_workers"]) > 0,
        )
        batches = iter(loader) if start < steps else iter(())
        if rng_to_restore is not None:
            set_rng_state(rng_to_restore)
        dist.decorrelate_rng(seed, start)
        bar = None
        show = (sys.stderr.isatty() if progress is None else progress) and dist.is_main
        if show and start < steps:
            from tqdm import tqdm

            bar = tqdm(total=steps, initial=start, desc=spec["method"], dynamic_ncols=True)
        log_every = int(training["log_every"])
        for step in range(start, steps):
            t0 = time.perf_counter()
            batch = _to(next(batches), device)
            schedule.apply(step)
            with _autocast(device, amp):
                losses = dist.mean_losses(method.train_step(batch, step))
            for name, value in losses.items():
                if not math.isfinite(value):
                    where = f"{last} (step {start})" if last.exists() else "none"
                    raise TrainingError(
                        f"{spec['method']}: loss {name!r} is {value} at step {step}; "
                        f"stopped (last checkpoint: {where})"
                    )
                pending["losses"].setdefault(name, []).append(float(value))
            if ema is not None:
                ema.update()
            done = step + 1
            if device.type == "cuda" and (done % log_every == 0 or done == steps):
                torch.cuda.synchronize()
            pending["seconds"] += time.perf_counter() - t0
            pending["steps"] += 1
            if bar is not None:
                bar.update(1)
            if done % log_every == 0 or done == steps:
                lrs = schedule.current()
                row: dict[str, Any] = {"step": done}
                row |= {k: _fmt(float(np.mean(v))) for k, v in pending["losses"].items()}
                row["lr"] = _fmt(next(iter(lrs.values()))) if lrs else ""
                row |= {f"lr_{k}": _fmt(v) for k, v in lrs.items()}
                row["sec_per_step"] = _fmt(pending["seconds"] / pending["steps"])
                row["peak_mem_mb"] = _fmt(_peak_mem_mb(device))
                train_log.write(row)
                if bar is not None:
                    shown = dict(list(pending["losses"].items())[:4])
                    bar.set_postfix({k: f"{np.mean(v):.3g}" for k, v in shown.items()})
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                pending = {"losses": {}, "seconds": 0.0, "steps": 0}
            if done % int(training["val_every"]) == 0 or done == steps:
                scores = None
                if dist.is_main:
                    with ema.applied() if ema is not None else contextlib.nullcontext():
                        scores = validate(method, val_store, val_rows, val_bs, device, amp, seed)
                scores = dist.broadcast(scores)
                cut = schedule.on_validation(scores["psnr"])
                now = elapsed + time.perf_counter() - t_start
                val_log.write(
                    {"step": done, "seconds_elapsed": _fmt(now)}
                    | {k: _fmt(v) for k, v in scores.items()}
                    | {"lr": _fmt(next(iter(schedule.current().values()), math.nan))}
                )
                msg = (
                    f"step {done}/{steps}: val PSNR {scores['psnr']:.2f} dB, "
                    f"SSIM {scores['ssim']:.4f}"
                )
                if cut:
                    msg += f"; lr x{training['lr_factor']} (plateau)"
                if scores["psnr"] > best["psnr"]:
                    name = f"best-step{done}.pt"
                    rec = model_record(
                        method=spec["method"],
                        plugin=spec["plugin"],
                        params=method.params,
                        image_size=image_size,
                        state=_ema_state(method, ema),
                        meta={"step": done, "val_psnr": scores["psnr"], "val_ssim": scores["ssim"]},
                    )
                    if dist.is_main:
                        save_model(rec, ckpt_dir / name)
                    best = {
                        "psnr": scores["psnr"],
                        "ssim": scores["ssim"],
                        "step": done,
                        "file": name,
                    }
                    msg += " (best)"
                if bar is not None:
                    bar.write(msg)
                else:
                    log(msg)
            if done % int(training["checkpoint_every"]) == 0 or done == steps:
                checkpoint(done)
        if bar is not None:
            bar.close()
        del batches
        if not dist.is_main:  # process 0 selects, exports and writes the model
            dist.barrier()
            return out_dir / "model.pt"

        # the weights to export: the best validated ones, or the last (EMA applied either way)
        if training["select"] == "best" and best["file"] and (ckpt_dir / best["file"]).exists():
            method.load_state_dict(read_model(ckpt_dir / best["file"])["state"])
            selected = int(best["step"])
        else:
            method.load_state_dict(_ema_state(method, ema))
            selected = steps
        meta |= {
            "step": steps,
            "selected_step": selected,
            "val_psnr": best["psnr"],
            "val_ssim": best["ssim"],
            "val_best_step": best["step"],
            "train_seconds": elapsed + time.perf_counter() - t_start,
        }

    method.eval()
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        method.prepare_inference(one_pass(train_store, val_bs, paired, seed, device))
    record = model_record(
        method=spec["method"],
        plugin=spec["plugin"],
        params=method.params,
        image_size=image_size,
        state=method.state_dict(),
        meta=meta,
    )
    path = save_model(record, out_dir / "model.pt")
    log(f"wrote {path}")
    dist.barrier()
    return path


__all__ = [
    "EMA",
    "LRSchedule",
    "PairSampler",
    "TRAINING_DEFAULTS",
    "TrainingError",
    "resolve_training",
    "train",
    "validate",
]
