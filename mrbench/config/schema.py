"""The config schema (``workflow/schemas/config.schema.yaml``) as the one home of every default.

Snakemake fills the schema's ``default`` values in when the Snakefile validates the config; the
library and the command line read the same values from here instead of repeating them, so a
default changes in one file. Sections whose defaults must not be filled in (``training``: a
plugin's own ``training_defaults`` would be overridden) document theirs as ``x-default``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"

#: dataset kinds with their own section in the schema; any other kind uses ``plugin_dataset``
BUILTIN_DATASET_DEFS = ("phantom", "ixi", "brats2018", "msd_brats")


@functools.cache
def load_schema() -> dict[str, Any]:
    return yaml.safe_load(SCHEMA_PATH.read_text())


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if ref:
        target: Any = load_schema()
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        return {**_resolve(target), **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _properties(node: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Properties of a schema node, those of its ``allOf`` parts first (own ones win)."""
    node = _resolve(node)
    props: dict[str, dict[str, Any]] = {}
    for part in node.get("allOf", []):
        for key, sub in _properties(part).items():
            props[key] = {**props.get(key, {}), **sub}
    for key, sub in node.get("properties", {}).items():
        props[key] = {**props.get(key, {}), **_resolve(sub)}
    return props


def _dataset_def(kind: str) -> dict[str, Any]:
    name = kind if kind in BUILTIN_DATASET_DEFS else "plugin_dataset"
    return load_schema()["$defs"][name]


def dataset_defaults(kind: str) -> dict[str, Any]:
    """The schema's defaults of a dataset entry of this kind."""
    return {
        key: copy.deepcopy(sub["default"])
        for key, sub in _properties(_dataset_def(kind)).items()
        if "default" in sub
    }


def dataset_default(kind: str, key: str) -> Any:
    """One default of a dataset entry (``KeyError`` naming the key if the schema has none)."""
    defaults = dataset_defaults(kind)
    if key not in defaults:
        raise KeyError(f"{SCHEMA_PATH.name}: no default for datasets.<{kind}>.{key}")
    return defaults[key]


def dataset_settings(dataset: str, cfg: dict[str, Any] | None) -> dict[str, Any]:
    """A dataset's config entry over the schema defaults of its kind (``kind`` filled in)."""
    cfg = dict(cfg or {})
    kind = cfg.get("kind", dataset)
    return {**dataset_defaults(kind), **cfg, "kind": kind}


def section_defaults(section: str) -> dict[str, Any]:
    """The documented (``x-default``) defaults of the ``training`` or ``evaluation`` section,
    nested objects as dicts."""

    def collect(node: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, sub in _properties(node).items():
            if "x-default" in sub:
                out[key] = copy.deepcopy(sub["x-default"])
            elif sub.get("type") == "object" and "properties" in sub:
                out[key] = collect(sub)
        return out

    return collect(load_schema()["$defs"][section])
