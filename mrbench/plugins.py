"""Plugins from outside the package: folders of ``*.py`` files and entry-point groups.

Both method and dataset plugins register themselves when their module is imported (a class
decorator), so loading a plugin is importing its module. A folder plugin is imported under a
name derived from its path, once per process, so a folder named twice is not imported twice.
"""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType


class PluginError(ImportError):
    """A plugin folder or module that cannot be loaded; the message names it."""


def load_plugin_folders(folders: Iterable[str | Path]) -> list[ModuleType]:
    """Import every ``*.py`` file (not starting with ``_``) of each folder, in name order."""
    modules = []
    for folder in folders:
        folder = Path(folder).expanduser()
        if not folder.is_dir():
            raise PluginError(f"plugin_paths: {folder} is not a folder")
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
                raise PluginError(f"{path}: cannot be imported as a plugin")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as exc:
                del sys.modules[name]
                raise PluginError(f"{path}: plugin failed to import ({exc})") from exc
            modules.append(module)
    return modules


def load_entry_points(group: str) -> list[object]:
    """Load every entry point of ``group`` (installed packages' plugins)."""
    loaded = []
    for ep in entry_points(group=group):
        try:
            loaded.append(ep.load())
        except Exception as exc:
            raise PluginError(f"entry point {ep.name} = {ep.value} ({group}): {exc}") from exc
    return loaded


def config_plugin_paths(config: dict) -> list[str]:
    """The config's ``plugin_paths`` (empty when the key is absent)."""
    return [str(p) for p in config.get("plugin_paths") or []]
