"""What the reports read from a training run's logs (``train_log.csv``, ``val_log.csv``): the
loss columns, the translator collapse check and the time to a validation PSNR threshold."""

from __future__ import annotations

import math
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
