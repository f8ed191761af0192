"""Checkpoints (resumable training state) and model files (what evaluation loads).

Both are ``torch.save`` files readable with ``torch.load(weights_only=True)``: tensors and plain
Python values only, no pickled objects, so loading a file cannot run code. Both are written to a
temporary name and renamed, so a job killed while writing leaves the previous file intact.

Checkpoint (``<out>/checkpoints/last.pt``)::

    {"format": "mrbench-checkpoint/1", "step": int, "spec": resolved spec,
     "method": method.full_state() (networks, optimisers, extra state such as a GAN's pool),
     "ema": {module name: state_dict}, "schedule": LR schedule state, "sampler": sampler state,
     "rng": {"python", "numpy", "torch", "cuda"}, "best": {...}, "elapsed": seconds,
     "inputs": {"data": digest of the train/val slice stores, "spec": digest of the spec}}

Model file (``<out>/model.pt``)::

    {"format": "mrbench-model/1", "method": config name, "plugin": plugin name,
     "params": resolved params, "image_size": int, "state": state_dict (EMA weights applied),
     "meta": {..., "inputs": the training run's input digests, as in its checkpoints,
              "pair": [a, b], the contrasts of domains a and b (absent: written before pairs
              existed, a T1w/T2w model; its state-dict keys spell t1/t2 and are renamed to a/b
              on load, :func:`legacy_state`)}}
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mrbench.io import InputError, atomic_path

CHECKPOINT_FORMAT = "mrbench-checkpoint/1"
MODEL_FORMAT = "mrbench-model/1"


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return path


def load_safe(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a one-line error naming the file."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for corrupt or unsafe files
        raise InputError(f"{path}: cannot read checkpoint ({_load_failure(exc)})") from None


def _load_failure(exc: Exception) -> str:
    """Why a weights-only load failed, in a few words: the refused global by name when there is
    one (a file that needs it is not a checkpoint of this project), never torch's advice to
    load without the weights-only guard."""
    text = str(exc)
    found = re.search(r"GLOBAL\s+([\w.]+)", text) or re.search(r"global:?\s+([\w.]+)", text)
    if found:
        return (
            f"refused global {found.group(1)}: a checkpoint may hold only tensors and plain "
            "data, so this file was not written by mrbench or has been tampered with"
        )
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()] or [type(exc).__name__]
    safe = [ln for ln in lines if "weights_only" not in ln and "Weights only" not in ln]
    return safe[0] if safe else "not a weights-only checkpoint"


# ----------------------------------------------------------------------- RNG state
def rng_state() -> dict[str, Any]:
    """States of the python, numpy and torch (CPU and CUDA) generators, safe for weights_only."""
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    npst = state["numpy"]
    np.random.set_state(
        {
            "bit_generator": npst["bit_generator"],
            "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
            "has_gauss": npst["has_gauss"],
            "gauss": npst["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states, visible = state["cuda"], torch.cuda.device_count()
        # the devices both runs have, device 0 (the one a process trains on) first
        for i in range(min(len(cuda_states), visible)):
            torch.cuda.set_rng_state(cuda_states[i], device=i)
        if len(cuda_states) != visible:
            import warnings

            warnings.warn(
                f"checkpoint saved the random streams of {len(cuda_states)} GPU(s), this process "
                f"sees {visible}: the streams of the first {min(len(cuda_states), visible)} "
                "restored, any others start fresh (the resumed run is not bitwise the "
                "uninterrupted one)",
                stacklevel=2,
            )


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (all CUDA devices included)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------- checkpoints
def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    state = {"format": CHECKPOINT_FORMAT, **state}
    return save_atomic(state, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    state = load_safe(path)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise InputError(f"{path}: not an mrbench checkpoint (expected {CHECKPOINT_FORMAT})")
    return state


# ---------------------------------------------------------------------- model files
def model_record(
    *,
    method: str,
    plugin: str,
    params: dict[str, Any],
    image_size: int,
    state: dict[str, torch.Tensor],
    meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "format": MODEL_FORMAT,
        "method": method,
        "plugin": plugin,
        "params": dict(params),
        "image_size": int(image_size),
        "state": {k: v.detach().cpu().clone() for k, v in state.items()},
        # plain JSON types only, so that weights_only loading accepts the record
        "meta": json.loads(json.dumps(meta or {}, default=str)),
    }


def save_model(record: dict[str, Any], path: str | Path) -> Path:
    """Write a model record (see :func:`model_record`) atomically."""
    if record.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path}: record is not in the {MODEL_FORMAT} format")
    return save_atomic(record, path)


def read_model(path: str | Path) -> dict[str, Any]:
    """The raw model record of a ``model.pt``, checked for format and keys."""
    record = load_safe(path)
    if not isinstance(record, dict) or record.get("format") != MODEL_FORMAT:
        raise InputError(f"{path}: not an mrbench model file (expected format {MODEL_FORMAT})")
    for key in ("method", "plugin", "params", "image_size", "state"):
        if key not in record:
            raise InputError(f"{path}: model file lacks the key {key!r}")
    return record


def legacy_state(record: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The state dict of a model record; one written before the method contract became
    pair-neutral (no ``meta["pair"]``) has its ``t1``/``t2`` network names renamed to
    ``a``/``b`` (:func:`mrbench_methods.base.upgrade_legacy_names`): T1w was domain ``a``."""
    if "pair" in (record.get("meta") or {}):
        return record["state"]
    from mrbench_methods.base import upgrade_legacy_names

    return upgrade_legacy_names(record["state"])


def load_model(path: str | Path, device: str | torch.device = "cpu") -> Any:
    """Build the method stored in ``model.pt`` with its final weights, in eval mode on ``device``.

    The returned :class:`~mrbench_methods.base.TranslationMethod` carries the record without its
    weights
    as ``model_info`` (config name, plugin, params, image size, meta). Building the networks does
    not disturb the caller's random generators.
    """
    from mrbench_methods import get_plugin

    record = read_model(path)
    try:
        cls = get_plugin(record["plugin"])
    except KeyError as exc:
        raise InputError(f"{path}: {exc.args[0]}") from None
    with torch.random.fork_rng(devices=[]):
        method = cls(record["params"], image_size=int(record["image_size"]))
    try:
        method.load_state_dict(legacy_state(record))
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise InputError(
            f"{path}: weights do not fit plugin {record['plugin']!r} ({first})"
        ) from None
    method.to(device)
    method.eval()
    method.model_info = {k: v for k, v in record.items() if k != "state"}
    return method
