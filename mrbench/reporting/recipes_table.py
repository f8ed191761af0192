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
    text = _schedule_text(t)
    if t.get("schedule_steps"):  # steps_cap cut the run short of its schedule
        text += f"; stopped by the iteration cap at step {int(t['steps']):,}"
    return text


def _schedule_text(t: dict[str, Any]) -> str:
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


def _setting(value: Any) -> str:
    if isinstance(value, list):
        return "(" + ", ".join(_setting(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def recorded_optimizer_text(optimizers: dict[str, dict[str, Any]]) -> str:
    """The optimisers a run recorded in its ``spec.json`` (class, lr, betas, weight decay),
    those with identical settings named together."""
    names = {"weight_decay": "weight decay"}
    by_text: dict[str, list[str]] = {}
    for name, opt in optimizers.items():
        values = ", ".join(
            f"{names.get(k, k)} {_setting(v)}" for k, v in opt.items() if k != "type" and v
        )
        text = f"{opt.get('type', 'optimiser')} ({values})" if values else opt.get("type", "")
        by_text.setdefault(text, []).append(name)
    if len(by_text) == 1:
        return next(iter(by_text))
    return "; ".join(f"{', '.join(n)}: {text}" for text, n in by_text.items())


def optimizer_text(cls: type, params: dict[str, Any]) -> str:
    """For a run that recorded no optimisers: the optimiser trait and the learning rates and
    Adam betas among the resolved params (``lr*``, ``beta1``/``beta2``, ``betas*``; not a
    diffusion schedule's ``beta_min``/``beta_start``)."""
    keys = [k for k in params if k.startswith(("lr", "betas")) or k in ("beta1", "beta2")]
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
    elif aug == "random_resized_crop_flip":
        aug = "random resized crop (p 0.5, 80-100 % of the area), flip"
    return {
        "dataset": Path(spec.get("data", "")).parent.name,
        "method": spec["method"],
        "label": label or cls.label(),
        "recipe": spec.get("recipe") or "",
        "batch_size": batch if trainable else math.nan,
        "epochs": epochs,
        "steps": steps,
        "images_seen": steps * batch,
        "optimizer": (
            ""
            if not trainable
            else recorded_optimizer_text(spec["optimizers"])
            if spec.get("optimizers")
            else optimizer_text(cls, spec.get("params") or {})
        ),
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


def _distinct_labels(specs: list[dict[str, Any]]) -> dict[str, str]:
    """One row label per method, as Table 1 and the efficiency table name them: a plugin's
    variants (e.g. the DisDiff ablations) get their config name in brackets."""
    from mrbench.config.roster import default_labels
    from mrbench_methods import get_plugin

    entries = {}
    for spec in specs:
        cls = get_plugin(spec["plugin"])
        parts = cls.components({**cls.defaults, **(spec.get("params") or {})})
        partial = bool(parts) and not all(parts.values())
        entries[spec["method"]] = (spec["plugin"], cls.label(), partial)
    return default_labels(entries)


def recipe_table(spec_paths: list[str | Path]) -> tuple[TableDoc, pd.DataFrame]:
    """The recipe table (document and CSV frame) from the ``spec.json`` of every run."""
    specs = [json.loads(Path(p).read_text()) for p in spec_paths]
    labels = _distinct_labels(specs)
    rows = [recipe_row(spec, labels.get(spec["method"])) for spec in specs]
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
    notes += [validation_note(specs, labels)] if specs else []
    doc = TableDoc("Training recipes as run.", flat_header(*titles), body, "ll" + "c" * 10, notes)
    return doc, df


def validation_note(specs: list[dict[str, Any]], labels: dict[str, str]) -> str:
    """How many paired validation slices each trained method was validated on (each time, both
    directions): a per-method budget where a sampler makes validation slow."""
    from mrbench_methods import get_plugin

    by_n: dict[int, list[str]] = {}
    for spec in specs:
        if getattr(get_plugin(spec["plugin"]), "trainable", True):
            n = int(spec["training"].get("val_max_slices", 0))
            name = labels.get(spec["method"], spec["method"])
            if name not in by_n.setdefault(n, []):
                by_n[n].append(name)
    parts = [f"{n} for {', '.join(names)}" for n, names in sorted(by_n.items(), reverse=True)]
    return "Validation slices (at most, per validation): " + ("; ".join(parts) or "none") + "."


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
