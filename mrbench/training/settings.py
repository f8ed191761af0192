"""The ``training`` section of a spec: defaults, precedence and validation, and the one
conversion of epochs into steps that the workflow, the recipe table and the trainer share.

Keys (each documented in :mod:`mrbench.training.loop` and in the config schema):
:data:`TRAINING_DEFAULTS`.
"""

from __future__ import annotations

from typing import Any

from mrbench.config.schema import section_defaults
from mrbench.errors import InputError
from mrbench.training import acceleration
from mrbench.training.augment import AUGMENTATIONS

#: the ``training`` section's defaults: the schema's ``x-default`` values, their one home (the
#: schema's descriptions and this module's docstring say what each key does)
TRAINING_DEFAULTS: dict[str, Any] = section_defaults("training")
LR_SCHEDULES = ("constant", "plateau", "linear", "cosine")
#: training keys that may change between a run and its resumption
RESUME_FREE_KEYS = ("num_workers", "log_every", "val_batch_size", "gpus_per_job", "compile")


def _check(cond: bool, key: str, value: Any, expected: str) -> None:
    if not cond:
        raise InputError(f"training.{key}: {value!r} is invalid; expected {expected}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def merge_training(*layers: dict[str, Any] | None) -> dict[str, Any]:
    """Overlay training sections, lowest precedence first. A layer that sets ``steps`` without
    ``epochs`` states the length in steps: it clears an ``epochs`` of a lower layer; a layer
    that sets a length (``steps`` or ``epochs``) without ``steps_cap`` clears a lower layer's
    cap (a cap belongs to the length it was stated with)."""
    out: dict[str, Any] = {}
    for layer in layers:
        layer = layer or {}
        if "steps" in layer and "epochs" not in layer:
            out["epochs"] = None
        if ("steps" in layer or "epochs" in layer) and "steps_cap" not in layer:
            out["steps_cap"] = None
        out.update(layer)
    return out


def steps_for_epochs(epochs: int, train_slices: int, batch_size: int) -> int:
    """Steps of ``epochs`` passes over ``train_slices`` slices (an incomplete last batch of an
    epoch is dropped, as :class:`PairSampler` does)."""
    return int(epochs) * (int(train_slices) // int(batch_size))


def capped_length(training: dict[str, Any], steps: int) -> dict[str, Any]:
    """``steps`` and, where ``steps_cap`` cuts them, ``schedule_steps`` (the uncapped length the
    learning-rate schedule keeps): the keys a resolved section gets for a run of ``steps``."""
    cap = training.get("steps_cap")
    if cap is not None and steps > int(cap):
        return {"steps": int(cap), "schedule_steps": int(steps)}
    return {"steps": int(steps)}


def _check_trained_length(method_cls: type, steps: int) -> None:
    """A trainable method needs a step: run for 0 it would export its untrained weights."""
    _check(
        not getattr(method_cls, "trainable", True) or steps >= 1,
        "steps",
        steps,
        "an integer >= 1 for a trainable method (epochs x (training slices // batch_size) "
        "counts too)",
    )


def _check_rank_batch(method_cls: type, t: dict[str, Any]) -> None:
    """A data-parallel job gives each of its ``gpus_per_job`` processes an equal share of the
    batch; a method that splits its batch internally (``rank_batch_multiple``, e.g. DRIT++'s
    encoded and random halves) needs a share that is a multiple of its split, else the method
    would change with the GPU count."""
    gpus, batch = t["gpus_per_job"], t["batch_size"]
    if gpus <= 1 or not getattr(method_cls, "trainable", True):
        return
    _check(batch % gpus == 0, "gpus_per_job", gpus, f"a divisor of batch_size {batch}")
    need = int(getattr(method_cls, "rank_batch_multiple", 1) or 1)
    per = batch // gpus
    _check(
        per % need == 0,
        "gpus_per_job",
        gpus,
        f"a GPU count that leaves each process a multiple of {need} slices; batch_size {batch} "
        f"leaves {per}, and {getattr(method_cls, 'plugin_name', method_cls.__name__)} splits "
        "each process's batch in parts",
    )


def _check_for_method(method_cls: type, t: dict[str, Any]) -> None:
    """The resolved section's rules that depend on the method: its length and batch shares."""
    _check_trained_length(method_cls, t["steps"])
    _check_rank_batch(method_cls, t)


def _resolve_length(t: dict[str, Any], train_slices: int | None) -> None:
    """``steps`` of a merged section in place: from ``epochs`` where the split's size is known,
    cut by ``steps_cap`` (``schedule_steps`` then keeps the uncapped length)."""
    cap = t["steps_cap"]
    _check(cap is None or (_is_int(cap) and cap >= 1), "steps_cap", cap, "null or >= 1")
    if train_slices is not None and t["epochs"] is not None:
        t["steps"] = steps_for_epochs(t["epochs"], train_slices, t["batch_size"])
    t.pop("schedule_steps", None)
    t.update(capped_length(t, t["steps"]))


def resolve_training(
    method_cls: type, training: dict[str, Any] | None, train_slices: int | None = None
) -> dict[str, Any]:
    """Merge defaults, the method's suggestions and ``training``; validate every value. With
    ``train_slices`` (the training split's size), ``epochs`` becomes ``steps``."""
    suggested = dict(getattr(method_cls, "training_defaults", {}) or {})
    for source, section in (("method training_defaults", suggested), ("training", training or {})):
        # schedule_steps: derived (capped_length), present when a resolved section comes back
        unknown = sorted(set(section) - set(TRAINING_DEFAULTS) - {"schedule_steps"})
        if unknown:
            raise InputError(
                f"{source}: unknown key(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(TRAINING_DEFAULTS))}"
            )
    t = merge_training(TRAINING_DEFAULTS, suggested, training)
    epochs, val_epochs = t["epochs"], t["val_every_epochs"]
    _check(epochs is None or (_is_int(epochs) and epochs >= 1), "epochs", epochs, "null or >= 1")
    _check(
        val_epochs is None or (_is_int(val_epochs) and val_epochs >= 1),
        "val_every_epochs",
        val_epochs,
        "null or >= 1",
    )
    _check(t["augment"] in AUGMENTATIONS, "augment", t["augment"], "|".join(AUGMENTATIONS))
    _check(
        isinstance(t["augment_resize"], int | float) and t["augment_resize"] >= 1,
        "augment_resize",
        t["augment_resize"],
        "a number >= 1",
    )
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
    formats = acceleration.MEMORY_FORMATS
    _check(t["memory_format"] in formats, "memory_format", t["memory_format"], "|".join(formats))
    if getattr(method_cls, "paired", False) or getattr(method_cls, "needs_pairs", False):
        t["pairing"] = "paired"
    _resolve_length(t, train_slices)
    _check_for_method(method_cls, t)
    if train_slices is not None and val_epochs is not None:
        t["val_every"] = max(1, steps_for_epochs(val_epochs, train_slices, t["batch_size"]))
    return t
