"""``mrbench phantom``: write the synthetic phantom dataset and normalise it for the slice store."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrbench.cli.args import contrasts_option, dataset_option
from mrbench.datasets.phantom import prepare_subject
from mrbench.datasets.phantom_volumes import CONTRASTS, PhantomSettings, subject_ids, write_phantom
from mrbench.pairs import contrasts_of


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, type=Path, help="folder for <id>_{<contrast>,mask,label}.nii.gz"
    )
    contrasts_option(p, CONTRASTS, "contrasts to write")
    dataset_option(p, "phantom", "--n-subjects", int, "number of subjects")
    dataset_option(p, "phantom", "--seed", int, "seed of the random deformations")
    dataset_option(p, "phantom", "--voxel-size", float, "isotropic voxel size in mm")
    noise = "Rician noise s.d. relative to the 99th percentile brain signal"
    dataset_option(p, "phantom", "--noise", float, noise)
    p.add_argument("--only", nargs="+", metavar="SUBJECT", help="write only these subject ids")
    p.add_argument(
        "--subjects-dir",
        type=Path,
        help="also write normalised volumes as SUBJECTS_DIR/<id>/{<contrast>,mask,label}.nii.gz",
    )


def run(args: argparse.Namespace) -> int:
    settings = PhantomSettings(voxel_size=args.voxel_size, noise=args.noise)
    ids = subject_ids(args.n_subjects)
    unknown = sorted(set(args.only or []) - set(ids))
    if unknown:
        raise ValueError(f"--only: {unknown} not among the {args.n_subjects} phantom subjects")
    # in the order of mrbench.domain.CONTRASTS, as every store lists them
    contrasts = contrasts_of([args.contrasts])
    write_phantom(args.out, args.n_subjects, args.seed, settings, args.only, contrasts)
    if args.subjects_dir:
        for sid in args.only or ids:
            prepare_subject(args.out, sid, args.subjects_dir / sid, contrasts)
    return 0
