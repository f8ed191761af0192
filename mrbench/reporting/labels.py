"""The names tables show: datasets (their kind's ``display_name``), directions and contrast
pairs (the contrasts' display names, :data:`mrbench.domain.CONTRASTS`), and methods as rows (the
run's roster, or a plain one of the methods found)."""

from __future__ import annotations

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.datasets.kind import dataset_kinds
from mrbench.domain import CONTRASTS, DIRECTIONS
from mrbench.pairs import parse_direction

#: the paper's directions as its tables name them (Table 1 and Table 2 keep these)
DIRECTION_LABELS = {"t1_to_t2": "T1 → T2", "t2_to_t1": "T2 → T1"}


def dataset_label(name: str) -> str:
    """A dataset's name in tables: the ``display_name`` of the dataset kind of that name; a name
    that is no registered kind is shown as it is."""
    kind = dataset_kinds().get(name)
    return kind.display_name if kind is not None else name


def direction_label(name: str) -> str:
    """``t1_to_t2`` -> ``T1 → T2`` (the paper's form), ``t2_to_flair`` -> ``T2w → FLAIR``
    (display names of the contrasts); anything else as it is."""
    if name in DIRECTION_LABELS:
        return DIRECTION_LABELS[name]
    try:
        src, dst = parse_direction(name)
    except ValueError:
        return name
    return f"{CONTRASTS[src]} → {CONTRASTS[dst]}"


def direction_order(directions: list[str]) -> list[str]:
    """Directions in table order: the paper's two first, then by pair (contrasts in
    :data:`mrbench.domain.CONTRASTS` order), the pair's CONTRASTS-first source first."""

    def key(r: str) -> tuple:
        if r in DIRECTIONS:
            return (0, DIRECTIONS.index(r), ())
        try:
            src, dst = parse_direction(r)
        except ValueError:
            return (2, 0, (r,))
        order = list(CONTRASTS)
        pair = sorted((order.index(src), order.index(dst)))
        return (1, 0, (*pair, order.index(src)))

    return sorted(dict.fromkeys(directions), key=key)


def default_pair_only(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's pair (directions ``t1_to_t2``/``t2_to_t1``): Table 1, Table 2,
    the paper comparison, the significance and the protocol tables show only these, in their
    published layout; the other pairs have the pairs table
    (:mod:`mrbench.reporting.pairs_table`)."""
    if "direction" not in frame or frame.empty:
        return frame
    return frame[frame["direction"].isin(DIRECTIONS)]


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
