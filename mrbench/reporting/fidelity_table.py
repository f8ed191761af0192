"""The FID/KID table of the translated test slices (torch-fidelity, per task), from the results
of ``mrbench report fidelity-split``."""

from __future__ import annotations

import pandas as pd

from mrbench.config.roster import Roster
from mrbench.reporting.labels import dataset_label, direction_label, roster_or_plain
from mrbench.reporting.render import Cell, TableDoc, best_mask, flat_header, fmt_num


def fidelity_table(df: pd.DataFrame, roster: Roster | None = None) -> TableDoc:
    """FID/KID per task; rows in roster order, named by the roster's labels."""
    roster = roster_or_plain(roster, df)
    header = flat_header("Dataset", "Method", "Task", "FID", "KID (×100)", "n", "Features")
    rows = []
    if not df.empty:
        agg = (
            df.groupby(["dataset", "method", "direction", "feature_extractor"], sort=False)
            .agg(fid=("fid", "mean"), kid=("kid_mean", "mean"), n=("n_pred", "mean"))
            .reset_index()
        )
        rank = {m: i for i, m in enumerate(roster.ordered(list(agg["method"])))}
        agg = agg.sort_values("method", key=lambda m: m.map(rank), kind="stable")
        for (d, r), grp in agg.groupby(["dataset", "direction"], sort=False):
            bf = best_mask(list(grp["fid"]), False)
            bk = best_mask(list(grp["kid"]), False)
            for k, x in enumerate(grp.itertuples()):
                rows.append(
                    [
                        Cell(dataset_label(d)),
                        Cell(roster.label(x.method)),
                        Cell(direction_label(r)),
                        Cell(fmt_num(x.fid, 3), bf[k]),
                        Cell(fmt_num(100 * x.kid, 3), bk[k]),
                        Cell(fmt_num(x.n, 0)),
                        Cell(x.feature_extractor),
                    ]
                )
    notes = [
        "FID and KID (torch-fidelity) of the translated test slices against the real target "
        "slices; lower is better; bold: best per task.",
    ]
    if not df.empty and not df["inception"].astype(bool).all():
        notes.append(
            "Rows whose features are not inception-v3-compat are NOT comparable with published "
            "FID/KID values (offline random-feature extractor)."
        )
    return TableDoc(
        "FID and KID of the translated test slices.", header, rows, "lll" + "c" * 4, notes
    )
