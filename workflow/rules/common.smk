# Small helpers shared by the rules: config checks, subject lists, paths and method specs.

import hashlib
import json
import os
import shlex
import sys
from pathlib import Path

from mrbench.config import facts_cache
from mrbench.config.resolve import (
    check_config,
    check_split_files,
    dataset_kind_of,
    job_environment,
    method_spec_dict,
    plugin_environment,
    split_file_of,
    train_device_flags,
)
from mrbench.config.pairs import (
    all_directions,
    dataset_directions,
    dataset_pairs,
    default_pair_of,
    pair_args,
    pair_of_tag,
)
from mrbench.datasets.kind import needed_contrasts
from mrbench.pairs import (
    directions_of,
    is_default,
    pair_of_direction,
    pair_tag,
    subject_files,
)
from mrbench.config.roster import roster_of
from mrbench.config.schema import dataset_settings
from mrbench.datasets.splits import read_splits

# The plugins' answers (config checks, resolved entries, roster) come from a cache keyed by the
# code's digest when nothing changed: reading the workflow then needs no torch (mrbench.config.facts_cache).
facts_cache.enable(".snakemake/mrbench", config)
check_config(config)
# Split files on every parse (never cached): an edited split must stop the run here, also where
# results exist (mrbench.config.resolve.check_split_files).
check_split_files(config)

# Rules run `python -m mrbench.cli` of this checkout (see mrbench.config.resolve.job_environment); every
# job imports the method plugins of the config's plugin_paths (mrbench.config.resolve.plugin_environment).
job_environment(workflow.basedir)
plugin_environment(config)
CONDA_ENV = "../../envs/mrbench.yaml"
# The methods as tables and figures see them: names, citations, roles (mrbench.config.roster).
ROSTER = roster_of(config)

RESULTS = "results"
DATASETS = list(config["datasets"])
METHODS = list(config["methods"])
SEEDS = [int(s) for s in config["seeds"]]
# Contrast pairs per dataset (``datasets.<name>.pairs``, default [[t1, t2]]) and the directions
# translated and evaluated on each: the config's ``directions`` where given, else both
# directions of every pair (mrbench.config.pairs).
PAIRS = {d: dataset_pairs(config, d) for d in DATASETS}
DATASET_DIRECTIONS = {d: dataset_directions(config, d) for d in DATASETS}
#: every direction run on some dataset (config order; the wildcard's values)
DIRECTIONS = all_directions(config)
#: folder names of the pairs other than T1w/T2w, whose models live one level deeper
PAIR_TAGS = sorted(
    {pair_tag(p) for ps in PAIRS.values() for p in ps if not is_default(p)}
)
THREADS = int(config.get("threads_per_job", 1))


wildcard_constraints:
    dataset="|".join(DATASETS),
    method="|".join(METHODS),
    seed=r"\d+",
    direction="|".join(DIRECTIONS),
    pair_tag="|".join(PAIR_TAGS) or "(?!)",
    split="train|val|test",
    subject=r"[A-Za-z0-9_\-]+",


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
    settings = dataset_cfg(dataset)
    subjects = kind.subjects(dataset, settings)
    if subjects is None and kind.split_checkpoint:
        split = getattr(checkpoints, kind.split_checkpoint).get().output.split
        subjects = sorted(read_splits(split)["subject"])
    if subjects is None:
        return [f"{RESULTS}/data/{dataset}/subjects"]
    return expand(
        f"{RESULTS}/data/{dataset}/subjects/{{subject}}/{{mod}}.nii.gz",
        subject=subjects,
        mod=subject_files(needed_contrasts(kind, settings, dataset)),
    )


def method_spec(method):
    """The resolved method entry (plugin, params, training) as a JSON string (quoted by the
    rule's ``{params.spec:q}``)."""
    return json.dumps(method_spec_dict(config, method), sort_keys=True)


def split_digest(dataset):
    """sha256 of the dataset's split file, a parameter of its training jobs: Snakemake's params
    trigger then reruns training when the split changes, whatever the files' times say (the
    trainer resumes only where its train and val data are unchanged, by its own digest). Kinds
    whose split their own rules write are followed through the slice stores."""
    if dataset_kind_of(config, dataset).acquisition != "subject":
        return ""
    path = Path(split_file_of(dataset, dataset_cfg(dataset)))
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def gpu_for(method):
    """Training rules ask for a GPU only for trainable methods and where configured."""
    return train_gpus(method_spec_dict(config, method), config)


# ---- the results layout: every result path, defined here once (rules and the library get paths)
# models of the T1w/T2w pair (the paper's layout); the other pairs' one level deeper, per pair
MODEL = f"{RESULTS}/models/{{dataset}}/{{method}}/seed{{seed}}/model.pt"
PAIR_MODEL = (
    f"{RESULTS}/models/{{dataset}}/{{method}}/seed{{seed}}/{{pair_tag}}/model.pt"
)
SLICE_STORE = f"{RESULTS}/data/{{dataset}}/slices/{{split}}"
PREDICTIONS = f"{RESULTS}/predictions/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}"
METRICS = f"{RESULTS}/metrics/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.csv"
FIDELITY = f"{RESULTS}/fidelity/{{dataset}}/{{method}}/seed{{seed}}/{{direction}}.json"
TABLES_DIR = f"{RESULTS}/tables"
FIGURES_DIR = f"{RESULTS}/figures"
TIDY = f"{TABLES_DIR}/results_tidy.csv.gz"
ROSTER_FILE = f"{TABLES_DIR}/methods.json"
# one folder per dataset: "<dataset>_<method>" would give (phantom, x_mguit) and (phantom_x, mguit)
# the same file
CONTENT_MAPS = f"{FIGURES_DIR}/content_maps/{{dataset}}/{{method}}.png"
FIRST_SEED = SEEDS[0]


def fill(template, **values):
    """``template`` with the given wildcards filled in; the others stay wildcards."""
    return expand(template, **{k: [v] for k, v in values.items()}, allow_missing=True)[
        0
    ]


TEST_STORE = fill(SLICE_STORE, split="test")


def model_of_pair(dataset, pair, method="{method}", seed="{seed}"):
    """The model file of one pair of a dataset: the paper's layout for T1w/T2w, else one
    folder per pair (``.../seed0/t2-flair/model.pt``)."""
    if is_default(pair):
        return fill(MODEL, dataset=dataset, method=method, seed=seed)
    return fill(
        PAIR_MODEL, dataset=dataset, method=method, seed=seed, pair_tag=pair_tag(pair)
    )


def train_pair(w):
    """The pair a training job trains: its ``pair_tag`` wildcard's (rule `train_pair`), else
    the dataset's T1w/T2w pair as configured (rule `train`)."""
    tag = w.get("pair_tag")
    if tag is None:
        return default_pair_of(PAIRS[w.dataset])
    return pair_of_tag(tag, PAIRS[w.dataset])


def model_of_direction(w):
    """Input function: the model that translates ``w.direction`` on ``w.dataset`` (that of the
    configured pair holding the direction)."""
    pair = pair_of_direction(w.direction, PAIRS[w.dataset])
    return model_of_pair(w.dataset, pair, w.method, w.seed)


def pair_directions(dataset, pair):
    """The directions of one pair run on a dataset (every configured pair has at least one:
    mrbench.config.pairs.check_pairs)."""
    return [d for d in DATASET_DIRECTIONS[dataset] if d in directions_of(pair)]


def _per_direction(template):
    return [
        fill(template, dataset=d, method=m, seed=s, direction=r)
        for d in DATASETS
        for m in METHODS
        for s in SEEDS
        for r in DATASET_DIRECTIONS[d]
    ]


def all_models():
    return [
        model_of_pair(d, p, m, s)
        for d in DATASETS
        for m in METHODS
        for s in SEEDS
        for p in PAIRS[d]
    ]


def all_predictions():
    return _per_direction(PREDICTIONS)


def all_metrics():
    return _per_direction(METRICS)


def all_fidelity():
    return _per_direction(FIDELITY)


def table_names():
    names = ["methods", "table1", "table2_ablation", "paper_comparison", "significance"]
    names += ["efficiency", "recipes", "protocols", "pairs"]
    return names + (["fidelity"] if EVAL["fid"]["enabled"] else [])


def table_files():
    out = expand(
        f"{TABLES_DIR}/{{name}}.{{ext}}", name=table_names(), ext=["csv", "md", "tex"]
    )
    return out + [TIDY, f"{TABLES_DIR}/summary.csv"]


def content_map_methods():
    """Methods offering the content_maps capability with their parameters (Fig. 3 each)."""
    return ROSTER.with_capability("content_maps")


def figure_files():
    """Per dataset: a qualitative grid per direction run, one box plot (every direction),
    training curves and content maps per pair: the T1w/T2w pair's under today's names, the
    other pairs' with the pair tag (``training_curves_phantom_t2-flair``,
    ``content_maps/phantom/disdiff_t2-flair.png``)."""
    out = []
    for d in DATASETS:
        out += expand(
            f"{FIGURES_DIR}/qualitative_{d}_{{direction}}.{{ext}}",
            direction=DATASET_DIRECTIONS[d],
            ext=["png", "pdf"],
        )
        out += expand(f"{FIGURES_DIR}/boxplot_{d}.{{ext}}", ext=["png", "pdf"])
        for p in PAIRS[d]:
            tag = "" if is_default(p) else f"_{pair_tag(p)}"
            curves = f"training_curves_{d}{tag}"
            out += expand(f"{FIGURES_DIR}/{curves}.{{ext}}", ext=["png", "pdf"])
            maps = CONTENT_MAPS if is_default(p) else PAIR_CONTENT_MAPS
            out += expand(
                maps,
                dataset=[d],
                method=content_map_methods(),
                pair_tag=[pair_tag(p)],
                allow_missing=True,
            )
    return out + expand(f"{FIGURES_DIR}/protocols_tau.{{ext}}", ext=["png", "pdf"])


def data_qc_files():
    """Quality-control tables of the preprocessing (IXI: registration, brain volume)."""
    return [f"{RESULTS}/data/ixi/qc.tsv"] if "ixi" in DATASETS else []


def get_final_output():
    """Every final output of the benchmark: tables (CSV, Markdown, LaTeX) and figures (PNG,
    PDF). Their inputs pull in the whole DAG: data, training, translation and metrics of every
    dataset x method x seed x direction of the config."""
    return table_files() + figure_files() + data_qc_files()


def efficiency_runs():
    """``--run DATASET SEED MODEL PREDICTION...`` for every training run (efficiency table), as
    an argument list (each quoted by `{params.runs:q}`): one run per dataset x method x seed x
    pair, with the predictions of the pair's directions (the model file records its pair).
    """
    args = []
    for d in DATASETS:
        for m in METHODS:
            for s in SEEDS:
                for p in PAIRS[d]:
                    preds = [
                        fill(PREDICTIONS, dataset=d, method=m, seed=s, direction=r)
                        for r in pair_directions(d, p)
                    ]
                    args += ["--run", d, str(s), model_of_pair(d, p, m, s), *preds]
    return args


# ---- used by evaluate.smk
from mrbench.config.evaluation import evaluation_settings
from mrbench.evaluation.scoring import config_hash

EVAL = evaluation_settings(config)


# ---- used by train.smk
from mrbench.config.resolve import method_spec_dict
from mrbench.config.resources import (
    eval_device,
    eval_gpus,
    train_gpus,
    train_launcher,
    train_mem_mb,
    train_runtime_minutes,
    translate_runtime_minutes,
)


def _train_spec(method, input=None):
    """The method's spec; once the job's slice store exists, epochs converted to steps for the
    runtime estimate (a dry run before the data exists sees the configured steps)."""
    spec = method_spec_dict(config, method)
    store = Path(input.train) if input is not None else None
    if (
        store is not None
        and (store / "index.tsv").exists()
        and spec["training"].get("epochs")
    ):
        from mrbench.slices import SliceStore
        from mrbench.training.settings import capped_length, steps_for_epochs

        n = len(SliceStore(store))
        t = spec["training"]
        t.update(capped_length(t, steps_for_epochs(t["epochs"], n, t["batch_size"])))
    return spec


def _train_store_mb(input):
    return sum(f.stat().st_size for f in Path(input.train).glob("*.npy")) / 2**20


def _store_slices(folder):
    """Slices of a slice store once it exists (rows of its index), else None (a dry run)."""
    index = Path(folder) / "index.tsv"
    if not index.exists():
        return None
    with index.open() as f:
        return max(1, sum(1 for _ in f) - 1)


def _translate_runtime(w, input, attempt):
    """Wall time of a translate job from the plugin's translation cost and the test split."""
    return translate_runtime_minutes(
        method_spec_dict(config, w.method),
        dataset_cfg(w.dataset)["image_size"],
        _store_slices(input.store),
        attempt,
    )


# ---- used by report.smk
from mrbench.pairs import pair_label
from mrbench.reporting.recipes_table import selection_note

# argument lists: every value is quoted on its own by the rules' `{params.x:q}`
TABLE_ARGS = [
    "--protocol",
    EVAL["table_protocol"],
    "--psnr",
    EVAL["table_psnr"],
    "--ssim",
    EVAL["table_ssim"],
    "--roster",
    ROSTER_FILE,
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
        m: fill(
            PREDICTIONS,
            dataset=w.dataset,
            method=m,
            seed=FIRST_SEED,
            direction=w.direction,
        )
        for m in ROSTER.order
    }


def qualitative_pairs(w):
    return [
        f"{ROSTER.label(m)}={path}" for m, path in qualitative_predictions(w).items()
    ]


def curve_title(w):
    """The training curves' title: the dataset, with the pair's contrasts for a pair other than
    T1w/T2w (rule `figure_training_curves_pair`)."""
    tag = w.get("pair_tag")
    if tag is None:
        return w.dataset
    return f"{w.dataset} {pair_label(pair_of_tag(tag, PAIRS[w.dataset]))}"


def curve_runs(w, input):
    """``LABEL=run folder`` of every method (the folder of its model.pt)."""
    return [
        f"{ROSTER.label(m)}={os.path.dirname(path)}"
        for m, path in zip(METHODS, input, strict=True)
    ]


# ---- used by ixi.smk
from mrbench.datasets import ixi as _ixi
from mrbench.datasets.splits import read_splits

IXI_CFG = dataset_settings("ixi", config["datasets"].get("ixi"))
IXI_RES = "resources/ixi"
IXI_SPLIT = split_file_of("ixi", IXI_CFG)
IXI_SPLIT_COMMITTED = Path(IXI_SPLIT).exists()


def _ixi_md5(modality):
    md5 = IXI_CFG.get("md5") or {}
    return (
        md5.get(modality, _ixi.MD5[modality])
        if isinstance(md5, dict)
        else _ixi.MD5[modality]
    )


def _ixi_preprocess_flags():
    """Preprocessing options as an argument list (each quoted by `{params.flags:q}`)."""
    flags = ["--registration", IXI_CFG["registration"]]
    if IXI_CFG["n4"]:
        flags.append("--n4")
    if not IXI_CFG["skull_strip"]:
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


# ---- used by data.smk
from mrbench.datasets.kind import needed_contrasts as _needed_contrasts
from mrbench.pairs import subject_files as _subject_files


def dataset_contrasts(dataset):
    """The contrasts a dataset's subjects and slice store hold: those of its pairs, plus its
    kind's reference (mrbench.datasets.kind.needed_contrasts)."""
    kind = dataset_kind_of(config, dataset)
    return _needed_contrasts(kind, dataset_cfg(dataset), dataset)


def _subject_rule_groups():
    """Datasets acquired subject by subject, grouped by the contrasts they write: one rule per
    group, since a rule's outputs are fixed when the workflow is read. The group writing T1w and
    T2w keeps the rule name `dataset_subject`."""
    groups = {("t1", "t2"): []}  # the rule `dataset_subject` exists whatever the config
    for d in SUBJECT_DATASETS:
        groups.setdefault(dataset_contrasts(d), []).append(d)
    return groups
