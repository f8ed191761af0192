"""Config checks and resolution used by the Snakefile (before any job runs).

The JSON schema (``workflow/schemas/config.schema.yaml``) closes every fixed section and holds
every default (:mod:`mrbench.config.schema`); this module checks what the schema cannot know: method
plugins and their parameters (with the plugin classes' own checks), trainer and evaluation keys,
dataset kinds and split files. Every problem is reported with the key that caused it.
"""

from __future__ import annotations

import copy
import os
import re
import sys
from pathlib import Path
from typing import Any

from mrbench.config.facts_cache import memoized
from mrbench.config.kinds import dataset_kind_of, plugin_paths
from mrbench.config.plugins import PLUGIN_PATH_ENV, PluginError
from mrbench.config.schema import dataset_settings, section_defaults
from mrbench.datasets.kind import split_file_of
from mrbench.errors import ConfigError

__all__ = [
    "ConfigError",
    "SAFE_NAME",
    "check_config",
    "check_split_files",
    "dataset_kind_of",
    "method_spec_dict",
    "plugin_paths",
    "split_file_of",
    "subjects_of",
]

#: method and dataset names (as in the schema): they become paths and command-line arguments
SAFE_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def load_plugins(config: dict) -> None:
    """Register the method and dataset plugins of the config's ``plugin_paths`` folders (the
    built-in ones and those of installed packages come with the registries)."""
    from mrbench.datasets.kind import dataset_kinds
    from mrbench_methods.base import load_plugin_paths

    folders = plugin_paths(config)
    try:
        load_plugin_paths(folders)
        dataset_kinds(folders)
    except PluginError as exc:
        raise ConfigError(f"config key plugin_paths: {exc}") from None


def plugin_environment(config: dict) -> None:
    """Let every job import the config's plugin folders: they are added to
    ``MRBENCH_PLUGIN_PATH``, which the method and dataset registries read in each process."""
    paths = [*plugin_paths(config), *os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep)]
    os.environ[PLUGIN_PATH_ENV] = os.pathsep.join(dict.fromkeys(p for p in paths if p))


@memoized("method_spec_dict")
def method_spec_dict(config: dict, method: str) -> dict[str, Any]:
    """The resolved entry of one method: plugin, params (over the plugin's defaults) and training
    settings (trainer defaults < the plugin's ``training_defaults`` < the recipe the config's
    ``recipe`` key names (:mod:`mrbench.config.recipes`) < config ``training`` < the method's own
    ``training`` overrides)."""
    from mrbench.config.recipes import RecipeError, method_training
    from mrbench_methods import get_plugin

    entry = config["methods"][method]
    cls = get_plugin(entry["plugin"])
    try:
        training = method_training(cls, config, method)  # with the config's recipe
    except RecipeError as exc:
        raise ConfigError(str(exc)) from None
    return {
        "method": method,
        "plugin": entry["plugin"],
        "recipe": config.get("recipe"),
        "label": entry.get("label", method),
        "params": {
            **cls.defaults,
            **cls.rename_params(entry.get("params"), f"config key methods.{method}.params"),
        },
        "training": training,
        "trainable": bool(cls.trainable),
    }


@memoized("check_config")
def check_config(config: dict) -> None:
    """Raise :class:`ConfigError` naming the first bad key (schema checks come before this).

    The config's ``plugin_paths`` folders are imported first, so that their method and dataset
    plugins are known. Method parameters are checked by the plugin classes themselves
    (:meth:`mrbench_methods.base.TranslationMethod.check_params`), so this imports the plugins
    (torch); the workflow keeps the verdict for an unchanged config and code
    (:mod:`mrbench.config.facts_cache`)."""
    from mrbench.config.pairs import check_pairs
    from mrbench_methods import registry
    from mrbench_methods.base import unavailable_plugins

    load_plugins(config)
    plugins = registry()
    known_training = section_defaults("training")  # the trainer's keys, from the schema
    if known_training:
        for key in config.get("training", {}) or {}:
            if key not in known_training:
                known = ", ".join(sorted(known_training))
                raise ConfigError(f"config key training.{key}: unknown; known: {known}")
    for kind in ("methods", "datasets"):
        for name in config.get(kind) or {}:
            if not isinstance(name, str) or not SAFE_NAME.fullmatch(name):
                raise ConfigError(
                    f"config key {kind}.{name!r}: names may hold only letters, digits, '_' and "
                    "'-', starting with a letter (64 at most): they become file paths and "
                    "command-line arguments"
                )
    for name, entry in config["methods"].items():
        plugin = entry["plugin"]
        if plugin not in plugins:
            raise ConfigError(
                f"config key methods.{name}.plugin: unknown plugin {plugin!r}; "
                f"known: {', '.join(sorted(plugins))}{unavailable_plugins()}"
            )
        cls = plugins[plugin]
        raw = entry.get("params", {}) or {}
        aliases = getattr(cls, "aliases", {}) or {}
        # old parameter names are checked under their new names
        params = {aliases.get(k, k): v for k, v in raw.items()}
        for key in raw:
            if key not in cls.defaults and key not in aliases:
                raise ConfigError(
                    f"config key methods.{name}.params.{key}: unknown parameter of plugin "
                    f"{plugin!r}; known: {', '.join(sorted(cls.defaults)) or 'none'}"
                )
        written = {aliases.get(k, k): k for k in raw}  # errors name the key as written
        _check_method_params(name, cls, params, config, written)
        if known_training:
            for key in entry.get("training", {}) or {}:
                if key not in known_training:
                    raise ConfigError(f"config key methods.{name}.training.{key}: unknown")
            _check_training(name, cls, config, entry)
    known_eval = section_defaults("evaluation")
    for key in config.get("evaluation", {}) or {}:
        if key not in known_eval:
            raise ConfigError(
                f"config key evaluation.{key}: unknown; known: {', '.join(sorted(known_eval))}"
            )
    for dataset in config.get("datasets") or {}:
        dataset_kind_of(config, dataset)
    check_pairs(config)  # each dataset's pairs and the directions run (mrbench.config.pairs)


def _check_method_params(
    name: str, cls: type, params: dict, config: dict, written: dict[str, str] | None = None
) -> None:
    """The plugin's own parameter checks
    (:meth:`mrbench_methods.base.TranslationMethod.check_params`:
    types, ranges, size constraints) for every configured dataset's image size. ``written``
    maps a parameter's current name to the (old) name the config used, which errors name."""
    checked = getattr(cls, "check_params", None)
    if checked is None:
        return
    # types and ranges first (size-independent), then each dataset's image size
    sizes = {
        ds: (cfg or {}).get("image_size") for ds, cfg in (config.get("datasets") or {}).items()
    }
    seen: set[int] = set()
    for ds, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size in seen:
            continue
        seen.add(size)
        try:
            checked(dict(params), size)
        except ValueError as exc:
            msg = str(exc)
            key = msg.split(":", 1)[0]
            if key in params and " " not in key:
                shown = (written or {}).get(key, key) + msg[len(key) :]
                raise ConfigError(f"config key methods.{name}.params.{shown}") from None
            raise ConfigError(
                f"config key methods.{name}: {msg} (image_size {size} of dataset {ds})"
            ) from None


def _check_training(name: str, cls: type, config: dict, entry: dict) -> None:
    """Every training value of a method (global section and its own overrides), checked with
    the trainer's own rules so that a bad value stops the workflow before any job."""
    from mrbench.io import InputError
    from mrbench.training.settings import resolve_training

    own = entry.get("training", {}) or {}
    merged = {**(config.get("training", {}) or {}), **own}
    try:
        resolve_training(cls, merged)
    except InputError as exc:
        msg = str(exc)  # "training.<key>: ..."
        key = msg.removeprefix("training.").split(":", 1)[0]
        where = f"methods.{name}.training" if key in own else "training"
        raise ConfigError(f"config key {where}.{msg.removeprefix('training.')}") from None


def job_environment(basedir: str | Path) -> None:
    """Let jobs run ``python -m mrbench.cli`` from this checkout.

    Without conda that is the Python environment running Snakemake, also when it is not
    activated (``.venv/bin/snakemake ...``): its ``bin`` goes first on ``PATH``. With
    ``--sw-deployment-method conda`` it is the rule's environment (``envs/mrbench.yaml``), which
    finds the checkout's code through ``PYTHONPATH``.
    """
    os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ["PATH"]])
    paths = [str(basedir), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))


def subjects_of(dataset: str, cfg: dict, plugin_paths: list[str] | None = None) -> list[str] | None:
    """Subjects of a dataset as its kind lists them; ``None`` where the list is only known after
    acquisition (an import, or a checkpoint). ``cfg`` is the dataset's config entry."""
    settings = dataset_settings(dataset, cfg)
    config = {"datasets": {dataset: settings}, "plugin_paths": plugin_paths or []}
    return dataset_kind_of(config, dataset).subjects(dataset, settings)


def check_split_files(config: dict) -> None:
    """Raise :class:`ConfigError` for a split file that names a subject twice or, for kinds that
    list their subjects before acquisition, one that names a subject the dataset lacks or omits
    one it has. The workflow calls this on every parse, uncached: raised later, inside a rule's
    input function, Snakemake would take the existing slice stores as given and run nothing."""
    from mrbench.datasets.splits import read_splits
    from mrbench.errors import InputError

    for dataset, entry in (config.get("datasets") or {}).items():
        settings = dataset_settings(dataset, entry)
        kind = dataset_kind_of(config, dataset)
        path = Path(split_file_of(dataset, settings))
        try:
            if kind.acquisition == "subject":
                kind.subjects(dataset, settings)
            elif path.exists():
                read_splits(path)
        except InputError as exc:
            raise ConfigError(f"config key datasets.{dataset}.split_file: {exc}") from None


def train_device_flags(config: dict, gpus: int) -> list[str]:
    """``mrbench train`` device options of a training job, as an argument list: ``--device
    auto`` where the job asks for GPUs (else ``cpu``), and ``--allow-cpu`` where the config lets
    such a job fall back to the CPU (``allow_cpu``; off for the paper setup)."""
    if not gpus:
        return ["--device", "cpu"]
    return ["--device", "auto", "--allow-cpu"] if config.get("allow_cpu") else ["--device", "auto"]


def resolved(config: dict) -> dict:
    """A deep copy of the config with every method entry resolved (for provenance files)."""
    out = copy.deepcopy(config)
    out["methods"] = {m: method_spec_dict(config, m) for m in config["methods"]}
    return out
