"""Translation methods. Every module in this package is imported here, so a new method is one
file: define a :class:`~mrbench_methods.base.TranslationMethod` subclass, decorate it with
``@register("name")`` and add a config entry that names the plugin."""

from __future__ import annotations

import importlib
import pkgutil

if __name__ != "mrbench_methods":  # e.g. ``import methods`` with the checkout as working dir
    raise ImportError(
        f"the method plugins import as mrbench_methods, not {__name__} (mrbench.methods_alias)"
    )

from mrbench_methods.base import (  # noqa: E402
    DIRECTIONS,
    TranslationMethod,
    get_plugin,
    load_plugin_paths,
    register,
    registry,
    split_direction,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if _info.name not in {"base"} and not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = [
    "DIRECTIONS",
    "TranslationMethod",
    "get_plugin",
    "load_plugin_paths",
    "register",
    "registry",
    "split_direction",
]
