"""``mrbench dataset-subject``: acquire one subject of a dataset through its kind's plugin.

The workflow's generic ``dataset_subject`` rule runs this for every subject of a dataset whose
kind acquires subject by subject (the phantom, and most dataset plugins). Writes
``OUT/{<contrast>,mask,label}.nii.gz`` for every contrast the dataset needs
(:func:`mrbench.datasets.kind.needed_contrasts`: those of its ``pairs`` plus the kind's
reference): where the kind writes no ``label.nii.gz``, the tissue classes
are segmented from its T1w inside its mask (:func:`mrbench.preprocessing.tissues.segment_tissues`,
as for IXI and the imported archives), so that every subject has the label volume the slice store
keeps.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from mrbench.config.schema import dataset_settings
from mrbench.datasets.kind import get_dataset_kind, needed_volumes
from mrbench.io import InputError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dataset", required=True, help="dataset name (its config key)")
    p.add_argument(
        "--settings",
        default="{}",
        help="the dataset's config entry as JSON (schema defaults fill missing keys)",
    )
    p.add_argument("--subject", required=True, help="subject id, as listed by the dataset kind")
    p.add_argument(
        "--out", required=True, type=Path, help="folder for {<contrast>,mask,label}.nii.gz"
    )
    p.add_argument(
        "--plugin-path",
        action="append",
        default=[],
        metavar="FOLDER",
        help="folder of plugin modules to import first (repeatable; the config's plugin_paths)",
    )


def run(args: argparse.Namespace) -> int:
    try:
        entry = json.loads(args.settings)
    except json.JSONDecodeError as exc:
        raise InputError(f"--settings: not valid JSON ({exc.msg})") from None
    settings = dataset_settings(args.dataset, entry)
    try:
        kind = get_dataset_kind(settings["kind"], args.plugin_path)
    except KeyError as exc:
        raise ValueError(f"datasets.{args.dataset}: {exc.args[0]}") from None
    volumes = needed_volumes(kind, settings, args.dataset)
    kind.acquire(args.subject, settings, args.out)
    if not (args.out / "label.nii.gz").exists() and (args.out / "t1.nii.gz").exists():
        segment_labels(args.out)
    missing = [m for m in volumes if not (args.out / f"{m}.nii.gz").exists()]
    if missing:
        raise InputError(
            f"dataset kind {kind.name!r}: acquire() did not write {missing} into {args.out}"
        )
    print(f"{args.dataset}/{args.subject}: wrote {', '.join(volumes)} into {args.out}")
    return 0


def segment_labels(folder: Path) -> None:
    """``folder/label.nii.gz``: tissue classes of ``folder/t1.nii.gz`` inside ``mask.nii.gz``."""
    import numpy as np

    from mrbench.io import load_volume, save_volume
    from mrbench.preprocessing.tissues import segment_tissues

    t1 = load_volume(folder / "t1.nii.gz")
    mask = np.asarray(load_volume(folder / "mask.nii.gz").dataobj) > 0
    try:
        labels, _ = segment_tissues(np.asarray(t1.dataobj, np.float32), mask, t1.affine)
    except InputError:
        raise
    except Exception as exc:  # Atropos fails on volumes without three tissue intensities
        raise InputError(
            f"{folder / 't1.nii.gz'}: tissue classes could not be segmented ({exc}); a dataset "
            "kind whose T1w is not brain tissue writes label.nii.gz in acquire()"
        ) from None
    save_volume(labels, t1.affine, folder / "label.nii.gz")
