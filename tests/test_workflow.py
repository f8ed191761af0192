"""End to end: the whole DAG on the tiny test config (phantom at 16 px, a few steps per method).

It runs the real workflow in a copy of the repository's workflow files, so it also checks that
the rules, the config schema and the command line fit together.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _snakemake(workdir: Path, *args: str, timeout: int = 1500) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    # under the usual umask (022), as on a shared server
    return subprocess.run(
        [str(exe), *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=0o022,
    )


def _test_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("workflow")
    for item in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    res = _snakemake(work, "--cores", "2", "--configfile", "config/test.yaml")
    assert res.returncode == 0, res.stderr[-4000:]
    return work


def test_tables_have_every_method(finished_run: Path) -> None:
    cfg = _test_config()
    tables = finished_run / "results" / "tables"
    table1 = set(pd.read_csv(tables / "table1.csv")["method"])
    table2 = set(pd.read_csv(tables / "table2_ablation.csv")["method"])
    for method in cfg["methods"]:
        ablation = method.startswith("disdiff_")
        assert method in (table2 if ablation else table1), f"{method} missing"
    assert "disdiff" in table1 and "disdiff" in table2
    md = (finished_run / "results" / "tables" / "table1.md").read_text()
    assert "identity" in md and "intensity_map" in md


def test_predictions_are_nifti_on_the_subject_grid(finished_run: Path) -> None:
    import nibabel as nib

    preds = sorted((finished_run / "results" / "predictions").rglob("*.nii.gz"))
    assert preds, "no predictions written"
    pred = preds[0]
    subject = pred.name.removesuffix(".nii.gz")
    ref = nib.load(finished_run / "results/data/phantom/subjects" / subject / "t1.nii.gz")
    img = nib.load(pred)
    assert img.shape == ref.shape
    assert (img.affine == ref.affine).all()


def test_every_output_is_readable_by_group_and_others(finished_run: Path) -> None:
    """Colleagues on a shared server can read every table, figure, prediction and model."""
    import stat

    files = [p for p in (finished_run / "results").rglob("*") if p.is_file()]
    assert len(files) > 50
    private = [
        str(p.relative_to(finished_run))
        for p in files
        if (p.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH)) != (stat.S_IRGRP | stat.S_IROTH)
    ]
    assert not private, f"not readable by group and others: {private[:10]}"


def test_every_latex_table_compiles(finished_run: Path) -> None:
    """Every .tex table of the run builds with pdflatex inside a minimal document."""
    from mrbench import latex

    if not latex.have_pdflatex():
        pytest.skip("pdflatex is not installed")
    tex = sorted((finished_run / "results" / "tables").glob("*.tex"))
    assert len(tex) >= 5
    latex.compile_tables(tex)


def test_rerun_has_nothing_to_do(finished_run: Path) -> None:
    res = _snakemake(finished_run, "-n", "--cores", "2", "--configfile", "config/test.yaml")
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_report_html_holds_every_table_and_figure(finished_run: Path) -> None:
    """`snakemake --report` bundles every final table and figure of the run into one HTML file."""
    from mrbench.evaluate import report_targets

    cfg = _test_config()
    res = _snakemake(finished_run, "--configfile", "config/test.yaml", "--report", "report.html")
    assert res.returncode == 0, res.stderr[-4000:]
    html = (finished_run / "report.html").read_text()
    targets = [Path(t).name for t in report_targets(cfg)]
    assert any(t.startswith("table1.") for t in targets)
    assert any(t.endswith(".png") for t in targets)
    missing = [name for name in targets if name not in html]
    assert not missing, f"not in report.html: {missing}"
