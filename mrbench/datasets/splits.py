"""Subject-level train/val/test splits, stored as ``config/splits/<dataset>.tsv`` (subject, split).

A subject is never in two splits; the split files are committed so that anyone gets the same split,
and a run only reads them: the archive is checked against the committed list
(:func:`check_archive_against_split`), never the other way round.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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


def read_splits(path: str | Path, complete: bool = True) -> pd.DataFrame:
    """The (subject, split) table of a split file, checked (:func:`check_splits`); ``complete``:
    every split must hold a subject, as the benchmark needs (``False`` for a tool that builds
    only some splits)."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: split file not found")
    try:
        df = pd.read_csv(path, sep="\t", dtype=str)
    except Exception as exc:
        raise InputError(f"{path}: cannot read split file ({exc})") from None
    check_splits(df, path, complete)
    return df


def check_splits(df: pd.DataFrame, path: str | Path, complete: bool = False) -> None:
    if list(df.columns[:2]) != ["subject", "split"]:
        raise InputError(f"{path}: expected columns 'subject' and 'split', got {list(df.columns)}")
    bad = sorted(set(df["split"]) - set(SPLITS))
    if bad:
        raise InputError(f"{path}: unknown split name(s) {bad}; expected {list(SPLITS)}")
    dup = df["subject"][df["subject"].duplicated()].tolist()
    if dup:
        raise InputError(f"{path}: subject(s) listed more than once: {dup[:5]}")
    # every split feeds a job (training, validation, the test tables): an empty one is named
    # when the file is read, not after hours of training
    empty = [s for s in SPLITS if not (df["split"] == s).any()]
    if complete and empty:
        raise InputError(
            f"{path}: the {' and '.join(empty)} split{'s are' if len(empty) > 1 else ' is'} "
            "empty; every split (train, val, test) needs at least one subject"
        )


def subjects_in(df: pd.DataFrame, split: str) -> list[str]:
    return sorted(df.loc[df["split"] == split, "subject"])


def check_archive_against_split(
    found: Mapping[str, Iterable[str]],
    required: Iterable[str],
    split_path: str | Path,
    archive: str | Path,
) -> list[str]:
    """The subjects of the committed split ``split_path``, checked against an archive.

    ``found`` maps each subject of the archive to the modalities it holds. A listed subject
    missing from the archive, or lacking one of the ``required`` modalities, stops the job with
    one line naming them all; subjects the split does not list are ignored (their number goes to
    the log), so that a larger release imports the committed subjects only.
    """
    listed = read_splits(split_path)["subject"].tolist()
    required = list(required)
    absent = [s for s in listed if s not in found]
    lacking = [
        f"{s} ({', '.join(m for m in required if m not in set(found[s]))})"
        for s in listed
        if s in found and any(m not in set(found[s]) for m in required)
    ]
    problems = []
    if absent:
        problems.append(f"{len(absent)} listed subject(s) missing: {', '.join(absent)}")
    if lacking:
        problems.append(f"{len(lacking)} listed subject(s) lack files: {'; '.join(lacking)}")
    if problems:
        detail = "; ".join(problems)
        raise InputError(f"{archive}: does not match the split {split_path}: {detail}")
    extra = sorted(set(found) - set(listed))
    print(
        f"{archive}: {len(listed)} subjects of {split_path} found; "
        f"{len(extra)} other subject(s) in the archive ignored"
    )
    return sorted(listed)
