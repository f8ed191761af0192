"""The conda environment, the pinned constraints and pyproject's ranges agree."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "envs" / "constraints.txt").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "==" in line:
            name, version = line.split("==", 1)
            pins[_norm(name)] = version.strip()
    return pins


def test_conda_env_pins_equal_constraints() -> None:
    env = yaml.safe_load((ROOT / "envs" / "mrbench.yaml").read_text())
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    pins = _constraints()
    checked = 0
    for dep in pip_deps:
        if dep.startswith("-e"):
            continue
        name, version = dep.split("==")
        assert pins.get(_norm(name)) == version, (
            f"{name}: env {version}, constraints {pins.get(_norm(name))}"
        )
        checked += 1
    assert checked >= 10


def test_pyproject_ranges_admit_the_pins() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _constraints()
    reqs = [Requirement(r) for r in project["dependencies"]]
    reqs += [Requirement(r) for extra in project["optional-dependencies"].values() for r in extra]
    for req in reqs:
        pinned = pins.get(_norm(req.name))
        assert pinned is not None, f"{req.name} is not pinned in envs/constraints.txt"
        assert req.specifier.contains(pinned, prereleases=True), (
            f"{req.name}=={pinned} not in {req}"
        )


def test_torch_pin_is_the_supported_build() -> None:
    pins = _constraints()
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"


def test_conda_env_survives_snakemakes_copy() -> None:
    """Snakemake builds rule environments from a copy of the file under .snakemake/conda/, so the
    file must not install anything by a path relative to itself; the rules get the checkout's
    code through PYTHONPATH instead."""
    from mrbench.config import job_environment

    env = yaml.safe_load((ROOT / "envs" / "mrbench.yaml").read_text())
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    local = [d for d in pip_deps if d.startswith(("-e", ".", "/", "file:")) or "../" in d]
    assert not local, f"envs/mrbench.yaml installs by a path: {local}"
    import os

    saved = os.environ.get("PYTHONPATH"), os.environ["PATH"]
    try:
        job_environment(ROOT)
        assert os.environ["PYTHONPATH"].split(os.pathsep)[0] == str(ROOT)
    finally:
        os.environ["PATH"] = saved[1]
        if saved[0] is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved[0]


def test_unused_packages_are_not_required() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = {_norm(Requirement(r).name) for r in project["dependencies"]}
    assert "xlrd" not in names
    assert project["requires-python"] == ">=3.11,<3.14"
