"""The methods table of a run: every configured method as the tables name it, its citation,
whether it trains on co-registered pairs (the plugin's ``paired`` trait: a supervised reference)
and its roles (Table 1, ablation, significance reference, efficiency pair), with the plugins'
stated deviations from their official recipes."""

from __future__ import annotations

import json

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.reporting.labels import row_label
from mrbench.reporting.render import MISSING, Cell, TableDoc, flat_header


def methods_table(roster: Roster) -> tuple[TableDoc, pd.DataFrame]:
    """Every configured method as the tables name it: label, config name, plugin, family,
    citation and its roles in this run (Table 1, ablation, reference, efficiency pair); the
    notes list each plugin's stated deviations from its official recipe."""
    records = []
    for n in roster.order:
        e = roster.entries[n]
        records.append(
            {
                "method": n,
                "label": e.label,
                "plugin": e.plugin,
                "family": e.family,
                "citation": e.citation,
                "reconstruction": e.reconstruction,
                "trainable": e.trainable,
                "paired": e.paired,
                "table1": n in roster.table1,
                "ablation": n in roster.ablation,
                "components": json.dumps(e.components),
                "capabilities": " ".join(e.capabilities),
                "paper_row": e.paper_row or "",
                "reference": n == roster.reference,
                "efficiency_pair": n in roster.efficiency_pair,
            }
        )
    df = pd.DataFrame(records, columns=[*(records[0] if records else ["method"])])
    header = flat_header(
        *("Method", "Config name", "Family", "Citation", "Trained", "Paired", "Table 1"),
        *("Ablation", "Paper row"),
    )

    def tick(flag: bool) -> str:
        return "✓" if flag else "×"

    rows = [
        [
            Cell(row_label(roster, r["method"])),
            Cell(r["method"]),
            Cell(r["family"]),
            Cell(r["citation"] or MISSING),
            Cell(tick(r["trainable"])),
            Cell(tick(r["paired"])),
            Cell(tick(r["table1"])),
            Cell(tick(r["ablation"])),
            Cell(r["paper_row"] or MISSING),
        ]
        for r in records
    ]
    notes = []
    if roster.reference:
        notes.append(f"Significance reference: {roster.label(roster.reference)}.")
    if any(roster.entries[n].paired for n in roster.order):
        notes.append(
            "Paired: trained on co-registered T1w/T2w pairs of the same slice (supervised); "
            "the other methods get independently drawn, unpaired slices."
        )
    if roster.efficiency_pair:
        pair = " and ".join(map(roster.label, roster.efficiency_pair))
        notes.append(f"Efficiency threshold from the convergence of {pair}.")
    if any(roster.entries[n].reconstruction for n in roster.order):
        notes.append("†: reconstructed from the paper (no official code).")
    seen: set[str] = set()
    for n in roster.order:
        e = roster.entries[n]
        if e.plugin not in seen:  # variants of one plugin share its deviations
            seen.add(e.plugin)
            notes += [f"{e.label} ({e.plugin}): {d}" for d in e.deviations]
    doc = TableDoc("Methods of this run.", header, rows, "l" * 4 + "c" * 4 + "l", notes)
    return doc, df
