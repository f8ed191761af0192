"""Atomic writes: the temporary name is renamed only on success, and the file gets the mode
the umask asks for (not mkstemp's private 0600)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest

from mrbench.io import atomic_path, current_umask, save_volume


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_write_respects_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        assert current_umask() == umask
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("a,b\n")
        save_volume(np.ones((2, 2, 2), np.float32), np.eye(4), tmp_path / "v.nii.gz")
    finally:
        os.umask(old)
    for name in ("table.csv", "v.nii.gz"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == mode, name


def test_failed_write_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "x.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("stop")
    assert list(tmp_path.iterdir()) == []
