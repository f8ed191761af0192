"""``mrbench report``: the tidy results table, tables and figures, one subcommand each.

The workflow's report rules call these; each can be rerun by hand on existing results::

    mrbench report tidy --inputs results/metrics/*/*/*/*.csv \\
        --out results/tables/results_tidy.csv.gz
    mrbench report table1 --tidy results/tables/results_tidy.csv.gz --out results/tables/table1 \\
        --roster results/tables/methods.json
    mrbench report table2 | compare | significance | pairs  (same arguments)
    mrbench report efficiency --run ixi 0 results/models/ixi/<method>/seed0/model.pt \\
        results/predictions/ixi/<method>/seed0/t1_to_t2 ... --roster ... --out ...
    mrbench report qualitative --store results/data/ixi/slices/test --direction t1_to_t2 \\
        --pred LABEL=results/predictions/ixi/<method>/seed0/t1_to_t2 ... --out ...
    (any contrast direction the store holds: --direction t2_to_flair, ...)
    mrbench report boxplot --tidy ... --dataset ixi --out results/figures/boxplot_ixi
    mrbench report curves --run <method>=results/models/ixi/<method>/seed0 ... --out ...
    mrbench report fidelity-split --pred-dir ... --store ... --direction ... --out x.json
    mrbench report fidelity --inputs results/fidelity/*/*/*/*.json --out results/tables/fidelity
    mrbench report protocols --tidy ... --out results/tables/protocols \\
        --figure results/figures/protocols_tau

``--out`` is a prefix: tables get .csv, .md and .tex, figures .png and .pdf. ``--roster`` is the
run's ``methods.json`` (written by ``mrbench report methods``, see :mod:`mrbench.config.roster`):
which methods form which table, their order, names and citations; without it every method found is a
Table 1 row under its config name.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from mrbench.cli.metrics import contrast_direction
from mrbench.io import InputError, atomic_path
from mrbench.reporting.render import write_table


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tidy", required=True, help="tidy results table (results_tidy.csv.gz)")
    p.add_argument("--out", required=True, help="output prefix (.csv, .md, .tex are added)")
    p.add_argument("--protocol", default="max01", help="metric protocol (default max01)")
    p.add_argument("--psnr", default="psnr", help="metric shown as PSNR (e.g. psnr_brain)")
    p.add_argument("--ssim", default="ssim", help="metric shown as SSIM (e.g. ssim_gauss)")
    _roster_arg(p)


def _roster_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--roster", default=None, help="the run's methods.json (mrbench.config.roster)")


def _roster_and_out(p: argparse.ArgumentParser) -> None:
    """``--roster`` and the ``--out`` prefix of a table built from other files than the tidy one."""
    _roster_arg(p)
    p.add_argument("--out", required=True, help="output prefix (.csv, .md, .tex are added)")


def _plugin_label(method: str) -> str:
    """A method's label without a roster: its plugin's display name where the config name is a
    plugin's, else the name."""
    from mrbench_methods import get_plugin

    try:
        return get_plugin(method).label()
    except (KeyError, ValueError):
        return method


def _read_roster(path: str | None):
    from mrbench.config.roster import read_roster

    return read_roster(path) if path else None


def _pairs(values: list[str] | None, flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values or []:
        if "=" not in v:
            raise InputError(f"{flag} {v!r}: expected NAME=PATH")
        name, path = v.split("=", 1)
        out.append((name, path))
    return out


def _summary(tidy_path: str) -> pd.DataFrame:
    from mrbench.evaluation.scoring import read_tidy
    from mrbench.evaluation.stats import summarise

    return summarise(read_tidy(tidy_path))


AddArguments = Callable[[argparse.ArgumentParser], None]
RunAction = Callable[[argparse.Namespace], None]

#: action -> (one-line help, add its arguments, run it), in the order ``--help`` lists them
ACTIONS: dict[str, tuple[str, AddArguments, RunAction]] = {}


def _action(name: str, help_text: str, add: AddArguments) -> Callable[[RunAction], RunAction]:
    """Register the decorated function as the runner of action ``name``."""

    def register(run: RunAction) -> RunAction:
        ACTIONS[name] = (help_text, add, run)
        return run

    return register


def _add_tidy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True, help="metrics CSV files")
    p.add_argument("--out", required=True, help="tidy table (.csv or .csv.gz)")
    p.add_argument("--summary", help="also write mean/std per group (summary.csv)")


@_action("tidy", "concatenate metrics files into the tidy results table", _add_tidy)
def _run_tidy(args: argparse.Namespace) -> None:
    from mrbench.evaluation.scoring import read_tidy
    from mrbench.io import write_csv

    df = read_tidy(args.inputs)
    write_csv(df, args.out)
    if args.summary:
        from mrbench.evaluation.stats import summarise

        write_csv(summarise(df), args.summary)
    print(f"{args.out}: {len(df)} rows from {len(args.inputs)} files")


def _add_methods(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--roster-json", required=True, help="the roster as JSON (mrbench.config.roster)"
    )
    p.add_argument("--json", required=True, help="where to write methods.json")
    p.add_argument("--out", required=True, help="output prefix of the methods table")


@_action("methods", "the run's roster (methods.json) and its methods table", _add_methods)
def _run_methods(args: argparse.Namespace) -> None:
    from mrbench.config.roster import Roster
    from mrbench.reporting.methods_table import methods_table

    try:
        roster = Roster.from_dict(json.loads(args.roster_json))
    except (ValueError, KeyError, TypeError) as exc:
        raise InputError(f"--roster-json: not a method roster ({exc})") from None
    doc, df = methods_table(roster)
    write_table(doc, df, args.out)
    roster.write(args.json)


def _add_table1(p: argparse.ArgumentParser) -> None:
    _table_args(p)
    p.add_argument("--note", action="append", default=[], help="an extra footnote")
    p.add_argument(
        "--model",
        nargs="*",
        default=[],
        help="model.pt files of the runs: a footnote names those whose translators collapsed",
    )


@_action("table1", "Table 1: methods x datasets x directions, PSNR/SSIM", _add_table1)
def _run_table1(args: argparse.Namespace) -> None:
    from mrbench.reporting.benchmark_tables import table1
    from mrbench.reporting.train_logs import collapse_note

    roster = _read_roster(args.roster)
    doc, df = table1(_summary(args.tidy), args.protocol, args.psnr, args.ssim, roster)
    doc.notes += args.note
    label = roster.label if roster is not None else _plugin_label
    if (note := collapse_note([Path(m) for m in args.model], label)) is not None:
        doc.notes.append(note)
    write_table(doc, df, args.out)


@_action("pairs", "every method on every contrast pair run, PSNR/SSIM", _table_args)
def _run_pairs(args: argparse.Namespace) -> None:
    from mrbench.reporting.pairs_table import pairs_table

    roster = _read_roster(args.roster)
    doc, df = pairs_table(_summary(args.tidy), args.protocol, args.psnr, args.ssim, roster)
    write_table(doc, df, args.out)


@_action("table2", "Table 2: ablation of the roster's ablation variants", _table_args)
def _run_table2(args: argparse.Namespace) -> None:
    from mrbench.reporting.benchmark_tables import table2

    roster = _read_roster(args.roster)
    doc, df = table2(_summary(args.tidy), args.protocol, args.psnr, args.ssim, roster)
    write_table(doc, df, args.out)


@_action(
    "compare", "reproduced vs reported numbers of the DisDiff paper (via paper_row)", _table_args
)
def _run_compare(args: argparse.Namespace) -> None:
    from mrbench.reporting.paper import paper_comparison

    doc, df = paper_comparison(
        _summary(args.tidy), _read_roster(args.roster), args.protocol, args.psnr, args.ssim
    )
    write_table(doc, df, args.out)


def _add_significance(p: argparse.ArgumentParser) -> None:
    _table_args(p)
    p.add_argument(
        "--reference",
        default=None,
        help="method tested against every other one (default: the roster's reference)",
    )
    p.add_argument("--alpha", type=float, default=0.05, help="significance level (default 0.05)")


@_action(
    "significance", "Wilcoxon tests of the reference method against the others", _add_significance
)
def _run_significance(args: argparse.Namespace) -> None:
    from mrbench.evaluation.scoring import read_tidy
    from mrbench.evaluation.stats import wilcoxon_table
    from mrbench.reporting.labels import default_pair_only
    from mrbench.reporting.significance import significance_table, supervised_left_out

    roster = _read_roster(args.roster)
    reference = args.reference or (roster.reference if roster else None)
    if not reference:
        raise InputError("significance: no reference method (--reference or a roster's)")
    tidy = default_pair_only(read_tidy(args.tidy))  # Table 1's pair; the CSV too
    skip = supervised_left_out(roster, list(dict.fromkeys(tidy["method"])), reference)
    tests = wilcoxon_table(tidy[~tidy["method"].isin(skip)], reference, args.alpha)
    metrics = [args.psnr, args.ssim]
    doc = significance_table(tests, args.protocol, metrics, reference, roster, skip)
    write_table(doc, tests, args.out)


def _add_recipes(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", nargs="+", required=True, help="results/models/.../model.pt files")
    p.add_argument("--out", required=True, help="output prefix (.csv, .md and .tex are written)")


@_action("recipes", "training recipes as run, from each run's spec.json", _add_recipes)
def _run_recipes(args: argparse.Namespace) -> None:
    from mrbench.reporting.recipes_table import recipe_table

    doc, df = recipe_table([Path(m).parent / "spec.json" for m in args.model])
    write_table(doc, df, args.out)


def _add_efficiency(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--run",
        nargs="+",
        action="append",
        required=True,
        metavar="ITEM",
        help="one training run: DATASET SEED MODEL.pt [PREDICTION_FOLDER ...] (repeatable)",
    )
    p.add_argument("--threshold", type=float, default=None, help="validation PSNR threshold")
    _roster_and_out(p)


@_action("efficiency", "parameters, throughput, time to threshold, inference", _add_efficiency)
def _run_efficiency(args: argparse.Namespace) -> None:
    from mrbench.reporting.efficiency import efficiency, run_facts

    facts = []
    for item in args.run:
        if len(item) < 3:
            raise InputError(f"--run {' '.join(item)}: expected DATASET SEED MODEL [PRED ...]")
        dataset, seed, model, *preds = item
        try:
            seed_value = int(seed)
        except ValueError:
            msg = f"--run {' '.join(item)}: seed {seed!r} is not an integer"
            raise InputError(msg) from None
        facts.append(run_facts(model, preds, dataset=dataset, seed=seed_value))
    doc, df = efficiency(facts, args.threshold, roster=_read_roster(args.roster))
    write_table(doc, df, args.out)


def _add_qualitative(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", required=True, help="test split of the slice store")
    p.add_argument(
        "--direction",
        required=True,
        type=contrast_direction,
        help="translation shown, <source>_to_<target> (e.g. t2_to_flair)",
    )
    p.add_argument("--pred", nargs="+", required=True, help="LABEL=prediction folder")
    p.add_argument("--subject", default=None, help="test subject (default: the first)")
    p.add_argument("--slice", type=int, default=None, help="slice index (default: the middle)")
    p.add_argument("--title", default="", help="figure title (default: direction and slice)")
    p.add_argument("--out", required=True, help="output prefix (.png and .pdf are added)")


@_action("qualitative", "Fig. 2-style grid of one test slice", _add_qualitative)
def _run_qualitative(args: argparse.Namespace) -> None:
    from mrbench.reporting.figures import qualitative_grid

    qualitative_grid(
        args.store,
        args.direction,
        _pairs(args.pred, "--pred"),
        args.out,
        subject=args.subject,
        slice_index=args.slice,
        title=args.title,
    )


def _add_boxplot(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tidy", required=True, help="tidy results table (results_tidy.csv.gz)")
    p.add_argument("--dataset", required=True, help="dataset whose subjects are plotted")
    p.add_argument("--protocol", default="max01", help="metric protocol (default max01)")
    p.add_argument(
        "--metrics", nargs="+", default=["psnr", "ssim", "mae"], help="one panel column each"
    )
    _roster_arg(p)
    p.add_argument(
        "--label",
        nargs="*",
        default=[],
        help="METHOD=display name (repeatable; over the roster's names)",
    )
    p.add_argument("--out", required=True, help="output prefix (.png and .pdf are added)")


@_action("boxplot", "per-subject box plots per metric", _add_boxplot)
def _run_boxplot(args: argparse.Namespace) -> None:
    from mrbench.evaluation.scoring import read_tidy
    from mrbench.evaluation.stats import subject_means
    from mrbench.reporting.figures import boxplots
    from mrbench.reporting.labels import dataset_label

    tidy = read_tidy(args.tidy)
    tidy = tidy[tidy["dataset"] == args.dataset]
    title = f"{dataset_label(args.dataset)}: per-subject means ({args.protocol})"
    roster = _read_roster(args.roster)
    order = roster.order if roster else None
    labels = {**(roster.labels() if roster else {}), **dict(_pairs(args.label, "--label"))}
    boxplots(subject_means(tidy), args.out, args.protocol, args.metrics, title, order, labels)


def _add_curves(p: argparse.ArgumentParser) -> None:
    p.add_argument("--run", nargs="+", required=True, help="METHOD=run folder")
    p.add_argument("--label", nargs="*", default=[], help="METHOD=display name (repeatable)")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--out", required=True, help="output prefix (.png and .pdf are added)")


@_action("curves", "training losses and validation PSNR per method", _add_curves)
def _run_curves(args: argparse.Namespace) -> None:
    from mrbench.reporting.figures import training_curves

    labels = dict(_pairs(args.label, "--label"))
    training_curves(_pairs(args.run, "--run"), args.out, args.title, labels)


def _add_fidelity_split(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pred-dir", required=True, help="folder of translated test volumes")
    p.add_argument("--store", required=True, help="test split of the slice store")
    p.add_argument(
        "--direction",
        required=True,
        type=contrast_direction,
        help="translation, <source>_to_<target> (e.g. t2_to_flair)",
    )
    p.add_argument(
        "--feature-extractor",
        default="inception-v3-compat",
        help="feature network (mrbench-randconv: offline, NOT comparable with published FID)",
    )
    p.add_argument("--weights-path", default=None, help="Inception weights file")
    p.add_argument("--kid-subset-size", type=int, default=1000, help="KID subset size")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default auto)")
    p.add_argument("--dataset", default="", help="dataset name written with the result")
    p.add_argument("--method", default="", help="method name written with the result")
    p.add_argument("--seed", type=int, default=0, help="seed written with the result")
    p.add_argument("--out", required=True, help="result file (.json)")


@_action("fidelity-split", "FID/KID of one translated test split (JSON)", _add_fidelity_split)
def _run_fidelity_split(args: argparse.Namespace) -> None:
    from mrbench.evaluation.fidelity import fidelity_of_split

    settings = {
        "feature_extractor": args.feature_extractor,
        "weights_path": args.weights_path,
        "kid_subset_size": args.kid_subset_size,
    }
    res = fidelity_of_split(args.pred_dir, args.store, args.direction, settings, args.device)
    res.update(dataset=args.dataset, method=args.method, seed=args.seed, direction=args.direction)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(res, indent=1))
    print(json.dumps(res))


def _add_fidelity(p: argparse.ArgumentParser) -> None:
    p.add_argument("--inputs", nargs="+", required=True, help="fidelity-split JSON files")
    _roster_and_out(p)


@_action("fidelity", "FID/KID table from fidelity-split results", _add_fidelity)
def _run_fidelity(args: argparse.Namespace) -> None:
    from mrbench.reporting.fidelity_table import fidelity_table

    rows = []
    for path in args.inputs:
        p = Path(path)
        if not p.exists():
            raise InputError(f"{p}: fidelity result not found")
        rows.append(json.loads(p.read_text()))
    df = pd.DataFrame(rows)
    write_table(fidelity_table(df, _read_roster(args.roster)), df, args.out)


def _add_protocols(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tidy", required=True, help="tidy results table (results_tidy.csv.gz)")
    p.add_argument(
        "--metrics",
        nargs="+",
        default=None,
        help="metrics ranked under every protocol (default: psnr ssim msssim psnr_lesion "
        "ssim_lesion ssim_healthy; those a protocol does not write are skipped)",
    )
    p.add_argument("--figure", default=None, help="prefix of the tau heat map (.png, .pdf)")
    _roster_and_out(p)


@_action(
    "protocols", "method ranks under every protocol and Kendall's tau between them", _add_protocols
)
def _run_protocols(args: argparse.Namespace) -> None:
    from mrbench.reporting.protocol_ranks import protocols_table, tau_heatmap

    doc, frame = protocols_table(_summary(args.tidy), args.metrics, _read_roster(args.roster))
    write_table(doc, frame, args.out)
    if args.figure:
        tau_heatmap(frame[frame["kind"] == "tau"], args.figure)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    for name, (help_text, add, _) in ACTIONS.items():
        add(sub.add_parser(name, help=help_text))


def run(args: argparse.Namespace) -> int:
    ACTIONS[args.action][2](args)
    return 0
