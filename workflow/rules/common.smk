# Small helpers shared by the rules: config checks, subject lists, paths and method specs.

import json
import os
import shlex
import sys
from pathlib import Path

from mrbench.config import (
    check_config,
    dataset_kind_of,
    job_environment,
    method_display_names,
    method_spec_dict,
    split_file_of,
    train_device_flags,
)
from mrbench.datasets.kind import VOLUMES
from mrbench.evaluate import report_targets
from mrbench.plugins import config_plugin_paths
from mrbench.schema import dataset_settings
from mrbench.splits import read_splits

check_config(config)

# Rules run `python -m mrbench.cli` of this checkout (see mrbench.config.job_environment).
job_environment(workflow.basedir)
CONDA_ENV = "../../envs/mrbench.yaml"

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


PLUGIN_PATHS = config_plugin_paths(config)
#: datasets whose kind acquires subject by subject through the generic `dataset_subject` rule
SUBJECT_DATASETS = [
    d for d in DATASETS if dataset_kind_of(config, d).acquisition == "subject"
]


def dataset_cfg(dataset):
    """The dataset's config entry over the schema defaults of its kind."""
    return dataset_settings(dataset, config["datasets"][dataset])


def subject_volumes(dataset):
    """Volumes of every subject of a dataset, as its kind lists them: from the kind's subject
    list, from its split checkpoint once that has run, or (kinds imported at once) the import
    rule's folder of subjects."""
    kind = dataset_kind_of(config, dataset)
    subjects = kind.subjects(dataset, dataset_cfg(dataset))
    if subjects is None and kind.split_checkpoint:
        split = getattr(checkpoints, kind.split_checkpoint).get().output.split
        subjects = sorted(read_splits(split)["subject"])
    if subjects is None:
        return [f"{RESULTS}/data/{dataset}/subjects"]
    return expand(
        f"{RESULTS}/data/{dataset}/subjects/{{subject}}/{{mod}}.nii.gz",
        subject=subjects,
        mod=VOLUMES,
    )


def plugin_path_flags():
    return " ".join(f"--plugin-path {shlex.quote(p)}" for p in PLUGIN_PATHS)


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


# ---- used by evaluate.smk
from mrbench.evaluate import config_hash, evaluation_settings

EVAL = evaluation_settings(config)


# ---- used by train.smk
from mrbench.config import method_spec_dict
from mrbench.resources import train_launcher, train_mem_mb, train_runtime_minutes


def _train_spec(method):
    return method_spec_dict(config, method)


def _train_store_mb(input):
    return sum(f.stat().st_size for f in Path(input.train).glob("*.npy")) / 2**20


# ---- used by report.smk
from mrbench.evaluate import fidelity_files, metrics_files, model_files, prediction_dirs

TABLES_DIR = f"{RESULTS}/tables"
FIGURES_DIR = f"{RESULTS}/figures"
TIDY = f"{TABLES_DIR}/results_tidy.csv.gz"
FIRST_SEED = SEEDS[0]
TABLE_ARGS = (
    f"--protocol {EVAL['table_protocol']} --psnr {EVAL['table_psnr']}"
    f" --ssim {EVAL['table_ssim']}"
)


def table_outputs(name, caption, subcategory):
    """CSV, Markdown and LaTeX of one table, each a report item."""
    return {
        fmt: report(
            f"{TABLES_DIR}/{name}.{fmt}",
            caption=f"../report/{caption}.rst",
            category="Tables",
            subcategory=subcategory,
            labels={"table": subcategory, "format": fmt},
        )
        for fmt in ("csv", "md", "tex")
    }


def figure_outputs(prefix, caption, category, labels):
    return {
        fmt: report(
            f"{FIGURES_DIR}/{prefix}.{fmt}",
            caption=f"../report/{caption}.rst",
            category=category,
            labels={**labels, "format": fmt},
        )
        for fmt in ("png", "pdf")
    }


def method_label_flags():
    """`--label METHOD=display name` of every method, for the figures."""
    names = method_display_names(config)
    return "--label " + " ".join(shlex.quote(f"{m}={names[m]}") for m in METHODS)


def qualitative_predictions(w):
    return {
        m: f"{RESULTS}/predictions/{w.dataset}/{m}/seed{FIRST_SEED}/{w.direction}"
        for m in METHODS
    }


def qualitative_pairs(w):
    return " ".join(
        shlex.quote(f"{config['methods'][m].get('label', m)}={path}")
        for m, path in qualitative_predictions(w).items()
    )


# ---- used by ixi.smk
from mrbench.datasets import ixi as _ixi
from mrbench.splits import read_splits

IXI_CFG = dataset_settings("ixi", config["datasets"].get("ixi"))
IXI_RES = "resources/ixi"
IXI_SPLIT = split_file_of("ixi", IXI_CFG)


def _ixi_md5(modality):
    md5 = IXI_CFG.get("md5") or {}
    return (
        md5.get(modality, _ixi.MD5[modality])
        if isinstance(md5, dict)
        else _ixi.MD5[modality]
    )


def _ixi_preprocess_flags():
    flags = [f"--registration {IXI_CFG['registration']}"]
    if IXI_CFG["n4"]:
        flags.append("--n4")
    if not IXI_CFG["skull_strip"]:
        flags.append("--skull-stripped")
    if IXI_CFG.get("target_spacing"):
        flags.append(f"--target-spacing {IXI_CFG['target_spacing']}")
    return " ".join(flags)


def ixi_subjects():
    """Subjects of the IXI split: from the split file when it exists (committed or made by an
    earlier run), otherwise after the `ixi_split` checkpoint has read the archives."""
    if Path(IXI_SPLIT).exists():
        return sorted(read_splits(IXI_SPLIT)["subject"])
    return sorted(read_splits(checkpoints.ixi_split.get().output.split)["subject"])
