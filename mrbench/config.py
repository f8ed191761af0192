"""Config checks and resolution used by the Snakefile (before any job runs).

The JSON schema (``workflow/schemas/config.schema.yaml``) closes every fixed section; this module
checks what the schema cannot know: method plugins and their parameters, trainer and evaluation
keys, and split files. Every problem is reported with the key that caused it.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import Any

from mrbench.datasets.kind import DatasetKind, get_dataset_kind, split_file_of
from mrbench.plugins import PluginError, config_plugin_paths
from mrbench.schema import dataset_settings, section_defaults

__all__ = ["ConfigError", "check_config", "method_spec_dict", "split_file_of", "subjects_of"]


class ConfigError(ValueError):
    """A bad configuration value; the message names the key."""


def training_defaults() -> dict[str, Any]:
    """The trainer's defaults as the schema documents them (equal to
    ``mrbench.trainer.TRAINING_DEFAULTS``, which a test checks); read from the schema so that
    parsing the workflow does not import the trainer and torch."""
    return section_defaults("training")


def method_spec_dict(config: dict, method: str) -> dict[str, Any]:
    """The resolved entry of one method: plugin, params (over the plugin's defaults) and training
    settings (trainer defaults < the plugin's ``training_defaults`` < config ``training`` <
    the method's own ``training`` overrides)."""
    entry = config["methods"][method]
    plugins = plugin_facts(config)
    if entry["plugin"] not in plugins:
        raise ConfigError(f"config key methods.{method}.plugin: unknown plugin {entry['plugin']!r}")
    facts = plugins[entry["plugin"]]
    training = dict(training_defaults())
    training.update(facts["training_defaults"])
    training.update(config.get("training", {}) or {})
    training.update(entry.get("training", {}) or {})
    return {
        "method": method,
        "plugin": entry["plugin"],
        "label": entry.get("label", method),
        "params": {**facts["defaults"], **(entry.get("params") or {})},
        "training": training,
        "trainable": bool(facts["trainable"]),
    }


def plugin_facts(config: dict) -> dict[str, dict[str, Any]]:
    """Defaults, training defaults, trainability and display name of every method plugin
    (:mod:`mrbench.plugin_facts`: cached, so that parsing the workflow need not import torch)."""
    from mrbench.plugin_facts import method_facts

    return method_facts(config_plugin_paths(config))


def check_config(config: dict) -> None:
    """Raise :class:`ConfigError` naming the first bad key (schema checks come before this).

    The config's ``plugin_paths`` folders are imported first, so that their method and dataset
    plugins are known."""
    load_config_plugins(config)
    plugins = plugin_facts(config)
    known_training = training_defaults()
    if known_training:
        for key in config.get("training", {}) or {}:
            if key not in known_training:
                known = ", ".join(sorted(known_training))
                raise ConfigError(f"config key training.{key}: unknown; known: {known}")
    for name, entry in config["methods"].items():
        plugin = entry["plugin"]
        if plugin not in plugins:
            raise ConfigError(
                f"config key methods.{name}.plugin: unknown plugin {plugin!r}; "
                f"known: {', '.join(sorted(plugins))}"
            )
        defaults = plugins[plugin]["defaults"]
        for key in entry.get("params", {}) or {}:
            if key not in defaults:
                raise ConfigError(
                    f"config key methods.{name}.params.{key}: unknown parameter of plugin "
                    f"{plugin!r}; known: {', '.join(sorted(defaults)) or 'none'}"
                )
        if known_training:
            for key in entry.get("training", {}) or {}:
                if key not in known_training:
                    raise ConfigError(f"config key methods.{name}.training.{key}: unknown")
    known_eval = section_defaults("evaluation")
    for key in config.get("evaluation", {}) or {}:
        if key not in known_eval:
            raise ConfigError(
                f"config key evaluation.{key}: unknown; known: {', '.join(sorted(known_eval))}"
            )
    for dataset in config["datasets"]:
        dataset_kind_of(config, dataset)


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


def load_config_plugins(config: dict) -> None:
    """Import the plugin folders named by the config's ``plugin_paths``."""
    try:
        from mrbench.datasets.kind import dataset_kinds

        dataset_kinds(config_plugin_paths(config))
    except PluginError as exc:
        raise ConfigError(f"config key plugin_paths: {exc}") from None


def dataset_kind_of(config: dict, dataset: str) -> DatasetKind:
    """The plugin of a dataset entry (its ``kind``, default the dataset's name)."""
    kind = (config["datasets"][dataset] or {}).get("kind", dataset)
    try:
        return get_dataset_kind(kind, config_plugin_paths(config))
    except KeyError as exc:
        raise ConfigError(f"config key datasets.{dataset}: {exc.args[0]}") from None
    except PluginError as exc:
        raise ConfigError(f"config key plugin_paths: {exc}") from None


def subjects_of(dataset: str, cfg: dict, plugin_paths: list[str] | None = None) -> list[str] | None:
    """Subjects of a dataset as its kind lists them; ``None`` where the list is only known after
    acquisition (an import, or a checkpoint). ``cfg`` is the dataset's config entry."""
    settings = dataset_settings(dataset, cfg)
    config = {"datasets": {dataset: settings}, "plugin_paths": plugin_paths or []}
    return dataset_kind_of(config, dataset).subjects(dataset, settings)


def method_display_names(config: dict) -> dict[str, str]:
    """Name shown for each configured method in figures: the entry's ``label``, else the
    plugin's display name (its ``label()``), with the config name added where several entries
    share a plugin (ablation variants)."""
    facts = plugin_facts(config)
    plugins = [entry["plugin"] for entry in config["methods"].values()]
    names = {}
    for method, entry in config["methods"].items():
        if entry.get("label"):
            names[method] = entry["label"]
            continue
        shown = facts[entry["plugin"]]["display_name"]
        names[method] = shown if plugins.count(entry["plugin"]) == 1 else f"{shown} ({method})"
    return names


def train_device_flags(config: dict, gpus: int) -> str:
    """``mrbench train`` device options of a training job: ``--device auto`` where the job asks
    for GPUs (else ``cpu``), and ``--allow-cpu`` where the config lets such a job fall back to
    the CPU (``allow_cpu``; off for the paper setup)."""
    if not gpus:
        return "--device cpu"
    return "--device auto --allow-cpu" if config.get("allow_cpu") else "--device auto"


def resolved(config: dict) -> dict:
    """A deep copy of the config with every method entry resolved (for provenance files)."""
    out = copy.deepcopy(config)
    out["methods"] = {m: method_spec_dict(config, m) for m in config["methods"]}
    return out
