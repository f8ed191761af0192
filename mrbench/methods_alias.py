"""The import name ``mrbench_methods`` for the checkout's ``methods/`` folder.

The method plugins live in ``methods/`` at the top of the repository but are imported as
``mrbench_methods`` (``import methods`` would claim a generic top-level name in every
environment that installs the project). Three ways of running the code must all find them:

- an installed project: setuptools installs the folder as the package ``mrbench_methods``
  (pyproject's ``package-dir``); an editable install maps the name to the folder itself;
- a plain checkout on ``PYTHONPATH`` (the tests, and every workflow job, which runs
  ``python -m mrbench.cli`` of the checkout; :func:`mrbench.config.resolve.job_environment`);
- ``--sdm conda`` jobs, whose environment (``envs/mrbench.yaml``) holds only the dependencies
  and finds the checkout through ``PYTHONPATH`` as above.

The last two have no package named ``mrbench_methods`` on the path, so importing :mod:`mrbench`
appends :class:`CheckoutMethodsFinder` to :data:`sys.meta_path`. A meta-path finder, rather
than loading the folder eagerly or renaming it, because it costs nothing until the name is
imported, comes last (an installed ``mrbench_methods`` always wins, so a checkout and an install
never mix) and lets the ordinary path machinery find the submodules (``mrbench_methods.nets``)
inside the folder. A symlink or a second copy of the folder would not survive every checkout
(Windows, archives) and would let the same plugins import under two names.

Every code path that imports ``mrbench_methods`` (the command line, the workflow, plugin
folders, the tests) imports :mod:`mrbench` first; a bare ``python -c "import mrbench_methods"``
in a checkout therefore needs ``import mrbench`` before it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

#: the import name of the method plugins
PACKAGE = "mrbench_methods"
#: the checkout's plugin folder (absent in an installed, non-editable project)
METHODS_DIR = Path(__file__).resolve().parent.parent / "methods"


class CheckoutMethodsFinder(importlib.abc.MetaPathFinder):
    """Finds :data:`PACKAGE` as the checkout's ``methods/`` folder, and nothing else."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> ModuleSpec | None:
        if fullname != PACKAGE:
            return None
        return importlib.util.spec_from_file_location(
            PACKAGE, self.folder / "__init__.py", submodule_search_locations=[str(self.folder)]
        )


def install() -> None:
    """Append the finder once, where this module sits in a checkout next to ``methods/`` (the
    folder beside ``pyproject.toml``, never a stray ``methods`` package of an environment)."""
    if not (METHODS_DIR / "__init__.py").is_file():
        return
    if not (METHODS_DIR.parent / "pyproject.toml").is_file():
        return
    if any(isinstance(f, CheckoutMethodsFinder) for f in sys.meta_path):
        return
    sys.meta_path.append(CheckoutMethodsFinder(METHODS_DIR))
