# Small helpers shared by the rules: config checks, subject lists, paths and method specs.

import json
import os
import shlex
import sys
from pathlib import Path

from mrbench.config import (
    check_config,
    job_environment,
    method_spec_dict,
    split_file_of,
    subjects_of,
)
from mrbench.evaluate import report_targets

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


def dataset_cfg(dataset):
    return config["datasets"][dataset]


def subject_volumes(dataset):
    """Preprocessed volumes of every subject of a dataset (from its split file); for imported
    datasets (BraTS, MSD) the import rule's folder of subjects."""
    if subjects_of(dataset, dataset_cfg(dataset)) is None:
        if dataset == "ixi":
            return ixi_subject_volumes()  # after the ixi_split checkpoint (ixi.smk)
        return [f"{RESULTS}/data/{dataset}/subjects"]
    return expand(
        f"{RESULTS}/data/{dataset}/subjects/{{subject}}/{{mod}}.nii.gz",
        subject=subjects_of(dataset, dataset_cfg(dataset)),
        mod=["t1", "t2", "mask"],
    )


def method_spec(method):
    """The resolved method entry (plugin, params, training) as a JSON string (quoted by the
    rule's ``{params.spec:q}``)."""
    return json.dumps(method_spec_dict(config, method), sort_keys=True)


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
# argument lists: every value is quoted on its own by the rules' `{params.x:q}`
TABLE_ARGS = [
    "--protocol",
    EVAL["table_protocol"],
    "--psnr",
    EVAL["table_psnr"],
    "--ssim",
    EVAL["table_ssim"],
]


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


def qualitative_predictions(w):
    return {
        m: f"{RESULTS}/predictions/{w.dataset}/{m}/seed{FIRST_SEED}/{w.direction}"
        for m in METHODS
    }


def qualitative_pairs(w):
    return [
        f"{config['methods'][m].get('label', m)}={path}"
        for m, path in qualitative_predictions(w).items()
    ]


# ---- used by ixi.smk
from mrbench.datasets import ixi as _ixi
from mrbench.splits import read_splits

IXI_CFG = config["datasets"].get("ixi", {})
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
    """Preprocessing options as an argument list (each quoted by `{params.flags:q}`)."""
    flags = ["--registration", IXI_CFG.get("registration", "rigid")]
    if IXI_CFG.get("n4", False):
        flags.append("--n4")
    if not IXI_CFG.get("skull_strip", True):
        flags.append("--skull-stripped")
    if IXI_CFG.get("target_spacing"):
        flags += ["--target-spacing", IXI_CFG["target_spacing"]]
    return flags


def ixi_subjects():
    """Subjects of the IXI split: from the split file when it exists (committed or made by an
    earlier run), otherwise after the `ixi_split` checkpoint has read the archives."""
    if Path(IXI_SPLIT).exists():
        return sorted(read_splits(IXI_SPLIT)["subject"])
    return sorted(read_splits(checkpoints.ixi_split.get().output.split)["subject"])


def ixi_subject_volumes(wildcards=None):
    """{t1,t2,mask}.nii.gz of every selected IXI subject (input function for `slices`)."""
    return expand(
        f"{RESULTS}/data/ixi/subjects/{{subject}}/{{mod}}.nii.gz",
        subject=ixi_subjects(),
        mod=["t1", "t2", "mask"],
    )
