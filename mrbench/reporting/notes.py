"""Footnotes the tables share: the metric protocol, the spread behind ``mean ± std``, infinite
PSNR values and the methods' config names and citations."""

from __future__ import annotations

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.evaluation.metrics import PROTOCOLS


def methods_note(roster: Roster, names: list[str]) -> str | None:
    """One note naming each row's config name and citation (and the dagger's meaning)."""
    parts = []
    for n in names:
        entry = roster.entries.get(n)
        if entry is None or not entry.plugin:
            continue
        text = f"{entry.label} [{n}]"
        parts.append(f"{text}: {entry.citation}" if entry.citation else text)
    if not parts:
        return None
    note = "Methods [config name]: " + "; ".join(parts) + "."
    if any(roster.entries[n].reconstruction for n in names if n in roster.entries):
        note += " †: reconstructed from the paper (no official code)."
    return note


def protocol_note(protocol: str) -> str:
    """The metric protocol the table's numbers were computed with."""
    p = PROTOCOLS.get(protocol)
    return f"Protocol {protocol}: {p.description}." if p else f"Protocol {protocol}."


def spread_note(sel: pd.DataFrame) -> str:
    """What ``mean ± std`` is taken over (subjects or slices, seeds), from summary rows."""
    if sel.empty:
        return "No results."
    subj = sel["n_subjects"]
    seeds = sel["n_seeds"].max()
    agg = sel["aggregation"].iloc[0]
    over = "test slices" if agg == "slice" else "test subjects (each the mean of its slices)"
    n = f"{subj.min()}" if subj.min() == subj.max() else f"{subj.min()}-{subj.max()}"
    text = f"Mean ± std (population) across {over}; n = {n} subjects"
    text += f", {sel['n_slices'].min()}-{sel['n_slices'].max()} slices"
    if seeds > 1:
        text += f"; {seeds} seeds (subject values averaged over seeds; seed spread in the CSV)"
    return text + "."


def infinite_note(sel: pd.DataFrame) -> str | None:
    """A note on infinite PSNR values left out of the means, or None without any."""
    n_inf = int(sel.get("n_infinite", pd.Series(dtype=int)).sum())
    if n_inf:
        return (
            f"{n_inf} infinite PSNR value(s) (exact predictions) are excluded from means and stds "
            "(counted in the CSV column n_infinite)."
        )
    return None
