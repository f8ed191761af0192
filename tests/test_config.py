"""Config validation: unknown keys and wrong types stop the workflow with the key in the message."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from conftest import copy_workflow, mrbench_cli, snakemake
from snakemake.utils import validate

from mrbench.config.resolve import ConfigError, check_config, method_spec_dict

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = str(ROOT / "workflow" / "schemas" / "config.schema.yaml")
CONFIGS = ["config/config.yaml", "config/demo.yaml", "config/test.yaml"]


def _load(name: str) -> dict:
    return yaml.safe_load((ROOT / name).read_text())


@pytest.mark.parametrize("name", CONFIGS)
def test_shipped_configs_are_valid(name: str) -> None:
    cfg = _load(name)
    validate(cfg, SCHEMA)
    check_config(cfg)
    for method in cfg["methods"]:
        spec = method_spec_dict(cfg, method)
        assert spec["plugin"] == cfg["methods"][method]["plugin"]


def test_demo_and_paper_list_the_same_methods() -> None:
    """The demo is the paper setup at demo size: same methods, never fewer."""
    assert list(_load("config/demo.yaml")["methods"]) == list(
        _load("config/config.yaml")["methods"]
    )


def _error(cfg: dict) -> str:
    with pytest.raises(Exception) as info:  # noqa: PT011 - both schema and check errors
        validate(cfg, SCHEMA)
        check_config(cfg)
    return str(info.value)


def test_unknown_top_level_key_is_named() -> None:
    cfg = _load("config/demo.yaml")
    cfg["traning"] = {}
    assert "traning" in _error(cfg)


def test_wrong_type_is_named() -> None:
    cfg = _load("config/demo.yaml")
    cfg["datasets"]["phantom"]["image_size"] = "big"
    msg = _error(cfg)
    assert "image_size" in msg and "big" in msg


def test_unknown_dataset_key_is_named() -> None:
    cfg = _load("config/demo.yaml")
    cfg["datasets"]["phantom"]["voxelsize"] = 2
    assert "voxelsize" in _error(cfg)


def test_unknown_method_param_is_named() -> None:
    cfg = _load("config/demo.yaml")
    cfg["methods"]["cyclegan"]["params"] = {"n_blokcs": 3}
    with pytest.raises(ConfigError, match=r"methods\.cyclegan\.params\.n_blokcs"):
        check_config(cfg)


def test_unknown_plugin_is_named() -> None:
    cfg = copy.deepcopy(_load("config/demo.yaml"))
    cfg["methods"]["mine"] = {"plugin": "nope"}
    with pytest.raises(ConfigError, match=r"methods\.mine\.plugin: unknown plugin 'nope'"):
        check_config(cfg)


def test_unknown_training_key_is_named() -> None:
    cfg = _load("config/demo.yaml")
    cfg["training"]["stepz"] = 3
    with pytest.raises(ConfigError, match=r"training\.stepz"):
        check_config(cfg)


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A copy of the workflow (not of results) to run snakemake in."""
    return copy_workflow(tmp_path)


def test_snakemake_stops_before_any_job_on_unknown_key(workdir: Path) -> None:
    cfg = _load("config/test.yaml")
    cfg["methods"]["identity"]["colour"] = "blue"
    (workdir / "bad.yaml").write_text(yaml.safe_dump(cfg))
    res = snakemake(workdir, "--cores", "1", "-n", "--configfile", "bad.yaml")
    assert res.returncode != 0
    assert "colour" in res.stdout + res.stderr
    assert not (workdir / "results" / "data").exists()


def test_missing_or_corrupt_input_volume_names_the_file(tmp_path: Path) -> None:
    """The slice job on a bad subject folder: one line naming the file, no traceback, no output."""
    from mrbench.datasets.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import PhantomSettings, write_phantom

    write_phantom(tmp_path / "raw", 1, 0, PhantomSettings(voxel_size=8.0))
    subj = tmp_path / "subjects" / "phantom001"
    prepare_subject(tmp_path / "raw", "phantom001", subj)
    (tmp_path / "splits.tsv").write_text("subject\tsplit\nphantom001\ttrain\n")
    cmd = ["slices", "--subjects-dir", str(subj.parent)]
    cmd += ["--splits", str(tmp_path / "splits.tsv"), "--out", str(tmp_path / "slices")]
    cmd += ["--split", "train", "--size", "16", "--slices-per-subject", "4"]

    (subj / "t2.nii.gz").write_bytes(b"not a nifti")
    res = mrbench_cli(*cmd, cwd=Path.cwd())
    assert res.returncode == 1
    assert "phantom001/t2.nii.gz: cannot read NIfTI volume" in res.stderr
    assert "Traceback" not in res.stderr and len(res.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "slices" / "train").exists()

    (subj / "t2.nii.gz").unlink()
    res = mrbench_cli(*cmd, cwd=Path.cwd())
    assert res.returncode == 1 and "phantom001/t2.nii.gz: file not found" in res.stderr
