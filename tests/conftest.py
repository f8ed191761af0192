"""Shared fixtures: a tiny phantom slice store and the path of the real test cases."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TESTDATA = SHARED / "testdata"

torch.set_num_threads(1)


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
    from mrbench.phantom import PhantomSettings, subject_ids, write_phantom
    from mrbench.phantom_cli import prepare_subject
    from mrbench.slices import SubjectVolumes, build_split
    from mrbench.splits import make_splits, subjects_in

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


@pytest.fixture(scope="session")
def demo_phantom_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo-sized phantom slice store with tissue labels: 8 subjects at 5.5 mm (the demo's
    voxel size), 32 px, 16 slices each; 6 train, 1 val, 1 test subjects."""
    from mrbench.phantom import PhantomSettings, subject_ids, write_phantom
    from mrbench.phantom_cli import prepare_subject
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
