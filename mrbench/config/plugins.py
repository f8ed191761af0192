"""Plugins from outside the package: folders of ``*.py`` files and entry-point groups.

Both method and dataset plugins register themselves when their module is imported (a class
decorator), so loading a plugin is importing its module. A folder plugin is imported under a
name derived from its path, once per process, so a folder named twice (or by both the method
and the dataset registry) is not imported twice.

The folders come from the config's ``plugin_paths`` (read by
:func:`mrbench.config.resolve.plugin_paths`)
and, in every job, from :data:`PLUGIN_PATH_ENV`, which the workflow sets from that key.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

#: environment variable: plugin folders (``os.pathsep``-separated) imported in every process; the
#: workflow sets it from the config's ``plugin_paths`` so that every job sees the same plugins
PLUGIN_PATH_ENV = "MRBENCH_PLUGIN_PATH"


class PluginError(ImportError):
    """A plugin folder or module that cannot be loaded; the message names it."""


def env_plugin_paths() -> list[str]:
    """The folders of :data:`PLUGIN_PATH_ENV` (empty when unset)."""
    return [p for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]


def load_plugin_folders(folders: Iterable[str | Path], what: str = "plugin") -> list[ModuleType]:
    """Import every ``*.py`` file (not starting with ``_``) of each folder, in name order.

    ``what`` names the plugins in error messages (``method plugin``, ``dataset plugin``)."""
    modules = []
    for folder in folders:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise PluginError(f"folder {folder} not found")
        for path in sorted(folder.glob("*.py")):
            if path.name.startswith("_"):
                continue
            digest = hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:10]
            name = f"mrbench_plugin_{digest}_{path.stem}"
            if name in sys.modules:
                modules.append(sys.modules[name])
                continue
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise PluginError(f"{path}: cannot be imported as a {what}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise PluginError(f"{path}: {what} failed to import ({exc}){_hint(exc)}") from exc
            modules.append(module)
    return modules


def _hint(exc: BaseException) -> str:
    """A pointer to the import name of the method plugins for a plugin written against the old
    one (``from methods.base import ...``)."""
    old_name = isinstance(exc, ImportError) and (
        exc.name == "methods" or "import as mrbench_methods" in str(exc)
    )
    return "; import the base class from mrbench_methods.base" if old_name else ""


def load_entry_points(group: str) -> list[object]:
    """Load every entry point of ``group`` (installed packages' plugins)."""
    loaded = []
    for ep in entry_points(group=group):
        try:
            loaded.append(ep.load())
        except Exception as exc:
            raise PluginError(f"entry point {ep.name} = {ep.value} ({group}): {exc}") from exc
    return loaded
