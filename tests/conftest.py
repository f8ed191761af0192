"""Shared fixtures: a tiny phantom slice store, the tiny workflow run and the path of the real
test cases."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import pytest
import torch

import mrbench  # noqa: F401  (maps mrbench_methods to methods/ in a plain checkout)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TESTDATA = SHARED / "testdata"

torch.set_num_threads(1)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--plugin-path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="folder of out-of-tree method plugins for the contract tests (repeatable; "
        "MRBENCH_PLUGIN_PATH and installed entry points mrbench.methods are read as well)",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Register the plugins of --plugin-path before the contract tests collect the registry."""
    folders = config.getoption("plugin_path")
    if folders:
        from mrbench_methods.base import load_plugin_paths

        load_plugin_paths(folders)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The tests of the shared tiny workflow run come first. Under pytest-xdist they all live in
    tests/test_workflow.py, which ``--dist loadfile`` gives to one worker, so the run happens
    once; first, so that the longest file starts at once instead of finishing last."""
    items.sort(key=lambda item: "tiny_run" not in getattr(item, "fixturenames", ()))  # stable


def require_testdata(*parts: str) -> Path:
    """Path inside ../shared/testdata, or skip the test with the reason."""
    path = TESTDATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real test data not available: {path} is absent (it lives beside the project)")
    return path


@pytest.fixture(scope="session")
def phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny phantom slice store: 6 subjects, 8 mm voxels, 16 px, splits train/val/test.

    Returns the folder holding ``train/``, ``val/`` and ``test/``; subject volumes are in
    ``<folder>/../subjects``.
    """
    from mrbench.cli.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom
    from mrbench.datasets.splits import make_splits, subjects_in
    from mrbench.slices import SubjectVolumes, build_split

    base = tmp_path_factory.mktemp("phantom")
    ids = subject_ids(6)
    write_phantom(base / "raw", 6, 0, PhantomSettings(voxel_size=8.0))
    for sid in ids:
        prepare_subject(base / "raw", sid, base / "subjects" / sid)
    df = make_splits(ids, 0.34, 0.25, 0)
    for split in ("train", "val", "test"):
        subjects = [SubjectVolumes.in_dir(s, base / "subjects" / s) for s in subjects_in(df, split)]
        build_split(subjects, base / "slices" / split, size=16, slices_per_subject=8)
    return base / "slices"


@pytest.fixture
def demo_run(phantom_store: Path, tmp_path: Path):
    """``run(method, steps)``: a short run of a ``config/demo.yaml`` method (its demo params) on
    the phantom through the shared trainer; returns its validation PSNR and the identity floor's.
    """
    import csv

    import yaml

    from mrbench.slices import SliceStore
    from mrbench.training.loop import train, validate, validation_rows
    from mrbench_methods import get_plugin

    every = ("steps", "val_every", "checkpoint_every", "log_every")

    def run(method: str, steps: int) -> tuple[float, float]:
        entry = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())["methods"][method]
        store = SliceStore(phantom_store / "val")
        rows = validation_rows(store, 64)
        cpu = torch.device("cpu")
        floor = validate(get_plugin("identity")({}, store.size), store, rows, 8, cpu)["psnr"]
        spec = {
            "method": method,
            "plugin": entry["plugin"],
            "params": dict(entry.get("params") or {}),
            "training": {"batch_size": 4, "select": "last"} | dict.fromkeys(every, steps),
        }
        out = tmp_path / f"run-{method}"
        train(spec, phantom_store, out, seed=0, progress=False, log=lambda m: None)
        with open(out / "val_log.csv") as fh:
            return float(list(csv.DictReader(fh))[-1]["psnr"]), floor

    return run


@pytest.fixture(scope="session")
def demo_phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-sized phantom slice store with tissue labels: 8 subjects at 5.5 mm (the demo's
    voxel size), 32 px, 16 slices each; 6 train, 1 val, 1 test subjects."""
    from mrbench.cli.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom
    from mrbench.slices import SubjectVolumes, build_split

    base = tmp_path_factory.mktemp("demo_phantom")
    ids = subject_ids(8)
    write_phantom(base / "raw", 8, 0, PhantomSettings(voxel_size=5.5))
    for sid in ids:
        prepare_subject(base / "raw", sid, base / "subjects" / sid)
    for split, subjects in (("train", ids[:6]), ("val", ids[6:7]), ("test", ids[7:])):
        vols = [SubjectVolumes.in_dir(s, base / "subjects" / s) for s in subjects]
        build_split(vols, base / "slices" / split, size=32, slices_per_subject=16)
    return base / "slices"


def copy_workflow(work: Path) -> Path:
    """The workflow files of the repository in ``work`` (a fresh working directory)."""
    for item in ("Snakefile", "workflow", "config", "envs"):
        src = ROOT / item
        (shutil.copytree if src.is_dir() else shutil.copy)(src, work / item)
    return work


class TinyRun(NamedTuple):
    """A finished run of the whole workflow: its working directory and the environment that
    reruns it (the entry-point plugin's site folder on PYTHONPATH)."""

    work: Path
    env: dict[str, str]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> TinyRun:
    """The whole DAG once, on ``config/test.yaml`` plus three methods the library never names:
    ``mine`` (a folder plugin of ``plugin_paths``), ``theirs`` (an installed distribution's entry
    point) and ``without_content_critic`` (a renamed DisDiff variant). One run serves the
    workflow tests and the out-of-tree plugin tests; in the copy, ``config/test.yaml`` is this
    config, so reruns and reports use the same command line as on the shipped one."""
    import yaml
    from toy_plugins import write_folder_plugin, write_installed_dist

    outside = tmp_path_factory.mktemp("user")  # outside the repository
    folder = outside / "my_methods"
    write_folder_plugin(folder)
    site = write_installed_dist(outside / "site")
    work = tmp_path_factory.mktemp("workflow")
    copy_workflow(work)
    cfg = yaml.safe_load((ROOT / "config" / "test.yaml").read_text())
    cfg["methods"]["without_content_critic"] = dict(cfg["methods"]["disdiff_no_dc"])
    cfg["methods"]["mine"] = {"plugin": "toy_folder"}
    cfg["methods"]["theirs"] = {"plugin": "toy_ep"}
    cfg["plugin_paths"] = [str(folder)]
    cfg["evaluation"].update(reference_method="mine", efficiency_pair=["mine", "theirs"])
    (work / "config" / "test.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    env.pop("MRBENCH_PLUGIN_PATH", None)
    res = subprocess.run(
        [str(Path(sys.executable).with_name("snakemake")), "--cores", "2"]
        + ["--configfile", "config/test.yaml"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=2400,
        umask=0o022,  # the usual umask, as on a shared server
    )
    assert res.returncode == 0, res.stderr[-4000:]
    return TinyRun(work, env)


def release_gpu_locks() -> None:
    """Release every GPU lock this test process holds (a job's exit does this in the workflow)."""
    from mrbench.training import gpu, locks

    while gpu._held:
        locks.release(gpu._held.pop())
