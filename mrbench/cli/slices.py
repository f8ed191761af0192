"""``mrbench slices``: build the train/val/test slice store of a dataset from its split file."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrbench.cli.args import contrasts_option, dataset_option
from mrbench.datasets.splits import SPLITS, read_splits, subjects_in
from mrbench.domain import CONTRASTS
from mrbench.slices import SubjectVolumes, build_split


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--subjects-dir",
        required=True,
        type=Path,
        help="<dir>/<subject>/{<contrast>,mask,label}.nii.gz",
    )
    contrasts_option(p, CONTRASTS, "contrasts the store holds, one <contrast>.npy each")
    p.add_argument("--splits", required=True, type=Path, help="TSV with columns subject, split")
    p.add_argument("--out", required=True, type=Path, help="writes OUT/{train,val,test}/")
    p.add_argument("--size", type=int, required=True, help="slice size in pixels (crop/pad)")
    dataset_option(
        p, "phantom", "--slices-per-subject", int, "axial slices taken from each subject"
    )
    p.add_argument(
        "--split",
        choices=SPLITS,
        nargs="+",
        default=list(SPLITS),
        help="splits to build (default: all)",
    )


def run(args: argparse.Namespace) -> int:
    df = read_splits(args.splits, complete=False)  # --split may build some splits only
    for split in args.split:
        subjects = [
            SubjectVolumes.in_dir(s, args.subjects_dir / s, args.contrasts)
            for s in subjects_in(df, split)
        ]
        out = build_split(
            subjects, args.out / split, args.size, args.slices_per_subject, args.contrasts
        )
        print(f"{split}: {len(subjects)} subjects -> {out}")
    return 0
