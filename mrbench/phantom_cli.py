"""``mrbench phantom``: write the synthetic phantom dataset and normalise it for the slice store."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from mrbench.io import load_volume, save_volume
from mrbench.phantom import PhantomSettings, subject_ids, write_phantom
from mrbench.slices import normalise_volume


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, type=Path, help="folder for <id>_{t1,t2,mask}.nii.gz")
    p.add_argument("--n-subjects", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--voxel-size", type=float, default=1.0, help="mm, isotropic")
    p.add_argument("--noise", type=float, default=PhantomSettings.noise)
    p.add_argument("--only", nargs="+", metavar="SUBJECT", help="write only these subject ids")
    p.add_argument(
        "--subjects-dir",
        type=Path,
        help="also write normalised volumes as SUBJECTS_DIR/<id>/{t1,t2,mask,label}.nii.gz",
    )


def prepare_subject(raw_dir: Path, subject: str, out_dir: Path) -> None:
    """The phantom's preprocessing: already aligned and brain-only, so only normalisation; the
    tissue labels are copied (restricted to the mask)."""
    mask_img = load_volume(raw_dir / f"{subject}_mask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0
    for mod in ("t1", "t2"):
        img = load_volume(raw_dir / f"{subject}_{mod}.nii.gz")
        save_volume(
            normalise_volume(np.asarray(img.dataobj), mask), img.affine, out_dir / f"{mod}.nii.gz"
        )
    save_volume(mask.astype(np.uint8), mask_img.affine, out_dir / "mask.nii.gz")
    label_path = raw_dir / f"{subject}_label.nii.gz"
    if label_path.exists():  # tissue classes from the generating fractions
        labels = np.asarray(load_volume(label_path).dataobj).astype(np.uint8)
        save_volume(labels * mask, mask_img.affine, out_dir / "label.nii.gz")


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
