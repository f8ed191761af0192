"""The declared dependency ranges: CI's lower-bound job pins exactly their lower bounds, and the
snakemake range starts where the workflow's profile file name (profile.yaml) is read."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]


def test_lower_bound_pins_match_pyproject() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / ".ci" / "lower_bounds.py"), "--check"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def test_every_dependency_has_a_lower_bound_and_snakemake_reads_profile_yaml() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = {Requirement(r).name: Requirement(r) for r in project["dependencies"]}
    for name, req in reqs.items():
        assert any(s.operator == ">=" for s in req.specifier), f"{name}: no lower bound"
    # profiles/*/profile.yaml is read from snakemake 9.19.0 on (9.18 reads only config.yaml)
    assert (ROOT / "profiles" / "default" / "profile.yaml").exists()
    low = next(Version(s.version) for s in reqs["snakemake"].specifier if s.operator == ">=")
    assert low >= Version("9.19")
    assert not reqs["snakemake"].specifier.contains("9.18.2")
