"""Provenance of the paper's numbers: the Table 2 rows that repeat Table 1 rows say so, in the
committed CSV and in the paper-comparison table."""

from __future__ import annotations

import pandas as pd

from mrbench.reporting.paper import paper_comparison, paper_results


def test_table2_rows_copied_from_table1_are_noted() -> None:
    paper = paper_results()
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


def _roster(entries: dict[str, dict]):
    from mrbench.config.roster import roster_of

    return roster_of({"methods": entries})


def test_paper_comparison_footnotes_the_copied_rows() -> None:
    empty = pd.DataFrame(columns=["method", "dataset", "direction", "metric", "protocol"])
    ablations = _roster(
        {
            "disdiff_dis_only": {
                "plugin": "disdiff",
                "paper_row": "Disentangled only",
                "params": {"use_diffusion": False, "use_content_discriminator": False},
            },
            "disdiff_diff_only": {
                "plugin": "disdiff",
                "paper_row": "Diffusion only",
                "params": {"use_disentanglement": False, "use_content_discriminator": False},
            },
        }
    )
    doc, df = paper_comparison(empty, ablations)
    notes = " ".join(doc.notes)
    assert "Table 2 Disentangled only: equals the paper's Table 1 DRIT++ row" in notes
    assert "Table 2 Diffusion only: equals the paper's Table 1 UNIT-DDPM row" in notes
    assert set(df["note"]) == {
        "equals the paper's Table 1 DRIT++ row",
        "equals the paper's Table 1 UNIT-DDPM row",
    }
    doc, _ = paper_comparison(
        empty, _roster({"cyclegan": {"plugin": "cyclegan", "paper_row": "CycleGAN"}})
    )
    assert "equals the paper" not in " ".join(doc.notes)
