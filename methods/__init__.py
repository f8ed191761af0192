"""Translation methods. Every module in this package is imported here, so a new method is one
file: define a :class:`~methods.base.TranslationMethod` subclass, decorate it with
``@register("name")`` and add a config entry that names the plugin."""

from __future__ import annotations

import importlib
import pkgutil

from methods.base import (
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
