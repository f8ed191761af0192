"""The recipe table of a run (what each method was trained with) and Table 1's footnote on
checkpoint selection; the recipes themselves are resolved in :mod:`mrbench.config.recipes`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mrbench.config.resolve import method_spec_dict
from mrbench.reporting.labels import dataset_label
from mrbench.reporting.render import MISSING, Cell, TableDoc, flat_header, fmt_num


def _num(x: float) -> str:
    return f"{x:g}"


def lr_schedule_text(t: dict[str, Any]) -> str:
    kind = t.get("lr_schedule", "constant")
    if kind == "linear":
        start = float(t.get("lr_decay_start", 0.5))
        if t.get("epochs"):
            return f"linear decay to 0 from epoch {_num(start * t['epochs'])}"
        return f"linear decay to 0 from step {round(start * t['steps'])}"
    if kind == "cosine":
        return f"cosine to {_num(float(t.get('lr_min', 0.0)))}"
    if kind == "plateau":
        return (
            f"x{_num(float(t.get('lr_factor', 0.1)))} after {t.get('lr_patience', 2)} "
            "validations without a new best PSNR"
        )
    return "constant"


def optimizer_text(cls: type, params: dict[str, Any]) -> str:
    """The optimiser trait and the learning-rate / beta parameters of the resolved params."""
    keys = [k for k in params if k.startswith(("lr", "beta"))]
    values = ", ".join(
        f"{k} {params[k]:g}" if isinstance(params[k], float) else f"{k} {params[k]}" for k in keys
    )
    name = getattr(cls, "optimizer", "") or "Adam"
    return f"{name} ({values})" if values else name


def recipe_row(spec: dict[str, Any], label: str | None = None) -> dict[str, Any]:
    """One row of the recipe table from a run's ``spec.json``."""
    from mrbench_methods import get_plugin

    cls = get_plugin(spec["plugin"])
    t = spec["training"]
    trainable = bool(getattr(cls, "trainable", True))
    steps = int(t["steps"]) if trainable else 0
    batch = int(t["batch_size"])
    train_slices = spec.get("train_slices")
    epochs = (steps * batch / train_slices) if train_slices and trainable else math.nan
    aug = t.get("augment", "none")
    if aug == "resize_crop_flip":
        aug = f"resize x{_num(round(float(t.get('augment_resize', 286 / 256)), 4))}, crop, flip"
    return {
        "dataset": Path(spec.get("data", "")).parent.name,
        "method": spec["method"],
        "label": label or cls.label(),
        "recipe": spec.get("recipe") or "",
        "batch_size": batch if trainable else math.nan,
        "epochs": epochs,
        "steps": steps,
        "images_seen": steps * batch,
        "optimizer": optimizer_text(cls, spec.get("params") or {}) if trainable else "",
        "lr_schedule": lr_schedule_text(t) if trainable else "",
        "ema": "none" if t.get("ema_decay") is None or not trainable else _num(t["ema_decay"]),
        "augmentation": aug if trainable else "",
        "selection": (
            "fitted once"
            if not trainable
            else "last step"
            if t.get("select") == "last"
            else "best paired-validation PSNR"
        ),
        "deviations": " ".join(getattr(cls, "deviations", ()) or ()),
    }


def recipe_table(spec_paths: list[str | Path]) -> tuple[TableDoc, pd.DataFrame]:
    """The recipe table (document and CSV frame) from the ``spec.json`` of every run."""
    rows = [recipe_row(json.loads(Path(p).read_text())) for p in spec_paths]
    df = pd.DataFrame(rows).drop_duplicates(["dataset", "method"])
    titles = ["Dataset", "Method", "Batch", "Epochs", "Steps", "Images seen", "Optimiser"]
    titles += ["LR schedule", "EMA", "Augmentation", "Selection"]
    titles += ["Deviations from the official recipe"]
    body = []
    for r in df.itertuples():
        texts = [dataset_label(r.dataset), r.label]
        texts.append(MISSING if math.isnan(r.batch_size) else str(int(r.batch_size)))
        texts += [fmt_num(r.epochs, 1), f"{r.steps:,}", f"{r.images_seen:,}"]
        texts += [r.optimizer or MISSING, r.lr_schedule or MISSING, r.ema]
        texts += [r.augmentation or MISSING, r.selection, r.deviations or "none"]
        body.append([Cell(x) for x in texts])
    recipes = sorted({r for r in df["recipe"] if r}) if not df.empty else []
    notes = [
        "Recipe: " + (", ".join(recipes) if recipes else "none (plugin defaults)") + "; "
        "official = each method's published recipe, equal_budget = the same batch size and "
        "epochs for every method (mrbench.config.recipes).",
        "Epochs and steps are those of the run (epochs = steps x batch / training slices); "
        "images seen = steps x batch size.",
        "Selection: the exported weights; 'best paired-validation PSNR' selects an "
        "unsupervised model with paired ground truth, a protocol choice of this benchmark.",
    ]
    doc = TableDoc("Training recipes as run.", flat_header(*titles), body, "ll" + "c" * 10, notes)
    return doc, df


def selection_note(config: dict) -> str:
    """Table 1's footnote naming how each trained method's exported checkpoint is chosen
    (from the resolved config: selection does not depend on the data). Methods are named as in
    Table 1's rows (the config entry's ``label``, else its name)."""
    by_rule: dict[str, list[str]] = {}
    for method in config["methods"]:
        spec = method_spec_dict(config, method)
        if spec["trainable"]:
            last = spec["training"].get("select") == "last"
            rule = "last step" if last else "best paired-validation PSNR"
            by_rule.setdefault(rule, []).append(spec["label"])
    parts = [f"{rule}: {', '.join(names)}" for rule, names in sorted(by_rule.items())]
    return "Exported checkpoint (see the recipes table): " + ("; ".join(parts) or "none") + "."
