"""``mrbench report``: the tidy results table, tables and figures, one subcommand each.

The workflow's report rules call these; each can be rerun by hand on existing results::

    mrbench report tidy --inputs results/metrics/*/*/*/*.csv \\
        --out results/tables/results_tidy.csv.gz
    mrbench report table1 --tidy results/tables/results_tidy.csv.gz --out results/tables/table1
    mrbench report table2 | compare | significance  (same arguments)
    mrbench report efficiency --model results/models/ixi/disdiff/seed0/model.pt ... --out ...
    mrbench report qualitative --store results/data/ixi/slices/test --direction t1_to_t2 \\
        --pred DisDiff=results/predictions/ixi/disdiff/seed0/t1_to_t2 ... --out ...
    mrbench report boxplot --tidy ... --dataset ixi --out results/figures/boxplot_ixi
    mrbench report curves --run disdiff=results/models/ixi/disdiff/seed0 ... --out ...
    mrbench report fidelity-split --pred-dir ... --store ... --direction ... --out x.json
    mrbench report fidelity --inputs results/fidelity/*/*/*/*.json --out results/tables/fidelity

``--out`` is a prefix: tables get .csv, .md and .tex, figures .png and .pdf.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from mrbench.io import InputError, atomic_path


def _table_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tidy", required=True, help="tidy results table (results_tidy.csv.gz)")
    p.add_argument("--out", required=True, help="output prefix (.csv, .md, .tex are added)")
    p.add_argument("--protocol", default="max01", help="metric protocol (default max01)")
    p.add_argument("--psnr", default="psnr", help="metric shown as PSNR (e.g. psnr_brain)")
    p.add_argument("--ssim", default="ssim", help="metric shown as SSIM (e.g. ssim_gauss)")


def _pairs(values: list[str] | None, flag: str) -> list[tuple[str, str]]:
    out = []
    for v in values or []:
        if "=" not in v:
            raise InputError(f"{flag} {v!r}: expected NAME=PATH")
        name, path = v.split("=", 1)
        out.append((name, path))
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True

    p = sub.add_parser("tidy", help="concatenate metrics files into the tidy results table")
    p.add_argument("--inputs", nargs="+", required=True, help="metrics CSV files")
    p.add_argument("--out", required=True, help="tidy table (.csv or .csv.gz)")
    p.add_argument("--summary", help="also write mean/std per group (summary.csv)")

    for name, help_text in (
        ("table1", "Table 1: methods x datasets x directions, PSNR/SSIM"),
        ("table2", "Table 2: ablation of the DisDiff modules"),
        ("compare", "reproduced vs reported numbers of the DisDiff paper"),
        ("significance", "Wilcoxon tests of the reference method against the others"),
    ):
        p = sub.add_parser(name, help=help_text)
        _table_args(p)
        if name == "compare":
            p.add_argument("--methods", nargs="*", help="configured methods (default: all)")
        if name == "significance":
            p.add_argument(
                "--reference", default="disdiff", help="method tested against every other one"
            )
            p.add_argument(
                "--alpha", type=float, default=0.05, help="significance level (default 0.05)"
            )

    p = sub.add_parser("efficiency", help="parameters, throughput, time to threshold, inference")
    p.add_argument("--model", nargs="+", required=True, help="results/models/.../model.pt files")
    p.add_argument("--predictions", nargs="*", default=[], help="prediction folders (timing)")
    p.add_argument("--threshold", type=float, default=None, help="validation PSNR threshold")
    p.add_argument("--out", required=True, help="output prefix (.csv, .md, .tex are added)")

    p = sub.add_parser("qualitative", help="Fig. 2-style grid of one test slice")
    p.add_argument("--store", required=True, help="test split of the slice store")
    p.add_argument(
        "--direction", required=True, choices=("t1_to_t2", "t2_to_t1"), help="translation shown"
    )
    p.add_argument("--pred", nargs="+", required=True, help="LABEL=prediction folder")
    p.add_argument("--subject", default=None, help="test subject (default: the first)")
    p.add_argument("--slice", type=int, default=None, help="slice index (default: the middle)")
    p.add_argument("--title", default="", help="figure title (default: direction and slice)")
    p.add_argument("--out", required=True, help="output prefix (.png and .pdf are added)")

    p = sub.add_parser("boxplot", help="per-subject box plots per metric")
    p.add_argument("--tidy", required=True, help="tidy results table (results_tidy.csv.gz)")
    p.add_argument("--dataset", required=True, help="dataset whose subjects are plotted")
    p.add_argument("--protocol", default="max01", help="metric protocol (default max01)")
    p.add_argument(
        "--metrics", nargs="+", default=["psnr", "ssim", "mae"], help="one panel column each"
    )
    p.add_argument("--label", nargs="*", default=[], help="METHOD=display name (repeatable)")
    p.add_argument("--out", required=True, help="output prefix (.png and .pdf are added)")

    p = sub.add_parser("curves", help="training losses and validation PSNR per method")
    p.add_argument("--run", nargs="+", required=True, help="METHOD=run folder")
    p.add_argument("--label", nargs="*", default=[], help="METHOD=display name (repeatable)")
    p.add_argument("--title", default="", help="figure title")
    p.add_argument("--out", required=True, help="output prefix (.png and .pdf are added)")

    p = sub.add_parser("fidelity-split", help="FID/KID of one translated test split (JSON)")
    p.add_argument("--pred-dir", required=True, help="folder of translated test volumes")
    p.add_argument("--store", required=True, help="test split of the slice store")
    p.add_argument(
        "--direction", required=True, choices=("t1_to_t2", "t2_to_t1"), help="translation"
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

    p = sub.add_parser("fidelity", help="FID/KID table from fidelity-split results")
    p.add_argument("--inputs", nargs="+", required=True, help="fidelity-split JSON files")
    p.add_argument("--out", required=True, help="output prefix (.csv, .md, .tex are added)")


def _summary(tidy_path: str) -> pd.DataFrame:
    from mrbench.evaluate import read_tidy
    from mrbench.stats import summarise

    return summarise(read_tidy(tidy_path))


def run(args: argparse.Namespace) -> int:
    from mrbench import tables
    from mrbench.evaluate import read_tidy, write_csv

    a = args.action
    if a == "tidy":
        df = read_tidy(args.inputs)
        write_csv(df, args.out)
        if args.summary:
            from mrbench.stats import summarise

            write_csv(summarise(df), args.summary)
        print(f"{args.out}: {len(df)} rows from {len(args.inputs)} files")
    elif a == "table1":
        doc, df = tables.table1(_summary(args.tidy), args.protocol, args.psnr, args.ssim)
        tables.write_table(doc, df, args.out)
    elif a == "table2":
        doc, df = tables.table2(_summary(args.tidy), args.protocol, args.psnr, args.ssim)
        tables.write_table(doc, df, args.out)
    elif a == "compare":
        doc, df = tables.paper_comparison(
            _summary(args.tidy), args.methods or None, args.protocol, args.psnr, args.ssim
        )
        tables.write_table(doc, df, args.out)
    elif a == "significance":
        from mrbench.stats import wilcoxon_table

        tests = wilcoxon_table(read_tidy(args.tidy), args.reference, args.alpha)
        doc = tables.significance_table(
            tests, args.protocol, [args.psnr, args.ssim], args.reference
        )
        tables.write_table(doc, tests, args.out)
    elif a == "efficiency":
        facts = []
        for model in args.model:
            key = Path(model).parent.parts[-3:]
            preds = [p for p in args.predictions if Path(p).parts[-4:-1] == key]
            facts.append(tables.run_facts(model, preds))
        doc, df = tables.efficiency(facts, args.threshold)
        tables.write_table(doc, df, args.out)
    elif a == "qualitative":
        from mrbench.figures import qualitative_grid

        qualitative_grid(
            args.store,
            args.direction,
            _pairs(args.pred, "--pred"),
            args.out,
            subject=args.subject,
            slice_index=args.slice,
            title=args.title,
        )
    elif a == "boxplot":
        from mrbench.figures import boxplots
        from mrbench.stats import subject_means

        tidy = read_tidy(args.tidy)
        tidy = tidy[tidy["dataset"] == args.dataset]
        title = f"{tables.dataset_label(args.dataset)}: per-subject means ({args.protocol})"
        labels = dict(_pairs(args.label, "--label"))
        boxplots(subject_means(tidy), args.out, args.protocol, args.metrics, title, labels)
    elif a == "curves":
        from mrbench.figures import training_curves

        labels = dict(_pairs(args.label, "--label"))
        training_curves(_pairs(args.run, "--run"), args.out, args.title, labels)
    elif a == "fidelity-split":
        from mrbench.fidelity import fidelity_of_split

        settings = {
            "feature_extractor": args.feature_extractor,
            "weights_path": args.weights_path,
            "kid_subset_size": args.kid_subset_size,
        }
        res = fidelity_of_split(args.pred_dir, args.store, args.direction, settings, args.device)
        res.update(
            dataset=args.dataset, method=args.method, seed=args.seed, direction=args.direction
        )
        with atomic_path(args.out) as tmp:
            tmp.write_text(json.dumps(res, indent=1))
        print(json.dumps(res))
    elif a == "fidelity":
        rows = []
        for path in args.inputs:
            p = Path(path)
            if not p.exists():
                raise InputError(f"{p}: fidelity result not found")
            rows.append(json.loads(p.read_text()))
        df = pd.DataFrame(rows)
        tables.write_table(tables.fidelity_table(df), df, args.out)
    return 0
