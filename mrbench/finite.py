"""Finiteness checks of weights and predictions.

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
