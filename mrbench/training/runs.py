"""One training run: :class:`Run`, fixed before the first step (resolved spec, data, method,
device, run folder), built by :func:`prepare_run`; the run folder's first files
(:func:`write_run_files`); and :class:`Progress`, what changes as the loop goes on."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrbench import __version__, pairs
from mrbench.checkpoint import model_record, seed_everything
from mrbench.domain import DEFAULT_PAIR
from mrbench.errors import InputError
from mrbench.finite import first_non_finite
from mrbench.io import atomic_path
from mrbench.slices import SliceStore
from mrbench.training import acceleration
from mrbench.training.distributed import SINGLE, DistContext
from mrbench.training.sampling import one_pass
from mrbench.training.schedules import EMA
from mrbench.training.settings import resolve_training
from mrbench.training.validation import exported_state, validate, validation_rows


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


@dataclass
class Run:
    """One training run as fixed before its first step: resolved spec, data, method, device and
    the run folder. Built by :func:`prepare_run`; the parts of
    :func:`~mrbench.training.loop.train` share it."""

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
    #: digests of what the run learns from (:func:`inputs_digest`): recorded in every
    #: checkpoint and model file, compared on resume
    inputs: dict[str, str] = field(default_factory=dict)
    #: a checkpoint of another spec or other data starts the run afresh instead of stopping it
    restart_on_change: bool = False
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
    def pair(self) -> tuple[str, str]:
        """The contrasts the run translates between (``a``, ``b``), from its stores."""
        return self.train_store.pair_contrasts

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
        with (
            ema.applied() if ema is not None else contextlib.nullcontext(),
            exported_state(self.method, self.training_slices, self.seed),
        ):
            return validate(
                self.method,
                self.val_store,
                self.val_rows,
                int(self.training["val_batch_size"]),
                self.device,
                self.seed,
            )

    def training_slices(self) -> Iterator[dict[str, torch.Tensor]]:
        """Every training slice once (for :meth:`fit` and :meth:`prepare_inference`); a batch
        with a NaN or infinite value is named as a corrupt slice store, not left to fail inside
        the method."""
        bs = int(self.training["val_batch_size"])
        for batch in one_pass(self.train_store, bs, self.paired, self.seed, self.device):
            bad = first_non_finite(batch)
            if bad is not None:
                raise InputError(
                    f"{self.train_store.folder}: training slices hold non-finite values ({bad}); "
                    "the slice store is corrupt: rebuild it (mrbench slices)"
                )
            yield batch

    def record(self, state: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
        return model_record(
            method=self.name,
            plugin=self.spec["plugin"],
            params=self.method.params,
            image_size=self.image_size,
            state=state,
            meta={"inputs": self.inputs, "pair": list(self.pair), **meta},
        )

    def meta(self) -> dict[str, Any]:
        """Provenance stored in ``model.pt`` (selection results are added by the caller), with
        the training grid that ``mrbench translate --input`` checks a user's volume against."""
        from mrbench.inference.grid import training_grid

        affines = [info["affine"] for info in self.train_store.meta.get("subjects", [])]
        return {
            "grid": training_grid(affines),
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
    restart_on_change: bool = False,
    pair: tuple[str, str] | list[str] = DEFAULT_PAIR,
) -> Run:
    """Check the spec, open the slice stores, resolve the training settings (epochs become steps
    here, from the training split's size), seed and build the method; no file is written.
    ``restart_on_change``: a ``last.pt`` of another spec or other data is not resumed but
    replaced (the workflow's jobs: their run folders follow the config and split). ``pair``:
    the two contrasts to translate between (the first is domain ``a``); both stores must hold
    them."""
    log = log or (lambda msg: print(msg, file=sys.stderr, flush=True))
    if not dist.is_main:
        log = lambda msg: None  # noqa: E731
    device = torch.device(device)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    cls = _check_spec(spec)
    # tissue labels only for methods that need them (validation and test never carry them)
    try:
        pair = pairs.check_pair(pair)
    except ValueError as exc:
        raise InputError(f"--pair: {exc}") from None
    labels = bool(getattr(cls, "needs_labels", False))
    train_store = SliceStore(data_dir / "train", labels=labels, pair=pair)
    val_store = SliceStore(data_dir / "val", pair=pair)
    if train_store.size != val_store.size:
        raise InputError(
            f"{data_dir}: train slices are {train_store.size} px, val slices {val_store.size} px"
        )
    training = resolve_training(cls, spec.get("training"), train_slices=len(train_store))
    if dist.enabled and not cls.trainable:
        raise InputError(
            f"{spec['plugin']} is not trainable: run it in one process, not {dist.world_size}"
        )
    if max_steps is not None and training["steps"] > int(max_steps):
        training["steps"] = int(max_steps)  # a quick run: its schedule ends with it
        training.pop("schedule_steps", None)
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
    dist.prepare(method, log=log)
    acceleration.use_optimizer_impl(method.optimizers(), training["optimizer_impl"])
    acceleration.compile_networks(method, training["compile"])
    resolved = {
        "method": spec["method"],
        "plugin": spec["plugin"],
        "params": method.params,
        "training": training,
        "seed": int(seed),
        "image_size": train_store.size,
        "pair": list(pair),
    }
    device_message = device_message or f"device: {device}"
    if dist.enabled:
        device_message += f"; data-parallel over {dist.world_size} processes ({dist.backend})"
    run = Run(
        spec, cls, training, method, train_store, val_store, int(seed), device, data_dir,
        out_dir, resolved, device_message, log, dist,
    )  # fmt: skip
    run.val_rows = validation_rows(val_store, int(training["val_max_slices"]))
    run.inputs = inputs_digest(data_dir, resolved, pair)
    run.restart_on_change = bool(restart_on_change)
    return run


def store_files(pair: tuple[str, str] | list[str] = DEFAULT_PAIR) -> tuple[str, ...]:
    """The files of a slice store split that a digest of a run on ``pair`` reads: meta, index,
    the pair's ``<contrast>.npy``, mask and labels (``label.npy`` only where present); the
    store's other contrasts are not what the run learns from."""
    a, b = pairs.check_pair(pair)
    return ("meta.json", "index.tsv", f"{a}.npy", f"{b}.npy", "mask.npy", "label.npy")


def data_digest(data_dir: str | Path, pair: tuple[str, str] | list[str] = DEFAULT_PAIR) -> str:
    """sha256 of the ``train`` and ``val`` slice stores under ``data_dir`` for a run on
    ``pair``: every byte a run learns from and selects its weights with. The stores' meta and
    index list the subjects, so a moved subject of the split file, another preprocessing or
    another image gives another digest; the test split is not read (a run never sees it). A
    pair other than T1w/T2w is hashed in too, so that its runs never share a digest with the
    default pair's."""
    h = hashlib.sha256()
    if tuple(pair) != DEFAULT_PAIR:
        h.update(f"pair {'/'.join(pair)}\0".encode())
    for split in ("train", "val"):
        for name in store_files(pair):
            path = Path(data_dir) / split / name
            if not path.exists():
                continue
            h.update(f"{split}/{name}\0".encode())
            with path.open("rb") as f:
                h.update(hashlib.file_digest(f, "sha256").digest())
    return h.hexdigest()


def inputs_digest(
    data_dir: str | Path,
    resolved: dict[str, Any],
    pair: tuple[str, str] | list[str] = DEFAULT_PAIR,
) -> dict[str, str]:
    """``{"data": data_digest, "spec": sha256 of the resolved spec}``: what a checkpoint and a
    model file record of their inputs, so that a resume on other data (or another pair) starts
    afresh and a model says which data it was trained on."""
    spec = json.dumps(resolved, sort_keys=True, default=str).encode()
    return {"data": data_digest(data_dir, pair), "spec": hashlib.sha256(spec).hexdigest()}


def optimizer_settings(method: Any) -> dict[str, dict[str, Any]]:
    """Each optimiser's class and initial settings (``lr``, ``betas``, ``weight_decay``,
    ``momentum`` where it has them; a list where its parameter groups differ), read from the
    optimisers themselves, for the recipe table: a plugin's parameters also hold numbers that
    only look like optimiser settings (a diffusion schedule's ``beta_start``)."""
    out: dict[str, dict[str, Any]] = {}
    for name, opt in method.optimizers().items():
        entry: dict[str, Any] = {"type": type(opt).__name__}
        for key in ("lr", "betas", "weight_decay", "momentum"):
            values = [g.get("initial_lr", g[key]) if key == "lr" else g.get(key)
                      for g in opt.param_groups]  # fmt: skip
            values = [list(v) if isinstance(v, tuple) else v for v in values]
            if values and values[0] is not None:
                same = all(v == values[0] for v in values)
                entry[key] = values[0] if same else values
        out[name] = entry
    return out


def write_run_files(run: Run) -> None:
    """The run folder with ``spec.json`` and ``device.txt`` (process 0), and the start message."""
    run.ckpt_dir.mkdir(parents=True, exist_ok=True)
    if run.dist.is_main:
        with atomic_path(run.out_dir / "spec.json") as tmp:
            extra = {"recipe": run.spec.get("recipe"), "train_slices": len(run.train_store)}
            extra["optimizers"] = optimizer_settings(run.method)
            text = json.dumps(
                {**run.resolved, "data": str(run.data_dir), **extra}, indent=1, default=str
            )
            tmp.write_text(text)
        (run.out_dir / "device.txt").write_text(run.device_message + "\n")
    run.log(
        f"{run.name} ({run.spec['plugin']}) on {pairs.pair_label(run.pair)}, seed {run.seed}: "
        f"{run.device_message}"
    )
    run.t_start = time.perf_counter()


def no_best() -> dict[str, Any]:
    return {"psnr": -math.inf, "ssim": math.nan, "step": -1, "file": ""}


def no_pending() -> dict[str, Any]:
    return {"losses": {}, "seconds": 0.0, "steps": 0}


@dataclass
class Progress:
    """What a checkpoint keeps of the loop besides weights, optimisers, EMA and schedule: steps
    done, seconds trained before this process, the best validation so far, and the losses of
    steps since the last log row (so that a resumed run writes the same rows as an
    uninterrupted one)."""

    step: int = 0
    elapsed: float = 0.0
    best: dict[str, Any] = field(default_factory=no_best)
    pending: dict[str, Any] = field(default_factory=no_pending)
    rng: Any = None  # the RNG state to restore before the first step (resumed runs)
