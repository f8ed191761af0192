"""End to end: the whole DAG on the tiny test config (phantom at 16 px, a few steps per method).

It runs the real workflow in a copy of the repository's workflow files, so it also checks that
the rules, the config schema and the command line fit together.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from conftest import copy_workflow

ROOT = Path(__file__).resolve().parents[1]


def _snakemake(
    workdir: Path, *args: str, timeout: int = 1500, env: dict | None = None
) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("snakemake")
    # under the usual umask (022), as on a shared server
    return subprocess.run(
        [str(exe), *args],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=0o022,
    )


def _test_config() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "config" / "test.yaml").read_text())


def final_outputs(workdir: Path, configfile: str, env: dict | None = None) -> list[str]:
    """The inputs of the workflow's `all` rule (workflow/rules/common.smk: get_final_output),
    read from a forced dry run: the workflow's own list, not a copy of its layout."""
    res = _snakemake(
        workdir, "-n", "--forceall", "--cores", "1", "--configfile", configfile, env=env
    )
    assert res.returncode == 0, res.stderr[-4000:]
    lines = (res.stdout + res.stderr).splitlines()
    heads = ("rule all:", "localrule all:")
    start = next(i for i, line in enumerate(lines) if line.strip() in heads)
    line = next(x.strip() for x in lines[start + 1 :] if x.strip().startswith("input:"))
    return [t.strip() for t in line.removeprefix("input:").split(",")]


@pytest.fixture(scope="module")
def finished_run(tiny_run) -> Path:
    """The tiny run of tests/conftest.py (config/test.yaml and three out-of-tree methods)."""
    return tiny_run.work


def _run_config(work: Path) -> dict:
    """The config the run used (config/test.yaml of its copy)."""
    import yaml

    return yaml.safe_load((work / "config" / "test.yaml").read_text())


def test_tables_have_every_method(finished_run: Path) -> None:
    cfg = _run_config(finished_run)
    tables = finished_run / "results" / "tables"
    table1 = set(pd.read_csv(tables / "table1.csv")["method"])
    table2 = set(pd.read_csv(tables / "table2_ablation.csv")["method"])
    for method in cfg["methods"]:
        # the ablation variants (a renamed one included) are Table 2 rows, not Table 1 rows
        ablation = method.startswith("disdiff_") or method == "without_content_critic"
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
    import latex_compile as latex

    if not latex.have_pdflatex():
        pytest.skip("pdflatex is not installed")
    tex = sorted((finished_run / "results" / "tables").glob("*.tex"))
    assert len(tex) >= 5
    latex.compile_tables(tex)


def test_rerun_has_nothing_to_do(tiny_run) -> None:
    res = _snakemake(
        tiny_run.work, "-n", "--cores", "2", "--configfile", "config/test.yaml", env=tiny_run.env
    )
    assert res.returncode == 0
    assert "Nothing to be done" in res.stdout + res.stderr


def test_report_html_holds_every_table_and_figure(tiny_run) -> None:
    """`snakemake --report` bundles every final table and figure of the run into one HTML file."""
    work, env = tiny_run
    res = _snakemake(work, "--configfile", "config/test.yaml", "--report", "report.html", env=env)
    assert res.returncode == 0, res.stderr[-4000:]
    html = (work / "report.html").read_text()
    targets = [Path(t).name for t in final_outputs(work, "config/test.yaml", env=env)]
    assert any(t.startswith("table1.") for t in targets)
    assert any(t.endswith(".png") for t in targets)
    missing = [name for name in targets if name not in html]
    assert not missing, f"not in report.html: {missing}"


def test_final_output_follows_the_config(tmp_path: Path) -> None:
    """The final targets come from the config: a dataset's figures, no FID table when off."""
    import yaml

    work = copy_workflow(tmp_path)
    cfg = _test_config()
    cfg["methods"] = {"identity": {"plugin": "identity"}}
    cfg["evaluation"] = {"fid": {"enabled": False}, "reference_method": "identity"}
    (work / "config" / "one.yaml").write_text(yaml.safe_dump(cfg))
    targets = final_outputs(work, "config/one.yaml")
    assert "results/tables/table1.tex" in targets
    assert "results/figures/qualitative_phantom_t2_to_t1.pdf" in targets
    assert not any("fidelity" in t for t in targets)
    assert not any("content_maps" in t for t in targets), "identity offers no content maps"


def test_every_method_runs_the_t2_flair_pair_end_to_end(finished_run: Path) -> None:
    """config/test.yaml runs the phantom's T2w/FLAIR pair beside T1w/T2w: every method's model
    in its pair folder (recording its pair), both directions translated and scored; the T1w/T2w
    models keep the paper's layout, and Table 1 shows T1w/T2w only."""
    cfg = _run_config(finished_run)
    assert cfg["datasets"]["phantom"]["pairs"] == [["t1", "t2"], ["t2", "flair"]]
    results = finished_run / "results"
    from mrbench.checkpoint import read_model
    from mrbench.pairs import pair_from_meta

    for method in cfg["methods"]:
        run = results / "models" / "phantom" / method / "seed0"
        assert pair_from_meta(read_model(run / "model.pt")["meta"]) == ("t1", "t2"), method
        assert read_model(run / "t2-flair" / "model.pt")["meta"]["pair"] == ["t2", "flair"]
        for direction in ("t1_to_t2", "t2_to_t1", "t2_to_flair", "flair_to_t2"):
            metrics = pd.read_csv(
                results / "metrics" / "phantom" / method / "seed0" / f"{direction}.csv"
            )
            assert len(metrics) and set(metrics["direction"]) == {direction}, (method, direction)
            preds = results / "predictions" / "phantom" / method / "seed0" / direction
            assert sorted(preds.glob("*.nii.gz")), (method, direction)
    table1 = (results / "tables" / "table1.csv").read_text() + (
        results / "tables" / "table1.md"
    ).read_text()
    assert "flair" not in table1.lower()


def _dry_run_jobs(workdir: Path, configfile: str) -> list[dict[str, str]]:
    """Rule, output and shell command of every job of a forced dry run (``-n -p``)."""
    res = _snakemake(workdir, "-n", "-p", "--forceall", "--cores", "1", "--configfile", configfile)
    assert res.returncode == 0, res.stderr[-4000:]
    jobs = []
    for block in (res.stdout + res.stderr).split("\n\n"):
        lines = [x.strip() for x in block.splitlines()]
        head = next((x for x in lines if x.startswith(("rule ", "localrule "))), None)
        if head is None:
            continue
        job = {"rule": head.split()[-1].rstrip(":")}
        for x in lines:
            if x.startswith("output: "):
                job["output"] = x.removeprefix("output: ")
            if x.startswith("Shell command: ") or x.startswith("python -m "):
                job["shell"] = x.removeprefix("Shell command: ")
        jobs.append(job)
    return jobs


def test_each_direction_is_translated_by_its_pairs_model(tmp_path: Path) -> None:
    """The DAG of config/test.yaml: T1w/T2w models at seed0/model.pt (rule `train`, --pair t1
    t2), T2w/FLAIR ones at seed0/t2-flair/model.pt (`train_pair`, --pair t2 flair), and every
    translate job reads the model of the pair its direction belongs to."""
    work = copy_workflow(tmp_path)
    jobs = _dry_run_jobs(work, "config/test.yaml")
    trains = {j["output"]: j for j in jobs if j["rule"] in ("train", "train_pair")}
    n_methods = len(_test_config()["methods"])
    assert len(trains) == 2 * n_methods
    for out, job in trains.items():
        pair_model = out.endswith("/seed0/t2-flair/model.pt")
        assert job["rule"] == ("train_pair" if pair_model else "train"), out
        assert pair_model or out.endswith("/seed0/model.pt"), out
        assert ("--pair t2 flair" if pair_model else "--pair t1 t2") in job["shell"], out
    translates = [j for j in jobs if j["rule"] == "translate"]
    assert len(translates) == 4 * n_methods
    for job in translates:
        direction = job["output"].rsplit("/", 1)[1]
        ckpt = job["shell"].split("--checkpoint ")[1].split()[0]
        assert f"--direction {direction} " in job["shell"]
        wanted = "/seed0/t2-flair/model.pt" if "flair" in direction else "/seed0/model.pt"
        assert ckpt.endswith(wanted), (direction, ckpt)


def test_t1_t2_configs_keep_their_layout(tmp_path: Path) -> None:
    """config/demo.yaml (no pairs key): only `train` jobs, models at seed<N>/model.pt, the two
    T1w/T2w directions; no pair folders anywhere in the DAG."""
    work = copy_workflow(tmp_path)
    jobs = _dry_run_jobs(work, "config/demo.yaml")
    rules = {j["rule"] for j in jobs}
    assert "train" in rules and "train_pair" not in rules
    outs = [j.get("output", "") for j in jobs]
    assert not any("flair" in o or "/t1-t2/" in o for o in outs)
    directions = {j["output"].rsplit("/", 1)[1] for j in jobs if j["rule"] == "translate"}
    assert directions == {"t1_to_t2", "t2_to_t1"}


def test_recipes_table_agrees_with_each_spec_json(finished_run: Path) -> None:
    import json

    results = finished_run / "results"
    recipes = pd.read_csv(results / "tables" / "recipes.csv")
    md = (results / "tables" / "recipes.md").read_text()
    assert set(recipes["method"]) == set(_run_config(finished_run)["methods"])
    for row in recipes.itertuples():
        spec = json.loads(
            (results / "models" / row.dataset / row.method / "seed0" / "spec.json").read_text()
        )
        t = spec["training"]
        trained = row.steps > 0
        assert row.steps == (t["steps"] if trained else 0)
        assert md.splitlines()[3].count("|") == 13  # 12 columns, header and rule alike
        if trained:
            assert (row.batch_size, row.images_seen) == (
                t["batch_size"],
                t["steps"] * t["batch_size"],
            )
            assert row.selection == (
                "last step" if t["select"] == "last" else "best paired-validation PSNR"
            )
        line = next(x for x in md.splitlines() if f"| {row.label} |" in x)
        assert f"| {row.steps:,} |" in line and row.selection in line
    assert "Exported checkpoint" in (results / "tables" / "table1.md").read_text()


def test_out_of_tree_methods_in_every_table_and_the_report(tiny_run) -> None:
    """Out-of-tree methods are methods like the built-in ones (tests/test_plugins.py tests the
    loading). The tiny run (tests/conftest.py) holds a folder plugin ``mine``, an entry-point plugin
    ``theirs`` and ``without_content_critic``, a renamed DisDiff variant."""
    work, env = tiny_run
    tables = work / "results" / "tables"
    table1 = pd.read_csv(tables / "table1.csv")
    assert {"mine", "theirs", "identity", "cyclegan", "disdiff"} <= set(table1["method"])
    assert {"Toy folder method", "Toy entry-point method"} <= set(table1["label"])
    md = (tables / "table1.md").read_text()
    assert "Toy folder method" in md and "Folder et al., 2026" in md
    sig = pd.read_csv(tables / "significance.csv")
    assert set(sig["reference"]) == {"mine"} and "theirs" in set(sig["method"])
    assert "Toy folder method" in (tables / "significance.md").read_text()
    eff = pd.read_csv(tables / "efficiency.csv")
    assert {"mine", "theirs"} <= set(eff["method"])
    assert "Toy entry-point method" in (tables / "efficiency.md").read_text()
    # the renamed variant: Table 2 with its checkmarks, not Table 1
    t2 = pd.read_csv(tables / "table2_ablation.csv")
    assert {"without_content_critic", "disdiff"} <= set(t2["method"])
    row = t2[t2["method"] == "without_content_critic"].iloc[0]
    assert row["Disentangled"] and row["Diffusion"] and not row["D_c"]
    assert "without_content_critic" not in set(table1["method"])
    maps = {p.name for p in (work / "results" / "figures" / "content_maps" / "phantom").iterdir()}
    assert {"disdiff.png", "without_content_critic.png"} <= maps
    res = _snakemake(
        work, "--configfile", "config/test.yaml", "--report", "toy_report.html", env=env
    )
    assert res.returncode == 0, res.stderr[-4000:]
    html = (work / "toy_report.html").read_text()
    assert "methods.md" in html and "table1.md" in html
    import base64
    import re

    texts = [html]
    for chunk in re.findall(r"base64,([A-Za-z0-9+/=]+)", html):
        try:
            texts.append(base64.b64decode(chunk).decode("utf-8", errors="ignore"))
        except ValueError:
            continue
    found = "\n".join(texts)
    assert "Toy folder method" in found and "Toy entry-point method" in found
    # and the library never names them
    for part in ("mrbench", "workflow"):
        for path in (ROOT / part).rglob("*"):
            if path.is_file() and path.suffix in {".py", ".smk", ".yaml", ".rst", ".csv"}:
                text = path.read_text(errors="ignore")
                assert "toy_folder" not in text and "toy_ep" not in text, path
