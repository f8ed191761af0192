"""The conda environment, the pinned constraints and pyproject's ranges agree."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
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
    from mrbench.config.resolve import job_environment

    env = yaml.safe_load((ROOT / "envs" / "mrbench.yaml").read_text())
    pip_deps = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    local = [d for d in pip_deps if d.startswith(("-e", ".", "/", "file:")) or "../" in d]
    assert not local, f"envs/mrbench.yaml installs by a path: {local}"

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


# ------------------------------------------------------------ the import name of the plugins
def _run(code: str, cwd: Path, pythonpath: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath:
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


_PROBE = """
import importlib, json
try:
    import methods
    generic = methods.__file__
except ImportError:
    generic = None
import mrbench, mrbench_methods
names = sorted(n for n, c in mrbench_methods.registry().items()
               if c.__module__.startswith("mrbench_methods."))
print(json.dumps({"generic": generic, "mrbench": mrbench.__file__,
                  "plugins": mrbench_methods.__file__, "names": names}))
"""


def _other_paths() -> list[str]:
    """``PYTHONPATH`` without the checkout (it may hold the dependencies)."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    return [p for p in paths if p and Path(p).resolve() != ROOT]


def _builtin_plugins() -> list[str]:
    """One registered name per ``@register`` in the checkout's plugin files (not the nets)."""
    names = []
    for path in sorted((ROOT / "methods").glob("*.py")):
        names += re.findall(r'^@register\("([^"]+)"\)', path.read_text(), flags=re.M)
    return sorted(names)


def test_pyproject_installs_every_package_folder_under_its_import_name() -> None:
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert setup["package-dir"]["mrbench_methods"] == "methods"
    folders = set()
    for top in ("mrbench", "methods"):
        for init in (ROOT / top).rglob("__init__.py"):
            parts = init.parent.relative_to(ROOT).parts
            folders.add(".".join(("mrbench_methods", *parts[1:]) if top == "methods" else parts))
    assert set(setup["packages"]) == folders
    assert "methods" not in {p.split(".")[0] for p in setup["packages"]}


def test_checkout_on_pythonpath_imports_the_plugins_as_mrbench_methods(tmp_path: Path) -> None:
    """Workflow jobs (also ``--sdm conda`` ones, whose environment lacks the project) run the
    checkout's code through PYTHONPATH: importing mrbench maps mrbench_methods to methods/."""
    out = _run(_PROBE, tmp_path, [str(ROOT), *_other_paths()])
    assert out.returncode == 0, out.stderr[-2000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["generic"] is None  # the checkout's methods/ refuses its folder name
    assert Path(facts["plugins"]) == ROOT / "methods" / "__init__.py"
    assert facts["names"] == _builtin_plugins()


def test_installed_project_has_no_generic_methods_package(tmp_path: Path) -> None:
    """In an environment with the project installed (editable or not), ``import methods`` fails
    while the registry loads every plugin, with the checkout off the path and cwd elsewhere."""
    pythonpath = _other_paths()
    where = _run("import mrbench; print(mrbench.__file__)", tmp_path, pythonpath)
    if where.returncode != 0:
        pytest.skip("the project is not installed in this environment")
    installed = Path(where.stdout.strip().splitlines()[-1]).resolve()
    if ROOT not in installed.parents and "site-packages" not in installed.parts:
        pytest.skip(f"this environment has another checkout installed ({installed})")
    out = _run(_PROBE, tmp_path, pythonpath)
    assert out.returncode == 0, out.stderr[-2000:]
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["generic"] is None, f"import methods found {facts['generic']}"
    assert facts["names"] == _builtin_plugins()
