"""Finiteness checks of weights, and the checks of a prediction (shape, finiteness, range).

A diverged model (NaN or infinite weights) must never be scored, checkpointed, exported or used
for translation: every score it would get is meaningless, and a checkpoint holding it would make
every resumed run diverge again. These helpers find the first offending tensor so that the error
can name it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch


def first_non_finite(state: Any, prefix: str = "") -> str | None:
    """Dotted name of the first floating-point tensor in ``state`` (nested dicts, lists,
    tensors) holding NaN or inf; ``None`` when every tensor is finite."""
    if isinstance(state, torch.Tensor):
        inexact = state.is_floating_point() or state.is_complex()
        return None if not inexact or bool(torch.isfinite(state).all()) else prefix or "tensor"
    if isinstance(state, Mapping):
        items = state.items()
    elif isinstance(state, list | tuple):
        items = enumerate(state)
    else:
        return None
    for key, value in items:
        found = first_non_finite(value, f"{prefix}.{key}" if prefix else str(key))
        if found is not None:
            return found
    return None


def module_non_finite(module: torch.nn.Module) -> str | None:
    """Name of the first parameter or buffer of ``module`` holding NaN or inf, else ``None``."""
    return first_non_finite(module.state_dict())


#: how far a translation may stray beyond the image range [-1, 1] (rounding under mixed
#: precision) before it is refused rather than clipped into a plausible-looking image
OUTPUT_TOLERANCE = 1e-3


def translation_problem(
    pred: torch.Tensor, source: torch.Tensor, *, nan_ok: bool = False
) -> str | None:
    """Why a plugin's ``translate`` output ``pred`` for ``source`` cannot be scored or written
    (another shape or channel count, non-finite values, values outside [-1, 1]); ``None`` when
    it can. Clipping such an output would turn a broken plugin into a plausible result.
    ``nan_ok``: non-finite values are left to the caller (validation scores them NaN, which the
    trainer reports as divergence)."""
    if tuple(pred.shape) != tuple(source.shape):
        channels = ""
        if pred.ndim == source.ndim == 4 and pred.shape[1] != source.shape[1]:
            channels = f"{pred.shape[1]} channels where the input has {source.shape[1]}, "
        return (
            f"returned shape {tuple(pred.shape)} for input {tuple(source.shape)} "
            f"({channels}expected the input's shape)"
        )
    if not bool(torch.isfinite(pred).all()):
        return None if nan_ok else "returned non-finite values"
    lo, hi = float(pred.min()), float(pred.max())
    if lo < -1 - OUTPUT_TOLERANCE or hi > 1 + OUTPUT_TOLERANCE:
        return f"returned values in [{lo:.4g}, {hi:.4g}], outside the image range [-1, 1]"
    return None
