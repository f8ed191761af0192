"""A cache of what the workflow asks the method plugins while Snakemake reads the config.

Reading the workflow (every ``snakemake`` call, a dry run included) checks the config with the
plugins' own rules (:func:`mrbench.config.resolve.check_config`: every method is built on the meta
device for every image size) and asks them for resolved entries, the roster and runtimes. That
imports torch and the plugins and builds the paper-size models: most of the time of a dry run,
every time, for answers that change only when the config or the code does.

:func:`enable` (called by ``workflow/rules/common.smk``) turns on a cache for the functions
decorated with :func:`memoized`: each answer is stored under its arguments in a file named by a
digest of everything that could change it (:func:`code_digest`: the sources of ``mrbench``, the
method plugins, the config schema, plugin folders and installed plugin packages, the Python and
torch versions). A changed plugin or library file gives a new digest and so a fresh check; an
unchanged one answers from the file without importing torch. Errors are never stored, so a bad
config fails on every run. Warnings raised while computing an answer are stored with it and
raised again on every hit (a renamed parameter keeps warning). Outside the workflow the
decorated functions behave as undecorated ones. ``MRBENCH_FACTS_CACHE=0`` turns the cache off.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib.util
import json
import os
import sys
import warnings
from collections.abc import Callable, Iterable
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

#: environment variable: ``0`` turns the cache off (every run computes every answer)
ENV = "MRBENCH_FACTS_CACHE"

F = TypeVar("F", bound=Callable[..., Any])


class _Cache:
    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.entries: dict[str, Any] = json.loads(path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def store(self, key: str, entry: Any) -> None:
        from mrbench.io import atomic_path

        self.entries[key] = entry
        try:
            with atomic_path(self.path) as tmp:
                tmp.write_text(json.dumps(self.entries, sort_keys=True))
        except OSError:  # a read-only working directory: answers are recomputed next time
            pass


_CACHE: _Cache | None = None


def _python_files(folder: Path) -> Iterable[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def _package_folder(name: str) -> Path | None:
    """The folder of a top-level package, found without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin).parent if spec.origin else None


def code_digest(plugin_folders: Iterable[str | Path] = ()) -> str:
    """A digest of every file and version the cached answers depend on."""
    from mrbench.config.schema import SCHEMA_PATH

    h = hashlib.sha256()
    files: list[Path] = []
    for package in ("mrbench", "mrbench_methods"):
        folder = _package_folder(package)
        if folder is not None:
            files += _python_files(folder)
    for folder in plugin_folders:
        folder = Path(folder).expanduser()
        if folder.is_dir():
            files += sorted(folder.glob("*.py"))
    files.append(SCHEMA_PATH)
    for ep in metadata.entry_points(group="mrbench.methods"):
        h.update(f"{ep.name}={ep.value}".encode())
        folder = _package_folder(ep.value.split(":")[0].split(".")[0])
        if folder is not None:
            files += _python_files(folder)
    for path in files:
        h.update(str(path.resolve()).encode())
        try:
            h.update(path.read_bytes())
        except OSError:
            h.update(b"missing")
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "none"
    h.update(f"{sys.version}|torch {torch_version}".encode())
    return h.hexdigest()[:20]


def enable(folder: str | Path, config: dict) -> Path | None:
    """Answer the decorated functions from ``folder`` (created when first written), in a file
    named by :func:`code_digest` for the config's plugin folders; returns the file, or ``None``
    where ``MRBENCH_FACTS_CACHE=0`` keeps the cache off."""
    global _CACHE
    if os.environ.get(ENV, "1") == "0":
        _CACHE = None
        return None
    from mrbench.config.plugins import env_plugin_paths

    folders = [*(config.get("plugin_paths") or []), *env_plugin_paths()]
    path = Path(folder) / f"facts-{code_digest(folders)}.json"
    _CACHE = _Cache(path)
    return path


def disable() -> None:
    """Compute every answer again (the default outside the workflow)."""
    global _CACHE
    _CACHE = None


def _key(name: str, args: tuple, kwargs: dict) -> str:
    text = json.dumps([name, args, kwargs], sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()


def memoized(
    name: str,
    encode: Callable[[Any], Any] = lambda v: v,
    decode: Callable[[Any], Any] = lambda v: v,
) -> Callable[[F], F]:
    """Cache a function's JSON-able answer (``encode``/``decode`` convert other answers) under
    ``name`` and its arguments while the cache is enabled; a hit returns a fresh copy."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def cached(*args: Any, **kwargs: Any) -> Any:
            cache = _CACHE
            if cache is None:
                return fn(*args, **kwargs)
            key = _key(name, args, kwargs)
            entry = cache.entries.get(key)
            if entry is not None:
                for message in entry["warnings"]:
                    warnings.warn(message, UserWarning, stacklevel=2)
                return decode(copy.deepcopy(entry["value"]))
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                value = fn(*args, **kwargs)
            for w in caught:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            messages = [str(w.message) for w in caught]
            cache.store(key, {"value": copy.deepcopy(encode(value)), "warnings": messages})
            return value

        return cached  # type: ignore[return-value]

    return wrap
