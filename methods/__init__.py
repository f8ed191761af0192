"""Translation methods. Every module in this package is imported here, so a new method is one
file: define a :class:`~mrbench_methods.base.TranslationMethod` subclass, decorate it with
``@register("name")`` and add a config entry that names the plugin.

The contract is pair-neutral (:mod:`mrbench_methods.base`): batches hold domains ``a`` and ``b``
(:data:`DOMAINS`), directions are ``a_to_b`` and ``b_to_a`` (:data:`NEUTRAL_DIRECTIONS`;
:data:`DIRECTIONS` is the same tuple, kept for plugins that import it)."""

from __future__ import annotations

import importlib
import pkgutil

if __name__ != "mrbench_methods":  # e.g. ``import methods`` with the checkout as working dir
    raise ImportError(
        f"the method plugins import as mrbench_methods, not {__name__} (mrbench.methods_alias)"
    )

from mrbench_methods.base import (  # noqa: E402
    DIRECTIONS,
    DOMAINS,
    NEUTRAL_DIRECTIONS,
    ContractError,
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
    "DOMAINS",
    "NEUTRAL_DIRECTIONS",
    "ContractError",
    "TranslationMethod",
    "get_plugin",
    "load_plugin_paths",
    "register",
    "registry",
    "split_direction",
]
