"""Tables from a synthetic tidy results table: layout, best in bold, LaTeX, significance flags."""

from __future__ import annotations

import itertools
import math
import re
import tempfile
from pathlib import Path

import latex_compile as latex
import numpy as np
import pandas as pd
import pytest
from conftest import tidy_row

from mrbench.cli import main
from mrbench.evaluation import stats
from mrbench.reporting.benchmark_tables import table1, table2
from mrbench.reporting.efficiency import efficiency
from mrbench.reporting.paper import paper_comparison, paper_results
from mrbench.reporting.render import Cell, TableDoc, latex_escape
from mrbench.reporting.significance import significance_table

METHODS = {"cyclegan": 20.0, "syndiff": 24.0, "disdiff": 26.0, "disdiff_no_dc": 23.0}


def _roster():
    """The roster of a config with these methods (labels as in the synthetic tidy table)."""
    from mrbench.config.roster import roster_of

    no_dc = {"use_content_discriminator": False}
    no_diff = {"use_diffusion": False, "use_content_discriminator": False}
    methods = {
        "cyclegan": {"plugin": "cyclegan", "label": "CYCLEGAN", "paper_row": "CycleGAN"},
        "unit_ddpm": {"plugin": "unit_ddpm", "paper_row": "UNIT-DDPM"},
        "syndiff": {"plugin": "syndiff", "label": "syndiff", "paper_row": "SynDiff"},
        "disdiff": {"plugin": "disdiff", "label": "disdiff", "paper_row": "DisDiff"},
        "disdiff_dis_only": {"plugin": "disdiff", "params": no_diff},
        "disdiff_no_dc": {"plugin": "disdiff", "label": "disdiff_no_dc", "params": no_dc},
    }
    methods["disdiff_no_dc"]["paper_row"] = "Disentangled + diffusion (no D_c)"
    return roster_of({"methods": methods, "evaluation": {"reference_method": "disdiff"}})


def _tidy(n_subjects=3, datasets=("ixi", "brats2018"), seeds=(0,)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    directions = ("t1_to_t2", "t2_to_t1")
    grid = itertools.product(datasets, METHODS.items(), seeds, directions, range(n_subjects))
    for d, (m, base), seed, r, s in grid:
        for z in range(2):
            psnr = base + s * 0.5 + rng.normal(0, 0.1)
            for metric, v in (("psnr", psnr), ("ssim", 50 + 1.5 * psnr)):
                label = m.upper() if m == "cyclegan" else m
                row = tidy_row(dataset=d, method=m, label=label, seed=seed, direction=r)
                rows.append(row | {"subject": f"s{s}", "slice": z, "metric": metric, "value": v})
    return pd.DataFrame(rows)


def _latex_ok(tex: str, ncols: int) -> None:
    assert tex.count("{") == tex.count("}")
    for cmd in ("\\toprule", "\\midrule", "\\bottomrule"):
        assert cmd in tex
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 1
    assert tex.count("\\begin{table}") == tex.count("\\end{table}") == 1
    body = tex.split("\\midrule")[1].split("\\bottomrule")[0]
    for line in body.strip().splitlines():
        if line.strip() in ("", "\\midrule"):
            continue
        assert line.endswith("\\\\")
        assert len(re.findall(r"(?<!\\)&", line)) == ncols - 1, line


def test_table1_layout_and_bold_best():
    summary = stats.summarise(_tidy())
    doc, df = table1(summary, roster=_roster())
    # methods as rows in the paper's order; ablation variants are left to Table 2
    assert [r[0].text for r in doc.rows] == ["CYCLEGAN", "syndiff", "disdiff"]
    assert doc.ncols == 1 + 2 * 2 * 2
    assert [t for t, _ in doc.header[0]] == ["Method", "IXI", "BraTS 2018"]
    assert [t for t, _ in doc.header[2][1:3]] == ["PSNR (dB)", "SSIM (%)"]
    disdiff = doc.rows[2]
    assert all(c.bold for c in disdiff[1:]) and not any(c.bold for c in doc.rows[0][1:])
    assert re.fullmatch(r"\d+\.\d\d ± \d+\.\d\d", disdiff[1].text)
    md = doc.markdown()
    assert "| Method | IXI T1 → T2 PSNR (dB) |" in md
    assert f"**{disdiff[1].text}**" in md
    tex = doc.latex("tab:t1")
    _latex_ok(tex, doc.ncols)
    assert "\\textbf{" in tex and "$\\pm$" in tex and "\\cmidrule(lr){2-5}" in tex
    row = df[(df["method"] == "disdiff") & (df["dataset"] == "ixi")].iloc[0]
    assert row["psnr_best"] and row["n_subjects"] == 3 and row["n_slices"] == 6
    # per-subject means: the std is across the 3 subject means, not the 6 slices
    assert row["psnr_std"] == pytest.approx(np.std([26.0, 26.5, 27.0]), abs=0.1)


def test_table1_works_with_one_dataset_and_infinite_values():
    tidy = _tidy(datasets=("phantom",))
    tidy.loc[(tidy["method"] == "disdiff") & (tidy["metric"] == "psnr"), "value"] = math.inf
    summary = stats.summarise(tidy)
    doc, _ = table1(summary, roster=_roster())
    assert doc.ncols == 5 and doc.header[0][1] == ("Phantom", 4)
    assert doc.rows[2][1].text == "∞" and doc.rows[2][1].bold
    assert any("infinite" in n for n in doc.notes)
    _latex_ok(doc.latex(), doc.ncols)


def test_table2_only_present_variants():
    doc, df = table2(stats.summarise(_tidy(datasets=("ixi",))), roster=_roster())
    assert list(df["method"]) == ["disdiff_no_dc", "disdiff"] * 2
    assert [c.text for c in doc.rows[0][:4]] == ["IXI T1 → T2", "✓", "✓", "×"]
    assert [c.text for c in doc.rows[1][1:4]] == ["✓", "✓", "✓"]
    assert doc.rows[1][4].bold and not doc.rows[0][4].bold
    assert any("disdiff_dis_only" in n for n in doc.notes)
    tex = doc.latex()
    _latex_ok(tex, 6)
    assert "\\checkmark" in tex
    empty_doc, empty = table2(
        stats.summarise(_tidy().query("method == 'cyclegan'")), roster=_roster()
    )
    assert empty.empty and not empty_doc.rows and "empty" in empty_doc.notes[-1]


def test_paper_comparison_difference():
    roster = _roster()
    doc, df = paper_comparison(stats.summarise(_tidy()), roster)
    assert set(df["method"]) <= {"cyclegan", "unit_ddpm", "syndiff", "disdiff"} | set(
        roster.ablation
    )
    row = df[
        (df["table"] == 1)
        & (df["method"] == "disdiff")
        & (df["dataset"] == "ixi")
        & (df["direction"] == "t1_to_t2")
        & (df["metric"] == "psnr")
    ].iloc[0]
    assert row["reported_mean"] == 25.71 and row["reported_std"] == 4.20
    assert row["difference"] == pytest.approx(row["reproduced_mean"] - 25.71)
    assert df[df["method"] == "unit_ddpm"]["reproduced_mean"].isna().all()
    _latex_ok(doc.latex(), 8)


def test_paper_csv_matches_reference_values():
    paper = paper_results()
    assert len(paper) == 10 * 4 * 2 + 4 * 2 * 2
    ssim = paper.query("table == 1 and method == 'SynDiff' and dataset == 'BraTS'")
    assert list(ssim.query("metric == 'ssim'")["mean"]) == [90.43, 84.96]
    no_dc = paper["method"] == "Disentangled + diffusion (no D_c)"
    abl = paper[no_dc].query("table == 2 and metric == 'psnr'")
    assert list(abl["mean"]) == [23.52, 24.31]


def test_wilcoxon_flags_small_n():
    small = stats.wilcoxon_table(_tidy(n_subjects=3), "disdiff")
    assert len(small) == 2 * 2 * 2 * 3  # datasets x directions x metrics x other methods
    assert small["underpowered"].all() and not small["significant"].any()
    assert small["note"].str.contains("too small").all()
    assert small["min_possible_p"].iloc[0] == pytest.approx(0.25)
    big = stats.wilcoxon_table(_tidy(n_subjects=8), "disdiff")
    assert not big["underpowered"].any()
    vs = big[(big["method"] == "cyclegan") & (big["metric"] == "psnr")]
    assert (vs["p_value"] < 0.05).all() and vs["significant"].all()
    doc = significance_table(small, "max01", ["psnr", "ssim"])
    assert all(r[-1].text == "n too small" for r in doc.rows)
    _latex_ok(doc.latex(), 12)


def test_seed_spread():
    summary = stats.summarise(_tidy(datasets=("ixi",), seeds=(0, 1)))
    row = summary.query("method == 'disdiff' and metric == 'psnr'").iloc[0]
    assert row["n_seeds"] == 2 and 0 <= row["seed_std"] < 0.2


def test_efficiency_threshold():
    val = pd.DataFrame(
        {"step": [10, 20, 30], "seconds_elapsed": [5.0, 10.0, 15.0], "psnr": [18, 22, 25]}
    )
    slow = pd.DataFrame(
        {"step": [10, 20, 30], "seconds_elapsed": [8.0, 16.0, 24.0], "psnr": [15, 19, 21]}
    )
    base = {
        "dataset": "ixi",
        "seed": 0,
        "plugin": "x",
        "parameters": 2_000_000,
        "parameters_per_network": "{}",
        "state_tensors": 0,
        "train_images_per_s": 10.0,
        "peak_mem_mb": 100.0,
        "train_steps": 30,
        "train_seconds": 15.0,
        "inference_s_per_slice": 0.01,
        "sampling_steps": 4,
        "device": "cpu",
    }
    facts = [
        {**base, "method": "disdiff", "_val_log": val, "best_val_psnr": 25.0},
        {**base, "method": "syndiff", "_val_log": slow, "best_val_psnr": 21.0},
    ]
    pair = ("disdiff", "syndiff")
    doc, df = efficiency(facts, pair=pair)
    # common threshold: the highest PSNR both reached (21 dB)
    assert (df["threshold_psnr"] == 21.0).all()
    assert list(df["steps_to_threshold"]) == [20.0, 30.0]
    assert list(df["seconds_to_threshold"]) == [10.0, 24.0]
    assert doc.rows[0][2].text == "2.000"
    assert doc.rows[0][-1].text == "4", "sampling steps column"
    # a weak third method does not lower the DisDiff/SynDiff threshold; it never reaches it
    weak = pd.DataFrame({"step": [10, 20], "seconds_elapsed": [1.0, 2.0], "psnr": [8, 9]})
    facts3 = [*facts, {**base, "method": "cyclegan", "_val_log": weak, "best_val_psnr": 9.0}]
    _, df3 = efficiency(facts3, pair=pair)
    assert (df3["threshold_psnr"] == 21.0).all()
    assert math.isnan(df3.loc[df3["method"] == "cyclegan", "steps_to_threshold"].iloc[0])
    _, df2 = efficiency(facts, threshold_psnr=24.0)
    assert df2["steps_to_threshold"].iloc[0] == 30 and math.isnan(df2["steps_to_threshold"].iloc[1])


def test_report_cli_writes_tables(tmp_path):
    tidy_path = tmp_path / "results_tidy.csv.gz"
    _tidy(datasets=("phantom",)).to_csv(tidy_path, index=False)
    out = tmp_path / "tables"
    assert main(["report", "table1", "--tidy", str(tidy_path), "--out", str(out / "table1")]) == 0
    assert main(["report", "table2", "--tidy", str(tidy_path), "--out", str(out / "t2")]) == 0
    sig = ["report", "significance", "--tidy", str(tidy_path), "--reference", "disdiff"]
    assert main([*sig, "--out", str(out / "s")]) == 0
    assert main(["report", "compare", "--tidy", str(tidy_path), "--out", str(out / "c")]) == 0
    for name in ("table1", "t2", "s", "c"):
        for ext in ("csv", "md", "tex"):
            assert (out / f"{name}.{ext}").stat().st_size > 0
    assert "**" in (out / "table1.md").read_text()


def test_evaluation_settings():
    """(The final outputs of a config: tests/test_workflow.py, from the workflow itself.)"""
    from mrbench.config.evaluation import EVALUATION_DEFAULTS, evaluation_settings

    config = {
        "datasets": {"phantom": {}},
        "methods": {"identity": {"plugin": "identity"}},
        "seeds": [0],
        "directions": ["t1_to_t2", "t2_to_t1"],
        "evaluation": {"fid": {"enabled": False}, "protocols": ["max01", "syndiff"]},
    }
    settings = evaluation_settings(config)
    assert settings["fid"]["kid_subset_size"] == EVALUATION_DEFAULTS["fid"]["kid_subset_size"]
    with pytest.raises(ValueError, match="evaluation.fid.weights"):
        evaluation_settings({"evaluation": {"fid": {"weights": "x"}}})
    with pytest.raises(ValueError, match="evaluation.protocols"):
        evaluation_settings({"evaluation": {"protocols": ["max01", "psnr99"]}})
    with pytest.raises(ValueError, match="table_protocol"):
        evaluation_settings({"evaluation": {"protocols": ["syndiff"]}})


def test_latex_escape_covers_the_symbols_of_the_captions():
    """Unicode the tables use (arrows, comparisons) becomes LaTeX commands, not raw bytes."""
    for text in ("T1 ↔ T2", "p ≤ 0.05", "mean ± std", "≈ 3 µs", "check ✓ × –"):
        assert latex_escape(text).isascii(), text


def _every_table_doc() -> list[TableDoc]:
    summary = stats.summarise(_tidy())
    docs = [table1(summary)[0], table2(summary)[0]]
    docs.append(paper_comparison(summary)[0])
    tests = stats.wilcoxon_table(_tidy(n_subjects=8), "disdiff")
    docs.append(significance_table(tests, "max01", ["psnr", "ssim"]))
    docs.append(
        TableDoc(
            "Symbols ↔ ≤ ≥ ± → ✓ × – ∞ and specials & % $ # _ { } ~ ^ \\",
            [[("", 1), ("A ↔ B", 2)], [("Method", 1), ("x_1", 1), ("50%", 1)]],
            [[Cell("a & b"), Cell("1 ± 2", bold=True), Cell("≤ 0.05")]],
            "lcc",
            notes=["note with ↔ and ≤"],
        )
    )
    return docs


@pytest.mark.skipif(not latex.have_pdflatex(), reason="pdflatex is not installed")
def test_every_rendered_table_compiles_with_pdflatex(tmp_path):
    for i, doc in enumerate(_every_table_doc()):
        latex.compile_table(doc.latex(f"tab:t{i}"), name=f"table {i}")


@pytest.mark.skipif(not latex.have_pdflatex(), reason="pdflatex is not installed")
def test_a_broken_table_is_reported_with_its_name():
    with pytest.raises(latex.LatexError, match=r"broken\.tex: does not compile \(! "):
        tex = Path(tempfile.mkdtemp()) / "broken.tex"
        tex.write_text("\\begin{tabular}{l}\\undefinedcommand\\end{tabular}")
        latex.compile_table(tex)


def test_styler_latex_has_groups_rules_and_bold():
    doc = _every_table_doc()[-1]
    tex = doc.latex("tab:sym")
    assert "\\multicolumn{2}{c}{A $\\leftrightarrow$ B}" in tex
    assert "\\cmidrule(lr){2-3}" in tex
    assert "\\textbf{1 $\\pm$ 2}" in tex
    assert "a \\& b" in tex and "x\\_1" in tex and "50\\%" in tex
    assert tex.index("\\end{tabular}") < tex.index("note with") < tex.index("\\end{table}")
    _latex_ok(tex, 3)


def test_holm_adjustment_next_to_raw_p():
    """Holm: the k-th smallest of m p-values is multiplied by (m - k + 1), made monotone, capped
    at 1; computed per dataset, direction, protocol and metric."""
    tests = pd.DataFrame(
        {
            "dataset": ["ixi"] * 3 + ["brats2018"],
            "direction": ["t1_to_t2"] * 4,
            "protocol": ["max01"] * 4,
            "metric": ["psnr"] * 4,
            "p_value": [0.01, 0.04, 0.03, 0.04],
            "underpowered": [False] * 4,
        }
    )
    out = stats.holm_adjusted(tests)
    assert out["p_holm"].tolist() == pytest.approx([0.03, 0.06, 0.06, 0.04])
    assert out["significant_holm"].tolist() == [True, False, False, True]
    big = stats.wilcoxon_table(_tidy(n_subjects=8), "disdiff")
    assert (big["p_holm"] >= big["p_value"]).all()
    doc = significance_table(big, "max01", ["psnr", "ssim"])
    assert doc.column_titles()[-2] == "p (Holm)"
