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
from mrbench.reporting.benchmark_tables import _table1_notes, method_grid
from mrbench.reporting.labels import direction_order, labels_from, roster_or_plain
from mrbench.reporting.render import TableDoc


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
    grid = method_grid(
        summary,
        roster,
        labels,
        protocol,
        psnr,
        ssim,
        lambda rows: direction_order(list(rows["direction"])),
        contrast_direction_label,
    )
    df = grid.frame
    if len(df):
        parsed = df["direction"].map(parse_direction)
        df.insert(df.columns.get_loc("direction") + 1, "pair", df["direction"].map(pair_key))
        df.insert(df.columns.get_loc("pair") + 1, "source", parsed.str[0])
        df.insert(df.columns.get_loc("source") + 1, "target", parsed.str[1])
        df["supervised"] = df["method"].isin(grid.supervised)
    sel, methods, supervised = grid.sel, grid.methods, grid.supervised
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
        grid.header,
        grid.rows,
        "l" + "c" * (2 * len(grid.cols)),
        notes,
        grid.sections,
    )
    return doc, df
