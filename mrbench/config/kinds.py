"""The dataset kind of a config entry and the config's plugin folders.

Kept apart from :mod:`mrbench.config.resolve` (which re-exports both) so that the pair checks of
:mod:`mrbench.config.pairs`, which resolve runs, can ask for a dataset's kind without importing
resolve back.
"""

from __future__ import annotations

from pathlib import Path

from mrbench.config.plugins import PluginError
from mrbench.datasets.kind import DatasetKind, get_dataset_kind
from mrbench.errors import ConfigError

__all__ = ["dataset_kind_of", "plugin_paths"]


def plugin_paths(config: dict) -> list[str]:
    """The config's ``plugin_paths`` as absolute folders (relative ones: to the working
    directory, where Snakemake runs); a missing folder raises :class:`ConfigError`.

    The one reader of the key: method plugins (:func:`load_plugins`), dataset kinds
    (:func:`dataset_kind_of`) and the jobs' environment (:func:`plugin_environment`) all use it.
    """
    value = config.get("plugin_paths") or []
    if isinstance(value, str) or not isinstance(value, list):
        raise ConfigError("config key plugin_paths: expected a list of folders")
    out = []
    for folder in value:
        path = Path(str(folder)).expanduser().resolve()
        if not path.is_dir():
            raise ConfigError(f"config key plugin_paths: folder {folder} not found")
        out.append(str(path))
    return out


def dataset_kind_of(config: dict, dataset: str) -> DatasetKind:
    """The plugin of a dataset entry (its ``kind``, default the dataset's name)."""
    kind = (config["datasets"][dataset] or {}).get("kind", dataset)
    try:
        return get_dataset_kind(kind, plugin_paths(config))
    except KeyError as exc:
        raise ConfigError(f"config key datasets.{dataset}: {exc.args[0]}") from None
    except PluginError as exc:
        raise ConfigError(f"config key plugin_paths: {exc}") from None
