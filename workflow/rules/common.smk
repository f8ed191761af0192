# Small helpers shared by the rules: config checks, subject lists, paths and method specs.

import json
import os
import shlex
import sys
from pathlib import Path

from mrbench.config import check_config, method_spec_dict, subjects_of, split_file_of
from mrbench.evaluate import report_targets

check_config(config)

# Rules call the `mrbench` command of the Python environment that runs Snakemake, also when that
# environment is not activated (e.g. `.venv/bin/snakemake ...`).
os.environ["PATH"] = os.pathsep.join(
    [str(Path(sys.executable).parent), os.environ["PATH"]]
)

RESULTS = "results"
DATASETS = list(config["datasets"])
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]
DIRECTIONS = list(config["directions"])
THREADS = int(config.get("threads_per_job", 1))


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(METHODS),
    seed=r"\d+",
    direction="t1_to_t2|t2_to_t1",
    split="train|val|test",
    subject=r"[A-Za-z0-9_\-]+",


def dataset_cfg(dataset):
    return config["datasets"][dataset]


def subject_volumes(dataset):
    """Preprocessed volumes of every subject of a dataset (from its split file); for imported
    datasets (BraTS, MSD) the import rule's folder of subjects."""
    if subjects_of(dataset, dataset_cfg(dataset)) is None:
        return [f"{RESULTS}/data/{dataset}/subjects"]
    return expand(
        f"{RESULTS}/data/{dataset}/subjects/{{subject}}/{{mod}}.nii.gz",
        subject=subjects_of(dataset, dataset_cfg(dataset)),
        mod=["t1", "t2", "mask"],
    )


def method_spec(method):
    """The resolved method entry (plugin, params, training) as a shell-quoted JSON string."""
    return shlex.quote(json.dumps(method_spec_dict(config, method), sort_keys=True))


def gpu_for(method):
    """Training rules ask for a GPU only for trainable methods and where configured."""
    if not config.get("gpu_resource", True):
        return 0
    spec = method_spec_dict(config, method)
    return int(spec["training"].get("gpus_per_job", 1)) if spec["trainable"] else 0


def all_targets():
    return report_targets(config)
