"""The pairs table: every method on every contrast pair run, beside Table 1's T1w/T2w.

Table 1 keeps the DisDiff paper's layout and shows the paper's pair only; a config whose datasets
run other pairs (``datasets.<name>.pairs``, e.g. IXI T1w/PDw, BraTS T2w/FLAIR) gets this table:
methods as rows (roster order; the supervised references in a block of their own under the
unsupervised methods, never bold, as in Table 1), one column group per dataset and translation
direction of the results (the paper's pair first, then the others), each with PSNR (dB) and SSIM
(%) as ``mean ± std`` across test subjects; the best unsupervised value of each column in bold.
Directions are named with the contrasts' display names (:data:`mrbench.domain.CONTRASTS`):
``T2w → FLAIR``. Written as ``results/tables/pairs.{csv,md,tex}``.
"""

from __future__ import annotations

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.domain import CONTRASTS
from mrbench.pairs import parse_direction
from mrbench.reporting.benchmark_tables import (
    SUPERVISED_TITLE,
    _best_per_column,
    _lookup,
    _table1_frame,
    _table1_notes,
)
from mrbench.reporting.labels import (
    dataset_label,
    direction_order,
    labels_from,
    roster_or_plain,
    row_label,
)
from mrbench.reporting.render import Cell, TableDoc, fmt_pm


def contrast_direction_label(direction: str) -> str:
    """``t2_to_flair`` -> ``T2w → FLAIR`` (display names of both contrasts)."""
    src, dst = parse_direction(direction)
    return f"{CONTRASTS[src]} → {CONTRASTS[dst]}"


def pairs_table(
    summary: pd.DataFrame,
    protocol: str = "max01",
    psnr: str = "psnr",
    ssim: str = "ssim",
    roster: Roster | None = None,
) -> tuple[TableDoc, pd.DataFrame]:
    """Every method x (dataset, direction) present in ``summary``: PSNR and SSIM mean ± std.

    Rows: the roster's Table 1 methods present (without a roster: every method, in order of
    appearance), supervised references last under a title row. The CSV has one row per method,
    dataset and direction, with the ``pair``, ``source`` and ``target`` contrasts beside
    Table 1's columns.
    """
    from mrbench.evaluation.scoring import pair_key

    roster = roster_or_plain(roster, summary)
    labels = {**labels_from(summary), **roster.labels()}
    sel = summary[(summary["protocol"] == protocol) & summary["metric"].isin([psnr, ssim])]
    sel = sel[sel["method"].isin(roster.table1)]
    present = [m for m in roster.table1 if m in set(sel["method"])]
    supervised = roster.supervised(present)
    methods = [m for m in present if m not in supervised] + supervised
    datasets = list(dict.fromkeys(sel["dataset"]))
    cols = [
        (d, r)
        for d in datasets
        for r in direction_order(list(sel.loc[sel["dataset"] == d, "direction"]))
    ]
    metrics = (("psnr", psnr), ("ssim", ssim))
    get = _lookup(sel)
    best = _best_per_column(get, methods[: len(methods) - len(supervised)], cols, metrics)
    best = {k: v + [False] * len(supervised) for k, v in best.items()}
    df = _table1_frame(get, methods, cols, metrics, best, labels, protocol)
    if len(df):
        parsed = df["direction"].map(parse_direction)
        df.insert(df.columns.get_loc("direction") + 1, "pair", df["direction"].map(pair_key))
        df.insert(df.columns.get_loc("pair") + 1, "source", parsed.str[0])
        df.insert(df.columns.get_loc("source") + 1, "target", parsed.str[1])
        df["supervised"] = df["method"].isin(supervised)
    spans = [(d, sum(1 for dd, _ in cols if dd == d)) for d in datasets]
    header = [
        [("Method", 1)] + [(dataset_label(d), 2 * n) for d, n in spans],
        [("", 1)] + [(contrast_direction_label(r), 2) for _, r in cols],
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
    notes = _table1_notes(sel, protocol, psnr, ssim, roster, methods, supervised)
    if supervised:  # Table 1's note names T1w/T2w pairs; here every pair's co-registered slices
        notes = [
            n.replace("the co-registered T1w/T2w pairs", "the co-registered slices of each pair")
            for n in notes
        ]
    notes.insert(
        1,
        "Every contrast pair the datasets run (config datasets.<name>.pairs); Table 1 shows "
        "the T1w/T2w columns in the paper's layout.",
    )
    doc = TableDoc(
        "Contrast pairs: PSNR (dB) and SSIM (%) of every method on every translation run "
        f"(protocol {protocol}).",
        header,
        rows,
        "l" + "c" * (2 * len(cols)),
        notes,
        [len(methods) - len(supervised)] if supervised else [],
    )
    return doc, df
