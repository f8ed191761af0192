"""The names tables show: datasets (their kind's ``display_name``), directions, and methods as
rows (the run's roster, or a plain one of the methods found)."""

from __future__ import annotations

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.datasets.kind import dataset_kinds

DIRECTION_LABELS = {"t1_to_t2": "T1 → T2", "t2_to_t1": "T2 → T1"}


def dataset_label(name: str) -> str:
    """A dataset's name in tables: the ``display_name`` of the dataset kind of that name; a name
    that is no registered kind is shown as it is."""
    kind = dataset_kinds().get(name)
    return kind.display_name if kind is not None else name


def direction_label(name: str) -> str:
    return DIRECTION_LABELS.get(name, name)


def ordered(names: list[str], order: list[str]) -> list[str]:
    """``names`` without repeats: those in ``order`` first, in its order, then the others."""
    names = list(dict.fromkeys(names))
    known = [n for n in order if n in names]
    return known + [n for n in names if n not in order]


def labels_from(summary: pd.DataFrame) -> dict[str, str]:
    """Method labels from a frame's ``label`` column (empty without one)."""
    if "label" in summary:
        return dict(zip(summary["method"], summary["label"], strict=False))
    return {}


def roster_or_plain(roster: Roster | None, frame: pd.DataFrame) -> Roster:
    """The given roster, or a plain one of the methods in ``frame`` (labels from its column)."""
    if roster is not None:
        return roster
    names = list(frame["method"]) if "method" in frame else []
    return Roster.plain(names, labels_from(frame))


def row_label(roster: Roster, name: str, labels: dict[str, str] | None = None) -> str:
    """A method's row name: its label, with a dagger for reconstructions from the paper."""
    entry = roster.entries.get(name)
    label = (labels or {}).get(name) or roster.label(name)
    return f"{label} †" if entry and entry.reconstruction else label
