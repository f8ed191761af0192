"""The comparison with the numbers the DisDiff paper reports (``mrbench/data/paper_results.csv``,
its Tables 1 and 2), matched through each method's ``paper_row`` and the paper rows' config
dataset names, with footnotes on the provenance of the reported numbers."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.reporting.labels import dataset_label, default_pair_only, direction_label
from mrbench.reporting.notes import protocol_note
from mrbench.reporting.render import MISSING, Cell, TableDoc, flat_header, fmt_pm

#: columns of the comparison's CSV
COLUMNS = (
    *("table", "paper_method", "method", "dataset", "direction", "metric", "unit"),
    *("reproduced_mean", "reproduced_std", "reported_mean", "reported_std"),
    *("difference", "protocol", "note"),
)


def paper_results() -> pd.DataFrame:
    """The numbers the DisDiff paper reports (its Tables 1 and 2), as committed in the package."""
    with resources.files("mrbench").joinpath("data/paper_results.csv").open() as f:
        return pd.read_csv(f, keep_default_na=False, na_values=[""])


def paper_comparison(
    summary: pd.DataFrame,
    roster: Roster | None = None,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
) -> tuple[TableDoc, pd.DataFrame]:
    """Reproduced vs reported values for every paper entry a configured method reproduces: the
    entry's ``paper_row`` names the row (column ``method`` of the paper's numbers)."""
    summary = default_pair_only(summary)  # the paper reports T1w/T2w only
    rows_of = (roster or Roster.plain([])).paper_rows()
    paper = paper_results()
    paper = paper[paper["method"].isin(list(rows_of))]
    metric_map = {"psnr": psnr, "ssim": ssim}
    sel = summary[summary["protocol"] == protocol].set_index(
        ["method", "dataset", "direction", "metric"]
    )
    records = []
    for row in paper.itertuples():
        name = rows_of[row.method]
        key = (name, row.config_dataset, row.direction, metric_map[row.metric])
        records.append(_comparison_record(row, name, sel, key, protocol))
    df = pd.DataFrame(records, columns=list(COLUMNS))
    header = flat_header(
        "Table", "Method", "Dataset", "Task", "Metric", "Reproduced", "Reported", "Difference"
    )
    rows = [_comparison_row(rec) for rec in records]
    present = set(summary["dataset"]) if not summary.empty else set()
    notes = [
        protocol_note(protocol),
        "Reported: the DisDiff paper (MICCAI 2025), Tables 1 and 2; its protocol "
        "(normalisation, mask, averaging) is not stated, so differences mix method and "
        "protocol effects.",
        "Difference = reproduced - reported.",
        "Rows: the configured methods whose entry names a paper_row"
        + (f" ({', '.join(f'{r} = {n}' for r, n in rows_of.items())})." if rows_of else "; none."),
    ]
    notes += provenance_notes(records)
    others = sorted(present - set(paper["config_dataset"]))
    if others:
        notes.append(
            f"Datasets without published numbers in the paper: {', '.join(others)} "
            "(no comparison possible)."
        )
    doc = TableDoc(
        "Reproduced vs reported results of the DisDiff paper.", header, rows, "lllllccc", notes
    )
    return doc, df


def _comparison_record(
    row: Any, name: str, sel: pd.DataFrame, key: tuple[str, str, str, str], protocol: str
) -> dict[str, Any]:
    """One paper entry (a row of :func:`paper_results`) beside the reproduced ``sel.loc[key]``."""
    rep_mean = float(sel.loc[key, "mean"]) if key in sel.index else math.nan
    rep_std = float(sel.loc[key, "std"]) if key in sel.index else math.nan
    return {
        "table": int(row.table),
        "paper_method": row.method,
        "method": name,
        "dataset": row.config_dataset,
        "direction": row.direction,
        "metric": row.metric,
        "unit": row.unit,
        "reproduced_mean": rep_mean,
        "reproduced_std": rep_std,
        "reported_mean": float(row.mean),
        "reported_std": float(row.std),
        "difference": rep_mean - float(row.mean),
        "protocol": protocol,
        "note": note if isinstance(note := getattr(row, "note", ""), str) else "",
    }


def _comparison_row(rec: dict[str, Any]) -> list[Cell]:
    return [
        Cell(str(rec["table"])),
        Cell(rec["paper_method"]),
        Cell(dataset_label(rec["dataset"])),
        Cell(direction_label(rec["direction"])),
        Cell(f"{rec['metric'].upper()} ({rec['unit']})"),
        Cell(fmt_pm(rec["reproduced_mean"], rec["reproduced_std"])),
        Cell(fmt_pm(rec["reported_mean"], rec["reported_std"])),
        Cell(MISSING if math.isnan(rec["difference"]) else f"{rec['difference']:+.2f}"),
    ]


def provenance_notes(records: list[dict[str, Any]]) -> list[str]:
    """Footnotes for reported numbers whose provenance the paper does not state (the ``note``
    column of ``paper_results.csv``), e.g. Table 2 rows copied from Table 1."""
    by_note: dict[str, list[str]] = {}
    for rec in records:
        if rec.get("note"):
            by_note.setdefault(rec["note"], []).append(
                f"Table {rec['table']} {rec['paper_method']}"
            )
    return [
        f"Reported {', '.join(dict.fromkeys(rows))}: {note}, value for value."
        for note, rows in by_note.items()
    ]
