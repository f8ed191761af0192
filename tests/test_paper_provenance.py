"""Provenance of the paper's numbers: the Table 2 rows that repeat Table 1 rows say so, in the
committed CSV and in the paper-comparison table."""

from __future__ import annotations

import pandas as pd

from mrbench import tables


def test_table2_rows_copied_from_table1_are_noted() -> None:
    paper = tables.paper_results()
    t1 = paper[paper["table"] == 1].set_index(["method", "dataset", "direction", "metric"])
    copied = {"Disentangled only": "DRIT++", "Diffusion only": "UNIT-DDPM"}
    rows = paper[(paper["table"] == 2) & paper["method"].isin(list(copied))]
    assert len(rows) >= 8
    for r in rows.itertuples():
        src = t1.loc[(copied[r.method], r.dataset, r.direction, r.metric)]
        assert (src["mean"], src["std"]) == (r.mean, r.std)
        assert r.note == f"equals the paper's Table 1 {copied[r.method]} row"
    others = paper[~paper.index.isin(rows.index)]
    assert others["note"].isna().all() or (others["note"].fillna("") == "").all()


def test_paper_comparison_footnotes_the_copied_rows() -> None:
    empty = pd.DataFrame(columns=["method", "dataset", "direction", "metric", "protocol"])
    doc, df = tables.paper_comparison(empty, ["disdiff_dis_only", "disdiff_diff_only"])
    notes = " ".join(doc.notes)
    assert "Table 2 Disentangled only: equals the paper's Table 1 DRIT++ row" in notes
    assert "Table 2 Diffusion only: equals the paper's Table 1 UNIT-DDPM row" in notes
    assert set(df["note"]) == {
        "equals the paper's Table 1 DRIT++ row",
        "equals the paper's Table 1 UNIT-DDPM row",
    }
    doc, _ = tables.paper_comparison(empty, ["cyclegan"])
    assert "equals the paper" not in " ".join(doc.notes)
