"""``mrbench import-brats``: import BraTS 2018 from an archive or folder into the benchmark layout.

Writes ``<out>/<case>/{<contrast>,mask,label}.nii.gz`` for every case (the folder appears at
once) and the deterministic split ``config/splits/brats2018.tsv``. See
:mod:`mrbench.datasets.brats`.
"""

from __future__ import annotations

import argparse

from mrbench.cli.args import contrasts_option, overwrite_option
from mrbench.datasets.brats import BraTS2018, import_brats


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--source", required=True, help=".zip/.tar(.gz) archive or folder")
    parser.add_argument(
        "--out", required=True, help="subjects folder, e.g. results/data/brats2018/subjects"
    )
    parser.add_argument(
        "--splits", default="config/splits/brats2018.tsv", help="split file to write"
    )
    parser.add_argument(
        "--workdir", default="resources/brats2018", help="where archives are extracted"
    )
    parser.add_argument("--jobs", type=int, default=1, help="cases imported in parallel")
    contrasts_option(
        parser, BraTS2018.contrasts, "contrasts to import", "t1 is always imported: tissue classes"
    )
    overwrite_option(parser, "--out folder", "import")


def run(args: argparse.Namespace) -> int:
    if not args.source:
        raise ValueError(
            "config key datasets.brats2018.source: not set; give the BraTS 2018 archive "
            "(.zip/.tar.gz) or folder received from the organisers"
        )
    info = import_brats(
        args.source,
        args.out,
        args.splits,
        args.workdir,
        args.jobs,
        overwrite=args.overwrite,
        contrasts=args.contrasts,
    )
    print(f"imported {info['n_cases']} BraTS cases from {info['folder']} into {args.out}")
    return 0
