"""The ``phantom`` dataset kind: synthetic subjects (:mod:`mrbench.datasets.phantom_volumes`) made
per subject.

Its split file is made (deterministically, from the configured fractions and seed) when it does
not exist yet, so a new phantom size needs no manual step; an existing file must list exactly
the configured number of subjects.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mrbench.datasets.kind import DatasetKind, needed_contrasts, register_dataset, split_file_of
from mrbench.domain import DEFAULT_PAIR
from mrbench.io import load_volume, save_volume


def prepare_subject(
    raw_dir: Path, subject: str, out_dir: Path, contrasts: tuple[str, ...] = DEFAULT_PAIR
) -> None:
    """The phantom's preprocessing: already aligned and brain-only, so only normalisation of
    each of ``contrasts``; the tissue labels are copied (restricted to the mask)."""
    from mrbench.slices import normalise_volume

    mask_img = load_volume(raw_dir / f"{subject}_mask.nii.gz")
    mask = np.asarray(mask_img.dataobj) > 0
    for mod in contrasts:
        img = load_volume(raw_dir / f"{subject}_{mod}.nii.gz")
        save_volume(
            normalise_volume(np.asarray(img.dataobj), mask), img.affine, out_dir / f"{mod}.nii.gz"
        )
    save_volume(mask.astype(np.uint8), mask_img.affine, out_dir / "mask.nii.gz")
    label_path = raw_dir / f"{subject}_label.nii.gz"
    if label_path.exists():  # tissue classes from the generating fractions
        labels = np.asarray(load_volume(label_path).dataobj).astype(np.uint8)
        save_volume(labels * mask, mask_img.affine, out_dir / "label.nii.gz")


@register_dataset("phantom")
class Phantom(DatasetKind):
    display_name = "Phantom"
    acquisition = "subject"
    contrasts = ("t1", "t2", "pd", "flair")
    #: none: the tissue labels come from the generating fractions, nothing is registered
    reference = None

    def subjects(self, dataset: str, settings: dict[str, Any]) -> list[str]:
        from mrbench.datasets.phantom_volumes import subject_ids
        from mrbench.datasets.splits import make_splits, read_splits, write_splits
        from mrbench.errors import ConfigError

        ids = subject_ids(int(settings["n_subjects"]))
        path = Path(split_file_of(dataset, settings))
        if not path.exists():
            df = make_splits(
                ids,
                float(settings["test_fraction"]),
                float(settings["val_fraction"]),
                int(settings["split_seed"]),
            )
            write_splits(df, path)
        df = read_splits(path)
        if sorted(df["subject"]) != ids:
            unknown = sorted(set(df["subject"]) - set(ids))
            missing = sorted(set(ids) - set(df["subject"]))
            which = f"names {unknown[:5]}, not among" if unknown else f"lacks {missing[:5]} of"
            raise ConfigError(
                f"config key datasets.{dataset}.n_subjects: {path} {which} the {len(ids)} "
                "phantom subjects the config asks for; correct the file, delete it or set "
                "split_file"
            )
        return ids

    def acquire(self, subject: str, settings: dict[str, Any], out_dir: Path) -> None:
        from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom

        n = int(settings["n_subjects"])
        if subject not in subject_ids(n):
            raise ValueError(f"{subject}: not among the {n} phantom subjects")
        contrasts = needed_contrasts(self, settings)
        phantom = PhantomSettings(voxel_size=settings["voxel_size"], noise=settings["noise"])
        with tempfile.TemporaryDirectory(prefix="phantom-") as raw:
            write_phantom(raw, n, int(settings["seed"]), phantom, [subject], contrasts)
            prepare_subject(Path(raw), subject, Path(out_dir), contrasts)
