"""What the reports read from a training run's logs (``train_log.csv``, ``val_log.csv``): the
loss columns, the translator collapse check and the time to a validation PSNR threshold."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

#: columns of ``train_log.csv`` that are not losses (besides ``lr_*``)
LOG_NON_LOSS = {"step", "lr", "sec_per_step", "peak_mem_mb", "seconds_elapsed"}


def read_csv_or_empty(path: Path) -> pd.DataFrame:
    """A CSV as a DataFrame, or an empty one when the file is missing or empty (a run that
    logged nothing yet)."""
    if not path.exists() or path.stat().st_size == 0:
        return pd.DataFrame()
    try:
        return pd.read_csv(path)
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def translator_psnr(val_log: pd.DataFrame) -> dict[str, float]:
    """Collapse check of methods with translators (``validation_outputs``): at the last
    validation, the translator's PSNR against its own input and against the target (NaN for
    methods without one). Near-identity translators score high against the input."""
    out = {}
    for ref in ("input", "target"):
        col = f"psnr_translator_vs_{ref}"
        values = pd.to_numeric(val_log[col], errors="coerce") if col in val_log else pd.Series()
        out[f"translator_psnr_vs_{ref}"] = float(values.iloc[-1]) if len(values) else math.nan
    return out


#: below this spread against the target's, a translator's output counts as near-constant
COLLAPSE_SPREAD = 0.1
#: above this PSNR against its own input, a translator counts as copying it
COPY_PSNR = 40.0


def _last(val_log: pd.DataFrame, column: str) -> float:
    if column not in val_log:
        return math.nan
    values = pd.to_numeric(val_log[column], errors="coerce").dropna()
    return float(values.iloc[-1]) if len(values) else math.nan


def translator_collapse(val_log: pd.DataFrame) -> str | None:
    """What the last validation says of a method's translators (``validation_outputs``), when
    they have collapsed: a near-constant output (spread under :data:`COLLAPSE_SPREAD` of the
    target's: every loss can be met by images that carry the anatomy in a faint code) or a
    copy of the input (PSNR against it over :data:`COPY_PSNR` dB); None otherwise."""
    spread = _last(val_log, "spread_translator_vs_target")
    if spread < COLLAPSE_SPREAD:
        return f"translators' outputs near-constant (spread {spread:.0%} of the target's)"
    copy = _last(val_log, "psnr_translator_vs_input")
    if copy > COPY_PSNR:
        return f"translators copy their input (PSNR {copy:.1f} dB against it)"
    return None


def collapse_note(model_paths: list[Path], label: Callable[[str], str]) -> str | None:
    """Table 1's footnote naming every run (``model.pt`` with its ``spec.json`` and
    ``val_log.csv`` beside it) whose translators collapsed, or None; ``label`` gives a config
    name's row label."""
    import json

    found = []
    for model in model_paths:
        run = Path(model).parent
        if not (run / "spec.json").exists():
            continue
        spec = json.loads((run / "spec.json").read_text())
        what = translator_collapse(read_csv_or_empty(run / "val_log.csv"))
        if what is not None:
            dataset = Path(str(spec.get("data", ""))).parent.name
            where = ", ".join(x for x in (dataset, f"seed {spec.get('seed', '?')}") if x)
            found.append(f"{label(spec['method'])} ({where}): {what}")
    if not found:
        return None
    return (
        "Collapse check at the last validation: "
        + "; ".join(found)
        + ". These rows score a collapsed model, not the method at its best."
    )


def time_to_threshold(val_log: pd.DataFrame, threshold: float) -> tuple[float, float]:
    """(step, seconds) of the first validation reaching ``threshold`` dB; NaN if never."""
    if val_log.empty or "psnr" not in val_log or not math.isfinite(threshold):
        return math.nan, math.nan
    psnr = pd.to_numeric(val_log["psnr"], errors="coerce")
    hit = val_log[psnr >= threshold]
    if hit.empty:
        return math.nan, math.nan
    first = hit.iloc[0]
    return float(first["step"]), float(first.get("seconds_elapsed", math.nan))
