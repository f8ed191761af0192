"""Subject-level train/val/test splits, stored as ``config/splits/<dataset>.tsv`` (subject, split).

A subject is never in two splits; the split files are committed so that anyone gets the same split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from mrbench.io import InputError, atomic_path

SPLITS = ("train", "val", "test")


def make_splits(
    subjects: list[str], test_fraction: float, val_fraction: float, seed: int = 0
) -> pd.DataFrame:
    """Deterministic split: the sorted ids in a seeded random order; the first ``test_fraction``
    go to test, then ``val_fraction`` of the remaining (training) subjects go to validation.

    Every split gets at least one subject when there are at least three subjects.
    """
    ids = sorted(set(subjects))
    if len(ids) < 3:
        raise ValueError(f"need at least 3 subjects for train/val/test, got {len(ids)}")
    order = [ids[i] for i in np.random.default_rng(seed).permutation(len(ids))]
    n_test = min(max(1, round(test_fraction * len(ids))), len(ids) - 2)
    n_val = min(max(1, round(val_fraction * (len(ids) - n_test))), len(ids) - n_test - 1)
    split = ["test"] * n_test + ["val"] * n_val + ["train"] * (len(ids) - n_test - n_val)
    df = pd.DataFrame({"subject": order, "split": split})
    return df.sort_values("subject").reset_index(drop=True)


def write_splits(df: pd.DataFrame, path: str | Path) -> Path:
    check_splits(df, path)
    with atomic_path(path) as tmp:
        df[["subject", "split"]].to_csv(tmp, sep="\t", index=False)
    return Path(path)


def read_splits(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: split file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str)
    except Exception as exc:
        raise InputError(f"{path}: cannot read split file ({exc})") from None
    check_splits(df, path)
    return df


def check_splits(df: pd.DataFrame, path: str | Path) -> None:
    if list(df.columns[:2]) != ["subject", "split"]:
        raise InputError(f"{path}: expected columns 'subject' and 'split', got {list(df.columns)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise InputError(f"{path}: unknown split name(s) {bad}; expected {list(SPLITS)}")
    dup = df["subject"][df["subject"].duplicated()].tolist()
    if dup:
        raise InputError(f"{path}: subject(s) listed more than once: {dup[:5]}")


def subjects_in(df: pd.DataFrame, split: str) -> list[str]:
    return sorted(df.loc[df["split"] == split, "subject"])
