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


# ---------------------------------------------------------------------- contrast pairs
def _with_pairs(pairs: list | None, directions: list | None = None, name: str = "demo") -> dict:
    cfg = copy.deepcopy(_load(f"config/{name}.yaml"))
    if pairs is not None:
        cfg["datasets"]["phantom"]["pairs"] = pairs
    if directions is None:
        cfg.pop("directions", None)
    else:
        cfg["directions"] = directions
    return cfg


def test_shipped_t1_t2_configs_keep_their_directions() -> None:
    """config.yaml and demo.yaml (no pairs key): T1w/T2w only, both directions, as before."""
    from mrbench.config.pairs import all_directions, dataset_directions, dataset_pairs

    for name in ("config", "demo"):
        cfg = _load(f"config/{name}.yaml")
        assert cfg["directions"] == ["t1_to_t2", "t2_to_t1"]
        for dataset in cfg["datasets"]:
            assert "pairs" not in cfg["datasets"][dataset]
            assert dataset_pairs(cfg, dataset) == [("t1", "t2")]
            assert dataset_directions(cfg, dataset) == ["t1_to_t2", "t2_to_t1"]
        assert all_directions(cfg) == ["t1_to_t2", "t2_to_t1"]


def test_directions_follow_pairs_and_the_directions_key() -> None:
    from mrbench.config.pairs import all_directions, dataset_directions

    both = _with_pairs([["t1", "t2"], ["t2", "flair"]])  # no directions key: all of every pair
    check_config(both)
    assert dataset_directions(both, "phantom") == [
        "t1_to_t2",
        "t2_to_t1",
        "t2_to_flair",
        "flair_to_t2",
    ]
    some = _with_pairs([["t1", "t2"], ["t2", "flair"]], ["flair_to_t2", "t1_to_t2"])
    check_config(some)
    assert dataset_directions(some, "phantom") == ["t1_to_t2", "flair_to_t2"]
    assert all_directions(some) == ["t1_to_t2", "flair_to_t2"]
    pd_first = _with_pairs([["pd", "t1"]])
    assert dataset_directions(pd_first, "phantom") == ["pd_to_t1", "t1_to_pd"]


@pytest.mark.parametrize(
    ("pairs", "directions", "expected"),
    [
        (
            [["t1", "t2"], ["t2", "t1"]],
            None,
            r"datasets\.phantom\.pairs: pair \['t2', 't1'\] is listed twice",
        ),
        ([["t1", "t2"], ["t1", "t2"]], None, r"datasets\.phantom\.pairs: .* listed twice"),
        ([["t2", "t2"]], None, r"datasets\.phantom\.pairs: .*two different contrasts"),
        ([["t2", "dwi"]], None, r"datasets\.phantom\.pairs: .*unknown contrast 'dwi'"),
        ([["t2", "t1ce"]], None, r"datasets\.phantom\.pairs: .*'t1ce' not offered"),
        ([["t1", "t2", "pd"]], None, r"datasets\.phantom\.pairs: .*expected two contrast names"),
        (["t1"], None, r"datasets\.phantom\.pairs: 't1' is not a pair"),
        (None, ["t1_to_pd"], r"directions: t1_to_pd is not a direction of any configured pair"),
        (
            [["t1", "t2"], ["t2", "flair"]],
            ["t1_to_t2", "t2_to_t1"],
            r"datasets\.phantom\.pairs: pair \['t2', 'flair'\] has no direction in the config",
        ),
    ],
)
def test_bad_pairs_and_directions_are_refused_in_one_line(
    pairs: list | None, directions: list | None, expected: str
) -> None:
    cfg = _with_pairs(pairs, directions)
    with pytest.raises(ConfigError, match=expected) as info:
        check_config(cfg)
    assert "\n" not in str(info.value)


def test_schema_checks_pair_and_direction_names() -> None:
    """The schema refuses what no contrast names (before the config checks run)."""
    cfg = _with_pairs([["t1", "t2"]], ["t1_to_dwi"])
    assert "t1_to_dwi" in _error(cfg)
    cfg = _with_pairs([["t1", "pd", "t2"]])
    with pytest.raises(Exception, match="pairs"):  # noqa: PT011 - the schema's own error type
        validate(cfg, SCHEMA)
    ok = _with_pairs([["t2", "flair"]])
    validate(ok, SCHEMA)
    assert "directions" not in ok and "pairs" in ok["datasets"]["phantom"]
    # the default is documented, never filled in: a config's content (and hashes) stay as written
    demo = _load("config/demo.yaml")
    validate(demo, SCHEMA)
    assert "pairs" not in demo["datasets"]["phantom"]


def test_pairs_config_runs_syndiffs_pairs_with_every_method() -> None:
    """config/pairs.yaml: SynDiff's pairs (IXI T1/PD and T2/PD, BraTS T2/FLAIR and T1/FLAIR)
    with every method of the paper setup, at its sizes."""
    from mrbench.config.pairs import dataset_pairs

    cfg = _load("config/pairs.yaml")
    paper = _load("config/config.yaml")
    assert cfg["methods"] == paper["methods"]
    pairs = {d: {frozenset(p) for p in dataset_pairs(cfg, d)} for d in cfg["datasets"]}
    assert {frozenset(("t1", "pd")), frozenset(("t2", "pd"))} <= pairs["ixi"]
    assert {frozenset(("t2", "flair")), frozenset(("t1", "flair"))} <= pairs["brats2018"]
