"""What the workflow needs to know about the method plugins, without importing torch each time.

Checking a config and resolving method entries needs each plugin's ``defaults``,
``training_defaults``, ``trainable`` flag and display name. Those live on classes whose modules
import torch (a ``TranslationMethod`` is a ``torch.nn.Module``), and importing torch is most of
the time ``snakemake -n`` takes. So the facts are read once by importing the plugins and kept in
a small JSON cache keyed by a fingerprint of every plugin source file (path, size, modification
time), the installed ``mrbench.methods`` entry points and the Python version: any change to a
plugin makes a new key, and the next parse reads the plugins again.

The cache lives in ``$MRBENCH_CACHE_DIR`` (default ``$XDG_CACHE_HOME/mrbench`` or
``~/.cache/mrbench``); where it cannot be written the facts are simply not cached.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
from collections.abc import Iterable
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

FACT_KEYS = ("defaults", "training_defaults", "trainable", "display_name")
ENTRY_POINT_GROUP = "mrbench.methods"
CACHE_ENV = "MRBENCH_CACHE_DIR"


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mrbench"


def _source_files(plugin_paths: Iterable[str | Path]) -> list[Path]:
    files: list[Path] = []
    spec = importlib.util.find_spec("methods")
    for location in (spec.submodule_search_locations or []) if spec else []:
        files += sorted(Path(location).rglob("*.py"))
    for folder in plugin_paths:
        files += sorted(Path(folder).expanduser().glob("*.py"))
    return files


def fingerprint(plugin_paths: Iterable[str | Path] = ()) -> str:
    """Changes whenever a plugin source file, a plugin entry point or the Python version does."""
    h = hashlib.sha256(sys.version.encode())
    for path in _source_files(plugin_paths):
        st = path.stat()
        h.update(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        version = ep.dist.version if ep.dist else ""
        h.update(f"ep|{ep.name}|{ep.value}|{version}\n".encode())
    return h.hexdigest()[:20]


def collect() -> dict[str, dict[str, Any]]:
    """The facts of every registered plugin, read from the classes (imports torch)."""
    from methods import registry

    facts = {}
    for name, cls in registry().items():
        facts[name] = {
            "defaults": dict(cls.defaults),
            "training_defaults": dict(getattr(cls, "training_defaults", {}) or {}),
            "trainable": bool(cls.trainable),
            "display_name": cls.label(),
        }
    return facts


_MEMO: dict[tuple[str, ...], dict[str, dict[str, Any]]] = {}


def method_facts(plugin_paths: Iterable[str | Path] = ()) -> dict[str, dict[str, Any]]:
    """``{plugin: {defaults, training_defaults, trainable, display_name}}``, from the cache
    when the plugins have not changed since it was written. Values are as JSON gives them back
    (tuples become lists), in the cache and out of it alike. Within one process the answer is
    kept per ``plugin_paths`` (a workflow asks once per job) and shared, so callers must not
    change it."""
    key = tuple(str(p) for p in plugin_paths)
    if key not in _MEMO:
        _MEMO[key] = _read_or_collect(list(key))
    return _MEMO[key]  # shared: callers copy what they change


def _read_or_collect(plugin_paths: list[str]) -> dict[str, dict[str, Any]]:
    path = cache_dir() / f"method-plugins-{fingerprint(plugin_paths)}.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    try:
        text = json.dumps(collect(), sort_keys=True)
    except (TypeError, ValueError):  # a default JSON cannot hold: use the classes every time
        return collect()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError:
        pass
    return json.loads(text)
