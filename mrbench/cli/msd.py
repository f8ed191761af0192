"""``mrbench import-msd``: import MSD Task01_BrainTumour (the channels of the needed contrasts:
T1w and T2w by default) into the benchmark layout."""

from __future__ import annotations

import argparse

from mrbench.cli.args import contrasts_option, overwrite_option
from mrbench.datasets.msd import MSDBrainTumour, import_msd


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help="Task01_BrainTumour.tar or its folder")
    parser.add_argument("--out", required=True, help="subjects folder")
    parser.add_argument(
        "--splits", default="config/splits/msd_brats.tsv", help="split file to write"
    )
    parser.add_argument(
        "--workdir", default="resources/msd_brats", help="where the archive is extracted"
    )
    parser.add_argument("--jobs", type=int, default=1, help="cases imported in parallel")
    contrasts_option(
        parser,
        MSDBrainTumour.contrasts,
        "contrasts to import",
        "t1 is always imported: tissue classes",
    )
    overwrite_option(parser, "--out folder", "import")
    parser.add_argument("--limit", type=int, default=None, help="only the first N sorted cases")


def run(args: argparse.Namespace) -> int:
    info = import_msd(
        args.source,
        args.out,
        args.splits,
        args.workdir,
        args.jobs,
        args.limit,
        overwrite=args.overwrite,
        contrasts=args.contrasts,
    )
    print(f"imported {info['n_cases']} MSD cases from {info['folder']} into {args.out}")
    return 0
