"""``mrbench phantom``: write the synthetic phantom dataset and normalise it for the slice store."""

from __future__ import annotations

import argparse
from pathlib import Path

from mrbench.config.schema import dataset_default
from mrbench.datasets.phantom import prepare_subject
from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", required=True, type=Path, help="folder for <id>_{t1,t2,mask,label}.nii.gz"
    )
    p.add_argument(
        "--n-subjects",
        type=int,
        default=dataset_default("phantom", "n_subjects"),
        help="number of subjects (default %(default)s)",
    )
    p.add_argument(
        "--seed",
        type=int,
        default=dataset_default("phantom", "seed"),
        help="seed of the random deformations (default %(default)s)",
    )
    p.add_argument(
        "--voxel-size",
        type=float,
        default=dataset_default("phantom", "voxel_size"),
        help="isotropic voxel size in mm (default %(default)s)",
    )
    p.add_argument(
        "--noise",
        type=float,
        default=dataset_default("phantom", "noise"),
        help="Rician noise s.d. relative to the 99th percentile brain signal (default %(default)s)",
    )
    p.add_argument("--only", nargs="+", metavar="SUBJECT", help="write only these subject ids")
    p.add_argument(
        "--subjects-dir",
        type=Path,
        help="also write normalised volumes as SUBJECTS_DIR/<id>/{t1,t2,mask,label}.nii.gz",
    )


def run(args: argparse.Namespace) -> int:
    settings = PhantomSettings(voxel_size=args.voxel_size, noise=args.noise)
    ids = subject_ids(args.n_subjects)
    unknown = sorted(set(args.only or []) - set(ids))
    if unknown:
        raise ValueError(f"--only: {unknown} not among the {args.n_subjects} phantom subjects")
    write_phantom(args.out, args.n_subjects, args.seed, settings, only=args.only)
    if args.subjects_dir:
        for sid in args.only or ids:
            prepare_subject(args.out, sid, args.subjects_dir / sid)
    return 0
