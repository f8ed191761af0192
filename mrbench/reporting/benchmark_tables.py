"""Table 1 and Table 2 of the DisDiff paper, as views of the summary of the tidy results table.

- Table 1 in the paper's layout: methods as rows; datasets x directions x (PSNR, SSIM %) as
  columns, each ``mean ± std`` across test subjects; the best value of each column in bold.
  Works with whatever methods and datasets are present. The supervised references (trained on
  co-registered pairs: pix2pix, the intensity map) form a block of their own under the
  unsupervised methods, never bold, never ranked with them.
- Table 2, the ablation: the variants present, with a check mark per component each variant's
  plugin reports from its resolved parameters (DisDiff: the disentanglement module, the
  diffusion module and the content discriminator D_c), per dataset and direction.

Which methods form Table 1 and Table 2, their order, their names and citations come from the
run's roster (:mod:`mrbench.config.roster`), never from config names.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.evaluation.metrics import higher_is_better
from mrbench.reporting.labels import (
    DIRECTION_LABELS,
    dataset_label,
    default_pair_only,
    direction_label,
    labels_from,
    ordered,
    roster_or_plain,
    row_label,
)
from mrbench.reporting.notes import infinite_note, methods_note, protocol_note, spread_note
from mrbench.reporting.render import MISSING, Cell, TableDoc, best_mask, flat_header, fmt_pm

#: a summary value: ``get(method, dataset, direction, metric, column)``, NaN where absent
Lookup = Callable[[str, str, str, str, str], float]
#: Table 1's metrics: (short name in the CSV columns, metric of the tidy table)
Metrics = tuple[tuple[str, str], ...]
#: the title row of Table 1's block of supervised methods (plugins with the ``paired`` trait)
SUPERVISED_TITLE = "Supervised reference"


# ---------------------------------------------------------------- Table 1
def table1(
    summary: pd.DataFrame,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
    roster: Roster | None = None,
    labels: dict[str, str] | None = None,
) -> tuple[TableDoc, pd.DataFrame]:
    """Table 1 of the paper: methods x (dataset, direction, PSNR/SSIM).

    Rows: the roster's Table 1 methods present in ``summary``, in roster order (without a
    roster: every method, in order of appearance); the supervised references (plugins with the
    ``paired`` trait, trained on co-registered pairs) follow in a block of their own under a
    title row, never bold: the best of a column is the best unsupervised method's. Only the
    paper's pair (T1w/T2w) is shown; other contrast pairs are the pairs table's.
    """
    summary = default_pair_only(summary)  # other pairs: the pairs table
    roster = roster_or_plain(roster, summary)
    labels = {**labels_from(summary), **roster.labels(), **(labels or {})}
    sel = summary[(summary["protocol"] == protocol) & summary["metric"].isin([psnr, ssim])]
    sel = sel[sel["method"].isin(roster.table1)]
    # every dataset gets the directions present in any (the paper's layout)
    dirs = ordered(list(sel["direction"]), list(DIRECTION_LABELS))
    grid = method_grid(
        summary, roster, labels, protocol, psnr, ssim, lambda _: dirs, direction_label
    )
    df = grid.frame
    df["supervised"] = df["method"].isin(grid.supervised) if len(df) else []
    doc = TableDoc(
        "Table 1. T1w ↔ T2w translation: PSNR (dB) and SSIM (%) on the test sets "
        f"(protocol {protocol}).",
        grid.header,
        grid.rows,
        "l" + "c" * (2 * len(grid.cols)),
        _table1_notes(grid.sel, protocol, psnr, ssim, roster, grid.methods, grid.supervised),
        grid.sections,
    )
    return doc, df


@dataclass(frozen=True)
class MethodGrid:
    """Methods x (dataset, direction, PSNR/SSIM) of Table 1's layout, shared with the pairs
    table: the selected summary rows, the row order, the columns, header, cells and CSV."""

    sel: pd.DataFrame
    methods: list[str]  #: unsupervised methods, then the supervised references
    supervised: list[str]
    cols: list[tuple[str, str]]  #: (dataset, direction) column groups
    header: list[list[tuple[str, int]]]
    rows: list[list[Cell]]
    frame: pd.DataFrame  #: one CSV row per method, dataset and direction

    @property
    def sections(self) -> list[int]:
        """Row index where the supervised block starts (none without one)."""
        return [len(self.methods) - len(self.supervised)] if self.supervised else []


def method_grid(
    summary: pd.DataFrame,
    roster: Roster,
    labels: dict[str, str],
    protocol: str,
    psnr: str,
    ssim: str,
    directions: Callable[[pd.DataFrame], list[str]],
    direction_title: Callable[[str], str],
) -> MethodGrid:
    """The grid of ``summary``'s rows of ``protocol``: the roster's Table 1 methods present
    (supervised references last, under a title row, never bold), each dataset's columns in the
    order ``directions(rows of that dataset)`` gives, titled by ``direction_title``."""
    sel = summary[(summary["protocol"] == protocol) & summary["metric"].isin([psnr, ssim])]
    sel = sel[sel["method"].isin(roster.table1)]
    present = [m for m in roster.table1 if m in set(sel["method"])]
    supervised = roster.supervised(present)
    methods = [m for m in present if m not in supervised] + supervised
    datasets = list(dict.fromkeys(sel["dataset"]))
    cols = [(d, r) for d in datasets for r in directions(sel[sel["dataset"] == d])]
    metrics = (("psnr", psnr), ("ssim", ssim))
    get = _lookup(sel)
    best = _best_per_column(get, methods[: len(methods) - len(supervised)], cols, metrics)
    best = {k: v + [False] * len(supervised) for k, v in best.items()}
    spans = [(d, sum(1 for dd, _ in cols if dd == d)) for d in datasets]
    header = [
        [("Method", 1)] + [(dataset_label(d), 2 * n) for d, n in spans],
        [("", 1)] + [(direction_title(r), 2) for _, r in cols],
        [("", 1)] + [(h, 1) for _ in cols for h in ("PSNR (dB)", "SSIM (%)")],
    ]
    rows = []
    for i, m in enumerate(methods):
        if supervised and m == supervised[0]:
            rows.append([Cell(SUPERVISED_TITLE)] + [Cell("") for _ in range(2 * len(cols))])
        row = [Cell(row_label(roster, m, labels))]
        for d, r in cols:
            for short, metric in metrics:
                text = fmt_pm(get(m, d, r, metric, "mean"), get(m, d, r, metric, "std"))
                row.append(Cell(text, best[(d, r, short)][i]))
        rows.append(row)
    frame = _table1_frame(get, methods, cols, metrics, best, labels, protocol)
    return MethodGrid(sel, methods, supervised, cols, header, rows, frame)


def _lookup(sel: pd.DataFrame) -> Lookup:
    idx = sel.set_index(["method", "dataset", "direction", "metric"])

    def get(m: str, d: str, r: str, metric: str, key: str) -> float:
        try:
            return float(idx.loc[(m, d, r, metric), key])
        except KeyError:
            return math.nan

    return get


def _best_per_column(
    get: Lookup, methods: list[str], cols: list[tuple[str, str]], metrics: Metrics
) -> dict[tuple[str, str, str], list[bool]]:
    """Per (dataset, direction, short metric name): which methods hold the best mean."""
    best: dict[tuple[str, str, str], list[bool]] = {}
    for d, r in cols:
        for short, metric in metrics:
            vals = [get(m, d, r, metric, "mean") for m in methods]
            best[(d, r, short)] = best_mask(vals, higher_is_better(metric))
    return best


def _table1_frame(
    get: Lookup,
    methods: list[str],
    cols: list[tuple[str, str]],
    metrics: Metrics,
    best: dict[tuple[str, str, str], list[bool]],
    labels: dict[str, str],
    protocol: str,
) -> pd.DataFrame:
    """Table 1's CSV: one row per method, dataset and direction."""
    (_, psnr), (_, ssim) = metrics
    records = []
    for i, m in enumerate(methods):
        for d, r in cols:
            rec: dict[str, Any] = {"method": m, "label": labels.get(m, m), "dataset": d}
            rec["direction"] = r
            for short, metric in metrics:
                for key in ("mean", "std", "seed_std", "n_infinite"):
                    rec[f"{short}_{key}"] = get(m, d, r, metric, key)
            for key in ("n_subjects", "n_slices", "n_seeds"):
                rec[key] = get(m, d, r, psnr, key)
            rec.update(protocol=protocol, psnr_metric=psnr, ssim_metric=ssim)
            rec.update(psnr_best=best[(d, r, "psnr")][i], ssim_best=best[(d, r, "ssim")][i])
            records.append(rec)
    return pd.DataFrame(records)


def _table1_notes(
    sel: pd.DataFrame,
    protocol: str,
    psnr: str,
    ssim: str,
    roster: Roster,
    methods: list[str],
    supervised: list[str] | None = None,
) -> list[str]:
    notes = [protocol_note(protocol), spread_note(sel)]
    if supervised:
        notes.append(
            "Bold: best unsupervised method in the column. "
            f"{SUPERVISED_TITLE}: {', '.join(roster.label(m) for m in supervised)}, trained on "
            "the co-registered T1w/T2w pairs the unsupervised methods never see; what the same "
            "data allows with supervision, never bold and not ranked."
        )
    else:
        notes.append("Bold: best in the column.")
    if (n := infinite_note(sel)) is not None:
        notes.append(n)
    if psnr != "psnr" or ssim != "ssim":
        notes.append(f"Metrics: {psnr} and {ssim}.")
    if (n := methods_note(roster, methods)) is not None:
        notes.append(n)
    return notes


# ---------------------------------------------------------------- Table 2
def table2(
    summary: pd.DataFrame,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
    roster: Roster | None = None,
) -> tuple[TableDoc, pd.DataFrame]:
    """Table 2 of the paper (ablation): the roster's ablation methods present, one check mark
    column per component their plugins report from the resolved parameters."""
    roster = roster if roster is not None else Roster.plain([])
    summary = default_pair_only(summary)  # other pairs: the pairs table
    sel = summary[
        (summary["protocol"] == protocol)
        & summary["metric"].isin([psnr, ssim])
        & summary["method"].isin(roster.ablation)
    ]
    idx = sel.set_index(["method", "dataset", "direction", "metric"])
    variants = [v for v in roster.ablation if v in set(sel["method"])]
    parts = roster.component_names(variants)
    rows: list[list[Cell]] = []
    sections: list[int] = []
    records: list[dict[str, Any]] = []
    for d in dict.fromkeys(sel["dataset"]):
        for r in ordered(list(sel.loc[sel["dataset"] == d, "direction"]), list(DIRECTION_LABELS)):
            present = [v for v in variants if (v, d, r, psnr) in idx.index]
            if not present:
                continue
            sections.append(len(rows))
            task_rows, task_records = _ablation_task(
                idx, roster, present, parts, (d, r), (psnr, ssim), protocol
            )
            rows += task_rows
            records += task_records
    whose = roster.label(roster.ablation[-1]) if roster.ablation else "the method"
    doc = TableDoc(
        f"Table 2. Ablation of the {whose} modules.",
        flat_header("Task", *parts, "PSNR (dB)", "SSIM (%)"),
        rows,
        "l" + "c" * (len(parts) + 2),
        _table2_notes(sel, protocol, roster, variants, bool(rows)),
        sections,
    )
    cols = ["dataset", "direction", "method", "label", *parts]
    cols += ["psnr_mean", "psnr_std", "ssim_mean", "ssim_std", "psnr_best", "ssim_best", "protocol"]
    return doc, pd.DataFrame(records, columns=cols)


def _mark(roster: Roster, variant: str, component: str) -> str:
    """A variant's check mark for one component (MISSING where its plugin does not say)."""
    flags = roster.entries[variant].components
    return MISSING if component not in flags else ("✓" if flags[component] else "×")


def _ablation_task(
    idx: pd.DataFrame,
    roster: Roster,
    present: list[str],
    parts: list[str],
    task: tuple[str, str],
    metrics: tuple[str, str],
    protocol: str,
) -> tuple[list[list[Cell]], list[dict[str, Any]]]:
    """Table 2's rows and CSV records of one task (dataset, direction): one per variant."""
    d, r = task
    psnr, ssim = metrics
    vals = {
        (v, metric, key): float(idx.loc[(v, d, r, metric), key])
        if (v, d, r, metric) in idx.index
        else math.nan
        for v in present
        for metric in (psnr, ssim)
        for key in ("mean", "std")
    }
    bp = best_mask([vals[(v, psnr, "mean")] for v in present], True)
    bs = best_mask([vals[(v, ssim, "mean")] for v in present], True)
    name = f"{dataset_label(d)} {direction_label(r)}"
    rows, records = [], []
    for k, v in enumerate(present):
        rows.append(
            [Cell(name if k == 0 else "")]
            + [Cell(_mark(roster, v, c)) for c in parts]
            + [
                Cell(fmt_pm(vals[(v, psnr, "mean")], vals[(v, psnr, "std")]), bp[k]),
                Cell(fmt_pm(vals[(v, ssim, "mean")], vals[(v, ssim, "std")]), bs[k]),
            ]
        )
        records.append(
            {
                "dataset": d,
                "direction": r,
                "method": v,
                "label": roster.label(v),
                **{c: roster.entries[v].components.get(c) for c in parts},
                "psnr_mean": vals[(v, psnr, "mean")],
                "psnr_std": vals[(v, psnr, "std")],
                "ssim_mean": vals[(v, ssim, "mean")],
                "ssim_std": vals[(v, ssim, "std")],
                "psnr_best": bp[k],
                "ssim_best": bs[k],
                "protocol": protocol,
            }
        )
    return rows, records


def _table2_notes(
    sel: pd.DataFrame, protocol: str, roster: Roster, variants: list[str], has_rows: bool
) -> list[str]:
    notes = [protocol_note(protocol)]
    if has_rows:
        notes += [spread_note(sel), "Bold: best within the task."]
        missing = [v for v in roster.ablation if v not in variants]
        if missing:
            notes.append(f"Variants not in this run: {', '.join(missing)}.")
        notes.append(
            "Rows in task order: "
            + ", ".join(f"{roster.label(v)} [{v}]" for v in variants)
            + "; check marks from each variant's resolved parameters."
        )
    else:
        notes.append(
            "No ablation variants in this run (roster: "
            f"{', '.join(roster.ablation) or 'none'}); the table is empty."
        )
    return notes
