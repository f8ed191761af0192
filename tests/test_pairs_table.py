"""Evaluation and reporting of contrast pairs other than T1w/T2w: metrics on a T2w/FLAIR store,
the pairs table, Table 1 and its siblings unchanged by an extra pair, the figures' contrasts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from test_tables import _latex_ok, _roster, _tidy

from mrbench.cli import main
from mrbench.evaluation import stats
from mrbench.io import InputError

SIZE, NZ = 16, 8


# ------------------------------------------------------------------ a T2w/FLAIR test store
def _write_store(folder: Path, contrasts: dict[str, np.ndarray], mask: np.ndarray) -> Path:
    """A slice store of ``contrasts`` (each (subjects, SIZE, SIZE, NZ)) written as the store's
    files: one row per subject x slice, crop window at (0, 0) so that a prediction volume's
    slice is the stored slice."""
    folder.mkdir(parents=True)
    n_sub = mask.shape[0]
    rows = [(s, z) for s in range(n_sub) for z in range(NZ)]
    for name, vol in {**contrasts, "mask": mask}.items():
        arr = np.stack([vol[s, ..., z] for s, z in rows]).astype(
            np.uint8 if name == "mask" else np.float32
        )
        np.save(folder / f"{name}.npy", arr)
    pd.DataFrame(
        {
            "row": range(len(rows)),
            "subject": [f"s{s}" for s, _ in rows],
            "slice": [z for _, z in rows],
        }
    ).to_csv(folder / "index.tsv", sep="\t", index=False)
    subjects = [
        {
            "subject": f"s{s}",
            "x0": 0,
            "y0": 0,
            "shape": [SIZE, SIZE, NZ],
            "affine": np.eye(4).tolist(),
        }
        for s in range(n_sub)
    ]
    meta = {"size": SIZE, "subjects": subjects, "contrasts": list(contrasts)}
    (folder / "meta.json").write_text(json.dumps(meta))
    return folder


def _t2_flair(tmp: Path) -> tuple[Path, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    mask = np.zeros((2, SIZE, SIZE, NZ), np.uint8)
    mask[:, 3:13, 3:13, :] = 1
    t2 = (0.2 + 0.8 * rng.random(mask.shape)) * mask
    flair = (0.1 + 0.6 * rng.random(mask.shape)) * mask
    return _write_store(tmp / "store", {"t2": t2, "flair": flair}, mask), t2, flair


def _predictions(folder: Path, volumes: np.ndarray) -> Path:
    folder.mkdir(parents=True)
    for s in range(volumes.shape[0]):
        img = nib.Nifti1Image(volumes[s].astype(np.float32), np.eye(4))
        nib.save(img, folder / f"s{s}.nii.gz")
    return folder


def test_metrics_of_a_t2_flair_store_take_the_target_from_the_direction(tmp_path):
    """Identity prediction of FLAIR: PSNR inf, SSIM 100; a constant offset c: PSNR
    -20 log10(c / max) per slice (max01), by hand; T2 -> FLAIR and FLAIR -> T2 read their own
    target; the rows name the pair."""
    from mrbench.evaluation.scoring import evaluate_predictions

    store, t2, flair = _t2_flair(tmp_path)
    kw = {"dataset": "phantom", "method": "m", "seed": 0}
    same = _predictions(tmp_path / "same", flair)
    df = evaluate_predictions(same, store, "t2_to_flair", ["max01"], **kw)
    assert set(df["pair"]) == {"t2/flair"} and set(df["source"]) == {"t2"}
    assert set(df["target"]) == {"flair"} and set(df["direction"]) == {"t2_to_flair"}
    psnr = df[df["metric"] == "psnr"]["value"]
    assert len(psnr) == 2 * NZ and np.isinf(psnr).all()
    assert np.allclose(df[df["metric"] == "ssim"]["value"], 100.0)

    c = 0.05
    shifted = _predictions(tmp_path / "shifted", flair + c)  # background too
    df = evaluate_predictions(shifted, store, "t2_to_flair", ["max01"], **kw)
    got = df[df["metric"] == "psnr"].sort_values(["subject", "slice"])["value"].to_numpy()
    peaks = [flair[s, ..., z].astype(np.float32).max() for s in range(2) for z in range(NZ)]
    expected = [-20 * math.log10(c / p) for p in peaks]
    assert got == pytest.approx(expected, abs=1e-3)

    # the other direction scores against T2w, the source of the first
    df = evaluate_predictions(same, store, "flair_to_t2", ["max01"], **kw)
    assert set(df["pair"]) == {"t2/flair"} and set(df["target"]) == {"t2"}
    assert np.isfinite(df[df["metric"] == "psnr"]["value"]).all()
    # a direction whose contrasts the store lacks: one clear line
    with pytest.raises(InputError, match=r"holds t2, flair, not t1"):
        evaluate_predictions(same, store, "t1_to_t2", ["max01"], **kw)
    with pytest.raises(InputError, match=r"direction 'flair_to_flair'"):
        evaluate_predictions(same, store, "flair_to_flair", ["max01"], **kw)


def test_brasyn_on_a_flair_target_ignores_the_scale(tmp_path):
    """brasyn clips and scales each volume on its own: twice the FLAIR scores as a perfect
    prediction (PSNR inf, SSIM 100) where max01 does not; via the CLI on any pair."""
    store, _, flair = _t2_flair(tmp_path)
    pred = _predictions(tmp_path / "double", 2 * flair)
    out = tmp_path / "m.csv"
    args = ["metrics", "--pred-dir", str(pred), "--store", str(store), "--direction"]
    args += ["t2_to_flair", "--protocols", "brasyn", "max01", "--out", str(out)]
    assert main(args) == 0
    df = pd.read_csv(out)
    brasyn = df[df["protocol"] == "brasyn"].set_index("metric")["value"]
    assert np.isinf(brasyn["psnr"]).all() and np.allclose(brasyn["ssim"], 100.0)
    assert set(df.loc[df["protocol"] == "brasyn", "slice"]) == {-1}  # one value per subject
    max01 = df[(df["protocol"] == "max01") & (df["metric"] == "psnr")]["value"]
    assert np.isfinite(max01).all() and (max01 < 20).all()
    assert set(df["pair"]) == {"t2/flair"}
    with pytest.raises(SystemExit):  # not a contrast direction
        main([*args[:-6], "t2_to_x", "--out", str(out)])


def test_old_metrics_files_get_the_pair_columns(tmp_path):
    """Files written before pairs existed: read_tidy derives pair, source and target."""
    from mrbench.evaluation.scoring import read_tidy

    path = tmp_path / "old.csv"
    pd.DataFrame(
        [{"dataset": "d", "method": "m", "direction": r, "metric": "psnr", "value": 1.0, "seed": 0}
         for r in ("t1_to_t2", "flair_to_t2", "pd_to_t1")]
    ).to_csv(path, index=False)  # fmt: skip
    df = read_tidy(path)
    assert list(df["pair"]) == ["t1/t2", "t2/flair", "t1/pd"]
    assert list(df["source"]) == ["t1", "flair", "pd"]
    assert list(df["target"]) == ["t2", "t2", "t1"]
    assert list(df.columns[:6]) == ["dataset", "method", "direction", "pair", "source", "target"]
    pd.DataFrame([{"dataset": "d", "method": "m", "direction": "up", "metric": "psnr",
                   "value": 1.0}]).to_csv(path, index=False)  # fmt: skip
    with pytest.raises(InputError, match=r"direction 'up'"):
        read_tidy(path)


# ------------------------------------------------------------------ tables
def _with_flair(tidy: pd.DataFrame, dataset: str = "ixi") -> pd.DataFrame:
    """``tidy`` plus a T2w/FLAIR run of every method on ``dataset``: PSNR 5 dB below its
    T1 -> T2 values (FLAIR -> T2 10 dB below)."""
    base = tidy[(tidy["dataset"] == dataset) & (tidy["direction"] == "t1_to_t2")]
    extra = []
    for direction, drop in (("t2_to_flair", 5.0), ("flair_to_t2", 10.0)):
        part = base.assign(direction=direction)
        part.loc[part["metric"] == "psnr", "value"] -= drop
        extra.append(part)
    return pd.concat([tidy, *extra], ignore_index=True)


def test_table1_and_its_siblings_ignore_other_pairs():
    """Table 1, Table 2, the paper comparison, the significance and protocol tables: the same
    documents and numbers with an extra T2w/FLAIR pair in the results."""
    from mrbench.reporting.benchmark_tables import table1, table2
    from mrbench.reporting.paper import paper_comparison
    from mrbench.reporting.protocol_ranks import protocols_table
    from mrbench.reporting.significance import significance_table

    roster = _roster()
    plain, extra = _tidy(n_subjects=8), _with_flair(_tidy(n_subjects=8))
    s_plain, s_extra = stats.summarise(plain), stats.summarise(extra)
    assert {"t2_to_flair", "flair_to_t2"} <= set(s_extra["direction"])
    for build in (table1, table2):
        (doc_a, df_a), (doc_b, df_b) = build(s_plain, roster=roster), build(s_extra, roster=roster)
        assert doc_a.markdown() == doc_b.markdown() and doc_a.latex() == doc_b.latex()
        pd.testing.assert_frame_equal(df_a.reset_index(drop=True), df_b.reset_index(drop=True))
    (doc_a, df_a), (doc_b, df_b) = (
        paper_comparison(s_plain, roster),
        paper_comparison(s_extra, roster),
    )
    assert doc_a.markdown() == doc_b.markdown()
    pd.testing.assert_frame_equal(df_a, df_b)
    (doc_a, df_a), (doc_b, df_b) = protocols_table(s_plain), protocols_table(s_extra)
    assert doc_a.markdown() == doc_b.markdown()
    pd.testing.assert_frame_equal(df_a, df_b)
    tests_a = stats.wilcoxon_table(plain, "disdiff")
    tests_b = stats.wilcoxon_table(extra, "disdiff")
    assert "t2_to_flair" in set(tests_b["direction"])  # the tests exist; the table leaves them
    doc_a = significance_table(tests_a, "max01", ["psnr", "ssim"], roster=roster)
    doc_b = significance_table(tests_b, "max01", ["psnr", "ssim"], roster=roster)
    assert doc_a.markdown() == doc_b.markdown()


def test_pairs_table_shows_every_method_on_every_pair_run():
    from mrbench.reporting.pairs_table import pairs_table

    tidy = _with_flair(_tidy(n_subjects=3, datasets=("ixi", "phantom")), "phantom")
    doc, df = pairs_table(stats.summarise(tidy), roster=_roster())
    assert [r[0].text for r in doc.rows] == ["CYCLEGAN", "syndiff", "disdiff"]
    assert [t for t, _ in doc.header[0]] == ["Method", "IXI", "Phantom"]
    assert [s for _, s in doc.header[0]] == [1, 4, 8]
    directions = [t for t, _ in doc.header[1][1:]]
    assert directions == ["T1w → T2w", "T2w → T1w"] * 2 + ["T2w → FLAIR", "FLAIR → T2w"]
    assert doc.ncols == 1 + 2 * 6
    # known values: disdiff's PSNR on phantom T2w -> FLAIR is its T1 -> T2 mean minus 5 dB
    rec = df.set_index(["method", "dataset", "direction"])
    t1t2 = rec.loc[("disdiff", "phantom", "t1_to_t2"), "psnr_mean"]
    assert rec.loc[("disdiff", "phantom", "t2_to_flair"), "psnr_mean"] == pytest.approx(t1t2 - 5)
    assert rec.loc[("disdiff", "phantom", "flair_to_t2"), "psnr_mean"] == pytest.approx(t1t2 - 10)
    flair = rec.loc[("disdiff", "phantom", "t2_to_flair")]
    assert (flair["pair"], flair["source"], flair["target"]) == ("t2/flair", "t2", "flair")
    assert rec.loc[("syndiff", "ixi", "t2_to_t1"), "pair"] == "t1/t2"
    assert len(df) == 3 * 6 and not df["supervised"].any()
    # bold: the best (disdiff) in every column; the cell text is its mean ± std
    assert all(c.bold for c in doc.rows[2][1:]) and not any(c.bold for c in doc.rows[0][1:])
    cell = doc.rows[2][1 + 2 * 4]  # phantom T2w -> FLAIR PSNR
    assert cell.text.startswith(f"{flair['psnr_mean']:.2f} ± ")
    md = doc.markdown()
    assert "| Method | IXI T1w → T2w PSNR (dB) |" in md and "Phantom T2w → FLAIR SSIM (%)" in md
    _latex_ok(doc.latex("tab:pairs"), doc.ncols)


def test_pairs_table_marks_supervised_references_as_table1(tmp_path):
    """pix2pix (trained on pairs) in a block of its own, never bold, as in Table 1; the CLI
    writes csv, md and tex, and the LaTeX compiles where pdflatex is installed."""
    import latex_compile as latex

    from mrbench.config.roster import roster_of
    from mrbench.reporting.benchmark_tables import SUPERVISED_TITLE

    roster = roster_of(
        {
            "methods": {"cyclegan": {"plugin": "cyclegan"}, "pix2pix": {"plugin": "pix2pix"}},
            "evaluation": {"reference_method": "cyclegan"},
        }
    )
    tidy = _tidy(n_subjects=3, datasets=("phantom",))
    tidy = tidy[tidy["method"] == "cyclegan"]
    better = tidy.assign(method="pix2pix", label="pix2pix")
    better.loc[better["metric"] == "psnr", "value"] += 3
    tidy = _with_flair(pd.concat([tidy, better], ignore_index=True), "phantom")
    tidy_path = tmp_path / "tidy.csv.gz"
    tidy.to_csv(tidy_path, index=False)
    roster_path = tmp_path / "methods.json"
    roster.write(roster_path)
    out = tmp_path / "tables" / "pairs"
    assert main(["report", "pairs", "--tidy", str(tidy_path), "--roster", str(roster_path),
                 "--out", str(out)]) == 0  # fmt: skip
    df = pd.read_csv(out.with_suffix(".csv"))
    assert set(df.loc[df["supervised"], "method"]) == {"pix2pix"}
    assert set(df["direction"]) == {"t1_to_t2", "t2_to_t1", "t2_to_flair", "flair_to_t2"}
    md = out.with_suffix(".md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ")][1:]
    assert [r.split(" | ")[0].removeprefix("| ") for r in rows][1:] == [SUPERVISED_TITLE, "pix2pix"]
    assert "**" not in rows[2]  # higher PSNR, but a supervised reference is never bold
    assert "co-registered slices of each pair" in md
    tex = out.with_suffix(".tex").read_text()
    assert "FLAIR" in tex and "\\toprule" in tex
    if latex.have_pdflatex():
        latex.compile_table(tex, name="pairs")


def test_direction_labels_name_the_contrasts():
    from mrbench.reporting.labels import default_pair_only, direction_label, direction_order

    assert direction_label("t1_to_t2") == "T1 → T2"  # the paper's tables keep their names
    assert direction_label("t2_to_flair") == "T2w → FLAIR"
    assert direction_label("pd_to_t1") == "PDw → T1w"
    assert direction_order(["flair_to_t2", "t2_to_t1", "t1_to_pd", "t2_to_flair", "t1_to_t2"]) == [
        "t1_to_t2", "t2_to_t1", "t1_to_pd", "t2_to_flair", "flair_to_t2"
    ]  # fmt: skip
    frame = pd.DataFrame({"direction": ["t1_to_t2", "t2_to_flair", "t2_to_t1"]})
    assert list(default_pair_only(frame)["direction"]) == ["t1_to_t2", "t2_to_t1"]


# ------------------------------------------------------------------ figures
def test_qualitative_grid_of_a_flair_target(tmp_path):
    """The grid reads source and target from the direction and titles them by display name."""
    import matplotlib.pyplot as plt

    from mrbench.reporting import figures

    store, _, flair = _t2_flair(tmp_path)
    pred = _predictions(tmp_path / "p", flair)
    titles = []
    real = figures.save_figure

    def capture(fig, prefix):
        titles.extend(ax.get_title() for ax in fig.axes)
        return real(fig, prefix)

    figures.save_figure = capture
    try:
        paths = figures.qualitative_grid(store, "t2_to_flair", [("M", pred)], tmp_path / "q")
    finally:
        figures.save_figure = real
    assert "Source (T2w)" in titles and "Target (FLAIR)" in titles
    assert any(t.startswith("|error|, MAE 0.000") for t in titles)  # identity prediction
    assert all(p.stat().st_size > 0 for p in paths)
    plt.close("all")
    with pytest.raises(InputError, match="not pd"):
        figures.qualitative_grid(store, "t2_to_pd", [("M", pred)], tmp_path / "q2")


def test_content_maps_follow_the_model_pair(tmp_path, monkeypatch):
    """A model trained on T2w/FLAIR is shown on those contrasts: domain a = T2w (top row),
    b = FLAIR; the maps come from content_map(x, "a"/"b")."""
    import torch

    import mrbench.checkpoint
    from mrbench.evaluation import content_maps

    store, t2, flair = _t2_flair(tmp_path)
    calls = []

    class Fake(torch.nn.Module):
        plugin_name = "fake"
        params: dict = {}
        model_info = {"method": "fake", "meta": {"pair": ["t2", "flair"]}}

        @classmethod
        def capabilities_for(cls, params):
            return frozenset({"content_maps"})

        @classmethod
        def label(cls):
            return "Fake"

        def content_map(self, x, domain):
            calls.append((str(domain), float(x.mean())))
            return torch.cat([x, -x], 1)

    monkeypatch.setattr(mrbench.checkpoint, "load_model", lambda path, device="cpu": Fake())
    stats_ = content_maps.plot_content_maps("m.pt", store, tmp_path / "cm.png")
    assert stats_["pair"] == ("t2", "flair") and (tmp_path / "cm.png").stat().st_size > 0
    row = stats_["row"]
    assert [d for d, _ in calls] == ["a", "b"]
    s, z = divmod(row, NZ)
    assert calls[0][1] == pytest.approx(float(2 * t2[s, ..., z].mean() - 1), abs=1e-5)
    assert calls[1][1] == pytest.approx(float(2 * flair[s, ..., z].mean() - 1), abs=1e-5)
    Fake.model_info = {"method": "fake", "meta": {"pair": ["t1", "t2"]}}  # not in this store
    with pytest.raises(InputError, match="not t1"):
        content_maps.plot_content_maps("m.pt", store, tmp_path / "cm2.png")


def test_fidelity_of_a_split_compares_with_the_directions_target(tmp_path, monkeypatch):
    """FID/KID of T2w -> FLAIR take the store's FLAIR slices as the real set."""
    from mrbench.evaluation import fidelity

    store, t2, flair = _t2_flair(tmp_path)
    pred = _predictions(tmp_path / "p", t2)
    seen = {}

    def fake(preds, targets, **kw):
        seen.update(preds=preds, targets=targets)
        return {"fid": 1.0, "kid_mean": 0.0, "kid_std": 0.0, "note": ""}

    monkeypatch.setattr(fidelity, "compute_fidelity", fake)
    fidelity.fidelity_of_split(pred, store, "t2_to_flair", {}, device="cpu")
    rows = [(s, z) for s in range(2) for z in range(NZ)]
    assert np.allclose(seen["targets"], np.stack([flair[s, ..., z] for s, z in rows]), atol=1e-6)
    assert np.allclose(seen["preds"], np.stack([t2[s, ..., z] for s, z in rows]), atol=1e-6)
    with pytest.raises(InputError, match="not pd"):
        fidelity.fidelity_of_split(pred, store, "pd_to_flair", {}, device="cpu")


def test_efficiency_thresholds_and_rows_per_pair():
    """A T2w/FLAIR run gets its own threshold and rows; the T1w/T2w rows stay as without it."""
    from mrbench.reporting.efficiency import efficiency

    def log(psnr):
        return pd.DataFrame(
            {"step": [10, 20, 30], "seconds_elapsed": [5.0, 10.0, 15.0], "psnr": psnr}
        )

    base = {"dataset": "phantom", "seed": 0, "plugin": "x", "parameters": 10**6}
    base |= {"parameters_per_network": "{}", "state_tensors": 0, "train_images_per_s": 1.0}
    base |= {"peak_mem_mb": 1.0, "train_steps": 30, "train_seconds": 15.0, "device": "cpu"}
    base |= {"inference_s_per_slice": 0.01, "sampling_steps": 4}
    t1t2 = [
        {**base, "method": "a", "_val_log": log([18, 22, 25]), "best_val_psnr": 25.0},
        {**base, "method": "b", "_val_log": log([15, 19, 21]), "best_val_psnr": 21.0},
    ]
    flair = [
        {**f, "pair": "t2/flair", "_val_log": log([10, 12, 14]), "best_val_psnr": 14.0}
        for f in t1t2
    ]
    doc_a, df_a = efficiency(t1t2)
    doc_b, df_b = efficiency([*t1t2, *flair])
    assert df_b.loc[df_b["pair"] == "t1/t2", "threshold_psnr"].tolist() == [21.0, 21.0]
    assert df_b.loc[df_b["pair"] == "t2/flair", "threshold_psnr"].tolist() == [14.0, 14.0]
    assert [r[0].text for r in doc_b.rows] == ["Phantom"] * 2 + ["Phantom T2w/FLAIR"] * 2
    assert [[c.text for c in r] for r in doc_b.rows[:2]] == [
        [c.text for c in r] for r in doc_a.rows
    ]
    assert "Phantom T2w/FLAIR 14.00 dB" in doc_b.notes[0]
