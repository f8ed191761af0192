"""Datasets as plugins: each kind lists its subjects and acquires their volumes; defaults live in
the config schema only; a new kind is one module plus a config entry."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import copy_workflow, load_config, mrbench_cli, snakemake

from mrbench.config.resolve import ConfigError, check_config, subjects_of
from mrbench.config.schema import dataset_default, dataset_settings, section_defaults
from mrbench.datasets.kind import dataset_kinds, get_dataset_kind

ROOT = Path(__file__).resolve().parents[1]

TOY_PLUGIN = '''
"""A toy dataset kind: subjects copied from a folder of volumes named in the config."""

from pathlib import Path

from mrbench.datasets.kind import DatasetKind, register_dataset
from mrbench.io import load_volume, save_volume


@register_dataset("toyscan")
class ToyScan(DatasetKind):
    display_name = "Toy scans"

    def acquire(self, subject, settings, out_dir):
        src = Path(settings["options"]["source"]) / subject
        for mod in ("t1", "t2", "mask"):
            img = load_volume(src / f"{mod}.nii.gz")
            save_volume(img.get_fdata(), img.affine, Path(out_dir) / f"{mod}.nii.gz")
'''

SUBJECTS = {"scanA": "train", "scanB": "val", "scanC": "test"}


def _write_toy(tmp: Path) -> tuple[Path, Path, Path]:
    """The plugin module, three subjects' volumes (a bright ellipsoid in T1, dark in T2) and the
    split file, all in a folder outside the repository."""
    from mrbench.io import save_volume

    plugins = tmp / "my_plugins"
    plugins.mkdir()
    (plugins / "toyscan.py").write_text(TOY_PLUGIN)
    source = tmp / "scans"
    z, y, x = np.mgrid[:14, :20, :20]
    for i, subject in enumerate(SUBJECTS):
        rng = np.random.default_rng(i)
        r = ((x - 10) / 8) ** 2 + ((y - 10) / (7 + i)) ** 2 + ((z - 7) / 6) ** 2
        mask = r <= 1
        inner = r <= 0.3
        rim = r > 0.75  # three compartments, as CSF, GM and WM (the labels are segmented)
        t1 = np.where(inner, 0.9, np.where(rim, 0.2, 0.5)) * mask
        t2 = np.where(inner, 0.3, np.where(rim, 0.97, 0.8)) * mask  # in [0, 1] with the noise
        t1 = t1 + 0.02 * rng.random(mask.shape) * mask
        t2 = t2 + 0.02 * rng.random(mask.shape) * mask
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        # volumes as (x, y, z)
        for name, vol in (("t1", t1), ("t2", t2), ("mask", mask.astype(np.uint8))):
            save_volume(vol.transpose(2, 1, 0), affine, source / subject / f"{name}.nii.gz")
    split = tmp / "toy_split.tsv"
    pd.DataFrame({"subject": list(SUBJECTS), "split": list(SUBJECTS.values())}).to_csv(
        split, sep="\t", index=False
    )
    return plugins, source, split


def _toy_config(plugins: Path, source: Path, split: Path) -> dict:
    cfg = load_config()
    cfg["datasets"] = {
        "scans": {
            "kind": "toyscan",
            "image_size": 16,
            "slices_per_subject": 4,
            "split_file": str(split),
            "options": {"source": str(source)},
        }
    }
    cfg["plugin_paths"] = [str(plugins)]
    cfg["methods"] = {m: cfg["methods"][m] for m in ("identity", "intensity_map")}
    for role in ("table1_methods", "ablation_methods", "method_order", "efficiency_pair"):
        cfg["evaluation"].pop(role, None)  # roles name methods this config does not have
    cfg["evaluation"]["reference_method"] = "intensity_map"
    cfg["evaluation"]["fid"] = {"enabled": False}  # the tiny run of tests/conftest.py has it
    return cfg


def test_builtin_kinds_are_registered() -> None:
    kinds = dataset_kinds()
    assert {"phantom", "ixi", "brats2018", "msd_brats"} <= set(kinds)
    assert kinds["phantom"].acquisition == "subject"
    assert kinds["ixi"].split_checkpoint == "ixi_split"
    assert kinds["brats2018"].acquisition == kinds["msd_brats"].acquisition == "import"


def test_imported_kinds_list_no_subjects_before_import() -> None:
    assert subjects_of("brats2018", {"image_size": 64}) is None
    assert subjects_of("msd_brats", {"image_size": 64}) is None


def test_ixi_without_split_file_waits_for_the_checkpoint(tmp_path: Path) -> None:
    assert subjects_of("ixi", {"image_size": 64, "split_file": str(tmp_path / "no.tsv")}) is None


def test_unknown_kind_is_named() -> None:
    cfg = load_config()
    cfg["datasets"]["mine"] = {"kind": "nosuchkind", "image_size": 16}
    with pytest.raises(ConfigError, match=r"datasets\.mine: unknown dataset kind 'nosuchkind'"):
        check_config(cfg)


def test_bad_plugin_folder_is_named(tmp_path: Path) -> None:
    cfg = load_config()
    cfg["plugin_paths"] = [str(tmp_path / "missing")]
    with pytest.raises(ConfigError, match=r"plugin_paths: folder .*missing not found"):
        check_config(cfg)


def test_defaults_come_from_the_schema_only() -> None:
    """The command line offers the schema's defaults, and the rules read filled-in settings."""
    import argparse

    from mrbench.cli import phantom as phantom_cli
    from mrbench.cli import slices as slices_cli

    schema = yaml.safe_load((ROOT / "workflow/schemas/config.schema.yaml").read_text())
    common = schema["$defs"]["dataset_common"]["properties"]
    assert dataset_default("ixi", "slices_per_subject") == common["slices_per_subject"]["default"]
    assert dataset_default("phantom", "n_subjects") == 12
    assert dataset_default("ixi", "n_subjects") == 80
    p = argparse.ArgumentParser()
    phantom_cli.add_arguments(p)
    args = p.parse_args(["--out", "x"])
    assert args.n_subjects == dataset_default("phantom", "n_subjects")
    assert args.noise == dataset_default("phantom", "noise")
    p = argparse.ArgumentParser()
    slices_cli.add_arguments(p)
    args = p.parse_args(["--subjects-dir", "a", "--splits", "b", "--out", "c", "--size", "8"])
    assert args.slices_per_subject == dataset_default("phantom", "slices_per_subject")
    settings = dataset_settings("scans", {"kind": "toyscan", "image_size": 8})
    assert settings["slices_per_subject"] == common["slices_per_subject"]["default"]
    rules = "".join(p.read_text() for p in (ROOT / "workflow" / "rules").glob("*.smk"))
    for literal in ('"slices_per_subject", 100', '"n_subjects", 12', "IMPORTED_DATASETS"):
        assert literal not in rules


def test_trainer_and_evaluation_defaults_are_read_from_the_schema(tmp_path: Path) -> None:
    """The defaults are derived from the schema, not kept beside it: a schema whose x-defaults
    change gives the library other defaults (a fresh interpreter reads the edited copy)."""

    from mrbench.config.schema import SCHEMA_PATH

    schema = yaml.safe_load(SCHEMA_PATH.read_text())
    schema["$defs"]["training"]["properties"]["log_every"]["x-default"] = 7
    schema["$defs"]["evaluation"]["properties"]["alpha"]["x-default"] = 0.01
    edited = tmp_path / "schema.yaml"
    edited.write_text(yaml.safe_dump(schema))
    code = (
        "import json, pathlib, sys\n"
        "from mrbench.config import schema\n"
        "schema.SCHEMA_PATH = pathlib.Path(sys.argv[1])\n"
        "from mrbench.config.evaluation import EVALUATION_DEFAULTS as E\n"
        "from mrbench.training.settings import TRAINING_DEFAULTS as T\n"
        "print(json.dumps([T['log_every'], E['alpha'], sorted(T), sorted(E)]))\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", code, str(edited)], capture_output=True, text=True, check=True
    )
    log_every, alpha, t_keys, e_keys = json.loads(res.stdout)
    assert (log_every, alpha) == (7, 0.01)
    assert t_keys == sorted(section_defaults("training"))
    assert e_keys == sorted(section_defaults("evaluation"))


def test_toy_kind_acquires_a_subject(tmp_path: Path) -> None:
    plugins, source, split = _write_toy(tmp_path)
    out = tmp_path / "out"
    settings = json.dumps({"kind": "toyscan", "options": {"source": str(source)}})
    args = ["--subject", "scanB", "--out", str(out), "--plugin-path", str(plugins)]
    res = mrbench_cli("dataset-subject", "--dataset", "scans", "--settings", settings, *args)
    assert res.returncode == 0, res.stderr
    # the toy kind writes no labels: its tissue classes are segmented from its T1w
    names = ["label.nii.gz", "mask.nii.gz", "t1.nii.gz", "t2.nii.gz"]
    assert sorted(p.name for p in out.iterdir()) == names
    from mrbench.io import load_volume

    labels = np.asarray(load_volume(out / "label.nii.gz").dataobj)
    mask = np.asarray(load_volume(out / "mask.nii.gz").dataobj) > 0
    assert set(np.unique(labels[mask])) == {1, 2, 3} and not labels[~mask].any()
    assert get_dataset_kind("toyscan", [plugins]).display_name == "Toy scans"


@pytest.mark.slow
def test_toy_dataset_runs_the_tiny_workflow(tmp_path: Path) -> None:
    """A dataset kind from a folder outside the repository (one module + config) runs the whole
    workflow: its subjects are acquired by the plugin, sliced, trained on and evaluated."""
    plugins, source, split = _write_toy(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    copy_workflow(work)
    cfg = _toy_config(plugins, source, split)
    (work / "config" / "toy.yaml").write_text(yaml.safe_dump(cfg))
    args = ("--cores", "2", "--configfile", "config/toy.yaml")
    res = snakemake(work, *args, timeout=1500, umask=0o022)
    assert res.returncode == 0, res.stderr[-4000:]
    subjects = work / "results" / "data" / "scans" / "subjects"
    assert sorted(p.name for p in subjects.iterdir()) == sorted(SUBJECTS)
    table1 = pd.read_csv(work / "results" / "tables" / "table1.csv")
    assert set(table1["method"]) >= {"identity", "intensity_map"}
    assert (table1["dataset"] == "scans").all()
    import stat

    readable = stat.S_IRGRP | stat.S_IROTH
    files = [p for p in (work / "results").rglob("*") if p.is_file()]
    assert files and all(p.stat().st_mode & readable == readable for p in files)
    for folder in ("mrbench", "workflow"):
        for path in (ROOT / folder).rglob("*.*"):
            if path.suffix in (".py", ".smk", ".yaml"):
                assert "toyscan" not in path.read_text(), path


def test_kind_from_an_installed_entry_point(tmp_path: Path, monkeypatch) -> None:
    """An installed package registers a kind through the ``mrbench.datasets`` entry points."""
    site = tmp_path / "site"
    (site / "epscans-0.1.dist-info").mkdir(parents=True)
    (site / "epscans-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: epscans\nVersion: 0.1\n"
    )
    (site / "epscans-0.1.dist-info" / "entry_points.txt").write_text(
        "[mrbench.datasets]\nepscans = epscans_plugin:EpScans\n"
    )
    (site / "epscans_plugin.py").write_text(
        TOY_PLUGIN.replace('"toyscan"', '"epscans"').replace("ToyScan", "EpScans")
    )
    monkeypatch.syspath_prepend(str(site))
    kinds = dataset_kinds()
    assert kinds["epscans"].display_name == "Toy scans"
